"""Custom gate checks and recipes the retraining tests name in their projects (module:function)."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression


def veto(**kwargs: Any) -> tuple[bool, str]:
    return False, f"vetoed at roc_auc {kwargs['metrics']['roc_auc']:.3f}"


def allow(**kwargs: Any) -> bool:
    assert kwargs["champion"] is None or hasattr(kwargs["champion"], "predict")
    return True


def recipe(X: Any, y: Any, params: dict[str, Any]) -> Any:
    """A custom recipe: scale the numeric columns, drop the rest, fit a logistic regression."""
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    numeric = [c for c in X.columns if X[c].dtype.kind in "if"]
    prep = make_column_transformer((StandardScaler(), numeric))
    return make_pipeline(prep, LogisticRegression(max_iter=int(params.get("max_iter", 500)))).fit(X, y)


def broken(X: Any, y: Any, params: dict[str, Any]) -> Any:
    raise RuntimeError("the GPU caught fire")
