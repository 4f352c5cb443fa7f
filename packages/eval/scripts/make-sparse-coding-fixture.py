#!/usr/bin/env python3
"""Writes src/fixtures/sparse-coding.json: reference solutions for @dictlearn/eval's
inference-time sparse coding (fistaCodes, ompCodes), from scikit-learn's solvers — coordinate
descent for the lasso and its OMP — which share no code or method with FISTA.

A decoder of F unit rows W [F, d] with a bias b [d], a batch x [B, d] made of a few atoms plus
noise, and per case:
  - lasso (non-negative and signed): argmin_z |x - b - z W|^2 + lambda |z|_1 per row, i.e.
    sparse_encode(x - b, W, algorithm='lasso_cd', alpha=lambda/2, positive=...) (sklearn solves
    1/2 |.|^2 + alpha |z|_1); checked here against the optimality (KKT) conditions
    2 (x - b - z W) W^T = lambda sign(z) on the support and |.| <= lambda off it;
  - omp: sparse_encode(x - b, W, algorithm='omp', n_nonzero_coefs=k).
Inputs are float32 values; the solutions are computed in float64.

Run: .venv/bin/python packages/eval/scripts/make-sparse-coding-fixture.py   (numpy, scikit-learn)
"""
import json
import os

import numpy as np
from sklearn.decomposition import sparse_encode

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "src", "fixtures", "sparse-coding.json")
rng = np.random.default_rng(20261202)
B, d, F = 6, 8, 12


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


W = rng.normal(size=(F, d))
W = f32(W / np.linalg.norm(W, axis=1, keepdims=True))
b = f32(rng.normal(size=d) * 0.1)
codes = np.zeros((B, F))
for r in range(B):
    active = rng.choice(F, size=3, replace=False)
    codes[r, active] = rng.uniform(0.5, 1.5, size=3)
x = f32(codes @ W + b + rng.normal(size=(B, d)) * 0.05)


def lasso(lam, positive):
    z = sparse_encode(
        x - b, W, algorithm="lasso_cd", alpha=lam / 2, positive=positive, max_iter=100000
    )
    # sklearn's stopping tolerance is loose; polish with many exact coordinate sweeps in float64.
    G = W @ W.T
    c = (x - b) @ W.T
    for _ in range(20000):
        for j in range(F):
            rho = c[:, j] - z @ G[:, j] + z[:, j] * G[j, j]
            if positive:
                z[:, j] = np.maximum(rho - lam / 2, 0) / G[j, j]
            else:
                z[:, j] = np.sign(rho) * np.maximum(np.abs(rho) - lam / 2, 0) / G[j, j]
    grad = 2 * ((x - b) - z @ W) @ W.T
    on = z != 0
    if positive:
        assert np.allclose(grad[on], lam, atol=1e-9), "KKT on the support"
        assert (grad[~on] <= lam + 1e-9).all(), "KKT off the support"
    else:
        assert np.allclose(grad[on], lam * np.sign(z[on]), atol=1e-9), "KKT on the support"
        assert (np.abs(grad[~on]) <= lam + 1e-9).all(), "KKT off the support"
    assert 0 < on.sum(1).mean() < F
    return z


def omp(k):
    return sparse_encode(x - b, W, algorithm="omp", n_nonzero_coefs=k)


def enc(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "values": a.reshape(-1).tolist()}


out = {
    "generator": "packages/eval/scripts/make-sparse-coding-fixture.py",
    "W": enc(W),
    "b": enc(b),
    "x": enc(x),
    "lasso": [
        {"l1Penalty": 0.2, "nonNegative": True, "codes": enc(lasso(0.2, True))},
        {"l1Penalty": 0.1, "nonNegative": False, "codes": enc(lasso(0.1, False))},
    ],
    "omp": [{"atoms": k, "codes": enc(omp(k))} for k in (1, 3, 5)],
}
for case in out["lasso"]:
    z = np.array(case["codes"]["values"]).reshape(B, F)
    print("lasso", case["l1Penalty"], "L0", (z != 0).sum(1).mean())
with open(OUT, "w") as fh:
    json.dump(out, fh)
print("wrote", os.path.normpath(OUT))
