"""Hand-written CModels for the edge tests: they stand in for the generators, so host.py, mcu.py and
report.py are tested on their own."""

from __future__ import annotations

import numpy as np

from keel.edge.source import CModel


def _literal(value: float) -> str:
    return repr(float(np.float32(value))) + "f"


def linear_cmodel(
    n_features: int = 4, n_outputs: int = 3, *, seed: int = 0, name: str = "lin"
) -> tuple[CModel, np.ndarray, np.ndarray]:
    """A linear classifier `scores = W x + b`, argmax; returns (model, W, b) with float32 tables."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n_outputs, n_features)).astype(np.float32)
    b = rng.normal(size=n_outputs).astype(np.float32)
    rows = ",\n".join("  {" + ", ".join(_literal(v) for v in row) + "}" for row in W)
    header = (
        f"#ifndef {name.upper()}_H\n#define {name.upper()}_H\n"
        f"int {name}_predict(const float *features, float *scores);\n#endif\n"
    )
    source = f"""#include "{name}.h"
static const float W[{n_outputs}][{n_features}] = {{
{rows}
}};
static const float B[{n_outputs}] = {{{", ".join(_literal(v) for v in b)}}};

int {name}_predict(const float *features, float *scores) {{
    int best = 0;
    for (int k = 0; k < {n_outputs}; k++) {{
        float acc = B[k];
        for (int j = 0; j < {n_features}; j++) acc = acc + W[k][j] * features[j];
        scores[k] = acc;
        if (acc > scores[best]) best = k;
    }}
    return best;
}}
"""
    model = CModel(
        name=name,
        files={f"{name}.h": header, f"{name}.c": source},
        kind="classifier",
        feature_names=tuple(f"x{j}" for j in range(n_features)),
        n_outputs=n_outputs,
        classes=tuple(range(n_outputs)),
        quantize="float32",
    )
    return model, W, b


def linear_reference(W: np.ndarray, b: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy in the C loop's order (float32 after every step), so it matches the C bit for bit."""
    X = X.astype(np.float32)
    acc = np.broadcast_to(b, (X.shape[0], b.shape[0])).astype(np.float32)
    for j in range(W.shape[1]):
        acc = (acc + W[:, j][None, :] * X[:, j][:, None]).astype(np.float32)
    return acc.argmax(axis=1), acc


def with_body(name: str, body: str, *, n_features: int = 2, n_outputs: int = 1) -> CModel:
    """A model whose predict runs `body` (for compile errors, faults and hangs)."""
    header = f"int {name}_predict(const float *features, float *scores);\n"
    source = f'#include "{name}.h"\nint {name}_predict(const float *features, float *scores) {{\n{body}\n}}\n'
    return CModel(
        name=name,
        files={f"{name}.h": header, f"{name}.c": source},
        kind="regressor",
        feature_names=tuple(f"x{j}" for j in range(n_features)),
        n_outputs=n_outputs,
        classes=None,
        quantize="float32",
    )
