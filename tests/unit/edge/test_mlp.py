"""mlp_to_c: float and int8 MLPs compiled on the host agree with scikit-learn (and the int8 C code with
its numpy model, bit for bit); the 64-32-10 digits MLP fits the issue's int8 target."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, Normalizer, StandardScaler

from keel.edge import CModel
from keel.edge.host import compile_host
from keel.edge.mlp import int8_logits, mlp_from_layers, mlp_from_sequential, mlp_to_c
from keel.errors import InvalidInputError, NotFittedError

NAMES = [f"px{i}" for i in range(64)]


def text_size(model: CModel, tmp: Path) -> int:
    """`size`'s text column (code + read-only tables) of the model compiled alone with cc -Os."""
    (tmp / model.header).write_text(model.files[model.header])
    (tmp / "m.c").write_text(model.files[f"{model.name}.c"])
    subprocess.run(["cc", "-std=c99", "-Os", "-c", "-o", str(tmp / "m.o"), str(tmp / "m.c")], check=True)
    out = subprocess.run(["size", str(tmp / "m.o")], check=True, capture_output=True, text=True).stdout
    return int(out.splitlines()[1].split()[0])


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    model = make_pipeline(MinMaxScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=1000, random_state=0))
    model.fit(Xtr, ytr)
    return {"model": model, "Xtr": Xtr, "Xte": Xte, "yte": yte}


def test_float_mlp_agrees_fully_on_digits(digits: dict[str, Any], tmp_path: Path) -> None:
    model, Xte = digits["model"], digits["Xte"]
    c = mlp_to_c(model, "dfloat", feature_names=NAMES)
    cls, scores = compile_host(c, tmp_path).predict(Xte)
    assert (np.asarray(c.classes)[cls] == model.predict(Xte)).all()
    assert np.abs(scores - model.predict_proba(Xte)).max() < 1e-5
    assert c.details["weight_bytes"] == 4 * (64 * 32 + 32 + 32 * 10 + 10)
    assert "no scaling in C" in " ".join(c.notes)


def test_int8_digits_mlp_meets_the_issue_target(digits: dict[str, Any], tmp_path: Path) -> None:
    model, Xtr, Xte = digits["model"], digits["Xtr"], digits["Xte"]
    ref = model.predict(Xte)
    figures = {}
    for per_channel in (True, False):
        c = mlp_to_c(
            model, "dint8", feature_names=NAMES, quantize="int8", calibration=Xtr,
            probabilities=False, per_channel=per_channel, input_scales="tensor",
        )  # fmt: skip
        lib = compile_host(c, tmp_path)
        cls, scores = lib.predict(Xte)
        agreement = float((np.asarray(c.classes)[cls] == ref).mean())
        # The C code does exactly the integer arithmetic of the numpy model.
        logits, scale = int8_logits(model, Xte, calibration=Xtr, per_channel=per_channel, input_scales="tensor")
        assert (logits.argmax(axis=1) == cls).all()
        assert np.abs(scores - logits * scale).max() < 1e-5 * np.abs(logits * scale).max()
        # The integer entry point: inputs already round(x * input_scale).
        k = np.asarray(c.input_scale)
        icls, _ = lib.predict_int(np.round(Xte * k).astype(np.int8))
        assert (icls == cls).all()  # digits are integers 0..16 and k = 7: quantisation is lossless
        assert k[0] == 7.0 and "expf" not in c.files["dint8.c"]
        figures[per_channel] = (agreement, c.details["weight_bytes"], text_size(c, tmp_path))
    print("int8 digits (agreement, table bytes, host -Os text):", figures)
    agreement, weight_bytes, text = figures[False]
    assert agreement >= 0.995 and weight_bytes <= 3072 and text <= 3072
    assert figures[True][0] >= 0.995


def test_int8_two_hidden_layers_match_the_numpy_model_bit_for_bit(tmp_path: Path) -> None:
    X, y = load_digits(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=1000, random_state=0))
    model.fit(X[:1200], y[:1200])
    c = mlp_to_c(model, "deep", feature_names=NAMES, quantize="int8", calibration=X[:1200])
    cls, _ = compile_host(c, tmp_path).predict(X[1200:])
    logits, _ = int8_logits(model, X[1200:], calibration=X[:1200])
    assert (logits.argmax(axis=1) == cls).all()
    assert (cls == model.predict(X[1200:])).mean() >= 0.98  # per-feature input scales (the default)


def test_int8_dead_units_keep_their_bias_in_range(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(MaxAbsScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=3000, random_state=0))
    model.fit(X, y)
    names = [f"f{i}" for i in range(30)]
    c = mlp_to_c(model, "dead", feature_names=names, quantize="int8", calibration=X, probabilities=False)
    cls, scores = compile_host(c, tmp_path).predict(X)
    logits, scale = int8_logits(model, X, calibration=X)
    assert c.n_outputs == 1 and ((logits[:, 0] > 0) == cls).all()
    assert (cls == model.predict(X)).mean() >= 0.98


def test_int8_with_probabilities_per_feature_scales_and_binary(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0)).fit(
        X, y
    )
    names = [f"f{i}" for i in range(30)]
    c = mlp_to_c(model, "bc", feature_names=names, quantize="int8", calibration=X, input_scales="feature")
    cls, scores = compile_host(c, tmp_path).predict(X)
    assert c.n_outputs == 2 and len(set(c.input_scale or ())) > 1
    assert (cls == model.predict(X)).mean() >= 0.98
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    proba = model.predict_proba(X)
    assert np.abs(scores - proba).max() < 0.2  # int8 probabilities: close, not exact


