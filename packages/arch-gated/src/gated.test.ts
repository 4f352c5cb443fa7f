import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  createArchitecture,
  Dictionary,
  registerArchitecture,
  registerBackend,
  scope,
  sub,
  type Tensor,
  type TrainSAEOptions,
  tensor,
  trainSAE,
  useBackend,
  valueAndGrad,
} from '@dictlearn/core';
import { compareValues, describeStepFixture, type StepFixture } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import fixture from './fixtures/steps.json' with { type: 'json' };
import { factories, gated, gatedAnneal } from './gated.js';

// Four optimisation steps of each plugin against torch autograd running dictionary_learning's
// gated trainers (scripts/make-step-fixture.py): loss, logs, every gradient (the auxiliary
// reconstruction's stop-gradients included) and every parameter after ConstrainedAdam.

const fx = fixture as unknown as StepFixture<Record<string, unknown>>;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

// float32 against a float64 reference on O(1) values; one Adam step moves a parameter by
// ≤ lr = 1e-2, so 1e-5 absolute is tight.
const GRAD_TOL = { rtol: 1e-4, atol: 1e-6 };
const PARAM_TOL = { rtol: 1e-5, atol: 1e-5 };

describeStepFixture(
  '%s: training steps match torch',
  fx,
  (c, name) => (name === 'gated' ? gated(c) : gatedAnneal(c)),
  { grad: GRAD_TOL, param: PARAM_TOL },
);

describe('gated plugins', () => {
  it('init follows dictionary_learning: unit decoder rows, W_enc = W_decᵀ, biases and r_mag 0', async () => {
    const p = scope(() => gated().init({ activationDim: 5, dictSize: 7 }, { seed: 3 }));
    const wDec = (await p.W_dec.array()) as number[][];
    for (const row of wDec) expect(Math.hypot(...row)).toBeCloseTo(1, 6);
    const wEnc = (await p.W_enc.array()) as number[][];
    expect(wEnc[2][4]).toBe(wDec[4][2]);
    for (const k of ['b_gate', 'r_mag', 'b_mag', 'b_dec']) {
      expect(Array.from(await p[k].data()).every((v) => v === 0)).toBe(true);
    }
    const again = gatedAnneal().init({ activationDim: 5, dictSize: 7 }, { seed: 3 });
    expect(Array.from(await again.W_dec.data())).toEqual(wDec.flat());
  });

  it('training defaults are dictionary_learning’s: ConstrainedAdam, β (0, 0.999), lr 5e-5 / 3e-4', () => {
    const want = { betas: [0, 0.999], unitNormRows: ['W_dec'], warmupSteps: 1000, sparsityWarmupSteps: 2000 };
    expect(gated().training).toMatchObject({ ...want, lr: 5e-5 });
    expect(gated().training.clipGradNorm).toBeUndefined();
    expect(gatedAnneal().training).toMatchObject({ ...want, lr: 3e-4 });
    expect(gated().config).toEqual({ l1Penalty: 0.1 });
    expect(gatedAnneal().config).toMatchObject({
      sparsityFunction: 'Lp^p',
      sparsityPenalty: 0.1,
      annealStart: 15000,
    });
  });

  it('the auxiliary reconstruction trains the gate path only: no gradient to W_dec or the magnitude path', async () => {
    const arch = gated({ l1Penalty: 0 });
    const sizes = { activationDim: 4, dictSize: 6 };
    const p = arch.init(sizes, { seed: 5 });
    const x = tensor([
      [1, -2, 0.5, 3],
      [0.2, 0.1, -1, 2],
    ]);
    const names = Object.keys(p);
    const { grads } = valueAndGrad(
      () => {
        const out = arch.loss(p, x, { step: 0, sparsityScale: 1 });
        return sub(out.loss, out.logs.mse_loss); // the auxiliary term alone (λ = 0)
      },
      names.map((k) => p[k]),
    );
    const g = Object.fromEntries(names.map((k) => [k, Array.from(grads.get(p[k])!.dataSync())]));
    for (const k of ['W_dec', 'r_mag', 'b_mag']) expect(g[k].every((v) => v === 0)).toBe(true);
    // b_dec still learns through the encoder's input x − b_dec (its decoder use is stopped).
    for (const k of ['W_enc', 'b_gate', 'b_dec']) expect(g[k].some((v) => v !== 0)).toBe(true);
  });

  it('folding the normalisation scale makes the raw-space model s times the train-space one', async () => {
    const arch = gated();
    const s = 2.5;
    const p = arch.init({ activationDim: 4, dictSize: 6 }, { seed: 1 });
    p.b_gate = tensor([0.1, -0.2, 0.05, 0.3, 0, -0.1]);
    p.b_mag = tensor([0.2, -0.1, 0.3, -0.3, 0.1, 0]);
    p.r_mag = tensor([0.1, 0.2, -0.3, 0, 0.5, -0.2]);
    p.b_dec = tensor([0.2, 0.1, -0.3, 0]);
    const raw = [
      [1, -2, 0.5, 3],
      [0.2, 0.1, -1, 2],
      [-0.4, 0.8, 0.3, -0.2],
    ];
    const x = tensor(raw);
    const xs = tensor(raw.map((r) => r.map((v) => v / s)));
    const folded = { ...p, ...arch.foldScale(p, s) };
    const trainFeatures = Array.from(await arch.encode(p, xs).data());
    expect(trainFeatures.filter((v) => v > 0).length).toBeGreaterThan(2);
    const tol = { rtol: 1e-5, atol: 1e-6 };
    expect(
      compareValues(
        await arch.encode(folded, x).data(),
        trainFeatures.map((v) => v * s),
        tol,
      ),
    ).toBeNull();
    const trainRecon = await arch.decode(p, arch.encode(p, xs)).data();
    const rawRecon = await arch.decode(folded, arch.encode(folded, x)).data();
    expect(
      compareValues(
        rawRecon,
        Array.from(trainRecon, (v) => v * s),
        tol,
      ),
    ).toBeNull();
    const back = { ...folded, ...arch.unfoldScale(folded, s) };
    expect(compareValues(await back.b_mag.data(), await p.b_mag.data(), tol)).toBeNull();
  });

  it('saves and loads through the registry', async () => {
    for (const f of factories) registerArchitecture(f);
    for (const [name, config] of [
      ['gated', { l1Penalty: 0.3 }],
      ['gated-anneal', { sparsityFunction: 'Lp', annealStart: 5 }],
    ] as const) {
      const arch = createArchitecture(name, config);
      expect(arch.config).toMatchObject(config);
      const sizes = { activationDim: 4, dictSize: 6 };
      const dict = Dictionary.fromTraining(arch, arch.init(sizes, { seed: 2 }), sizes, 1.7);
      const dir = await mkdtemp(join(tmpdir(), 'gated-'));
      try {
        await dict.save(dir);
        const loaded = await Dictionary.load(dir);
        expect(loaded.arch.name).toBe(name);
        expect(loaded.arch.config).toEqual(arch.config);
        const x = tensor([[1, -2, 0.5, 3]]);
        expect(
          compareValues(await loaded.encode(x).data(), await dict.encode(x).data(), { rtol: 0, atol: 0 }),
        ).toBeNull();
        loaded.dispose();
      } finally {
        dict.dispose();
        await rm(dir, { recursive: true, force: true });
      }
    }
  });

  it('configs are validated with the field named', () => {
    expect(() => gated({ l1Penalty: -1 })).toThrow("gated: field 'l1Penalty' must be ≥ 0, got -1");
    expect(() => gated({ lambda: 1 } as never)).toThrow("gated: unknown field 'lambda' (known: l1Penalty)");
    expect(() => gatedAnneal({ pStart: 0 })).toThrow("gated-anneal: field 'pStart' must be > 0, got 0");
  });
});

