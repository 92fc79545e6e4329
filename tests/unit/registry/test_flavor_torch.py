"""The torch flavour: a Sequential saved as a layer list and safetensors, rebuilt only from keel's own
layer table (hostile files refused untrusted), picked at registration, and built to C from the registry."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

import keel
from keel.errors import InvalidInputError, InvalidModelError, MissingDependencyError
from keel.registry import get_flavor
from keel.registry._torch_arch import MAGIC

FLAVOR = get_flavor("torch")
nn = torch.nn


def _every_layer() -> nn.Sequential:
    """One of each layer the flavour saves, with non-default statistics so a lost tensor shows."""
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Flatten(),
        nn.BatchNorm1d(4, eps=1e-3, momentum=None),
        nn.Linear(4, 6),
        nn.LayerNorm(6),
        nn.Tanh(),
        nn.Dropout(0.3),
        nn.Linear(6, 5, bias=False),
        nn.ReLU(),
        nn.Identity(),
        nn.Linear(5, 3),
        nn.Sigmoid(),
        nn.Linear(3, 3),
        nn.Softmax(dim=-1),
    )
    with torch.no_grad():
        net[1].running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        net[1].running_var.copy_(torch.tensor([2.0, 0.5, 1.5, 1.0]))
        net[3].weight.mul_(1.7)
    return net.eval()


def _live(net: nn.Module, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(net(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy(), dtype=np.float64)


def _header_and_tensors(data: bytes) -> tuple[dict, bytes]:
    start = len(MAGIC) + 8
    (size,) = struct.unpack("<Q", data[len(MAGIC) : start])
    return json.loads(data[start : start + size]), data[start + size :]


def _artifact(header: dict, tensors: bytes) -> bytes:
    head = json.dumps(header).encode()
    return MAGIC + struct.pack("<Q", len(head)) + head + tensors


def test_round_trip_of_every_layer_kind_predicts_identically() -> None:
    net = _every_layer()
    net.classes = ["low", "mid", "high"]
    X = np.random.default_rng(0).normal(size=(50, 4))
    loaded = FLAVOR.load(FLAVOR.save(net), trusted=False)
    assert not loaded.training and loaded.classes == ["low", "mid", "high"]
    np.testing.assert_array_equal(loaded.predict_proba(X), _live(net, X))  # the module's own Softmax output
    np.testing.assert_array_equal(loaded.predict(X), np.array(["low", "mid", "high"])[np.argmax(_live(net, X), axis=1)])
    described = FLAVOR.describe(loaded)
    assert [layer["kind"] for layer in described["layers"]] == [type(m).__name__ for m in net]
    assert described["parameters"] == sum(p.numel() for p in net.parameters()) == 8 + 30 + 12 + 30 + 18 + 12
    assert described["head"] == "softmax"
    again = FLAVOR.load(FLAVOR.save(loaded), trusted=False)  # a loaded model registers again, unchanged
    np.testing.assert_array_equal(again.predict_proba(X), loaded.predict_proba(X))


def test_regressor_and_logit_heads() -> None:
    torch.manual_seed(1)
    X = np.random.default_rng(1).normal(size=(20, 3))
    reg = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).eval()
    out = FLAVOR.load(FLAVOR.save(reg), trusted=False).predict(X)
    assert out.shape == (20,)  # one output: a 1-d array
    np.testing.assert_array_equal(out, _live(reg, X)[:, 0])
    logits = nn.Sequential(nn.Linear(3, 3))  # no Softmax: keel applies softmax to the logits
    logits.classes = torch.tensor([7, 8, 9])
    proba = FLAVOR.load(FLAVOR.save(logits), trusted=False).predict_proba(X)
    z = _live(logits, X)
    np.testing.assert_allclose(proba, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), rtol=1e-12)
    one = nn.Sequential(nn.Linear(3, 1))  # one logit and two labels: sigmoid
    one.classes = ["no", "yes"]
    loaded = FLAVOR.load(FLAVOR.save(one), trusted=False)
    p = 1 / (1 + np.exp(-_live(one, X)[:, 0]))
    np.testing.assert_allclose(loaded.predict_proba(X)[:, 1], p, rtol=1e-12)
    assert list(loaded.predict(X)) == ["yes" if q > 0.5 else "no" for q in p]


def test_networks_keel_cannot_rebuild_are_refused_at_save() -> None:
    with pytest.raises(InvalidInputError, match=r"Conv1d.*flavor='pickle'"):
        FLAVOR.save(nn.Sequential(nn.Conv1d(1, 1, 3)))

    class Custom(nn.Linear):  # a subclass may override forward(): rebuilt as nn.Linear it would predict otherwise
        pass

    with pytest.raises(InvalidInputError, match="Custom"):
        FLAVOR.save(nn.Sequential(Custom(2, 2)))
    with pytest.raises(InvalidInputError, match="nn.Sequential"):
        FLAVOR.save(nn.Linear(2, 2))  # accepted (a torch module), refused clearly
    multilabel = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid())
    multilabel.classes = ["a", "b", "c"]
    with pytest.raises(InvalidInputError, match="multilabel"):
        FLAVOR.save(multilabel)
    with pytest.raises(InvalidInputError, match="running statistics"):
        FLAVOR.save(nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False), nn.Linear(2, 1)))


@pytest.mark.parametrize(
    "layer",
    [
        {"kind": "Lambda", "fn": "os.system"},
        {"kind": "os.system"},
        {"kind": "torch.nn.modules.linear.Linear", "in_features": 4, "out_features": 3, "bias": True},
        {"kind": "Linear", "in_features": 4, "out_features": 3, "bias": True, "device": "cuda"},
        {"kind": "Linear", "in_features": 4, "out_features": 3, "bias": 1},
        {"kind": "Softmax", "dim": 0},
    ],
)
def test_hostile_layer_lists_are_refused_even_trusted(layer: dict) -> None:
    net = nn.Sequential(nn.Linear(4, 3))
    header, tensors = _header_and_tensors(FLAVOR.save(net))
    header["layers"] = [layer] if layer["kind"] != "Softmax" else [header["layers"][0], layer]
    data = _artifact(header, tensors)
    for trusted in (False, True):  # the file holds no code to trust: an unknown kind is never built
        with pytest.raises(InvalidModelError, match="nn.Sequential of Linear"):
            FLAVOR.load(data, trusted=trusted)
    with pytest.raises(InvalidModelError):
        FLAVOR.audit(data, trusted=False)


def test_tensors_that_do_not_match_the_layers_are_refused() -> None:
    small, big = nn.Sequential(nn.Linear(4, 3)), nn.Sequential(nn.Linear(5, 3))
    header, _ = _header_and_tensors(FLAVOR.save(small))
    _, other = _header_and_tensors(FLAVOR.save(big))
    with pytest.raises(InvalidModelError, match=r"'0.weight'.*shape \[3, 4\]"):
        FLAVOR.load(_artifact(header, other), trusted=False)
    header["layers"][0].update(in_features=100_000, out_features=100_000)  # 40 GB claimed: refused, not allocated
    header["n_features"] = 100_000
    with pytest.raises(InvalidModelError, match="more than"):
        FLAVOR.audit(_artifact(header, other), trusted=False)
    header["layers"][0].update(in_features=4, out_features=3, bias=False)  # a bias the layers do not hold
    with pytest.raises(InvalidModelError, match=r"unexpected \['0.bias'\]"):
        FLAVOR.load(_artifact({**header, "n_features": 4}, _header_and_tensors(FLAVOR.save(small))[1]), trusted=False)


def test_truncated_and_foreign_bytes_are_refused() -> None:
    data = FLAVOR.save(_every_layer())
    for cut in (5, len(MAGIC) + 4, len(MAGIC) + 40, len(data) // 2, len(data) - 1):
        with pytest.raises(InvalidModelError):
            FLAVOR.load(data[:cut], trusted=False)
    with pytest.raises(InvalidModelError, match="not a keel torch artifact"):
        FLAVOR.load(b"PK\x03\x04 a zip, or a pickle", trusted=True)


def test_torch_is_imported_lazily_and_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, keel, keel.registry; print('torch' in sys.modules, 'safetensors' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    data = FLAVOR.save(nn.Sequential(nn.Linear(2, 1)))
    FLAVOR.audit(data, trusted=False)  # audit reads bytes only
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(MissingDependencyError, match=r"keelml\[rl\]"):
        FLAVOR.load(data, trusted=False)


def test_registering_a_network_keel_cannot_rebuild_names_the_layer(ws: keel.Workspace) -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 1))  # a torch module: never the callable flavour
    with pytest.raises(InvalidInputError, match=r"layer 1 .*GELU.*flavor='pickle'"):
        ws.models.register("gelu", net, X=pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
    assert ws.models.list() == []


def _digits() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(X[:300], columns=[f"p{i}" for i in range(64)])
    return frame, y[:300]


def _digits_mlp(features: pd.DataFrame, y: np.ndarray) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1))
    rows = torch.tensor(features.to_numpy(), dtype=torch.float32)
    target = torch.tensor(y)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):  # full-batch epochs
        optimiser.zero_grad()
        nn.functional.nll_loss(torch.log(net(rows) + 1e-9), target).backward()
        optimiser.step()
    net.eval()
    net.classes = list(range(10))
    return net


def test_registered_digits_mlp_picks_torch_and_builds_to_c(ws: keel.Workspace) -> None:
    features, y = _digits()
    data = ws.datasets.add("digits", features.assign(digit=y))
    net = _digits_mlp(features, y)
    version = ws.models.register("digits-net", net, X=features, trained_on=data)
    assert version.flavor == "torch"
    assert version.signature is not None and version.signature.classes == tuple(range(10))
    loaded = ws.models.load(version.ref)  # untrusted, as the server loads
    live = np.argmax(_live(net, features.to_numpy()), axis=1)
    np.testing.assert_array_equal(loaded.predict(features), live)
    assert float(np.mean(live == y)) > 0.9  # trained, so agreement below is not agreement on noise
    assert loaded.describe()["parameters"] == 64 * 32 + 32 + 32 * 10 + 10

    exact = ws.edge.build(version.ref, mcu="host", qemu=False).report
    assert exact["class_agreement"] == 1.0 and exact["max_abs_score_diff"] < 1e-5
    int8 = ws.edge.build(version.ref, quantize="int8", mcu="host", qemu=False).report
    assert int8["class_agreement"] >= 0.99, int8["class_agreement"]
