"""Reference profiles as frozen types: what a monitor keeps of its reference data.

    ReferenceProfile   columns (name -> NumericProfile | CategoricalProfile) and skipped columns
    NumericProfile     counts, moments and the quantile grid of one numeric column (NumericSummary)
    CategoricalProfile the most frequent labels of one categorical column and one bucket for the rest
    ModelReference     a model version's output profile and its performance on the reference data

The store keeps profiles as JSON. `to_dict()` gives exactly the dict `build_reference` has always
returned (same keys, same order, same numbers) and `from_dict()` reads it back, so profiles stored
by earlier versions load unchanged; the statistics (keel.monitoring.stats) read the typed fields.
No numpy here: the numbers are the plain floats and ints the JSON holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from keel.errors import InvalidInputError

__all__ = [
    "PROFILE_FORMAT",
    "CategoricalProfile",
    "ColumnProfile",
    "ModelReference",
    "NumericProfile",
    "NumericSummary",
    "ReferenceProfile",
]

PROFILE_FORMAT = 1

# The JSON keys of a numeric column's summary, in the order they are stored.
_SUMMARY_KEYS = ("mean", "std", "min", "max", "edges", "counts", "quantiles", "le", "lt", "areas")


@dataclass(frozen=True)
class NumericSummary:
    """What a numeric column with values keeps: moments, range, `counts` per bin between `edges`,
    and the quantile grid (`quantiles`) with the reference values <= (`le`) and < (`lt`) each grid
    value and the area under the reference ECDF between neighbouring grid values (`areas`)."""

    mean: float
    std: float
    min: float
    max: float
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    quantiles: tuple[float, ...]
    le: tuple[int, ...]
    lt: tuple[int, ...]
    areas: tuple[float, ...]


@dataclass(frozen=True)
class NumericProfile:
    """One numeric column: `n` finite values, the share missing, and a summary (None when n == 0)."""

    n: int
    missing_rate: float
    summary: NumericSummary | None = None
    dtype: str | None = None
    kind: ClassVar[str] = "numeric"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "numeric", "n": self.n, "missing_rate": self.missing_rate}
        if self.summary is not None:
            out.update({key: _plain(getattr(self.summary, key)) for key in _SUMMARY_KEYS})
        if self.dtype is not None:
            out["dtype"] = self.dtype
        return out


@dataclass(frozen=True)
class CategoricalProfile:
    """One categorical column: `categories` (label -> count, most frequent first, at most
    max_categories of them), `other` (the count of every other label) and `distinct` labels."""

    n: int
    missing_rate: float
    categories: Mapping[str, int] = field(default_factory=dict)
    other: int = 0
    distinct: int = 0
    dtype: str | None = None
    kind: ClassVar[str] = "categorical"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "categorical",
            "n": self.n,
            "missing_rate": self.missing_rate,
            "categories": dict(self.categories),
            "other": self.other,
            "distinct": self.distinct,
        }
        if self.dtype is not None:
            out["dtype"] = self.dtype
        return out


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """The profile of a reference table (`build_profile`): one entry per profiled column, and the
    columns left out with the reason (`skipped`)."""

    columns: Mapping[str, ColumnProfile]
    skipped: Mapping[str, str] = field(default_factory=dict)
    n_rows: int = 0
    bins: int = 10
    quantile_points: int = 1001
    max_categories: int = 50
    format: int = PROFILE_FORMAT

    def restricted(self, names: list[str]) -> ReferenceProfile:
        """The same profile with only the columns in `names`."""
        return replace(self, columns={k: v for k, v in self.columns.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict the store keeps (what `build_reference` returns)."""
        return {
            "format": self.format,
            "n_rows": self.n_rows,
            "bins": self.bins,
            "quantile_points": self.quantile_points,
            "max_categories": self.max_categories,
            "columns": {name: column.to_dict() for name, column in self.columns.items()},
            "skipped": dict(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Read a profile back from its dict (`to_dict`, or one stored by an earlier version)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("columns"), Mapping):
            raise InvalidInputError("reference must be a profile from build_reference() (a dict with 'columns')")
        defaults = cls(columns={})
        return cls(
            columns={str(name): _column(str(name), column) for name, column in data["columns"].items()},
            skipped={str(k): str(v) for k, v in (data.get("skipped") or {}).items()},
            n_rows=int(data.get("n_rows", defaults.n_rows)),
            bins=int(data.get("bins", defaults.bins)),
            quantile_points=int(data.get("quantile_points", defaults.quantile_points)),
            max_categories=int(data.get("max_categories", defaults.max_categories)),
            format=int(data.get("format", PROFILE_FORMAT)),
        )

    @classmethod
    def coerce(cls, reference: ReferenceProfile | Mapping[str, Any]) -> ReferenceProfile:
        """`reference` as a ReferenceProfile: the statistics take the dict of `build_reference` too."""
        return reference if isinstance(reference, ReferenceProfile) else cls.from_dict(reference)


@dataclass(frozen=True)
class ModelReference:
    """A model version on its reference data: the profile of its outputs (the prediction, or the
    positive class's probability) and its performance metrics there ({} without a label column)."""

    outputs: ReferenceProfile
    performance: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"outputs": self.outputs.to_dict(), "performance": dict(self.performance)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelReference:
        return cls(outputs=ReferenceProfile.from_dict(data["outputs"]), performance=dict(data.get("performance") or {}))


def _column(name: str, data: Any) -> ColumnProfile:
    if not isinstance(data, Mapping) or data.get("kind") not in ("numeric", "categorical"):
        kind = data.get("kind") if isinstance(data, Mapping) else type(data).__name__
        raise InvalidInputError(
            f"Column {name!r} of the reference profile has kind {kind!r}; expected 'numeric' or 'categorical'"
        )
    dtype = data.get("dtype")
    dtype = None if dtype is None else str(dtype)
    if data["kind"] == "categorical":
        return CategoricalProfile(
            n=data["n"],
            missing_rate=data["missing_rate"],
            categories=dict(data.get("categories") or {}),
            other=data.get("other", 0),
            distinct=data.get("distinct", 0),
            dtype=dtype,
        )
    # The values are kept as the JSON holds them (no float()/int()): to_dict must give them back as they were.
    summary = None
    if "mean" in data:
        summary = NumericSummary(
            mean=data["mean"],
            std=data["std"],
            min=data["min"],
            max=data["max"],
            edges=tuple(data["edges"]),
            counts=tuple(data["counts"]),
            quantiles=tuple(data["quantiles"]),
            le=tuple(data["le"]),
            lt=tuple(data["lt"]),
            areas=tuple(data["areas"]),
        )
    return NumericProfile(n=data["n"], missing_rate=data["missing_rate"], summary=summary, dtype=dtype)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
