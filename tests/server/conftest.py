"""A small workspace with real data, a served app, and tokens of every role."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import keel
from keel.entities import Role

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst area"]


@pytest.fixture
def cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame[[*FEATURES, "target"]].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame


@pytest.fixture
def served_ws(ws: keel.Workspace, cancer: pd.DataFrame) -> keel.Workspace:
    """Dataset 'cancer@1', model 'tumor' v1 (logistic, champion) and v2 (tree)."""
    v = ws.datasets.add("cancer", cancer)
    X, y = cancer.drop(columns="target"), cancer["target"]
    with ws.runs.start("tumor", inputs=[v]) as run:
        lr = LogisticRegression(max_iter=5000).fit(X, y)
        run.log_metric("accuracy", lr.score(X, y))
    ws.models.register("tumor", lr, run=run, X=X)
    with ws.runs.start("tumor", inputs=[v]) as run2:
        tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
        run2.log_metric("accuracy", tree.score(X, y))
    ws.models.register("tumor", tree, run=run2, X=X)
    ws.models.set_alias("tumor", "champion", version=1, reason="first")
    return ws


@pytest.fixture
def tokens(served_ws: keel.Workspace) -> dict[str, str]:
    return {role.value: served_ws.tokens.create(f"t-{role.value}", role)[0] for role in Role}


@pytest.fixture
def app(served_ws: keel.Workspace) -> Any:
    from keel.server import create_app

    return create_app(served_ws, token_cache_s=0.0)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _records(frame: pd.DataFrame, n: int = 3) -> list[dict[str, Any]]:
    return frame.drop(columns="target").head(n).to_dict(orient="records")  # type: ignore[no-any-return]


@pytest.fixture
def records() -> Any:
    """records(frame, n): the first n rows as JSON records, without the target."""
    return _records
