#!/usr/bin/env python3
"""Writes src/fixtures/steps.json: two training steps of the LISTA SAE per variant, computed with
torch autograd (float64) from the definitions (REFERENCE "LISTA / FISTA-momentum encoders"):

    z0 = 0;  z_{k+1} = h(y_k + (x - b_dec - y_k W_dec) W_e[k], theta_k),  theta_k = exp(log_threshold[k])
    y_k = z_k (ista)  or  z_k + beta_{k-1} (z_k - z_{k-1}) (fista; t0 = 1, t' = (1 + sqrt(1 + 4 t^2))/2,
                                                               beta = (t - 1)/t')
    h(u, th) = relu(u - th) (non-negative)  or  sign(u) relu(|u| - th)
    tied: W_e[k] = exp(log_step[k]) W_dec^T
    x_hat = z_n W_dec + b_dec;  loss = mean_b |x - x_hat|^2 + l1 * mean_b |z_n|_1

Optimizer: ConstrainedAdam (torch.optim.Adam, betas (0.9, 0.999), eps 1e-8; the gradient's
component along each decoder row removed before the step, rows renormalised after). lr and
sparsity warm-ups are 0 (full lr, s = 1).

Per case: the plugin config, initial parameters, two batches, and after each step the loss, the
logs, every gradient (before the projection) and every updated parameter.

Run: .venv/bin/python packages/arch-lista/scripts/make-step-fixture.py   (torch)
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(23)
B, d, F = 8, 6, 10
LR, BETAS, EPS = 1e-2, (0.9, 0.999), 1e-8
CASES = {
    "ista-untied": {"iterations": 3, "variant": "ista", "tied": False, "nonNegative": True, "l1Penalty": 0.1},
    "fista-signed": {"iterations": 3, "variant": "fista", "tied": False, "nonNegative": False, "l1Penalty": 0.05},
    "fista-tied": {"iterations": 4, "variant": "fista", "tied": True, "nonNegative": True, "l1Penalty": 0.2},
}


def f32(t):
    return t.to(torch.float32).to(torch.float64)


def momentum(n):
    out, t = [], 1.0
    for _ in range(n):
        nxt = (1 + math.sqrt(1 + 4 * t * t)) / 2
        out.append((t - 1) / nxt)
        t = nxt
    return out


def encode(p, x, cfg, margins):
    n = cfg["iterations"]
    beta = momentum(n) if cfg["variant"] == "fista" else [0.0] * n
    xc = x - p["b_dec"]
    z_prev = torch.zeros(x.shape[0], F)
    y = z_prev
    for k in range(n):
        theta = p["log_threshold"][k].exp()
        we = p["log_step"][k].exp() * p["W_dec"].T if cfg["tied"] else p["W_enc"][k]
        u = y + (xc - y @ p["W_dec"]) @ we
        # float32 must take the same branch of every threshold: keep |u| - theta clear of 0.
        margins.append(((u.abs() - theta).abs().min().item()))
        if cfg["nonNegative"]:
            z = torch.relu(u - theta)
        else:
            z = torch.sign(u) * torch.relu(u.abs() - theta)
        y = z + beta[k] * (z - z_prev)
        z_prev = z
    return z_prev


def loss_fn(p, x, cfg):
    margins = []
    z = encode(p, x, cfg, margins)
    assert min(margins) > 1e-4, f"a pre-activation sits on a threshold (margin {min(margins)})"
    xhat = z @ p["W_dec"] + p["b_dec"]
    mse = (x - xhat).pow(2).sum(-1).mean()
    l1 = z.abs().sum(-1).mean()
    loss = mse + cfg["l1Penalty"] * l1
    logs = {
        "mse_loss": mse.item(),
        "sparsity_loss": l1.item(),
        "l2_loss": (x - xhat).norm(dim=-1).mean().item(),
        "l0": (z != 0).to(x.dtype).sum(-1).mean().item(),
    }
    return loss, logs


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "values": t.reshape(-1).tolist()}


result = {
    "generator": "packages/arch-lista/scripts/make-step-fixture.py",
    "sizes": {"batch": B, "activationDim": d, "dictSize": F},
    "hyper": {"lr": LR, "betas": list(BETAS), "eps": EPS},
    "cases": {},
}
for name, cfg in CASES.items():
    n = cfg["iterations"]
    w = torch.randn(F, d, generator=gen)
    p = {
        "W_dec": f32(w / w.norm(dim=1, keepdim=True) * (0.8 + 0.4 * torch.rand(F, 1, generator=gen))),
        "b_dec": f32(torch.randn(d, generator=gen) * 0.05),
        "log_threshold": f32(torch.log(0.05 + 0.1 * torch.rand(n, F, generator=gen))),
    }
    if cfg["tied"]:
        p["log_step"] = f32(torch.log(0.2 + 0.2 * torch.rand(n, generator=gen)))
    else:
        p["W_enc"] = f32(torch.randn(n, d, F, generator=gen) * 0.3)
    init = {k: enc(v) for k, v in p.items()}
    xs = [f32(torch.randn(B, d, generator=gen) * 0.6) for _ in range(2)]
    params = {k: torch.nn.Parameter(v.clone()) for k, v in p.items()}
    opt = torch.optim.Adam(params.values(), lr=LR, betas=BETAS, eps=EPS)
    steps = []
    for x in xs:
        opt.zero_grad()
        loss, logs = loss_fn(params, x, cfg)
        assert 0 < logs["l0"] < F, f"{name}: codes all zero or all active (L0 {logs['l0']})"
        loss.backward()
        grads = {k: v.grad.detach().clone() for k, v in params.items()}
        with torch.no_grad():
            W = params["W_dec"]
            u = W / W.norm(dim=1, keepdim=True)
            params["W_dec"].grad -= (params["W_dec"].grad * u).sum(1, keepdim=True) * u
        opt.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=1, keepdim=True)
        print(name, "loss", round(loss.item(), 5), "l0", logs["l0"])
        steps.append({
            "loss": loss.item(),
            "logs": logs,
            "grads": {k: enc(v) for k, v in grads.items()},
            "params": {k: enc(v) for k, v in params.items()},
        })
    result["cases"][name] = {"config": cfg, "init": init, "batches": [enc(x) for x in xs], "steps": steps}

out = os.path.join(os.path.dirname(__file__), "..", "src", "fixtures", "steps.json")
with open(out, "w") as fh:
    json.dump(result, fh)
print("wrote", os.path.normpath(out))
