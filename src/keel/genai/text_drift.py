"""Drift of text (prompts against a training corpus) measured on sentence embeddings. Values in, values out.

Two methods, one verdict rule: a sample has drifted only when the shift is both *significant*
(p-value below `alpha`) and *large enough to matter* (effect size at or above `threshold`). The
p-value alone grows with the sample: on 2,000 prompts a shift nobody would act on is "significant";
the effect size does not grow with the sample, so it is the one that carries the threshold.

- ``method="mmd"``: the unbiased squared maximum mean discrepancy (Gretton et al. 2012) with a
  Gaussian (RBF) kernel ``k(a, b) = exp(-|a - b|^2 / h)``, ``h`` the median squared distance between
  rows of the pooled sample (the median heuristic; the bandwidth adapts to the embedder's scale, so
  normalised and raw embeddings behave alike). The p-value comes from `permutations` relabellings of
  the pooled sample, all computed from one kernel matrix by a single matrix product.
  The effect size is a kernel Cohen's d: ``sqrt(max(MMD^2, 0) / w)``, ``w`` the mean of the two
  within-sample variances in the kernel's feature space (``1 - mean off-diagonal k`` of each sample).
  MMD^2 is the squared distance between the two mean embeddings in that space, so the ratio is
  "distance between the means, in within-sample standard deviations", as Cohen's d is for one
  number; it is free of the sample size (the estimator is unbiased) and of the kernel's scale.
  For Gaussian embeddings shifted by ``delta`` standard deviations in every coordinate it is close to
  ``delta / sqrt(2)`` whatever the dimension.
- ``method="classifier"``: a logistic regression told to separate reference from current rows,
  scored out of fold (stratified k-fold, so every row is scored by a model that never saw it). The
  statistic is the ROC AUC of those scores, the effect size ``2 * |AUC - 0.5|`` (0: no better than a
  coin; 1: perfectly separable). The p-value is one-sided (AUC above 0.5) from label permutations of
  the fixed out-of-fold scores, i.e. a Mann-Whitney test; refitting per permutation would cost
  hundreds of fits. Cross-fitting is known to bias a null AUC slightly below 0.5, so this test is, if anything,
  conservative.

The two effect sizes measure different things and disagree on purpose about a shift confined to a
few directions: one standard deviation along one of 384 coordinates (1,000 rows a side) gives the
classifier 0.31-0.39 (drifted) but the MMD 0.04 (not drifted), because the kernel sees the whole
distribution and that shift moves it little; a shift spread over many directions, as a change of
topic is in embedding space, is flagged by both. Pick the classifier to catch narrow changes.

Samples larger than `max_rows` (2,000 by default) per side are subsampled at random (from `seed`)
before either method: the kernel matrix grows with the square of the rows and 2,000 a side already
resolves effects far below any sensible threshold. `TextDrift.n_reference` / `n_current` give the
rows actually compared.

`length_stats` summarises a batch of texts (characters, whitespace tokens) for the monitor's
output-length series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keel.errors import InvalidInputError

__all__ = ["TextDrift", "LengthStats", "text_drift", "length_stats", "DEFAULT_THRESHOLDS", "METHODS"]

METHODS = ("mmd", "classifier")
# Effect-size thresholds chosen so that two samples of one distribution stay well below them (null
# effect sizes measured on 384-dim Gaussian samples, 20 seeds: MMD at most 0.021 with 400 rows a side
# and 0.011 with 1,000; classifier at most 0.106 and 0.050) while a shift of a fifth of a standard
# deviation in every coordinate clears them (MMD 0.15, classifier 0.98, 1,000 a side). The classifier's
# is higher because its null AUC wanders more on small samples. See tests/unit/genai/test_text_drift.py.
DEFAULT_THRESHOLDS = {"mmd": 0.1, "classifier": 0.2}
_MIN_ROWS = 10  # below this neither the permutation test nor 5-fold scoring means anything


@dataclass(frozen=True)
class TextDrift:
    """The verdict on `current` against `reference`: drifted = p_value < alpha and effect_size >= threshold."""

    method: str
    statistic: float  # mmd: unbiased MMD^2; classifier: out-of-fold ROC AUC
    p_value: float
    effect_size: float  # mmd: kernel Cohen's d; classifier: 2 * |AUC - 0.5|
    threshold: float  # on effect_size
    drifted: bool
    n_reference: int  # rows compared, after subsampling to max_rows
    n_current: int
    reason: str  # one sentence, for alerts and the dashboard
    alpha: float = 0.05


@dataclass(frozen=True)
class LengthStats:
    """Lengths of a batch of texts: characters and whitespace-separated tokens."""

    n: int
    mean_chars: float
    mean_tokens: float
    median_tokens: float
    p95_tokens: float
    max_tokens: int


def text_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    method: str = "mmd",
    permutations: int = 200,
    seed: int = 0,
    threshold: float | None = None,
    alpha: float = 0.05,
    max_rows: int = 2000,
) -> TextDrift:
    """Test whether the embeddings `current` (m, d) come from the distribution of `reference` (n, d).

    `threshold` is on the effect size (None: `DEFAULT_THRESHOLDS[method]`); `alpha` on the p-value.
    Every random choice (subsample, permutations, folds) comes from `seed`.
    """
    ref, cur = _check(reference, current, method, permutations, alpha, max_rows)
    thr = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    if not np.isfinite(thr) or thr < 0:
        raise InvalidInputError(f"threshold={threshold!r} must be a finite effect size >= 0 (or None for the default)")
    rng = np.random.default_rng(seed)
    ref = _subsample(ref, max_rows, rng)
    cur = _subsample(cur, max_rows, rng)
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # One BLAS thread: the products and fits here are small, and on a shared 2-core machine threaded
    # BLAS made them slower, not faster (1,000 x 384 a side: MMD 0.27 s -> 0.16 s, 2,000 a side
    # 1.56 s -> 0.59 s; one logistic fit 0.16 s -> 0.012 s).
    with threadpool_limits(limits=1):
        if method == "mmd":
            stat, p, effect = _mmd(ref, cur, permutations, rng)
            what = f"MMD^2 {stat:.2e}, kernel effect size {effect:.3f}"
        else:
            stat, p, effect = _classifier(ref, cur, permutations, rng)
            what = f"classifier AUC {stat:.3f}, effect size {effect:.3f}"
    significant, large = p < alpha, effect >= thr
    drifted = bool(significant and large)
    if drifted:
        reason = f"Drifted: {what} reaches the threshold {thr:g} and p = {p:.3g} < {alpha:g}."
    elif significant:
        reason = f"Not drifted: {what} is below the threshold {thr:g}, although p = {p:.3g} < {alpha:g}."
    else:
        reason = f"Not drifted: {what}, p = {p:.3g} is not below {alpha:g}."
    return TextDrift(
        method=method,
        statistic=float(stat),
        p_value=float(p),
        effect_size=float(effect),
        threshold=thr,
        drifted=drifted,
        n_reference=len(ref),
        n_current=len(cur),
        reason=reason,
        alpha=float(alpha),
    )


def length_stats(texts: Sequence[str]) -> LengthStats:
    """Characters and whitespace tokens of `texts`; an empty batch gives zeros (a series may have gaps)."""
    if isinstance(texts, str):
        raise InvalidInputError("length_stats takes a sequence of texts, got one str; wrap it: length_stats([text])")
    chars = np.array([len(t) for t in texts], dtype=float)
    tokens = np.array([len(t.split()) for t in texts], dtype=float)
    if len(tokens) == 0:
        return LengthStats(0, 0.0, 0.0, 0.0, 0.0, 0)
    return LengthStats(
        n=len(tokens),
        mean_chars=float(chars.mean()),
        mean_tokens=float(tokens.mean()),
        median_tokens=float(np.median(tokens)),
        p95_tokens=float(np.percentile(tokens, 95)),
        max_tokens=int(tokens.max()),
    )


def _check(
    reference: np.ndarray, current: np.ndarray, method: str, permutations: int, alpha: float, max_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    if method not in METHODS:
        raise InvalidInputError(f"method={method!r} is not one of {METHODS}")
    if int(permutations) != permutations or permutations < 19:
        raise InvalidInputError(f"permutations={permutations!r}: need an integer >= 19 for a p-value below 0.05")
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha={alpha!r} must lie strictly between 0 and 1")
    if int(max_rows) != max_rows or max_rows < _MIN_ROWS:
        raise InvalidInputError(f"max_rows={max_rows!r} must be an integer >= {_MIN_ROWS}")
    out = []
    for name, arr in (("reference", reference), ("current", current)):
        a = np.asarray(arr, dtype=float)
        if a.ndim != 2:
            raise InvalidInputError(f"{name} must be a 2-D array of embeddings (rows, dims), got shape {a.shape}")
        if len(a) < _MIN_ROWS:
            raise InvalidInputError(f"{name} has {len(a)} rows; drift needs at least {_MIN_ROWS} per side")
        if not np.isfinite(a).all():
            raise InvalidInputError(f"{name} contains NaN or infinite values; drop or re-embed those rows")
        out.append(a)
    if out[0].shape[1] != out[1].shape[1]:
        raise InvalidInputError(
            f"reference has {out[0].shape[1]} dims and current {out[1].shape[1]}: embed both with the same model"
        )
    return out[0], out[1]


def _subsample(a: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    if len(a) <= max_rows:
        return a
    return a[np.sort(rng.choice(len(a), size=max_rows, replace=False))]


def _mmd(x: np.ndarray, y: np.ndarray, permutations: int, rng: np.random.Generator) -> tuple[float, float, float]:
    n, m = len(x), len(y)
    z = np.vstack([x, y])
    sq = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)  # (N, N) squared distances
    off = d2[np.triu_indices(len(z), k=1)]
    h = float(np.median(off))
    if h <= 0:  # more than half the pairs coincide: fall back to the mean so the kernel stays defined
        h = float(off.mean()) or 1.0
    k = np.exp(-d2 / h)  # diagonal is exactly 1
    del d2

    # Every statistic below needs, for a labelling s (1 = reference row), only q = s'Ks and s'r with
    # r = K1: K_xx = q, K_xy = s'r - q, K_yy = total - 2 s'r + q. So one (N, N) x (N, P) product
    # scores all P permutations at once. The product runs in float32 (half the memory traffic), which
    # ranks the permutations correctly but is too coarse to report an MMD^2 of ~1e-5 from sums of ~1e6.
    r = k.sum(axis=1)
    total = float(r.sum())
    s_obs = np.zeros(len(z))
    s_obs[:n] = 1.0
    perms = np.zeros((len(z), permutations), dtype=np.float32)
    for j in range(permutations):
        perms[rng.permutation(len(z))[:n], j] = 1.0
    s = np.hstack([s_obs[:, None].astype(np.float32), perms])
    q = np.einsum("ij,ij->j", s, k.astype(np.float32) @ s, dtype=np.float64)
    sr = s.T.astype(np.float64) @ r
    kxx, kxy, kyy = q - n, sr - q, total - 2.0 * sr + q - m  # minus the diagonals (k(a, a) = 1)
    mmd2 = kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)
    p = (1.0 + np.count_nonzero(mmd2[1:] >= mmd2[0])) / (1.0 + permutations)  # same arithmetic both sides

    # The reported statistic and effect size: from the kernel's blocks, in float64.
    kxx0, kyy0 = (float(k[:n, :n].sum()) - n) / (n * (n - 1)), (float(k[n:, n:].sum()) - m) / (m * (m - 1))
    stat = kxx0 + kyy0 - 2.0 * float(k[:n, n:].sum()) / (n * m)
    within = 0.5 * ((1.0 - kxx0) + (1.0 - kyy0))
    effect = float(np.sqrt(max(stat, 0.0) / within)) if within > 0 else 0.0
    return stat, float(p), effect


def _classifier(
    x: np.ndarray, y: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    from scipy.stats import rankdata
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    z = np.vstack([x, y])
    labels = np.r_[np.zeros(len(x)), np.ones(len(y))]
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
    scores = np.empty(len(z))
    for train, test in folds.split(z, labels):
        scaler = StandardScaler().fit(z[train])
        # C=0.1: 384 dims on ~1,600 training rows overfit at C=1, which only costs AUC (power).
        model = LogisticRegression(C=0.1, max_iter=1000).fit(scaler.transform(z[train]), labels[train])
        scores[test] = model.decision_function(scaler.transform(z[test]))

    # AUC from ranks (Mann-Whitney); a permutation moves labels, never scores, so ranks are computed once.
    ranks = rankdata(scores)
    n, m = len(x), len(y)

    def auc(rank_sum_current: np.ndarray) -> np.ndarray:
        return (rank_sum_current - m * (m + 1) / 2.0) / (n * m)

    observed = float(auc(np.array([ranks[n:].sum()]))[0])
    picks = np.argsort(rng.random((permutations, len(z))), axis=1)[:, :m]  # (P, m) random "current" rows
    null = auc(ranks[picks].sum(axis=1))
    p = (1.0 + np.count_nonzero(null >= observed)) / (1.0 + permutations)
    return observed, float(p), 2.0 * abs(observed - 0.5)
