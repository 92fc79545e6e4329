"""The CLI frictions a new user hit (issue 11): squeezed ids, raw markup, tracebacks, the
--workspace option's place, and searches that silently match nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json
from sklearn.linear_model import LogisticRegression

import keel
from keel import Settings
from keel.cli.alerts import alerts_of

KEEL = str(Path(sys.executable).parent / "keel")


# -- alerts list in a narrow terminal ----------------------------------------------------------
def test_alert_ids_and_statuses_stay_whole_at_80_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        alerts = alerts_of(ws)
        alerts.ensure_default_rules("credit-risk-scoring-model", output_kind="classification")
        feature = "monthly_income_after_taxes_in_local_currency"
        alerts.evaluate(
            "credit-risk-scoring-model",
            [(feature, "drift", 1.0), (feature, "psi", 0.41), ("", "schema_violation_rate", 0.2)],
            context={},
        )
        ids = [a.id for a in alerts.list(model=None, status="active")]
        alerts.ack(ids[0], note="on it")
    monkeypatch.setenv("COLUMNS", "80")  # an explicit width is honoured when stdout is not a terminal
    code, out, err = keel_cli(home, "alerts", "list")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    rows = [line.split()[:3] for line in out.splitlines() if line.lstrip().startswith("#")]
    assert sorted(rows) == sorted([[f"#{ids[0]}", "critical", "acknowledged"], [f"#{ids[1]}", "warning", "open"]]), out
    assert "…" not in out  # long names and titles wrap instead
    header = next(line for line in out.splitlines() if " title " in line)
    start, end = header.index("title"), header.index("count")
    title_column = "".join(line[start:end].strip() for line in out.splitlines())
    assert "monthly_income_after_taxes_in_local_currency" in title_column


# -- models timeline -------------------------------------------------------------------------
PROJECT = """\
model: tumor
data: {dataset: cancer, target: target, split: {test_fraction: 0.3, seed: 0}}
estimator: {class: sklearn.linear_model.LogisticRegression, params: {max_iter: 3000, C: 0.001}}
evaluation: {metrics: [roc_auc], primary: roc_auc}
"""


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_timeline_renders_its_outcome_colours(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    home = tmp_path / "ws"
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        ws.datasets.add("cancer", frame)
    (tmp_path / "keel.yaml").write_text(PROJECT)
    code, _, err = keel_cli(home, "train", str(tmp_path / "keel.yaml"))
    assert code == 0, err
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        ws.retraining.record_crash("tumor", trigger="manual", error="the worker died")
    code, out, err = keel_cli(home, "models", "timeline", "tumor")
    assert code == 0, err
    assert "promoted" in out and "failed" in out
    assert "[green]" not in out and "[red]" not in out and "[/]" not in out


# -- monitor run and serve fail in one line ---------------------------------------------------
def test_a_monitor_check_that_crashes_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.normal(100, 20, 500), "age": rng.normal(40, 10, 500)})
    frame["default"] = (frame["income"] < 90).astype(int)
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        data = ws.datasets.add("credit", frame)
        with ws.runs.start("credit", inputs=[data]) as run:
            est = LogisticRegression().fit(frame[["income", "age"]], frame["default"])
        ws.models.register("credit", est, run=run, X=frame[["income", "age"]])
        ws.models.set_alias("credit", "champion", version=1)
        live = frame[["income", "age"]].head(200).copy()
        live["__prediction"] = est.predict(live)
        ws.predictions.write("credit", 1, live)

    import keel.monitoring.stats as stats

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("Input contains NaN,\n infinity or a value too large")

    monkeypatch.setattr(stats, "drift_report", broken)  # a library failing deep inside the check
    assert_one_line_error(keel_cli(home, "monitor", "run", "credit"), code=1, contains="ValueError: Input contains NaN")
    assert keel_json(home, "monitor", "show", "credit")["failing"]["rule"] == "monitor-failing"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")} | {"PYTHONUNBUFFERED": "1"}


def test_serve_on_a_busy_port_is_one_error_line_and_no_address(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [KEEL, "--workspace", str(tmp_path / "ws"), "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
    assert r.returncode == 1, r.stderr
    assert "Dashboard" not in r.stdout and "http://" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"Port {port}" in lines[0] and "--port" in lines[0], (
        r.stderr
    )
    assert "Traceback" not in r.stderr


# -- --workspace after the command ---------------------------------------------------------------
def test_workspace_is_accepted_after_any_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from keel.cli import app

    home = tmp_path / "ws"
    runner = CliRunner()
    created = runner.invoke(app, ["init", "--workspace", str(home)])
    assert created.exit_code == 0, created.output
    assert (home / "keel.db").exists()
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        with ws.runs.start("exp", name="first") as run:
            run.log_metric("accuracy", 0.9)
    for args in (
        ["runs", "list", "--workspace", str(home), "--json"],
        ["runs", "-w", str(home), "list", "--json"],
        ["--workspace", str(tmp_path / "elsewhere"), "runs", "list", "-w", str(home), "--json"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert [r["name"] for r in __import__("json").loads(result.stdout)] == ["first"], args
    missing = runner.invoke(app, ["runs", "list", "--workspace", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "nope" in missing.stderr
    helped = runner.invoke(app, ["serve", "--help"])
    assert helped.exit_code == 0 and "--workspace" in helped.stdout


# -- runs search with a misspelt key --------------------------------------------------------------
def test_search_on_an_unknown_key_names_the_nearest(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        with ws.runs.start("exp") as run:
            run.log_metric("accuracy", 0.9)
            run.log_params({"max_depth": 6})
    code, out, err = keel_cli(home, "runs", "search", "metrics.acuracy > 0.7 and params.max_dept = 6")
    assert code == 0, err
    assert "No runs match." in out
    assert "No run has a metric 'acuracy'; did you mean 'accuracy'?" in out
    assert "No run has a param 'max_dept'; did you mean 'max_depth'?" in out
    code, out, _ = keel_cli(home, "runs", "search", "metrics.zzz > 0.7")
    assert code == 0 and "No run has a metric 'zzz'; the metrics logged are accuracy" in out
    code, out, _ = keel_cli(home, "runs", "search", "metrics.accuracy > 0.95")  # a real key: no hint
    assert code == 0 and "No runs match." in out and "No run has" not in out
    assert keel_json(home, "runs", "search", "metrics.acuracy > 0.7") == []
