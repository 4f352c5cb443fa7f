import {
  linearBiasReluSum,
  mul,
  registerBackend,
  reluDecodeGrad,
  reluGradRowSum,
  scaledDifference,
  square,
  sub,
  sum,
  sumSquaredDifference,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { compareValues } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../backend.js';

// The fused kernels of the ReLU encoder and its L1 penalty (linearBiasReluSum, reluGradRowSum,
// and reluDecodeGrad, which forms dF from the decoder in the same pass) against plain loops written here, rounding each float32 operation as the unfused kernels do
// (the matmul, then bias + ReLU; add, then reluGrad): features and dPre must match bit for bit,
// on the WebAssembly SIMD path (columns a multiple of 4) and on the TypeScript loops (columns
// that are not, and the float64 backend); column sums are float64 sums rounded once.

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'fused', fastMatmul: false, kernelThreads: 1 }));
  registerBackend(createCpuBackend({ name: 'fused64', precision: 'float64', kernelThreads: 1 }));
  await useBackend('fused64');
  await useBackend('fused');
});

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const f = Math.fround;
const read = async (t: Tensor) => Float64Array.from(await t.data());

/** [rows, cols]: several 16 Ki-element chunks with a partial one, a row wider than a chunk, columns not a multiple of 4. */
const SHAPES = [
  [37, 1024],
  [3, 20004],
  [129, 75],
  [5, 4],
];

/**
 * Same values bit for bit, −0 and +0 told apart, NaN equal to NaN (`data()` reads float32, so
 * the float64 backend's values are compared rounded).
 */
function sameBits(got: Float64Array, want: ArrayLike<number>, what: string): string | null {
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], f(want[i]))) return `${what}[${i}]: got ${got[i]}, want ${want[i]}`;
  }
  return got.length === want.length ? null : `${what}: length ${got.length}, want ${want.length}`;
}

