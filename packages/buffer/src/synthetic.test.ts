import { createCpuBackend } from '@dictlearn/backend-cpu';
import { DictlearnError, memory, randomNormal, registerBackend, useBackend } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { firingProbabilities, SyntheticSource } from './synthetic.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

function errorOf(fn: () => unknown): DictlearnError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    return e as DictlearnError;
  }
  throw new Error('expected an error');
}

/** Per-feature firing counts and the active-count total over samples [0, n). */
function firingCounts(s: SyntheticSource, n: number) {
  const codes = s.sparseCodes(0, n);
  const counts = new Float64Array(s.numFeatures);
  for (const i of codes.indices) counts[i]++;
  return { codes, counts, total: codes.indices.length };
}

describe('firing probabilities', () => {
  it('follow p_i = c·decay^i with Σ p_i = meanActive (hand-computed c)', () => {
    const p = firingProbabilities(512, 5, 0.99);
    const c = (5 * (1 - 0.99)) / (1 - 0.99 ** 512); // geometric series, no clipping
    expect(p[0]).toBeCloseTo(c, 12);
    expect(p[511]).toBeCloseTo(c * 0.99 ** 511, 14);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(5, 10);
    for (let i = 1; i < 512; i++) expect(p[i] / p[i - 1]).toBeCloseTo(0.99, 12);
  });

  it('clip at 1 and still sum to meanActive', () => {
    const p = firingProbabilities(64, 50, 0.9);
    expect(p[0]).toBe(1);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(50, 9);
    const firstBelow = p.findIndex((v) => v < 1);
    for (let i = firstBelow + 1; i < 64; i++) expect(p[i] / p[i - 1]).toBeCloseTo(0.9, 12);
    expect(Array.from(firingProbabilities(8, 8, 0.5))).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(Array.from(firingProbabilities(4, 2, 1))).toEqual([0.5, 0.5, 0.5, 0.5]);
  });

  it('are exposed as featureProbabilities', () => {
    const s = new SyntheticSource({ dim: 8, numFeatures: 100, meanActive: 3, decay: 0.95 });
    expect(s.featureProbabilities).toEqual(firingProbabilities(100, 3, 0.95));
  });
});

describe('SyntheticSource: probabilities that underflow to 0', () => {
  // decay 0.5 over 100 000 features: all but the first ~1 075 probabilities are 0, so each row
  // draws once per such block of features. Row 2 770 of seed 1 meets a draw of exactly 1 there,
  // where the geometric skip computed log 1 / −0 = NaN and looped forever.
  it('never fire, and a draw of exactly 1 in their blocks ends (row 2 770 of seed 1)', () => {
    const source = new SyntheticSource({
      dim: 4,
      numFeatures: 100_000,
      decay: 0.5,
      meanActive: 1.5,
      seed: 1,
      noise: 0,
    });
    const zero = source.featureProbabilities.indexOf(0);
    expect(zero).toBeGreaterThan(1000);
    const codes = source.sparseCodes(2760, 20);
    expect(codes.offsets.length).toBe(21);
    for (const j of codes.indices) expect(j).toBeLessThan(zero);
  });
});

describe('SyntheticSource: ground truth', () => {
  it("is randomNormal([F, d], { seed, stream: 0, purpose: 'groundTruth' }) with unit-norm rows", async () => {
    const s = new SyntheticSource({ dim: 16, numFeatures: 40, seed: 7 });
    const g = s.groundTruth('cpu');
    expect(g.shape).toEqual([40, 16]);
    const values = (await g.data()) as Float32Array;
    const raw = randomNormal([40, 16], { seed: 7, stream: 0, purpose: 'groundTruth' });
    const r = (await raw.data()) as Float32Array;
    for (let i = 0; i < 40; i++) {
      const row = r.subarray(i * 16, (i + 1) * 16);
      const norm = Math.hypot(...row);
      let n2 = 0;
      for (let k = 0; k < 16; k++) {
        expect(values[i * 16 + k]).toBeCloseTo(row[k] / norm, 6);
        n2 += values[i * 16 + k] ** 2;
      }
      expect(Math.abs(Math.sqrt(n2) - 1)).toBeLessThan(1e-6);
    }
    g.dispose();
    raw.dispose();
  });
});

