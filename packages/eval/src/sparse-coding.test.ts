import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  add,
  type DictionaryLike,
  matmul,
  registerBackend,
  relu,
  scope,
  sub,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { compareValues } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from './evaluate.js';
import fixture from './fixtures/sparse-coding.json' with { type: 'json' };
import {
  amortisationGap,
  fistaCodes,
  istaCodes,
  linearDecoder,
  ompCodes,
  squaredSpectralNorm,
} from './sparse-coding.js';

// Reference solutions from scikit-learn (coordinate-descent lasso polished to its KKT conditions,
// and its OMP): scripts/make-sparse-coding-fixture.py.

type T = { shape: number[]; values: number[] };
const fx = fixture as unknown as {
  W: T;
  b: T;
  x: T;
  lasso: { l1Penalty: number; nonNegative: boolean; codes: T }[];
  omp: { atoms: number; codes: T }[];
};
const t = (a: T) => tensor(a.values, a.shape);
const [F, d] = fx.W.shape;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

/** A dictionary with decoder W, bias b and the tied ReLU encoder relu((x − b) Wᵀ) (an amortised guess). */
function fixtureDictionary(): DictionaryLike {
  const W = t(fx.W);
  const b = t(fx.b);
  return {
    activationDim: d,
    dictSize: F,
    encode: (x) => scope(() => relu(matmul(sub(x, b), W, { transB: true }))),
    decode: (f) => scope(() => add(matmul(f, W), b)),
    forward(x) {
      const features = this.encode(x);
      return { reconstruction: this.decode(features), features };
    },
    decoderRows: () => add(W, 0),
  };
}
/** FVE of codes z on x (the definition, on the host in float64). */
function fve(x: number[], z: number[], B: number): number {
  const W = fx.W.values;
  const b = fx.b.values;
  const res: number[] = [];
  for (let r = 0; r < B; r++)
    for (let j = 0; j < d; j++) {
      let s = b[j];
      for (let f = 0; f < F; f++) s += z[r * F + f] * W[f * d + j];
      res.push(x[r * d + j] - s);
    }
  const centred = (v: number[]) => {
    let total = 0;
    for (let j = 0; j < d; j++) {
      let m = 0;
      for (let r = 0; r < B; r++) m += v[r * d + j] / B;
      for (let r = 0; r < B; r++) total += (v[r * d + j] - m) ** 2;
    }
    return total;
  };
  return 1 - centred(res) / centred(x);
}

