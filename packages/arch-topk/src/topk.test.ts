import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  type ArchitecturePlugin,
  add,
  Dictionary,
  loadTrainerState,
  matmul,
  type Params,
  registerArchitecture,
  registerBackend,
  relu,
  saveTrainerState,
  scope,
  sub,
  type Tensor,
  Trainer,
  tensor,
  useBackend,
  valueAndGrad,
} from '@dictlearn/core';
import { compareValues } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import fixture from './fixtures/steps.json' with { type: 'json' };
import { geometricMedian, MEDIAN_SAMPLE_STREAM, medianInit, sampleRows } from './sparse.js';
import { batchTopk, factories, matryoshkaBatchTopk, topk } from './topk.js';

// Two optimisation steps of each architecture against torch autograd following
// dictionary_learning's trainers (scripts/make-step-fixture.py): the geometric-median b_dec, loss,
// logs (aux-k with dead features, the threshold), every gradient, and every parameter after
// parallel-component removal, clipping to 1, Adam and row renormalisation.

interface Arr {
  shape: number[];
  values: number[];
}
interface Step {
  loss: number;
  logs: Record<string, number>;
  grads: Record<string, Arr>;
  params: Record<string, Arr>;
}
interface Entry {
  config: Record<string, unknown>;
  init: Record<string, Arr>;
  batches: Arr[];
  median: Arr;
  steps: Step[];
}

const fx = fixture as unknown as {
  sizes: { batch: number; activationDim: number; dictSize: number };
  hyper: { lr: number };
  architectures: Record<string, Entry>;
};

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  for (const f of factories) registerArchitecture(f);
});

const t = (a: Arr) => tensor(a.values, a.shape);

// float32 against a float64 reference on O(1) values (as arch-standard's fixture test).
const GRAD_TOL = { rtol: 1e-4, atol: 1e-6 };
const PARAM_TOL = { rtol: 1e-5, atol: 1e-5 };

const makers: Record<string, (c: never) => ArchitecturePlugin<object>> = {
  topk,
  'batch-topk': batchTopk,
  'matryoshka-batch-topk': matryoshkaBatchTopk,
};

describe.each(Object.keys(makers))('%s: two training steps match torch', (name) => {
  it('median b_dec, loss, logs, gradients and updated parameters', async () => {
    const entry = fx.architectures[name];
    const arch = makers[name](entry.config as never);
    const trainer = new Trainer(
      { architecture: arch, dictSize: fx.sizes.dictSize, lr: fx.hyper.lr, warmupSteps: 0 },
      fx.sizes.activationDim,
      10,
    );
    for (const [k, v] of Object.entries(entry.init)) trainer.vars[k].assign(t(v));
    for (let s = 0; s < entry.steps.length; s++) {
      const want = entry.steps[s];
      const x = t(entry.batches[s]);
      if (s === 0) {
        // The trainer calls initFromData on the first batch; check it, and use it for the loss.
        const { b_dec } = medianInit(x, 4096, 0);
        expect(compareValues(await b_dec.data(), entry.median.values, GRAD_TOL, 'median b_dec')).toBeNull();
        trainer.vars.b_dec.assign(b_dec);
      }
      const vars = Object.values(trainer.vars);
      const ctx = { step: s, sparsityScale: 1, stepsSinceFired: trainer.stepsSinceFired };
      const { value, grads } = valueAndGrad(() => arch.loss(trainer.params(), x, ctx).loss, vars);
      expect(compareValues(await value.data(), [want.loss], GRAD_TOL, `${name} step ${s} loss`)).toBeNull();
      for (const v of vars) {
        const g = grads.get(v) as Tensor;
        expect(
          compareValues(await g.data(), want.grads[v.name].values, GRAD_TOL, `${name} step ${s} d${v.name}`),
        ).toBeNull();
        g.dispose();
      }
      value.dispose();
      // The trainer must find the median itself: give it back the fixture's initial b_dec.
      if (s === 0) trainer.vars.b_dec.assign(t(entry.init.b_dec));
      const logs = await trainer.update(x, true);
      expect(compareValues([logs.loss], [want.loss], GRAD_TOL, 'trainer loss')).toBeNull();
      for (const [k, v] of Object.entries(want.logs)) {
        expect(compareValues([logs[k]], [v], GRAD_TOL, `${name} step ${s} log ${k}`)).toBeNull();
      }
      for (const [k, v] of Object.entries(want.params)) {
        expect(
          compareValues(await trainer.vars[k].value.data(), v.values, PARAM_TOL, `${name} step ${s} ${k}`),
        ).toBeNull();
      }
      x.dispose();
    }
    trainer.dispose();
  });
});

