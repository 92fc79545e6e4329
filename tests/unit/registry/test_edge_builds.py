"""Edge builds as records: stored with their model version (lineage both ways), archive blob first,
listed per model and version, and a failed build stores nothing."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier

import keel
from keel.errors import InvalidInputError, NotFoundError
from keel.registry.edge_builds import EdgeBuilds


@pytest.fixture
def digits_model(ws: keel.Workspace) -> tuple[str, pd.DataFrame]:
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:300], columns=[f"p{i}" for i in range(64)])
    frame["digit"] = y[:300]
    data = ws.datasets.add("digits", frame)
    features = frame.drop(columns="digit")
    forest = RandomForestClassifier(n_estimators=5, max_depth=6, random_state=0).fit(features, frame["digit"])
    version = ws.models.register("digits", forest, X=features, trained_on=data)
    return version.ref, frame


def test_records_store_blob_then_row_and_read_back(ws: keel.Workspace, digits_model: tuple[str, pd.DataFrame]) -> None:
    ref, _ = digits_model
    records = EdgeBuilds(ws._meta, ws._blobs, author="tester")
    version = ws.models.get(ref)
    build = records.add(
        version, target="c", quantize="float32", mcu="host", archive=b"zip bytes", files=["a.c"], report={"x": 1}
    )
    assert build.model == ref and build.ref == f"{ref}/edge/{build.id}" and build.author == "tester"
    assert records.get(build.id) == build and records.get(str(build.id)) == build
    assert records.archive(build.id) == b"zip bytes" and build.size_bytes == 9
    assert build.digest in ws._meta.referenced_digests()
    assert records.list("digits") == [build] and records.list("digits@1") == [build] and records.list() == [build]
    assert records.list("other") == []
    with pytest.raises(NotFoundError, match="No edge build 99"):
        records.get(99)
    with pytest.raises(InvalidInputError, match="positive number"):
        records.get("abc")
    with pytest.raises(InvalidInputError, match="not an edge target"):
        records.add(version, target="wasm", quantize="float32", mcu="host", archive=b"", files=[], report={})


def test_build_verifies_and_links_both_ways(ws: keel.Workspace, digits_model: tuple[str, pd.DataFrame]) -> None:
    ref, frame = digits_model
    build = ws.edge.build(ref, mcu="host", qemu=False)
    report = build.report
    assert report["class_agreement"] == 1.0 and report["max_abs_score_diff"] < 1e-6
    assert report["accuracy_python"] == report["accuracy_c"] and "labels: column 'digit'" in report["rows_source"]
    assert report["qemu_skipped"] == "not requested (qemu=False)"
    assert ws.edge.list(model=ref) == [build] and ws.edge.get(build.id).model == ref
    with zipfile.ZipFile(io.BytesIO(ws.edge.archive(build.id))) as archive:
        assert sorted(archive.namelist()) == sorted(build.files) == ["README.md", "digits.c", "digits.h", "report.json"]
    scored = ws.edge.run(build.id, frame.head(20))
    model = ws.models.load(ref)
    assert list(scored["prediction"]) == list(model.predict(frame.head(20).drop(columns="digit")))


def test_a_failed_build_stores_nothing(ws: keel.Workspace, digits_model: tuple[str, pd.DataFrame]) -> None:
    ref, frame = digits_model
    features = frame.drop(columns="digit")
    wide = MLPClassifier(hidden_layer_sizes=(256,), max_iter=5, random_state=0).fit(features, frame["digit"])
    big = ws.models.register("wide", wide, X=features)  # 64x256 float weights: 66 KB, over a Cortex-M0's 32 KB
    blobs_before = {b.digest for b in ws._blobs.iter_blobs()}
    with pytest.raises(InvalidInputError, match="not 'int8'"):
        ws.edge.build(ref, quantize="int8", qemu=False)
    with pytest.raises(InvalidInputError, match="not a known part"):
        ws.edge.build(ref, mcu="z80")
    with pytest.raises(InvalidInputError, match="max_flash_bytes=32768"):
        ws.edge.build(big.ref, mcu="cortex-m0", qemu=False)
    assert ws.edge.list() == []
    assert {b.digest for b in ws._blobs.iter_blobs()} == blobs_before


def test_float_c_build_of_a_forest_scores_like_python(ws: keel.Workspace) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.integers(0, 16, size=(200, 4)).astype(float), columns=list("abcd"))
    y = (X["a"] + X["b"] > 15).astype(int)
    ws.models.register("grid", RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y), X=X)
    build = ws.edge.build("grid@1", quantize="int16", mcu="host", qemu=False)
    assert build.report["class_agreement"] == 1.0 and build.report["rows_source"].startswith("the training sample")
    assert "lossless" in " ".join(build.report["notes"])
