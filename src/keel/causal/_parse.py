"""Read a causal graph's edges from DOT or GML text (the directed subset a causal graph needs).

Written here rather than through networkx/pydot: the subset is small, and reading it ourselves keeps
the result independent of optional parsers and of their node-order quirks.
"""

from __future__ import annotations

import re

from keel.errors import InvalidInputError

__all__ = ["parse_graph_text"]

_DOT_HEAD = re.compile(r"^\s*(strict\s+)?(di)?graph\b[^{]*\{", re.IGNORECASE)
_GML_HEAD = re.compile(r"^\s*(Creator\s+\"[^\"]*\"\s*)?graph\s*\[", re.IGNORECASE)
_DOT_ID = r'(?:"(?:[^"\\]|\\.)*"|[A-Za-z_0-9.\-]+)'


def parse_graph_text(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Return (nodes in first-appearance order, edges) from DOT (`digraph {a -> b}`) or GML text."""
    if _DOT_HEAD.match(text):
        return _parse_dot(text)
    if _GML_HEAD.match(text):
        return _parse_gml(text)
    raise InvalidInputError(
        "Graph text is neither DOT ('digraph { a -> b; }') nor GML ('graph [ directed 1 node [ ... ] ... ]'); "
        f"it starts with {text.strip()[:40]!r}."
    )


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] == '"':
        return token[1:-1].replace('\\"', '"')
    return token


def _parse_dot(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    head = _DOT_HEAD.match(text)
    assert head is not None  # checked by the caller
    if head.group(2) is None:
        raise InvalidInputError("DOT graph is undirected ('graph {...}'); a causal graph needs 'digraph { a -> b; }'.")
    close = text.rfind("}")
    if close < head.end() or text[close + 1 :].strip():
        raise InvalidInputError("DOT graph is not closed: write it as 'digraph { a -> b; }', ending with '}'.")
    body = text[head.end() : close]
    if not body.strip():
        raise InvalidInputError("DOT graph has no nodes or edges: write them as 'digraph { a -> b; }'.")
    body = re.sub(r"/\*.*?\*/", " ", body, flags=re.DOTALL)
    body = re.sub(r"(//|#)[^\n]*", " ", body)
    body = re.sub(r"\[[^\]]*\]", " ", body)  # attributes (labels, colours) carry no causal meaning
    nodes: dict[str, None] = {}
    edges: dict[tuple[str, str], None] = {}
    for statement in re.split(r"[;\n]", body):
        statement = statement.strip()
        if not statement or re.match(r"^(graph|node|edge)\b", statement) or re.match(rf"^{_DOT_ID}\s*=", statement):
            continue
        if "--" in statement.replace("->", ""):
            raise InvalidInputError(f"DOT statement {statement!r} has an undirected edge '--'; use '->'.")
        chain = [_unquote(part) for part in statement.split("->")]
        if (
            any(not re.fullmatch(_DOT_ID, part.strip()) for part in statement.split("->") if part.strip())
            or "" in chain
        ):
            raise InvalidInputError(f"Cannot read DOT statement {statement!r}; write edges as 'a -> b;'.")
        for name in chain:
            nodes.setdefault(name)
        for source, target in zip(chain, chain[1:]):
            edges.setdefault((source, target))
    return tuple(nodes), tuple(edges)


_GML_TOKEN = re.compile(r'\s*(\[|\]|"[^"]*"|[^\s\[\]"]+)')


def _gml_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        match = _GML_TOKEN.match(text, position)
        if match is None:
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _gml_block(tokens: list[str], start: int) -> tuple[list[tuple[str, object]], int]:
    """Read `key value` pairs up to the matching ']'; a value is a token or a nested block."""
    pairs: list[tuple[str, object]] = []
    index = start
    while index < len(tokens) and tokens[index] != "]":
        key = tokens[index]
        if index + 1 >= len(tokens):
            raise InvalidInputError(f"GML ends after the key {key!r} without a value.")
        if tokens[index + 1] == "[":
            value, index = _gml_block(tokens, index + 2)
            pairs.append((key, value))
        else:
            pairs.append((key, _unquote(tokens[index + 1])))
            index += 2
    return pairs, index + 1


def _parse_gml(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    tokens = _gml_tokens(text)
    start = tokens.index("[") + 1
    pairs, _ = _gml_block(tokens, start)
    if any(key == "directed" and value == "0" for key, value in pairs):
        raise InvalidInputError("GML graph says 'directed 0'; a causal graph is directed ('directed 1').")
    labels: dict[str, str] = {}
    for key, value in pairs:
        if key == "node" and isinstance(value, list):
            fields = dict(value)
            node_id = str(fields.get("id", ""))
            labels[node_id] = str(fields.get("label", node_id))
    edges: dict[tuple[str, str], None] = {}
    for key, value in pairs:
        if key == "edge" and isinstance(value, list):
            fields = dict(value)
            ends = [str(fields.get("source", "")), str(fields.get("target", ""))]
            unknown = [end for end in ends if end not in labels]
            if unknown:
                raise InvalidInputError(
                    f"GML edge {ends[0]} -> {ends[1]} names node id(s) {unknown} with no 'node' entry."
                )
            edges.setdefault((labels[ends[0]], labels[ends[1]]))
    return tuple(labels.values()), tuple(edges)
