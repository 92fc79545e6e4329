"""The run-search language: parse `metrics.auc > 0.8 and params.max_depth = 6` into a tree.

    expr   := term (('and' | 'or') term)*        'and' binds tighter than 'or'
    term   := '(' expr ')' | field op value
    field  := (metrics|params|tags|attributes) '.' key  |  attribute   (key may be `back-quoted`)
    op     := = == != <> < <= > >= like
    value  := number | 'text' | "text" | bare-word

How values compare:
    metrics.KEY     numbers only (the run's latest value); `like` is refused
    params.KEY      a bare number compares numerically (`params.max_depth = 6` matches '6' and
                    '6.0'); a quoted value or a word compares as text; `like` always compares text
    tags.KEY        text
    attributes      name, status, author, id, experiment, code_version as text; started_at and
                    ended_at as ISO 8601 times ('2025-03-01' or '2025-03-01T12:00:00+00:00', UTC if
                    no zone given); status must be one of running, finished, failed, killed
A run that lacks the metric, param or tag never matches a comparison on it (`!=` included).

The tree is executed in SQL by keel.storage (each comparison is an indexed semi-join).
"""

from __future__ import annotations

import re
from datetime import datetime

from keel.entities import BoolOp, Comparison, OrderBy, RunStatus
from keel.errors import InvalidInputError

__all__ = ["parse_filter", "parse_order_by", "MAX_TERMS", "MAX_DEPTH", "MAX_ORDER_KEYS"]

