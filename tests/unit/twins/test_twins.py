"""Digital twins as records: versions with lineage to their dataset version, stored results, bad input
refused before anything is stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import keel
from keel.errors import InvalidInputError, NotFoundError
from keel.twins import Twins

SPEC = {
    "system": {"lead_time": 2, "costs": {"holding": 1.0, "penalty": 9.0}},
    "demand": {"family": "poisson", "rate": 10.0},
}


@pytest.fixture
def twins(any_ws: keel.Workspace) -> Twins:
    any_ws.datasets.add("sales", pd.DataFrame({"month": range(36), "units": [10 + (i % 12) for i in range(36)]}))
    return Twins(any_ws._meta, author="tester")


def test_versions_round_trip_with_their_dataset_version(any_ws: keel.Workspace, twins: Twins) -> None:
    sales = any_ws.datasets.get("sales@1")
    first = twins.add("pharmacy", sales, kind="inventory", spec=SPEC, description="monthly a10 sales")
    second = twins.add("pharmacy", sales, kind="inventory", spec={**SPEC, "demand": {"family": "negbin"}})
    assert (first.ref, second.ref) == ("pharmacy@1", "pharmacy@2")
    assert first.dataset == "sales@1" and first.dataset_digest == sales.digest and first.author == "tester"
    assert first.spec == SPEC and first.description == "monthly a10 sales"
    for ref in ("pharmacy", "pharmacy@latest", "pharmacy@2"):
        assert twins.get(ref) == second
    assert twins.get("pharmacy@1") == first and twins.versions("pharmacy") == [first, second]
    assert twins.list() == [second]


def test_results_are_kept_per_version_and_kind(any_ws: keel.Workspace, twins: Twins) -> None:
    twin = twins.add("pharmacy", any_ws.datasets.get("sales@1"), kind="inventory", spec=SPEC)
    baselines = twins.add_result(twin, "baselines", {"base_stock": {"level": 37, "cost": 9.95, "stderr": 0.02}})
    optimum = twins.add_result(twin, "optimum", {"cost": 9.953, "policy": [37]})
    assert baselines.twin == "pharmacy@1" and baselines.payload["base_stock"]["level"] == 37
    assert twins.results("pharmacy@1") == [baselines, optimum]
    assert twins.results(twin, kind="optimum") == [optimum]


def test_bad_input_is_refused_naming_it_and_stores_nothing(any_ws: keel.Workspace, twins: Twins) -> None:
    sales = any_ws.datasets.get("sales@1")
    with pytest.raises(InvalidInputError, match="Unknown twin kind 'factory'"):
        twins.add("pharmacy", sales, kind="factory", spec=SPEC)
    with pytest.raises(InvalidInputError, match="twin name"):
        twins.add("bad name!", sales, kind="inventory", spec=SPEC)
    with pytest.raises(InvalidInputError, match="holds nan"):
        twins.add("pharmacy", sales, kind="inventory", spec={"demand": {"rate": math.nan}})
    with pytest.raises(NotFoundError, match="No twin named 'pharmacy'; fit one with 'keel rl twin'"):
        twins.get("pharmacy")
    twin = twins.add("pharmacy", sales, kind="inventory", spec=SPEC)
    with pytest.raises(InvalidInputError, match="Unknown twin result kind 'score'"):
        twins.add_result(twin, "score", {})
    with pytest.raises(InvalidInputError, match="not plain JSON"):
        twins.add_result(twin, "optimum", {"policy": object()})
    with pytest.raises(InvalidInputError, match="addressed by version number or 'latest'"):
        twins.get("pharmacy@champion")
    with pytest.raises(NotFoundError, match="has no version 5; the latest is 1"):
        twins.get("pharmacy@5")
    assert twins.results(twin) == [] and twins.versions("pharmacy") == [twin]
