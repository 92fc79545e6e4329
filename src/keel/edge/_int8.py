"""int8 MLPs: the quantisation plan (calibrated scales, int8 weights, fixed-point multipliers), a numpy
model of the exact integer arithmetic the C code does, and the C text.

Arithmetic, per layer l with int8 input q (real value ~ q * s_in):
- weights: E = W * s_in (the input scale folded in; per feature for the first layer, whose input
  is `round(x * k)`), quantised symmetric: per output channel (scale ws_j = max|E_j| / 127) for hidden
  layers; per tensor for the last, so that its int32 logits share one scale and their argmax is the class.
- acc_j = b_j + sum_i w_ij * q_i in int32 (b = round(bias / ws_j)); relu; requantised to the next
  layer's int8 scale s_out by M_j = ws_j / s_out = m_j * 2^-n_j (m_j in [2^30, 2^31)): q = min(127,
  (acc * m_j + 2^(n_j-1)) >> n_j), int64 product, rounding half up (acc > 0 after relu).
- a scale is never below |bias| / 2^20, so a dead unit's bias still fits int32.
- scales: s_out = max(relu activation) / 127 over the calibration rows, from the float model.
- input: k = 127 / max|x| (per tensor or per feature); when every calibration value is an integer,
  k = floor(127 / max|x|), an integer, so integer features quantise without loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from keel.edge._carray import EXPF_BYTES, check_flash, flit, header, int_table
from keel.edge.source import CModel
from keel.errors import InvalidInputError

if TYPE_CHECKING:
    from keel.edge.mlp import DenseStack

# Bytes of Cortex-M4 code: input quantisation, loops, requantisation, head (measured, linked, -Os: 384 B
# for 64-32-10 with one scale per layer, 448 B with per-channel tables).
_CODE_ALLOWANCE = 460


@dataclass(frozen=True)
class Int8Plan:
    input_scale: np.ndarray  # float32 per feature: q = saturate(round(x * k))
    weights: tuple[np.ndarray, ...]  # int8, (n_out, n_in)
    biases: tuple[np.ndarray, ...]  # int32 (stored as int16 when they fit)
    multipliers: tuple[np.ndarray, ...]  # int32 per channel, hidden layers only
    shifts: tuple[np.ndarray, ...]  # right shift per channel, hidden layers only
    out_scale: float  # real logit = int32 logit * out_scale


def plan_int8(stack: DenseStack, X: np.ndarray, per_feature: bool, per_channel: bool = True) -> Int8Plan:
    if stack.activation != "relu":
        raise InvalidInputError(
            f"int8 MLPs need relu hidden layers, this one uses {stack.activation!r}: "
            "build it with quantize='float32', or retrain with activation='relu'"
        )
    k = _input_scale(X, per_feature)
    s_in: np.ndarray = (1.0 / k.astype(np.float64))[:, None]
    h = X
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    mults: list[np.ndarray] = []
    shifts: list[np.ndarray] = []
    last = len(stack.weights) - 1
    for layer, (w, b) in enumerate(zip(stack.weights, stack.biases, strict=True)):
        e = w * s_in  # (n_in, n_out)
        channel = layer < last and per_channel
        amax = np.abs(e).max(axis=0) if channel else np.full(e.shape[1], np.abs(e).max())
        bmax = np.abs(b) if channel else np.full(b.shape, np.abs(b).max())
        # A dead unit (weights decayed to ~0, bias not) would get a tiny scale and a bias beyond int32:
        # the bias bounds the scale from below (|b| <= 2^20 steps), its weights then round to 0 as they should.
        ws = np.maximum(amax / 127.0, bmax / 2.0**20)
        ws = np.where(ws > 0, ws, 1.0)
        weights.append(np.clip(np.round(e / ws), -127, 127).astype(np.int8).T.copy())
        biases.append(_int32(np.round(b / ws), f"layer {layer} bias"))
        if layer == last:
            return Int8Plan(k, tuple(weights), tuple(biases), tuple(mults), tuple(shifts), float(ws[0]))
        h = np.maximum(h @ w + b, 0.0)
        s_out = float(h.max()) / 127.0 if h.max() > 0 else 1.0
        m, n = zip(*(_fixed_point(float(x)) for x in ws / s_out), strict=True)
        mults.append(np.array(m, dtype=np.int64))
        shifts.append(np.array(n, dtype=np.int64))
        s_in = np.full((w.shape[1], 1), s_out)
    raise AssertionError("unreachable: the loop returns at the last layer")


def _input_scale(X: np.ndarray, per_feature: bool) -> np.ndarray:
    amax = np.abs(X).max(axis=0) if per_feature else np.full(X.shape[1], np.abs(X).max())
    integral = bool(np.all(X == np.round(X)))
    safe = np.where(amax > 0, amax, 1.0)
    k = np.where(integral & (amax <= 127), np.floor(127.0 / safe), 127.0 / safe)
    return np.where(amax > 0, k, 1.0).astype(np.float32)


def _int32(values: np.ndarray, what: str) -> np.ndarray:
    if np.abs(values).max(initial=0) >= 2**30:
        raise InvalidInputError(f"{what} is too large for int32 next to its weights' scale; use quantize='float32'")
    return values.astype(np.int64)


def _fixed_point(multiplier: float) -> tuple[int, int]:
    """multiplier ~ m * 2^-n with m in [2^30, 2^31) (gemmlowp's QuantizeMultiplier), 1 <= n <= 62."""
    frac, exp = math.frexp(multiplier)
    m = round(frac * 2**31)
    if m == 2**31:
        m, exp = 2**30, exp + 1
    n = 31 - exp
    if n < 1:
        raise InvalidInputError("an int8 requantisation multiplier is >= 2^30; the calibration rows look degenerate")
    if n > 62:
        m, n = m >> (n - 62), 62
    return m, n


def quantize_input(plan: Int8Plan, X: np.ndarray) -> np.ndarray:
    """What NAME_predict does to its float input: float32 x * k, saturated, rounded half away from zero."""
    v = np.asarray(X, dtype=np.float32) * plan.input_scale
    v = np.where(v > np.float32(-127), v, np.float32(-127))  # NaN -> -127, as the C comparisons do
    v = np.minimum(v, np.float32(127))
    half = np.float32(0.5)
    return np.where(v >= 0, np.trunc(v + half), np.trunc(v - half)).astype(np.int8)


def run_int8(plan: Int8Plan, Q: np.ndarray) -> np.ndarray:
    """The int32 logits NAME_predict_int computes, bit for bit, for int8 input rows Q."""
    h = np.asarray(Q, dtype=np.int64)
    for layer, (w, b) in enumerate(zip(plan.weights, plan.biases, strict=True)):
        acc = h @ w.T.astype(np.int64) + b
        if layer == len(plan.weights) - 1:
            return np.asarray(acc, dtype=np.int64)
        m, n = plan.multipliers[layer], plan.shifts[layer]
        pos = np.maximum(acc, 0)
        h = np.where(acc > 0, np.minimum((pos * m + (np.int64(1) << (n - 1))) >> n, 127), 0)
    raise AssertionError("unreachable")


def int8_model(
    name: str,
    stack: DenseStack,
    head: str,
    X: np.ndarray,
    input_scales: str,
    per_channel: bool,
    features: tuple[str, ...],
    notes: tuple[str, ...],
    max_flash_bytes: int | None,
) -> CModel:
    if input_scales not in ("tensor", "feature"):
        raise InvalidInputError(f"input_scales={input_scales!r}: use 'tensor' or 'feature'")
    plan = plan_int8(stack, X, input_scales == "feature", per_channel)
    tables = _tables(name, plan, per_feature=input_scales == "feature")
    weight_bytes = sum(nbytes for _, nbytes in tables)
    estimate = weight_bytes + _CODE_ALLOWANCE + (EXPF_BYTES if head in ("sigmoid", "softmax") else 0)
    check_flash(estimate, max_flash_bytes, f"int8 MLP {name!r}")
    n_out = plan.weights[-1].shape[0]
    k = plan.input_scale
    more = (
        f"int8: weights per {'output channel' if per_channel else 'tensor'} (hidden) / per tensor (output), int32 accumulation, "
        f"fixed-point requantisation; activation scales calibrated on {len(X)} rows",
        "input: q = round(x * k), saturated to [-127, 127], k = "
        + (f"{float(k[0]):g} for every feature" if input_scales == "tensor" else "per feature (input_scale)"),
        f"tables: {weight_bytes} bytes",
    )
    return CModel(
        name=name,
        files={
            f"{name}.h": header(name, f"{name}: int8 MLP.", int_input="int8_t"),
            f"{name}.c": _source(name, plan, head, [text for text, _ in tables], input_scales == "feature"),
        },
        kind="regressor" if stack.classes is None else "classifier",
        feature_names=features,
        n_outputs=2 if head == "sigmoid" else n_out,
        classes=stack.classes,
        quantize="int8",
        int_input="int8_t",
        input_scale=tuple(float(v) for v in k),
        notes=notes + more,
        details={"weight_bytes": weight_bytes, "flash_estimate": estimate, "head": head, "out_scale": plan.out_scale},
    )


def _small_int(values: np.ndarray) -> str:
    return "int16_t" if np.abs(values).max(initial=0) < 2**15 else "int32_t"


def _tables(name: str, plan: Int8Plan, *, per_feature: bool) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    if per_feature:
        out.append((_float_table(f"{name}_k", plan.input_scale), 4 * plan.input_scale.size))
    for layer, (w, b) in enumerate(zip(plan.weights, plan.biases, strict=True)):
        btype = _small_int(b)
        out.append((int_table("int8_t", f"{name}_w{layer}", w), w.size))
        out.append((int_table(btype, f"{name}_b{layer}", b), b.size * (2 if btype == "int16_t" else 4)))
        if layer < len(plan.multipliers) and not _uniform(plan, layer):
            out.append((int_table("int32_t", f"{name}_m{layer}", plan.multipliers[layer]), 4 * w.shape[0]))
            out.append((int_table("uint8_t", f"{name}_s{layer}", plan.shifts[layer]), w.shape[0]))
    return out


def _uniform(plan: Int8Plan, layer: int) -> bool:
    # Per-tensor weights give one multiplier and shift for the layer: constants in the code, no tables.
    m, n = plan.multipliers[layer], plan.shifts[layer]
    return bool(np.all(m == m[0]) and np.all(n == n[0]))


def _float_table(cname: str, values: np.ndarray) -> str:
    items = ", ".join(flit(float(v)) for v in values)
    return f"static const float {cname}[{values.size}] = {{ {items} }};\n"


def _source(name: str, plan: Int8Plan, head: str, tables: Sequence[str], per_feature: bool) -> str:
    n_in = plan.weights[0].shape[1]
    n_out = plan.weights[-1].shape[0]
    widths = [w.shape[0] for w in plan.weights[:-1]] or [1]
    k = f"{name}_k[i]" if per_feature else flit(float(plan.input_scale[0]))
    parts: list[str] = [f'#include "{name}.h"\n']
    if head in ("sigmoid", "softmax"):
        parts.append("#include <math.h> /* expf, for the probabilities only; the class needs none */\n")
    parts += [f"#define N_IN {n_in}\n#define N_OUT {n_out}\n#define OUT_SCALE {flit(plan.out_scale)}\n", *tables]
    parts.append(_REQUANT.replace("NAME", name))
    parts.append(f"static int {name}_run(const int8_t *x, float *scores)\n{{\n")
    parts.append(f"    int8_t h[2][{max(widths)}];\n    int32_t a[N_OUT];\n    int i, j, best = 0;\n")
    src = "x"
    for layer, w in enumerate(plan.weights):
        last = layer == len(plan.weights) - 1
        if last:
            store = "a[j] = acc;"
        elif _uniform(plan, layer):
            m, n = int(plan.multipliers[layer][0]), int(plan.shifts[layer][0])
            store = f"h[{layer % 2}][j] = {name}_requant(acc, {m}, {n});"
        else:
            store = f"h[{layer % 2}][j] = {name}_requant(acc, {name}_m{layer}[j], {name}_s{layer}[j]);"
        parts += [
            f"    for (j = 0; j < {w.shape[0]}; ++j) {{\n        int32_t acc = {name}_b{layer}[j];\n",
            f"        for (i = 0; i < {w.shape[1]}; ++i) acc += (int32_t){name}_w{layer}[j * {w.shape[1]} + i] * {src}[i];\n",
            f"        {store}\n    }}\n",
        ]
        src = f"h[{layer % 2}]"
    parts += [_HEAD[head if head != "decision" or n_out > 1 else "decision1"], "}\n\n"]
    parts += [
        f"int {name}_predict_int(const int8_t *features, float *scores)\n{{\n    return {name}_run(features, scores);\n}}\n\n",
        f"int {name}_predict(const float *features, float *scores)\n{{\n    int8_t q[N_IN];\n    int i;\n",
        f"    for (i = 0; i < N_IN; ++i) {{\n        float v = features[i] * {k};\n",
        "        if (!(v > -127.0f)) v = -127.0f; /* NaN too */\n        if (v > 127.0f) v = 127.0f;\n",
        "        q[i] = (int8_t)(v >= 0.0f ? (int)(v + 0.5f) : (int)(v - 0.5f));\n    }\n",
        f"    return {name}_run(q, scores);\n}}\n",
    ]
    return "".join(parts)


# relu + requantisation: acc > 0 here, so the int64 shift is of a non-negative value (defined in C99).
_REQUANT = """
static int8_t NAME_requant(int32_t acc, int32_t m, int s)
{
    int64_t v;
    if (acc <= 0) return 0;
    v = ((int64_t)acc * m + ((int64_t)1 << (s - 1))) >> s;
    return (int8_t)(v > 127 ? 127 : v);
}

"""
_ARGMAX = "    for (j = 1; j < N_OUT; ++j) if (a[j] > a[best]) best = j;\n"
_HEAD: dict[str, str] = {
    "value": "    (void)best;\n    for (j = 0; j < N_OUT; ++j) scores[j] = (float)a[j] * OUT_SCALE;\n    return 0;\n",
    "decision1": "    (void)best;\n    scores[0] = (float)a[0] * OUT_SCALE;\n    return a[0] > 0;\n",
    "decision": _ARGMAX + "    for (j = 0; j < N_OUT; ++j) scores[j] = (float)a[j] * OUT_SCALE;\n    return best;\n",
    "sigmoid": "    (void)best;\n    scores[1] = 1.0f / (1.0f + expf(-(float)a[0] * OUT_SCALE));\n"
    "    scores[0] = 1.0f - scores[1];\n    return a[0] > 0;\n",
    "softmax": _ARGMAX + "    {\n        float sum = 0.0f;\n"
    "        for (j = 0; j < N_OUT; ++j) { scores[j] = expf((float)(a[j] - a[best]) * OUT_SCALE); sum += scores[j]; }\n"
    "        for (j = 0; j < N_OUT; ++j) scores[j] /= sum;\n    }\n    return best;\n",
}
