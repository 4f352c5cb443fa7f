#!/usr/bin/env python3
"""Writes src/fixtures/steps.json: two training steps of each architecture, computed in numpy
(float64) straight from the REFERENCE definitions, with hand-written backpropagation.

Per architecture: initial parameters, two batches, and after each step the loss, every gradient
and every updated parameter. Optimizer: torch.optim.Adam semantics (lr, betas (0.9, 0.999),
eps 1e-8, bias correction); ConstrainedAdam for `standard` and `tied` (remove the gradient's
component along each decoder row before the step, renormalise the rows after); gradient-norm
clipping to 1 and plain Adam for `april-update`. lr and sparsity warm-ups are 0 (full lr, s = 1).

Run: python3 packages/arch-standard/scripts/make-step-fixture.py   (numpy only)
"""
import json
import os

import numpy as np

rng = np.random.default_rng(7)
B, d, F = 8, 6, 10
LAM, LR, B1, B2, EPS = 0.1, 1e-2, 0.9, 0.999, 1e-8


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def forward(p, x, tied):
    W_enc = p["W_dec"].T if tied else p["W_enc"]
    xc = x - p["b_dec"]
    pre = xc @ W_enc + p["b_enc"]
    f = np.maximum(pre, 0)
    xhat = f @ p["W_dec"] + p["b_dec"]
    return xc, pre, f, xhat


def loss_and_grads(arch, p, x):
    tied = arch == "tied"
    xc, pre, f, xhat = forward(p, x, tied)
    r = xhat - x
    mse = np.sum(r**2) / B
    norms = np.linalg.norm(p["W_dec"], axis=1)  # [F]
    if arch == "april-update":
        sparsity = np.sum(f * norms) / B
    else:
        sparsity = np.sum(np.abs(f)) / B
    loss = mse + LAM * sparsity
    # backprop
    dxhat = 2 * r / B                          # [B, d]
    dW_dec = f.T @ dxhat                       # [F, d]
    db_dec = dxhat.sum(0)
    df = dxhat @ p["W_dec"].T                  # [B, F]
    if arch == "april-update":
        df = df + LAM * norms / B
        # d/dW_dec of Σ_b Σ_i f_bi ‖W_dec,i‖ / B
        dW_dec = dW_dec + LAM * (f.sum(0) / B)[:, None] * p["W_dec"] / norms[:, None]
    else:
        df = df + LAM * np.sign(f) / B
    dpre = df * (pre > 0)
    db_enc = dpre.sum(0)
    W_enc = p["W_dec"].T if tied else p["W_enc"]
    g = {"b_enc": db_enc}
    if tied:
        dW_dec = dW_dec + (xc.T @ dpre).T      # encoder use of the same matrix
    else:
        g["W_enc"] = xc.T @ dpre
    dxc = dpre @ W_enc.T
    g["b_dec"] = db_dec - dxc.sum(0)
    g["W_dec"] = dW_dec
    logs = {"mse_loss": mse, "sparsity_loss": sparsity, "l2_loss": np.mean(np.linalg.norm(r, axis=1))}
    return loss, g, logs


def adam_step(p, g, state, t, constrained):
    g = dict(g)
    if constrained:
        n = p["W_dec"] / np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
        g["W_dec"] = g["W_dec"] - np.sum(g["W_dec"] * n, axis=1, keepdims=True) * n
    out = {}
    for k in p:
        m, v = state.setdefault(k, (np.zeros_like(p[k]), np.zeros_like(p[k])))
        m = B1 * m + (1 - B1) * g[k]
        v = B2 * v + (1 - B2) * g[k] ** 2
        state[k] = (m, v)
        bc1, bc2 = 1 - B1**t, 1 - B2**t
        out[k] = p[k] - (LR / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + EPS)
    if constrained:
        out["W_dec"] = out["W_dec"] / np.linalg.norm(out["W_dec"], axis=1, keepdims=True)
    return out


def enc(a):
    a = np.asarray(a)
    return {"shape": list(a.shape), "values": a.astype(np.float64).ravel().tolist()}


result = {"generator": "packages/arch-standard/scripts/make-step-fixture.py",
          "sizes": {"batch": B, "activationDim": d, "dictSize": F},
          "hyper": {"l1Penalty": LAM, "lr": LR, "betas": [B1, B2], "eps": EPS}, "architectures": {}}
for arch in ["standard", "april-update", "tied"]:
    tied = arch == "tied"
    p = {"W_dec": f32(rng.normal(size=(F, d)) * 0.5), "b_enc": f32(rng.normal(size=F) * 0.1),
         "b_dec": f32(rng.normal(size=d) * 0.1)}
    if not tied:
        p["W_enc"] = f32(rng.normal(size=(d, F)) * 0.5)
    # make some pre-activations negative and some positive, away from 0
    xs = [f32(rng.normal(size=(B, d))) for _ in range(2)]
    entry = {"init": {k: enc(v) for k, v in p.items()}, "batches": [enc(x) for x in xs], "steps": []}
    state = {}
    for t, x in enumerate(xs, start=1):
        loss, g, logs = loss_and_grads(arch, p, x)
        g_used = g
        if arch == "april-update":
            total = np.sqrt(sum(np.sum(v**2) for v in g.values()))
            coef = min(1.0, 1.0 / (total + 1e-6))
            g_used = {k: v * coef for k, v in g.items()}
        p = adam_step(p, g_used, state, t, constrained=arch != "april-update")
        entry["steps"].append({"loss": loss, "logs": logs, "grads": {k: enc(v) for k, v in g.items()},
                               "params": {k: enc(v) for k, v in p.items()}})
    result["architectures"][arch] = entry

out = os.path.join(os.path.dirname(__file__), "..", "src", "fixtures", "steps.json")
with open(out, "w") as fh:
    json.dump(result, fh)
print("wrote", os.path.normpath(out))
