"""One TopK SAE training step in numpy (float32), written the dense way, the reference the bench
compares dictlearn's sparse TopK step with: forward (encoder product, ReLU, top-k per row with
argpartition, the dense [B, F] code, decoder product), hand-written backward through the dense
products, ConstrainedAdam (remove the decoder gradient's parallel component, Adam with bias
correction, renormalise decoder rows). Same model as the bench's TopK step:
f = TopK_k(ReLU((x − b_dec) W_encᵀ + b_enc)), x̂ = f W_dec + b_dec, loss = mean_b ‖x − x̂‖²,
W_enc [F, d] and W_dec [F, d].
Prints JSON {"version", "seconds": best step time, "tokens_per_s"}.
usage: python3 numpy_topk_step.py B d F k reps
       python3 numpy_topk_step.py --check < inputs.json   (two steps from given values)
"""
import json
import sys
import time

import numpy as np

f32 = np.float32
b1, b2, eps = 0.9, 0.999, 1e-8


def make_step(x, p, k, lr):
    """Returns step(t) for a TopK SAE on x with parameters p (updated in place) and Adam moments."""
    B, F = x.shape[0], p["W_enc"].shape[0]
    m = {n: np.zeros_like(w) for n, w in p.items()}
    v = {n: np.zeros_like(w) for n, w in p.items()}
    rows = np.arange(B)[:, None]

    def step(t):
        xc = x - p["b_dec"]
        pre = xc @ p["W_enc"].T + p["b_enc"]
        post = np.maximum(pre, 0)
        idx = np.argpartition(post, F - k, axis=1)[:, F - k:]
        f = np.zeros_like(post)
        f[rows, idx] = post[rows, idx]
        xhat = f @ p["W_dec"] + p["b_dec"]
        r = xhat - x
        loss = np.sum(r * r) / B
        dxhat = (2 / B) * r
        g = {"W_dec": f.T @ dxhat}
        df = dxhat @ p["W_dec"].T
        df *= f > 0
        g["b_enc"] = df.sum(0)
        g["W_enc"] = df.T @ xc
        g["b_dec"] = dxhat.sum(0) - g["b_enc"] @ p["W_enc"]
        n = p["W_dec"] / np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
        g["W_dec"] -= np.sum(g["W_dec"] * n, axis=1, keepdims=True) * n
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        for name in p:
            m[name] = b1 * m[name] + (1 - b1) * g[name]
            v[name] = b2 * v[name] + (1 - b2) * g[name] * g[name]
            p[name] -= f32(lr / bc1) * m[name] / (np.sqrt(v[name]) / f32(np.sqrt(bc2)) + f32(eps))
        p["W_dec"] /= np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
        return loss

    return step


if sys.argv[1:2] == ["--check"]:
    # Two steps from given values (JSON on stdin), for the test that checks this script and the
    # bench's TopK step against each other: prints the losses and the updated parameters.
    inp = json.load(sys.stdin)
    shape = inp["shape"]
    B, d, F, k = shape["B"], shape["d"], shape["F"], inp["k"]
    x = np.asarray(inp["x"], dtype=f32).reshape(B, d)
    p = {n: np.asarray(inp[n], dtype=f32).reshape((F, d) if n.startswith("W") else (-1,))
         for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    step = make_step(x, p, k, inp["lr"])
    losses = [float(step(t)) for t in (1, 2)]
    print(json.dumps({"losses": losses, **{n: w.ravel().astype(float).tolist() for n, w in p.items()}}))
    sys.exit(0)

B, d, F, k, reps = (int(a) for a in sys.argv[1:6])
rng = np.random.default_rng(0)
x = rng.standard_normal((B, d), dtype=f32)
W_dec = rng.standard_normal((F, d), dtype=f32)
W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
step = make_step(x, {"W_enc": W_dec.copy(), "b_enc": np.zeros(F, f32), "W_dec": W_dec, "b_dec": np.zeros(d, f32)}, k, 1e-4)
step(1)
best = float("inf")
for i in range(reps):
    t0 = time.perf_counter()
    step(i + 2)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"version": np.__version__, "seconds": best, "tokens_per_s": B / best}))
