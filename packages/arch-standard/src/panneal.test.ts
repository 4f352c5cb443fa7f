import { createCpuBackend } from '@dictlearn/backend-cpu';
import { memory, registerBackend, scope, Trainer, tensor, useBackend, valueAndGrad } from '@dictlearn/core';
import { compareValues, describeStepFixture, type StepFixture } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import fixture from './fixtures/panneal-steps.json' with { type: 'json' };
import { factories } from './index.js';
import { lpPenalty, type PAnnealConfig, PAnnealer, pAnneal } from './panneal.js';
import { standard } from './standard.js';

// Four optimisation steps of each L_p variant against torch autograd running dictionary_learning's
// PAnnealTrainer logic (scripts/make-panneal-fixture.py): loss, logs (p and the adapted
// coefficient), every gradient and every parameter after ConstrainedAdam.

const fx = fixture as unknown as StepFixture<Partial<PAnnealConfig>>;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

const GRAD_TOL = { rtol: 1e-4, atol: 1e-6 };
const PARAM_TOL = { rtol: 1e-5, atol: 1e-5 };

describeStepFixture('p-anneal (%s): training steps match torch', fx, (c) => pAnneal(c), {
  grad: GRAD_TOL,
  param: PARAM_TOL,
});

describe('pAnneal plugin', () => {
  it('before annealing starts it is the standard SAE with λ = sparsityPenalty', async () => {
    const sizes = { activationDim: 5, dictSize: 7 };
    const a = pAnneal({ sparsityPenalty: 0.3 });
    const b = standard({ l1Penalty: 0.3 });
    const p = a.init(sizes, { seed: 4 });
    const x = tensor(
      Array.from({ length: 20 }, (_, i) => Math.sin(i * 1.7)),
      [4, 5],
    );
    const vals = await Promise.all(
      [a, b].map(async (arch) => (await arch.loss(p, x, { step: 3, sparsityScale: 0.5 }).loss.data())[0]),
    );
    expect(vals[0]).toBeCloseTo(vals[1], 6);
    expect(a.training).toEqual(b.training);
  });

  it('the L_p gradient is finite and 0 where f = 0, for p < 1 and both functions', async () => {
    const f = tensor([
      [0, 0.5, 2],
      [0, 0, 0],
    ]);
    for (const fn of ['Lp', 'Lp^p'] as const) {
      const { value, grads } = valueAndGrad(() => lpPenalty(f, 0.5, fn), [f]);
      const g = Array.from(await grads.get(f)!.data());
      const s = Math.sqrt(0.5) + Math.sqrt(2);
      expect((await value.data())[0]).toBeCloseTo(fn === 'Lp' ? s ** 2 / 2 : s / 2, 5);
      // d/df of (Σ f^½)² / 2 = s·f^(−½)/2; of Σ f^½ / 2 = f^(−½)/4.
      const want = [0, 0.5 ** -0.5, 2 ** -0.5].map((v) => (fn === 'Lp' ? (s * v) / 2 : v / 4));
      expect(compareValues(g, [...want, 0, 0, 0], { rtol: 1e-5, atol: 0 })).toBeNull();
    }
  });

  it('a resumed step rebuilds p from the schedule; annealEnd −1 needs the run’s step count', async () => {
    const schedule = {
      sparsityFunction: 'Lp' as const,
      sparsityPenalty: 0.1,
      annealStart: 10,
      annealEnd: 20,
      pStart: 1,
      pEnd: 0,
      sparsityUpdates: 3,
      sparsityQueueLength: 10,
    };
    const f = tensor([[0.5, 1]]);
    // Updates at steps 10, 15, 20 to p = 1, 0.5, 0: the loss of step 16 uses p = 0.5, next 0.
    const a = new PAnnealer(schedule);
    const at16 = a.step(f, { step: 16, sparsityScale: 1 });
    expect([at16.before.p, at16.before.nextP, at16.before.count]).toEqual([0.5, 0, 2]);
    expect(a.step(f, { step: 9, sparsityScale: 1 }).before.p).toBe(1);
    const open = new PAnnealer({ ...schedule, annealEnd: -1 });
    expect(open.step(f, { step: 9, sparsityScale: 1 }).after.p).toBe(1);
    expect(() => open.step(f, { step: 10, sparsityScale: 1 })).toThrow(
      "p-anneal: annealEnd is −1 (the run's step count) but the trainer did not pass the step count; set annealEnd",
    );
    const ctx = { step: 16, sparsityScale: 1, totalSteps: 20 };
    expect(new PAnnealer({ ...schedule, annealEnd: -1 }).step(f, ctx).before.p).toBe(0.5);
  });

  it("a Trainer passes the run's step count, so annealEnd = −1 (the default) anneals to the end", async () => {
    const arch = pAnneal({ annealStart: 2, pEnd: 0.5, sparsityUpdates: 3 });
    const trainer = new Trainer({ architecture: arch, dictSize: 12, lr: 1e-3, warmupSteps: 0 }, 6, 8);
    const x = tensor(
      Array.from({ length: 48 }, (_, i) => Math.sin(i * 0.7)),
      [8, 6],
    );
    const ps: number[] = [];
    for (let i = 0; i < 8; i++) ps.push((await trainer.update(x, true)).p);
    // updates at linspace(2, 8, 3) = 2, 5, 8 to p = linspace(1, 0.5, 3) = 1, 0.75, 0.5
    expect(ps[ps.length - 1]).toBeLessThan(1);
    trainer.dispose();
    x.dispose();
  });

  it('the annealing state does not leak tensors over a run (updates, queue, repeated steps)', async () => {
    const arch = pAnneal({
      annealStart: 2,
      annealEnd: 40,
      pEnd: 0.2,
      sparsityUpdates: 12,
      sparsityQueueLength: 3,
    });
    const trainer = new Trainer({ architecture: arch, dictSize: 12, lr: 1e-3, warmupSteps: 0 }, 6, 50);
    const x = tensor(
      Array.from({ length: 48 }, (_, i) => Math.cos(i * 0.9)),
      [8, 6],
    );
    const live: number[] = [];
    for (let s = 0; s < 45; s++) {
      if (s % 3 === 0)
        scope(() => arch.loss(trainer.params(), x, { step: s, sparsityScale: 1 }).loss).dispose();
      const logs = await trainer.update(x, s % 2 === 0);
      if (s % 2 === 0) expect(Number.isFinite(logs.sparsity_coeff)).toBe(true);
      live.push(memory().tensors);
    }
    // After the first adaptation the state holds α and the queue, plus the next α on an update
    // step: the count moves by at most one and does not grow.
    const tail = live.slice(10);
    expect(Math.max(...tail) - Math.min(...tail)).toBeLessThanOrEqual(1);
    trainer.dispose();
    // With annealEnd before the run's end, p reaches pEnd; p = 0 is an error, not a NaN loss.
    const zero = pAnneal({ annealStart: 0, annealEnd: 1, sparsityUpdates: 2 });
    for (const step of [0, 1])
      zero.loss(zero.init({ activationDim: 6, dictSize: 4 }, { seed: 1 }), x, { step, sparsityScale: 1 });
    expect(() =>
      zero.loss(zero.init({ activationDim: 6, dictSize: 4 }, { seed: 1 }), x, { step: 2, sparsityScale: 1 }),
    ).toThrow('p-anneal: step 2: p reached 0; L_p needs p > 0');
  });

  it('configs are validated with the field named; the register entry lists p-anneal', () => {
    expect(() => pAnneal({ sparsityFunction: 'L1' as never })).toThrow(
      "p-anneal: field 'sparsityFunction' must be 'Lp' or 'Lp^p', got \"L1\"",
    );
    expect(() => pAnneal({ sparsityUpdates: 0 })).toThrow(
      "p-anneal: field 'sparsityUpdates' must be an integer ≥ 1",
    );
    expect(() => pAnneal({ annealEnd: -2 })).toThrow("p-anneal: field 'annealEnd'");
    expect(pAnneal().config).toEqual({
      sparsityFunction: 'Lp',
      sparsityPenalty: 0.1,
      annealStart: 15000,
      annealEnd: -1,
      pStart: 1,
      pEnd: 0,
      sparsityUpdates: 10,
      sparsityQueueLength: 10,
      encoderBiasInit: 'zero',
    });
    expect(factories.map((f) => f.name)).toEqual(['standard', 'april-update', 'tied', 'p-anneal']);
  });
});
