#!/usr/bin/env python3
"""Writes src/fixtures/steps.json: two training steps of the JumpReLU SAE with each penalty,
computed with torch autograd (float64) from the REFERENCE definitions, written the way
dictionary_learning's JumpReluTrainer writes them (autograd.Function straight-through estimators,
torch.optim.Adam, its decoder projection and renormalisation).

Per penalty: the plugin config, initial parameters, two batches, and after each step the loss,
the logs, every gradient (d loss / d param, before any projection) and every updated parameter.

Differences from dictionary_learning, on purpose (see the package README):
  - the threshold is stored as log θ (REFERENCE; DL stores θ), so d/d log θ = θ · d/dθ;
  - the step function of the L0 term is applied to the pre-activations (REFERENCE), where DL
    applies it to f = JumpReLU(pre), which leaves out the window's lower half.
Optimizer as DL: Adam β = (0, 0.999), eps 1e-8; before the step the gradient's component along
each decoder row is removed, after it the rows are renormalised; the global gradient norm is
clipped to 1. DL projects before clipping and dictlearn's trainer clips before projecting; the
batches here keep the gradient norm below 1 under both orders (asserted), so the fixture pins
the loss and gradients, not that ordering. lr and sparsity warm-ups are 0 (full lr, s = 1).

Run: .venv/bin/python packages/arch-jumprelu/scripts/make-step-fixture.py   (torch)
"""
import json
import math
import os

import torch

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(11)
B, d, F = 8, 6, 10
LR, BETAS, EPS = 1e-2, (0.0, 0.999), 1e-8
BANDWIDTH = 0.1
CASES = {
    "l0-target": {"penalty": "l0-target", "sparsityPenalty": 0.05, "targetL0": 3, "bandwidth": BANDWIDTH},
    "l0": {"penalty": "l0", "sparsityPenalty": 0.01, "targetL0": 20, "bandwidth": BANDWIDTH},
}


def f32(t):
    return t.to(torch.float32).to(torch.float64)


def rectangle(u):
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, bandwidth):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        x_grad = (x > threshold).to(x.dtype) * g
        threshold_grad = (-(threshold / eps) * rectangle((x - threshold) / eps) * g).sum(0)
        return x_grad, threshold_grad, None


class StepFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, bandwidth):
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        threshold_grad = (-(1.0 / eps) * rectangle((x - threshold) / eps) * g).sum(0)
        return torch.zeros_like(x), threshold_grad, None


def loss_fn(p, x, cfg):
    theta = p["log_threshold"].exp()
    pre = x @ p["W_enc"] + p["b_enc"]
    eps = cfg["bandwidth"]
    u = ((pre - theta) / eps).detach()
    # Keep every value clear of the kernel's edges and of θ, so float32 agrees with float64.
    margin = min((u - 0.5).abs().min().item(), (u + 0.5).abs().min().item(), u.abs().min().item())
    assert margin > 1e-3, f"a pre-activation sits on a kernel edge (margin {margin})"
    f = JumpReLUFunction.apply(pre, theta, eps)
    xhat = f @ p["W_dec"] + p["b_dec"]
    mse = (x - xhat).pow(2).sum(-1).mean()
    l0 = StepFunction.apply(pre, theta, eps).sum(-1).mean()
    if cfg["penalty"] == "l0":
        sparsity = l0
    else:
        sparsity = (l0 / cfg["targetL0"] - 1).pow(2)
    loss = mse + cfg["sparsityPenalty"] * sparsity
    logs = {
        "mse_loss": mse.item(),
        "sparsity_loss": sparsity.item(),
        "l2_loss": (x - xhat).norm(dim=-1).mean().item(),
        "l0": (f != 0).to(x.dtype).sum(-1).mean().item(),
    }
    in_window = int(rectangle(u).sum().item())
    return loss, logs, in_window


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "values": t.reshape(-1).tolist()}


result = {
    "generator": "packages/arch-jumprelu/scripts/make-step-fixture.py",
    "sizes": {"batch": B, "activationDim": d, "dictSize": F},
    "hyper": {"lr": LR, "betas": list(BETAS), "eps": EPS},
    "cases": {},
}
for name, cfg in CASES.items():
    w = torch.randn(F, d, generator=gen)
    p = {
        "W_enc": f32(torch.randn(d, F, generator=gen) * 0.8),
        "b_enc": f32(torch.randn(F, generator=gen) * 0.015),
        "W_dec": f32(w / w.norm(dim=1, keepdim=True) * (0.8 + 0.4 * torch.rand(F, 1, generator=gen))),
        "b_dec": f32(torch.randn(d, generator=gen) * 0.015),
        "log_threshold": f32(torch.log(0.03 + 0.03 * torch.rand(F, generator=gen))),
    }
    init = {k: enc(v) for k, v in p.items()}
    xs = [f32(torch.randn(B, d, generator=gen) * 0.08) for _ in range(2)]
    params = {k: torch.nn.Parameter(v.clone()) for k, v in p.items()}
    opt = torch.optim.Adam(params.values(), lr=LR, betas=BETAS, eps=EPS)
    steps = []
    for x in xs:
        opt.zero_grad()
        loss, logs, in_window = loss_fn(params, x, cfg)
        assert in_window >= 5, f"{name}: only {in_window} pre-activations inside the kernel window"
        loss.backward()
        grads = {k: v.grad.detach().clone() for k, v in params.items()}
        assert grads["log_threshold"].abs().max() > 0, "the threshold gradient must be exercised"
        # dictionary_learning: remove the gradient's component along each decoder row...
        with torch.no_grad():
            W = params["W_dec"]
            n = W / W.norm(dim=1, keepdim=True)
            params["W_dec"].grad -= (params["W_dec"].grad * n).sum(1, keepdim=True) * n
        projected = math.sqrt(sum(v.grad.pow(2).sum().item() for v in params.values()))
        raw = math.sqrt(sum(g.pow(2).sum().item() for g in grads.values()))
        print(name, {k: round(g.norm().item(), 3) for k, g in grads.items()})
        assert max(projected, raw) < 1, f"{name}: gradient norm {max(projected, raw)} would be clipped"
        # ...then clip to 1 (a no-op here, asserted above), step, renormalise the rows.
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=1, keepdim=True)
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
