#!/usr/bin/env python3
"""Writes src/fixtures/*.json: numpy reference values for @dictlearn/eval's tests.

evaluate.json
    A small standard ReLU SAE (W_enc [d, F], b_enc [F], W_dec [F, d], b_dec [d]) with
    f = relu((x - b_dec) W_enc + b_enc) and x_hat = f W_dec + b_dec, three batches of x
    (of different sizes, so the unweighted mean over batches matters), and every metric of
    dictionary_learning's `evaluate`, computed per batch and averaged over batches, straight
    from the definitions (apps/docs/guides/definitions.md, "Metrics"). Some encoder biases are very negative so a
    few features never fire (frac_alive < 1). Also the per-feature firing frequencies.
similarity.json
    Two small matrices A [Fa, d] (think: ground truth) and B [Fb, d] (think: learned decoder
    rows): some rows of A are noisy copies of rows of B (cosine above 0.9), others random, one
    row of B is zero. MMCS of A against B and of B against A, and recovery above 0.9.

Inputs are float32 (what the tests upload); numpy computes in float64 from them, so the
fixture is the exact answer a float32 implementation is compared against. Cases are drawn so
that no pre-activation lies within 1e-3 of 0 and no max cosine lies within 1e-3 of the
recovery threshold: a float32 rounding difference cannot flip a feature on or off.

Run: python3 packages/eval/scripts/make-fixtures.py   (numpy only)
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "src", "fixtures")
rng = np.random.default_rng(20260611)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


# ---------------------------------------------------------------------------------------------
# evaluate.json

d, F = 8, 24
DEAD = [3, 11, 19]  # features whose bias keeps them off
W_dec = f32(rng.normal(size=(F, d)))
W_dec = f32(W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True))
W_enc = f32(W_dec.T * 0.6 + rng.normal(scale=0.03, size=(d, F)))
b_enc = f32(rng.normal(scale=0.1, size=F) - 0.5)
b_enc[DEAD] = -100.0
b_dec = f32(rng.normal(scale=0.1, size=d))


def forward(x):
    x = x.astype(np.float64)
    pre = (x - b_dec.astype(np.float64)) @ W_enc.astype(np.float64) + b_enc.astype(np.float64)
    f = np.maximum(pre, 0.0)
    x_hat = f @ W_dec.astype(np.float64) + b_dec.astype(np.float64)
    return pre, f, x_hat


def draw_batch(rows):
    """Rows of x: 3 active dictionary features plus noise (a toy of what an SAE sees), drawn
    so that all pre-activations stay at least 1e-3 away from 0."""
    out = []
    while len(out) < rows:
        c = np.zeros(F)
        idx = rng.choice(F, 3, replace=False)
        c[idx] = rng.uniform(0.5, 2.0, 3)
        x = f32((c @ W_dec + b_dec + rng.normal(scale=0.1, size=d))[None, :])
        pre, _, _ = forward(x)
        if np.min(np.abs(pre)) > 1e-3:
            out.append(x[0])
    return f32(np.stack(out))


def metrics_of(x):
    """dictionary_learning `evaluate` for one batch, in float64."""
    _, f, x_hat = forward(x)
    x = x.astype(np.float64)
    r = x - x_hat
    norm = lambda a: np.linalg.norm(a, axis=-1)
    x_hat_sq = norm(x_hat) ** 2
    x_dot = (x * x_hat).sum(-1)
    return {
        "l2_loss": norm(r).mean(),
        "l1_loss": np.abs(f).sum(-1).mean(),
        "l0": (f != 0).sum(-1).mean(),
        # torch.var(x, dim=0) is unbiased (ddof=1); the factor cancels in the ratio anyway.
        "frac_variance_explained": 1 - np.var(r, axis=0, ddof=1).sum() / np.var(x, axis=0, ddof=1).sum(),
        "cossim": ((x / norm(x)[:, None]) * (x_hat / norm(x_hat)[:, None])).sum(-1).mean(),
        "l2_ratio": (norm(x_hat) / norm(x)).mean(),
        # dictionary_learning's evaluation.py (and SAEBench): x_hat_norm_squared.mean() /
        # x_dot_x_hat.mean() = E||x_hat||^2 / E<x, x_hat>.
        "relative_reconstruction_bias": x_hat_sq.mean() / x_dot.mean(),
    }, f


sizes = [32, 32, 20]
batches = [draw_batch(n) for n in sizes]
per_batch = []
fired = np.zeros(F)
for x in batches:
    m, f = metrics_of(x)
    per_batch.append(m)
    fired += (f != 0).sum(0)
keys = per_batch[0].keys()
expected = {k: float(np.mean([m[k] for m in per_batch])) for k in keys}
expected["frac_alive"] = float((fired > 0).mean())
expected["batches"] = len(batches)
expected["tokens"] = int(sum(sizes))
assert 0 < expected["frac_alive"] < 1, expected["frac_alive"]
assert all(fired[i] == 0 for i in DEAD)

# Maximum per-batch values, for the tests' "one batch" case.
first, _ = metrics_of(batches[0])

evaluate_fixture = {
    "about": "numpy reference for evaluate() and featureDensity(); made by scripts/make-fixtures.py",
    "d": d,
    "F": F,
    "W_enc": {"shape": [d, F], "values": flat(W_enc)},
    "b_enc": {"shape": [F], "values": flat(b_enc)},
    "W_dec": {"shape": [F, d], "values": flat(W_dec)},
    "b_dec": {"shape": [d], "values": flat(b_dec)},
    "batches": [{"shape": list(x.shape), "values": flat(x)} for x in batches],
    "expected": expected,
    "first_batch": {k: float(v) for k, v in first.items()},
    "density": [float(v) for v in fired / sum(sizes)],
}

# ---------------------------------------------------------------------------------------------
# similarity.json

THRESHOLD = 0.9


def unit_rows(m):
    n = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.maximum(n, 1e-12)


def max_cos(a, b):
    return (unit_rows(a.astype(np.float64)) @ unit_rows(b.astype(np.float64)).T).max(axis=1)


ds, Fa, Fb = 6, 9, 7
while True:
    B = f32(rng.normal(size=(Fb, ds)))
    B[4] = 0.0  # a dead (zero) learned row: cosine 0 to everything, no NaN
    A = f32(rng.normal(size=(Fa, ds)))
    # rows 0..3 of A are noisy scaled copies of rows 0..3 of B (recovered); row 5 barely misses
    for i in range(4):
        A[i] = f32((B[i] + rng.normal(scale=0.12, size=ds)) * rng.uniform(0.5, 3.0))
    A[5] = f32(B[5] + rng.normal(scale=0.6, size=ds))
    ab, ba = max_cos(A, B), max_cos(B, A)
    ok_margin = np.min(np.abs(ab - THRESHOLD)) > 1e-3
    recovered = int((ab > THRESHOLD).sum())
    if ok_margin and 0 < recovered < Fa and (ab[:4] > THRESHOLD).all():
        break

similarity_fixture = {
    "about": "numpy reference for mmcs() and groundTruthRecovery(); made by scripts/make-fixtures.py",
    "A": {"shape": [Fa, ds], "values": flat(A)},
    "B": {"shape": [Fb, ds], "values": flat(B)},
    "threshold": THRESHOLD,
    "maxCosAB": [float(v) for v in ab],
    "mmcsAB": float(ab.mean()),
    "maxCosBA": [float(v) for v in ba],
    "mmcsBA": float(ba.mean()),
    "recoveredAB": recovered,
    "fractionRecoveredAB": recovered / Fa,
}

os.makedirs(OUT, exist_ok=True)
for name, data in [("evaluate.json", evaluate_fixture), ("similarity.json", similarity_fixture)]:
    with open(os.path.join(OUT, name), "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
print("expected:", json.dumps(expected, indent=1))
print("recovered", recovered, "of", Fa, "mmcs", ab.mean(), ba.mean())
