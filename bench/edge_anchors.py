"""The anchors of bench/edge.py: emlearn's and m2cgen's generated C, each wrapped as a keel.edge `CModel`
so that it goes through exactly the same checks as Keel's own builds (keel.edge.report.verify: host
compile with the system cc + ctypes, agreement, host latency, Cortex-M4 flash / RAM / stack).

Each wrapper adds one adapter, `int NAME_predict(const float *features, float *scores)`, after the
anchor's code in the same file: it converts the input as the anchor's own Python wrapper does, calls the
anchor's functions, and copies its scores to `scores`. The adapter and the size probe add the same few
bytes to every tool; the anchor's code is not edited, except:

- `#include <eml_x.h>` becomes `#include "eml_x.h"`, with emlearn's headers shipped as files of the
  CModel (the probe compiles in one folder, without -I);
- m2cgen's C calls `exp` without including <math.h>; the adapter includes it first;
- keel.edge compiles with `-Wall -Wextra -Werror`; the anchors' code has unused parameters and
  functions, so the adapter file switches those warnings off with `#pragma GCC diagnostic`.

Only the anchors' packages are needed here (`pip install emlearn m2cgen`); each builder raises
ImportError (with the reason) when its package is missing, and the bench prints it and goes on.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.edge import CModel

_PRAGMAS = """\
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
"""
_EML_INCLUDE = re.compile(r"#include\s*[<\"](eml_[A-Za-z0-9_]+\.h)[>\"]")


@dataclass(frozen=True)
class Anchor:
    """One anchor build: the CModel to verify, the tool's version, and what its scores mean."""

    tool: str
    model: CModel
    scores: str  # "proba" (compare with predict_proba) or "votes" (emlearn's majority-vote shares)


def _tool(package: str) -> str:
    from importlib.metadata import version

    return f"{package} {version(package)}"


def _header(name: str) -> str:
    guard = f"{name.upper()}_H"
    return f"#ifndef {guard}\n#define {guard}\nint {name}_predict(const float *features, float *scores);\n#endif\n"


def _cmodel(
    name: str, source: str, n_features: int, classes: tuple[Any, ...], quantize: str, extra: dict[str, str]
) -> CModel:
    files = {f"{name}.h": _header(name), f"{name}.c": source, **extra}
    return CModel(
        name=name,
        files=files,
        kind="classifier",
        feature_names=tuple(f"x{i}" for i in range(n_features)),
        n_outputs=len(classes),
        classes=classes,
        quantize=quantize,  # type: ignore[arg-type]
    )


def _eml_headers(source: str) -> dict[str, str]:
    """The emlearn headers `source` includes, transitively, with <> includes turned into "" includes."""
    import emlearn

    folder = Path(emlearn.__file__).parent
    out: dict[str, str] = {}
    todo = _EML_INCLUDE.findall(source)
    while todo:
        name = todo.pop()
        if name in out or not (folder / name).exists():
            continue
        text = (folder / name).read_text(encoding="utf-8")
        out[name] = _EML_INCLUDE.sub(r'#include "\1"', text)
        todo += _EML_INCLUDE.findall(text)
    return out


def emlearn_forest(forest: Any, name: str, *, dtype: str | None, proba: bool = True) -> Anchor:
    """emlearn's inline forest (its default method); dtype None = its default int16 features, 'float' = float.

    The int16 adapter casts each feature with `(int16_t)value`, as emlearn's own float wrapper does
    (exact on digits' integer pixels). Class = `NAME_em_predict` (majority vote of the trees, emlearn's
    default leaves); scores = `NAME_em_predict_proba` (the share of trees voting for each class).
    `proba=False` leaves the scores at 0 and calls only `NAME_em_predict`: the class-only size.
    """
    import emlearn

    inner = f"{name}_em"
    with tempfile.TemporaryDirectory(prefix="keel-bench-emlearn-") as scratch, contextlib.chdir(scratch):
        code = emlearn.convert(forest, method="inline", dtype=dtype).save(name=inner)
    ctype = "int16_t" if dtype is None else dtype
    n_features, n_classes = int(forest.n_features_in_), len(forest.classes_)
    proba_call = (
        f"{inner}_predict_proba(x, {n_features}, scores, {n_classes});"
        if proba
        else f"for (i = 0; i < {n_classes}; ++i) scores[i] = 0.0f;"
    )
    adapter = f"""
#include "{name}.h"
int {name}_predict(const float *features, float *scores)
{{
    {ctype} x[{n_features}];
    int i;
    for (i = 0; i < {n_features}; ++i) x[i] = ({ctype})features[i];
    {proba_call}
    return (int){inner}_predict(x, {n_features});
}}
"""
    source = _PRAGMAS + "#include <stdint.h>\n" + code + adapter
    classes = tuple(range(n_classes))
    quantize = "int16" if dtype is None else "float32"
    return Anchor(_tool("emlearn"), _cmodel(name, source, n_features, classes, quantize, {}), "votes")


def emlearn_mlp(mlp: Any, name: str) -> Anchor:
    """emlearn's float MLP (eml_net.h). Class = `eml_net_predict`, scores = `eml_net_predict_proba`."""
    import emlearn

    inner = f"{name}_em"
    # emlearn.convert compiles a test program of the net into ./tmp (its temp_dir='tmp' default):
    # converted in a folder of our own, so nothing is left in the caller's working directory.
    with tempfile.TemporaryDirectory(prefix="keel-bench-emlearn-") as scratch, contextlib.chdir(scratch):
        code = emlearn.convert(mlp).save(name=inner)
    n_features, n_classes = int(mlp.n_features_in_), len(mlp.classes_)
    adapter = f"""
#include "{name}.h"
int {name}_predict(const float *features, float *scores)
{{
    eml_net_predict_proba(&{inner}, features, {n_features}, scores, {n_classes});
    return (int){inner}_predict(features, {n_features});
}}
"""
    source = _PRAGMAS + _EML_INCLUDE.sub(r'#include "\1"', code) + adapter
    extra = _eml_headers(code)
    return Anchor(
        _tool("emlearn"), _cmodel(name, source, n_features, tuple(range(n_classes)), "float32", extra), "proba"
    )


def m2cgen_model(model: Any, name: str) -> Anchor:
    """m2cgen's C (`void NAME_m2(double *input, double *output)`, doubles throughout). The adapter
    widens the float features to double, narrows the outputs to float, and returns their argmax."""
    import m2cgen

    inner = f"{name}_m2"
    code = m2cgen.export_to_c(model, function_name=inner)
    n_features, n_classes = int(model.n_features_in_), len(model.classes_)
    adapter = f"""
#include "{name}.h"
int {name}_predict(const float *features, float *scores)
{{
    double in[{n_features}], out[{n_classes}];
    int i, best = 0;
    for (i = 0; i < {n_features}; ++i) in[i] = (double)features[i];
    {inner}(in, out);
    for (i = 0; i < {n_classes}; ++i) {{
        scores[i] = (float)out[i];
        if (out[i] > out[best]) best = i;
    }}
    return best;
}}
"""
    source = _PRAGMAS + "#include <math.h>\n" + code + adapter
    return Anchor(_tool("m2cgen"), _cmodel(name, source, n_features, tuple(range(n_classes)), "float32", {}), "proba")
