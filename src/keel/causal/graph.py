"""Causal graphs: build one from edges, a mapping or DOT/GML text, check it against a frame, and
identify the effect of a treatment on an outcome (backdoor, front-door or instrument).

Nothing here mutates what the caller passed: the graph is copied into a frozen `CausalGraph`, and
every output list follows the frame's column order (never Python's set or hash order), so the same
inputs give the same adjustment set in every process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from keel.causal._parse import parse_graph_text
from keel.errors import InvalidInputError

__all__ = ["CausalGraph", "Identification", "causal_graph", "check_graph", "identify_effect"]


@dataclass(frozen=True)
class CausalGraph:
    """A directed acyclic graph over named variables; `latent` nodes are unobserved (no column)."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    latent: tuple[str, ...] = ()

    def parents(self, node: str) -> tuple[str, ...]:
        return tuple(source for source, target in self.edges if target == node)

    def children(self, node: str) -> tuple[str, ...]:
        return tuple(target for source, target in self.edges if source == node)

    def descendants(self, node: str) -> frozenset[str]:
        """Nodes reachable from `node` by directed edges (excluding `node`)."""
        return _reach(self.edges, [node], forward=True) - {node}

    def ancestors(self, node: str) -> frozenset[str]:
        return _reach(self.edges, [node], forward=False) - {node}


@dataclass(frozen=True)
class Identification:
    """How the effect of `treatment` on `outcome` is identified from the graph.

    `strategy` is the one estimators should use; `adjustment_set` is the parents of the treatment
    when all are observed (else `minimal_adjustment_set`); front-door mediators and instruments are
    reported whenever the graph gives them, even when the backdoor strategy applies.
    """

    treatment: str
    outcome: str
    strategy: Literal["backdoor", "frontdoor", "instrument"]
    adjustment_set: tuple[str, ...]
    minimal_adjustment_set: tuple[str, ...]
    frontdoor_set: tuple[str, ...]
    instruments: tuple[str, ...]
    notes: tuple[str, ...] = ()


def causal_graph(
    spec: CausalGraph | str | Sequence[tuple[str, str]] | Mapping[str, Sequence[str]],
    *,
    orient: Literal["parents", "children"] | None = None,
    latent: Iterable[str] = (),
) -> CausalGraph:
    """Build a checked-acyclic `CausalGraph` from edges, a mapping or DOT/GML text.

    A mapping must say what its lists hold: `orient="parents"` for {node: [parents]},
    `orient="children"` for {node: [children]}. Raises InvalidInputError naming a cycle.

    >>> causal_graph([("age", "treat"), ("age", "re78"), ("treat", "re78")]).parents("re78")
    ('age', 'treat')
    """
    if isinstance(spec, CausalGraph):
        nodes, edges = spec.nodes, spec.edges
        latent = (*spec.latent, *latent)
    elif isinstance(spec, str):
        nodes, edges = parse_graph_text(spec)
    elif isinstance(spec, Mapping):
        nodes, edges = _from_mapping(spec, orient)
    else:
        nodes, edges = _from_edges(spec)
    latent_names = tuple(dict.fromkeys(str(name) for name in latent))
    unknown = [name for name in latent_names if name not in nodes]
    if unknown:
        raise InvalidInputError(f"Latent node(s) {unknown} are not in the graph; graph nodes: {list(nodes)}.")
    self_loops = [source for source, target in edges if source == target]
    if self_loops:
        raise InvalidInputError(f"Graph has a self-loop on {self_loops[0]!r}; a causal graph must be acyclic.")
    cycle = _find_cycle(nodes, edges)
    if cycle:
        raise InvalidInputError(f"Graph has a cycle: {' -> '.join(cycle)}; a causal graph must be acyclic.")
    return CausalGraph(nodes=nodes, edges=edges, latent=latent_names)


