#!/usr/bin/env python3
"""Writes src/testing/fixtures/ops.json: numpy reference values for the core ops.

Every case names an op (as in the conformance suite's op table), its attributes, its inputs
(float32 or int32, drawn from a seeded generator) and numpy's outputs. numpy computes in
float64 from the float32 inputs and rounds once to float32, so the fixture is the correctly
rounded answer a float32 backend is compared against.

Run: python3 packages/core/scripts/make-op-fixtures.py   (numpy only)
"""
import json
import os

import numpy as np

rng = np.random.default_rng(20261125)
cases = []


def f32(*shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape).astype(np.float32)


def ties(*shape):
    # small integers as floats, so comparisons, max and top-k meet ties
    return rng.integers(-3, 4, size=shape).astype(np.float32)


def enc(a):
    a = np.asarray(a)
    dtype = "int32" if a.dtype.kind in "iu" else "float32"
    vals = a.astype(np.int64 if dtype == "int32" else np.float32).ravel().tolist()
    return {"shape": list(a.shape), "dtype": dtype, "values": vals}


def case(name, op, inputs, outputs, attrs=None, grad=True):
    cases.append({
        "name": name,
        "op": op,
        "attrs": attrs or {},
        "inputs": [enc(x) for x in inputs],
        "outputs": [enc(np.asarray(y, dtype=np.float64).astype(np.float32) if np.asarray(y).dtype.kind == "f" else y)
                    for y in outputs],
        "grad": grad,
    })


d = lambda x: np.asarray(x, dtype=np.float64)

# --- unary
x = f32(3, 4)
pos = f32(3, 4, low=0.2, high=3.0)
case("neg", "neg", [x], [-d(x)])
case("abs", "abs", [x], [np.abs(d(x))])
case("sign", "sign", [ties(3, 4)], [None], grad=False)
cases[-1]["outputs"] = [enc(np.sign(np.asarray(cases[-1]["inputs"][0]["values"], dtype=np.float32)).reshape(3, 4))]
case("square", "square", [x], [d(x) ** 2])
case("sqrt", "sqrt", [pos], [np.sqrt(d(pos))])
case("exp", "exp", [x], [np.exp(d(x))])
case("log", "log", [pos], [np.log(d(pos))])
case("pow3", "pow", [x], [d(x) ** 3], {"p": 3})
case("pow_half", "pow", [pos], [d(pos) ** 0.5], {"p": 0.5})
case("relu", "relu", [x], [np.maximum(d(x), 0)])
case("step", "step", [x], [(d(x) > 0.1).astype(np.float64)], {"threshold": 0.1}, grad=False)

# --- binary with broadcasting
for op, fn in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide),
               ("maximum", np.maximum), ("minimum", np.minimum)]:
    a, b = f32(3, 4), f32(3, 4)
    if op == "div":
        b = np.where(np.abs(b) < 0.3, np.float32(0.7), b).astype(np.float32)
    case(f"{op}_same", op, [a, b], [fn(d(a), d(b))])
    r = f32(4, low=0.4, high=2.0) if op == "div" else f32(4)
    case(f"{op}_row", op, [a, r], [fn(d(a), d(r))])
    c, e = f32(3, 1), f32(1, 4, low=0.4, high=2.0)
    case(f"{op}_outer", op, [c, e], [fn(d(c), d(e))])
    s = np.array(1.5, dtype=np.float32)
    case(f"{op}_scalar", op, [a, s], [fn(d(a), d(s))])
    case(f"{op}_rank3", op, [f32(2, 3, 4), f32(3, 1)] if op != "div" else [f32(2, 3, 4), f32(3, 1, low=0.5, high=2)], [None])
    i0, i1 = cases[-1]["inputs"]
    A = np.asarray(i0["values"], dtype=np.float32).reshape(i0["shape"])
    B = np.asarray(i1["values"], dtype=np.float32).reshape(i1["shape"])
    cases[-1]["outputs"] = [enc(fn(d(A), d(B)).astype(np.float32))]

for op, fn in [("greater", np.greater), ("greaterEqual", np.greater_equal), ("less", np.less),
               ("lessEqual", np.less_equal), ("equal", np.equal), ("notEqual", np.not_equal)]:
    a, b = ties(3, 4), ties(4)
    case(op, op, [a, b], [fn(a, b).astype(np.float64)], grad=False)

cond = ties(3, 4)
a, b = f32(3, 4), f32(4)
case("where", "where", [cond, a, b], [np.where(cond != 0, d(a), d(b))])

