"""Reading a model project's `policy:` section (a decision policy trained on a digital twin) into
project.PolicyProject, with every error located like the rest of the file (_project_parse.py)."""

from __future__ import annotations

from typing import Any

from keel.retraining._project_parse import At, _bool, _mapping, _metric, _num, _str
from keel.retraining.project import POLICY_METRICS, Estimator, Evaluation, PolicyProject

__all__ = ["policy_sections"]

_PERIODS = ("hour", "day", "week", "month", "quarter")
_ACTIONS = ("order_up_to", "delta", "quantity")
_COSTS = ("holding", "penalty", "fixed_order", "unit")
_KEYS = {
    "twin",
    "lead_time",
    "costs",
    "lost_sales",
    "capacity",
    "shelf_life",
    "time_column",
    "period",
    "season",
    "scale",
    "steps",
    "seeds",
    "action",
    "n_envs",
    "periods",
    "copies",
}


def policy_sections(doc: dict[str, Any], top: At, model: str) -> tuple[PolicyProject, Estimator, Evaluation]:
    """The `policy:` section, and the estimator and evaluation a policy project implies (no estimator:
    PPO on the twin; the one metric `cost`)."""
    if "estimator" in doc:
        raise (top / "estimator").fail("a policy project trains PPO on its twin: leave the estimator out")
    evaluation = Evaluation(POLICY_METRICS, "cost")
    if "evaluation" in doc:
        e = _mapping(doc["evaluation"], top / "evaluation", {"metrics", "primary"})
        named = [_metric(m, top / "evaluation" / "metrics") for m in (e.get("metrics") or [])] + (
            [_metric(e["primary"], top / "evaluation" / "primary")] if "primary" in e else []
        )
        if any(m != "cost" for m in named):
            raise (top / "evaluation").fail("a policy project is judged on 'cost' only (per period, on its twin)")
    return _policy(doc["policy"], top / "policy", model), Estimator(), evaluation


def _policy(raw: Any, at: At, model: str) -> PolicyProject:
    p = _mapping(raw, at, _KEYS)

    def whole(key: str, default: int | None, low: int) -> int | None:
        value = p.get(key, default)
        return None if value is None else int(_num(value, at / key, lo=low, what=f"an integer >= {low}"))

    costs = _mapping(p.get("costs", {}), at / "costs", set(_COSTS))
    for key, value in costs.items():
        costs[key] = _num(value, at / "costs" / key, lo=0, what="a number >= 0")
    for key, allowed in (("period", _PERIODS), ("action", _ACTIONS)):
        if key in p and p[key] not in allowed:
            raise (at / key).fail(f"expected one of {', '.join(allowed)}, got {p[key]!r}")
    return PolicyProject(
        twin=_str(p.get("twin", model), at / "twin"),
        lead_time=whole("lead_time", 2, 0) or 0,
        costs=costs,
        lost_sales=_bool(p.get("lost_sales", False), at / "lost_sales"),
        capacity=whole("capacity", None, 1),
        shelf_life=whole("shelf_life", None, 1),
        time_column=None if p.get("time_column") is None else _str(p["time_column"], at / "time_column"),
        period=p.get("period"),
        season=whole("season", None, 1),
        scale=None if p.get("scale") is None else _num(p["scale"], at / "scale", lo=1e-12, what="a number > 0"),
        steps=whole("steps", 200_000, 256) or 200_000,
        seeds=whole("seeds", 1, 1) or 1,
        action=p.get("action", "order_up_to"),
        n_envs=whole("n_envs", 8, 1) or 8,
        periods=whole("periods", 500, 10) or 500,
        copies=whole("copies", 256, 10) or 256,
    )
