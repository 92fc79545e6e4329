"""Packing an `Ensemble` into const node tables and writing the C99 that walks them.

Layout (struct of arrays, so no padding; every index type is the smallest unsigned type that holds it):

- per internal node, all trees one after the other, each tree in preorder:
  `CODE[n] = feature * 4 + (left child is a leaf) + 2 * (right child is a leaf)`,
  `THR[n]` (float32, or int8/int16 for an int16 build), `LEFT[n]`, `RIGHT[n]`: the child's index
  relative to the tree's first node when the child is internal, else the leaf's payload;
- per tree `ROOT[t]` (its first node) and `LBASE[t]` (its first leaf entry);
- leaves of a forest classifier: a payload below K is a pure leaf (the class: one byte, no table);
  otherwise `ENT[LBASE[t] + payload - K]` starts a run of `count << (cb + 1) | class << 1 | last`
  entries (the mixed leaf's nonzero class counts, exact), divided by their sum as predict_proba does;
  a forest classifier's sums are float64 held as bits in uint64_t, computed by `_F64` in integers;
- leaves of boosting and of forest regressors: `VAL[LBASE[t] + payload]` (float32).

A tree that is one leaf gets one node whose two children are that leaf, so every tree has a root.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keel.edge._tree_ir import Ensemble

__all__ = ["Packed", "c_source", "pack"]

_UINT = ((0xFF, "uint8_t", 1), (0xFFFF, "uint16_t", 2), (0xFFFFFFFF, "uint32_t", 4))


def uint_type(max_value: int) -> tuple[str, int]:
    for limit, name, size in _UINT:
        if max_value <= limit:
            return name, size
    raise ValueError(f"{max_value} does not fit in 32 bits")


@dataclass(frozen=True)
class Packed:
    code: list[int]
    thr: list[float] | list[int]
    left: list[int]
    right: list[int]
    root: list[int]
    lbase: list[int]
    entries: list[int]  # votes: packed (count, class, last); empty otherwise
    values: list[float]  # mean / sum: leaf values (float32)
    count_bits: int  # votes: bits of a count in an entry
    class_bits: int
    exact_counts: bool  # votes: counts are the trees' own (weighted) sample counts
    pure_leaves: int
    mixed_leaves: int

    def types(self) -> dict[str, tuple[str, int]]:
        refs = max([*self.left, *self.right, 0])
        return {
            "code": uint_type(max(self.code)),
            "ref": uint_type(refs),
            "base": uint_type(max([*self.root, *self.lbase, len(self.code), len(self.entries), len(self.values)])),
            "ent": uint_type(max([*self.entries, 0])),
        }

    def table_bytes(self, thr_size: int) -> int:
        t = self.types()
        n = len(self.code)
        return (
            n * (t["code"][1] + thr_size + 2 * t["ref"][1])
            + 2 * len(self.root) * t["base"][1]
            + len(self.entries) * t["ent"][1]
            + 4 * len(self.values)
        )


def _counts(ens: Ensemble) -> tuple[list[np.ndarray], bool]:
    """Leaf counts as integers: the trees' own when they are (bootstrap weights are integers),
    else probabilities on a 1/65535 grid (class_weight / sample_weight: a stated approximation)."""
    values = [t.value for t in ens.trees]
    exact = all(np.allclose(v, np.round(v), rtol=0, atol=1e-6) for v in values)
    if exact:
        return [np.round(v).astype(np.int64) for v in values], True
    out = []
    for v in values:
        scaled = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-300) * 65535
        q = np.floor(scaled).astype(np.int64)
        # Largest remainders take the missing units, so every leaf sums to exactly 65535 and each
        # probability is off by less than 1/65535.
        short = 65535 - q.sum(axis=1)
        order = np.argsort(-(scaled - q), axis=1, kind="stable")
        for row in np.flatnonzero(short > 0):
            q[row, order[row, : short[row]]] += 1
        out.append(q)
    return out, False


def pack(ens: Ensemble, thresholds: list[np.ndarray]) -> Packed:
    k = ens.n_outputs
    votes = ens.aggregate == "votes"
    counts, exact = _counts(ens) if votes else ([], True)
    cb = int(max((int(c.max()) for c in counts), default=1)).bit_length() if votes else 0
    kb = max(k - 1, 1).bit_length()
    code: list[int] = []
    thr: list[float] = []
    left: list[int] = []
    right: list[int] = []
    root: list[int] = []
    lbase: list[int] = []
    entries: list[int] = []
    values: list[float] = []
    pure = mixed = 0
    for ti, tree in enumerate(ens.trees):
        root.append(len(code))
        lbase.append(len(entries) if votes else len(values))
        local_leaf = 0

        def payload(node: int) -> int:
            nonlocal local_leaf, pure, mixed
            if not votes:
                values.append(float(np.float32(tree.value[node, 0])))
                local_leaf += 1
                return local_leaf - 1
            c = counts[ti][node]
            nz = np.flatnonzero(c)
            if len(nz) == 1:
                pure += 1
                return int(nz[0])
            mixed += 1
            start = len(entries) - lbase[-1]
            for j, cls in enumerate(nz):
                last = int(j == len(nz) - 1)
                entries.append((int(c[cls]) << (kb + 1)) | (int(cls) << 1) | last)
            return k + start

        if tree.feature[0] < 0:  # a one-leaf tree: one node, both children that leaf
            p = payload(0)
            code.append(3)
            thr.append(0.0)
            left.append(p)
            right.append(p)
            continue
        order = _preorder(tree)
        local = {node: i for i, node in enumerate(order)}
        for node in order:
            lc, rc = int(tree.left[node]), int(tree.right[node])
            lleaf, rleaf = tree.feature[lc] < 0, tree.feature[rc] < 0
            code.append(int(tree.feature[node]) * 4 + int(lleaf) + 2 * int(rleaf))
            thr.append(thresholds[ti][node])
            left.append(payload(lc) if lleaf else local[lc])
            right.append(payload(rc) if rleaf else local[rc])
    return Packed(code, thr, left, right, root, lbase, entries, values, cb, kb, exact, pure, mixed)


def _preorder(tree: object) -> list[int]:
    feature = tree.feature  # type: ignore[attr-defined]
    out: list[int] = []
    stack = [0]
    while stack:
        node = stack.pop()
        if feature[node] < 0:
            continue
        out.append(node)
        stack.append(int(tree.right[node]))  # type: ignore[attr-defined]
        stack.append(int(tree.left[node]))  # type: ignore[attr-defined]
    return out


def _fmt_float(v: float) -> str:
    return repr(float(np.float32(v))) + "f"


def _array(ctype: str, name: str, items: list[str]) -> str:
    rows = [", ".join(items[i : i + 12]) for i in range(0, len(items), 12)] or ["0"]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{max(len(items), 1)}] = {{\n    {body}\n}};\n"


def c_source(name: str, ens: Ensemble, p: Packed, thr_ctype: str, scales: list[float] | None) -> dict[str, str]:
    """The header and source of NAME_predict (and NAME_predict_int when `scales` is given)."""
    t = p.types()
    xin = "int16_t" if scales is not None else "float"
    thr_items = [str(int(v)) for v in p.thr] if scales is not None else [_fmt_float(v) for v in p.thr]
    k = ens.n_outputs
    tables = [
        _array(t["code"][0], f"{name}_code", [str(v) for v in p.code]),
        _array(thr_ctype, f"{name}_thr", thr_items),
        _array(t["ref"][0], f"{name}_left", [str(v) for v in p.left]),
        _array(t["ref"][0], f"{name}_right", [str(v) for v in p.right]),
        _array(t["base"][0], f"{name}_root", [str(v) for v in p.root]),
        _array(t["base"][0], f"{name}_lbase", [str(v) for v in p.lbase]),
    ]
    if ens.aggregate == "votes":
        tables.append(_array(t["ent"][0], f"{name}_ent", [f"{v}u" for v in p.entries]))
    else:
        tables.append(_array("float", f"{name}_val", [_fmt_float(v) for v in p.values]))
    unit = scales is not None and all(v == 1.0 for v in scales)
    if scales is not None and not unit:  # all-integer inputs need no scale table
        tables.append(_array("float", f"{name}_scale", [_fmt_float(v) for v in scales]))
    leaf = _leaf_code(name, ens, p, t)
    finish = _finish_code(name, ens)
    init = ", ".join(_fmt_float(b) for b in ens.base)
    # A forest classifier sums its trees' probabilities in double, as predict_proba does (see _leaf_code).
    acc_type = "uint64_t" if ens.aggregate == "votes" else "float"
    run = (
        (_F64.replace("NAME", name) if ens.aggregate == "votes" else "")
        + f"""static int {name}_run(const {xin} *x, float *scores)
{{
    {acc_type} acc[{k}] = {{{init}}};
    uint32_t t;
    int i, best = 0;
    for (t = 0; t < {len(p.root)}u; ++t) {{
        uint32_t n = {name}_root[t];
        {t["ref"][0]} r;
        for (;;) {{
            {t["code"][0]} c = {name}_code[n];
            if (x[c >> 2] <= {name}_thr[n]) {{
                r = {name}_left[n];
                if (c & 1u) break;
            }} else {{
                r = {name}_right[n];
                if (c & 2u) break;
            }}
            n = {name}_root[t] + r;
        }}
{leaf}
    }}
{finish}
}}
"""
    )
    decls, wrappers = _entries(name, ens.n_features, scales)
    guard = f"{name.upper()}_H"
    header = (
        f"#ifndef {guard}\n#define {guard}\n#include <stdint.h>\n\n#define {name.upper()}_N_FEATURES {ens.n_features}\n"
        f"#define {name.upper()}_N_OUTPUTS {k}\n\n" + "\n".join(decls) + f"\n\n#endif /* {guard} */\n"
    )
    source = (
        f"/* Generated by keel.edge.trees from a {ens.source}: {len(p.root)} trees, {len(p.code)} nodes. */\n"
        f'#include <stdint.h>\n#include "{name}.h"\n\n' + "\n".join(tables) + "\n" + run + "\n" + wrappers
    )
    return {f"{name}.h": header, f"{name}.c": source}


# A forest classifier's sums are float64 as scikit-learn's, but held as their IEEE bits in uint64_t and
# computed in integers: libgcc's soft-double add, divide (which brings the multiply), compare and
# conversions cost about 2.4 KB of Cortex-M4 flash; these three routines, exact for the values a
# forest makes (>= 0, normal or zero), cost a fraction of that. For x >= 0 the bits order as the values,
# so comparisons are integer comparisons. A double is m * 2^(e - 1075), m of 53 bits with its leading 1.
_F64 = """#define NAME_FRAC 0xFFFFFFFFFFFFFull
#define NAME_LEAD 0x10000000000000ull