# --- reductions
t = f32(2, 3, 4)
for axes, keep in [(None, False), (0, False), (1, True), ([0, 2], False), (-1, True)]:
    ax = tuple(axes) if isinstance(axes, list) else axes
    attrs = {"axes": axes, "keepDims": keep}
    tag = "all" if axes is None else str(axes).replace(" ", "")
    case(f"sum_{tag}_{keep}", "sum", [t], [np.sum(d(t), axis=ax, keepdims=keep)], attrs)
    case(f"mean_{tag}_{keep}", "mean", [t], [np.mean(d(t), axis=ax, keepdims=keep)], attrs)
    case(f"max_{tag}_{keep}", "max", [t], [np.max(d(t), axis=ax, keepdims=keep)], attrs)
    case(f"min_{tag}_{keep}", "min", [t], [np.min(d(t), axis=ax, keepdims=keep)], attrs)
tt = ties(4, 6)
case("argmax_last", "argmax", [tt], [np.argmax(tt, axis=-1).astype(np.int32)], {"axis": -1}, grad=False)
case("argmax_0", "argmax", [tt], [np.argmax(tt, axis=0).astype(np.int32)], {"axis": 0}, grad=False)
case("l1Norm", "l1Norm", [x], [np.sum(np.abs(d(x)), axis=-1)], {"axes": -1})
case("l2Norm", "l2Norm", [x], [np.sqrt(np.sum(d(x) ** 2, axis=-1))], {"axes": -1})
case("l2Norm_0_keep", "l2Norm", [x], [np.sqrt(np.sum(d(x) ** 2, axis=0, keepdims=True))], {"axes": 0, "keepDims": True})

# --- matmul: every transpose variant, batched and broadcast
m, k, n = 5, 3, 4
for ta in (False, True):
    for tb in (False, True):
        A = f32(k, m) if ta else f32(m, k)
        B = f32(n, k) if tb else f32(k, n)
        ref = (d(A).T if ta else d(A)) @ (d(B).T if tb else d(B))
        case(f"matmul_{int(ta)}{int(tb)}", "matmul", [A, B], [ref], {"transA": ta, "transB": tb})
        A3 = f32(2, k, m) if ta else f32(2, m, k)
        B3 = f32(2, n, k) if tb else f32(2, k, n)
        ref3 = np.matmul(np.swapaxes(d(A3), 1, 2) if ta else d(A3), np.swapaxes(d(B3), 1, 2) if tb else d(B3))
        case(f"bmm_{int(ta)}{int(tb)}", "matmul", [A3, B3], [ref3], {"transA": ta, "transB": tb})
A3, B2 = f32(2, m, k), f32(k, n)
case("bmm_broadcastB", "matmul", [A3, B2], [np.matmul(d(A3), d(B2))], {"transA": False, "transB": False})
big_a, big_b = f32(40, 70), f32(70, 33)  # large enough for a backend's fast path
case("matmul_large", "matmul", [big_a, big_b], [d(big_a) @ d(big_b)], {"transA": False, "transB": False}, grad=False)
case("matmul_large_tA", "matmul", [big_b, f32(70, 20)], [None], {"transA": True, "transB": False}, grad=False)
i0, i1 = cases[-1]["inputs"]
cases[-1]["outputs"] = [enc((d(np.asarray(i0["values"], dtype=np.float32).reshape(70, 33)).T
                             @ d(np.asarray(i1["values"], dtype=np.float32).reshape(70, 20))).astype(np.float32))]

# --- layout
t = f32(2, 3, 4)
case("transpose_201", "transpose", [t], [np.transpose(d(t), (2, 0, 1))], {"perm": [2, 0, 1]})
case("transpose_2d", "transpose", [x], [d(x).T], {"perm": [1, 0]})
case("reshape", "reshape", [t], [d(t).reshape(4, 6)], {"shape": [4, -1]})
case("expandDims", "expandDims", [x], [d(x)[:, None, :]], {"axis": 1})
case("slice", "slice", [t], [d(t)[1:2, 0:2, 1:4]], {"begin": [1, 0, 1], "size": [1, 2, 3]})
case("pad", "pad", [x], [np.pad(d(x), ((1, 0), (0, 2)))], {"paddings": [[1, 0], [0, 2]]})
y = f32(3, 2)
case("concat_1", "concat", [x, y], [np.concatenate([d(x), d(y)], axis=1)], {"axis": 1})
case("concat_0", "concat", [x, f32(1, 4)], [None], {"axis": 0})
i0, i1 = cases[-1]["inputs"]
cases[-1]["outputs"] = [enc(np.concatenate([np.asarray(i0["values"], np.float32).reshape(3, 4),
                                            np.asarray(i1["values"], np.float32).reshape(1, 4)], axis=0))]
