// The reductions with few outputs over many elements (a loss, a bias gradient), on the subgroup
// kernel (one subgroup per output: subgroupAdd / Max / Min) and on the workgroup-memory tree (the
// same backend with subgroups turned off), against float64 / exact values computed here: float32
// and int32, reduced axes leading, trailing and in the middle, NaN and ±∞.
import { max, min, sum, type Tensor, tensor } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { kernelTestBackends, values } from './test-backends.js';

const { withSg, noSg, skip } = await kernelTestBackends('webgpu-red');

type Kind = 'sum' | 'max' | 'min';
const OPS: Record<Kind, (x: Tensor, axes: number[]) => Tensor> = {
  sum: (x, a) => sum(x, a),
  max: (x, a) => max(x, a),
  min: (x, a) => min(x, a),
};

/**
 * The reference over `axes` of x [A, B, C] (row-major), in float64, with the float32 bound of a
 * sum in any order (2n·ε·Σ|v|); max / min are exact. NaN anywhere in an output's elements: NaN.
 */
function reference(v: ArrayLike<number>, shape: number[], axes: number[], kind: Kind) {
  const kept = [0, 1, 2].filter((a) => !axes.includes(a));
  const nOut = kept.reduce((p, a) => p * shape[a], 1);
  const want = new Float64Array(nOut).fill(kind === 'sum' ? 0 : kind === 'max' ? -Infinity : Infinity);
  const abs = new Float64Array(nOut);
  const n = v.length / nOut;
  for (let i = 0; i < v.length; i++) {
    const c = [Math.floor(i / (shape[1] * shape[2])), Math.floor(i / shape[2]) % shape[1], i % shape[2]];
    const o = kept.reduce((p, a) => p * shape[a] + c[a], 0);
    const x = v[i];
    if (Number.isNaN(x) || Number.isNaN(want[o])) want[o] = Number.NaN;
    else
      want[o] = kind === 'sum' ? want[o] + x : kind === 'max' ? Math.max(want[o], x) : Math.min(want[o], x);
    abs[o] += Math.abs(x);
  }
  const bound = abs.map((a) => (kind === 'sum' ? 2 * n * 2 ** -24 * a : 0));
  return { want, bound };
}

/** The flat index of the 4th reduced element (row-major over the reduced axes) of output 0. */
function fourthOfFirst(shape: number[], axes: number[]): number {
  const strides = [shape[1] * shape[2], shape[2], 1];
  let rem = 3;
  let at = 0;
  for (const a of [...axes].reverse()) {
    at += (rem % shape[a]) * strides[a];
    rem = Math.floor(rem / shape[a]);
  }
  return at;
}

function firstMismatch(got: ArrayLike<number>, want: Float64Array, bound: Float64Array) {
  for (let i = 0; i < want.length; i++) {
    const ok = Number.isFinite(want[i]) ? Math.abs(got[i] - want[i]) <= bound[i] : Object.is(got[i], want[i]);
    if (!ok) return `output ${i}: got ${got[i]}, want ${want[i]} ± ${bound[i]}`;
  }
  return null;
}

// [A, B, C] and the axes: leading (a bias gradient), trailing (row sums), middle, all (a loss).
const CASES: [number[], number[]][] = [
  [[300, 1, 37], [0]],
  [[5, 7, 129], [2]],
  [[9, 100, 3], [1]],
  [
    [70, 30, 11],
    [0, 1, 2],
  ],
  [
    [65, 2, 65],
    [0, 2],
  ],
];

describe.skipIf(skip !== undefined)(
  `WebGPU reductions, subgroup and tree kernels${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('the backends differ in what they use: subgroups on one, none on the other', () => {
      expect(noSg.subgroupSize).toBe(0);
      if (/llvmpipe/.test(withSg.adapter ?? '')) expect(withSg.subgroupSize).toBe(8);
    });

    for (const backend of ['webgpu-red', 'webgpu-red-nosg'])
      for (const kind of ['sum', 'max', 'min'] as const) {
        it(`${backend}: float32 ${kind} over leading, trailing, middle and all axes, with NaN and ±∞ outputs`, async () => {
          const bad: string[] = [];
          for (const [shape, axes] of CASES) {
            const n = shape[0] * shape[1] * shape[2];
            const v = values(n, n + axes.length);
            // A NaN in the first output's elements (its 4th: not the share of the first thread or
            // lane, which a combination that drops the others' NaN flags would still see), +∞ and
            // −∞ in the last output's (when there are 3+ outputs).
            v[fourthOfFirst(shape, axes)] = Number.NaN;
            const nOut = n / axes.reduce((p, a) => p * shape[a], 1);
            if (nOut >= 3) {
              v[n - 1] = Number.POSITIVE_INFINITY;
              v[n - 1 - (axes.includes(2) ? 1 : shape[2])] = kind === 'min' ? Number.NEGATIVE_INFINITY : 1e30;
            }
            const x = tensor(v, shape, { backend });
            const out = OPS[kind](x, axes);
            const got = await out.data();
            x.dispose();
            out.dispose();
            const { want, bound } = reference(v, shape, axes, kind);
            const r = firstMismatch(got, want, bound);
            if (r) bad.push(`[${shape}] axes ${axes}: ${r}`);
          }
          expect(bad).toEqual([]);
        });
      }

    it.each(['webgpu-red', 'webgpu-red-nosg'])('%s: int32 sum, max and min are exact', async (backend) => {
      const bad: string[] = [];
      for (const [shape, axes] of CASES) {
        const n = shape[0] * shape[1] * shape[2];
        const v = Int32Array.from(values(n, 3 * n), (u) => Math.round(u * 1000));
        const x = tensor(v, shape, { backend, dtype: 'int32' });
        for (const kind of ['sum', 'max', 'min'] as const) {
          const out = OPS[kind](x, axes);
          const got = await out.data();
          out.dispose();
          const { want } = reference(v, shape, axes, kind);
          const r = firstMismatch(got, want, new Float64Array(want.length));
          if (r) bad.push(`${kind} [${shape}] axes ${axes}: ${r}`);
        }
        x.dispose();
      }
      expect(bad).toEqual([]);
    });
  },
);