describe('gated-anneal resume', () => {
  // The oracle is the uninterrupted run: a run killed after its checkpoint and resumed (a fresh
  // plugin, as `dictlearn train --resume` builds) must end bit for bit where it ends (CPU backend).
  const STEPS = 16;
  async function* batches(failAt?: number): AsyncGenerator<Tensor> {
    for (let i = 0; i < STEPS; i++) {
      if (i === failAt) throw new Error('simulated crash');
      yield tensor(
        Array.from({ length: 48 }, (_, j) => Math.sin(j * 0.7 + i * 1.3) + 0.3),
        [8, 6],
      );
    }
  }
  // Updates at steps 2, 5, 9, 12 (annealEnd −1 = the 16 steps): before step 9, α was adapted at
  // step 5 and the 3-row queue is full; step 9 adapts α from it.
  const options = (outDir: string, extra: Partial<TrainSAEOptions> = {}): TrainSAEOptions => ({
    data: batches(),
    trainers: [
      {
        architecture: gatedAnneal({ annealStart: 2, pEnd: 0.2, sparsityUpdates: 5, sparsityQueueLength: 3 }),
        dictSize: 12,
        name: 'ga',
        lr: 1e-2,
        warmupSteps: 0,
        sparsityWarmupSteps: 3,
        seed: 3,
      },
    ],
    steps: STEPS,
    outDir,
    logEvery: 1,
    saveSteps: [9],
    dataSpec: { kind: 'test-batches' },
    onNotice: () => {},
    ...extra,
  });
  const outcome = async (dir: string) => {
    const d = await Dictionary.load(join(dir, 'ga'));
    const params: Record<string, number[]> = {};
    for (const [k, t] of Object.entries(d.params)) params[k] = Array.from(await t.data());
    d.dispose();
    const log = (await readFile(join(dir, 'log.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => {
        const { elapsed: _e, ...rest } = JSON.parse(l);
        return rest;
      });
    return { params, log };
  };

  it('a run killed after a checkpoint and resumed ends bit for bit as the uninterrupted one', async () => {
    for (const f of factories) registerArchitecture(f);
    const warn = vi.spyOn(console, 'warn');
    const [straight, killed] = await Promise.all([
      mkdtemp(join(tmpdir(), 'ga-')),
      mkdtemp(join(tmpdir(), 'ga-')),
    ]);
    try {
      for (const d of (await trainSAE(options(straight))).dictionaries) d.dispose();
      await expect(trainSAE(options(killed, { data: batches(12) }))).rejects.toThrow('simulated crash');
      const r = await trainSAE(options(killed, { resume: true }));
      for (const d of r.dictionaries) d.dispose();
      expect(r.resumedFrom).toBe(9);
      const [want, got] = await Promise.all([outcome(straight), outcome(killed)]);
      expect(got).toEqual(want);
      // α moved from its configured 0.1 before the checkpoint, so restarting it would show.
      const at9 = want.log.find((e) => e.step === 9).logs;
      expect(at9.sparsity_coeff).not.toBeCloseTo(0.1, 3);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
      await Promise.all([straight, killed].map((d) => rm(d, { recursive: true, force: true })));
    }
  });
});
