"""Causal studies as records: stored versions, lineage to the dataset version, estimates, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError, NotFoundError

EDGES = [("age", "treat"), ("educ", "treat"), ("age", "y"), ("educ", "y"), ("treat", "y"), ("treat", "mid")]


def frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(size=n)
    educ = rng.normal(size=n)
    treat = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * age - 0.5 * educ)))).astype(int)
    y = 2.0 * treat + age + educ + rng.normal(size=n)
    return pd.DataFrame({"age": age, "educ": educ, "treat": treat, "y": y, "mid": treat + rng.normal(size=n)})


@pytest.fixture
def data_ws(any_ws: keel.Workspace) -> keel.Workspace:
    any_ws.datasets.add("obs", frame())
    return any_ws


def test_a_study_round_trips_with_its_identification(data_ws: keel.Workspace) -> None:
    made = data_ws.causal.study(
        "effect", "obs@1", graph=EDGES, treatment="treat", outcome="y", description="does treat raise y?"
    )
    assert made.ref == "effect@1"
    assert made.covariates == ("age", "educ")  # the parents of the treatment, in column order
    assert made.identification["strategy"] == "backdoor"
    for ref in ("effect", "effect@1", "effect@latest"):
        assert data_ws.causal.get(ref) == made
    assert made.edges == tuple(EDGES) and made.treatment == "treat" and made.outcome == "y"
    assert made.description == "does treat raise y?" and made.author


def test_a_study_gets_a_new_version_each_time(data_ws: keel.Workspace) -> None:
    first = data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y")
    second = data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y", covariates=["age"])
    data_ws.causal.study("other", "obs", graph=EDGES, treatment="treat", outcome="y")
    assert (first.version, second.version) == (1, 2)
    assert data_ws.causal.get("effect").covariates == ("age",)
    assert [s.ref for s in data_ws.causal.list()] == ["effect@2", "other@1"]
    assert [s.ref for s in data_ws.causal.versions("effect")] == ["effect@1", "effect@2"]
    with pytest.raises(NotFoundError, match="latest is 2"):
        data_ws.causal.get("effect@3")
    with pytest.raises(NotFoundError, match="keel causal study"):
        data_ws.causal.get("nothing")
    with pytest.raises(InvalidInputError, match="version number"):
        data_ws.causal.get("effect@champion")


def test_a_study_keeps_lineage_to_the_dataset_version_it_read(data_ws: keel.Workspace) -> None:
    study = data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y")
    v1 = data_ws.datasets.get("obs@1")
    data_ws.datasets.add("obs", frame(seed=1))  # a new version of the data does not move the study
    again = data_ws.causal.get("effect@1")
    assert (again.dataset, again.dataset_digest) == ("obs@1", v1.digest) == (study.dataset, study.dataset_digest)
    assert data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y").dataset == "obs@2"


def test_estimates_are_stored_per_study_version(data_ws: keel.Workspace) -> None:
    data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y")
    data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y")
    stored, comparison = data_ws.causal.estimate("effect@1", estimators=("aipw", "regression"), n_boot=30)
    assert [e.estimator for e in stored] == ["aipw", "regression"]
    for saved, computed in zip(stored, comparison.estimates, strict=True):
        assert saved.value == pytest.approx(computed.value) and saved.ci_low == pytest.approx(computed.ci_low)
        assert saved.study == "effect@1" and saved.n == 400 and saved.estimand == "ate"
    assert stored[0].covers(2.0)  # the true effect of the simulation
    assert stored[0].overlap is not None and stored[0].overlap["n_treated"] + stored[0].overlap["n_control"] == 400
    assert stored[0].details["covariates"] == ["age", "educ"]
    assert data_ws.causal.estimates("effect@1") == stored
    assert data_ws.causal.estimates("effect@2") == []


def test_a_non_finite_number_is_stored_and_read_back_as_nan(data_ws: keel.Workspace) -> None:
    study = data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y")
    record = {
        "estimator": "aipw",
        "estimand": "ate",
        "value": 1.5,
        "stderr": float("nan"),
        "ci_low": float("-inf"),
        "ci_high": 3.0,
        "interval_method": "none",
        "n": 10,
        "details": {"notes": ["a note"]},
    }
    (saved,) = data_ws.causal._studies.add_estimates(study, [record])
    assert saved.value == 1.5 and math.isnan(saved.stderr) and math.isnan(saved.ci_low)
    assert saved.notes == ("a note",) and saved.overlap is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graph": [*EDGES, ("y", "age")]}, "cycle"),
        ({"graph": [*EDGES, ("income", "y")]}, "income"),
        ({"outcome": "wage"}, "wage"),
        ({"covariates": ["mid"]}, "effects of the treatment"),
        ({"covariates": ["nope"]}, "nope"),
        ({"graph": "treat -> y"}, "neither DOT"),
        ({"graph": "missing.dot"}, "missing.dot"),
    ],
)
def test_bad_input_names_the_problem_and_stores_nothing(
    data_ws: keel.Workspace, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"graph": EDGES, "treatment": "treat", "outcome": "y", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        data_ws.causal.study("effect", "obs", **args)  # type: ignore[arg-type]
    assert data_ws.causal.list() == []


def test_a_treatment_without_variation_or_a_bad_name_stores_nothing(any_ws: keel.Workspace) -> None:
    data = frame()
    any_ws.datasets.add("flat", data.assign(treat=1))
    with pytest.raises(InvalidInputError, match="no variation"):
        any_ws.causal.study("effect", "flat", graph=EDGES, treatment="treat", outcome="y")
    with pytest.raises(InvalidInputError, match="study name"):
        any_ws.causal.study("bad name", "flat", graph=EDGES, treatment="treat", outcome="y")
    with pytest.raises(NotFoundError):
        any_ws.causal.study("effect", "absent@1", graph=EDGES, treatment="treat", outcome="y")
    assert any_ws.causal.list() == []


def test_a_graph_file_is_read(data_ws: keel.Workspace, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "g.dot"
    path.write_text("digraph { " + "; ".join(f"{a} -> {b}" for a, b in EDGES) + " }")
    assert data_ws.causal.study("effect", "obs", graph=path, treatment="treat", outcome="y").edges == tuple(EDGES)


def test_what_if_answers_on_the_study_graph_and_stores_nothing(data_ws: keel.Workspace) -> None:
    data_ws.causal.study("effect", "obs", graph=EDGES, treatment="treat", outcome="y")
    answer = data_ws.causal.what_if("effect", intervene={"treat": 1}, n_resamples=20)
    assert answer.outcome == "y"
    assert answer.interval[0] <= answer.mean_effect <= answer.interval[1]
    assert data_ws.causal.estimates("effect") == []


def test_migration_0010_downgrades_and_upgrades_again(store_url: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from keel.storage.engine import alembic_config

    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0010")
        assert {"causal_studies", "causal_estimates"} <= set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0009")
        assert not {"causal_studies", "causal_estimates"} & set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0010")
        assert {"causal_studies", "causal_estimates"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_default_estimators_are_the_compute_package_s() -> None:
    # keel.workspace.causal names them without importing keel.causal (slow to import).
    from keel.causal import ESTIMATORS
    from keel.workspace.causal import ESTIMATORS as DEFAULT

    assert DEFAULT == ESTIMATORS
