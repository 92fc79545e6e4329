"""A monitor's settings (`MonitorConfig`) and their validation: every field is checked when the
settings are built, whoever builds them (Python, the CLI, the HTTP API, a stored row)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from keel.errors import InvalidInputError
from keel.refs import CHAMPION, check_name

__all__ = ["MonitorConfig", "known_settings"]

# Bounds of the settings: past them a window, a schedule or a row count means a typing mistake,
# and the arithmetic downstream (timedelta, 64-bit columns) would overflow.
MAX_ROWS = 100_000_000  # window_rows, min_rows
MAX_WINDOW_S = 10 * 366 * 86_400.0  # ten years
MAX_SCHEDULE_S = 366 * 86_400.0  # at least once a year
MAX_TEXT = 300  # reference (NAME@VERSION) and target (a column name)


@dataclass(frozen=True)
class MonitorConfig:
    """How a model is watched. Windows are the newest `window_rows` predictions, or those of the
    last `window_s` seconds; the reference defaults to the champion's training dataset version.

    Every field is checked here, whoever builds it (Python, the CLI, the HTTP API, a stored row),
    so that a setting that would fail every later check is refused when it is given.
    """

    window_rows: int | None = 1000
    window_s: float | None = None
    reference: str | None = None
    target: str | None = None  # label column of the reference (for reference performance)
    alias: str = CHAMPION
    schedule_s: float = 300.0
    min_rows: int = 100
    multivariate: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)  # DriftThresholds fields

    def __post_init__(self) -> None:
        _whole("window_rows", self.window_rows, optional=True)
        _seconds("window_s", self.window_s, MAX_WINDOW_S, optional=True)
        if self.window_rows is None and self.window_s is None:
            raise InvalidInputError("A monitor needs window_rows or window_s")
        _seconds("schedule_s", self.schedule_s, MAX_SCHEDULE_S)
        _whole("min_rows", self.min_rows)
        for name in ("reference", "target"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT):
                raise InvalidInputError(
                    f"{name} must be a non-empty string of at most {MAX_TEXT} characters or null, got {_shown(value)}"
                )
        if not isinstance(self.multivariate, bool):
            raise InvalidInputError(f"multivariate must be true or false, got {_shown(self.multivariate)}")
        check_name(self.alias, what="alias")
        _check_thresholds(self.thresholds)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorConfig:
        return cls(**known_settings(data))

    @classmethod
    def salvaged(cls, data: Mapping[str, Any]) -> MonitorConfig:
        """The settings of `data` that validate, defaults for the others: to show a monitor whose
        stored settings an older Keel accepted (its checks fail, and say which setting is wrong)."""
        known = {f.name for f in fields(cls)}
        kept: dict[str, Any] = {}
        for key, value in data.items() if isinstance(data, Mapping) else ():
            if key in known:
                try:
                    cls(**{**kept, key: value})
                except InvalidInputError:
                    continue
                kept[key] = value
        return cls(**kept)


def known_settings(data: Any) -> Mapping[str, Any]:
    """`data` if it is a mapping of MonitorConfig field names; else InvalidInputError naming the unknown ones."""
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"Monitor settings are an object of name: value, got {_shown(data)}")
    known = {f.name for f in fields(MonitorConfig)}
    unknown = {str(k) for k in data} - known
    if unknown:
        raise InvalidInputError(
            f"Unknown monitor setting(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    return data


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _whole(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{name} must be a whole number{' or null' if optional else ''}, got {_shown(value)}")
    if value < 1:
        raise InvalidInputError(f"{name} must be >= 1, got {value}")
    if value > MAX_ROWS:
        raise InvalidInputError(f"{name} must be at most {MAX_ROWS:,}, got {value:,}")


def _seconds(name: str, value: Any, limit: float, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not math.isfinite(value)
    ):
        raise InvalidInputError(
            f"{name} must be a finite number of seconds{' or null' if optional else ''}, got {_shown(value)}"
        )
    if value <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {value}")
    if value > limit:
        raise InvalidInputError(f"{name} must be at most {limit:,.0f} seconds, got {value:g}")


def _check_thresholds(thresholds: Any) -> None:
    """Drift thresholds: DriftThresholds fields with finite numbers (ks_stat and noise_quantile may be null)."""
    from keel.monitoring.stats import DriftThresholds

    names = [f.name for f in fields(DriftThresholds)]
    if not isinstance(thresholds, Mapping):
        raise InvalidInputError(f"thresholds must be an object of {', '.join(names)}: number, got {_shown(thresholds)}")
    unknown = sorted(str(k) for k in thresholds if k not in names)
    if unknown:
        raise InvalidInputError(f"thresholds: unknown name(s) {', '.join(unknown)}; known: {', '.join(names)}")
    for key, value in thresholds.items():
        if value is None and key in ("ks_stat", "noise_quantile"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInputError(f"thresholds.{key} must be a finite number, got {_shown(value)}")
    try:
        DriftThresholds(**thresholds)
    except InvalidInputError as exc:
        raise InvalidInputError(f"thresholds: {exc}") from None
