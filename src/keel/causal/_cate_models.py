"""Base models and cross-fitting for the CATE meta-learners (private to `keel.causal.cate`).

Every nuisance is cross-fitted: the prediction for a row comes from a model that never saw
that row, so the doubly robust pseudo-outcomes and the selection scores are honest. A fitted
learner predicts on new rows with the average of its fold models (no refit on all rows: the
fold models already exist and their average is a bagged, slightly smoother estimate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone

Array = NDArray[np.float64]
Folds = Sequence[tuple[NDArray[np.intp], NDArray[np.intp]]]


class Predictor(Protocol):
    def predict(self, X: Array, /) -> Any: ...


def default_models(seed: int) -> dict[str, Any]:
    """Outcome / effect regressors, simplest first: a quadratic ridge for smooth parts, boosting for rough ones.

    The ridge on degree-2 features is there because effects are often smooth in a few features,
    where boosting on noisy pseudo-outcomes pays a variance price; selection picks per data set.
    """
    from lightgbm import LGBMRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    lgbm = LGBMRegressor(
        n_estimators=200,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=1,
        deterministic=True,
        verbose=-1,
    )
    ridge = make_pipeline(
        StandardScaler(), PolynomialFeatures(2, include_bias=False), RidgeCV(alphas=np.logspace(-2, 4, 13))
    )
    return {"ridge_poly2": ridge, "lgbm": lgbm}  # simplest first: the order breaks near-ties in selection


def default_propensity_models(seed: int) -> dict[str, Any]:
    """Propensity classifiers; covariates are standardised so the logistic fit converges."""
    from lightgbm import LGBMClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    lgbm = LGBMClassifier(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=7,
        min_child_samples=50,
        random_state=seed,
        n_jobs=1,
        deterministic=True,
        verbose=-1,
    )
    return {"logistic": logistic, "lgbm": lgbm}


@dataclass(frozen=True)
class FoldAverage:
    """Average of per-fold predictors: `predict(X)` = mean over folds."""

    models: tuple[Predictor, ...]

    def predict(self, X: Array) -> Array:
        preds = [np.asarray(m.predict(X), dtype=np.float64) for m in self.models]
        return np.asarray(np.mean(preds, axis=0), dtype=np.float64)


@dataclass(frozen=True)
class ProbaAverage:
    """Average of per-fold classifiers' P(T = 1 | x)."""

    models: tuple[Any, ...]

    def predict(self, X: Array) -> Array:
        preds = [np.asarray(m.predict_proba(X), dtype=np.float64)[:, 1] for m in self.models]
        return np.asarray(np.mean(preds, axis=0), dtype=np.float64)


@dataclass(frozen=True)
class Difference:
    """T-learner effect: mu1(x) - mu0(x)."""

    treated: Predictor
    control: Predictor

    def predict(self, X: Array) -> Array:
        return np.asarray(self.treated.predict(X), dtype=np.float64) - np.asarray(
            self.control.predict(X), dtype=np.float64
        )


@dataclass(frozen=True)
class SLearnerEffect:
    """S-learner effect: f(x, 1) - f(x, 0) for one model fitted on [X, T]."""

    model: Predictor

    def predict(self, X: Array) -> Array:
        ones, zeros = np.ones((len(X), 1)), np.zeros((len(X), 1))
        hi = np.asarray(self.model.predict(np.hstack([X, ones])), dtype=np.float64)
        return hi - np.asarray(self.model.predict(np.hstack([X, zeros])), dtype=np.float64)


@dataclass(frozen=True)
class XLearnerEffect:
    """X-learner effect: e(x) * tau0(x) + (1 - e(x)) * tau1(x) (Kuenzel et al. 2019)."""

    tau_treated: Predictor
    tau_control: Predictor
    propensity: Predictor

    def predict(self, X: Array) -> Array:
        e = np.asarray(self.propensity.predict(X), dtype=np.float64)
        t1 = np.asarray(self.tau_treated.predict(X), dtype=np.float64)
        return e * np.asarray(self.tau_control.predict(X), dtype=np.float64) + (1 - e) * t1


def make_folds(t: NDArray[np.int64], n_folds: int, seed: int) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(t), 1)), t))


def crossfit_regression(
    model: Any, X: Array, y: Array, folds: Folds, rows: NDArray[np.bool_] | None = None
) -> tuple[Array, FoldAverage]:
    """Out-of-fold predictions for every row; each fold's model is fitted on its training rows in `rows`."""
    oof = np.empty(len(X))
    fitted = []
    for train, test in folds:
        use = train if rows is None else train[rows[train]]
        m = clone(model).fit(X[use], y[use])
        oof[test] = m.predict(X[test])
        fitted.append(m)
    return oof, FoldAverage(tuple(fitted))


def crossfit_propensity(model: Any, X: Array, t: NDArray[np.int64], folds: Folds) -> tuple[Array, ProbaAverage]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from keel.errors import InvalidInputError

    oof = np.empty(len(X))
    fitted = []
    for train, test in folds:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                m = clone(model).fit(X[train], t[train])
            except ConvergenceWarning as exc:
                raise InvalidInputError(
                    f"the propensity model {model!r} did not converge ({exc}); standardise the covariates "
                    "or pass propensity_models with a model that converges"
                ) from exc
        oof[test] = m.predict_proba(X[test])[:, 1]
        fitted.append(m)
    return oof, ProbaAverage(tuple(fitted))


def crossfit_effect(
    learner: str,
    model: Any,
    X: Array,
    t: NDArray[np.int64],
    y: Array,
    folds: Folds,
    nuisance: Mapping[str, Array],
    propensity: Predictor,
) -> tuple[Array, Predictor]:
    """Out-of-fold CATE of the S-, X- or DR-learner with `model` as its base; its fold-averaged predictor."""
    oof = np.empty(len(X))
    fitted: list[Predictor] = []
    treated = t == 1
    for train, test in folds:
        if learner == "S":
            f = clone(model).fit(np.hstack([X[train], t[train, None].astype(np.float64)]), y[train])
            effect: Predictor = SLearnerEffect(f)
        elif learner == "X":
            # Imputed effects from the cross-fitted arm models of the other arm.
            tr, co = train[treated[train]], train[~treated[train]]
            tau1 = clone(model).fit(X[tr], y[tr] - nuisance["mu0"][tr])
            tau0 = clone(model).fit(X[co], nuisance["mu1"][co] - y[co])
            effect = XLearnerEffect(tau1, tau0, propensity)
        elif learner == "DR":
            effect = clone(model).fit(X[train], nuisance["psi"][train])
        else:  # pragma: no cover - the caller checks learner names
            raise ValueError(learner)
        if learner == "X":
            # Out of fold the propensity must be out of fold too, not the fold average.
            e = nuisance["e"][test]
            oof[test] = e * np.asarray(tau0.predict(X[test])) + (1 - e) * np.asarray(tau1.predict(X[test]))
        else:
            oof[test] = np.asarray(effect.predict(X[test]), dtype=np.float64)
        fitted.append(effect)
    return oof, FoldAverage(tuple(fitted))
