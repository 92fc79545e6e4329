"""`keel demo` end to end: real credit data, two tracked runs, a champion, predictions, lineage.

The demo runs once per module (about ten seconds), through the CLI exactly as a user starts it;
the tests then read what it printed and what it left in its workspace.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from clitools import keel_json
from typer.testing import CliRunner

import keel
from keel import Settings
from keel.cli import app

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
    assert len(lines) <= 58  # sixteen acts, most of them one or two lines
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
    versions = model["versions"][:2]  # the two the demo trained; v3 is the retraining's (below)
    assert [v["version"] for v in model["versions"]] == [1, 2, 3]
    best = max(versions, key=lambda v: v["metrics"]["roc_auc"])
    assert f"champion -> credit-risk@{best['version']}" in demo.stdout
    for v in versions:
        assert 0.7 < v["metrics"]["roc_auc"] < 1.0  # a real signal, not a constant model
        assert set(v["metrics"]) == {"roc_auc", "accuracy", "log_loss"}  # the names the retraining's runs use
        assert len(v["signature"]["inputs"]) == 13 and v["signature"]["classes"] == ["bad", "good"]
        assert v["lineage"]["datasets"] == ["credit@1"] and v["lineage"]["run_id"]

    history = [e for e in keel_json(demo.home, "models", "history", "credit-risk") if e["alias"] == "champion"]
    assert history[0]["to_version"] == best["version"] and "AUC" in history[0]["reason"]
    assert history[-1]["to_version"] == 3 and "gate passed" in history[-1]["reason"]  # the retraining's promotion


def test_demo_tracks_both_runs_with_inputs_and_a_boosting_series(demo: Demo) -> None:
    runs = keel_json(demo.home, "runs", "list")
    ppo = [r for r in runs if r["experiment"] == "rl-pharmacy"]  # act 15's training run
    assert [r["name"] for r in ppo] == ["ppo"] and ppo[0]["inputs"] == ["a10-sales@1"]
    lms = {r["experiment"]: r for r in runs if r["experiment"].startswith("genai-")}  # act 16's
    assert set(lms) == {"genai-prose-lm", "genai-code-lm", "genai-prose-lm-code"}
    assert lms["genai-code-lm"]["inputs"] == ["stdlib-code@1"] and "val_perplexity" in lms["genai-code-lm"]["metrics"]
    runs = [r for r in runs if r["experiment"] != "rl-pharmacy" and r["experiment"] not in lms]
    assert isinstance(runs, list) and len(runs) == 3
    retraining = next(r for r in runs if r["name"] == "alert-training")  # the retraining's run
    assert retraining["inputs"] == ["credit-retrain@1"] and retraining["status"] == "finished"
    runs = [r for r in runs if r is not retraining]
    assert all(r["inputs"] == ["credit@1"] and r["status"] == "finished" for r in runs)
    boosting = next(r for r in runs if r["name"] == "gradient-boosting")
    shown = keel_json(demo.home, "runs", "show", boosting["id"])
    assert isinstance(shown, dict)
    assert shown["metric_points"]["log_loss"] == int(shown["params"]["estimator.max_iter"])  # one point per iteration
    assert shown["metric_points"]["roc_auc"] == 1
    # One vocabulary with the retraining's run, so the comparison charts line up key by key.
    assert set(shown["metrics"]) == set(retraining["metrics"]) == {"roc_auc", "accuracy", "log_loss"}
    shared = {k for k in retraining["params"] if k.startswith("estimator")}
    assert (
        shared and shared <= set(shown["params"]) and shown["params"]["estimator"] == retraining["params"]["estimator"]
    )


def test_demo_dataset_is_the_real_credit_data(demo: Demo) -> None:
    dataset = keel_json(demo.home, "data", "show", "credit")
    assert isinstance(dataset, dict)
    assert dataset["num_rows"] == 4454
    names = [c["name"] for c in dataset["columns"]]
    assert "Status" in names and "rownames" not in names
    status = dataset["profile"]["columns"]["Status"]["top"]
    assert {t["value"] for t in status} == {"good", "bad"}
    assert dataset["models"] == ["credit-risk@1", "credit-risk@2"]  # v3 was trained on credit-retrain@1


def test_demo_serves_monitors_and_alerts_on_the_drifting_wave(demo: Demo) -> None:
    out = demo.stdout
    assert "8 Serve" in out and "/api/v1/models/credit-risk/predict" in out
    held_out = next(line for line in out.splitlines() if "held-out applications  " in line and "500" in line)
    shifted = next(line for line in out.splitlines() if "loans 30% larger" in line)
    assert held_out.rstrip().endswith("-")  # no drift in the held-out wave
    assert shifted.rstrip().endswith("Amount, Price")  # exactly the two columns the demo shifted

    # every prediction went through the server's log, with its true outcome as feedback
    with keel.Workspace(Settings(home=demo.home)) as ws:
        log = ws.predictions.window("credit-risk")
        waves = log.iloc[:1000]  # then the traffic that went on during the retraining, unlabelled
        assert len(log) > 1000 and waves["__label"].notna().all() and log.iloc[1000:]["__label"].isna().all()
        assert set(log.iloc[1000:]["__version"]) == {2, 3}
        runs = ws.monitoring.runs("credit-risk")
        assert [r.summary["drifted_features"] for r in runs] == [["Amount", "Price"], []]
        assert all(r.rows == 500 and r.labelled_rows == 500 for r in runs)
        alerts = ws.monitoring.alerts.list(model="credit-risk", status="all")
        drift = sorted(a.feature for a in alerts if a.rule == "feature-drift")
        assert drift == ["Amount", "Price"]
        for a in alerts:  # delivered to the webhook the demo ran, then to the log
            assert {d.channel: d.status for d in ws.monitoring.alerts.deliveries(a.id)} == {
                "demo-on-call": "delivered",
                "server-log": "delivered",
            }
        assert [c.name for c in ws.monitoring.alerts.channels()] == ["server-log"]  # the dead receiver is gone

        # the alerts started a retraining on their own; the challenger won on fresh production rows
        [job] = ws.jobs.list(kind="retrain")
        assert job.status == "succeeded" and job.payload["trigger"] == "alert"
        [decision] = ws.retraining.decisions("credit-risk")
        assert (decision.trigger, decision.outcome, decision.version, decision.champion_version) == (
            "alert",
            "promoted",
            3,
            2,
        )
        m = decision.evidence["metrics"]
        assert m["challenger"]["roc_auc"] > m["champion"]["roc_auc"] + 0.005
        assert decision.evidence["data"]["split"] == {"newest_production_rows": 250}
        assert ws.models.get("credit-risk@champion").version == 3
        assert ws.models.get("credit-risk@3").datasets == ("credit-retrain@1",)
        assert ws.monitoring.alerts.list(model="credit-risk", status="active") == []  # resolved by the promotion
    assert "11 Retrain" in out and "-> promoted" in out
    served = next(line for line in out.splitlines() if "predictions answered meanwhile" in line)
    assert "v2:" in served and "v3:" in served and ", 0 failed" in served  # no request lost to the promotion
    assert "10 Alert" in out and "Amount drifted" in out and "Price drifted" in out


def test_demo_prints_the_reason_codes_of_its_riskiest_application(demo: Demo) -> None:
    lines = demo.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("7 Explain"))
    assert "is the riskiest (P(bad) 0." in lines[start]
    reasons = [line.strip() for line in lines[start + 1 : start + 4]]
    assert len(reasons) == 3 and all(
        r.startswith("- ") and "pushed toward bad" in r and "typical" in r for r in reasons
    )


def test_demo_studies_the_nsw_training_effect_against_the_experiment(demo: Demo) -> None:
    out = demo.stdout
    assert "12 Cause" in out and "causaldata::nsw_mixtape" in out
    assert "difference in means, $1,794, is inside the interval" in out  # the experimental benchmark
    assert "refutation " in out and "checks passed" in out
    shown = keel_json(demo.home, "causal", "show", "job-training")
    assert shown["study"]["dataset"] == "nsw@1" and shown["study"]["treatment"] == "treat"
    by_name = {e["estimator"]: e for e in shown["estimates"]}
    assert set(by_name) == {"regression", "ipw", "aipw", "dml"}
    assert all(e["ci_low"] <= 1794.34 <= e["ci_high"] for e in by_name.values())


def test_demo_targets_offers_with_a_registered_policy_near_the_known_optimum(demo: Demo) -> None:
    out = demo.stdout
    assert "13 Target" in out and "retention-offer@1" in out
    rules = [line.strip() for line in out.splitlines() if line.strip().startswith("- ") and " -> " in line]
    assert {rule.rsplit(" -> ", 1)[1] for rule in rules} == {"none", "call", "discount"}
    agreement = int(out.split("the known best offer for ")[1].split("%")[0])
    assert agreement >= 90
    model = keel_json(demo.home, "models", "show", "retention-offer")
    assert model["versions"][0]["flavor"] == "policy"
    with keel.Workspace(Settings(home=demo.home)) as ws:
        loaded = ws.models.load("retention-offer@1")  # a policy loads without trusted=True
        assert list(loaded.predict([{"tenure": 3, "spend": 90.0}, {"tenure": 40, "spend": 120.0}])) == [
            "discount",
            "call",
        ]


def test_demo_builds_a_forest_and_an_int8_network_for_a_cortex_m4(demo: Demo) -> None:
    out = demo.stdout
    assert "14 Edge" in out and "digits@1 (1,797 8x8 images)" in out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith(("digits-forest@1", "digits-mlp@1"))]
    assert [line.split(":")[0] for line in lines] == ["digits-forest@1 int16", "digits-mlp@1 int8"]
    assert all("100.0% agree with Python" in line for line in lines)  # both builds agree on every image
    builds = keel_json(demo.home, "edge", "list")
    assert {(b["model"], b["quantize"]) for b in builds} == {("digits-forest@1", "int16"), ("digits-mlp@1", "int8")}
    for build in builds:
        size = build["report"]["size"]
        if size and size.get("flash_bytes") is not None:  # the Arm toolchain is installed
            assert size["flash_bytes"] <= 8 * 1024 and size["fits_flash"]


def test_demo_fits_a_twin_and_serves_an_ordering_policy(demo: Demo) -> None:
    out = demo.stdout
    assert "15 Decide" in out and "fpp2::a10 (a10-sales@1: the last 60 months, x10 units)" in out
    assert "seasonal (12 months)" in out and "best classic policy: seasonal base-stock" in out
    twin = keel_json(demo.home, "rl", "show", "pharmacy")
    classic = twin["baselines"]["payload"]["classic"]
    # on seasonal demand a level per month beats one level for the whole year
    assert classic["seasonal base-stock"]["evaluation"]["cost"] < classic["base-stock"]["evaluation"]["cost"]
    with keel.Workspace(Settings(home=demo.home)) as ws:
        model = ws.models.load("a10-ordering@champion")  # a trained policy loads without trusted=True
        assert model.info.flavor == "policy" and model.info.tags["keel.twin"] == "pharmacy@1"
        low, high = model.predict(
            [
                {"position": 100.0, "net_inventory": 100.0, "phase": 0.0},
                {"position": 900.0, "net_inventory": 900.0, "phase": 0.0},
            ]
        )
        assert low > 0 and high == 0


def test_act_16_trains_a_code_model_measures_it_and_asks_the_docs(demo: Demo) -> None:
    out = demo.stdout
    assert "16 Generate" in out and "standard library's source (stdlib-code@1:" in out
    assert "held-out bits per byte: this model" in out and "Kneser-Ney trigram" in out and "general + LoRA" in out
    assert "code-lm@1 completes 'def read_lines(path):'" in out
    assert "asked of the documentation (pydoc_data topics, python-docs@1" in out and "[1] " in out
    with keel.Workspace(Settings(home=demo.home)) as ws:
        model = ws.models.get("code-lm@1")  # a registered language model, lineage to its corpus version
        assert model.flavor == "lm" and model.datasets == ("stdlib-code@1",)
        assert model.tags["keel.general"] == "prose-lm@1" and model.metrics["ngram_perplexity"] > 1
        assert model.tags["keel.text_column"] == "text"  # the monitor reads the same column for its reference
        kinds = [r["kind"] for r in ws.genai.evaluation("code-lm@1")["rows"]]
        assert kinds == ["domain", "ngram-3", "ngram-2", "general", "general+lora"]
        assert ws.models.get("prose-lm-code@1").tags["keel.base"] == "prose-lm@1"
        answer = ws.genai.ask("python-docs", "How do I catch an exception and handle it?", k=3)
        assert answer.passages[0]["document"] in {"try", "exceptions", "raise"}  # cited by topic name


def test_keel_monitor_show_marks_the_checks_made_before_the_promotion(demo: Demo) -> None:
    from clitools import keel_cli

    code, out, _ = keel_cli(demo.home, "monitor", "show", "credit-risk")
    assert code == 0 and out.count("(before v3)") == 2
    assert "v3 serves now and has no check of its own yet" in out
    runs = keel_json(demo.home, "monitor", "show", "credit-risk")["runs"]
    assert [r["superseded_by"] for r in runs] == [3, 3]


def test_the_demo_ends_consistent_and_stays_quiet_when_left_serving(demo: Demo) -> None:
    """Alerts, health pill and timeline agree at the end; 15 minutes of keel serve's loop later,
    no new alert and no new retraining (the new champion is judged on its own traffic only).
    Runs last: its checks of v3 change what the tests above read."""
    from datetime import UTC, datetime, timedelta

    from keel.workspace.tick import tick

    with keel.Workspace(Settings(home=demo.home)) as ws:
        [decision] = ws.retraining.decisions("credit-risk")
        health = ws.monitoring.health(["credit-risk"])["credit-risk"]
        assert (decision.outcome, decision.version) == ("promoted", 3)
        assert ws.monitoring.alerts.list(model="credit-risk", status="active") == []
        assert (health.state, health.version, health.drifted, health.alerts) == ("pending", 3, (), 0)
        assert [r.superseded_by for r in ws.monitoring.runs("credit-risk")] == [3, 3]  # v2's checks, marked as such
        alerts = {a.id for a in ws.monitoring.alerts.list(model="credit-risk", status="all")}
        jobs = {j.id for j in ws.jobs.list()}

        now = datetime.now(UTC)
        checks = []
        for seconds in range(10, 15 * 60 + 1, 10):  # keel serve's loop ticks every 10 s
            checks += tick(ws, at=now + timedelta(seconds=seconds))["monitors"]
        assert len(checks) >= 2 and {c.run.model_version for c in checks} == {3}  # the monitor ran, on v3
        assert {a.id for a in ws.monitoring.alerts.list(model="credit-risk", status="all")} == alerts
        assert {j.id for j in ws.jobs.list()} == jobs and len(ws.retraining.decisions("credit-risk")) == 1
        assert ws.monitoring.health(["credit-risk"])["credit-risk"].state == "ok"


def test_the_demos_log_lines_go_to_a_file_not_between_the_story(demo: Demo) -> None:
    assert "alert #" not in demo.stdout + demo.stderr
    log = (demo.home / "logs" / "demo.log").read_text()
    assert "alert #1 [warning] credit-risk: Amount drifted" in log
    assert "the server log (logs/demo.log)" in demo.stdout
    numbered = [line for line in demo.stdout.splitlines() if line[:2].strip().isdigit()]
    assert len(numbered) == 16  # steps 1 to 16, their text in one column ('9 Monitor   ', '10 Alert    ')
    assert all(line[11] == " " and line[12] != " " for line in numbered), numbered
