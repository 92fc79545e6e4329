"""Reinforcement learning on digital twins (compute: values in, values out; never storage)."""

from keel.rl.agent import ActionMap, TrainedPolicy, policy_from_bytes, policy_to_bytes, train_policy, train_seeds
from keel.rl.demand import DemandFit, Empirical, NegativeBinomial, Poisson, fit_demand, scale_to_units
from keel.rl.dp import Optimum, PolicyCost, base_stock_cost, best_base_stock, best_s_S, optimum, s_S_cost
from keel.rl.evaluate import (
    ClassicSearch,
    Comparison,
    Evaluation,
    best_classic,
    best_serial_base_stock,
    compare,
    evaluate,
    evaluate_many,
)
from keel.rl.inventory import InventoryTwin
from keel.rl.policies import SS, BaseStock, CappedBaseStock, EchelonBaseStock, SeasonalBaseStock
from keel.rl.serial import SerialTwin, or_gym_spec

__all__ = [
    "SS",
    "BaseStock",
    "CappedBaseStock",
    "ClassicSearch",
    "Comparison",
    "EchelonBaseStock",
    "Evaluation",
    "InventoryTwin",
    "SeasonalBaseStock",
    "SerialTwin",
    "best_classic",
    "best_serial_base_stock",
    "compare",
    "evaluate",
    "evaluate_many",
    "or_gym_spec",
    # demand models and their fit (demand.py); the exact optimum and classic-policy costs (dp.py)
    "DemandFit",
    "Empirical",
    "NegativeBinomial",
    "Poisson",
    "fit_demand",
    "scale_to_units",
    "Optimum",
    "PolicyCost",
    "base_stock_cost",
    "best_base_stock",
    "best_s_S",
    "optimum",
    "s_S_cost",
    # trained policies (agent.py; torch and SB3 are imported only when training)
    "ActionMap",
    "TrainedPolicy",
    "policy_from_bytes",
    "policy_to_bytes",
    "train_policy",
    "train_seeds",
]