def test_float_smooth_activations_and_regressor(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    names = [f"f{i}" for i in range(30)]
    for act in ("tanh", "logistic", "identity"):
        model = make_pipeline(
            StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), activation=act, max_iter=2000, random_state=0)
        )
        model.fit(X, y)
        c = mlp_to_c(model, "sm", feature_names=names)
        cls, scores = compile_host(c, tmp_path).predict(X)
        assert (cls == model.predict(X)).all()
        assert np.abs(scores - model.predict_proba(X)).max() < 1e-5
    Xd, yd = load_diabetes(return_X_y=True)
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=3000, random_state=0)).fit(
        Xd, yd / 100
    )
    dnames = [f"d{i}" for i in range(10)]
    c = mlp_to_c(reg, "rg", feature_names=dnames)
    cls, scores = compile_host(c, tmp_path).predict(Xd)
    assert c.kind == "regressor" and (cls == 0).all()
    assert np.abs(scores[:, 0] - reg.predict(Xd)).max() < 1e-5
    q = mlp_to_c(reg, "rq", feature_names=dnames, quantize="int8", calibration=Xd, input_scales="feature")
    _, qscores = compile_host(q, tmp_path).predict(Xd)
    assert np.abs(qscores[:, 0] - reg.predict(Xd)).max() < 0.1 * np.ptp(yd / 100)


class Linear:  # stands in for torch.nn.Linear (torch is not installed): weight (out, in), bias (out,)
    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight, self.bias = weight, bias


class ReLU:
    pass


def test_layers_and_duck_typed_sequential(digits: dict[str, Any], tmp_path: Path) -> None:
    model, Xte = digits["model"], digits["Xte"]
    mlp = model[-1]
    scaled = model[0].transform(Xte)
    layers = [(w.T, b) for w, b in zip(mlp.coefs_, mlp.intercepts_, strict=True)]
    stack = mlp_from_sequential([Linear(*layers[0]), ReLU(), Linear(*layers[1])], classes=list(range(10)))
    assert np.allclose(stack.forward(scaled), mlp_from_layers(layers, classes=range(10)).forward(scaled))
    c = mlp_to_c(stack, "seq", feature_names=NAMES)
    cls, _ = compile_host(c, tmp_path).predict(scaled)
    assert (cls == model.predict(Xte)).all()
    q = mlp_to_c(stack, "seq8", feature_names=NAMES, quantize="int8", calibration=model[0].transform(digits["Xtr"]))
    qcls, _ = compile_host(q, tmp_path).predict(scaled)
    assert (qcls == model.predict(Xte)).mean() >= 0.99
    with pytest.raises(InvalidInputError, match=r"module 1 \(Dropout\)"):
        mlp_from_sequential([Linear(*layers[0]), type("Dropout", (), {})(), Linear(*layers[1])])
    with pytest.raises(InvalidInputError, match="do not chain"):
        mlp_from_layers([layers[1], layers[0]])


def test_bad_input_gets_clear_errors(digits: dict[str, Any]) -> None:
    model, Xtr = digits["model"], digits["Xtr"]
    with pytest.raises(InvalidInputError, match="calibration=X"):
        mlp_to_c(model, "m", feature_names=NAMES, quantize="int8")
    with pytest.raises(InvalidInputError, match="64 columns"):
        mlp_to_c(model, "m", feature_names=NAMES, quantize="int8", calibration=Xtr[:, :10])
    with pytest.raises(InvalidInputError, match="int16"):
        mlp_to_c(model, "m", feature_names=NAMES, quantize="int16")
    with pytest.raises(InvalidInputError, match="max_flash_bytes=2000"):
        mlp_to_c(model, "m", feature_names=NAMES, quantize="int8", calibration=Xtr, max_flash_bytes=2000)
    with pytest.raises(InvalidInputError, match="max_flash_bytes=4096"):
        mlp_to_c(model, "m", feature_names=NAMES, max_flash_bytes=4096)
    X, y = load_breast_cancer(return_X_y=True)
    tanh = MLPClassifier(hidden_layer_sizes=(4,), activation="tanh", max_iter=50, random_state=0)
    with pytest.warns(Warning):
        tanh.fit(X, y)
    with pytest.raises(InvalidInputError, match="relu"):
        mlp_to_c(tanh, "m", feature_names=[f"f{i}" for i in range(30)], quantize="int8", calibration=X)
    with pytest.raises(InvalidInputError, match=r"'normalizer' \(Normalizer\)"):
        mlp_to_c(make_pipeline(Normalizer(), model[-1]), "m", feature_names=NAMES)
    with pytest.raises(NotFittedError):
        mlp_to_c(MLPClassifier(), "m", feature_names=NAMES)
    with pytest.raises(InvalidInputError, match="not an MLP"):
        mlp_to_c(StandardScaler().fit(X), "m", feature_names=NAMES)


def test_generated_int8_c_is_self_contained(digits: dict[str, Any], tmp_path: Path) -> None:
    c = mlp_to_c(
        digits["model"], "sc", feature_names=NAMES, quantize="int8", calibration=digits["Xtr"], probabilities=False
    )
    text = c.files["sc.c"]
    assert "malloc" not in text and "math.h" not in text and "static const int8_t sc_w0[2048]" in text
    assert "int sc_predict_int(const int8_t *features, float *scores);" in c.files["sc.h"]
    (tmp_path / "sc.c").write_text(text)
    (tmp_path / "sc.h").write_text(c.files["sc.h"])
    subprocess.run(
        [
            "cc",
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-c",
            "-o",
            str(tmp_path / "sc.o"),
            str(tmp_path / "sc.c"),
        ],
        check=True,
    )