case("broadcastTo", "broadcastTo", [f32(3, 1)], [None], {"shape": [2, 3, 4]})
cases[-1]["outputs"] = [enc(np.broadcast_to(np.asarray(cases[-1]["inputs"][0]["values"], np.float32).reshape(3, 1), (2, 3, 4)))]

# --- indexing
src = f32(5, 3)
idx = np.array([4, 0, 4, 2], dtype=np.int32)
case("gatherRows", "gatherRows", [src, idx], [d(src)[idx]])
upd = f32(4, 3)
sc = d(src).copy()
np.add.at(sc, idx, d(upd))
case("scatterAddRows", "scatterAddRows", [src, idx, upd], [sc])
cols = np.array([2, 0, 2], dtype=np.int32)
case("indexColumns", "indexColumns", [src, cols], [d(src)[:, cols]])
li = np.array([[0, 2], [1, 1], [2, 0], [0, 0], [1, 2]], dtype=np.int32)
case("gatherLast", "gatherLast", [src, li], [np.take_along_axis(d(src), li, axis=-1)])
vals = f32(5, 2)
sl = np.zeros((5, 4))
for r in range(5):
    for j in range(2):
        sl[r, li[r, j]] += vals[r, j]
case("scatterLast", "scatterLast", [li, vals], [sl], {"width": 4})
tk = ties(3, 8)
order = np.array([sorted(range(8), key=lambda j: (-row[j], j)) for row in tk])[:, :3].astype(np.int32)
case("topk_ties", "topk", [tk], [np.take_along_axis(tk, order, -1).astype(np.float64), order], {"k": 3}, grad=False)
tk2 = f32(4, 50)
order2 = np.argsort(-d(tk2), axis=-1, kind="stable")[:, :5].astype(np.int32)
case("topk_k5", "topk", [tk2], [np.take_along_axis(d(tk2), order2, -1), order2], {"k": 5})

# --- casts, creation, clipping
fl = np.array([-2.7, -0.5, 0.0, 0.5, 2.7, 3.0], dtype=np.float32)
case("cast_to_int", "cast", [fl], [np.trunc(fl).astype(np.int32)], {"dtype": "int32"}, grad=False)
case("cast_to_float", "cast", [np.array([-3, 0, 7], dtype=np.int32)], [np.array([-3.0, 0.0, 7.0])], {"dtype": "float32"}, grad=False)
g1, g2 = f32(3, 4), f32(5)
norm = np.sqrt(np.sum(d(g1) ** 2) + np.sum(d(g2) ** 2))
coef = min(1.0, 1.0 / (norm + 1e-6))
case("clipByGlobalNorm", "clipByGlobalNorm", [g1, g2], [d(g1) * coef, d(g2) * coef, norm], {"maxNorm": 1.0}, grad=False)

# Adam (torch semantics), the optimizer op backends may fuse
ap, ag, am = f32(4, 5), f32(4, 5), f32(4, 5, low=-0.1, high=0.1)
av = f32(4, 5, low=0.0, high=0.05)
h = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "step": 3}
m2 = h["beta1"] * d(am) + (1 - h["beta1"]) * d(ag)
v2 = h["beta2"] * d(av) + (1 - h["beta2"]) * d(ag) ** 2
bc1, bc2 = 1 - h["beta1"] ** h["step"], 1 - h["beta2"] ** h["step"]
p2 = d(ap) - (h["lr"] / bc1) * m2 / (np.sqrt(v2) / np.sqrt(bc2) + h["eps"])
case("adamUpdate", "adamUpdate", [ap, ag, am, av], [p2, m2, v2], h, grad=False)

br_x, br_b = f32(3, 4), f32(4)
case("biasRelu", "biasRelu", [br_x, br_b], [np.maximum(d(br_x) + d(br_b), 0)])

lx, lw, lb = f32(5, 3), f32(3, 4), f32(4)
case("linearBiasRelu", "linearBiasRelu", [lx, lw, lb], [np.maximum(d(lx) @ d(lw) + d(lb), 0)], {"transB": False})
lwt = f32(4, 3)
case("linearBiasRelu_tB", "linearBiasRelu", [lx, lwt, lb], [np.maximum(d(lx) @ d(lwt).T + d(lb), 0)], {"transB": True})

