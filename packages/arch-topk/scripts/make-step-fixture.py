#!/usr/bin/env python3
"""Writes src/fixtures/steps.json: two training steps of `topk`, `batch-topk` and
`matryoshka-batch-topk`, computed with torch autograd (float64) following dictionary_learning's
TopKTrainer / BatchTopKTrainer / MatryoshkaBatchTopKTrainer line by line, with the differences
dictlearn documents:

- b_dec <- geometric median of the first batch by a fixed 100 Weiszfeld iterations (DL stops
  early at a 1e-5 move), weights 1/max(||x - y||, 1e-12); the whole batch (B < medianSample).
- a feature fired when its summed activation over the batch is > 0 (DL's TopK marks every top-k
  index, even one whose value is 0; no such tie happens here).
- BatchTopK's threshold keeps its value when no kept activation is > 0 (not hit here).

Per architecture: initial parameters, two batches, and after each step the loss, the logs, every
raw gradient (before the parallel-component removal and clipping) and every parameter after the
update: remove the gradient's component along each decoder row, clip the global gradient norm to
1 (torch.nn.utils.clip_grad_norm_), torch Adam (lr 1e-2, betas (0.9, 0.999), eps 1e-8), rows
renormalised. No lr warm-up. Dead features are counted in tokens as DL does (num_tokens_since_fired
+= B, reset on firing, before the aux loss); deadTokens is small so aux-k is active.

Run: .venv/bin/python packages/arch-topk/scripts/make-step-fixture.py   (torch, numpy)
"""
import json
import os

import numpy as np
import torch as t

t.set_default_dtype(t.float64)
rng = np.random.default_rng(11)
B, d, F = 8, 6, 12
LR, B1, B2, EPS = 1e-2, 0.9, 0.999, 1e-8
ALPHA = 1 / 32

CASES = {
    # step 0: no feature dead yet ((0+1)*B < 2B); step 1: silent features are dead.
    "topk": dict(mode="row", k=2, deadTokens=2 * B, auxK=0, theta0=None),
    # every feature silent in a batch is dead at once; threshold set at step 1 (from -1).
    "batch-topk": dict(mode="batch", k=2, deadTokens=B, auxK=2, theta0=-1.0, beta=0.9, start=0),
    # nested groups with unequal weights; threshold EMA from 0.25 at step 1.
    "matryoshka-batch-topk": dict(mode="batch", k=1, deadTokens=B, auxK=0, theta0=0.25, beta=0.9,
                                  start=0, groups=[3, 4, 5], weights=[0.5, 0.3, 0.2]),
}


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def geometric_median(points, iters=100):
    guess = points.mean(dim=0)
    for _ in range(iters):
        w = 1 / t.clamp(t.norm(points - guess, dim=1), min=1e-12)
        w = w / w.sum()
        guess = (w.unsqueeze(1) * points).sum(dim=0)
    return guess


def encode(p, x, c):
    post = t.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
    if c["mode"] == "row":
        vals, idx = post.topk(c["k"], dim=-1)
        f = t.zeros_like(post).scatter(-1, idx, vals)
    else:
        vals, idx = post.flatten().topk(c["k"] * B)
        f = t.zeros(B * F).scatter(0, idx, vals).reshape(B, F)
    return post, f, vals


