import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  createArchitecture,
  Dictionary,
  neg,
  type Params,
  randomUnitRows,
  registerArchitecture,
  registerBackend,
  scope,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';
import {
  checkGradients,
  compareValues,
  describeStepFixture,
  type StepFixture,
} from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import fixture from './fixtures/steps.json' with { type: 'json' };
import { factories, fistaMomentum, type ListaConfig, lista, squaredSpectralNorm } from './lista.js';

// Two optimisation steps per variant (ISTA untied non-negative, FISTA signed, FISTA tied)
// against torch autograd (scripts/make-step-fixture.py): loss, logs, every gradient through the
// unrolled iterations and every parameter after the constrained Adam step.

const fx = fixture as unknown as StepFixture<Partial<ListaConfig>>;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
  await useBackend('cpu64');
  await useBackend('cpu');
});

describeStepFixture('lista (%s): two training steps match torch', fx, (c) => lista(c), {
  grad: { rtol: 1e-4, atol: 1e-6 },
  param: { rtol: 1e-5, atol: 1e-5 },
});

/** Deterministic values in [-scale, scale) (a small LCG: the test must not share the init's Philox stream). */
function values(n: number, seed: number, scale = 1): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * scale;
  });
}

describe('gradients of the unrolled iterations against float64 finite differences', () => {
  const B = 4;
  const d = 3;
  const F = 5;
  const cases: Partial<ListaConfig>[] = [
    { iterations: 3, variant: 'ista', nonNegative: true },
    { iterations: 3, variant: 'fista', nonNegative: false },
    { iterations: 3, variant: 'fista', tied: true, nonNegative: true },
    { iterations: 2, variant: 'ista', tied: true, nonNegative: false },
  ];
  it.each(cases)('codes and loss of %j, every parameter and x', async (config) => {
    const arch = lista({ l1Penalty: 0.3, ...config });
    const n = config.iterations!;
    const shapes = arch.paramShapes({ activationDim: d, dictSize: F });
    const names = Object.keys(shapes).sort();
    // Thresholds around 0.05–0.15 and pre-activations of order 1: most codes are active and
    // some are not, so the finite differences cross no kink.
    const inputs = names.map((name, i) => {
      const shape = shapes[name];
      const size = shape.reduce((a, b) => a * b, 1);
      let v = values(size, 17 + i, 0.6);
      if (name === 'log_threshold') v = values(size, 5, 0.5).map((u) => Math.log(0.1 + 0.1 * u));
      if (name === 'log_step') v = values(size, 9, 0.2).map((u) => Math.log(0.3 + u));
      return { values: v, shape };
    });
    inputs.push({ values: values(B * d, 99, 1), shape: [B, d] });
    const params = (ts: Tensor[]): Params => Object.fromEntries(names.map((k, i) => [k, ts[i]]));
    const codes = (...ts: Tensor[]) => arch.encode(params(ts), ts[ts.length - 1]);
    const loss = (...ts: Tensor[]) =>
      arch.loss(params(ts), ts[ts.length - 1], { step: 0, sparsityScale: 1 }).loss;
    for (const fn of [codes, loss]) {
      const r = await checkGradients(fn, inputs, {
        backend: 'cpu64',
        tolerance: { rtol: 1e-6, atol: 1e-8 },
      });
      expect(r.errors).toEqual([]);
      // The check means something only if gradient reaches every parameter.
      for (const g of r.analytic) expect(g.some((v) => v !== 0)).toBe(true);
    }
    expect(n).toBeGreaterThan(1);
  });
});

