"""Twin versions and their results: `Twins`, over one narrow store (keel.storage.twins)."""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Mapping
from typing import Any

from keel.entities import DatasetVersion
from keel.entities_rl import TWIN_KINDS, TWIN_RESULT_KINDS, Twin, TwinResult
from keel.errors import InvalidInputError
from keel.refs import Ref, check_name, parse_ref
from keel.storage import MetadataStore

__all__ = ["Twins"]

_MAX_DESCRIPTION = 10_000
_MAX_JSON = 8 * 1024 * 1024  # a stored spec or result: plain JSON, at most 8 MB (trajectories are sampled)


class Twins:
    """The digital twins of one workspace (the records behind `ws.rl`)."""

    def __init__(self, meta: MetadataStore, *, author: str) -> None:
        self._meta = meta
        self._author = author

    def check_name(self, name: str) -> str:
        return check_name(name, what="twin name")

    def add(
        self, name: str, dataset: DatasetVersion, *, kind: str, spec: Mapping[str, Any], description: str = ""
    ) -> Twin:
        """Store the next version of twin `name`, fitted on `dataset` (the caller fitted it: keel.rl)."""
        self.check_name(name)
        if kind not in TWIN_KINDS:
            raise InvalidInputError(f"Unknown twin kind {kind!r}; known: {', '.join(TWIN_KINDS)}")
        if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION:
            raise InvalidInputError(f"A twin description is text of at most {_MAX_DESCRIPTION:,} characters")
        return self._meta.twins.add(
            name,
            kind=kind,
            dataset=(dataset.name, dataset.version, dataset.digest),
            spec=_plain(spec, "the twin's spec"),
            description=description,
            author=self._author,
        )

    def get(self, ref: str | Twin) -> Twin:
        """The version a reference names: 'pharmacy', 'pharmacy@2' or 'pharmacy@latest'."""
        if isinstance(ref, Twin):
            return ref
        return self._meta.twins.get(_ref(ref))

    def list(self) -> builtins.list[Twin]:
        """The latest version of every twin."""
        return self._meta.twins.list()

    def versions(self, name: str) -> builtins.list[Twin]:
        return self._meta.twins.versions(self.check_name(name))

    def add_result(self, twin: Twin, kind: str, payload: Mapping[str, Any]) -> TwinResult:
        """Store a result of `twin` (`kind` one of TWIN_RESULT_KINDS; `payload` plain JSON)."""
        _kind(kind)
        return self._meta.twins.add_result(
            Ref(twin.name, version=twin.version), kind, _plain(payload, f"the {kind} result"), author=self._author
        )

    def results(self, ref: str | Twin, kind: str | None = None) -> builtins.list[TwinResult]:
        """The stored results of one twin version (of `kind`, or every kind), oldest first."""
        if kind is not None:
            _kind(kind)
        twin = self.get(ref)
        return self._meta.twins.results(Ref(twin.name, version=twin.version), kind)


def _kind(kind: str) -> None:
    if kind not in TWIN_RESULT_KINDS:
        raise InvalidInputError(f"Unknown twin result kind {kind!r}; known: {', '.join(TWIN_RESULT_KINDS)}")


def _plain(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """`value` as plain JSON, checked: no NaN or infinity (no portable SQL form), at most _MAX_JSON."""

    def finite(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            raise InvalidInputError(f"{what} holds {x!r}: store finite numbers (or null)")
        if isinstance(x, dict):
            return {str(k): finite(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [finite(v) for v in x]
        return x

    try:
        text = json.dumps(finite(dict(value)), allow_nan=False)
    except TypeError as exc:
        raise InvalidInputError(f"{what} is not plain JSON: {exc}") from None
    if len(text) > _MAX_JSON:
        raise InvalidInputError(f"{what} is {len(text):,} bytes of JSON; at most {_MAX_JSON:,}")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _ref(text: str) -> Ref:
    ref = parse_ref(text)
    if ref.alias is not None:
        raise InvalidInputError(f"Twin reference {text!r}: twins are addressed by version number or 'latest'")
    return ref