def aux_loss(p, residual, post, tokens, c):
    dead = tokens >= c["deadTokens"]
    n_dead = int(dead.sum())
    if n_dead == 0:
        return t.tensor(0.0), 0
    k_aux = min(c["auxK"] or d // 2, n_dead)
    latents = t.where(dead[None], post, -t.inf)
    acts, idx = latents.topk(k_aux, sorted=False)
    acts_bf = t.zeros_like(post).scatter(-1, idx, acts)
    rec = acts_bf @ p["W_dec"]  # no bias
    l2 = (residual - rec).pow(2).sum(-1).mean()
    mu = residual.mean(0, keepdim=True)
    denom = (residual - mu).pow(2).sum(-1).mean()
    return (l2 / denom).nan_to_num(0.0), n_dead


def step(p, x, c, state, tnum, tokens, theta):
    params = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    post, f, vals = encode(params, x, c)
    logs = {}
    if "groups" in c:
        xr = t.zeros_like(x) + params["b_dec"]
        terms = []
        off = 0
        for g, w in zip(c["groups"], c["weights"]):
            xr = xr + f[:, off:off + g] @ params["W_dec"][off:off + g]
            terms.append((x - xr).pow(2).sum(-1).mean() * w)
            off += g
        main = t.stack(terms).mean()
        xhat = xr
        logs["prefix_loss"] = main.item()
    else:
        xhat = f @ params["W_dec"] + params["b_dec"]
    mse = (x - xhat).pow(2).sum(-1).mean()
    if "groups" not in c:
        main = mse
    # DL: the counter is updated before the aux loss.
    fired = f.detach().sum(0) > 0
    tokens += B
    tokens[fired] = 0
    aux, n_dead = aux_loss(params, (x - xhat).detach(), post, tokens, c)
    loss = main + ALPHA * aux
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in params.items()}
    logs.update({"mse_loss": mse.item(), "auxk_loss": float(aux.detach()), "dead_features": n_dead,
                 "l2_loss": (x - xhat).detach().norm(dim=-1).mean().item()})
    if theta is not None:
        if tnum > c["start"]:
            kept = f.detach()[f.detach() > 0]
            if kept.numel() > 0:
                m = kept.min().item()
                theta = m if theta < 0 else c["beta"] * theta + (1 - c["beta"]) * m
        logs["threshold"] = theta
    # DL's update: remove the parallel component, clip to 1, Adam, renormalise rows.
    g = dict(grads)
    n = p["W_dec"] / p["W_dec"].norm(dim=1, keepdim=True)
    g["W_dec"] = g["W_dec"] - (g["W_dec"] * n).sum(1, keepdim=True) * n
    total = t.sqrt(sum((v**2).sum() for v in g.values()))
    coef = min(1.0, 1.0 / (total.item() + 1e-6))
    g = {k: v * coef for k, v in g.items()}
    out = {}
    s = tnum + 1
    for k in p:
        m, v = state.setdefault(k, (t.zeros_like(p[k]), t.zeros_like(p[k])))
        m = B1 * m + (1 - B1) * g[k]
        v = B2 * v + (1 - B2) * g[k] ** 2
        state[k] = (m, v)
        bc1, bc2 = 1 - B1**s, 1 - B2**s
        out[k] = p[k] - (LR / bc1) * m / (t.sqrt(v) / np.sqrt(bc2) + EPS)
    out["W_dec"] = out["W_dec"] / out["W_dec"].norm(dim=1, keepdim=True)
    return loss.item(), logs, grads, out, theta, coef


def enc(a):
    a = np.asarray(a.detach() if isinstance(a, t.Tensor) else a, dtype=np.float64)
    return {"shape": list(a.shape), "values": a.ravel().tolist()}


result = {"generator": "packages/arch-topk/scripts/make-step-fixture.py",
          "sizes": {"batch": B, "activationDim": d, "dictSize": F},
          "hyper": {"lr": LR, "betas": [B1, B2], "eps": EPS, "auxkAlpha": ALPHA}, "architectures": {}}
for name, c in CASES.items():
    W = rng.normal(size=(F, d))
    p = {"W_enc": t.tensor(f32(rng.normal(size=(d, F)) * 0.6)),
         "b_enc": t.tensor(f32(rng.normal(size=F) * 0.1)),
         "W_dec": t.tensor(f32(W / np.linalg.norm(W, axis=1, keepdims=True))),
         "b_dec": t.tensor(f32(rng.normal(size=d) * 0.1))}
    offset = rng.normal(size=d)  # a shared mean, away from 0, for the median to find
    xs = [t.tensor(f32(rng.normal(size=(B, d)) + offset)) for _ in range(2)]
    init = {k: enc(v) for k, v in p.items()}
    theta = c["theta0"]
    if theta is not None:
        init["threshold"] = {"shape": [], "values": [theta]}
    median = geometric_median(xs[0])
    p["b_dec"] = median.clone()
    config = {"k": c["k"], "auxK": c["auxK"], "deadTokens": c["deadTokens"]}
    if theta is not None:
        config.update(thresholdBeta=c["beta"], thresholdStartStep=c["start"])
    if "groups" in c:
        config.update(groups=c["groups"], weights=c["weights"])
    entry = {"config": config, "init": init, "batches": [enc(x) for x in xs], "median": enc(median),
             "steps": []}
    state, tokens = {}, t.zeros(F, dtype=t.long)
    for tnum, x in enumerate(xs):
        loss, logs, grads, p, theta, coef = step(p, x, c, state, tnum, tokens, theta)
        params = {k: enc(v) for k, v in p.items()}
        if theta is not None:
            grads["threshold"] = t.zeros(())
            params["threshold"] = {"shape": [], "values": [theta]}
        entry["steps"].append({"loss": loss, "logs": logs, "clipCoefficient": coef,
                               "grads": {k: enc(v) for k, v in grads.items()}, "params": params})
        print(name, "step", tnum, "loss", round(loss, 6), "dead", logs["dead_features"], "clip", round(coef, 4),
              "theta", theta)
    result["architectures"][name] = entry

out = os.path.join(os.path.dirname(__file__), "..", "src", "fixtures", "steps.json")
with open(out, "w") as fh:
    json.dump(result, fh)
print("wrote", os.path.normpath(out))
