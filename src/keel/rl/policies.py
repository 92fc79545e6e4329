"""Classic inventory policies as frozen values acting on a batch of observations.

Every twin puts the inventory position first in its observation (inventory.py: column 0; serial.py:
columns 0 .. stages - 1, one installation position per stage), so a policy reads only those columns
and works the same on the twin, the Gymnasium environments and a served observation. `act(obs)`
takes (copies, n) observations (or one (n,) observation) and returns whole-unit orders, (copies,)
for a single item and (copies, stages) for a serial chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from keel.errors import InvalidInputError

__all__ = ["SS", "BaseStock", "CappedBaseStock", "EchelonBaseStock", "Policy", "SeasonalBaseStock"]


def _positions(obs: ArrayLike, columns: int) -> tuple[NDArray[np.float64], bool]:
    arr = np.asarray(obs, dtype=np.float64)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[1] < columns:
        raise InvalidInputError(f"observations must have shape (copies, n >= {columns}) or (n,), got {np.shape(obs)}")
    return arr[:, :columns], single


def _orders(values: NDArray[np.float64], single: bool) -> NDArray[np.int64]:
    out = np.maximum(np.rint(values), 0).astype(np.int64)
    return out[0] if single else out


def _whole(name: str, value: int, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(f"{name} must be an integer >= {low} (units), got {value!r}")


@dataclass(frozen=True)
class BaseStock:
    """Order up to `level`: order level - position when the position is below it."""

    level: int

    def __post_init__(self) -> None:
        _whole("level", self.level)

    def act(self, obs: ArrayLike) -> NDArray[np.int64]:
        pos, single = _positions(obs, 1)
        return _orders(self.level - pos[:, 0], single)


@dataclass(frozen=True)
class CappedBaseStock:
    """Base-stock, but never more than `cap` units in one order (smooths orders under lost sales)."""

    level: int
    cap: int

    def __post_init__(self) -> None:
        _whole("level", self.level)
        _whole("cap", self.cap, 1)

    def act(self, obs: ArrayLike) -> NDArray[np.int64]:
        pos, single = _positions(obs, 1)
        return _orders(np.minimum(self.level - pos[:, 0], self.cap), single)


@dataclass(frozen=True)
class SS:
    """(s, S): when the position is at or below `s`, order up to `S`; otherwise order nothing."""

    s: int
    S: int

    def __post_init__(self) -> None:
        if isinstance(self.s, bool) or not isinstance(self.s, (int, np.integer)):
            raise InvalidInputError(f"s must be an integer (units), got {self.s!r}")
        _whole("S", self.S)
        if self.S <= self.s:
            raise InvalidInputError(f"(s, S) needs S > s, got s={self.s}, S={self.S}")

    def act(self, obs: ArrayLike) -> NDArray[np.int64]:
        pos, single = _positions(obs, 1)
        x = pos[:, 0]
        return _orders(np.where(x <= self.s, self.S - x, 0.0), single)


@dataclass(frozen=True)
class SeasonalBaseStock:
    """Base-stock with one level per phase of the seasonal cycle: order up to `levels[phase]`, the
    phase being the observation's last column (t % season, as a seasonal twin lays it out)."""

    levels: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.levels) < 2:
            raise InvalidInputError(f"a seasonal base-stock needs a level per phase (>= 2), got {self.levels}")
        for i, level in enumerate(self.levels):
            _whole(f"levels[{i}]", level)

    def act(self, obs: ArrayLike) -> NDArray[np.int64]:
        pos, single = _positions(obs, 1)
        phase = np.atleast_2d(np.asarray(obs, dtype=np.float64))[:, -1].astype(np.int64) % len(self.levels)
        return _orders(np.asarray(self.levels, dtype=np.float64)[phase] - pos[:, 0], single)


@dataclass(frozen=True)
class EchelonBaseStock:
    """Per-stage *echelon* base-stock for a serial chain (Clark and Scarf): stage i orders up to
    `levels[i]` on its echelon position, the sum of the installation positions of stages 0..i (its
    own stock and everything downstream of it, minus the customers' backlog)."""

    levels: tuple[int, ...]

    def __post_init__(self) -> None:
        for i, level in enumerate(self.levels):
            _whole(f"levels[{i}]", level)
        if len(self.levels) < 2:
            raise InvalidInputError(f"a serial chain has at least 2 stages, got levels {self.levels}")

    def act(self, obs: ArrayLike) -> NDArray[np.int64]:
        pos, single = _positions(obs, len(self.levels))
        echelon = np.cumsum(pos, axis=1)
        return _orders(np.asarray(self.levels, dtype=np.float64) - echelon, single)


Policy = BaseStock | CappedBaseStock | SS | SeasonalBaseStock | EchelonBaseStock
