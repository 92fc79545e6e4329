"""Causal graphs: construction from every format, checks against a frame, and identification."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest

from keel.causal import CausalGraph, causal_graph, check_graph, identify_effect
from keel.errors import InvalidInputError

EDGES = [("age", "treat"), ("educ", "treat"), ("age", "re78"), ("educ", "re78"), ("treat", "re78")]


def frame(*columns: str, n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    data = {name: rng.normal(size=n) for name in columns}
    if "treat" in data:
        data["treat"] = np.arange(n) % 2
    return pd.DataFrame(data)


def test_every_format_gives_the_same_graph() -> None:
    dot = 'digraph nsw { age -> treat; educ -> treat [color=red]; age -> re78\n "educ" -> re78; treat -> re78; }'
    gml = """graph [ directed 1
      node [ id 0 label "age" ] node [ id 1 label "educ" ] node [ id 2 label "treat" ] node [ id 3 label "re78" ]
      edge [ source 0 target 2 ] edge [ source 1 target 2 ] edge [ source 0 target 3 ]
      edge [ source 1 target 3 ] edge [ source 2 target 3 ] ]"""
    parents = {"treat": ["age", "educ"], "re78": ["age", "educ", "treat"]}
    children = {"age": ["treat", "re78"], "educ": ["treat", "re78"], "treat": ["re78"]}
    graphs = [
        causal_graph(EDGES),
        causal_graph(dot),
        causal_graph(gml),
        causal_graph(parents, orient="parents"),
        causal_graph(children, orient="children"),
    ]
    for graph in graphs:
        assert set(graph.edges) == set(EDGES)
        assert set(graph.parents("re78")) == {"age", "educ", "treat"}


def test_mapping_must_say_what_its_lists_hold() -> None:
    with pytest.raises(InvalidInputError, match="orient='parents'"):
        causal_graph({"treat": ["age"]})


def test_a_cycle_is_named() -> None:
    with pytest.raises(InvalidInputError, match="cycle: a -> b -> c -> a"):
        causal_graph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    with pytest.raises(InvalidInputError, match="self-loop"):
        causal_graph([("a", "a")])


def test_undirected_dot_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="digraph"):
        causal_graph("graph { a -- b }")


def test_an_unclosed_or_empty_dot_graph_is_refused() -> None:
    for text, why in [
        ("digraph {", "not closed"),
        ("digraph { a -> b", "not closed"),
        ("digraph { }", "no nodes"),
        ("digraph { a -> b } trailing", "not closed"),
    ]:
        with pytest.raises(InvalidInputError, match=why):
            causal_graph(text)
    assert causal_graph("digraph { a -> b; }").edges == (("a", "b"),)


def test_missing_columns_are_named() -> None:
    graph = causal_graph(EDGES)
    with pytest.raises(InvalidInputError, match=r"\['educ'\] are not columns"):
        check_graph(graph, frame("age", "treat", "re78"), "treat", "re78")


def test_treatment_and_outcome_must_be_nodes_and_the_treatment_must_vary() -> None:
    graph = causal_graph(EDGES)
    data = frame("age", "educ", "treat", "re78")
    with pytest.raises(InvalidInputError, match="outcome 'income' is not a node"):
        check_graph(graph, data, "treat", "income")
    with pytest.raises(InvalidInputError, match="no variation"):
        check_graph(graph, data.assign(treat=1), "treat", "re78")


def test_backdoor_set_is_the_treatments_parents_in_column_order() -> None:
    graph = causal_graph([("educ", "treat"), ("age", "treat"), ("age", "re78"), ("educ", "re78"), ("treat", "re78")])
    found = identify_effect(graph, frame("re78", "age", "treat", "educ"), "treat", "re78")
    assert found.strategy == "backdoor"
    assert found.adjustment_set == ("age", "educ")
    reordered = identify_effect(graph, frame("educ", "treat", "re78", "age"), "treat", "re78")
    assert reordered.adjustment_set == ("educ", "age")


def test_minimal_set_leaves_out_a_collider() -> None:
    # M-bias: a -> m <- b with a -> t and b -> y; {} is a valid set, and adding m alone would open a path.
    graph = causal_graph([("a", "m"), ("b", "m"), ("a", "t"), ("b", "y"), ("t", "y")])
    found = identify_effect(graph, frame("a", "b", "m", "t", "y"), "t", "y")
    assert found.adjustment_set == ("a",)
    assert found.minimal_adjustment_set == ()


def test_latent_parent_of_the_treatment_falls_back_to_the_minimal_set() -> None:
    # u (unobserved) -> t and u -> w -> y: the parents of t are not all observed, but {w} blocks the path.
    graph = causal_graph([("u", "t"), ("u", "w"), ("w", "y"), ("t", "y"), ("x", "y")], latent=["u"])
    found = identify_effect(graph, frame("x", "w", "t", "y"), "t", "y")
    assert found.strategy == "backdoor"
    assert found.adjustment_set == ("w",)


def test_front_door_and_instrument_are_detected() -> None:
    front = causal_graph([("u", "t"), ("u", "y"), ("t", "m"), ("m", "y")], latent=["u"])
    found = identify_effect(front, frame("t", "m", "y"), "t", "y")
    assert (found.strategy, found.frontdoor_set) == ("frontdoor", ("m",))
    iv = causal_graph([("z", "t"), ("u", "t"), ("u", "y"), ("t", "y")], latent=["u"])
    found = identify_effect(iv, frame("z", "t", "y"), "t", "y")
    assert (found.strategy, found.instruments) == ("instrument", ("z",))


def test_unidentifiable_effect_names_the_latent_confounder() -> None:
    graph = causal_graph([("u", "t"), ("u", "y"), ("t", "y")], latent=["u"])
    with pytest.raises(InvalidInputError, match=r"not identifiable.*\['u'\]"):
        identify_effect(graph, frame("t", "y"), "t", "y")


def test_no_directed_path_means_no_effect_to_estimate() -> None:
    graph = causal_graph([("x", "t"), ("x", "y")])
    with pytest.raises(InvalidInputError, match="no directed path"):
        identify_effect(graph, frame("x", "t", "y"), "t", "y")


def test_inputs_are_not_mutated_and_results_are_frozen() -> None:
    mapping = {"treat": ["age", "educ"], "re78": ["age", "educ", "treat"]}
    kept = copy.deepcopy(mapping)
    data = frame("age", "educ", "treat", "re78")
    before = data.copy()
    graph = causal_graph(mapping, orient="parents")
    found = identify_effect(graph, data, "treat", "re78")
    assert mapping == kept
    pd.testing.assert_frame_equal(data, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.strategy = "frontdoor"  # type: ignore[misc]
    assert isinstance(causal_graph(graph), CausalGraph)