def _from_edges(spec: Sequence[tuple[str, str]]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    nodes: dict[str, None] = {}
    edges: dict[tuple[str, str], None] = {}
    for item in spec:
        if isinstance(item, str) or len(item) != 2:
            raise InvalidInputError(f"Each edge must be a (cause, effect) pair; got {item!r}.")
        source, target = str(item[0]), str(item[1])
        nodes.setdefault(source)
        nodes.setdefault(target)
        edges.setdefault((source, target))
    return tuple(nodes), tuple(edges)


def _from_mapping(
    spec: Mapping[str, Sequence[str]], orient: str | None
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    if orient not in ("parents", "children"):
        raise InvalidInputError(
            "A mapping graph needs orient='parents' ({node: [its parents]}) or orient='children' "
            f"({{node: [its children]}}); got orient={orient!r}."
        )
    nodes: dict[str, None] = {}
    edges: dict[tuple[str, str], None] = {}
    for key, values in spec.items():
        nodes.setdefault(str(key))
        if isinstance(values, str):
            values = [values]  # {"y": "x"} is a single parent, not the letters of its name
        for value in values:
            nodes.setdefault(str(value))
            edge = (str(value), str(key)) if orient == "parents" else (str(key), str(value))
            edges.setdefault(edge)
    return tuple(nodes), tuple(edges)


def _find_cycle(nodes: Sequence[str], edges: Sequence[tuple[str, str]]) -> list[str]:
    """Return one cycle as [a, b, ..., a], or [] when the graph is acyclic (deterministic DFS)."""
    children: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in edges:
        children[source].append(target)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in nodes:
        if root in state:
            continue
        path = [root]
        stack = [iter(children[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(children[nxt]))
    return []


def _reach(edges: Iterable[tuple[str, str]], start: Iterable[str], *, forward: bool) -> frozenset[str]:
    step: dict[str, list[str]] = {}
    for source, target in edges:
        a, b = (source, target) if forward else (target, source)
        step.setdefault(a, []).append(b)
    seen = set(start)
    todo = list(seen)
    while todo:
        for nxt in step.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def check_graph(graph: CausalGraph, frame: pd.DataFrame, treatment: str, outcome: str) -> None:
    """Raise InvalidInputError unless every observed node is a column of `frame`, treatment and outcome
    are observed nodes, and the treatment varies."""
    if treatment == outcome:
        raise InvalidInputError(f"Treatment and outcome are the same column {treatment!r}.")
    for role, name in (("treatment", treatment), ("outcome", outcome)):
        if name not in graph.nodes:
            raise InvalidInputError(f"The {role} {name!r} is not a node of the graph; nodes: {list(graph.nodes)}.")
        if name in graph.latent:
            raise InvalidInputError(f"The {role} {name!r} is marked latent; it must be an observed column.")
    columns = set(map(str, frame.columns))
    missing = [node for node in graph.nodes if node not in graph.latent and node not in columns]
    if missing:
        raise InvalidInputError(
            f"Graph node(s) {missing} are not columns of the frame (columns: {list(map(str, frame.columns))}); "
            "rename them, or pass latent=[...] for variables that are unobserved."
        )
    if frame[treatment].nunique(dropna=True) < 2:
        raise InvalidInputError(
            f"Treatment {treatment!r} has no variation (every row is {frame[treatment].dropna().unique()[:1].tolist()}); "
            "an effect needs treated and untreated units."
        )


def _d_separated(
    graph: CausalGraph, xs: Iterable[str], ys: Iterable[str], zs: Iterable[str], cut_out_of: Iterable[str] = ()
) -> bool:
    """Whether xs and ys are d-separated given zs, in `graph` with the edges out of `cut_out_of` removed.

    Uses the moral graph of the ancestral set (Lauritzen): separation there equals d-separation.
    """
    cut = set(cut_out_of)
    edges = [(s, t) for s, t in graph.edges if s not in cut]
    x_set, y_set, z_set = set(xs), set(ys), set(zs)
    relevant = _reach(edges, x_set | y_set | z_set, forward=False)
    neighbours: dict[str, set[str]] = {node: set() for node in relevant}
    parents: dict[str, list[str]] = {node: [] for node in relevant}
    for source, target in edges:
        if target in relevant:
            parents[target].append(source)
            neighbours[source].add(target)
            neighbours[target].add(source)
    for found in parents.values():
        for i, a in enumerate(found):
            for b in found[i + 1 :]:
                neighbours[a].add(b)
                neighbours[b].add(a)
    seen = x_set - z_set
    todo = list(seen)
    while todo:
        for nxt in neighbours[todo.pop()]:
            if nxt in y_set:
                return False
            if nxt not in seen and nxt not in z_set:
                seen.add(nxt)
                todo.append(nxt)
    return True


def _is_backdoor_set(graph: CausalGraph, treatment: str, outcome: str, zs: Sequence[str]) -> bool:
    if set(zs) & graph.descendants(treatment):
        return False
    return _d_separated(graph, [treatment], [outcome], zs, cut_out_of=[treatment])


def _ordered(names: Iterable[str], order: Sequence[str]) -> tuple[str, ...]:
    wanted = set(names)
    return tuple(name for name in order if name in wanted)


def _minimal_backdoor(graph: CausalGraph, treatment: str, outcome: str, order: Sequence[str]) -> tuple[str, ...] | None:
    """An inclusion-minimal backdoor set, or None when none exists among observed variables.

    If any backdoor set exists, the observed non-descendant ancestors of {treatment, outcome} form one;
    we then drop members last-column-first while the set stays valid, so the result is deterministic.
    """
    forbidden = graph.descendants(treatment) | {treatment, outcome} | set(graph.latent)
    ancestors = graph.ancestors(treatment) | graph.ancestors(outcome)
    current = [name for name in _ordered(ancestors, order) if name not in forbidden]
    if not _is_backdoor_set(graph, treatment, outcome, current):
        return None
    for name in reversed(list(current)):
        trial = [other for other in current if other != name]
        if _is_backdoor_set(graph, treatment, outcome, trial):
            current = trial
    return tuple(current)


def _frontdoor_set(graph: CausalGraph, treatment: str, outcome: str, order: Sequence[str]) -> tuple[str, ...]:
    """Observed mediators meeting Pearl's front-door criterion, or () when the graph gives none."""
    on_paths = graph.descendants(treatment) & graph.ancestors(outcome)
    mediators = [name for name in _ordered(on_paths, order) if name not in graph.latent]
    if not mediators or len(mediators) != len(on_paths):
        return ()
    blocked = set(mediators)
    if outcome in _reach(
        [(s, t) for s, t in graph.edges if s not in blocked and t not in blocked], [treatment], forward=True
    ):
        return ()  # a directed path avoids the mediators
    if not all(_d_separated(graph, [treatment], [m], [], cut_out_of=[treatment]) for m in mediators):
        return ()
    if not _d_separated(graph, mediators, [outcome], [treatment], cut_out_of=mediators):
        return ()
    return tuple(mediators)


def _instruments(graph: CausalGraph, treatment: str, outcome: str, order: Sequence[str]) -> tuple[str, ...]:
    """Observed variables that move the treatment and reach the outcome only through it."""
    found = []
    for name in order:
        if name in (treatment, outcome) or name not in graph.nodes or name in graph.latent:
            continue
        if name in graph.descendants(treatment) or _d_separated(graph, [name], [treatment], []):
            continue
        if _d_separated(graph, [name], [outcome], [], cut_out_of=[treatment]):
            found.append(name)
    return tuple(found)


def identify_effect(graph: CausalGraph, frame: pd.DataFrame, treatment: str, outcome: str) -> Identification:
    """Check `graph` against `frame` and identify the effect of `treatment` on `outcome`.

    Raises InvalidInputError when the graph is unusable (see `check_graph`), when the treatment is
    no cause of the outcome, or when no backdoor, front-door or instrument strategy exists (naming
    the latent confounders responsible).
    """
    check_graph(graph, frame, treatment, outcome)
    order = [str(column) for column in frame.columns]
    if outcome not in graph.descendants(treatment):
        raise InvalidInputError(
            f"The graph has no directed path from {treatment!r} to {outcome!r}, so it says the effect is zero; "
            "add the edges through which the treatment acts."
        )
    minimal = _minimal_backdoor(graph, treatment, outcome, order)
    frontdoor = _frontdoor_set(graph, treatment, outcome, order)
    instruments = _instruments(graph, treatment, outcome, order)
    parents = graph.parents(treatment)
    notes: list[str] = []
    if minimal is not None:
        observed_parents = not set(parents) & set(graph.latent)
        adjustment = _ordered(parents, order) if observed_parents else minimal
        notes.append(
            "adjustment set: parents of the treatment" if observed_parents else "adjustment set: minimal backdoor set"
        )
        return Identification(treatment, outcome, "backdoor", adjustment, minimal, frontdoor, instruments, tuple(notes))
    if frontdoor:
        notes.append("no observed set blocks every backdoor path; identified through the front-door mediators")
        return Identification(treatment, outcome, "frontdoor", (), (), frontdoor, instruments, tuple(notes))
    if instruments:
        notes.append(
            "no backdoor or front-door set; identified by instrument(s), which gives the average effect only "
            "under effect homogeneity (else the complier effect, under monotonicity)"
        )
        return Identification(treatment, outcome, "instrument", (), (), (), instruments, tuple(notes))
    confounders = [
        name for name in graph.latent if name in graph.ancestors(outcome) and name in graph.ancestors(treatment)
    ]
    raise InvalidInputError(
        f"The effect of {treatment!r} on {outcome!r} is not identifiable from this graph: latent variable(s) "
        f"{confounders or list(graph.latent)} open a backdoor path that no observed set blocks, and the graph "
        "gives no front-door mediator or instrument. Measure a confounder, or add a mediator or instrument."
    )
