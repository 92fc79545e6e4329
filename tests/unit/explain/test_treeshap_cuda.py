"""Keel's GPU TreeSHAP kernel (`_treeshap_cuda.py`) against the CPU path, run in numba's CUDA
simulator (in a subprocess: numba reads NUMBA_ENABLE_CUDASIM at import), plus device selection."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("numba")

from keel.errors import InvalidInputError  # noqa: E402
from keel.explain import _treeshap_cuda, treeshap  # noqa: E402
from keel.explain.treeshap import GPU_MIN_ROWS, parse_lightgbm, tree_shap  # noqa: E402

# Small LightGBM models (regression, binary, multiclass) with NaNs in training and explained rows;
# each explained on 20 rows by the CPU path and by the kernel, once with the tables (tabulated
# leaves) and once with every leaf computed per thread (`table_offset` all -1).
_SCRIPT = r"""
import dataclasses, json
import lightgbm, numpy as np
from keel.explain.treeshap import parse_lightgbm, tree_shap
rng = np.random.default_rng(0)
X = rng.normal(size=(400, 6))
X[rng.random(X.shape) < 0.1] = np.nan
Z = np.nan_to_num(X)
signal = Z[:, 0] + np.sin(2 * Z[:, 1]) + Z[:, 2] * Z[:, 3]
rows = X[:20].copy()
rows[0, :] = np.nan
result = {}
fits = {
    "regression": (lightgbm.LGBMRegressor, signal),
    "binary": (lightgbm.LGBMClassifier, signal > 0),
    "multiclass": (lightgbm.LGBMClassifier, np.digitize(signal, [-0.5, 0.5])),
}
for name, (model, y) in fits.items():
    booster = model(n_estimators=3, num_leaves=12, min_child_samples=5, verbose=-1).fit(X, y).booster_
    e = parse_lightgbm(booster)
    per_row = dataclasses.replace(e, table_offset=np.full_like(e.table_offset, -1))
    cpu, base = tree_shap(e, rows, device="cpu")
    gpu, gbase = tree_shap(e, rows, device="cuda")
    gpu_rows, _ = tree_shap(per_row, rows, device="cuda")
    raw = np.asarray(booster.predict(rows, raw_score=True)).reshape(len(rows), -1)
    result[name] = {
        "tabulated": int((e.table_offset >= 0).sum()), "leaves": len(e.table_offset),
        "shape_equal": gpu.shape == cpu.shape, "largest": float(np.abs(cpu).max()),
        "diff_table": float(np.abs(gpu - cpu).max()), "diff_per_row": float(np.abs(gpu_rows - cpu).max()),
        "diff_base": float(np.abs(gbase - base).max()),
        "additivity": float(np.abs(gbase + gpu.sum(axis=2) - raw).max()),
    }
print(json.dumps(result))
"""


def test_kernel_in_simulator_equals_cpu_path_and_adds_up() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"regression", "binary", "multiclass"}
    for name, r in result.items():
        assert r["shape_equal"], name
        assert r["tabulated"] > 0, name  # the table-lookup path ran
        assert r["largest"] > 0.01, name  # the rows are explained by something (a no-op kernel fails)
        assert r["diff_table"] <= 1e-12, (name, r)
        assert r["diff_per_row"] <= 1e-12, (name, r)  # the per-thread leaf_shap port
        assert r["diff_base"] == 0.0, (name, r)
        assert r["additivity"] <= 1e-9, (name, r)


def test_cuda_without_a_gpu_names_the_missing_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_treeshap_cuda, "cuda_available", lambda: False)
    X = np.random.default_rng(0).normal(size=(50, 3))
    e = parse_lightgbm(
        pytest.importorskip("lightgbm").LGBMRegressor(n_estimators=2, num_leaves=4, verbose=-1).fit(X, X[:, 0]).booster_
    )
    with pytest.raises(InvalidInputError, match=r"device='cuda' needs an NVIDIA GPU.*device='cpu'"):
        tree_shap(e, X[:5], device="cuda")
    with pytest.raises(InvalidInputError, match="device must be one of"):
        tree_shap(e, X[:5], device="gpu")
    values, _ = tree_shap(e, X[:5], device="cpu")
    np.testing.assert_array_equal(values, tree_shap(e, X[:5])[0])  # default "auto" = CPU here


def test_cuda_unavailable_on_this_machine_raises_for_real() -> None:
    if _treeshap_cuda.cuda_available():
        pytest.skip("this machine has a GPU (or the simulator is on)")
    with pytest.raises(InvalidInputError, match="numba.cuda.is_available\\(\\) is False"):
        treeshap._pick_device("cuda", 10)


def test_auto_picks_the_gpu_only_for_a_real_one_and_enough_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    here = "cuda" if _treeshap_cuda.real_gpu() else "cpu"
    assert treeshap._pick_device("auto", GPU_MIN_ROWS) == here
    assert treeshap._pick_device("auto", GPU_MIN_ROWS - 1) == "cpu"
    assert treeshap._pick_device("cpu", 10**7) == "cpu"
    monkeypatch.setattr(_treeshap_cuda, "cuda_available", lambda: True)  # a GPU, or the simulator
    import numba

    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 1)
    assert treeshap._pick_device("auto", 10**6) == "cpu"  # never the simulator
    assert treeshap._pick_device("cuda", 10) == "cuda"  # asked for explicitly: allowed
    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 0)
    assert treeshap._pick_device("auto", 10**6) == "cuda"


def test_auto_falls_back_to_the_cpu_when_the_gpu_kernel_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import lightgbm

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    model = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, X[:, 0] - X[:, 1])
    expected, _ = tree_shap(model, X[:10], device="cpu")

    def refused(*_: object) -> np.ndarray:
        raise RuntimeError("CUDA driver library cannot be found")

    monkeypatch.setattr(treeshap, "_pick_device", lambda device, rows: "cuda")
    monkeypatch.setattr(_treeshap_cuda, "shap_rows_cuda", refused)
    values, _ = tree_shap(model, X[:10])  # auto: the CPU's answer
    assert np.array_equal(values, expected)
    with pytest.raises(RuntimeError, match="CUDA driver"):
        tree_shap(model, X[:10], device="cuda")  # asked for by name: the failure is the answer