describe('training defaults', () => {
  it('lr defaults to 2e-4/√(F/2¹⁴) and a trainer may override it', () => {
    const lr = (dictSize: number, override?: number) => {
      const tr = new Trainer({ architecture: topk({ k: 4 }), dictSize, lr: override }, 8, 1);
      const v = tr.settings.lr;
      tr.dispose();
      return v;
    };
    expect(lr(1024)).toBeCloseTo(8e-4, 12);
    expect(lr(4096)).toBeCloseTo(4e-4, 12);
    expect(lr(1024, 1e-3)).toBe(1e-3);
    const t = topk({ k: 4 }).training;
    expect([t.clipGradNorm, t.warmupSteps, t.unitNormRows]).toEqual([1, 1000, ['W_dec']]);
  });

  it('init: unit-norm decoder rows, W_enc = W_decᵀ, zero biases, threshold −1; same seed, same values', async () => {
    const arch = batchTopk({ k: 2 });
    const p = scope(() => arch.init({ activationDim: 5, dictSize: 7 }, { seed: 3 }));
    const wDec = (await p.W_dec.array()) as number[][];
    for (const row of wDec) expect(Math.hypot(...row)).toBeCloseTo(1, 6);
    expect(((await p.W_enc.array()) as number[][])[2][4]).toBe(wDec[4][2]);
    expect(Array.from(await p.b_enc.data())).toEqual(new Array(7).fill(0));
    expect(p.threshold.shape).toEqual([]);
    expect(Array.from(await p.threshold.data())).toEqual([-1]);
    const again = arch.init({ activationDim: 5, dictSize: 7 }, { seed: 3 });
    expect(Array.from(await again.W_dec.data())).toEqual(wDec.flat());
  });

  it('configs are validated with the field named', () => {
    expect(() => topk({} as never)).toThrow("topk: field 'k' is required");
    expect(() => topk({ k: 2.5 })).toThrow("topk: field 'k' must be a positive integer, got 2.5");
    expect(() => batchTopk({ k: 2, thresholdBeta: 1 })).toThrow("field 'thresholdBeta' must be in [0, 1)");
    expect(() => topk({ k: 2, K: 3 } as never)).toThrow("topk: unknown field 'K'");
    expect(() => matryoshkaBatchTopk({ k: 2, groups: [] })).toThrow(
      "field 'groups' must be a non-empty array",
    );
    expect(() => matryoshkaBatchTopk({ k: 2, groups: [2, 2], weights: [1] })).toThrow(
      "field 'weights' must be 2 finite numbers",
    );
    const m = matryoshkaBatchTopk({ k: 2, groups: [2, 3] });
    expect(m.config.weights).toEqual([0.5, 0.5]);
    expect(() => m.init({ activationDim: 4, dictSize: 6 }, { seed: 0 })).toThrow(
      'matryoshka-batch-topk: groups [2,3] sum to 5, but the dictionary has 6 features',
    );
  });
});

describe('geometric median', () => {
  it('is robust to an outlier where the mean is not', async () => {
    const pts = tensor([
      [0, 0],
      [1, 0],
      [0, 1],
      [1, 1],
      [100, 100],
    ]);
    const m = await geometricMedian(pts).data();
    expect(Math.hypot(m[0] - 0.5, m[1] - 0.5)).toBeLessThan(1); // the mean is at (20.4, 20.4)
  });

  it('samples distinct rows from its own Philox stream, the same for the same seed', async () => {
    const a = sampleRows(100, 10, 7);
    expect(new Set(a).size).toBe(10);
    expect(Array.from(a).every((i) => i >= 0 && i < 100)).toBe(true);
    expect(Array.from(sampleRows(100, 10, 7))).toEqual(Array.from(a));
    expect(Array.from(sampleRows(100, 10, 8))).not.toEqual(Array.from(a));
    expect(Array.from(sampleRows(5, 10, 7))).toEqual([0, 1, 2, 3, 4]);
    expect(MEDIAN_SAMPLE_STREAM).toBe(2); // W_dec draws stream 0 of the same 'init' domain
    // With a sample smaller than the batch, the median is that of the sampled rows.
    const x = tensor(Array.from({ length: 40 }, (_, i) => [i % 7, (i * 3) % 11]));
    const idx = sampleRows(40, 16, 5);
    const want = await geometricMedian(tensor(Array.from(idx, (i) => [i % 7, (i * 3) % 11]))).data();
    expect(Array.from(await medianInit(x, 16, 5).b_dec.data())).toEqual(Array.from(want));
  });
});