# fused helpers of training: relu's gradient and ConstrainedAdam's row operations
rg_dy, rg_x = f32(3, 4), f32(3, 4)
case("reluGrad", "reluGrad", [rg_dy, rg_x], [d(rg_dy) * (d(rg_x) > 0)], grad=False)
rw, rgr = f32(5, 3), f32(5, 3)
rn = d(rw) / (np.linalg.norm(d(rw), axis=1, keepdims=True) + 1e-12)
case("normalizeRows", "normalizeRows", [rw], [rn], grad=False)
case("removeParallelComponent", "removeParallelComponent", [rw, rgr],
     [d(rgr) - np.sum(d(rgr) * rn, axis=1, keepdims=True) * rn], grad=False)

# Adam where the second moments are tiny (v ~ 1e-12..1e-10, late in training with small gradients):
# √v̂ ~ 1e-6..1e-5 ≫ ε = 1e-8 here, while ε inside the square root (√(v̂ + ε) ~ 1e-4) would shrink
# the update 10-100×, so this case tells the two apart. Drawn last: the cases above keep their values.
ap, ag = f32(4, 5), f32(4, 5, low=-1e-5, high=1e-5)
am = f32(4, 5, low=-1e-6, high=1e-6)
av = np.exp(rng.uniform(np.log(1e-12), np.log(1e-10), size=(4, 5))).astype(np.float32)
h = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "step": 1000}
m2 = h["beta1"] * d(am) + (1 - h["beta1"]) * d(ag)
v2 = h["beta2"] * d(av) + (1 - h["beta2"]) * d(ag) ** 2
bc1, bc2 = 1 - h["beta1"] ** h["step"], 1 - h["beta2"] ** h["step"]
p2 = d(ap) - (h["lr"] / bc1) * m2 / (np.sqrt(v2) / np.sqrt(bc2) + h["eps"])
inside = d(ap) - (h["lr"] / bc1) * m2 / np.sqrt(v2 / bc2 + h["eps"])
assert np.max(np.abs(p2 - inside)) > 1e-4  # the variants differ far beyond the float32 tolerance
case("adamUpdate_small_v", "adamUpdate", [ap, ag, am, av], [p2, m2, v2], h, grad=False)

# --- sparse codes (TopK / BatchTopK encoders, sparse decode and its gradient ops). Drawn last, so
# every case above keeps its values. Pre-activations are kept away from 0 and from each other
# around the k-th largest, so finite differences never cross a ReLU kink or a change of selection.


def topk_rows(post, k):
    """The k largest per row, descending; ties to the lower index."""
    order = np.array([sorted(range(post.shape[1]), key=lambda j: (-row[j], j))[:k] for row in post], dtype=np.int32)
    return np.take_along_axis(post, order, -1), order


