#!/usr/bin/env python3
"""Writes src/fixtures/steps.json: training steps of the gated SAE and of its p-annealed variant,
computed with torch autograd (float64) the way dictionary_learning's GatedAutoEncoder,
GatedSAETrainer and GatedAnnealTrainer compute them.

Forward (GatedAutoEncoder.encode): x_enc = (x − b_dec) W_enc; π_gate = x_enc + b_gate;
f = 1[π_gate > 0] · ReLU(exp(r_mag) ⊙ x_enc + b_mag); x̂ = f W_dec + b_dec. Loss: ‖x − x̂‖² +
penalty + ‖x − x̂_aux‖², x̂_aux = ReLU(π_gate) W_dec.detach() + b_dec.detach(); penalty
λ‖ReLU(π_gate)‖₁ (gated) or α·L_p(ReLU(π_gate)) with DL's p-annealing (gated-anneal; updates
at steps 0..3, queue of 2, so the four steps reach every branch). Optimizer: ConstrainedAdam,
torch.optim.Adam with betas (0, 0.999), eps 1e-8, the gradient's component along each decoder
row removed before the step and the rows renormalised after. lr and sparsity warm-ups are 0.

dictlearn's names (SAELens layout) ↔ DL's: W_enc [d, F] = encoder.weightᵀ, b_gate = gate_bias,
r_mag, b_mag = mag_bias, W_dec [F, d] = decoder.weightᵀ, b_dec = decoder_bias.

Run: .venv/bin/python packages/arch-gated/scripts/make-step-fixture.py   (torch)
"""
import json
import os

import torch

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(23)
B, d, F = 8, 6, 10
LR, BETAS, STEPS = 1e-2, (0.0, 0.999), 4
CASES = {
    "gated": {"l1Penalty": 0.2},
    "gated-anneal": {"sparsityFunction": "Lp^p", "sparsityPenalty": 0.2, "pStart": 1, "pEnd": 0.4,
                     "annealStart": 0, "annealEnd": 3, "sparsityUpdates": 4, "sparsityQueueLength": 2},
}


def f32(t):
    return t.to(torch.float32).to(torch.float64)


class Anneal:
    """GatedAnnealTrainer's p-annealing state (trainers/gated_anneal.py)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.p, self.next_p, self.count = cfg["pStart"], None, 0
        self.n = cfg["sparsityUpdates"]
        self.update_steps = torch.linspace(cfg["annealStart"], cfg["annealEnd"], self.n, dtype=torch.int64)
        self.p_values = torch.linspace(cfg["pStart"], cfg["pEnd"], self.n, dtype=torch.float32)
        self.coeff = cfg["sparsityPenalty"]
        self.queue = []

    def lp_norm(self, f, p):
        s = f.pow(p).sum(dim=-1)
        return s.mean() if self.cfg["sparsityFunction"] == "Lp^p" else s.pow(1 / p).mean()

    def penalty(self, fs, step):
        lp = self.lp_norm(fs, self.p)
        scaled = lp * self.coeff
        if self.next_p is not None:
            self.queue.append([lp.item(), self.lp_norm(fs, self.next_p).item()])
            self.queue = self.queue[-self.cfg["sparsityQueueLength"]:]
        if step in self.update_steps and step >= self.update_steps[self.count]:
            if self.next_p is not None:
                new = torch.tensor([q[0] for q in self.queue]).mean()
                old = torch.tensor([q[1] for q in self.queue]).mean()
                self.coeff = self.coeff * (new / old).item()
            self.p = self.p_values[self.count].item()
            self.next_p = self.p_values[self.count + 1].item() if self.count < self.n - 1 else self.cfg["pEnd"]
            self.count += 1
        return scaled, {"sparsity_loss": lp.item(), "p": self.p, "sparsity_coeff": self.coeff}


def loss_fn(p, x, step, name, anneal):
    x_enc = (x - p["b_dec"]) @ p["W_enc"]
    pi_gate = x_enc + p["b_gate"]
    f_gate = (pi_gate > 0).to(x.dtype)
    f = f_gate * torch.relu(p["r_mag"].exp() * x_enc + p["b_mag"])
    xhat = f @ p["W_dec"] + p["b_dec"]
    gate = torch.relu(pi_gate)
    xhat_aux = gate @ p["W_dec"].detach() + p["b_dec"].detach()
    mse = (x - xhat).pow(2).sum(-1).mean()
    aux = (x - xhat_aux).pow(2).sum(-1).mean()
    if name == "gated":
        l1 = torch.linalg.norm(gate, ord=1, dim=-1).mean()
        penalty, logs = CASES["gated"]["l1Penalty"] * l1, {"sparsity_loss": l1.item()}
    else:
        penalty, logs = anneal.penalty(gate, step)
    loss = mse + penalty + aux
    # Some features open with a closed magnitude path and the other way round.
    assert ((f_gate > 0) & (f == 0)).any() and ((f_gate == 0) & (p["r_mag"].exp() * x_enc + p["b_mag"] > 0)).any()
    logs.update({
        "mse_loss": mse.item(),
        "aux_loss": aux.item(),
        "l2_loss": (x - xhat).norm(dim=-1).mean().item(),
        "l0": (f != 0).to(x.dtype).sum(-1).mean().item(),
    })
    return loss, logs


def enc(t):
    t = t.detach()
    return {"shape": list(t.shape), "values": t.reshape(-1).tolist()}


result = {
    "generator": "packages/arch-gated/scripts/make-step-fixture.py",
    "sizes": {"batch": B, "activationDim": d, "dictSize": F},
    "hyper": {"lr": LR, "betas": list(BETAS), "eps": 1e-8},
    "cases": {},
}
for name, cfg in CASES.items():
    p0 = {
        "W_enc": f32(torch.randn(d, F, generator=gen) * 0.5),
        "b_gate": f32(torch.randn(F, generator=gen) * 0.1),
        "r_mag": f32(torch.randn(F, generator=gen) * 0.3),
        "b_mag": f32(torch.randn(F, generator=gen) * 0.8),
        "W_dec": f32(torch.randn(F, d, generator=gen) * 0.5),
        "b_dec": f32(torch.randn(d, generator=gen) * 0.1),
    }
    xs = [f32(torch.randn(B, d, generator=gen)) for _ in range(STEPS)]
    params = {k: torch.nn.Parameter(v.clone()) for k, v in p0.items()}
    opt = torch.optim.Adam(params.values(), lr=LR, betas=BETAS, eps=1e-8)
    anneal = Anneal(cfg) if name == "gated-anneal" else None
    steps = []
    for step, x in enumerate(xs):
        opt.zero_grad()
        loss, logs = loss_fn(params, x, step, name, anneal)
        loss.backward()
        grads = {k: v.grad.detach().clone() for k, v in params.items()}
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
    result["cases"][name] = {"config": cfg, "init": {k: enc(v) for k, v in p0.items()},
                             "batches": [enc(x) for x in xs], "steps": steps}

out = os.path.join(os.path.dirname(__file__), "..", "src", "fixtures", "steps.json")
with open(out, "w") as fh:
    json.dump(result, fh)
print("wrote", os.path.normpath(out))
