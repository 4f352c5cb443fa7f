#!/usr/bin/env python3
"""Writes src/fixtures/panneal-steps.json: four training steps of the p-annealing standard SAE,
computed with torch autograd (float64) the way dictionary_learning's PAnnealTrainer does them.

Its loss and bookkeeping are reproduced line by line: the L_p (or L_p^p) penalty of the features
at the current p times the current α; after the loss, the queue of (L_p, L_next) pairs, and at
each update step the adaptation α ← α · mean(L_p) / mean(L_next) and the next p. The schedule is
short (updates at steps 0, 1, 2, 3; queue of 2), so four steps cover every branch: no queue yet,
the first update (no adaptation), adaptations, a loss at p < 1, and the queue dropping its oldest
pair. Optimizer: ConstrainedAdam (torch.optim.Adam, betas (0.9, 0.999), eps 1e-8; the gradient's
component along each decoder row removed before the step, rows renormalised after). lr and
sparsity warm-ups are 0 (full lr, s = 1).

Per case: the plugin config, initial parameters, the batches, and after each step the loss, the
logs (p and sparsity_coeff as DL logs them, after the step's update), every gradient and every
updated parameter.

Run: .venv/bin/python packages/arch-standard/scripts/make-panneal-fixture.py   (torch)
"""
import json
import os

import torch

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(5)
B, d, F = 8, 6, 10
LR, STEPS = 1e-2, 4
SCHEDULE = {"annealStart": 0, "annealEnd": 3, "sparsityUpdates": 4, "sparsityQueueLength": 2}
CASES = {
    "Lp": {"sparsityFunction": "Lp", "sparsityPenalty": 0.2, "pStart": 1, "pEnd": 0.4, **SCHEDULE},
    "Lp^p": {"sparsityFunction": "Lp^p", "sparsityPenalty": 0.1, "pStart": 0.9, "pEnd": 0.3, **SCHEDULE},
}


def f32(t):
    return t.to(torch.float32).to(torch.float64)


class PAnneal:
    """dictionary_learning's PAnnealTrainer state and loss (trainers/p_anneal.py)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.p = cfg["pStart"]
        self.next_p = None
        n = cfg["sparsityUpdates"]
        self.n = n
        self.update_steps = torch.linspace(cfg["annealStart"], cfg["annealEnd"], n, dtype=torch.int64)
        self.p_values = torch.linspace(cfg["pStart"], cfg["pEnd"], n, dtype=torch.float32)
        self.count = 0
        self.coeff = cfg["sparsityPenalty"]
        self.queue = []

    def lp_norm(self, f, p):
        s = f.pow(p).sum(dim=-1)
        return s.mean() if self.cfg["sparsityFunction"] == "Lp^p" else s.pow(1 / p).mean()

    def loss(self, p, x, step):
        f = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
        xhat = f @ p["W_dec"] + p["b_dec"]
        mse = (x - xhat).pow(2).sum(-1).mean()
        lp = self.lp_norm(f, self.p)
        loss = mse + lp * self.coeff
        if self.next_p is not None:
            self.queue.append([lp.item(), self.lp_norm(f, self.next_p).item()])
            self.queue = self.queue[-self.cfg["sparsityQueueLength"]:]
        if step in self.update_steps and step >= self.update_steps[self.count]:
            if self.next_p is not None:
                new = torch.tensor([q[0] for q in self.queue]).mean()
                old = torch.tensor([q[1] for q in self.queue]).mean()
                self.coeff = self.coeff * (new / old).item()
            self.p = self.p_values[self.count].item()
            self.next_p = self.p_values[self.count + 1].item() if self.count < self.n - 1 else self.cfg["pEnd"]
            self.count += 1
        logs = {
            "mse_loss": mse.item(),
            "sparsity_loss": lp.item(),
            "p": self.p,
            "sparsity_coeff": self.coeff,
            "l2_loss": (x - xhat).norm(dim=-1).mean().item(),
            "l0": (f != 0).to(x.dtype).sum(-1).mean().item(),
        }
        return loss, logs, f


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "values": t.reshape(-1).tolist()}


result = {
    "generator": "packages/arch-standard/scripts/make-panneal-fixture.py",
    "sizes": {"batch": B, "activationDim": d, "dictSize": F},
    "hyper": {"lr": LR, "betas": [0.9, 0.999], "eps": 1e-8},
    "cases": {},
}
for name, cfg in CASES.items():
    p0 = {
        "W_enc": f32(torch.randn(d, F, generator=gen) * 0.5),
        "b_enc": f32(torch.randn(F, generator=gen) * 0.1),
        "W_dec": f32(torch.randn(F, d, generator=gen) * 0.5),
        "b_dec": f32(torch.randn(d, generator=gen) * 0.1),
    }
    xs = [f32(torch.randn(B, d, generator=gen)) for _ in range(STEPS)]
    params = {k: torch.nn.Parameter(v.clone()) for k, v in p0.items()}
    opt = torch.optim.Adam(params.values(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    trainer = PAnneal(cfg)
    steps = []
    for step, x in enumerate(xs):
        opt.zero_grad()
        loss, logs, f = trainer.loss(params, x, step)
        assert (f == 0).any() and (f > 0).any()
        loss.backward()
        grads = {k: v.grad.detach().clone() for k, v in params.items()}
        assert all(torch.isfinite(g).all() for g in grads.values())
        with torch.no_grad():  # ConstrainedAdam
            W = params["W_dec"]
            n = W / W.norm(dim=1, keepdim=True)
            W.grad -= (W.grad * n).sum(1, keepdim=True) * n
        opt.step()
        with torch.no_grad():
            params["W_dec"] /= params["W_dec"].norm(dim=1, keepdim=True)
        steps.append({
            "loss": loss.item(),
            "logs": logs,
            "grads": {k: enc(v) for k, v in grads.items()},
            "params": {k: enc(v) for k, v in params.items()},
        })
    print(name, [(s["logs"]["p"], round(s["logs"]["sparsity_coeff"], 5)) for s in steps])
    result["cases"][name] = {"config": cfg, "init": {k: enc(v) for k, v in p0.items()},
                             "batches": [enc(x) for x in xs], "steps": steps}

out = os.path.join(os.path.dirname(__file__), "..", "src", "fixtures", "panneal-steps.json")
with open(out, "w") as fh:
    json.dump(result, fh)
print("wrote", os.path.normpath(out))