describe.each(['fused', 'fused64'])('fused ReLU + L1 kernels on %s', (backend) => {
  const f32 = backend === 'fused';
  // inputs arrive as float32 values on both; the float64 backend then computes in float64
  const round = f32 ? f : (v: number) => v;

  it.each(SHAPES)('reluGradRowSum [%i, %i]: (dy + row)·[y > 0] and its column sums', async (rows, cols) => {
    const next = random(rows * 7 + cols);
    const n = rows * cols;
    const dy = Array.from({ length: n }, () => next() * 2 - 1);
    const row = Array.from({ length: cols }, () => next() - 0.5);
    // y: positives, zeros, negatives, and the odd NaN
    const y = Array.from({ length: n }, (_, i) =>
      i % 97 === 5 ? Number.NaN : next() < 0.4 ? next() : -next() * +(i % 3 === 0),
    );
    dy[3] = Number.NaN;
    const inputs = (): Tensor[] => [
      tensor(dy, [rows, cols], { backend }),
      tensor(row, [cols], { backend }),
      tensor(y, [rows, cols], { backend }),
    ];
    const [dPre, sums] = reluGradRowSum(...(inputs() as [Tensor, Tensor, Tensor]));
    // in place: dPre written over dF's storage, the same bits
    const given = inputs();
    const [dIn, sIn] = reluGradRowSum(given[0], given[1], given[2], { inPlace: true });
    expect(dIn.storage).toBe(given[0].storage);
    expect(Array.from(await read(dIn))).toEqual(Array.from(await read(dPre)));
    expect(Array.from(await read(sIn))).toEqual(Array.from(await read(sums)));
    const want = new Float64Array(n);
    const wantSums = new Float64Array(cols);
    for (let i = 0; i < n; i++) {
      want[i] = round(f(dy[i]) + f(row[i % cols])) * +(f(y[i]) > 0);
      if (!Number.isNaN(want[i])) wantSums[i % cols] += want[i];
    }
    expect(sameBits(await read(dPre), want, 'dPre')).toBeNull();
    const got = await read(sums);
    // column 3 holds the NaN of dy[3] when its row-0 mask is on
    if (Number.isNaN(want[3])) wantSums[3] = Number.NaN;
    expect(compareValues(got, Array.from(wantSums, f), { rtol: 1e-6, atol: 1e-6 }, 'column sums')).toBeNull();
  });

  it.each(SHAPES)(
    'reluDecodeGrad [%i, %i]: (dX̂·W_decᵀ + row)·[y > 0], over y in place',
    async (rows, cols) => {
      const next = random(rows * 5 + cols);
      const [n, size] = [3, rows * cols];
      const dDec = Array.from({ length: rows * n }, () => next() * 2 - 1);
      const wDec = Array.from({ length: cols * n }, () => next() * 2 - 1);
      const row = Array.from({ length: cols }, () => next() - 0.5);
      const y = Array.from({ length: size }, (_, i) =>
        i % 89 === 7 ? Number.NaN : next() < 0.4 ? next() : -next() * +(i % 3 === 0),
      );
      dDec[n] = Number.POSITIVE_INFINITY; // row 1 of dF is ±∞ or NaN: its masked-off elements NaN
      const want = new Float64Array(size);
      const wantSums = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < cols; j++) {
          // dF as the TypeScript matmul rounds it (p in order), then the add and reluGrad kernels
          let s = 0;
          for (let p = 0; p < n; p++) s = round(s + f(dDec[r * n + p]) * f(wDec[j * n + p]));
          const i = r * cols + j;
          want[i] = round(s + f(row[j])) * +(f(y[i]) > 0);
          wantSums[j] += want[i];
        }
      }
      for (const inPlace of [false, true]) {
        const yT = tensor(y, [rows, cols], { backend });
        const [dPre, sums] = reluDecodeGrad(
          tensor(dDec, [rows, n], { backend }),
          tensor(wDec, [cols, n], { backend }),
          tensor(row, [cols], { backend }),
          yT,
          { inPlace },
        );
        expect(dPre.storage === yT.storage).toBe(inPlace);
        const what = `dPre (inPlace ${inPlace})`;
        expect(sameBits(await read(dPre), want, what)).toBeNull();
        expect(
          compareValues(
            await read(sums),
            Array.from(wantSums, f),
            { rtol: 1e-6, atol: 1e-6 },
            `${what} sums`,
          ),
        ).toBeNull();
      }
    },
  );

  it.each([5, 2047, 2051, 100_003])(
    'sumSquaredDifference over %i elements: the bits of sum(square(sub(a, b)))',
    async (n) => {
      const next = random(n);
      const a = Array.from({ length: n }, () => next() * 4 - 2);
      const b = Array.from({ length: n }, () => next() * 4 - 2);
      const [ta, tb] = [tensor(a, [n], { backend }), tensor(b, [n], { backend })];
      const want = Array.from(await sum(square(sub(ta, tb))).data());
      expect(Array.from(await sumSquaredDifference(ta, tb).data())).toEqual(want);
      b[n >> 1] = Number.NaN;
      const nan = sumSquaredDifference(ta, tensor(b, [n], { backend }));
      expect(Number.isNaN((await nan.data())[0])).toBe(true);
    },
  );

  it.each([5, 2047, 2051, 100_003])(
    'scaledDifference over %i elements: the bits of mul(sub(a, b), s)',
    async (n) => {
      const next = random(n + 1);
      // spread exponents, so that a rounding skipped shows in the bits
      const a = Array.from({ length: n }, () => (next() * 4 - 2) * 2 ** Math.round(next() * 20 - 10));
      const b = Array.from({ length: n }, () => (next() * 4 - 2) * 2 ** Math.round(next() * 20 - 10));
      [a[1], b[2]] = [Number.NaN, Number.POSITIVE_INFINITY];
      const [ta, tb] = [tensor(a, [n], { backend }), tensor(b, [n], { backend })];
      for (const scale of [2 / 3, -1e-3]) {
        const s = tensor([scale], [], { backend });
        const want = await read(mul(sub(ta, tb), s));
        expect(sameBits(await read(scaledDifference(ta, tb, s)), want, `scale ${scale}`)).toBeNull();
      }
    },
  );

  it('sumSquaredDifference and scaledDifference refuse operands of different shapes, naming both', () => {
    const [a, b] = [tensor([1, 2, 3, 4], [2, 2], { backend }), tensor([1, 2, 3, 4], [4], { backend })];
    const s = tensor([2], [], { backend });
    expect(() => sumSquaredDifference(a, b)).toThrow(
      /sumSquaredDifference.*same shape, got \[2, 2\] and \[4\]/,
    );
    expect(() => scaledDifference(a, b, s)).toThrow(/scaledDifference.*same shape, got \[2, 2\] and \[4\]/);
    expect(() => scaledDifference(a, a, b)).toThrow(/s must hold one value/);
  });

  it.each([5, 4099])('sumSquaredDifference over %i elements rounds each difference and square', async (n) => {
    // (1 + 2⁻¹² + 2⁻³⁰) − 0 rounds to 1 + 2⁻¹², whose square 1 + 2⁻¹¹ + 2⁻²⁴ rounds (to even) to
    // 1 + 2⁻¹¹ in float32; with 2⁻²⁴ from (2⁻¹²)² the sum is then 1 + 2⁻¹¹ + 2⁻²⁴, which rounds to
    // 1 + 2⁻¹¹ again. Unrounded squares would give 1 + 2⁻¹¹ + 2⁻²³, an unrounded difference more.
    const a = new Array<number>(n).fill(0.5);
    const b = new Array<number>(n).fill(0.5);
    [a[0], b[0], a[1], b[1]] = [1 + 2 ** -12, -(2 ** -30), 2 ** -12, 0];
    const got = (
      await sumSquaredDifference(tensor(a, [n], { backend }), tensor(b, [n], { backend })).data()
    )[0];
    // the float64 backend rounds neither
    expect(got).toBe(f32 ? 1 + 2 ** -11 : f(1 + 2 ** -11 + 2 ** -23 + 2 ** -29 + 2 ** -41));
  });

  it.each(SHAPES)('linearBiasReluSum [%i, %i]: relu(x·W + b) and its column sums', async (rows, cols) => {
    const next = random(rows + cols * 3);
    const d = 3;
    const x = Array.from({ length: rows * d }, () => next() * 2 - 1);
    const w = Array.from({ length: d * cols }, () => next() * 2 - 1);
    const b = Array.from({ length: cols }, () => next() - 0.5);
    b[1] = Number.NEGATIVE_INFINITY; // −∞ pre-activations give 0, not NaN
    b[2] = Number.NaN; // NaN stays NaN
    for (const transB of [false, true]) {
      const wt = transB
        ? Array.from({ length: d * cols }, (_, i) => w[(i % d) * cols + Math.floor(i / d)])
        : w;
      const [feat, sums] = linearBiasReluSum(
        tensor(x, [rows, d], { backend }),
        tensor(wt, transB ? [cols, d] : [d, cols], { backend }),
        tensor(b, [cols], { backend }),
        { transB },
      );
      const want = new Float64Array(rows * cols);
      const wantSums = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < cols; j++) {
          // the TypeScript matmul's order: p = 0..d−1, each product rounded into the float32 sum
          let s = 0;
          for (let p = 0; p < d; p++) s = round(s + f(x[r * d + p]) * f(w[p * cols + j]));
          const v = round(s + f(b[j]));
          want[r * cols + j] = v === Number.NEGATIVE_INFINITY ? 0 : v * +(v > 0);
          wantSums[j] += want[r * cols + j];
        }
      }
      const what = `features (transB ${transB})`;
      expect(sameBits(await read(feat), want, what)).toBeNull();
      expect(
        compareValues(await read(sums), Array.from(wantSums, f), { rtol: 1e-6, atol: 1e-6 }, `${what} sums`),
      ).toBeNull();
    }
  });
});
