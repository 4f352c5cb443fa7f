"""One full Standard SAE training step in numpy (float32), the reference the bench compares
dictlearn's step with: forward, hand-written backward, ConstrainedAdam (remove the decoder
gradient's parallel component, Adam with bias correction, renormalise decoder rows).
Prints JSON {"version", "seconds": [best step time], "tokens_per_s"}.
usage: python3 numpy_step.py B d F reps
"""
import json
import sys
import time

import numpy as np

B, d, F, reps = (int(a) for a in sys.argv[1:5])
rng = np.random.default_rng(0)
f32 = np.float32
x = rng.standard_normal((B, d), dtype=f32)
W_dec = rng.standard_normal((F, d), dtype=f32)
W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
p = {"W_enc": W_dec.T.copy(), "b_enc": np.zeros(F, f32), "W_dec": W_dec, "b_dec": np.zeros(d, f32)}
m = {k: np.zeros_like(v) for k, v in p.items()}
v = {k: np.zeros_like(w) for k, w in p.items()}
lam, lr, b1, b2, eps = f32(0.1), 1e-3, 0.9, 0.999, 1e-8


def step(t):
    xc = x - p["b_dec"]
    pre = xc @ p["W_enc"] + p["b_enc"]
    f = np.maximum(pre, 0)
    xhat = f @ p["W_dec"] + p["b_dec"]
    r = xhat - x
    loss = np.sum(r * r) / B + lam * np.sum(f) / B
    dxhat = (2 / B) * r
    g = {"W_dec": f.T @ dxhat}
    df = dxhat @ p["W_dec"].T
    df += lam / B
    df *= pre > 0
    g["b_enc"] = df.sum(0)
    g["W_enc"] = xc.T @ df
    g["b_dec"] = dxhat.sum(0) - (df @ p["W_enc"].T).sum(0)
    n = p["W_dec"] / np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
    g["W_dec"] -= np.sum(g["W_dec"] * n, axis=1, keepdims=True) * n
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    for k in p:
        m[k] = b1 * m[k] + (1 - b1) * g[k]
        v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k]
        p[k] -= f32(lr / bc1) * m[k] / (np.sqrt(v[k]) / f32(np.sqrt(bc2)) + f32(eps))
    p["W_dec"] /= np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
    return loss


step(1)
best = float("inf")
for i in range(reps):
    t0 = time.perf_counter()
    step(i + 2)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"version": np.__version__, "seconds": best, "tokens_per_s": B / best}))
