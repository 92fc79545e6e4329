"""What a run accepts: keys, param and tag text, metric points, artifact names, statuses.

Pure functions, one home for these rules: ActiveRun and Runs check with them, and so does
keel.Client's RemoteRun before a point is buffered, so a script gets the same InvalidInputError
for the same bad input locally and over HTTP. Standard library and base modules only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keel.entities import RunStatus
from keel.errors import InvalidInputError

__all__ = [
    "ARTIFACT_PATH_CHARS",
    "KEY_CHARS",
    "NAME_CHARS",
    "artifact_name",
    "check_key",
    "metric_point",
    "metric_step",
    "metric_timestamp",
    "metric_value",
    "now_ts",
    "params_text",
    "run_status",
    "tags_text",
]


def _param_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


# Column widths of the metadata store: checked here so SQLite (which ignores them) and
# PostgreSQL (which enforces them) refuse the same input, with a message that says why.
KEY_CHARS = 250
NAME_CHARS = 256
ARTIFACT_PATH_CHARS = 512


def check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > KEY_CHARS:
        raise InvalidInputError(
            f"A {what} key must be a non-empty string of at most {KEY_CHARS} characters, got {key!r}"
        )
    return key


def artifact_name(name: Any) -> str:
    inside = isinstance(name, str) and not name.startswith(("/", "\\")) and ".." not in Path(name).parts
    if not inside or not 1 <= len(name) <= ARTIFACT_PATH_CHARS:
        raise InvalidInputError(
            f"Artifact name {name!r} must be a relative path inside the run (no '..'), "
            f"1 to {ARTIFACT_PATH_CHARS} characters"
        )
    return name


def params_text(params: Mapping[str, Any]) -> dict[str, str]:
    return {check_key(k, "param"): _param_text(v) for k, v in params.items()}


def tags_text(tags: Mapping[str, Any]) -> dict[str, str]:
    return {check_key(k, "tag"): str(v) for k, v in tags.items()}


def metric_value(key: Any, value: Any) -> float:
    check_key(key, "metric")
    return _finite(value, f"Metric {key!r}", "a number")


def _finite(value: Any, what: str, kind: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be {kind}, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidInputError(f"{what} must be finite, got {number}")
    return number


# Steps are stored as 64-bit integers, and the series' next step (step + 1) must fit too.
_STEP_MIN, _STEP_MAX = -(2**63), 2**63 - 2


def metric_step(key: Any, step: Any) -> int:
    if not _is_integer(step):
        raise InvalidInputError(f"The step of metric {key!r} must be an integer, got {step!r}")
    at = int(step)
    if not _STEP_MIN <= at <= _STEP_MAX:
        raise InvalidInputError(f"The step of metric {key!r} must be between {_STEP_MIN} and {_STEP_MAX}, got {at}")
    return at


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return int(value) == value
    except (TypeError, ValueError, OverflowError):
        return False


def run_status(value: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(value)
    except ValueError:
        raise InvalidInputError(
            f"Unknown run status {value!r}; known: {', '.join(s.value for s in RunStatus)}"
        ) from None


def now_ts() -> float:
    return time.time()


# Metric timestamps are seconds since the epoch: from 1970-01-01 to the end of 9999-12-31, the
# range a datetime can show. Outside it a value is a mistake (often milliseconds), not a time.
_MIN_TIMESTAMP = 0.0
_MAX_TIMESTAMP = 253402300800.0  # 10000-01-01T00:00:00Z, excluded


def metric_timestamp(value: Any, key: Any = None) -> float:
    what = "A metric timestamp" if key is None else f"The timestamp of metric {key!r}"
    ts = _finite(value, what, "seconds since the epoch")
    if not _MIN_TIMESTAMP <= ts < _MAX_TIMESTAMP:
        hint = "; it looks like milliseconds: divide by 1000" if _MIN_TIMESTAMP <= ts / 1000 < _MAX_TIMESTAMP else ""
        raise InvalidInputError(
            f"{what} must be seconds since the epoch between 0 (1970-01-01) and {_MAX_TIMESTAMP:.0f} "
            f"(10000-01-01, excluded), got {value!r}{hint}"
        )
    return ts


def metric_point(
    key: Any, value: Any, step: Any = None, timestamp: Any = None
) -> tuple[str, float, int | None, float | None]:
    """One metric point, checked: (key, value as a finite float, step as an int or None, timestamp or None).

    None for the step means the series' next step, None for the timestamp means now: both are
    filled in by whoever writes the point.
    """
    number = metric_value(key, value)
    return (
        key,
        number,
        None if step is None else metric_step(key, step),
        None if timestamp is None else metric_timestamp(timestamp, key),
    )
