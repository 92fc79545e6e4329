"""A real torch.nn.Sequential through compile_model (the path ws.edge.build takes): the C compiled on the
host agrees with torch's own forward pass (float: every class, scores within 1e-5; int8: >= 99 % of
classes), layers the C code cannot reproduce are refused naming the module, and torch stays unimported
by `import keel.edge`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

from keel.edge.build import compile_model, model_family
from keel.edge.host import compile_host
from keel.errors import InvalidInputError

torch = pytest.importorskip("torch", reason="torch is not importable (it comes with the 'rl' extra)")
nn = torch.nn

NAMES = [f"px{i}" for i in range(64)]


def _forward(model: Any, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(model(torch.from_numpy(X.astype(np.float32))).numpy(), dtype=np.float64)


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(X[:1200]), torch.from_numpy(y[:1200])
    for _ in range(150):  # full-batch Adam: about 97 % held-out accuracy, enough for a realistic net
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()
    return {"net": net, "Xtr": X[:1200], "Xte": X[1200:], "yte": y[1200:]}


def test_float_sequential_agrees_exactly_with_torch(digits: dict[str, Any], tmp_path: Path) -> None:
    base = digits["net"]
    model = nn.Sequential(*base, nn.Softmax(dim=1))
    model.classes = list(range(10))  # how a classifier's labels reach compile_model
    assert model_family(model) == "mlp"
    c = compile_model(model, "tfloat", feature_names=NAMES, target="c", quantize="float32", max_flash_bytes=64_000)
    cls, scores = compile_host(c, tmp_path).predict(digits["Xte"])
    proba = _forward(model, digits["Xte"])
    assert c.kind == "classifier" and c.classes == tuple(range(10))
    assert (cls == proba.argmax(axis=1)).all()
    assert np.abs(scores - proba).max() < 1e-5
    assert (cls == digits["yte"]).mean() > 0.9  # the net did learn: the check is not on a constant


def test_int8_sequential_agrees_with_torch(digits: dict[str, Any], tmp_path: Path) -> None:
    net = digits["net"]
    c = compile_model(
        net, "tint8", feature_names=NAMES, quantize="int8", calibration=digits["Xtr"], max_flash_bytes=8192
    )
    assert c.quantize == "int8" and c.int_input == "int8_t" and c.classes is None  # no labels: a regressor
    labelled = nn.Sequential(*net)
    labelled.classes = list(range(10))
    q = compile_model(labelled, "tq", feature_names=NAMES, quantize="int8", calibration=digits["Xtr"])
    cls, _ = compile_host(q, tmp_path).predict(digits["Xte"])
    agreement = float((cls == _forward(net, digits["Xte"]).argmax(axis=1)).mean())
    print(f"int8 torch 64-32-10 agreement with torch: {agreement:.4f}")
    assert agreement >= 0.99


def test_regressor_sigmoid_and_folded_batchnorm(tmp_path: Path) -> None:
    torch.manual_seed(1)
    X = load_digits().data[:400].astype(np.float32)
    reg = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    c = compile_model(reg, "treg", feature_names=NAMES)
    _, scores = compile_host(c, tmp_path).predict(X)
    ref = _forward(reg, X)
    assert c.kind == "regressor" and np.abs(scores - ref).max() < 1e-5 * max(1.0, np.abs(ref).max())
    binary = nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Identity(), nn.Linear(8, 1), nn.Sigmoid())
    with torch.no_grad():  # non-trivial running statistics, so the fold is really tested
        binary[1].running_mean.uniform_(-2, 2)
        binary[1].running_var.uniform_(0.5, 4)
        binary[1].weight.uniform_(0.5, 2)
        binary[1].bias.uniform_(-1, 1)
    binary.eval()
    binary.classes = ["no", "yes"]
    b = compile_model(binary, "tbin", feature_names=NAMES)
    cls, bscores = compile_host(b, tmp_path).predict(X)
    p = _forward(binary, X)[:, 0]
    assert b.n_outputs == 2 and b.classes == ("no", "yes")
    assert (cls == (p > 0.5)).all()
    assert np.abs(bscores[:, 1] - p).max() < 1e-5


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (lambda: [nn.Linear(64, 8), nn.Conv1d(1, 1, 3), nn.Linear(8, 2)], r"module 1 \(Conv1d\)"),
        (
            lambda: [nn.Linear(64, 8), nn.ReLU(), nn.Dropout(0.5).train(), nn.Linear(8, 2)],
            r"module 2 \(Dropout\).*eval",
        ),
        (
            lambda: [nn.Linear(64, 8), nn.BatchNorm1d(8).train(), nn.ReLU(), nn.Linear(8, 2)],
            r"module 1 \(BatchNorm1d\)",
        ),
        (lambda: [nn.Linear(64, 8), nn.ReLU(), nn.BatchNorm1d(8).eval(), nn.Linear(8, 2)], r"module 2 \(BatchNorm1d\)"),
        (lambda: [nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 2)], r"module 1 \(Tanh\)"),
        (lambda: [nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2), nn.LogSoftmax(dim=1)], r"module 3 \(LogSoftmax\)"),
        (lambda: [nn.Linear(64, 8), nn.Linear(8, 2)], r"module 1 \(Linear\).*ReLU between"),
        (lambda: [nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2), nn.Softmax(dim=1)], "no class labels"),
        (lambda: [nn.Linear(64, 8), nn.ReLU()], "ends with a ReLU"),
    ],
)
def test_unsupported_layers_are_refused_before_any_file(layers: Any, message: str, tmp_path: Path) -> None:
    model = nn.Sequential(*layers())
    with pytest.raises(InvalidInputError, match=message):
        compile_model(model, "bad", feature_names=NAMES, quantize="int8", calibration=np.zeros((4, 64)))
    assert not any(tmp_path.iterdir())


def test_import_keel_edge_does_not_import_torch() -> None:
    code = "import sys, keel.edge, keel.edge.build; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
