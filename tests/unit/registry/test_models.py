"""The registry: versions linked to runs and data, lineage both ways, aliases with an audit
history, loading by reference, and what bad input and damaged artifacts do."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.tree import DecisionTreeClassifier

import keel
from keel.entities import ColumnSpec, DatasetVersion, Lineage, Signature
from keel.errors import CorruptArtifactError, InvalidInputError, NotFoundError


@pytest.fixture
def credit(ws: keel.Workspace) -> tuple[DatasetVersion, pd.DataFrame]:
    frame = pd.DataFrame(
        {"income": [10.0, 55.0, 32.0, 80.0, 12.0, 64.0], "age": [22, 41, 35, 58, 19, 47], "default": [1, 0, 1, 0, 1, 0]}
    )
    return ws.datasets.add("credit", frame), frame


def _tree(frame: pd.DataFrame) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame[["income", "age"]], frame["default"])


def _dummy(label: int = 0) -> DummyClassifier:
    return DummyClassifier(strategy="constant", constant=label).fit([[0], [1]], [0, 1])


def test_register_links_run_datasets_signature_and_metadata(
    ws: keel.Workspace, credit: tuple[DatasetVersion, pd.DataFrame]
) -> None:
    version, frame = credit
    X = frame[["income", "age"]]
    with ws.runs.start("credit", inputs=[version], params={"max_depth": 2}) as run:
        est = _tree(frame)
        run.log_metric("auc", 0.93)
    mv = ws.models.register("credit-risk", est, run=run, X=X, tags={"owner": "risk"}, description="first tree")
    assert (mv.ref, mv.run_id, mv.datasets) == ("credit-risk@1", run.id, ("credit@1",))
    assert mv.metrics == {"auc": 0.93}  # default: the run's metrics
    assert mv.params["max_depth"] == "2" and mv.params["criterion"] == "gini"  # from get_params()
    assert mv.tags == {"owner": "risk"} and mv.description == "first tree" and mv.author == "tester"
    assert mv.signature == Signature(
        (ColumnSpec("income", "float"), ColumnSpec("age", "integer")), "classification", (0, 1)
    )
    assert mv.input_example == X.head(5).to_dict(orient="records")
    assert ws.models.get("credit-risk@1") == mv
    explicit = ws.models.register("credit-risk", est, run=run, metrics={"auc": 0.5}, trained_on="credit@1")
    assert explicit.metrics == {"auc": 0.5} and explicit.version == 2 and explicit.datasets == ("credit@1",)


def test_signature_falls_back_to_the_training_dataset_schema(
    ws: keel.Workspace, credit: tuple[DatasetVersion, pd.DataFrame]
) -> None:
    _, frame = credit
    mv = ws.models.register("credit-risk", _tree(frame), trained_on="credit@1")  # no X
    assert mv.signature is not None
    assert mv.signature.inputs == (ColumnSpec("income", "float"), ColumnSpec("age", "integer"))


def test_lineage_walks_from_model_to_data_and_back(
    ws: keel.Workspace, credit: tuple[DatasetVersion, pd.DataFrame]
) -> None:
    v1, frame = credit
    v2 = ws.datasets.add("credit", frame.head(4))
    with ws.runs.start("credit", inputs=[v2]) as run:
        est = _tree(frame)
    ws.models.register("credit-risk", est, trained_on=v1)
    mv = ws.models.register("credit-risk", est, run=run)
    ws.models.register("other", est, trained_on=["credit@1", "credit@2"])
    assert ws.models.lineage("credit-risk@2") == Lineage("credit-risk@2", run.id, "credit", ("credit@2",), (v2.digest,))
    assert ws.models.lineage(mv) == ws.models.lineage("credit-risk@latest")
    assert [m.ref for m in ws.models.trained_on("credit@1")] == ["credit-risk@1", "other@1"]
    assert [m.ref for m in ws.models.trained_on(v2)] == ["credit-risk@2", "other@1"]
    assert ws.consumers("credit@2") == {"runs": [run.id], "models": ["credit-risk@2", "other@1"]}


# -- aliases ----------------------------------------------------------------------------------------
def test_aliases_move_and_every_move_is_in_the_history(ws: keel.Workspace) -> None:
    for label in (0, 1, 0, 1):
        ws.models.register("m", _dummy(label))
    before = datetime.now(UTC)
    first = ws.models.set_alias("m", "champion", version=2, reason="beat the baseline")
    ws.models.set_alias("m", "champion", version=4, reason="retrained on March data")
    ws.models.set_alias("m", "challenger", version=3)
    ws.models.delete_alias("m", "challenger", reason="experiment over")
    assert (first.from_version, first.to_version) == (None, 2)
    assert ws.models.get("m@champion").version == 4 and ws.models.get("m@4").aliases == ("champion",)
    assert ws.models.get("m@2").aliases == ()  # moved off, not copied
    history = ws.models.alias_history("m")
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in history] == [
        ("champion", None, 2, "beat the baseline"),
        ("champion", 2, 4, "retrained on March data"),
        ("challenger", None, 3, ""),
        ("challenger", 3, None, "experiment over"),
    ]
    assert all(e.author == "tester" and before <= e.at <= datetime.now(UTC) for e in history)
    assert [e.to_version for e in ws.models.alias_history("m", "champion")] == [2, 4]
    assert ws.models.list()[0].aliases == {"champion": 4}


@pytest.mark.parametrize("alias", ["latest", "3"])
def test_alias_names_that_mean_versions_are_refused(ws: keel.Workspace, alias: str) -> None:
    ws.models.register("m", _dummy())
    with pytest.raises(InvalidInputError, match="cannot be an alias"):
        ws.models.set_alias("m", alias, version=1)


def test_concurrent_alias_moves_keep_an_exact_history(any_ws: keel.Workspace) -> None:
    for label in (0, 1, 0, 1):
        any_ws.models.register("m", _dummy(label))
    errors: list[BaseException] = []

    def move(version: int) -> None:
        try:
            for _ in range(5):
                any_ws.models.set_alias("m", "prod", version=version)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=move, args=(v,)) for v in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = any_ws.models.alias_history("m", "prod")
    assert len(history) == 20 and history[0].from_version is None
    # Each move starts where the one before it ended: no lost or interleaved update.
    assert all(a.to_version == b.from_version for a, b in zip(history, history[1:], strict=False))
    assert any_ws.models.get("m@prod").version == history[-1].to_version


# -- loading by reference ----------------------------------------------------------------------------
def test_load_by_alias_version_and_latest_gives_the_same_predictions(
    ws: keel.Workspace, credit: tuple[DatasetVersion, pd.DataFrame]
) -> None:
    _, frame = credit
    X = frame[["income", "age"]]
    est = _tree(frame)
    ws.models.register("credit-risk", _dummy(), X=X)
    ws.models.register("credit-risk", est, X=X)
    ws.models.set_alias("credit-risk", "champion", version=2)
    for ref in ("credit-risk@champion", "credit-risk@2", "credit-risk@latest", "credit-risk"):
        model = ws.models.load(ref)
        assert model.ref == "credit-risk@2"
        np.testing.assert_array_equal(model.predict(X), est.predict(X))
        np.testing.assert_array_equal(model.predict_proba(X), est.predict_proba(X))
    assert ws.models.load("credit-risk@1").predict(X).tolist() == [0] * 6


def test_a_loaded_model_can_be_registered_again(
    ws: keel.Workspace, credit: tuple[DatasetVersion, pd.DataFrame]
) -> None:
    _, frame = credit
    X = frame[["income", "age"]]
    est = _tree(frame)
    ws.models.register("a", est, X=X)
    copy = ws.models.register("b", ws.models.load("a"))
    assert copy.flavor == "sklearn" and copy.signature == ws.models.get("a").signature
    np.testing.assert_array_equal(ws.models.load("b").predict(X), est.predict(X))


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("credit-rsik", r"No model named 'credit-rsik'\. Did you mean 'credit-risk'\?"),
        ("churn", r"No model named 'churn'\. Known models: credit-risk"),
        ("credit-risk@7", r"'credit-risk' has no version 7; versions run from 1 to 1"),
        ("credit-risk@champoin", r"no alias 'champoin'; known aliases: champion\. Did you mean 'champion'\?"),
    ],
)
def test_unknown_model_version_or_alias_is_named_with_a_suggestion(ws: keel.Workspace, ref: str, match: str) -> None:
    ws.models.register("credit-risk", _dummy())
    ws.models.set_alias("credit-risk", "champion", version=1)
    with pytest.raises(NotFoundError, match=match):
        ws.models.load(ref)


def test_unknown_alias_or_version_in_alias_commands_is_not_found(ws: keel.Workspace) -> None:
    ws.models.register("m", _dummy())
    with pytest.raises(NotFoundError, match="has no version 2"):
        ws.models.set_alias("m", "prod", version=2)
    with pytest.raises(NotFoundError, match="no alias 'prod'"):
        ws.models.delete_alias("m", "prod")
    with pytest.raises(NotFoundError, match="No model named 'n'"):
        ws.models.alias_history("n")
    assert ws.models.alias_history("m") == []


def test_corrupted_artifact_raises_on_load(ws: keel.Workspace) -> None:
    mv = ws.models.register("m", _dummy())
    hexdigest = mv.digest.removeprefix("sha256:")
    blob = ws.settings.home / "artifacts" / "sha256" / hexdigest[:2] / hexdigest[2:]
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CorruptArtifactError, match=hexdigest):
        ws.models.load("m@1")


# -- failed registers leave nothing behind ------------------------------------------------------------
def test_register_with_unknown_run_or_dataset_stores_nothing(ws: keel.Workspace) -> None:
    with pytest.raises(NotFoundError, match="'0123456789abcdef'"):
        ws.models.register("m", _dummy(), run="0123456789abcdef")
    with pytest.raises(NotFoundError, match="credit"):
        ws.models.register("m", _dummy(), trained_on="credit@1")
    assert ws.models.list() == [] and list(ws._blobs.iter_blobs()) == []


def test_register_failing_after_the_artifact_is_written_leaves_only_an_orphan_for_gc(ws: keel.Workspace) -> None:
    run = ws.runs.start().end()
    ws.models._runs_get = lambda run_id: run.__class__(**{**run.__dict__, "id": "f" * 32})  # a run deleted meanwhile
    with pytest.raises(NotFoundError, match="No run with id 'fff"):
        ws.models.register("m", _dummy(), run=run)
    assert ws.models.list() == []  # neither the version nor the model row was kept
    orphans = [b.digest for b in ws._blobs.iter_blobs()]
    assert len(orphans) == 1
    assert ws.gc(grace_s=0).deleted == tuple(orphans)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "good"])
def test_model_metrics_must_be_finite_numbers(ws: keel.Workspace, value: object) -> None:
    with pytest.raises(InvalidInputError, match="auc"):
        ws.models.register("m", _dummy(), metrics={"auc": value})  # type: ignore[dict-item]
    assert ws.models.list() == []


def test_register_artifact_stores_bytes_saved_elsewhere(
    ws: keel.Workspace, credit: tuple[DatasetVersion, pd.DataFrame]
) -> None:
    from keel.registry import get_flavor, params_of

    _, frame = credit
    est = _tree(frame)
    X = frame[["income", "age"]]
    with ws.runs.start(inputs=["credit@1"]) as run:
        run.log_metric("auc", 0.8)
    signature = keel.registry.infer_signature(est, X)
    data = get_flavor("sklearn").save(est)
    mv = ws.models.register_artifact(
        "remote", data, flavor="sklearn", signature=signature.to_dict(), params=params_of(est), run=run.id
    )
    assert (mv.signature, mv.metrics, mv.datasets, mv.run_id) == (signature, {"auc": 0.8}, ("credit@1",), run.id)
    assert ws.models.artifact_bytes("remote@1") == data and mv.size_bytes == len(data)
    np.testing.assert_array_equal(ws.models.load("remote").predict(X), est.predict(X))
    with pytest.raises(InvalidInputError, match="Unknown model flavor 'onnx'"):
        ws.models.register_artifact("remote", b"x", flavor="onnx")
    with pytest.raises(InvalidInputError, match="non-empty bytes"):
        ws.models.register_artifact("remote", b"", flavor="sklearn")
    assert [v.version for v in ws.models.versions("remote")] == [1]


def test_runs_and_versions_read_back_whole_from_either_store(any_ws: keel.Workspace) -> None:
    """What a run and a version carry (params, metrics, tags, inputs, artifacts; aliases and
    training data) reads back the same through the one-statement reads on SQLite and PostgreSQL."""
    frame = pd.DataFrame(
        {"income": [10.0, 55.0, 32.0, 80.0, 12.0, 64.0], "age": [22, 41, 35, 58, 19, 47], "default": [1, 0, 1, 0, 1, 0]}
    )
    for i in range(10):  # ten versions of one dataset: '@10' sorts after '@9'
        any_ws.datasets.add("credit", frame.assign(age=frame["age"] + i))
    other = any_ws.datasets.add("bureau", frame[["income"]])
    with any_ws.runs.start(
        "lineage", params={"depth": 2, "lr": 0.1}, tags={"team": "risk"}, inputs=["credit@10", "credit@9", other]
    ) as run:
        run.log_metrics({"auc": 0.75})
        run.log_metric("auc", 0.81)
        run.log_bytes(b"b", "z.txt")
        run.log_bytes(b"a", "a.txt")
    (found,) = any_ws.runs.search("metrics.auc > 0.8 and params.depth = 2", experiment="lineage")
    assert (
        found.params == {"depth": "2", "lr": "0.1"}
        and found.metrics == {"auc": 0.81}
        and found.tags == {"team": "risk"}
    )
    assert found.inputs == ("bureau@1", "credit@9", "credit@10") and [a.path for a in found.artifacts] == [
        "a.txt",
        "z.txt",
    ]
    assert found.environment["python"] and found == any_ws.runs.get(run.id)
    model = _tree(frame)
    any_ws.models.register("risk", model, run=run.id)
    second = any_ws.models.register("risk", model, run=run.id, trained_on="credit@1")
    any_ws.models.set_alias("risk", "champion", version=2)
    any_ws.models.set_alias("risk", "beta", version=2)
    assert second.datasets == ("bureau@1", "credit@1", "credit@9", "credit@10") and second.aliases == ()
    for ref in ("risk@champion", "risk@2", "risk@latest"):
        got = any_ws.models.get(ref)
        assert (got.version, got.aliases, got.datasets, got.run_id) == (
            2,
            ("beta", "champion"),
            second.datasets,
            run.id,
        )
    assert any_ws.models.get("risk@1").aliases == () and [v.version for v in any_ws.models.versions("risk")] == [1, 2]
    with pytest.raises(NotFoundError, match="no alias 'champ'.*champion"):
        any_ws.models.get("risk@champ")
    with pytest.raises(NotFoundError, match="no version 3"):
        any_ws.models.get("risk@3")


def test_an_alias_version_beyond_64_bits_is_refused_and_the_alias_stays(ws: keel.Workspace) -> None:
    import numpy as np
    from sklearn.linear_model import LinearRegression

    X = np.arange(20.0).reshape(10, 2)
    ws.models.register("lin", LinearRegression().fit(X, X[:, 0]), X=X)
    ws.models.set_alias("lin", "champion", version=np.int64(1))
    for bad in (2**64, 0, True, "1", 1.5):
        with pytest.raises(keel.InvalidInputError, match="version must be an integer"):
            ws.models.set_alias("lin", "champion", version=bad)  # type: ignore[arg-type]
    assert ws.models.get("lin@champion").version == 1
