"""`keel demo` end to end: real credit data, two tracked runs, a champion, predictions, lineage.

The demo runs once per module (about ten seconds), through the CLI exactly as a user starts it;
the tests then read what it printed and what it left in its workspace.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import keel
from keel import Settings
from keel.cli import app

from clitools import keel_json

runner = CliRunner()


@dataclass(frozen=True)
class Demo:
    stdout: str
    stderr: str
    exit_code: int
    home: Path  # the temporary workspace the demo created
    env_home: Path  # KEEL_HOME during the demo, which it must leave alone


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("demo")
    env_home = root / "keel-home-from-env"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(root))  # the demo's temporary workspace lands here
        mp.setenv("KEEL_HOME", str(env_home))
        result = runner.invoke(app, ["demo", "--no-serve"])
    created = sorted(root.glob("keel-demo-*"))
    assert len(created) == 1, (result.stdout, result.stderr)
    return Demo(result.stdout, result.stderr, result.exit_code, created[0], env_home)


def test_demo_succeeds_in_a_fresh_temporary_workspace(demo: Demo) -> None:
    assert demo.exit_code == 0, demo.stderr
    assert (demo.home / "keel.db").is_file()
    assert not demo.env_home.exists()  # the demo never touches the user's own workspace
    assert str(demo.home) in demo.stdout  # it says where to explore
    assert "Traceback" not in demo.stdout + demo.stderr


def test_demo_output_is_short_and_names_data_set_champion_and_lineage(demo: Demo) -> None:
    lines = demo.stdout.strip().splitlines()
    assert len(lines) <= 40
    out = demo.stdout
    assert "modeldata::credit_data" in out
    assert "credit@1" in out and "4,454 rows" in out and "sha256:" in out
    assert "logistic regression" in out and "gradient boosting" in out
    assert "champion -> credit-risk@" in out
    assert "credit@1 -> run " in out  # dataset version -> run -> model version
    assert "credit-risk@champion" in out and "credit-risk@1" in out


def test_demo_champion_is_the_version_with_the_best_test_auc(demo: Demo) -> None:
    model = keel_json(demo.home, "models", "show", "credit-risk")
    assert isinstance(model, dict)
    versions = model["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    best = max(versions, key=lambda v: v["metrics"]["auc"])
    assert model["aliases"] == {"champion": best["version"]}
    assert f"champion -> credit-risk@{best['version']}" in demo.stdout
    for v in versions:
        assert 0.7 < v["metrics"]["auc"] < 1.0  # a real signal, not a constant model
        assert set(v["metrics"]) == {"auc", "accuracy", "log_loss"}
        assert len(v["signature"]["inputs"]) == 13 and v["signature"]["classes"] == ["bad", "good"]
        assert v["lineage"]["datasets"] == ["credit@1"] and v["lineage"]["run_id"]

    history = keel_json(demo.home, "models", "history", "credit-risk")
    assert isinstance(history, list) and len(history) == 1
    assert history[0]["to_version"] == best["version"] and "AUC" in history[0]["reason"]


def test_demo_tracks_both_runs_with_inputs_and_a_boosting_series(demo: Demo) -> None:
    runs = keel_json(demo.home, "runs", "list")
    assert isinstance(runs, list) and len(runs) == 2
    assert all(r["inputs"] == ["credit@1"] and r["status"] == "finished" for r in runs)
    boosting = next(r for r in runs if r["name"] == "gradient-boosting")
    shown = keel_json(demo.home, "runs", "show", boosting["id"])
    assert isinstance(shown, dict)
    assert shown["metric_points"]["log_loss"] == int(shown["params"]["max_iter"])  # one point per iteration
    assert shown["metric_points"]["auc"] == 1


def test_demo_dataset_is_the_real_credit_data(demo: Demo) -> None:
    dataset = keel_json(demo.home, "data", "show", "credit")
    assert isinstance(dataset, dict)
    assert dataset["num_rows"] == 4454
    names = [c["name"] for c in dataset["columns"]]
    assert "Status" in names and "rownames" not in names
    status = dataset["profile"]["columns"]["Status"]["top"]
    assert {t["value"] for t in status} == {"good", "bad"}
    assert dataset["models"] == ["credit-risk@1", "credit-risk@2"]


def test_demo_serves_monitors_and_alerts_on_the_drifting_wave(demo: Demo) -> None:
    out = demo.stdout
    assert "7 Serve" in out and "/api/v1/models/credit-risk/predict" in out
    held_out = next(line for line in out.splitlines() if "held-out applications  " in line and "500" in line)
    shifted = next(line for line in out.splitlines() if "loans 30% larger" in line)
    assert held_out.rstrip().endswith("-")  # no drift in the held-out wave
    assert shifted.rstrip().endswith("Amount, Price")  # exactly the two columns the demo shifted

    # every prediction went through the server's log, with its true outcome as feedback
    with keel.Workspace(Settings(home=demo.home)) as ws:
        log = ws.predictions.window("credit-risk")
        assert len(log) == 1000 and log["__label"].notna().all()
        runs = ws.monitoring.runs("credit-risk")
        assert [r.summary["drifted_features"] for r in runs] == [["Amount", "Price"], []]
        assert all(r.rows == 500 and r.labelled_rows == 500 for r in runs)
        alerts = ws.monitoring.alerts.list(model="credit-risk", status="open")
        drift = sorted(a.feature for a in alerts if a.rule == "feature-drift")
        assert drift == ["Amount", "Price"]
        for a in alerts:  # delivered to the webhook the demo ran, then to the log
            assert {d.channel: d.status for d in ws.monitoring.alerts.deliveries(a.id)} == {
                "demo-on-call": "delivered", "server-log": "delivered"}
        assert [c.name for c in ws.monitoring.alerts.channels()] == ["server-log"]  # the dead receiver is gone
    assert "9 Alert" in out and "Amount drifted" in out and "Price drifted" in out
