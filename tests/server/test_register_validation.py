"""Over HTTP, registration refuses what the server could not load or serve (422), and stores nothing."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import keel
from keel.registry import get_flavor
from keel.registry.signature import infer_signature, input_example

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _post(client: Any, token: str, data: bytes, **meta: Any) -> Any:
    return client.post(
        "/api/v1/models/uploaded/versions",
        content=data,
        headers={
            "Authorization": f"Bearer {token}",
            "X-Keel-Meta": json.dumps({"flavor": "sklearn", **meta}),
            "Content-Type": "application/octet-stream",
        },
    )


def _nothing_stored(client: Any, token: str) -> None:
    assert client.get("/api/v1/models/uploaded", headers={"Authorization": f"Bearer {token}"}).status_code == 404


def _exploit(path: Path) -> Pipeline:
    X = np.ones((4, 4))
    pipe = Pipeline(
        [
            (
                "f",
                FunctionTransformer(
                    func=functools.partial(np.savetxt, str(path)),
                    kw_args={"fmt": "%s"},
                    validate=False,
                    check_inverse=False,
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    )
    pipe.steps[0][1].fit(X)
    pipe.steps[1][1].fit(X, [0, 1, 0, 1])
    return pipe


def test_the_issue_exploit_is_refused_with_422_and_never_runs(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace, tmp_path: Path
) -> None:
    target = tmp_path / "evil.pth"
    data = get_flavor("sklearn").save(_exploit(target))
    r = _post(client, tokens["writer"], data, input_example=[{"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}])
    assert r.status_code == 422
    assert r.json()["error"]["type"] == "InvalidModelError" and "savetxt" in r.json()["error"]["detail"]
    _nothing_stored(client, tokens["reader"])
    assert not target.exists()


def test_a_model_stored_before_the_fix_is_not_run_by_a_predictor(
    client: Any, tokens: dict[str, str], served_ws: keel.Workspace, tmp_path: Path
) -> None:
    target = tmp_path / "evil.pth"
    served_ws.models.register("uploaded", _exploit(target), trusted=True)  # only Python, trusted, can store it now
    served_ws.models.set_alias("uploaded", "champion", version=1)
    r = client.post(
        "/api/v1/models/uploaded/predict",
        json={"records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}]},
        headers={"Authorization": f"Bearer {tokens['predictor']}"},
    )
    assert r.status_code == 403 and r.json()["error"]["type"] == "UnsafeLoadError"
    assert not target.exists()


@pytest.mark.parametrize("flavor", ["sklearn", "lightgbm", "xgboost", "callable", "pickle"])
def test_random_bytes_are_refused_with_422(flavor: str, client: Any, tokens: dict[str, str]) -> None:
    r = _post(client, tokens["writer"], os.urandom(300), flavor=flavor)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "InvalidModelError" and f"the {flavor} artifact" in r.json()["error"]["detail"]
    _nothing_stored(client, tokens["reader"])


def test_pickle_and_callable_artifacts_are_refused_since_the_server_never_trusts(
    client: Any, tokens: dict[str, str]
) -> None:
    from sklearn.dummy import DummyClassifier

    pickled = get_flavor("pickle").save(DummyClassifier().fit([[0], [1]], [0, 1]))
    for flavor, data in (("pickle", pickled), ("callable", b'{"callable": "os:system"}')):
        r = _post(client, tokens["writer"], data, flavor=flavor)
        assert r.status_code == 422 and "trusted=True" in r.json()["error"]["detail"]
    _nothing_stored(client, tokens["reader"])


def test_unfitted_and_failing_models_are_refused_and_good_ones_register(
    client: Any, tokens: dict[str, str], cancer: pd.DataFrame
) -> None:
    X, y = cancer.drop(columns="target"), cancer["target"]
    unfitted = Pipeline([("s", StandardScaler()), ("clf", LogisticRegression())])
    r = _post(client, tokens["writer"], get_flavor("sklearn").save(unfitted))
    assert r.status_code == 422 and "not fitted" in r.json()["error"]["detail"]

    fitted = Pipeline([("s", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    data = get_flavor("sklearn").save(fitted)
    signature = infer_signature(fitted, X).to_dict()
    wrong = X.iloc[:, :2].head(3).to_dict(orient="records")  # an example missing two of the columns
    r = _post(client, tokens["writer"], data, signature=signature, input_example=wrong)
    assert r.status_code == 422 and "fails on its input example" in r.json()["error"]["detail"]
    _nothing_stored(client, tokens["reader"])

    r = _post(client, tokens["writer"], data, signature=signature, input_example=input_example(X))
    assert r.status_code == 201 and r.json()["version"] == 1