def batch_topk(post, k):
    """The B*k largest over the batch, descending; ties to the lower flat position row*F + feature."""
    B, F = post.shape
    flat = post.ravel()
    order = np.array(sorted(range(B * F), key=lambda p: (-flat[p], p))[: B * k], dtype=np.int64)
    return flat[order], (order % F).astype(np.int32), (order // F).astype(np.int32)


def well_separated(pre, picked_gap=1e-3):
    """No pre-activation near 0 and no two within picked_gap of each other in a row (or the batch)."""
    if np.min(np.abs(pre)) < picked_gap:
        return False
    srt = np.sort(pre, axis=-1)
    return np.min(np.diff(srt, axis=-1)) > picked_gap and np.min(np.diff(np.sort(pre.ravel()))) > picked_gap * 0.1


def draw_encoder(B, d, F, trans, bias_shift=0.0):
    while True:
        x, w, b = f32(B, d), f32(*((F, d) if trans else (d, F)), low=-1, high=1), f32(F, low=-0.5, high=0.5)
        b = (b + np.float32(bias_shift)).astype(np.float32)
        pre = d_(x) @ (d_(w).T if trans else d_(w)) + d_(b)
        if well_separated(pre):
            return x, w, b, pre


d_ = d
for name, (B, dd, F, k, trans, shift) in {
    "topkEncode": (5, 6, 10, 3, False, 0.0),
    "topkEncode_tB": (4, 5, 9, 4, True, 0.0),
    "topkEncode_fewPositive": (5, 4, 8, 3, False, -1.6),  # rows with fewer than k positive: zeros at the lowest indices
}.items():
    x, w, b, pre = draw_encoder(B, dd, F, trans, shift)
    post = np.maximum(pre, 0)
    vals, idx = topk_rows(post, k)
    if name == "topkEncode_fewPositive":
        assert np.any(np.sum(post > 0, axis=1) < k)
    case(name, "topkEncode", [x, w, b], [vals, idx], {"k": k, "transB": trans})

# ties: small integers, so equal pre-activations meet at the k-th place (no gradient check)
tx, tw, tb = ties(4, 3), ties(3, 7), ties(7)
tpost = np.maximum(d(tx) @ d(tw) + d(tb), 0)
tv, ti = topk_rows(tpost, 3)
case("topkEncode_ties", "topkEncode", [tx, tw, tb], [tv, ti], {"k": 3, "transB": False}, grad=False)

for name, (B, dd, F, k, trans, shift) in {
    "batchTopkEncode": (4, 5, 8, 2, False, 0.0),
    "batchTopkEncode_tB": (3, 4, 6, 3, True, -0.8),
}.items():
    x, w, b, pre = draw_encoder(B, dd, F, trans, shift)
    vals, feats, rws = batch_topk(np.maximum(pre, 0), k)
    case(name, "batchTopkEncode", [x, w, b], [vals, feats, rws], {"k": k, "transB": trans})
bv, bf, br = batch_topk(tpost, 2)
case("batchTopkEncode_ties", "batchTopkEncode", [tx, tw, tb], [bv, bf, br], {"k": 2, "transB": False}, grad=False)

# sparse decode / dot / outer, per-row layout and batch layout (rows unsorted, one row empty,
# a feature repeated within a row and across rows)
sv = f32(4, 3)
si = np.array([[1, 4, 1], [0, 5, 2], [4, 4, 3], [2, 0, 5]], dtype=np.int32)
sw, sb = f32(6, 5), f32(5)
dec = np.einsum("bk,bkd->bd", d(sv), d(sw)[si])
case("sparseDecode", "sparseDecode", [sv, si, sw, sb], [dec + d(sb)], {"bias": True, "rows": False})
case("sparseDecode_noBias", "sparseDecode", [sv, si, sw], [dec], {"bias": False, "rows": False})
rv = f32(7)
ri = np.array([3, 0, 5, 3, 1, 2, 0], dtype=np.int32)
rr = np.array([2, 0, 2, 3, 0, 3, 2], dtype=np.int32)  # row 1 has no entries
rdec = np.zeros((4, 5))
for e in range(7):
    rdec[rr[e]] += d(rv)[e] * d(sw)[ri[e]]
case("sparseDecode_rows", "sparseDecode", [rv, ri, sw, sb, rr], [rdec + d(sb)], {"bias": True, "rows": True, "batch": 4})
sy = f32(4, 5)
case("sparseDot", "sparseDot", [sy, si, sw], [np.einsum("bd,bkd->bk", d(sy), d(sw)[si])])
case("sparseDot_rows", "sparseDot", [sy, ri, sw, rr], [np.einsum("ed,ed->e", d(sy)[rr], d(sw)[ri])])
outer = np.zeros((6, 5))
for bb in range(4):
    for j in range(3):
        outer[si[bb, j]] += d(sv)[bb, j] * d(sy)[bb]
case("sparseOuter", "sparseOuter", [sv, si, sy], [outer], {"numFeatures": 6})
router = np.zeros((6, 5))
for e in range(7):
    router[ri[e]] += d(rv)[e] * d(sy)[rr[e]]
case("sparseOuter_rows", "sparseOuter", [rv, ri, sy, rr], [router], {"numFeatures": 6})

# the fused encoder with its column sums, and its backward (drawn after every case above, so
# those keep their values); rows where f is 0 and dF + row is not check the mask
fx, fw, fwt, fb = f32(6, 3), f32(3, 5), f32(5, 3), f32(5)
for name, (w, trans) in {"linearBiasReluSum": (fw, False), "linearBiasReluSum_tB": (fwt, True)}.items():
    post = np.maximum(d(fx) @ (d(w).T if trans else d(w)) + d(fb), 0)
    # column sums of the float32 features, as a backend sums what it stored
    case(name, "linearBiasReluSum", [fx, w, fb], [post, np.sum(d(post.astype(np.float32)), axis=0)], {"transB": trans})
rgd, rgrow = f32(6, 5), f32(5)
rgf = np.maximum(f32(6, 5), 0).astype(np.float32)
rgp = (d(rgd) + d(rgrow)) * (d(rgf) > 0)
case("reluGradRowSum", "reluGradRowSum", [rgd, rgrow, rgf],
     [rgp, np.sum(d(rgp.astype(np.float32)), axis=0)], grad=False)

out = os.path.join(os.path.dirname(__file__), "..", "src", "testing", "fixtures", "ops.json")
with open(out, "w") as fh:
    json.dump({"generator": "packages/core/scripts/make-op-fixtures.py", "numpy": np.__version__, "cases": cases}, fh)
print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")