/* m * 2^(e - 1075) / d as double bits, correctly rounded (to nearest, ties to even), by long division */
static uint64_t NAME_div(uint64_t m, int e, uint32_t d)
{
    uint64_t q = 0u, r = 0u, sig;
    int i = 0;
    if (m == 0u) return 0u;
    while (m < NAME_LEAD) { m <<= 1; --e; }
    while (q < 0x40000000000000ull) { /* quotient bits until 55: 53 kept, a round bit, one more */
        r = (r << 1) | (i < 53 ? (m >> (52 - i)) & 1u : 0u);
        q <<= 1;
        if (r >= d) { r -= d; q |= 1u; }
        ++i;
    }
    sig = q >> 2;
    e += 55 - i;
    if ((q & 2u) && ((q & 1u) || r != 0u || (sig & 1u))) ++sig;
    if (sig >> 53) { sig >>= 1; ++e; }
    return ((uint64_t)e << 52) | (sig & NAME_FRAC);
}

/* a + b for doubles >= 0 (bits in, bits out), correctly rounded: guard, round and sticky bits */
static uint64_t NAME_add(uint64_t a, uint64_t b)
{
    uint64_t ma, mb;
    int e, sh;
    if (a < b) { ma = a; a = b; b = ma; }
    if (b == 0u) return a;
    e = (int)(a >> 52);
    sh = e - (int)(b >> 52);
    ma = ((a & NAME_FRAC) | NAME_LEAD) << 3;
    mb = ((b & NAME_FRAC) | NAME_LEAD) << 3;
    if (sh > 58) mb = 1u;
    else if (sh > 0) mb = (mb >> sh) | ((mb & ((1ull << sh) - 1u)) != 0u);
    ma += mb;
    if (ma >> 56) { ma = (ma >> 1) | (ma & 1u); ++e; }
    mb = ma & 7u;
    ma >>= 3;
    if (mb > 4u || (mb == 4u && (ma & 1u))) ++ma;
    if (ma >> 53) { ma >>= 1; ++e; }
    return ((uint64_t)e << 52) | (ma & NAME_FRAC);
}