describe('SyntheticSource: statistics (independent features)', () => {
  const n = 1 << 16;
  const s = new SyntheticSource({ dim: 8, numFeatures: 512, meanActive: 5, decay: 0.99, noise: 0, seed: 1 });
  const { codes, counts, total } = firingCounts(s, n);
  const p = s.featureProbabilities;

  it('mean active count ≈ meanActive, within 5 standard errors', () => {
    // the count per sample is a sum of independent Bernoullis: variance Σ p(1 − p)
    const variance = p.reduce((a, q) => a + q * (1 - q), 0);
    expect(Math.abs(total / n - 5)).toBeLessThan(5 * Math.sqrt(variance / n));
  });

  it('each of the first features fires with probability p_i (5 standard errors)', () => {
    for (let i = 0; i < 20; i++) {
      const se = Math.sqrt((p[i] * (1 - p[i])) / n);
      expect(Math.abs(counts[i] / n - p[i]), `feature ${i}`).toBeLessThan(5 * se);
    }
    // a block boundary lies at feature 64 (thinning bounds change there): check around it too
    for (let i = 60; i < 70; i++) {
      expect(Math.abs(counts[i] / n - p[i]), `feature ${i}`).toBeLessThan(
        5 * Math.sqrt((p[i] * (1 - p[i])) / n),
      );
    }
  });

  it('firing decisions are independent between features (pairwise check)', () => {
    let both = 0;
    for (let r = 0; r < n; r++) {
      const row = codes.indices.subarray(codes.offsets[r], codes.offsets[r + 1]);
      if (row.includes(0) && row.includes(1)) both++;
    }
    const q = p[0] * p[1];
    expect(Math.abs(both / n - q)).toBeLessThan(5 * Math.sqrt((q * (1 - q)) / n));
  });

  it('coefficients are U[0, 1): mean 1/2, variance 1/12', () => {
    const v = codes.values;
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / v.length));
    expect(Math.abs(variance - 1 / 12)).toBeLessThan(5 * Math.sqrt(1 / 180 / v.length));
    expect(v.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('active ids are increasing within a sample', () => {
    for (let r = 0; r < 1000; r++) {
      for (let k = codes.offsets[r] + 1; k < codes.offsets[r + 1]; k++) {
        expect(codes.indices[k]).toBeGreaterThan(codes.indices[k - 1]);
      }
    }
  });
});

describe('SyntheticSource: samples', () => {
  it('without noise, x = Σ coef_i · g_i exactly (the sparse codes reproduce the samples)', () => {
    const s = new SyntheticSource({
      dim: 24,
      numFeatures: 64,
      meanActive: 4,
      decay: 0.97,
      noise: 0,
      seed: 3,
    });
    const x = s.sampleHost(100, 50);
    const g = s.groundTruthHost();
    const codes = s.sparseCodes(100, 50);
    for (let r = 0; r < 50; r++) {
      const want = new Float64Array(24);
      for (let k = codes.offsets[r]; k < codes.offsets[r + 1]; k++) {
        for (let j = 0; j < 24; j++) want[j] += codes.values[k] * g[codes.indices[k] * 24 + j];
      }
      for (let j = 0; j < 24; j++) expect(x[r * 24 + j]).toBeCloseTo(want[j], 5);
    }
  });

  it('noise is N(0, noise²/d) per component: E‖ε‖ matches the chi mean', () => {
    const d = 64;
    const n = 4096;
    const opts = { dim: d, numFeatures: 128, meanActive: 3, seed: 9 };
    const clean = new SyntheticSource({ ...opts, noise: 0 }).sampleHost(0, n);
    const noisy = new SyntheticSource({ ...opts, noise: 0.1 }).sampleHost(0, n);
    // E‖z‖ for z ~ N(0, I_d): c_d = √2·Γ((d+1)/2)/Γ(d/2), from c_1 = √(2/π) and c_{k+1} = k / c_k
    let c = Math.sqrt(2 / Math.PI);
    for (let k = 1; k < d; k++) c = k / c;
    const expectedNorm = (0.1 * c) / Math.sqrt(d);
    let sumNorm = 0;
    let sumSq = 0;
    for (let r = 0; r < n; r++) {
      let ss = 0;
      for (let j = 0; j < d; j++) {
        const e = noisy[r * d + j] - clean[r * d + j];
        ss += e * e;
        sumSq += e * e;
      }
      sumNorm += Math.sqrt(ss);
    }
    // sd of ‖ε‖ is σ·√(d − c_d²) with σ = 0.1/√d
    const sdNorm = (0.1 / Math.sqrt(d)) * Math.sqrt(d - c * c);
    expect(Math.abs(sumNorm / n - expectedNorm)).toBeLessThan(5 * (sdNorm / Math.sqrt(n)));
    expect(Math.abs(sumNorm / n - 0.1)).toBeLessThan(0.002); // "E‖noise‖ ≈ noise"
    const variance = sumSq / (n * d);
    expect(Math.abs(variance / (0.01 / d) - 1)).toBeLessThan(5 * Math.sqrt(2 / (n * d)));
  });

  it('is reproducible: same seed, same samples, whatever the batch boundaries', async () => {
    const a = new SyntheticSource({ dim: 16, numFeatures: 32, seed: 5 });
    const b = new SyntheticSource({ dim: 16, numFeatures: 32, seed: 5 });
    const whole = a.sampleHost(0, 12);
    expect(b.sampleHost(0, 12)).toEqual(whole);
    expect(b.sampleHost(4, 5)).toEqual(whole.subarray(4 * 16, 9 * 16));
    const it = b.batches({ batchSize: 4 });
    const first = await it.next();
    const second = await it.next();
    expect(await first.value!.data()).toEqual(whole.subarray(0, 64));
    expect(await second.value!.data()).toEqual(whole.subarray(64, 128));
    first.value!.dispose();
    second.value!.dispose();
    await it.return(undefined);
    const late = b.batches({ batchSize: 3, start: 9 });
    const t = (await late.next()).value!;
    expect(await t.data()).toEqual(whole.subarray(9 * 16, 12 * 16));
    t.dispose();
    const other = new SyntheticSource({ dim: 16, numFeatures: 32, seed: 6 }).sampleHost(0, 12);
    expect(other).not.toEqual(whole);
  });

  it('the same samples with and without WebAssembly (it only speeds them up)', async () => {
    const { PhiloxStream } = await import('./random.js');
    expect(new PhiloxStream(0).usesWasm).toBe(true);
    // the loops are checked bit for bit in random.test.ts and synthetic-wasm.test.ts; here the
    // whole sample agrees
    const s = new SyntheticSource({ dim: 8, numFeatures: 16, seed: 2, correlation: 0.3 });
    expect(s.sampleHost(0, 3)).toEqual(
      new SyntheticSource({ dim: 8, numFeatures: 16, seed: 2, correlation: 0.3, wasm: false }).sampleHost(
        0,
        3,
      ),
    );
  });

  it('batches are float32 tensors on the requested backend and leave nothing behind', async () => {
    const before = memory().tensors;
    const s = new SyntheticSource({ dim: 10, numFeatures: 20 });
    let seen = 0;
    for await (const x of s.batches({ batchSize: 7, backend: 'cpu' })) {
      expect(x.shape).toEqual([7, 10]);
      expect(x.dtype).toBe('float32');
      expect(x.backend).toBe('cpu');
      x.dispose();
      if (++seen === 3) break;
    }
    expect(memory().tensors).toBe(before);
  });

  it("'uniform-product' coefficients have mean 1/4", () => {
    const s = new SyntheticSource({ dim: 4, numFeatures: 64, coefficients: 'uniform-product', seed: 4 });
    const v = s.sparseCodes(0, 20_000).values;
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    // var(UV) = 1/9 − 1/16 = 7/144
    expect(Math.abs(mean - 0.25)).toBeLessThan(5 * Math.sqrt(7 / 144 / v.length));
  });
});

describe('SyntheticSource: correlated features (Gaussian copula)', () => {
  const n = 1 << 16;
  const s = new SyntheticSource({
    dim: 8,
    numFeatures: 256,
    meanActive: 5,
    correlation: 0.6,
    correlationRank: 2,
    noise: 0,
    seed: 21,
  });
  const { codes, counts, total } = firingCounts(s, n);
  const p = s.featureProbabilities;

  it('keeps the marginal firing probabilities p_i and the mean active count', () => {
    for (let i = 0; i < 20; i++) {
      expect(Math.abs(counts[i] / n - p[i]), `feature ${i}`).toBeLessThan(
        5 * Math.sqrt((p[i] * (1 - p[i])) / n),
      );
    }
    // correlations widen the spread of the count: bound it by the count's range instead (≤ 256)
    expect(Math.abs(total / n - 5)).toBeLessThan(0.15);
  });

  it('makes features with aligned loadings fire together, and opposed ones apart', () => {
    // rank 2: loadings are unit vectors in the plane; features 0..9 cover both cases
    const fired = (r: number, i: number) =>
      codes.indices.subarray(codes.offsets[r], codes.offsets[r + 1]).includes(i);
    const lift: number[] = [];
    for (let j = 1; j < 10; j++) {
      let both = 0;
      for (let r = 0; r < n; r++) if (fired(r, 0) && fired(r, j)) both++;
      lift.push(both / n / (p[0] * p[j]));
    }
    // under independence every lift is 1 ± ~0.1 (5 sd); with ρ = 0.6 some pairs are far off
    expect(Math.max(...lift)).toBeGreaterThan(1.5);
    expect(Math.min(...lift)).toBeLessThan(0.6);
  });
});

describe('SyntheticSource: bad options', () => {
  it('name the field and what was expected', () => {
    expect(errorOf(() => new SyntheticSource({ dim: 0 })).message).toBe(
      "SyntheticSource: option 'dim' must be an integer ≥ 1, got 0",
    );
    expect(errorOf(() => new SyntheticSource({ numFeatures: 2.5 })).message).toBe(
      "SyntheticSource: option 'numFeatures' must be an integer ≥ 1, got 2.5",
    );
    expect(errorOf(() => new SyntheticSource({ numFeatures: 4, meanActive: 5 })).message).toBe(
      "SyntheticSource: option 'meanActive' must be a number in (0, numFeatures = 4], got 5",
    );
    expect(errorOf(() => new SyntheticSource({ decay: 1.5 })).message).toBe(
      "SyntheticSource: option 'decay' must be a number in (0, 1], got 1.5",
    );
    expect(errorOf(() => new SyntheticSource({ noise: -1 })).message).toBe(
      "SyntheticSource: option 'noise' must be a number ≥ 0, got -1",
    );
    expect(errorOf(() => new SyntheticSource({ correlation: 1 })).message).toBe(
      "SyntheticSource: option 'correlation' must be a number in [0, 1), got 1",
    );
    expect(errorOf(() => new SyntheticSource({ coefficients: 'gaussian' as 'uniform' })).message).toBe(
      "SyntheticSource: option 'coefficients' must be 'uniform' or 'uniform-product', got \"gaussian\"",
    );
    expect(errorOf(() => new SyntheticSource({ seed: -1 })).message).toBe(
      "SyntheticSource: option 'seed' must be an integer ≥ 0, got -1",
    );
    expect(
      errorOf(() => new SyntheticSource({ numFeatures: 20_000, meanActive: 19_999, decay: 0.9 })).message,
    ).toMatch(/option 'meanActive' 19999 cannot be reached with decay 0.9 over 20000 features/);
    const s = new SyntheticSource({ dim: 4, numFeatures: 8 });
    expect(errorOf(() => s.sampleHost(-1, 2)).message).toBe(
      'SyntheticSource: sample range needs non-negative integers, got start -1, count 2',
    );
  });

  it('batches() refuses a bad batch size', async () => {
    const s = new SyntheticSource({ dim: 4, numFeatures: 8 });
    await expect(s.batches({ batchSize: 0 }).next()).rejects.toThrow(
      'SyntheticSource: batchSize must be a positive integer, got 0',
    );
  });
});
