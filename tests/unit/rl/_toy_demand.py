"""A tiny Poisson demand for the twin tests (independent of keel.rl.demand), with optional
seasonal factors so the observation's phase is exercised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats


@dataclass(frozen=True)
class ToyPoisson:
    rate: float = 10.0
    factors: tuple[float, ...] = (1.0,)

    @property
    def season(self) -> int:
        return len(self.factors)

    def mean(self, t: int = 0) -> float:
        return self.rate * self.factors[t % self.season]

    def pmf(self, t: int = 0, *, tail: float = 1e-9) -> NDArray[np.float64]:
        mu = self.mean(t)
        k = int(stats.poisson.isf(tail, mu)) + 1
        p = stats.poisson.pmf(np.arange(k + 1), mu)
        p[-1] += 1.0 - p.sum()
        return np.asarray(p, dtype=np.float64)

    def sample(self, rng: np.random.Generator, periods: int, copies: int, *, start: int = 0) -> NDArray[np.int64]:
        mus = np.array([self.mean(start + i) for i in range(periods)])
        return rng.poisson(mus[:, None], size=(periods, copies)).astype(np.int64)
