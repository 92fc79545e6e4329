"""`keel monitor`: watch a model, check its traffic, show the results, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json
from sklearn.linear_model import LogisticRegression

import keel
from keel import Settings


def frame(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.normal(100 + shift, 20, n)
    age = rng.normal(40, 10, n)
    return pd.DataFrame({"income": income, "age": age, "default": (income + rng.normal(0, 20, n) < 90).astype(int)})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Model 'credit' trained on 'credit@1'; 600 predictions logged with income shifted by 1.5 sd."""
    path = tmp_path / "ws"
    with keel.Workspace(Settings(home=path, author="tester")) as ws:
        train = frame(5000, 0)
        data = ws.datasets.add("credit", train)
        with ws.runs.start("credit", inputs=[data]) as run:
            est = LogisticRegression().fit(train[["income", "age"]], train["default"])
        ws.models.register("credit", est, run=run, X=train[["income", "age"]])
        ws.models.set_alias("credit", "champion", version=1)
        live = frame(600, 1, shift=30.0)[["income", "age"]]
        live["__prediction"] = est.predict(live)
        ws.predictions.write("credit", 1, live)
    return path


def test_watch_run_and_show(home: Path) -> None:
    code, out, err = keel_cli(home, "monitor", "watch", "credit", "--window-rows", "500", "--schedule-s", "60")
    assert code == 0, err
    assert "Watching credit@champion" in out and "newest 500 predictions" in out and "every 60 s" in out

    code, out, err = keel_cli(home, "monitor", "run", "credit")
    assert code == 0, err
    assert "on 500 predictions" in out and "credit@1" in out
    income_line = next(line for line in out.splitlines() if "income" in line and "DRIFT" in line)
    assert "age" not in income_line
    assert "ALERT" in out and "income drifted" in out

    result = keel_json(home, "monitor", "run", "credit")
    assert result["drifted_features"] == ["income"]
    assert result["run"]["rows"] == 500
    assert [a["count"] for a in result["alerts"] if a["rule"] == "feature-drift"] == [2]  # the same alert, seen twice

    shown = keel_json(home, "monitor", "show", "credit")
    assert shown["config"]["window_rows"] == 500 and len(shown["runs"]) == 2
    code, out, _ = keel_cli(home, "monitor", "show", "credit")
    assert code == 0 and "income" in out

    listed = keel_json(home, "alerts", "list", "--model", "credit")
    assert [a["feature"] for a in listed if a["rule"] == "feature-drift"] == ["income"]
    assert "multivariate-drift" in {a["rule"] for a in listed}  # a 1.5 sd shift is easy to tell apart


def test_mistakes_are_one_line_errors(home: Path) -> None:
    assert_one_line_error(keel_cli(home, "monitor", "run", "nope"), code=1, contains="nope")
    assert_one_line_error(
        keel_cli(home, "monitor", "watch", "credit", "--reference", "missing@1"), code=1, contains="missing"
    )
    assert keel_json(home, "monitor", "show", "credit")["runs"] == []


def test_a_failing_monitor_is_a_one_line_error_and_show_says_since_when(home: Path) -> None:
    """`keel monitor run` still checks here and waits; a failure raises the monitor-failing alert."""
    code, _, err = keel_cli(home, "monitor", "watch", "credit", "--reference", "credit@1", "--target", "no-such-column")
    assert code == 0, err
    with keel.Workspace(Settings(home=home, author="tester")) as ws:  # written by an older Keel, before validation
        store = ws.monitoring._meta.monitors
        store.save_monitor("credit", {**store.get_monitor("credit")[0], "thresholds": "x"})
    assert_one_line_error(keel_cli(home, "monitor", "run", "credit"), code=1, contains="thresholds must be an object")
    code, out, err = keel_cli(home, "monitor", "show", "credit")
    assert code == 0, err
    assert "failing since" in out and "(1 failed check, alert #" in out and "thresholds must be an object" in out
    shown = keel_json(home, "monitor", "show", "credit")
    assert shown["failing"]["rule"] == "monitor-failing" and shown["runs"] == []
