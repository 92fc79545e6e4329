"""The promotion gate, on metrics with known answers."""

from __future__ import annotations

from typing import Any

from keel.retraining import Project
from keel.retraining.gate import judge


def project(**gate: Any) -> Project:
    return Project.from_dict(
        {
            "model": "m",
            "data": {"dataset": "d", "target": "y"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "evaluation": {"metrics": ["roc_auc", "accuracy", "log_loss"], "primary": "roc_auc"},
            "gate": gate,
        }
    )


def test_no_champion_passes_on_the_challenger_alone() -> None:
    v = judge(project(), {"roc_auc": 0.8}, None)
    assert v.passed and "no champion" in v.reasons[0]


def test_primary_must_improve_by_the_minimum() -> None:
    assert judge(project(min_improvement=0.01), {"roc_auc": 0.815}, {"roc_auc": 0.80}).passed
    v = judge(project(min_improvement=0.01), {"roc_auc": 0.805}, {"roc_auc": 0.80})
    assert not v.passed and v.checks["primary"]["gain"] == 0.805 - 0.80
    assert not judge(project(), {"roc_auc": 0.79}, {"roc_auc": 0.80}).passed


def test_lower_is_better_metrics_count_the_right_way() -> None:
    p = Project.from_dict({**project().to_dict(), "evaluation": {"metrics": ["log_loss"], "primary": "log_loss"}})
    assert judge(p, {"log_loss": 0.40}, {"log_loss": 0.45}).passed
    assert not judge(p, {"log_loss": 0.50}, {"log_loss": 0.45}).passed


def test_tolerances_bound_regressions_of_the_other_metrics() -> None:
    p = project(tolerance={"accuracy": 0.01, "log_loss": 0.02})
    good = judge(
        p, {"roc_auc": 0.85, "accuracy": 0.795, "log_loss": 0.41}, {"roc_auc": 0.80, "accuracy": 0.80, "log_loss": 0.40}
    )
    assert good.passed
    bad = judge(
        p, {"roc_auc": 0.85, "accuracy": 0.78, "log_loss": 0.41}, {"roc_auc": 0.80, "accuracy": 0.80, "log_loss": 0.40}
    )
    assert not bad.passed and any("accuracy regresses by 0.0200" in r for r in bad.reasons)
    assert bad.checks["tolerance:log_loss"]["passed"] and not bad.checks["tolerance:accuracy"]["passed"]


def test_custom_checks_can_veto_with_a_reason() -> None:
    v = judge(project(), {"roc_auc": 0.9}, {"roc_auc": 0.8}, custom={"fair:check": (False, "gap 0.12 between groups")})
    assert not v.passed and "check fair:check failed: gap 0.12 between groups" in v.reasons
    assert judge(project(), {"roc_auc": 0.9}, {"roc_auc": 0.8}, custom={"ok:check": True}).passed
