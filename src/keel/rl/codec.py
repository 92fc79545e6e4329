"""Twins and classic policies as plain JSON values and back: what the workspace stores with a twin
version (the system, the demand model and how it was fitted) and with its results (the best classic
policies, the optimum). Pure; every reader checks what it is given, because a stored record may come
from an older version or an API client (InvalidInputError names the field)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from keel.errors import InvalidInputError
from keel.rl.demand import DemandFit, Empirical, NegativeBinomial, Poisson
from keel.rl.dp import Optimum
from keel.rl.evaluate import Evaluation
from keel.rl.policies import SS, BaseStock, CappedBaseStock, Policy, SeasonalBaseStock
from keel.rl.spec import Costs, Demand, InventorySpec

__all__ = [
    "demand_from_dict",
    "demand_to_dict",
    "evaluation_to_dict",
    "fit_to_dict",
    "optimum_to_dict",
    "policy_from_dict",
    "policy_to_dict",
    "spec_from_dict",
    "spec_to_dict",
]

_SPEC_KEYS = ("lead_time", "lost_sales", "capacity", "shelf_life", "max_order")
_COST_KEYS = ("holding", "penalty", "fixed_order", "unit")


def spec_to_dict(spec: InventorySpec) -> dict[str, Any]:
    out: dict[str, Any] = {k: getattr(spec, k) for k in _SPEC_KEYS}
    out["costs"] = {k: float(getattr(spec.costs, k)) for k in _COST_KEYS}
    return out


def spec_from_dict(raw: Mapping[str, Any]) -> InventorySpec:
    """An InventorySpec from `spec_to_dict`'s form (or a user's partial one: missing keys take defaults)."""
    _known(raw, (*_SPEC_KEYS, "costs"), "system")
    costs = raw.get("costs") or {}
    _known(costs, _COST_KEYS, "costs")
    try:
        return InventorySpec(
            **{k: raw[k] for k in _SPEC_KEYS if k in raw}, costs=Costs(**{k: float(v) for k, v in costs.items()})
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"system: {exc}") from None


def demand_to_dict(model: Demand) -> dict[str, Any]:
    if isinstance(model, Poisson):
        return {"family": "poisson", "rate": model.rate, "seasonal": _list(model.seasonal)}
    if isinstance(model, NegativeBinomial):
        return {
            "family": "negbin",
            "mean": model.level,
            "dispersion": model.dispersion,
            "seasonal": _list(model.seasonal),
        }
    if isinstance(model, Empirical):
        return {"family": "empirical", "probabilities": [list(row) for row in model.probabilities]}
    raise InvalidInputError(f"no stored form for a demand model of type {type(model).__name__}")


def demand_from_dict(raw: Mapping[str, Any]) -> Demand:
    family = raw.get("family")
    try:
        if family == "poisson":
            _known(raw, ("family", "rate", "seasonal"), "demand")
            return Poisson(float(raw["rate"]), raw.get("seasonal"))
        if family == "negbin":
            _known(raw, ("family", "mean", "dispersion", "seasonal"), "demand")
            return NegativeBinomial(float(raw["mean"]), float(raw["dispersion"]), raw.get("seasonal"))
        if family == "empirical":
            _known(raw, ("family", "probabilities"), "demand")
            return Empirical(tuple(tuple(float(p) for p in row) for row in raw["probabilities"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"demand ({family}): missing or malformed {exc}") from None
    raise InvalidInputError(f"demand.family must be one of poisson, negbin, empirical; got {family!r}")


def fit_to_dict(fit: DemandFit) -> dict[str, Any]:
    """How the demand model was chosen: every candidate's likelihood, AIC and goodness of fit."""
    return {
        "family": fit.family,
        "reason": fit.reason,
        "n_periods": fit.n_periods,
        "season": fit.season,
        "seasonal": fit.seasonal,
        "seasonal_factors": _list(fit.seasonal_factors),
        "seasonality_method": fit.seasonality_method,
        "seasonality_p_value": _num(fit.seasonality_p_value),
        "candidates": [
            {
                "family": c.family,
                "log_likelihood": _num(c.log_likelihood),
                "n_params": c.n_params,
                "aic": _num(c.aic),
                "gof_test": c.gof_test,
                "gof_statistic": _num(c.gof_statistic),
                "gof_p_value": _num(c.gof_p_value),
            }
            for c in fit.candidates
        ],
    }


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    if isinstance(policy, BaseStock):
        return {"kind": "base-stock", "level": int(policy.level)}
    if isinstance(policy, CappedBaseStock):
        return {"kind": "capped base-stock", "level": int(policy.level), "cap": int(policy.cap)}
    if isinstance(policy, SS):
        return {"kind": "(s,S)", "s": int(policy.s), "S": int(policy.S)}
    if isinstance(policy, SeasonalBaseStock):
        return {"kind": "seasonal base-stock", "levels": [int(v) for v in policy.levels]}
    raise InvalidInputError(f"no stored form for a policy of type {type(policy).__name__}")


def policy_from_dict(raw: Mapping[str, Any]) -> BaseStock | CappedBaseStock | SS | SeasonalBaseStock:
    kind = raw.get("kind")
    try:
        if kind == "base-stock":
            return BaseStock(int(raw["level"]))
        if kind == "capped base-stock":
            return CappedBaseStock(int(raw["level"]), int(raw["cap"]))
        if kind == "(s,S)":
            return SS(int(raw["s"]), int(raw["S"]))
        if kind == "seasonal base-stock":
            return SeasonalBaseStock(tuple(int(v) for v in raw["levels"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"policy ({kind}): missing or malformed {exc}") from None
    raise InvalidInputError(
        f"policy kind must be one of base-stock, capped base-stock, (s,S), seasonal base-stock; got {kind!r}"
    )


def evaluation_to_dict(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "policy": evaluation.policy,
        "cost": evaluation.cost,
        "se": evaluation.se,
        "copies": evaluation.copies,
        "periods": evaluation.periods,
        "warmup": evaluation.warmup,
        "seed": evaluation.seed,
    }


def optimum_to_dict(found: Optimum) -> dict[str, Any]:
    """The optimum's cost and structure (the full policy table stays in memory: it can be large)."""
    return {
        "cost": found.cost,
        "gap_bound": found.gap_bound,
        "method": found.method,
        "iterations": found.iterations,
        "seconds": found.seconds,
        "base_stock": found.base_stock,
        "s": found.s,
        "S": found.S,
    }


def _known(raw: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{where} must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise InvalidInputError(f"{where}: unknown keys {unknown}; known: {', '.join(keys)}")


def _list(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
