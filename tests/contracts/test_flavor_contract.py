"""Every model flavour in keel.registry.FLAVORS passes every check of flavor_contract.CHECKS.

A new flavour adds one FlavorCase to CASES below; until it does, test_every_flavour_has_a_case fails.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from flavor_contract import CHECKS, FlavorCase, contract_frame  # tests/contracts is on sys.path (rootdir import mode)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import keel
from keel.causal import PolicyTree
from keel.registry import FLAVORS

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:X does not have valid feature names"
)


# -- a model of each flavour -----------------------------------------------------------------------
def income_score(frame: pd.DataFrame) -> np.ndarray:
    """A callable model: a module-level function of the validated frame."""
    return frame["income"].to_numpy() * 2 + frame["age"].to_numpy()


def shift(X: Any) -> Any:
    """A function a scikit-learn pipeline holds: its skops file then needs trusted=True."""
    return X + 1.0


class ThresholdModel:
    """A model keel has no safe format for: it is registered with flavor='pickle'."""

    def __init__(self) -> None:
        self.classes_ = np.array([0, 1])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(np.asarray(X["income"], dtype=float) - 55.0) / 5.0))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]  # type: ignore[no-any-return]


def _sklearn() -> tuple[Any, pd.DataFrame]:
    X, y = contract_frame()
    return LogisticRegression(max_iter=500).fit(X, y), X


def _sklearn_on_arrays() -> tuple[Any, pd.DataFrame]:
    X, y = contract_frame()  # fitted on an array: no feature names, so keel feeds it an array
    return LogisticRegression(max_iter=500).fit(X.to_numpy(), y), X


def _sklearn_with_a_function() -> tuple[Any, pd.DataFrame]:
    X, y = contract_frame()
    return make_pipeline(FunctionTransformer(shift), LogisticRegression(max_iter=500)).fit(X, y), X


def _lightgbm() -> tuple[Any, pd.DataFrame]:
    X, y = contract_frame()
    return lgb.LGBMClassifier(n_estimators=15, num_leaves=7, min_child_samples=5, verbose=-1).fit(X, y), X


def _xgboost() -> tuple[Any, pd.DataFrame]:
    X, y = contract_frame()
    return xgb.XGBRegressor(n_estimators=15, max_depth=3).fit(X, y.astype(float)), X


def _callable() -> tuple[Any, pd.DataFrame]:
    return income_score, contract_frame()[0]


def _pickle() -> tuple[Any, pd.DataFrame]:
    return ThresholdModel(), contract_frame()[0]


def _policy() -> tuple[Any, pd.DataFrame]:
    """A policy tree (which of three offers for whom) as keel.causal learns them: actions are integers."""
    tree = PolicyTree.from_dict(
        {
            "format": "keel.policy_tree/1",
            "features": ["age", "income"],
            "actions": [0, 1, 2],
            "baseline": 0,
            "nodes": [
                {"feature": "age", "threshold": 40.5, "left": 1, "right": 2},
                {"action": 1, "expected_outcomes": [0.0, 1.2, 0.4], "n": 50},
                {"feature": "income", "threshold": 55.0, "left": 3, "right": 4},
                {"action": 0, "expected_outcomes": [0.3, 0.1, 0.2], "n": 30},
                {"action": 2, "expected_outcomes": [0.1, 0.5, 0.9], "n": 40},
            ],
        }
    )
    return tree, contract_frame()[0]


def _network_policy() -> tuple[Any, pd.DataFrame]:
    """A trained decision policy (keel.rl) whose observations are the frame's columns: the order is an
    order-up-to level on `age` from a small tanh network (weights seeded, not trained: the contract is
    about storing and serving it, bench/rl.py about training it)."""
    from keel.rl.agent import ActionMap, TrainedPolicy

    rng = np.random.default_rng(0)
    X = contract_frame()[0]
    mean, var = X.mean().to_numpy(np.float32), X.var().to_numpy(np.float32)
    weights = (
        rng.normal(0, 0.5, (2, 8)).astype(np.float32),
        np.zeros(8, np.float32),
        rng.normal(0, 0.5, (8, 1)).astype(np.float32),
        np.zeros(1, np.float32),
    )
    action = ActionMap("order_up_to", (60.0,), (30.0,), (100,))
    return TrainedPolicy(weights, "tanh", mean, var, 10.0, action, ("age", "income")), X


def _lm() -> tuple[Any, pd.DataFrame]:
    """A tiny language model trained a few steps (keel.genai); it reads the `prompt` column (the contract's
    `age` and `income` columns ride along, so the signature checks apply as to every flavour)."""
    from keel.genai.lm import GPTConfig
    from keel.genai.train import train_lm

    texts = [f"def add_{i}(x, y):\n    return x + y * {i % 7}\n" for i in range(60)]
    lm = train_lm(texts, config=GPTConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=32, block_size=32), steps=20)
    X = contract_frame()[0].head(6).copy()
    X["prompt"] = [f"def add_{i}(" for i in range(6)]
    return lm, X


def _lm_predict(lm: Any, X: pd.DataFrame) -> Any:
    from keel.genai.generation import generate

    return np.array([generate(lm, p, max_tokens=32, temperature=0.0).text for p in X["prompt"]], dtype=object)


def _torch() -> tuple[Any, pd.DataFrame]:
    """A torch Sequential classifier (labels in its `classes` attribute), fitted a few steps on the frame."""
    import torch

    X, y = contract_frame()
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2), torch.nn.Softmax(dim=1)
    )
    rows, target = torch.tensor(X.to_numpy(), dtype=torch.float32), torch.tensor(y)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(30):
        optimiser.zero_grad()
        torch.nn.functional.nll_loss(torch.log(net(rows)), target).backward()
        optimiser.step()
    net.eval()
    net.classes = [0, 1]
    return net, X


def _torch_outputs(model: Any, X: pd.DataFrame) -> Any:
    import torch

    rows = np.ascontiguousarray(X.to_numpy(), dtype=np.float32)  # row-major, as keel feeds it: a column-major
    with torch.no_grad():  # input changes the matmul's summation order, and so the last bit of the output
        return model(torch.from_numpy(rows)).numpy()


def _proba(model: Any, X: pd.DataFrame) -> Any:
    return model.predict_proba(X)


def _predict_array(model: Any, X: pd.DataFrame) -> Any:
    return model.predict(X.to_numpy())


def _proba_array(model: Any, X: pd.DataFrame) -> Any:
    return model.predict_proba(X.to_numpy())


CASES: dict[str, FlavorCase] = {
    "sklearn": FlavorCase("sklearn", _sklearn, predict_proba=_proba, make_trusted_only=_sklearn_with_a_function),
    "sklearn-on-arrays": FlavorCase("sklearn", _sklearn_on_arrays, predict=_predict_array, predict_proba=_proba_array),
    "lightgbm": FlavorCase("lightgbm", _lightgbm, predict_proba=_proba, rtol=1e-5),
    "xgboost": FlavorCase("xgboost", _xgboost, rtol=1e-5),
    "callable": FlavorCase("callable", _callable, predict=lambda fn, X: fn(X), needs_trust=True),
    "pickle": FlavorCase("pickle", _pickle, predict_proba=_proba, needs_trust=True),
    "policy": FlavorCase("policy", _policy),
    "lm": FlavorCase("lm", _lm, predict=_lm_predict),
    "policy-network": FlavorCase(
        "policy", _network_policy, predict=lambda p, X: p.act(X[["age", "income"]].to_numpy(np.float64))
    ),
    "torch": FlavorCase(
        "torch",
        _torch,
        predict=lambda net, X: np.asarray(net.classes)[np.argmax(_torch_outputs(net, X), axis=1)],
        predict_proba=_torch_outputs,
    ),
}


# -- the suite -------------------------------------------------------------------------------------
def test_every_flavour_has_a_case() -> None:
    missing = sorted(set(FLAVORS) - {case.flavor for case in CASES.values()})
    assert not missing, (
        f"flavours without a contract case: {', '.join(missing)}; add a FlavorCase for each to CASES "
        "in tests/contracts/test_flavor_contract.py"
    )


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
@pytest.mark.parametrize("case", sorted(CASES))
def test_flavour_contract(case: str, check: Any, ws: keel.Workspace) -> None:
    check(ws, CASES[case])
