// The sparse-code ops on the CPU reference backend (resolved from source by the workspace's
// vitest alias; core itself does not depend on it): bad input, and the fused kernels against
// core's reference compositions, values and gradients, at sizes beyond the op fixtures.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from '../backend.js';
import { scope, valueAndGrad } from '../engine.js';
import { getKernel, type OpName, registerKernel, unregisterKernel } from '../kernel-registry.js';
import type { Tensor } from '../tensor.js';
import { tensor, zeros } from './create.js';
import { square, sub } from './elementwise.js';
import { randomNormal, randomUniform } from './random.js';
import { mean, sum } from './reduce.js';
import { batchTopkEncode, sparseDecode, sparseDot, sparseOuter, topkEncode } from './sparse.js';

const NAME = 'sparse-core-cpu';
const backend = registerBackend(createCpuBackend({ name: NAME, fastMatmul: false }));
beforeAll(async () => {
  await useBackend(NAME);
});

const SPARSE_OPS: OpName[] = ['topkEncode', 'batchTopkEncode', 'sparseDecode', 'sparseDot', 'sparseOuter'];

/** Runs `fn` with the sparse kernels removed (core's compositions run), then puts them back. */
async function withoutKernels<T>(fn: () => Promise<T>): Promise<T> {
  const saved = SPARSE_OPS.map((op) => [op, getKernel(op, backend)] as const);
  for (const [op] of saved) unregisterKernel(op, backend);
  try {
    return await fn();
  } finally {
    for (const [op, k] of saved) if (k) registerKernel(op, backend, k);
  }
}

const read = async (ts: Tensor[]) => Promise.all(ts.map(async (t) => Array.from(await t.data())));

describe('sparse ops: bad input', () => {
  it('names the op and what was wrong', () => {
    const x = zeros([4, 3]);
    const w = zeros([3, 5]);
    const b = zeros([5]);
    const idx = tensor([0, 1, 2, 3], [2, 2], { dtype: 'int32' });
    expect(() => topkEncode(x, w, b, 6)).toThrow(
      /topkEncode: k must be an integer in \[0, 5\] for 5 features, got 6/,
    );
    expect(() => topkEncode(x, zeros([4, 5]), b, 2)).toThrow(
      /topkEncode: inner dimensions differ: x \[4, 3\] has 3, W \[4, 5\] has 4/,
    );
    expect(() => topkEncode(x, w, zeros([4]), 2)).toThrow(/topkEncode: bias must be \[5\]/);
    expect(() => batchTopkEncode(x, w, b, 1.5)).toThrow(/batchTopkEncode: k must be an integer/);
    expect(() => sparseDecode(zeros([2, 2]), zeros([2, 2]), zeros([4, 3]))).toThrow(
      /sparseDecode: indices must be int32, got float32/,
    );
    expect(() => sparseDecode(zeros([2, 3]), idx, zeros([4, 3]))).toThrow(
      /sparseDecode: values \[2, 3\] and indices \[2, 2\] must have the same shape/,
    );
    expect(() =>
      sparseDecode(zeros([4]), tensor([0, 1, 2, 3], [4], { dtype: 'int32' }), zeros([4, 3])),
    ).toThrow(/sparseDecode: values and indices must be \[B, k\] \(or 1-D with \{ rows \}\)/);
    const rows = tensor([0, 0, 1, 1], [4], { dtype: 'int32' });
    expect(() =>
      sparseDecode(zeros([4]), tensor([0, 1, 2, 3], [4], { dtype: 'int32' }), zeros([4, 3]), undefined, {
        rows,
      }),
    ).toThrow(/sparseDecode: with rows, \{ batch \} \(the output's rows\) must be a non-negative integer/);
    expect(() => sparseDecode(zeros([2, 2]), idx, zeros([4, 3]), zeros([2]))).toThrow(
      /sparseDecode: bias must be \[3\]/,
    );
    expect(() => sparseDot(zeros([3, 3]), idx, zeros([4, 3]))).toThrow(/sparseDot: indices must be \[3, k\]/);
    expect(() => sparseDot(zeros([2, 2]), idx, zeros([4, 3]))).toThrow(
      /sparseDot: y \[2, 2\] and W \[4, 3\] must have the same width/,
    );
    expect(() => sparseOuter(zeros([2, 2]), idx, zeros([3, 3]), 4)).toThrow(
      /sparseOuter: values \[2, 2\] and y \[3, 3\] must have the same number of rows/,
    );
    expect(() => sparseOuter(zeros([2, 2]), idx, zeros([2, 3]), -1)).toThrow(
      /sparseOuter: numFeatures must be a non-negative integer/,
    );
  });
});

describe('fused kernels agree with the reference compositions', () => {
  const [B, d, F, k] = [32, 24, 80, 6];
  const inputs = () => ({
    x: randomNormal([B, d], { seed: 1 }),
    w: randomNormal([F, d], { seed: 2, std: 0.3 }),
    b: randomUniform([F], { seed: 3, low: -0.5, high: 0.2 }),
    wd: randomNormal([F, d], { seed: 4 }),
    bd: randomNormal([d], { seed: 5 }),
  });

  /** The TopK loss and its gradients, through the per-row or the batch code. */
  const lossAndGrads = (batch: boolean) =>
    scope(() => {
      const { x, w, b, wd, bd } = inputs();
      const { value, grads } = valueAndGrad(() => {
        let xhat: Tensor;
        if (batch) {
          const c = batchTopkEncode(x, w, b, k, { transB: true });
          xhat = sparseDecode(c.values, c.indices, wd, bd, { rows: c.rows, batch: B });
        } else {
          const c = topkEncode(x, w, b, k, { transB: true });
          xhat = sparseDecode(c.values, c.indices, wd, bd);
        }
        return mean(sum(square(sub(x, xhat)), -1));
      }, [x, w, b, wd, bd]);
      return [value, ...grads.values()];
    });

  for (const batch of [false, true]) {
    it(`${batch ? 'batchTopkEncode' : 'topkEncode'} → sparseDecode: loss and every gradient`, async () => {
      const fused = await read(lossAndGrads(batch));
      const reference = await withoutKernels(async () => read(lossAndGrads(batch)));
      expect(fused.length).toBe(6);
      fused.forEach((g, i) => {
        const scale = Math.max(1e-3, ...reference[i].map(Math.abs));
        const worst = Math.max(...g.map((v, j) => Math.abs(v - reference[i][j])));
        expect(worst / scale, `output ${i}`).toBeLessThan(1e-5);
      });
      // the batch code keeps B·k entries over the batch, so some rows hold more than k
      if (batch) {
        const rows = await scope(() => {
          const { x, w, b } = inputs();
          return batchTopkEncode(x, w, b, k, { transB: true }).rows;
        }).data();
        const counts = new Map<number, number>();
        for (const r of rows) counts.set(r, (counts.get(r) ?? 0) + 1);
        expect(Math.max(...counts.values())).toBeGreaterThan(k);
      }
    });
  }
});
