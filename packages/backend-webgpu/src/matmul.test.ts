// The matmul kernels at edge sizes: every dimension over {1, 3, 17, 65, 129} (partial tiles,
// K not a multiple of the k-step), dimensions that are multiples of 4 but not of a tile (the vec4
// kernels' edge guards), all four transposes, batched and broadcast B, and the fused
// relu(x·W + b) epilogue, on both the subgroup and the no-subgroup kernels. The oracle is a
// float64 product computed here on the host, with a per-element float32 error bound.
import { linearBiasRelu, matmul, type Tensor, tensor } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { type MatmulDims, type MatmulKernel, matmulKernelFor } from './matmul.js';
import { expectedMatmulKernels, kernelTestBackends, values } from './test-backends.js';

const { withSg, noSg, skip } = await kernelTestBackends('webgpu-mm');

interface Case extends MatmulDims {
  batch: number;
  /** B is one matrix shared by every batch entry. */
  broadcastB?: boolean;
}

/**
 * float64 C = op(A)·op(B) and, per element, the float32 error bound: a length-K dot product in
 * float32 is within K·ε·Σ|aᵢbᵢ| of the exact value (ε = 2⁻²⁴), whatever the summation order.
 */
function reference(c: Case, a: Float32Array, b: Float32Array): { want: Float64Array; bound: Float64Array } {
  const { M, N, K, transA, transB, batch } = c;
  const want = new Float64Array(batch * M * N);
  const bound = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++)
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const av = a[z * M * K + (transA ? k * M + i : i * K + k)];
          const bz = c.broadcastB ? 0 : z * K * N;
          const bv = b[bz + (transB ? j * K + k : k * N + j)];
          s += av * bv;
          abs += Math.abs(av * bv);
        }
        want[(z * M + i) * N + j] = s;
        bound[(z * M + i) * N + j] = 1e-6 + 2 * K * 2 ** -24 * abs;
      }
  return { want, bound };
}

/** The first element outside its bound, or null. */
function firstMismatch(got: Float32Array, want: Float64Array, bound: Float64Array): string | null {
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= bound[i])) return `element ${i}: got ${got[i]}, want ${want[i]}`;
  }
  if (got.length !== want.length) return `length ${got.length}, want ${want.length}`;
  return null;
}

async function runCase(backend: string, c: Case): Promise<string | null> {
  const { M, N, K, transA, transB, batch } = c;
  const a = values(batch * M * K, 1 + M + 7 * K);
  const b = values((c.broadcastB ? 1 : batch) * K * N, 2 + N + 5 * K);
  const lead = batch > 1 ? [batch] : [];
  const at = tensor(a, [...lead, ...(transA ? [K, M] : [M, K])], { backend });
  const bt = tensor(b, [...(c.broadcastB ? [] : lead), ...(transB ? [N, K] : [K, N])], { backend });
  let out: Tensor | undefined;
  try {
    out = matmul(at, bt, { transA, transB });
    const got = (await out.data()) as Float32Array;
    const { want, bound } = reference(c, a, b);
    return firstMismatch(got, want, bound);
  } finally {
    at.dispose();
    bt.dispose();
    out?.dispose();
  }
}

const ODD = [1, 3, 17, 65, 129];
// Multiples of 4 that are not multiples of any tile (16 rows, 32 / 64 columns, 4 k).
const BY4 = [4, 12, 68, 132];
const TRANSPOSES = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const;

/** Each dimension over `sizes` with the other two fixed at `others`. */
function sweep(sizes: number[], others: [number, number]): [number, number, number][] {
  const [p, q] = others;
  return [
    ...sizes.map((s) => [s, p, q] as [number, number, number]),
    ...sizes.map((s) => [p, s, q] as [number, number, number]),
    ...sizes.map((s) => [p, q, s] as [number, number, number]),
  ];
}

const SHAPES: [number, number, number][] = [...sweep(ODD, [17, 65]), ...sweep(BY4, [20, 36])];

