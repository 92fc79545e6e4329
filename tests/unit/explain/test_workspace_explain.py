"""ws.explain and keel explain on registered models: reason codes name the row's value and the
typical training value, point toward the predicted outcome, and use the project's display names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import keel
from keel.errors import InvalidInputError

pytest.importorskip("shap")
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::sklearn.exceptions.ConvergenceWarning"
)

from retraining.test_retraining import cancer, spec  # noqa: E402  tests/unit is on sys.path (rootdir import mode)


@pytest.fixture
def ews(ws: keel.Workspace) -> keel.Workspace:
    ws.datasets.add("cancer", cancer())
    ws.retraining.train(
        spec(
            estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 40}},
            explain={"display": {"worst_area": {"name": "largest area", "unit": "px"}}},
        )
    )
    return ws


def test_reason_codes_point_toward_each_rows_outcome_with_values_and_typical_values(ews: keel.Workspace) -> None:
    rows = cancer().drop(columns="target").iloc[[0, 20]]  # 0 is malignant (class 0), 20 benign (class 1)
    result = ews.explain("tumor@champion", rows)
    e = result.explanation
    assert e.method.startswith("tree") and e.space == "log-odds" and e.target == 1
    assert set(e.features) == set(rows.columns)  # the one-hot site column folded back into one feature
    model = ews.models.load("tumor@champion")
    np.testing.assert_allclose(e.outputs, model.model.decision_function(rows), atol=1e-6)
    assert [int(p) for p in result.predictions] == [0, 1]
    for i, outcome in enumerate(result.predictions):
        reasons = result.reasons[i]
        assert 1 <= len(reasons) <= 3
        sign = 1 if outcome == 1 else -1
        assert all(sign * r["attribution"] > 0 for r in reasons)  # each pushed toward this row's outcome
        assert [abs(r["attribution"]) for r in reasons] == sorted(
            (abs(r["attribution"]) for r in reasons), reverse=True
        )
        first = reasons[0]
        assert f"pushed toward {outcome}" in first["text"] and "typical" in first["text"]
        assert first["typical"] == pytest.approx(float(cancer()[first["feature"]].median()), rel=0.5)
    texts = " ".join(r["text"] for rs in result.reasons for r in rs)
    if "worst_area" in {r["feature"] for rs in result.reasons for r in rs}:
        assert "largest area of" in texts and "px" in texts
    d = result.to_dict()
    assert d["rows"][0]["attributions"].keys() == set(e.features) and d["model"] == "tumor@1"


def test_a_model_without_training_data_or_signature_says_what_is_missing(ws: keel.Workspace) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    frame = cancer()
    X = frame[["mean_radius", "mean_texture"]]
    from keel.registry.signature import infer_signature

    model = KNeighborsClassifier().fit(X, frame["target"])
    ws.models.register("knn", model, signature=infer_signature(model, X))  # with X=, a sample of it is stored
    with pytest.raises(InvalidInputError, match="background"):
        ws.explain("knn@1", X.head(2))
    with pytest.raises(keel.SignatureError):
        ws.explain("knn@1", frame[["mean_radius"]].head(2))


def test_keel_explain_prints_reason_codes(ews: keel.Workspace, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from keel.cli import app

    path = tmp_path / "rows.csv"
    cancer().drop(columns="target").head(2).to_csv(path, index=False)
    home = str(ews.settings.home)
    result = CliRunner().invoke(app, ["--workspace", home, "explain", "tumor@champion", str(path), "--top", "2"])
    assert result.exit_code == 0, result.stderr
    assert "tree (shap TreeExplainer, exact)" in result.stdout and "pushed toward" in result.stdout
    assert result.stdout.count("  - ") == 4  # two reasons for each of two rows
    bad = CliRunner().invoke(app, ["--workspace", home, "explain", "tumor@champion", str(path), "--target", "7"])
    assert bad.exit_code == 1 and "not a class" in bad.stderr and "Traceback" not in bad.stdout + bad.stderr


def test_a_registered_lightgbm_model_gets_its_native_treeshap(ws: keel.Workspace) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    frame = cancer().drop(columns="site")
    X = frame.drop(columns="target")
    version = ws.datasets.add("cancer-numeric", frame)
    ws.models.register(
        "boost", lightgbm.LGBMClassifier(n_estimators=30, verbose=-1).fit(X, frame["target"]), trained_on=version, X=X
    )
    result = ws.explain("boost@1", X.head(5))
    assert (
        result.explanation.method == "tree (Keel exact TreeSHAP)"
    )  # the loaded wrapper is opened, not treated as a black box
    np.testing.assert_allclose(
        result.explanation.outputs, ws.models.load("boost@1").model.predict_raw(X.head(5)), atol=1e-6
    )


def test_keel_models_explain_runs_a_batch_explanation_job(ews: keel.Workspace) -> None:
    from typer.testing import CliRunner

    from keel.cli import app

    ews.datasets.add("applications", cancer().drop(columns="target").head(40))
    home = str(ews.settings.home)
    result = CliRunner().invoke(
        app, ["--workspace", home, "models", "explain", "tumor@champion", "applications", "--chunk-rows", "25"]
    )
    assert result.exit_code == 0, result.stderr
    assert "Explained 40 rows with tumor@1 in 2 chunks -> applications-explained@1" in result.stdout
    missing = CliRunner().invoke(app, ["--workspace", home, "models", "explain", "tumor@champion", "nope"])
    assert missing.exit_code == 1 and "nope" in missing.stderr


def test_lime_on_request_from_the_workspace_and_the_cli(ews: keel.Workspace, tmp_path: Path) -> None:
    pytest.importorskip("lime")
    from typer.testing import CliRunner

    from keel.cli import app

    row = cancer().drop(columns="target").iloc[[0]]
    a = ews.explain_lime("tumor@champion", row, seed=3, seeds=2)
    assert a == ews.explain_lime("tumor@champion", row, seed=3, seeds=2)  # reproducible with a seed
    assert len(a.top) == 5 and 0 <= a.stability <= 1 and a.target == 1
    path = tmp_path / "row.csv"
    row.to_csv(path, index=False)
    result = CliRunner().invoke(
        app, ["--workspace", str(ews.settings.home), "explain", "tumor@champion", str(path), "--lime"]
    )
    assert result.exit_code == 0, result.stderr
    assert "LIME toward 1 (stability" in result.stdout
    shap_words = CliRunner().invoke(
        app, ["--workspace", str(ews.settings.home), "explain", "tumor@champion", str(path), "--text-column", "x"]
    )
    assert shap_words.exit_code == 1 and "--text-column goes with --lime" in shap_words.stderr


def test_a_projects_version_stores_its_global_importance_when_registered(ews: keel.Workspace) -> None:
    stored = ews._meta.importance.get("tumor", 1)
    assert stored is not None and stored["method"].startswith("tree") and 150 <= stored["rows"] <= 200
    importance = stored["importance"]
    assert list(importance.values()) == sorted(importance.values(), reverse=True) and set(importance) == set(
        cancer().columns
    ) - {"target"}
    assert ews.importance("tumor@1") == stored  # read back, not recomputed


def test_a_version_registered_with_its_training_input_stores_its_importance(ws: keel.Workspace) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    frame = cancer().drop(columns="site")
    X = frame.drop(columns="target")
    version = ws.datasets.add("cancer-numeric", frame)
    ws.models.register(
        "boost", lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, frame["target"]), trained_on=version, X=X
    )
    stored = ws._meta.importance.get("boost", 1)  # written with the version, in its transaction
    assert stored is not None and stored["method"] == "tree (Keel exact TreeSHAP)" and 150 <= stored["rows"] <= 200
    assert set(stored["importance"]) == set(X.columns) and max(stored["importance"].values()) > 0
    assert ws.importance("boost@latest") == stored
    with pytest.raises(keel.NotFoundError):
        ws.importance("boost@9")


def test_importance_of_a_version_registered_without_its_input_is_computed_once_on_request(ws: keel.Workspace) -> None:
    from sklearn.linear_model import LogisticRegression

    frame = cancer().drop(columns="site")
    X = frame.drop(columns="target")
    version = ws.datasets.add("cancer-numeric", frame)
    ws.models.register("linear", LogisticRegression(max_iter=5000).fit(X, frame["target"]), trained_on=version)
    assert ws._meta.importance.get("linear", 1) is None  # no X: the sample comes from the dataset, on request
    first = ws.importance("linear@1")
    assert first["method"].startswith("linear") and first["rows"] == 200
    assert ws.importance("linear@latest") == first  # stored, not computed again
