"""One TopK SAE training step in numpy (float32), written the dense way: the reference the bench
compares dictlearn's TopK trainer step with (the `Trainer` with arch-topk's `topk({ k })` plugin).

The same model and step as that trainer: f = TopK_k(ReLU((x − b_dec) W_enc + b_enc)) per row
(argpartition, the dense [B, F] code), x̂ = f W_dec + b_dec, loss = mean_b ‖x − x̂‖² (+ α·aux-k,
which is 0 while no feature is dead), W_enc [d, F] and W_dec [F, d] (the plugin's layouts);
hand-written backward through the dense products; then the trainer's update: the decoder
gradient's parallel component removed, the global gradient norm clipped to 1, Adam with bias
correction, decoder rows renormalised. The cheap bookkeeping of the trainer is here too, so the
comparison is like for like: steps since each feature fired (from the kept indices) and the aux-k
loss's dead-feature test. b_dec starts, on the first step, at the geometric median of the batch
(Weiszfeld, 100 iterations from the mean), as the plugin's init does for batches of at most 4096
rows (larger batches: the plugin samples 4096 rows, this script uses them all; the first step
is not timed).
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
CLIP = 1.0
DEAD_TOKENS = 10_000_000


def geometric_median(points, iterations=100):
    """Weiszfeld's iteration from the mean, weights 1 / max(‖xᵢ − y‖, 1e-12) (the plugin's)."""
    guess = points.mean(0)
    for _ in range(iterations):
        w = 1 / np.maximum(np.linalg.norm(points - guess, axis=1, keepdims=True), f32(1e-12))
        guess = (points * w).sum(0) / w.sum()
    return guess.astype(f32)


def make_step(x, p, k, lr):
    """Returns step(t) for a TopK SAE on x with parameters p (updated in place) and Adam moments."""
    B, F = x.shape[0], p["W_enc"].shape[1]
    m = {n: np.zeros_like(w) for n, w in p.items()}
    v = {n: np.zeros_like(w) for n, w in p.items()}
    since_fired = np.zeros(F, np.int32)
    rows = np.arange(B)[:, None]

    def step(t):
        if t == 1:
            p["b_dec"][:] = geometric_median(x)
        xc = x - p["b_dec"]
        pre = xc @ p["W_enc"] + p["b_enc"]
        post = np.maximum(pre, 0)
        idx = np.argpartition(post, F - k, axis=1)[:, F - k:]
        f = np.zeros_like(post)
        f[rows, idx] = post[rows, idx]
        xhat = f @ p["W_dec"] + p["b_dec"]
        r = xhat - x
        loss = np.sum(r * r) / B
        # aux-k: features dead after this step (none in a short run) would reconstruct r
        fired = np.zeros(F, bool)
        fired[idx[f[rows, idx] > 0]] = True
        dead = ~fired & ((since_fired + 1) * B >= DEAD_TOKENS)
        assert not dead.any(), "the bench's steps never reach dead features"
        dxhat = (2 / B) * r
        g = {"W_dec": f.T @ dxhat}
        df = dxhat @ p["W_dec"].T
        df *= f > 0
        g["b_enc"] = df.sum(0)
        g["W_enc"] = xc.T @ df
        g["b_dec"] = dxhat.sum(0) - p["W_enc"] @ g["b_enc"]
        n = p["W_dec"] / np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
        g["W_dec"] -= np.sum(g["W_dec"] * n, axis=1, keepdims=True) * n
        norm = np.sqrt(sum(float(np.dot(gi.ravel(), gi.ravel())) for gi in g.values()))  # float32 dots, as torch
        scale = f32(min(CLIP / (norm + 1e-6), 1.0))
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        for name in p:
            gi = g[name] * scale
            m[name] = b1 * m[name] + (1 - b1) * gi
            v[name] = b2 * v[name] + (1 - b2) * gi * gi
            p[name] -= f32(lr / bc1) * m[name] / (np.sqrt(v[name]) / f32(np.sqrt(bc2)) + f32(eps))
        p["W_dec"] /= np.linalg.norm(p["W_dec"], axis=1, keepdims=True)
        since_fired[:] = np.where(fired, 0, since_fired + 1)
        return loss

    return step


if sys.argv[1:2] == ["--check"]:
    # Two steps from given values (JSON on stdin), for the test that checks this script and the
    # bench's TopK trainer step against each other: prints the losses and the updated parameters.
    inp = json.load(sys.stdin)
    shape = inp["shape"]
    B, d, F, k = shape["B"], shape["d"], shape["F"], inp["k"]
    x = np.asarray(inp["x"], dtype=f32).reshape(B, d)
    dims = {"W_enc": (d, F), "W_dec": (F, d), "b_enc": (F,), "b_dec": (d,)}
    p = {n: np.asarray(inp[n], dtype=f32).reshape(s) for n, s in dims.items()}
    step = make_step(x, p, k, inp["lr"])
    losses = [float(step(t)) for t in (1, 2)]
    print(json.dumps({"losses": losses, **{n: w.ravel().astype(float).tolist() for n, w in p.items()}}))
    sys.exit(0)

B, d, F, k, reps = (int(a) for a in sys.argv[1:6])
rng = np.random.default_rng(0)
x = rng.standard_normal((B, d), dtype=f32)
W_dec = rng.standard_normal((F, d), dtype=f32)
W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
params = {"W_enc": np.ascontiguousarray(W_dec.T), "b_enc": np.zeros(F, f32), "W_dec": W_dec, "b_dec": np.zeros(d, f32)}
step = make_step(x, params, k, 1e-4)
step(1)
best = float("inf")
for i in range(reps):
    t0 = time.perf_counter()
    step(i + 2)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"version": np.__version__, "seconds": best, "tokens_per_s": B / best}))
