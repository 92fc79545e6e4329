"""The model project file: every wrong key or value is refused with its location."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.retraining import Project, ProjectError, load_project

from . import gate_checks

CHECKS = gate_checks.__name__  # importable by name, as a project file would name it

EXAMPLE = """\
model: credit-risk
data:
  dataset: credit
  target: Status
  features: [Seniority, Income, Home]
  split: {test_fraction: 0.2, seed: 7, stratify: true}
estimator:
  class: sklearn.ensemble.HistGradientBoostingClassifier
  params: {learning_rate: 0.05, max_iter: 200}
evaluation:
  metrics: [roc_auc, accuracy, log_loss]
  primary: roc_auc
gate:
  min_improvement: 0.002
  tolerance: {accuracy: 0.01, log_loss: 0.02}
  checks: ["CHECKS:allow"]
  approval: true
monitoring:
  window_rows: 1000
  schedule_s: 300
  rules:
    - {name: income-psi, metric: psi, op: ">", threshold: 0.3, feature: Income}
retraining:
  triggers: [alert, new_data, schedule, manual]
  alert_rules: [feature-drift, auc-drop]
  schedule: "0 3 * * 1-5"
  debounce_s: 600
  data: reference+production
""".replace("CHECKS", CHECKS)


def base() -> dict[str, Any]:
    return {
        "model": "m",
        "data": {"dataset": "d", "target": "y"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    }


def test_the_documented_example_parses_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "keel.yaml"
    path.write_text(EXAMPLE)
    p = load_project(path)
    assert (p.model, p.data.dataset, p.data.target, p.data.features) == (
        "credit-risk",
        "credit",
        "Status",
        ("Seniority", "Income", "Home"),
    )
    assert (p.data.split.test_fraction, p.data.split.seed) == (0.2, 7)
    assert (
        p.estimator.cls == "sklearn.ensemble.HistGradientBoostingClassifier" and p.estimator.params["max_iter"] == 200
    )
    assert p.evaluation.primary == "roc_auc" and p.gate.tolerance == {"accuracy": 0.01, "log_loss": 0.02}
    assert p.gate.approval is True and p.gate.checks == (f"{CHECKS}:allow",)
    assert p.monitoring == {"window_rows": 1000, "schedule_s": 300.0}
    assert p.alert_rules[0]["feature"] == "Income"
    assert (
        p.retraining.triggers == ("alert", "new_data", "schedule", "manual") and p.retraining.schedule == "0 3 * * 1-5"
    )
    assert p.retraining.data == "reference+production" and p.source == "keel.yaml"
    assert Project.from_dict(p.to_dict(), source="keel.yaml") == p


def test_the_edge_section_parses_with_defaults_and_round_trips() -> None:
    raw = {
        **base(),
        "edge": {
            "targets": [
                {"quantize": "int16"},
                {"target": "c", "quantize": "int8", "mcu": "cortex-m0", "min_agreement": 0.99},
            ],
            "on_failure": "alert",
        },
    }
    p = Project.from_dict(raw)
    assert p.edge is not None and [t.label for t in p.edge.targets] == ["c/int16/cortex-m4", "c/int8/cortex-m0"]
    assert (p.edge.min_agreement, p.edge.on_failure, p.edge.qemu) == (1.0, "alert", True)
    assert p.edge.targets[1].min_agreement == 0.99 and p.edge.targets[0].min_agreement is None
    assert Project.from_dict(p.to_dict()) == p
    assert Project.from_dict(base()).edge is None


def test_defaults_fill_what_a_small_project_leaves_out() -> None:
    p = Project.from_dict(base())
    assert p.data.features is None and p.data.split.test_fraction == 0.25
    assert p.evaluation.primary == "roc_auc" and p.retraining.triggers == ("manual",)
    assert p.gate.approval is False and p.estimator.preprocess == "auto"
    assert Project.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modle": "x"}, "<dict>: modle: unknown key"),
        ({"data": {"dataset": "d"}}, "data: missing required key 'target'"),
        (
            {"data": {"dataset": "d", "target": "y", "split": {"test_fraction": 0.9}}},
            "data.split.test_fraction: expected a fraction between 0.05 and 0.5, got 0.9",
        ),
        ({"data": {"dataset": "d", "target": "y", "features": ["a", "y"]}}, "data.features: includes the target 'y'"),
        ({"data": {"dataset": "bad name", "target": "y"}}, "data.dataset:"),
        ({"estimator": {"class": "LogisticRegression"}}, "estimator.class: expected a dotted class path"),
        ({"estimator": {"class": "a.B", "entry_point": "a:b"}}, "estimator: give exactly one of"),
        ({"estimator": {"entry_point": "a.b"}}, "estimator.entry_point: expected module:function"),
        ({"estimator": {"class": "a.B", "preprocess": "magic"}}, "estimator.preprocess: expected 'auto' or 'none'"),
        ({"evaluation": {"metrics": ["auc"]}}, "evaluation.metrics[0]: unknown metric"),
        (
            {"gate": {"tolerance": {"accuracy": "high"}}},
            "gate.tolerance.accuracy: expected a number >= 0, got str 'high'",
        ),
        ({"gate": {"tolerance": {"f1": 0.1}}}, "gate.tolerance.f1: is not one of evaluation.metrics"),
        ({"gate": {"approval": "yes"}}, "gate.approval: expected true or false"),
        ({"gate": {"shadow_rows": 0}}, "gate.shadow_rows: expected an integer >= 1"),
        ({"tuning": {"params": {"lr": {"low": 0.3, "high": 0.1}}}}, "tuning.params.lr: expected low < high"),
        (
            {"tuning": {"params": {"lr": {"low": 0, "high": 1, "log": True}}}},
            "tuning.params.lr.low: a log range needs low > 0",
        ),
        ({"tuning": {"trials": 3}}, "tuning: missing required key 'params'"),
        ({"monitoring": {"window_rows": 0}}, "monitoring.window_rows: expected an integer >= 1"),
        (
            {"monitoring": {"rules": [{"name": "r", "metric": "psi", "op": ">"}]}},
            "monitoring.rules[0]: missing required key 'threshold'",
        ),
        ({"retraining": {"triggers": ["alarm"]}}, "retraining.triggers[0]: unknown trigger"),
        (
            {"retraining": {"triggers": ["schedule"]}},
            "retraining.schedule: the 'schedule' trigger needs a cron expression",
        ),
        ({"retraining": {"schedule": "every day"}}, "retraining.schedule: expected a cron expression of 5 fields"),
        ({"retraining": {"data": "all"}}, "retraining.data: expected one of latest, reference+production"),
        ({"edge": {"on_failure": "gate"}}, "edge: missing required key 'targets'"),
        ({"edge": {"targets": []}}, "edge.targets: expected at least one target"),
        ({"edge": {"targets": [{"target": "wasm"}]}}, "edge.targets[0].target: expected one of c, onnx"),
        ({"edge": {"targets": [{"mcu": "z80"}]}}, "edge.targets[0].mcu: expected one of cortex-m4, cortex-m0, host"),
        ({"edge": {"targets": [{"quantize": "int8", "min_agreement": 1.5}]}}, "edge.targets[0].min_agreement:"),
        ({"edge": {"targets": [{}, {"target": "c"}]}}, "edge.targets: c/float32/cortex-m4 named more than once"),
        ({"edge": {"targets": [{}], "on_failure": "ignore"}}, "edge.on_failure: expected one of gate, alert"),
        ({"edge": {"targets": [{}], "qemu": "yes"}}, "edge.qemu: expected true or false"),
    ],
)
def test_each_mistake_is_named_with_its_location(change: dict[str, Any], message: str) -> None:
    raw = {**base(), **change}
    with pytest.raises(ProjectError) as caught:
        Project.from_dict(raw)
    assert message in str(caught.value)


def test_file_errors_name_the_file_and_the_yaml_position(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no such project file"):
        load_project(tmp_path / "missing.yaml")
    bad = tmp_path / "keel.yaml"
    bad.write_text("model: m\ndata: [unclosed\n")
    with pytest.raises(ProjectError, match=r"keel.yaml: not valid YAML \(line \d+, column \d+\)"):
        load_project(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ProjectError, match="keel.yaml: top level: expected a mapping, got list"):
        load_project(bad)


@pytest.mark.parametrize(
    ("where", "line", "message"),
    [
        ("gate.checks[0]", f'  checks: ["{CHECKS}:allow"]', "'my_pkg.checks:fair': cannot import 'my_pkg.checks'"),
        (
            "estimator.class",
            "  class: sklearn.ensemble.HistGradientBoostingClassifier",
            "'sklearn.ensemble.Nope': 'sklearn.ensemble' has no 'Nope'",
        ),
    ],
)
def test_every_import_path_is_resolved_when_the_file_is_parsed(
    tmp_path: Path, where: str, line: str, message: str
) -> None:
    replacement = {
        "gate.checks[0]": '  checks: ["my_pkg.checks:fair"]',
        "estimator.class": "  class: sklearn.ensemble.Nope",
    }[where]
    path = tmp_path / "keel.yaml"
    path.write_text(EXAMPLE.replace(line, replacement))
    with pytest.raises(ProjectError, match=re.escape(f"keel.yaml: {where}: {message}")):
        load_project(path)  # at once: before any data is read or any model trained
    assert Project.from_dict(yaml.safe_load(path.read_text())).model == "credit-risk"  # a stored project stays readable
