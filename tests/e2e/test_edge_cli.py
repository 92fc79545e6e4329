"""`keel edge` end to end: a random forest and an MLP registered on digits, built to C (float32, int16,
int8) and ONNX, listed, shown, downloaded (the zip's files) and run on a CSV through the compiled library."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clitools import assert_one_line_error, keel_cli, keel_json
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPClassifier

import keel
from keel.edge import toolchain_problem
from keel.settings import Settings


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A workspace with digits@1 (pixels and the label), digits@1 a forest and mlp@1 an MLP trained on it."""
    home = tmp_path / "ws"
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:600], columns=[f"p{i}" for i in range(64)])
    frame["digit"] = y[:600]
    features = frame.drop(columns="digit")
    with keel.Workspace(Settings(home=home, author="tester")) as ws:
        data = ws.datasets.add("digits", frame)
        forest = RandomForestClassifier(n_estimators=10, max_depth=8, random_state=0).fit(features, frame["digit"])
        ws.models.register("digits", forest, X=features, trained_on=data)
        ws.models.set_alias("digits", "champion", version=1)
        mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, random_state=0).fit(features, frame["digit"])
        ws.models.register("mlp", mlp, X=features, trained_on=data)
    return home


def test_build_list_show_download_run(home: Path, tmp_path: Path) -> None:
    code, out, err = keel_cli(home, "edge", "build", "digits@champion", "--mcu", "host", "--no-qemu")
    assert code == 0, err
    assert "edge build 1 of digits@1: c float32 for host" in out
    assert "agreement    100.00 % of classes on 600 rows, max |score diff| " in out and "accuracy Python" in out
    assert "qemu         skipped: not requested (qemu=False)" in out and "latency" in out
    int16 = keel_json(home, "edge", "build", "digits@1", "--quantize", "int16", "--mcu", "host", "--no-qemu")
    assert int16["quantize"] == "int16" and int16["report"]["class_agreement"] >= 0.99
    int8 = keel_json(home, "edge", "build", "mlp@1", "--quantize", "int8", "--mcu", "host", "--no-qemu")
    assert int8["report"]["class_agreement"] >= 0.98 and int8["report"]["details"]["head"] == "softmax"
    onnx = keel_json(home, "edge", "build", "mlp@1", "--target", "onnx", "--quantize", "int8", "--no-qemu")
    assert onnx["target"] == "onnx" and onnx["files"] == ["README.md", "model.onnx", "report.json"]
    assert onnx["report"]["class_agreement"] >= 0.98

    listed = keel_json(home, "edge", "list")
    assert [b["id"] for b in listed] == [4, 3, 2, 1]
    assert [b["id"] for b in keel_json(home, "edge", "list", "digits@1")] == [2, 1]
    code, out, _ = keel_cli(home, "edge", "list", "mlp")
    assert code == 0 and "mlp@1" in out and "digits@1" not in out
    code, out, _ = keel_cli(home, "edge", "show", "1")
    assert code == 0 and "files        README.md, digits.c, digits.h, report.json" in out
    code, out, _ = keel_cli(home, "models", "show", "digits@1")
    assert code == 0 and "#2 c int16 host, #1 c float32 host" in out

    target = tmp_path / "rf.zip"
    code, out, _ = keel_cli(home, "edge", "download", "1", "-o", str(target))
    assert code == 0 and "wrote" in out
    with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["README.md", "digits.c", "digits.h", "report.json"]
        assert "int digits_predict(const float *features, float *scores);" in archive.read("README.md").decode()
        assert json.loads(archive.read("report.json"))["class_agreement"] == 1.0

    rows = pd.DataFrame(load_digits().data[600:700], columns=[f"p{i}" for i in range(64)])
    source, scored = tmp_path / "rows.csv", tmp_path / "scored.csv"
    rows.to_csv(source, index=False)
    code, out, err = keel_cli(home, "edge", "run", "1", str(source), "-o", str(scored))
    assert code == 0, err
    result = pd.read_csv(scored)
    with keel.Workspace(Settings(home=home)) as ws:
        expected = ws.models.load("digits@1").predict(rows)
    assert list(result["prediction"]) == list(expected) and result.shape == (100, 11)
    code, out, _ = keel_cli(home, "edge", "run", "4", str(source))
    assert code == 0 and "prediction" in out.splitlines()[0]


def test_errors_are_one_line(home: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        keel_cli(home, "edge", "build", "digits@1", "--quantize", "int8", "--no-qemu"), code=1, contains="not 'int8'"
    )
    assert_one_line_error(
        keel_cli(home, "edge", "build", "mlp@1", "--target", "onnx", "--quantize", "int16"), code=1, contains="int16"
    )
    assert_one_line_error(keel_cli(home, "edge", "show", "7"), code=1, contains="No edge build 7")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1.0]}).to_csv(bad, index=False)
    keel_json(home, "edge", "build", "digits@1", "--mcu", "host", "--no-qemu")
    assert_one_line_error(keel_cli(home, "edge", "run", "1", str(bad)), code=1, contains="lack the build's features")


def test_cortex_m4_build_is_sized_and_run_under_qemu(home: Path) -> None:
    problem = toolchain_problem(qemu=True)
    if problem is not None:
        print(f"skipping the Cortex-M edge build: {problem}")
        pytest.skip(problem)
    code, out, err = keel_cli(home, "edge", "build", "digits@1")
    assert code == 0, err
    assert "flash" in out and "of 1,024 KB" in out and "stack" in out
    assert "rows on cortex-m4: 100.00 % agreement, bit-exact with the host" in out
    report = keel_json(home, "edge", "show", "1")["report"]
    assert report["size"]["fits_flash"] and report["qemu_rows"] == 600
    assert np.isclose(report["qemu_class_agreement"], 1.0)


PROJECT = """\
model: pixels
data: {dataset: digits, target: digit, split: {test_fraction: 0.25, seed: 0}}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 5, max_depth: 6, random_state: 0}
  preprocess: none
evaluation: {metrics: [accuracy], primary: accuracy}
edge:
  targets: [{target: c, quantize: int16, mcu: host}]
  qemu: false
"""


def test_a_project_with_edge_targets_builds_them_and_the_timeline_shows_them(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "keel.yaml"
    project.write_text(PROJECT)
    code, out, err = keel_cli(home, "train", str(project))
    assert code == 0, err
    assert (
        "promoted" in out and "edge      c/int16/host kept (build #1): agreement on the host 100.00% of 150 rows" in out
    )
    code, out, _ = keel_cli(home, "models", "timeline", "pixels")
    assert code == 0 and "edge builds" in out and "#1 c/int16/host 100.0%" in out
    code, out, _ = keel_cli(home, "edge", "build", "pixels@1", "--mcu", "host", "--no-qemu", "--queue")
    assert code == 0 and out.startswith("Queued: job ")
    job = keel_json(home, "jobs", "show", out.split()[2].rstrip(";"))
    assert job["kind"] == "edge_build" and job["payload"]["model"] == "pixels@1" and job["status"] == "queued"
