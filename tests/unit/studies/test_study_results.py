"""Stored study results (refutation, sensitivity, effect change), lineage to a model version, the
rerun loop with its drift alert, and the what-if model cache."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

import keel
from keel.errors import InvalidInputError, NotFoundError

EDGES = [("age", "treat"), ("educ", "treat"), ("age", "y"), ("educ", "y"), ("treat", "y")]
FAST = ("regression", "aipw")


def frame(n: int = 400, seed: int = 0, effect: float = 2.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age, educ = rng.normal(size=n), rng.normal(size=n)
    treat = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * age - 0.5 * educ)))).astype(int)
    y = effect * treat + age + educ + rng.normal(size=n)
    return pd.DataFrame({"age": age, "educ": educ, "treat": treat, "y": y})


@pytest.fixture
def data_ws(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("obs", frame())
    ws.causal.study("effect", "obs@1", graph=EDGES, treatment="treat", outcome="y")
    return ws


def test_refute_is_stored_as_a_refutation_result(data_ws: keel.Workspace) -> None:
    assert data_ws.causal.results("effect") == []
    verdict = data_ws.causal.refute("effect", estimator="regression", seed=1)
    (stored,) = data_ws.causal.results("effect", kind="refutation")
    assert stored.study == "effect@1" and stored.kind == "refutation" and stored.author
    payload = stored.payload
    assert payload["verdict"] == verdict.verdict and payload["seed"] == 1
    assert [c["name"] for c in payload["checks"]] == [c.name for c in verdict.checks]
    assert payload["estimate"]["value"] == pytest.approx(verdict.estimate.value)
    assert json.loads(json.dumps(payload)) == payload
    assert data_ws.causal.results("effect", kind="sensitivity") == []
    with pytest.raises(InvalidInputError, match="Unknown study result kind"):
        data_ws.causal.results("effect", kind="nonsense")


def test_sensitivity_is_stored_with_its_grid(data_ws: keel.Workspace) -> None:
    sweep, stored = data_ws.causal.sensitivity("effect")
    assert stored.kind == "sensitivity" and stored.payload["estimator"] == "regression"
    assert stored.payload["robustness_value"] == pytest.approx(sweep.robustness_value)
    assert len(stored.payload["adjusted"]) == len(sweep.r2_treatment)


def test_a_study_records_the_model_version_it_explains(data_ws: keel.Workspace) -> None:
    X = frame()[["age", "educ", "treat"]]
    data_ws.models.register("outcome-model", LinearRegression().fit(X, frame()["y"]), X=X)
    made = data_ws.causal.study("explains", "obs", graph=EDGES, treatment="treat", outcome="y", model="outcome-model")
    assert made.model == "outcome-model@1" and data_ws.causal.get("explains@1").model == "outcome-model@1"
    assert data_ws.causal.get("effect").model is None
    with pytest.raises(NotFoundError):
        data_ws.causal.study("explains", "obs", graph=EDGES, treatment="treat", outcome="y", model="nothing@1")
    assert [s.version for s in data_ws.causal.versions("explains")] == [1]  # nothing stored


def test_rerun_on_a_new_dataset_version_records_the_change_and_alerts_on_drift(data_ws: keel.Workspace) -> None:
    with pytest.raises(InvalidInputError, match="no estimates"):
        data_ws.causal.rerun("effect")
    data_ws.causal.estimate("effect", estimators=FAST, n_boot=40)
    data_ws.datasets.add("obs", frame(seed=1))  # same effect: no drift
    study, result = data_ws.causal.rerun("effect")
    assert (study.ref, study.dataset) == ("effect@2", "obs@2")
    assert study.covariates == ("age", "educ") and study.edges == tuple(EDGES)
    change = result.payload
    assert result.kind == "effect_change" and change["previous_study"] == "effect@1" and change["study"] == "effect@2"
    assert [r["estimator"] for r in change["estimators"]] == list(FAST)
    assert not change["drifted"] and "|z| > 1.96" in change["rule"]
    row = change["estimators"][0]
    assert row["difference"] == pytest.approx(row["new"] - row["previous"])
    assert row["z"] == pytest.approx(row["difference"] / row["stderr"])
    assert data_ws.monitoring.alerts.list(model="effect") == []

    data_ws.datasets.add("obs", frame(seed=2, effect=5.0))  # the effect moved
    drifted, moved = data_ws.causal.rerun("effect")
    assert drifted.ref == "effect@3" and moved.payload["drifted"]
    assert all(r["drifted"] for r in moved.payload["estimators"])
    alerts = data_ws.monitoring.alerts.list(model="effect")
    assert {a.rule for a in alerts} == {"causal-effect-drift"}
    titles = " ".join(a.title for a in alerts)
    assert "effect@3" in titles and "regression" in titles and "drifted from" in titles
    assert data_ws.causal.results("effect@3", kind="effect_change") == [moved]

    pinned, _ = data_ws.causal.rerun("effect", dataset="obs@1")
    assert pinned.dataset == "obs@1"


def test_a_repeated_what_if_reuses_the_fitted_model(data_ws: keel.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import keel.causal

    fits = []
    real = keel.causal.fit_scm

    def counting(*args: object, **kwargs: object) -> object:
        fits.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(keel.causal, "fit_scm", counting)
    first = data_ws.causal.what_if("effect", intervene={"treat": 1}, n_resamples=20)
    second = data_ws.causal.what_if("effect", intervene={"treat": 1}, n_resamples=20)
    assert len(fits) == 1 and second.summary() == first.summary()
    data_ws.causal.what_if("effect", intervene={"treat": 0}, n_resamples=20)
    assert len(fits) == 1  # another question, the same model
    data_ws.causal.what_if("effect", intervene={"treat": 1}, n_resamples=20, seed=1)
    assert len(fits) == 2  # another seed is another fit


def test_the_what_if_cache_is_bounded(data_ws: keel.Workspace) -> None:
    causal = data_ws.causal
    causal._cache_size = 2
    for seed in range(3):
        causal.what_if("effect", intervene={"treat": 1}, n_resamples=20, seed=seed)
    assert [key[3] for key in causal._scms] == [1, 2]  # the least recently used went first
