"""The flavour contract, as checks: what every model flavour in keel.registry.FLAVORS must do.

Like scikit-learn's estimator checks, each check is a plain function of a Workspace and a
`FlavorCase` (a fitted model of the flavour, the data it takes, and what the flavour promises about
it) that raises AssertionError when the flavour breaks the contract. A new flavour (an RL policy, a
language model, an edge build) adds one `FlavorCase` to CASES in test_flavor_contract.py and runs
every check; a flavour without a case fails the suite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError, InvalidModelError, SignatureError, UnsafeLoadError
from keel.registry import FLAVORS, flavor_for, get_flavor

__all__ = ["FlavorCase", "CHECKS", "contract_frame"]


@dataclass(frozen=True)
class FlavorCase:
    """One flavour's entry in the contract suite.

    `make` returns a fitted model of the flavour and its training input (columns `age`, an integer,
    and `income`, a float, as contract_frame() gives them); `predict` is how the live model predicts
    (the loaded one must agree). `proba`: the loaded model gives class probabilities.
    `needs_trust`: every artifact of the flavour is code and loads only with trusted=True.
    `make_trusted_only`: for a flavour whose artifacts usually load untrusted, a model of it
    whose artifact needs trusted=True (a scikit-learn pipeline holding a function); None when no
    artifact of the flavour ever does (LightGBM's and XGBoost's formats hold no code).
    """

    flavor: str
    make: Callable[[], tuple[Any, pd.DataFrame]]
    predict: Callable[[Any, pd.DataFrame], Any] = lambda model, X: model.predict(X)
    predict_proba: Callable[[Any, pd.DataFrame], Any] | None = None
    needs_trust: bool = False
    make_trusted_only: Callable[[], tuple[Any, pd.DataFrame]] | None = None
    rtol: float = 1e-6

    @property
    def proba(self) -> bool:
        return self.predict_proba is not None


def contract_frame(n: int = 120) -> tuple[pd.DataFrame, np.ndarray]:
    """Training input with an integer and a float column, and a binary label that depends on both."""
    rng = np.random.default_rng(11)
    X = pd.DataFrame({"age": rng.integers(18, 80, n), "income": rng.normal(50.0, 12.0, n)})
    y = ((X["income"] + 0.2 * X["age"] + rng.normal(0, 4, n)) > 60).to_numpy().astype(int)
    return X, y


def _register(
    ws: keel.Workspace, name: str, case: FlavorCase, model: Any, X: pd.DataFrame, *, trusted: bool = False
) -> Any:
    return ws.models.register(name, model, X=X, flavor=case.flavor, trusted=trusted)


# -- the checks ------------------------------------------------------------------------------------
def _same(got: Any, expected: Any, rtol: float, err_msg: str = "") -> None:
    """Numbers within `rtol`; text (a language model's completions) exactly."""
    a, b = np.asarray(got), np.asarray(expected)
    if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
        assert a.tolist() == b.tolist(), err_msg
    else:
        np.testing.assert_allclose(a, b, rtol=rtol, err_msg=err_msg)


def check_flavor_table(ws: keel.Workspace, case: FlavorCase) -> None:
    """The flavour is found by its name, accepts its model, and is chosen for it unless by name only."""
    flavor = get_flavor(case.flavor)
    assert FLAVORS[case.flavor] is flavor and flavor.name == case.flavor
    model, _ = case.make()
    assert flavor.accepts(model), f"{case.flavor} does not accept its own model {type(model).__name__}"
    if flavor.by_name_only:
        try:
            picked = flavor_for(model).name
        except InvalidInputError:  # no safe format: the caller must name this flavour
            picked = None
        assert picked != case.flavor, f"{case.flavor} is by name only, yet flavor_for() picked it"
    else:
        assert flavor_for(model) is flavor, f"flavor_for() picked {flavor_for(model).name} for a {case.flavor} model"
    assert flavor.needs_trust == case.needs_trust
    assert isinstance(flavor.format, str) and flavor.format, f"{case.flavor} has no format to describe"


def check_round_trip(ws: keel.Workspace, case: FlavorCase) -> None:
    """save -> load -> predict gives what the live model gives, for a frame, records and a dict of columns."""
    model, X = case.make()
    mv = _register(ws, "contract-round-trip", case, model, X)
    assert mv.flavor == case.flavor
    loaded = ws.models.load(mv.ref, trusted=case.needs_trust)
    assert loaded.flavor == case.flavor
    expected = np.asarray(case.predict(model, X))
    got = loaded.predict(X)
    assert got.shape[0] == len(X)
    _same(got, expected, rtol=case.rtol, err_msg=f"{case.flavor}: loaded predictions differ")
    records = X.to_dict(orient="records")  # the all-numeric fast path
    _same(loaded.predict(records), got, rtol=case.rtol, err_msg="records predict otherwise")
    columns = {c: X[c].tolist() for c in X.columns}
    _same(loaded.predict(columns), got, rtol=case.rtol, err_msg="a dict of columns predicts otherwise")
    labels, proba = loaded.predict_and_proba(records)
    _same(labels, got, rtol=case.rtol, err_msg="predict_and_proba's labels differ from predict's")
    assert (proba is not None) == case.proba


def check_predict_proba(ws: keel.Workspace, case: FlavorCase) -> None:
    """Where it applies, predict_proba agrees with the live model, one column per class; else it is refused clearly."""
    model, X = case.make()
    loaded = ws.models.load(_register(ws, "contract-proba", case, model, X).ref, trusted=case.needs_trust)
    assert loaded.has_proba == case.proba
    if case.predict_proba is None:
        with pytest.raises(InvalidInputError, match="does not give class probabilities"):
            loaded.predict_proba(X)
        return
    proba = loaded.predict_proba(X)
    assert loaded.classes is not None and proba.shape == (len(X), len(loaded.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(proba, np.asarray(case.predict_proba(model, X)), rtol=case.rtol)
    np.testing.assert_allclose(loaded.predict_and_proba(X)[1], proba, rtol=case.rtol)


def check_describe(ws: keel.Workspace, case: FlavorCase) -> None:
    """describe() names the version, the flavour, its format and the input, in JSON-ready values."""
    model, X = case.make()
    mv = _register(ws, "contract-describe", case, model, X)
    loaded = ws.models.load(mv.ref, trusted=case.needs_trust)
    described = loaded.describe()
    json.dumps(described)  # JSON-ready: the CLI and the API may show it as is
    assert described["ref"] == mv.ref and described["flavor"] == case.flavor
    assert described["format"] == get_flavor(case.flavor).format
    assert isinstance(described["type"], str) and described["type"]
    assert described["inputs"] == list(X.columns)
    assert described["proba"] == case.proba


def check_signature(ws: keel.Workspace, case: FlavorCase) -> None:
    """A missing column and a mistyped one are refused before the model runs, with errors naming them."""
    model, X = case.make()
    loaded = ws.models.load(_register(ws, "contract-signature", case, model, X).ref, trusted=case.needs_trust)
    with pytest.raises(SignatureError, match="income") as missing:
        loaded.predict(X.drop(columns="income"))
    assert missing.value.missing == ("income",)
    wrong = X.head(3).astype({"age": object})
    wrong["age"] = ["old", "young", "middle"]
    with pytest.raises(SignatureError, match="age") as mistyped:
        loaded.predict(wrong)
    assert [m[0] for m in mistyped.value.mistyped] == ["age"]
    records = [{"age": "old", "income": 1.0}]
    with pytest.raises(SignatureError, match="age"):
        loaded.predict(records)


def check_trust(ws: keel.Workspace, case: FlavorCase) -> None:
    """An artifact that needs trust refuses to load untrusted (UnsafeLoadError saying trusted=True) and
    loads with trusted=True; the flavour's other artifacts load untrusted."""
    flavor = get_flavor(case.flavor)
    make = case.make if case.needs_trust else case.make_trusted_only
    if not case.needs_trust:  # its plain artifacts load as the server loads them
        model, X = case.make()
        mv = _register(ws, "contract-untrusted", case, model, X)
        flavor.audit(ws.models.artifact_bytes(mv), trusted=False)
        assert ws.models.load(mv.ref).predict(X.head(3)).shape[0] == 3
    if make is None:
        return
    model, X = make()
    with pytest.raises(InvalidModelError, match="trusted=True"):
        ws.models.register_artifact("contract-refused", flavor.save(model), flavor=case.flavor)
    mv = _register(ws, "contract-trusted", case, model, X, trusted=True)
    data = ws.models.artifact_bytes(mv)
    with pytest.raises(UnsafeLoadError, match="trusted=True"):
        flavor.audit(data, trusted=False)
    with pytest.raises(UnsafeLoadError, match="trusted=True"):
        ws.models.load(mv.ref)
    loaded = ws.models.load(mv.ref, trusted=True)
    _same(loaded.predict(X), np.asarray(case.predict(model, X)), rtol=case.rtol)


def check_malformed_bytes(ws: keel.Workspace, case: FlavorCase) -> None:
    """Bytes that are not an artifact of the flavour are refused at registration, even trusted, and store nothing."""
    with pytest.raises(InvalidModelError):
        ws.models.register_artifact("contract-garbage", b"\x00 not a model \xff", flavor=case.flavor, trusted=True)
    assert ws.models.list() == []


CHECKS: tuple[Callable[[keel.Workspace, FlavorCase], None], ...] = (
    check_flavor_table,
    check_round_trip,
    check_predict_proba,
    check_describe,
    check_signature,
    check_trust,
    check_malformed_bytes,
)