describe('BatchTopK threshold', () => {
  const sizes = { activationDim: 4, dictSize: 6 };
  let x: Tensor;
  beforeAll(() => {
    x = tensor([
      [1, -2, 0.5, 3],
      [0.2, 0.1, -1, 2],
      [-0.3, 0.4, 0.9, -1],
    ]);
  });

  it('a batch with no positive activation leaves θ finite and unchanged (DL: 0 or ∞ folded in)', async () => {
    for (const theta0 of [-1, 0.5]) {
      const arch = batchTopk({ k: 2, thresholdStartStep: 0 });
      const p: Params = { ...arch.init(sizes, { seed: 1 }), threshold: tensor([theta0], []) };
      p.b_enc = tensor(new Array(6).fill(-100)); // every pre-activation ≤ 0
      const out = arch.loss(p, x, { step: 5, sparsityScale: 1 });
      const theta = out.buffers?.threshold as Tensor;
      expect(Array.from(await theta.data())).toEqual([theta0]);
      expect(Number.isFinite((await out.loss.data())[0])).toBe(true);
    }
  });

  it('θ is the smallest kept activation first, then its EMA; not updated up to thresholdStartStep', async () => {
    const arch = batchTopk({ k: 2, thresholdStartStep: 3, thresholdBeta: 0.9 });
    const p = arch.init(sizes, { seed: 1 });
    // The B·k largest of ReLU((x − b_dec) W_enc + b_enc) over the batch, computed here.
    const post = await relu(add(matmul(sub(x, p.b_dec), p.W_enc), p.b_enc)).data();
    const kept = Array.from(post)
      .sort((a, b) => b - a)
      .slice(0, x.shape[0] * 2)
      .filter((v) => v > 0);
    expect(kept.length).toBeGreaterThan(0);
    const m = Math.min(...kept);
    expect((await arch.loss(p, x, { step: 4, sparsityScale: 1 }).buffers!.threshold.data())[0]).toBeCloseTo(
      m,
      6,
    );
    p.threshold = tensor([0.2], []);
    const ema = (await arch.loss(p, x, { step: 4, sparsityScale: 1 }).buffers!.threshold.data())[0];
    expect(ema).toBeCloseTo(0.9 * 0.2 + 0.1 * m, 6);
    expect(arch.loss(p, x, { step: 3, sparsityScale: 1 }).buffers).toBeUndefined();
  });

  it('at inference a row entirely below θ gives zero features and x̂ = b_dec, finite', async () => {
    const arch = batchTopk({ k: 2 });
    const p = arch.init(sizes, { seed: 1 });
    p.b_dec = tensor([0.1, -0.2, 0.3, 0]);
    p.threshold = tensor([1e6], []);
    const f = arch.encode(p, x);
    expect(Array.from(await f.data()).every((v) => v === 0)).toBe(true);
    const xhat = (await arch.decode(p, f).array()) as number[][];
    for (const row of xhat) expect(row.map((v) => Math.round(v * 1e6) / 1e6)).toEqual([0.1, -0.2, 0.3, 0]);
    // Rows above θ keep exactly their activations above θ.
    p.threshold = tensor([0.3], []);
    const post = Array.from(await arch.encode({ ...p, threshold: tensor([-1], []) }, x).data());
    const g = Array.from(await arch.encode(p, x).data(), (v) => v + 0); // −0 → 0
    expect(g).toEqual(post.map((v) => (v > 0.3 ? v : 0)));
  });
});

describe('checkpoints', () => {
  it('the threshold is saved and loaded with the dictionary, folded with the normalisation scale', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'arch-topk-'));
    try {
      const arch = matryoshkaBatchTopk({ k: 2, groups: [2, 4], thresholdStartStep: 0 });
      const tr = new Trainer({ architecture: arch, dictSize: 6, warmupSteps: 0, lr: 1e-2 }, 4, 4);
      const x = tensor([
        [1, -2, 0.5, 3],
        [0.2, 0.1, -1, 2],
        [-0.3, 0.4, 0.9, -1],
      ]);
      for (let i = 0; i < 3; i++) await tr.update(x, false);
      const theta = (await tr.vars.threshold.value.data())[0];
      expect(theta).toBeGreaterThan(0);
      const scale = 2;
      const dict = tr.dictionary(scale);
      await dict.save(join(dir, 'dict'));
      const loaded = await Dictionary.load(join(dir, 'dict'));
      expect(loaded.arch.name).toBe('matryoshka-batch-topk');
      expect(loaded.arch.config).toEqual(arch.config);
      expect((await loaded.params.threshold.data())[0]).toBeCloseTo(theta * scale, 6);
      const raw = tensor(
        Array.from(x.dataSync(), (v) => v * scale),
        [3, 4],
      );
      const a = await loaded.encode(raw).data();
      const b = Array.from(await arch.encode(tr.params(), x).data(), (v) => v * scale);
      expect(compareValues(a, b, { rtol: 1e-5, atol: 1e-6 })).toBeNull();
      // The trainer state round-trips the threshold too.
      await saveTrainerState(tr, join(dir, 'state'), { scale: 1, batchesConsumed: 3 });
      const tr2 = new Trainer({ architecture: arch, dictSize: 6, warmupSteps: 0, lr: 1e-2 }, 4, 4);
      await loadTrainerState(tr2, join(dir, 'state'));
      expect((await tr2.vars.threshold.value.data())[0]).toBe(theta);
      for (const d of [dict, loaded]) d.dispose();
      for (const t of [tr, tr2]) t.dispose();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
