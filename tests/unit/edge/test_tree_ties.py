"""Float tree builds decide the class exactly as the Python model does, ties included.

A 3-tree depth-8 forest on blends of two digits leaves about 13 % of 2,000 rows with two classes
whose averaged probabilities are mathematically equal; scikit-learn sums the per-tree fractions in
float64, so its rounding (not the lowest index) breaks some of those ties. Exact rational sums break
3 of the 2,000 rows the other way, float32 sums 3 too (measured before the fix): the C must reproduce
float64 exactly. LightGBM and XGBoost float builds are held to the same 2,000 rows.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier

from keel.edge._tree_c import _F64, c_source, pack
from keel.edge._tree_ir import Ensemble, Tree, reference_scores
from keel.edge.host import compile_host
from keel.edge.source import CModel
from keel.edge.trees import tree_to_c

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs the system C compiler `cc`")

NAMES = [f"px{i}" for i in range(64)]


@pytest.fixture(scope="module")
def blends() -> dict[str, Any]:
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(X), 2000), rng.integers(0, len(X), 2000)
    # Half one digit, half another (still integers 0..16): the trees disagree, so ties are frequent.
    return {"X": X.astype(np.float64), "y": y, "rows": np.round((X[i] + X[j]) / 2)}


def _tie_share(model: Any, rows: np.ndarray) -> float:
    top2 = np.sort(model.predict_proba(rows), axis=1)[:, -2:]
    return float((top2[:, 1] - top2[:, 0] < 1e-9).mean())


@pytest.mark.parametrize("quantize", ["float32", "int16"])
def test_forest_ties_decide_as_scikit_learn(blends: dict[str, Any], quantize: str, tmp_path: Path) -> None:
    X, rows = blends["X"], blends["rows"]
    model = RandomForestClassifier(n_estimators=3, max_depth=8, random_state=9).fit(X, blends["y"])
    assert _tie_share(model, rows) > 0.10  # the test is about ties: there must be many
    cm = tree_to_c(model, "ties", feature_names=NAMES, quantize=quantize, input_range=X)  # type: ignore[arg-type]
    cls, scores = compile_host(cm, tmp_path).predict(rows)
    want = model.predict(rows)
    got = np.asarray(cm.classes)[cls]
    assert (got == want).all(), f"{int((got != want).sum())} of {len(rows)} rows decide differently"
    proba = model.predict_proba(rows)
    assert np.abs(scores - proba).max() <= 1.2e-7  # within an ulp of float32(probability)


def test_deeper_forests_agree_on_every_row(blends: dict[str, Any], tmp_path: Path) -> None:
    X, rows = blends["X"], blends["rows"]
    for seed, (n, depth) in enumerate([(2, None), (4, None), (5, 8)]):
        model = RandomForestClassifier(n_estimators=n, max_depth=depth, random_state=seed).fit(X, blends["y"])
        cm = tree_to_c(model, f"f{seed}", feature_names=NAMES)
        cls, _ = compile_host(cm, tmp_path).predict(rows)
        assert (np.asarray(cm.classes)[cls] == model.predict(rows)).all(), (n, depth)


def test_boosting_float_builds_agree_on_blends(blends: dict[str, Any], tmp_path: Path) -> None:
    lightgbm = pytest.importorskip("lightgbm", reason="lightgbm is not installed (the 'edge' extra)")
    xgboost = pytest.importorskip("xgboost", reason="xgboost is not installed (the 'edge' extra)")
    X, y, rows = blends["X"], blends["y"], blends["rows"]
    models = {
        "lgbm": lightgbm.LGBMClassifier(n_estimators=20, num_leaves=8, random_state=0, verbose=-1),
        "xgb": xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0, n_jobs=1),
    }
    for name, model in models.items():
        model.fit(X, y)
        cm = tree_to_c(model, name, feature_names=NAMES)
        cls, _ = compile_host(cm, tmp_path).predict(rows)
        assert (np.asarray(cm.classes)[cls] == model.predict(rows)).all(), name


def test_division_by_the_tree_count_can_tie_and_the_lower_class_wins(tmp_path: Path) -> None:
    # Three one-leaf trees whose class sums differ by one ulp (0.9999999999999999 < 1.0) and meet
    # after predict_proba's division by 3: numpy's argmax then takes class 0, the lower index.
    counts = [[4, 5, 10, 9], [3, 1, 0, 0], [3, 16, 5, 4]]
    leaf = np.array([-1])
    trees = tuple(Tree(leaf, np.zeros(1), leaf, leaf, np.asarray([c], dtype=np.float64)) for c in counts)
    ens = Ensemble(trees, "classifier", "sklearn", "votes", 1, 4, (0.0,) * 4, (0, 1, 2, 3), "hand-made forest")
    sums = sum(np.asarray(c, dtype=np.float64) / sum(c) for c in counts)
    assert sums[0] < sums[1] and (sums / 3).argmax() == 0  # the case this test is about
    assert reference_scores(ens, np.zeros((1, 1))).argmax() == 0
    files = c_source("hand", ens, pack(ens, [np.zeros(1)] * 3), "float", None)
    cm = CModel("hand", files, "classifier", ("x",), 4, (0, 1, 2, 3), "float32")
    cls, scores = compile_host(cm, tmp_path).predict(np.zeros((1, 1)))
    assert cls[0] == 0 and abs(float(scores[0, 0]) - 1 / 3) < 1e-7


def test_integer_float64_routines_round_as_ieee(tmp_path: Path) -> None:
    # The generated add / divide / to-float routines against numpy's IEEE arithmetic on 200,000
    # values each: fractions, sums of very different magnitudes, zeros and exact halfway cases.
    lib_c = tmp_path / "f64.c"
    lib_c.write_text(
        "#include <stdint.h>\n" + _F64.replace("NAME", "k") + "void adds(const uint64_t *a, const uint64_t *b, "
        "uint64_t *o, int n) { int i; for (i = 0; i < n; ++i) o[i] = k_add(a[i], b[i]); }\n"
        "void divs(const uint64_t *a, const uint32_t *d, uint64_t *o, int n) { int i; for (i = 0; i < n; ++i) "
        "o[i] = k_div((a[i] & k_FRAC) | k_LEAD, (int)(a[i] >> 52), d[i]); }\n"
        "void f32s(const uint64_t *a, float *o, int n) { int i; for (i = 0; i < n; ++i) o[i] = k_f32(a[i]); }\n"
    )
    so = tmp_path / "f64.so"
    subprocess.run(["cc", "-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                    "-o", str(so), str(lib_c)], check=True)  # fmt: skip
    lib = ctypes.CDLL(str(so))
    rng = np.random.default_rng(1)
    n = 200_000
    a = np.concatenate([rng.integers(1, 500, n // 2) / rng.integers(500, 70000, n // 2), rng.uniform(0, 50, n // 2)])
    b = np.concatenate(
        [rng.integers(1, 9, n // 2) / rng.integers(9, 40, n // 2), a[n // 2 :] * np.exp2(-rng.integers(0, 70, n // 2))]
    )
    a[:100], b[100:200] = 0.0, 0.0
    d = np.concatenate([rng.integers(1, 200, n // 2), rng.integers(1, 2**32 - 1, n // 2)]).astype(np.uint32)
    halfway = (rng.integers(1, 2**24, n).astype(np.float64) + 0.5) * 2.0**-24  # ties to even in float32
    out, out32 = np.empty(n, np.uint64), np.empty(n, np.float32)

    def ptr(x: np.ndarray) -> Any:
        return x.ctypes.data_as(ctypes.c_void_p)

    lib.adds(ptr(a.view(np.uint64)), ptr(b.view(np.uint64)), ptr(out), n)
    assert (out == (a + b).view(np.uint64)).all()
    x = a + 1e-3
    lib.divs(ptr(x.view(np.uint64)), ptr(d), ptr(out), n)
    assert (out == (x / d.astype(np.float64)).view(np.uint64)).all()
    for y in (x, halfway):
        lib.f32s(ptr(y.view(np.uint64)), ptr(out32), n)
        assert (out32 == y.astype(np.float32)).all()