/* (float) of a double >= 0 given as bits, correctly rounded */
static float NAME_f32(uint64_t a)
{
    union { float f; uint32_t u; } v;
    uint64_t m = (a & NAME_FRAC) | NAME_LEAD, low = m & 0x1FFFFFFFu;
    int e = (int)(a >> 52) - 1023 + 127;
    if (a == 0u) return 0.0f;
    m >>= 29;
    if (low > 0x10000000u || (low == 0x10000000u && (m & 1u))) ++m;
    if (m >> 24) { m >>= 1; ++e; }
    v.u = ((uint32_t)e << 23) | (uint32_t)(m & 0x7FFFFFu);
    return v.f;
}

"""


def _entries(name: str, n_features: int, scales: list[float] | None) -> tuple[list[str], str]:
    """The public entry points (declarations, definitions): NAME_predict, and for an int16 build
    NAME_predict_int, with NAME_predict quantising its float input first."""
    unit = scales is not None and all(v == 1.0 for v in scales)
    entry = f"int {name}_predict(const float *features, float *scores)"
    decls = [entry + ";"]
    if scales is None:
        wrappers = f"{entry}\n{{\n    return {name}_run(features, scores);\n}}\n"
    else:
        ient = f"int {name}_predict_int(const int16_t *features, float *scores)"
        decls.append(ient + ";")
        wrappers = f"""{ient}
{{
    return {name}_run(features, scores);
}}

