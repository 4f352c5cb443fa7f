import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  createArchitecture,
  Dictionary,
  registerArchitecture,
  registerBackend,
  scope,
  sum,
  tensor,
  useBackend,
  valueAndGrad,
} from '@dictlearn/core';
import { compareValues, describeStepFixture, type StepFixture } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import fixture from './fixtures/steps.json' with { type: 'json' };
import { factories, type JumpReluConfig, jumpRelu, jumpReluFunction, stepFunction } from './jumprelu.js';

// Two optimisation steps per penalty against torch autograd (scripts/make-step-fixture.py):
// loss, logs, every gradient (straight-through threshold gradients included) and every
// parameter after the projected, renormalised Adam step.

const fx = fixture as unknown as StepFixture<Partial<JumpReluConfig>>;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

// float32 against a float64 reference on O(0.1) values; one Adam step moves a parameter by
// ≤ lr = 1e-2, so 1e-5 absolute is tight.
const GRAD_TOL = { rtol: 1e-4, atol: 1e-6 };
const PARAM_TOL = { rtol: 1e-5, atol: 1e-5 };

describeStepFixture('jumprelu (%s): two training steps match torch', fx, (c) => jumpRelu(c), {
  grad: GRAD_TOL,
  param: PARAM_TOL,
});

describe('jumpRelu plugin', () => {
  it('init follows dictionary_learning: unit decoder rows, W_enc = W_decᵀ, zero biases, θ = 0.001; same seed, same values', async () => {
    const arch = jumpRelu();
    const p = scope(() => arch.init({ activationDim: 5, dictSize: 7 }, { seed: 3 }));
    const wDec = (await p.W_dec.array()) as number[][];
    for (const row of wDec) expect(Math.hypot(...row)).toBeCloseTo(1, 6);
    const wEnc = (await p.W_enc.array()) as number[][];
    expect(wEnc[2][4]).toBe(wDec[4][2]);
    expect(Array.from(await p.b_enc.data())).toEqual(new Array(7).fill(0));
    expect(Array.from(await p.b_dec.data())).toEqual(new Array(5).fill(0));
    for (const v of await p.log_threshold.data()) expect(Math.exp(v)).toBeCloseTo(1e-3, 9);
    const again = arch.init({ activationDim: 5, dictSize: 7 }, { seed: 3 });
    expect(Array.from(await again.W_dec.data())).toEqual(wDec.flat());
  });

  it('training defaults are dictionary_learning’s: lr 7e-5, Adam β (0, 0.999), clip 1, unit-norm decoder rows', () => {
    const { training } = jumpRelu();
    expect(training).toMatchObject({
      lr: 7e-5,
      betas: [0, 0.999],
      clipGradNorm: 1,
      unitNormRows: ['W_dec'],
      warmupSteps: 1000,
      sparsityWarmupSteps: 2000,
    });
    expect(jumpRelu().config).toEqual({
      penalty: 'l0-target',
      sparsityPenalty: 1,
      targetL0: 20,
      bandwidth: 1e-3,
      initThreshold: 1e-3,
      applyBDecToInput: false,
    });
  });

  it('straight-through gradients: −(θ/ε)·K and −(1/ε)·K on θ, inside the open window only', async () => {
    // θ = 1 for both features, ε = 0.2: the window is (0.9, 1.1).
    const pre = tensor([
      [0.95, 1.3],
      [1.05, 0.85],
      [0.5, 1.09],
    ]);
    const theta = tensor([1, 1]);
    const jump = jumpReluFunction(0.2);
    const step = stepFunction(0.2);
    // Feature 0 has 0.95 and 1.05 in the window, feature 1 has 1.09.
    const j = valueAndGrad(() => sum(jump(pre, theta)), [pre, theta]);
    expect((await j.value.data())[0]).toBeCloseTo(1.3 + 1.05 + 1.09, 6);
    expect(Array.from(await j.grads.get(theta)!.data())).toEqual([-10, -5]);
    expect(Array.from(await j.grads.get(pre)!.data())).toEqual([0, 1, 1, 0, 0, 1]);
    const h = valueAndGrad(() => sum(step(pre, theta)), [pre, theta]);
    expect((await h.value.data())[0]).toBe(3);
    expect(Array.from(await h.grads.get(theta)!.data())).toEqual([-10, -5]);
    expect(Array.from(await h.grads.get(pre)!.data())).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('folding the normalisation scale (θ included) makes the raw-space model s times the train-space one', async () => {
    for (const applyBDecToInput of [false, true]) {
      const arch = jumpRelu({ applyBDecToInput });
      const s = 2.5;
      const p = arch.init({ activationDim: 4, dictSize: 6 }, { seed: 1 });
      p.b_enc = tensor([0.1, -0.2, 0.05, 0.3, 0, -0.1]);
      p.b_dec = tensor([0.2, 0.1, -0.3, 0]);
      p.log_threshold = tensor([0.05, 0.2, 0.1, 0.01, 0.3, 0.15].map(Math.log));
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
      expect(trainFeatures.filter((v) => v === 0).length).toBeGreaterThan(2);
      const trainRecon = await arch.decode(p, arch.encode(p, xs)).data();
      const rawRecon = await arch.decode(folded, arch.encode(folded, x)).data();
      const tol = { rtol: 1e-5, atol: 1e-6 };
      expect(
        compareValues(
          rawRecon,
          Array.from(trainRecon, (v) => v * s),
          tol,
        ),
      ).toBeNull();
      expect(
        compareValues(
          await arch.encode(folded, x).data(),
          trainFeatures.map((v) => v * s),
          tol,
        ),
      ).toBeNull();
      const back = { ...folded, ...arch.unfoldScale(folded, s) };
      expect(compareValues(await back.log_threshold.data(), await p.log_threshold.data(), tol)).toBeNull();
    }
  });

  it('saves and loads through the registry (config and threshold kept)', async () => {
    for (const f of factories) registerArchitecture(f);
    const arch = createArchitecture('jumprelu', { penalty: 'l0', sparsityPenalty: 0.3, bandwidth: 0.05 });
    expect(arch.config).toMatchObject({ penalty: 'l0', sparsityPenalty: 0.3, bandwidth: 0.05 });
    const sizes = { activationDim: 4, dictSize: 6 };
    const p = arch.init(sizes, { seed: 2 });
    p.log_threshold = tensor([0.05, 0.2, 0.1, 0.01, 0.3, 0.15].map(Math.log));
    const dict = Dictionary.fromTraining(arch, p, sizes, 1.7);
    const dir = await mkdtemp(join(tmpdir(), 'jumprelu-'));
    try {
      await dict.save(dir);
      const loaded = await Dictionary.load(dir);
      expect(loaded.arch.config).toEqual(arch.config);
      const x = tensor([
        [1, -2, 0.5, 3],
        [0.2, 0.1, -1, 2],
      ]);
      expect(
        compareValues(await loaded.encode(x).data(), await dict.encode(x).data(), { rtol: 0, atol: 0 }),
      ).toBeNull();
      loaded.dispose();
    } finally {
      dict.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('configs are validated with the field named', () => {
    expect(() => jumpRelu({ penalty: 'l1' as never })).toThrow(
      "jumprelu: field 'penalty' must be 'l0-target' or 'l0', got \"l1\"",
    );
    expect(() => jumpRelu({ bandwidth: 0 })).toThrow("jumprelu: field 'bandwidth' must be > 0, got 0");
    expect(() => jumpRelu({ threshold: 1 } as never)).toThrow("jumprelu: unknown field 'threshold'");
  });
});