describe.skipIf(skip !== undefined)(`WebGPU matmul at edge sizes${skip ? ` (skipped: ${skip})` : ''}`, () => {
  for (const backend of ['webgpu-mm', 'webgpu-mm-nosg'])
    for (const [transA, transB] of TRANSPOSES) {
      it(`${backend}: M, N, K over {1,3,17,65,129} and {4,12,68,132}, transA ${transA}, transB ${transB}`, async () => {
        const bad: string[] = [];
        for (const [M, N, K] of SHAPES) {
          const r = await runCase(backend, { M, N, K, transA, transB, batch: 1 });
          if (r) bad.push(`${M}×${N}×${K}: ${r}`);
        }
        expect(bad).toEqual([]);
      });
    }

  it.each(['webgpu-mm', 'webgpu-mm-nosg'])(
    '%s: batched (3 products) and broadcast B, odd and multiple-of-4 sizes, all transposes',
    async (backend) => {
      const bad: string[] = [];
      for (const [M, N, K] of [
        [17, 65, 3],
        [20, 36, 68],
        [5, 129, 12],
      ])
        for (const [transA, transB] of TRANSPOSES)
          for (const broadcastB of [false, true]) {
            const c = { M, N, K, transA, transB, batch: 3, broadcastB };
            const r = await runCase(backend, c);
            if (r) bad.push(`${JSON.stringify(c)}: ${r}`);
          }
      expect(bad).toEqual([]);
    },
  );

  it.each(['webgpu-mm', 'webgpu-mm-nosg'])(
    '%s: relu(x·W + b) (the fused encoder) matches relu of the float64 product plus bias',
    async (backend) => {
      const bad: string[] = [];
      for (const [M, N, K] of [
        [17, 65, 129],
        [20, 36, 68],
        [3, 132, 12],
      ])
        for (const transB of [false, true]) {
          const x = values(M * K, 3 + K);
          const w = values(K * N, 4 + N);
          const bias = values(N, 5);
          const xt = tensor(x, [M, K], { backend });
          const wt = tensor(w, transB ? [N, K] : [K, N], { backend });
          const bt = tensor(bias, [N], { backend });
          const out = linearBiasRelu(xt, wt, bt, { transB });
          const got = (await out.data()) as Float32Array;
          for (const t of [xt, wt, bt, out]) t.dispose();
          const { want, bound } = reference({ M, N, K, transA: false, transB, batch: 1 }, x, w);
          for (let i = 0; i < want.length; i++) want[i] = Math.max(0, want[i] + bias[i % N]);
          const r = firstMismatch(got, want, bound);
          if (r) bad.push(`${M}×${N}×${K} transB ${transB}: ${r}`);
        }
      expect(bad).toEqual([]);
    },
  );

  it('the sweep reaches every kernel: vec4 ones where dims allow, scalar ones otherwise', () => {
    const used = new Set<MatmulKernel>();
    for (const sg of [withSg.subgroupSize, noSg.subgroupSize])
      for (const [M, N, K] of SHAPES)
        for (const [transA, transB] of TRANSPOSES) used.add(matmulKernelFor({ M, N, K, transA, transB }, sg));
    expect([...used].sort()).toEqual(expectedMatmulKernels(withSg.subgroupSize).sort());
    // lavapipe: 8-lane subgroups, so the subgroup kernels are the ones its runs test.
    if (/llvmpipe/.test(withSg.adapter ?? '')) expect(withSg.subgroupSize).toBe(8);
  });
});

describe('matmul kernel choice (no GPU needed)', () => {
  const d = (M: number, N: number, K: number, transA = false, transB = false) => ({
    M,
    N,
    K,
    transA,
    transB,
  });
  it('vec4 kernels need K and the contiguous axes of A and B to be multiples of 4', () => {
    expect(matmulKernelFor(d(5, 8, 12), 8)).toBe('subgroup-vec4'); // M need not be (A rows are along K)
    expect(matmulKernelFor(d(5, 8, 12, true), 8)).toBe('subgroup'); // transposed A is contiguous along M
    expect(matmulKernelFor(d(8, 5, 12, false, true), 8)).toBe('subgroup-vec4'); // transposed B: along K
    expect(matmulKernelFor(d(8, 5, 12), 8)).toBe('subgroup'); // B along N
    expect(matmulKernelFor(d(8, 8, 6), 0)).toBe('tiled');
    expect(matmulKernelFor(d(8, 8, 8), 0)).toBe('vec4');
    expect(matmulKernelFor(d(8, 8, 8), 4)).toBe('vec4'); // 4-lane subgroups: the broadcast needs 8
  });
});