describe('lista plugin', () => {
  it('FISTA momentum: t₀ = 1, tₖ₊₁ = (1 + √(1 + 4tₖ²))/2, βₖ = (tₖ − 1)/tₖ₊₁', () => {
    const t1 = (1 + Math.sqrt(5)) / 2;
    const t2 = (1 + Math.sqrt(1 + 4 * t1 * t1)) / 2;
    const t3 = (1 + Math.sqrt(1 + 4 * t2 * t2)) / 2;
    const beta = fistaMomentum(3);
    expect(beta[0]).toBe(0);
    expect(beta[1]).toBeCloseTo((t1 - 1) / t2, 12);
    expect(beta[2]).toBeCloseTo((t2 - 1) / t3, 12);
    expect(beta[1]).toBeCloseTo(0.28175, 5);
  });

  it('squaredSpectralNorm is the largest eigenvalue of W Wᵀ', () => {
    // W = R(30°) · diag(3, 1.5) · R(−50°)ᵀ padded with a zero row: singular values 3 and 1.5.
    const rot = (a: number) => [
      [Math.cos(a), -Math.sin(a)],
      [Math.sin(a), Math.cos(a)],
    ];
    const [u, v] = [rot(Math.PI / 6), rot((-5 * Math.PI) / 18)];
    const s = [3, 1.5];
    const w: number[] = [];
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 2; j++) w.push(u[i][0] * s[0] * v[j][0] + u[i][1] * s[1] * v[j][1]);
    w.push(0, 0);
    expect(squaredSpectralNorm(w, 3, 2)).toBeCloseTo(9, 5);
    expect(squaredSpectralNorm([0, 0, 0, 0], 2, 2)).toBe(0);
  });

  it('init: decoder rows as randomUnitRows in the init domain, and the untrained encoder is n ISTA steps on the loss', async () => {
    const sizes = { activationDim: 6, dictSize: 14 };
    const l1Penalty = 0.2;
    for (const tied of [false, true]) {
      const arch = lista({ iterations: 4, l1Penalty, tied });
      const p = arch.init(sizes, { seed: 3 });
      const wDec = Array.from(await p.W_dec.data());
      const drawn = scope(() => randomUnitRows(14, 6, { seed: 3, purpose: 'init' }));
      expect(wDec).toEqual(Array.from(await drawn.data()));
      const x = values(5 * 6, 41, 1);
      // Plain ISTA in float64 on min ‖x − zW‖² + λ‖z‖₁, z ≥ 0: z ← relu(z + (x − zW)Wᵀ/L − λ/(2L)).
      const L = squaredSpectralNorm(wDec, 14, 6);
      const want: number[] = [];
      for (let b = 0; b < 5; b++) {
        let z = new Array<number>(14).fill(0);
        for (let k = 0; k < 4; k++) {
          const r = x
            .slice(b * 6, b * 6 + 6)
            .map((xv, j) => xv - z.reduce((s, zf, f) => s + zf * wDec[f * 6 + j], 0));
          z = z.map((zf, f) =>
            Math.max(0, zf + r.reduce((s, rj, j) => s + rj * wDec[f * 6 + j], 0) / L - l1Penalty / (2 * L)),
          );
        }
        want.push(...z);
      }
      const got = await arch.encode(p, tensor(x, [5, 6])).data();
      expect(want.filter((v) => v > 0).length).toBeGreaterThan(5);
      expect(want.filter((v) => v === 0).length).toBeGreaterThan(5);
      expect(compareValues(got, want, { rtol: 1e-4, atol: 1e-6 })).toBeNull();
    }
  });

  it('one non-negative iteration is the standard ReLU SAE with b_enc = −θ (features and loss)', async () => {
    const sizes = { activationDim: 4, dictSize: 7 };
    const one = lista({ iterations: 1, l1Penalty: 0.3 });
    const std = standard({ l1Penalty: 0.3 });
    const p = one.init(sizes, { seed: 5 });
    p.W_enc = tensor(values(4 * 7, 8, 0.7), [1, 4, 7]);
    p.b_dec = tensor([0.1, -0.2, 0.05, 0.3]);
    p.log_threshold = tensor(
      values(7, 4, 0.5).map((u) => Math.log(0.1 + 0.1 * u)),
      [1, 7],
    );
    const q: Params = {
      W_enc: tensor(await p.W_enc.data(), [4, 7]),
      b_enc: neg(tensor((await p.log_threshold.data()).map(Math.exp), [7])),
      W_dec: p.W_dec,
      b_dec: p.b_dec,
    };
    const x = tensor(values(6 * 4, 12, 1), [6, 4]);
    const f = await one.encode(p, x).data();
    expect(Array.from(f).filter((v) => v > 0).length).toBeGreaterThan(4);
    expect(compareValues(f, await std.encode(q, x).data(), { rtol: 1e-5, atol: 1e-7 })).toBeNull();
    const ctx = { step: 0, sparsityScale: 1 };
    expect(
      compareValues(await one.loss(p, x, ctx).loss.data(), await std.loss(q, x, ctx).loss.data(), {
        rtol: 1e-5,
        atol: 1e-7,
      }),
    ).toBeNull();
  });

  it('folding the normalisation scale makes the raw-space model s times the train-space one', async () => {
    for (const config of [{ variant: 'fista' as const, nonNegative: false }, { tied: true }]) {
      const arch = lista({ iterations: 3, ...config });
      const s = 2.5;
      const p = arch.init({ activationDim: 4, dictSize: 6 }, { seed: 1 });
      p.b_dec = tensor([0.2, 0.1, -0.3, 0]);
      p.log_threshold = tensor(
        values(18, 3, 0.5).map((u) => Math.log(0.05 + 0.05 * u)),
        [3, 6],
      );
      const raw = values(12, 7, 1);
      const x = tensor(raw, [3, 4]);
      const xs = tensor(
        raw.map((v) => v / s),
        [3, 4],
      );
      const folded = { ...p, ...arch.foldScale(p, s) };
      const trainFeatures = Array.from(await arch.encode(p, xs).data());
      expect(trainFeatures.filter((v) => v !== 0).length).toBeGreaterThan(2);
      const tol = { rtol: 1e-5, atol: 1e-6 };
      expect(
        compareValues(
          await arch.encode(folded, x).data(),
          trainFeatures.map((v) => v * s),
          tol,
        ),
      ).toBeNull();
      const trainRecon = await arch.decode(p, arch.encode(p, xs)).data();
      expect(
        compareValues(
          await arch.decode(folded, arch.encode(folded, x)).data(),
          Array.from(trainRecon, (v) => v * s),
          tol,
        ),
      ).toBeNull();
      const back = { ...folded, ...arch.unfoldScale(folded, s) };
      expect(compareValues(await back.log_threshold.data(), await p.log_threshold.data(), tol)).toBeNull();
    }
  });

  it('resampling rebuilds the chosen dead features in every iteration from alive statistics only', async () => {
    const [n, d, F] = [2, 3, 6];
    const arch = lista({ iterations: n });
    const wEnc = values(n * d * F, 31, 1).map((v, i) => (i % F === 4 ? v * 100 : v)); // dead 4: huge
    const logT = values(n * F, 32, 1).map((v, i) => (i % F === 4 ? 50 : v));
    const p: Params = {
      W_enc: tensor(wEnc, [n, d, F]),
      W_dec: tensor(values(F * d, 33, 1), [F, d]),
      b_dec: tensor([0.1, 0.2, 0.3]),
      log_threshold: tensor(logT, [n, F]),
    };
    const x = [1, -2, 2];
    const out = arch.resample!(
      p,
      { dead: Int32Array.from([1, 4]), replace: Int32Array.from([1]) },
      tensor([x]),
    );
    const alive = [0, 2, 3, 5];
    const unit = x.map((v) => v / 3);
    const enc = Array.from(await out.W_enc.data());
    const dec = Array.from(await out.W_dec.data());
    const th = Array.from(await out.log_threshold.data());
    const at = (k: number, i: number, j: number) => k * d * F + i * F + j;
    for (let k = 0; k < n; k++) {
      const norms = alive.map((j) => Math.hypot(...[0, 1, 2].map((i) => wEnc[at(k, i, j)])));
      const meanNorm = norms.reduce((a, b) => a + b, 0) / alive.length;
      for (let i = 0; i < d; i++) {
        expect(enc[at(k, i, 1)]).toBeCloseTo(unit[i] * 0.2 * meanNorm, 5);
        for (const j of [0, 2, 3, 4, 5]) expect(enc[at(k, i, j)]).toBeCloseTo(wEnc[at(k, i, j)], 5);
      }
      const meanLog = alive.reduce((a, j) => a + logT[k * F + j], 0) / alive.length;
      expect(th[k * F + 1]).toBeCloseTo(meanLog, 5);
      expect(th[k * F + 4]).toBeCloseTo(50, 5); // dead but not rebuilt: untouched
    }
    expect(compareValues(dec.slice(d, 2 * d), unit, { rtol: 1e-6, atol: 1e-7 })).toBeNull();
    const tiedOut = lista({ iterations: n, tied: true }).resample!(
      { W_dec: p.W_dec, b_dec: p.b_dec, log_threshold: p.log_threshold, log_step: tensor([0, 0]) },
      { dead: Int32Array.from([1, 4]), replace: Int32Array.from([1]) },
      tensor([x]),
    );
    expect(tiedOut.W_enc).toBeUndefined();
    expect(
      compareValues(Array.from(await tiedOut.W_dec.data()).slice(d, 2 * d), unit, { rtol: 1e-6, atol: 1e-7 }),
    ).toBeNull();
  });

  it('saves and loads through the registry (config, encoder stack and thresholds kept)', async () => {
    for (const f of factories) registerArchitecture(f);
    const arch = createArchitecture('lista', { iterations: 2, variant: 'fista', l1Penalty: 0.05 });
    expect(arch.config).toEqual({
      iterations: 2,
      variant: 'fista',
      tied: false,
      nonNegative: true,
      l1Penalty: 0.05,
      initThreshold: 0,
    });
    const sizes = { activationDim: 4, dictSize: 6 };
    const p = arch.init(sizes, { seed: 2 });
    const dict = Dictionary.fromTraining(arch, p, sizes, 1.7);
    const dir = await mkdtemp(join(tmpdir(), 'lista-'));
    try {
      await dict.save(dir);
      const loaded = await Dictionary.load(dir);
      expect(loaded.arch.config).toEqual(arch.config);
      const x = tensor(values(8, 3, 2), [2, 4]);
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
    expect(() => lista({ iterations: 0 })).toThrow(
      "lista: field 'iterations' must be an integer in [1, 64], got 0",
    );
    expect(() => lista({ variant: 'admm' as never })).toThrow(
      "lista: field 'variant' must be 'ista' or 'fista', got \"admm\"",
    );
    expect(() => lista({ l1Penalty: 0 })).toThrow(
      "lista: field 'initThreshold' must be > 0 when 'l1Penalty' is 0",
    );
    expect(() => lista({ steps: 3 } as never)).toThrow("lista: unknown field 'steps'");
  });
});
