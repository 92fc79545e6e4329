"""How large the drift statistics get by sampling noise alone, with no drift: the KS p-value, the
no-drift quantile of the Wasserstein distance, and that of PSI and JS over a histogram's bins.
keel.monitoring.stats raises a threshold that sampling noise alone would cross at a window's size
to that level (DriftThresholds.noise_quantile); keel.monitoring._drift computes the statistics.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from keel.data.distances import PSI_FLOOR as _PSI_FLOOR

__all__ = ["histogram_noise", "ks_pvalue", "wasserstein_quantile"]


_W_MARGIN_Z = 1.0  # the excess is taken 1 normal unit nearer the centre...
_W_MARGIN = 1.05  # ... and the quantile 5% higher: the approximation's own error (heavy tails)


def wasserstein_quantile(null: tuple[np.ndarray, np.ndarray], alpha: float) -> float:
    """Upper `alpha` quantile of sqrt(n_eff) * W1 / std with no drift (the limit).

    With no drift sqrt(n_eff) * (F_cur - F_ref) tends to B(F(x)), B a Brownian bridge, and W1 to
    Y = integral of |B(F(x))| dx. Its part along Z = integral of B(F(x)) dx (the difference of
    means, variance = the reference variance) dominates the upper tail: B = Z h(x) + R(x) with R
    independent of Z and integrating to 0, so Y = |Z| + 2 * integral of (Z h + R)^- dx, an excess
    that shrinks as |Z| grows. Y's quantile is then Z's (two-sided) plus the excess expected
    there: sd_R * psi(z h / sd_R) integrated, psi(t) = phi(t) - t (1 - Phi(t)). Against a
    simulation of Y it is within 2% for normal, exponential, lognormal, Poisson and zero-inflated
    references and 6% for Student t(3), at alpha = 1e-2 to 1e-4; `_W_MARGIN_Z` and `_W_MARGIN`
    cover that. The bound z * integral of sqrt(F (1 - F)) dx is 1.6-1.9x higher: too blunt to
    catch a 0.25-sd shift at 500 rows.
    """
    from scipy.special import ndtr, ndtri  # ufuncs: scipy.stats.norm costs ~1 ms a call here

    f, w = null
    if f.size == 0:
        return 0.0
    wf = w * f
    c = np.cumsum(wf) + f * (w.sum() - np.cumsum(w)) - f * wf.sum()  # Cov(B(F(x)), Z)
    var_z = float((w * c).sum())
    if var_z <= 0:
        return 0.0
    sd_r = np.sqrt(np.clip(f * (1.0 - f) - c * c / var_z, 0.0, None))
    z = float(-ndtri(alpha / 2.0))
    shifted = max(z - _W_MARGIN_Z, 0.0) * math.sqrt(var_z)
    live = sd_r > 0
    t = shifted * (c[live] / var_z) / sd_r[live]
    pdf = np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    excess = 2.0 * float(np.sum(w[live] * sd_r[live] * (pdf - t * ndtr(-t))))
    return _W_MARGIN * (z * math.sqrt(var_z) + excess)


def ks_pvalue(statistic: float, n_ref: int, n_cur: int) -> float:
    """Two-sided two-sample KS p-value from the effective size n_ref * n_cur / (n_ref + n_cur).

    Up to 1,000 it is scipy's ks_2samp(method='asymp') (kstwo); above, the limiting Kolmogorov
    distribution, which differs from kstwo by < 1e-3 there while kstwo can take a second per call.
    """
    effective = n_ref * n_cur / (n_ref + n_cur)
    if effective <= 1000:
        from scipy.stats import kstwo

        return float(kstwo.sf(statistic, max(round(effective), 1)))
    from scipy.special import kolmogorov

    return float(kolmogorov(statistic * math.sqrt(effective)))


# -- noise of the histogram statistics ---------------------------------------------------------------
_NOISE_SUPPORT = 1e-10  # per cell, window counts rarer than this are put at the top (conservative)
_NOISE_STEPS = 8192  # resolution of the sum's distribution (values are rounded up onto it)


@functools.lru_cache(maxsize=512)
def histogram_noise(ref_counts: tuple[float, ...], n: int, alpha: float) -> tuple[float, float]:
    """(PSI, squared JS distance) that a window of `n` rows drawn from the reference's own bin
    shares exceeds with probability at most `alpha`: the window side only.

    The chi-square limit is wrong where windows are small and bins rare: an empty bin costs PSI
    share * ln(share / 1e-4), many times its chi-square term, and at 100 rows 20 categories of 2%
    leave one or two empty in most windows. Both statistics are sums of one term per bin, so
    with the bins' counts taken as independent binomials (which spreads the sum a little more
    than the multinomial does: an upper bound in practice) the sum's distribution is the
    convolution of each bin's, computed exactly on a grid (terms rounded up, so quantiles err
    high by at most one step per bin).
    """
    from scipy.stats import binom

    total = max(float(sum(ref_counts)), 1.0)
    shares = np.asarray(ref_counts, dtype=np.float64) / total
    shares = shares[shares > 0]
    floored = np.clip(shares, _PSI_FLOOR, None)
    # Each bin's counts from 10 standard deviations (and 15 counts) below its mean to as far
    # above: the mass outside is far below any alpha and is counted as above everything.
    spread = 10.0 * np.sqrt(n * shares * (1.0 - shares)) + 15.0
    lows = np.clip(np.floor(n * shares - spread), 0, n).astype(np.int64)
    highs = np.clip(np.ceil(n * shares + spread), 0, n).astype(np.int64)
    owner = np.repeat(np.arange(shares.size), highs - lows + 1)
    counts = (
        np.arange(owner.size)
        - np.repeat(np.cumsum(highs - lows + 1) - (highs - lows + 1), highs - lows + 1)
        + lows[owner]
    )
    pmf = binom.pmf(counts, n, shares[owner])
    p, e, q = shares[owner], floored[owner], counts / n
    a = np.clip(q, _PSI_FLOOR, None)
    psi_terms = (a - e) * np.log(a / e)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        js_terms = 0.5 * (p * np.log2(p / m) + np.where(q > 0, q * np.log2(q / m), 0.0))
    cut = np.clip(1.0 - np.bincount(owner, weights=pmf, minlength=shares.size), 0.0, None)
    splits = np.cumsum(highs - lows + 1)[:-1]
    cells = list(zip(np.split(pmf, splits), np.split(psi_terms, splits), np.split(js_terms, splits), cut, strict=True))
    return _sum_quantile([(c[0], c[1], c[3]) for c in cells], alpha), _sum_quantile(
        [(c[0], c[2], c[3]) for c in cells], alpha
    )


def _sum_quantile(cells: list[tuple[np.ndarray, np.ndarray, float]], alpha: float) -> float:
    """Upper `alpha` quantile of a sum of independent terms, each given as (pmf, values, cut mass)."""
    if not cells:
        return 0.0
    top = sum(float(np.max(values)) for _, values, _ in cells)
    if top <= 0:
        return 0.0
    step = top / _NOISE_STEPS
    size = 1 << int(np.ceil(np.log2(_NOISE_STEPS + len(cells) + 2)))
    spectrum = np.ones(size // 2 + 1, dtype=np.complex128)
    cut = 0.0
    for pmf, values, lost in cells:
        index = np.ceil(np.clip(values, 0.0, None) / step - 1e-9).astype(np.int64)
        spectrum *= np.fft.rfft(np.bincount(index, weights=pmf, minlength=size)[:size])
        cut += lost
    density = np.clip(np.fft.irfft(spectrum, size), 0.0, None)
    tail = np.cumsum(density[::-1])[::-1] + cut  # P(sum >= k steps), the cut mass counted as above all
    above = np.flatnonzero(tail <= alpha)
    if not above.size:
        return top
    return float(above[0] - 1) * step if above[0] > 0 else 0.0