{entry}
{{
    /* round(x * scale), half away from zero, saturated to +-32767: no libm */
    int16_t q[{n_features}];
    int i;
    for (i = 0; i < {n_features}; ++i) {{
        float v = features[i]{"" if unit else f" * {name}_scale[i]"};
        v = v > 32767.0f ? 32767.0f : (v < -32767.0f ? -32767.0f : v);
        q[i] = (int16_t)(v >= 0.0f ? v + 0.5f : v - 0.5f);
    }}
    return {name}_predict_int(q, scores);
}}
"""
    return decls, wrappers


def _leaf_code(name: str, ens: Ensemble, p: Packed, t: dict[str, tuple[str, int]]) -> str:
    k = ens.n_outputs
    if ens.aggregate == "mean":
        return f"        acc[0] += {name}_val[{name}_lbase[t] + r];"
    if ens.aggregate == "sum":
        slot = "0" if k == 1 else f"t % {k}u"
        return f"        acc[{slot}] += {name}_val[{name}_lbase[t] + r];"
    kb = p.class_bits
    ent = t["ent"][0]
    # Bit for bit what scikit-learn does: each tree's leaf holds count / n as a float64 fraction
    # (correctly rounded, which `(double)count / (double)sum` is too), predict_proba adds those
    # fractions tree by tree into float64 sums and divides by the tree count, and predict takes the
    # first argmax. Mathematically tied classes are then broken by float64 rounding, not by index, so
    # neither float32 nor exact rational sums reproduce it (each decided 3 of 2,000 tied rows
    # differently in tests/unit/edge/test_tree_ties.py). The float64 arithmetic is _F64's, in integers.
    return f"""        if (r < {k}u) {{
            acc[r] = {name}_add(acc[r], 0x3FF0000000000000ull); /* 1.0 */
        }} else {{
            uint32_t e = {name}_lbase[t] + r - {k}u, j = e;
            uint32_t sum = 0;
            {ent} v;
            do {{ v = {name}_ent[j++]; sum += (uint32_t)(v >> {kb + 1}); }} while (!(v & 1u));
            do {{
                v = {name}_ent[e++];
                i = (int)((v >> 1) & {(1 << kb) - 1}u);
                acc[i] = {name}_add(acc[i], {name}_div(v >> {kb + 1}, 1075, sum));
            }} while (!(v & 1u));
        }}"""


def _finish_code(name: str, ens: Ensemble) -> str:
    k = ens.n_outputs
    n = len(ens.trees)
    if ens.aggregate == "mean":
        return f"    (void)i; (void)best;\n    scores[0] = acc[0] / {float(n)!r}f;\n    return 0;"
    if ens.aggregate == "votes":
        # predict_proba divides the sums by the tree count before the argmax; division keeps the order
        # but can round a slightly smaller sum of a lower class to the same value (a tie the lower
        # index wins), so only those near candidates are divided exactly (the division is slow).
        return (
            f"    for (i = 1; i < {k}; ++i) if (acc[i] > acc[best]) best = i;\n"
            f"    {{\n        uint64_t top = {name}_div((acc[best] & {name}_FRAC) | {name}_LEAD, (int)(acc[best] >> 52), {n}u);\n"
            f"        for (i = 0; i < best; ++i)\n"
            f"            if (acc[best] - acc[i] <= 4u && {name}_div((acc[i] & {name}_FRAC) | {name}_LEAD, (int)(acc[i] >> 52), {n}u) == top) {{\n"
            f"                best = i;\n                break;\n            }}\n    }}\n"
            f"    for (i = 0; i < {k}; ++i) scores[i] = {name}_f32(acc[i]) / {float(n)!r}f;\n    return best;"
        )
    lines = [f"    for (i = 0; i < {k}; ++i) scores[i] = acc[i];"]
    if ens.kind == "regressor":
        lines.append("    (void)best;\n    return 0;")
    elif k == 1:  # binary boosting: the margin of the positive class; class 1 iff margin > 0
        lines.append("    (void)best;\n    return scores[0] > 0.0f ? 1 : 0;")
    else:  # argmax, the first maximum as numpy's
        lines.append(f"    for (i = 1; i < {k}; ++i) if (scores[i] > scores[best]) best = i;\n    return best;")
    return "\n".join(lines)