# Each comparison and each order key becomes one semi-join or join, and the parser recurses per
# parenthesis: thousands of terms exhausted the stack (RecursionError), and SQLite joins at most
# 64 tables in one query. These limits keep every search inside both, with room to spare.
MAX_TERMS = 50
MAX_DEPTH = 32
MAX_ORDER_KEYS = 8

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\()|(?P<rparen>\))|
        (?P<op><=|>=|!=|<>|==|=|<|>)|
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|
        (?P<field>[A-Za-z_][A-Za-z0-9_]*\.(?:`[^`]+`|[A-Za-z0-9_.:/-]+))|
        (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))|
        (?P<word>[A-Za-z_][A-Za-z0-9_.:/-]*)
    )""",
    re.VERBOSE,
)

_KINDS = {
    "metrics": "metrics",
    "metric": "metrics",
    "m": "metrics",
    "params": "params",
    "param": "params",
    "p": "params",
    "tags": "tags",
    "tag": "tags",
    "t": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "a": "attributes",
}
_ATTRS = {"name", "status", "started_at", "ended_at", "author", "code_version", "id", "experiment"}
_TIME_ATTRS = {"started_at", "ended_at"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidInputError(f"Cannot parse the filter at {text[pos : pos + 20]!r} (position {pos})")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _field(kind_token: str, value: str) -> tuple[str, str]:
    if kind_token == "field":
        prefix, _, key = value.partition(".")
        kind = _KINDS.get(prefix.lower())
        if kind is None:
            raise InvalidInputError(f"Unknown field {value!r}: use metrics.KEY, params.KEY, tags.KEY or attributes.KEY")
        key = key.strip("`")
        if kind == "attributes" and key not in _ATTRS:
            raise InvalidInputError(f"Unknown run attribute {key!r}; known: {', '.join(sorted(_ATTRS))}")
        return kind, key
    if value in _ATTRS:
        return "attributes", value
    raise InvalidInputError(f"Unknown field {value!r}: use metrics.KEY, params.KEY, tags.KEY or attributes.KEY")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.terms = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise InvalidInputError(f"The filter {self.text!r} ends too early")
        self.i += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() == word

    def expr(self) -> Comparison | BoolOp:
        terms = [self.conj()]
        while self.is_word("or"):
            self.take()
            terms.append(self.conj())
        return terms[0] if len(terms) == 1 else BoolOp("or", tuple(terms))

    def conj(self) -> Comparison | BoolOp:
        terms = [self.term()]
        while self.is_word("and"):
            self.take()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else BoolOp("and", tuple(terms))

    def term(self) -> Comparison | BoolOp:
        kind, value = self.take()
        if kind == "lparen":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise InvalidInputError(f"The filter nests parentheses more than {MAX_DEPTH} deep; simplify it")
            inner = self.expr()
            self.depth -= 1
            tok = self.peek()
            if tok is None or tok[0] != "rparen":
                raise InvalidInputError(f"Missing ')' in the filter {self.text!r}")
            self.take()
            return inner
        if kind not in ("field", "word"):
            raise InvalidInputError(f"Expected a field such as metrics.auc, got {value!r}")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise InvalidInputError(
                f"The filter has more than {MAX_TERMS} comparisons: use at most {MAX_TERMS}, or split the search"
            )
        fkind, key = _field(kind, value)
        op_kind, op = self.take()
        if op_kind == "word" and op.lower() == "like":
            op = "like"
        elif op_kind != "op":
            raise InvalidInputError(f"Expected a comparison after {value!r}, got {op!r}")
        op = {"==": "=", "<>": "!="}.get(op, op)
        vkind, raw = self.take()
        literal: float | str
        if vkind == "number":
            literal = float(raw)
        elif vkind == "string":
            literal = raw[1:-1].replace("\\'", "'").replace('\\"', '"')
        elif vkind in ("word", "field"):
            literal = raw
        else:
            raise InvalidInputError(f"Expected a value after {value} {op}, got {raw!r}")
        if fkind == "metrics":
            if op == "like":
                raise InvalidInputError(f"metrics.{key} is a number: compare it with =, !=, <, <=, > or >=, not 'like'")
            if not isinstance(literal, float):
                raise InvalidInputError(f"metrics.{key} compares with a number, got {raw!r}")
        elif isinstance(literal, float) and (fkind != "params" or op == "like"):
            literal = raw  # text comparison: keep the number as written ('6', not '6.0')
        if fkind == "attributes":
            literal = _attribute_value(key, op, str(literal))
        return Comparison(fkind, key, op, literal)


def _attribute_value(key: str, op: str, value: str) -> str:
    """Check an attribute literal early, so a typo fails here and not as an empty result."""
    if key == "status" and op != "like":
        known = [s.value for s in RunStatus]
        if value.lower() not in known:
            raise InvalidInputError(f"Unknown run status {value!r}; known: {', '.join(known)}")
        return value.lower()
    if key in _TIME_ATTRS:
        if op == "like":
            raise InvalidInputError(f"{key} is a time: compare it with =, !=, <, <=, > or >=, not 'like'")
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInputError(
                f"{key} compares with an ISO 8601 time such as '2025-03-01' or '2025-03-01T12:00:00', got {value!r}"
            ) from None
    return value


def parse_filter(text: str | None) -> Comparison | BoolOp | None:
    """Parse a run filter; an empty filter is None (every run)."""
    if text is None or not text.strip():
        return None
    p = _Parser(text)
    tree = p.expr()
    if p.peek() is not None:
        raise InvalidInputError(f"Unexpected {p.peek()[1]!r} in the filter {text!r}; join terms with 'and' or 'or'")  # type: ignore[index]
    return tree


def parse_order_by(items: str | list[str] | tuple[str, ...] | None) -> list[OrderBy]:
    """'metrics.auc desc', '-metrics.auc' or 'started_at' (several, comma-separated or a list)."""
    if not items:
        return []
    if isinstance(items, str):
        items = [p for p in items.split(",") if p.strip()]
    if len(items) > MAX_ORDER_KEYS:
        raise InvalidInputError(f"Cannot order by {len(items)} fields: give at most {MAX_ORDER_KEYS}")
    out = []
    for item in items:
        words = item.strip().split()
        descending = False
        if words and words[-1].lower() in ("asc", "desc"):
            descending = words.pop().lower() == "desc"
        if len(words) != 1:
            raise InvalidInputError(f"Cannot order by {item!r}: expected FIELD [asc|desc]")
        field = words[0]
        if field.startswith("-"):
            descending, field = True, field[1:]
        kind, key = _field("field" if "." in field else "word", field)
        if kind == "tags":
            raise InvalidInputError("Ordering by tags is not supported: order by metrics, params or attributes")
        out.append(OrderBy(kind, key, descending))
    return out