describe('inference-time sparse coding against scikit-learn', () => {
  it.each(fx.lasso)('FISTA solves the lasso (λ $l1Penalty, non-negative $nonNegative)', async (c) => {
    const decoder = { rows: t(fx.W), bias: t(fx.b) };
    const { codes, iterations } = await fistaCodes(decoder, t(fx.x), {
      l1Penalty: c.l1Penalty,
      nonNegative: c.nonNegative,
      iterations: 3000,
    });
    expect(iterations).toBe(3000);
    const got = await codes.data();
    expect(compareValues(got, c.codes.values, { rtol: 1e-3, atol: 1e-4 })).toBeNull();
    // The support too: the same entries are exactly zero.
    const zeroGot = Array.from(got, (v) => v === 0);
    const zeroWant = c.codes.values.map((v) => Math.abs(v) < 1e-6);
    expect(zeroGot).toEqual(zeroWant);
  });

  it('ISTA reaches the same lasso solution (more slowly), and stops early at a tolerance', async () => {
    const c = fx.lasso[0];
    const decoder = { rows: t(fx.W), bias: t(fx.b) };
    const { codes } = await istaCodes(decoder, t(fx.x), { l1Penalty: c.l1Penalty, iterations: 20000 });
    expect(compareValues(await codes.data(), c.codes.values, { rtol: 1e-3, atol: 1e-4 })).toBeNull();
    const early = await fistaCodes(decoder, t(fx.x), {
      l1Penalty: c.l1Penalty,
      iterations: 20000,
      tolerance: 1e-6,
    });
    expect(early.iterations).toBeLessThan(20000);
    expect(compareValues(await early.codes.data(), c.codes.values, { rtol: 1e-3, atol: 1e-4 })).toBeNull();
  });

  it('warm start: from the solution one iteration stays there; from zero it does not', async () => {
    const c = fx.lasso[0];
    const decoder = { rows: t(fx.W), bias: t(fx.b) };
    const options = { l1Penalty: c.l1Penalty, iterations: 1 };
    const warm = await fistaCodes(decoder, t(fx.x), { ...options, init: t(c.codes) });
    expect(compareValues(await warm.codes.data(), c.codes.values, { rtol: 1e-3, atol: 1e-4 })).toBeNull();
    const cold = await fistaCodes(decoder, t(fx.x), options);
    expect(compareValues(await cold.codes.data(), c.codes.values, { rtol: 1e-3, atol: 1e-4 })).not.toBeNull();
    await expect(fistaCodes(decoder, t(fx.x), { ...options, init: tensor([1, 2], [1, 2]) })).rejects.toThrow(
      'fistaCodes: options.init must be codes [6, 12], got [1, 2]',
    );
  });

  it.each(fx.omp)('OMP with $atoms atoms picks the same atoms and least-squares coefficients', async (c) => {
    const z = ompCodes({ rows: t(fx.W), bias: t(fx.b) }, t(fx.x), { atoms: c.atoms });
    const got = await z.data();
    expect(compareValues(got, c.codes.values, { rtol: 1e-4, atol: 1e-5 })).toBeNull();
    for (let r = 0; r < fx.x.shape[0]; r++) {
      expect(Array.from(got.slice(r * F, (r + 1) * F)).filter((v) => v !== 0).length).toBe(c.atoms);
    }
  });

  it('OMP picks atoms by cosine: rows scaled by c give the codes divided by c', async () => {
    const scales = Array.from({ length: F }, (_, i) => 0.5 + (i % 4) * 0.6);
    const rows = fx.W.values.map((v, i) => v * scales[Math.floor(i / d)]);
    const c = fx.omp.find((o) => o.atoms === 3)!;
    const z = ompCodes({ rows: tensor(rows, fx.W.shape), bias: t(fx.b) }, t(fx.x), { atoms: 3 });
    const want = c.codes.values.map((v, i) => v / scales[i % F]);
    expect(compareValues(await z.data(), want, { rtol: 1e-4, atol: 1e-5 })).toBeNull();
  });

  it('squaredSpectralNorm is the largest eigenvalue of W Wᵀ', async () => {
    // Rows (3, 0), (0, 4), (0, 0): W Wᵀ has eigenvalues 16, 9, 0.
    expect(await squaredSpectralNorm(tensor([3, 0, 0, 4, 0, 0], [3, 2]))).toBeCloseTo(16, 3);
  });
});

describe('amortisationGap', () => {
  it('OMP: the encoder’s L0/FVE are evaluate()’s, the optimal FVE is that of scikit-learn’s codes', async () => {
    const dict = fixtureDictionary();
    const B = fx.x.shape[0];
    const want = await evaluate(dict, [t(fx.x)]);
    const gap = await amortisationGap(dict, [t(fx.x)], { codes: 'omp', atoms: 3 });
    expect(gap.encoder.l0).toBeCloseTo(want.l0, 5);
    expect(gap.encoder.fve).toBeCloseTo(want.frac_variance_explained, 5);
    const omp3 = fx.omp.find((c) => c.atoms === 3)!;
    expect(gap.optimal).toMatchObject({ method: 'omp', atoms: 3, l0: 3 });
    expect(gap.optimal.fve).toBeCloseTo(fve(fx.x.values, omp3.codes.values, B), 4);
    expect(gap.gap).toBeCloseTo(gap.optimal.fve - gap.encoder.fve, 10);
    expect(gap.gap).toBeGreaterThan(0);
  });

  it('FISTA: with no λ, one is found whose codes have the encoder’s L0 (within 2%)', async () => {
    const dict = fixtureDictionary();
    const gap = await amortisationGap(dict, [t(fx.x)], { codes: 'fista', iterations: 1000 });
    expect(gap.optimal.method).toBe('fista');
    expect(Math.abs(gap.optimal.l0 - gap.encoder.l0)).toBeLessThanOrEqual(0.02 * gap.encoder.l0 + 1e-9);
    // At a given λ the optimal codes are the lasso solution of the fixture.
    const c = fx.lasso[0];
    const given = await amortisationGap(dict, [t(fx.x)], {
      codes: 'fista',
      l1Penalty: c.l1Penalty,
      iterations: 3000,
    });
    expect(given.optimal.fve).toBeCloseTo(fve(fx.x.values, c.codes.values, fx.x.shape[0]), 4);
  });

  it('refuses a dictionary whose decode is not affine, naming why', async () => {
    const dict = fixtureDictionary();
    const bent: DictionaryLike = { ...dict, decode: (f) => relu(dict.decode(f)) };
    await expect(linearDecoder(bent)).rejects.toThrow(
      "linearDecoder: the dictionary's decode is not f·decoderRows() + decode(0)",
    );
  });
});
