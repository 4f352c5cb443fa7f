// core's fused meanSquaredError against the expression it replaces, div(sum(square(sub(x, x̂))), B)
// with autograd's gradients, bit for bit (value and both inputs' gradients), on the CPU backend
// (whose sumSquaredDifference and scaledDifference kernels it runs); and its bad input.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from './backend.js';
import { valueAndGrad } from './engine.js';
import * as ops from './ops/index.js';
import { memory, resetPeakMemory } from './tensor.js';

const NAME = 'mse-cpu';
beforeAll(async () => {
  registerBackend(createCpuBackend({ name: NAME, fastMatmul: false }));
  await useBackend(NAME);
});

describe('meanSquaredError', () => {
  it.each([
    [37, 24],
    [128, 96],
  ])('[%i, %i]: the value and both gradients of the unfused expression, bit for bit', async (B, d) => {
    const x = ops.randomNormal([B, d], { seed: 1 });
    const xhat = ops.randomNormal([B, d], { seed: 2 });
    const fused = valueAndGrad(() => ops.mul(ops.meanSquaredError(x, xhat), 0.7), [x, xhat]);
    const plain = valueAndGrad(
      () => ops.mul(ops.div(ops.sum(ops.square(ops.sub(x, xhat))), B), 0.7),
      [x, xhat],
    );
    expect(fused.value.dataSync()[0]).toBe(plain.value.dataSync()[0]);
    for (const t of [x, xhat]) {
      expect(Array.from(fused.grads.get(t)!.dataSync())).toEqual(Array.from(plain.grads.get(t)!.dataSync()));
    }
    // x̂'s gradient is (x̂ − x)·2·0.7/B: check one element by hand too
    const [xv, hv] = [x.dataSync()[5], xhat.dataSync()[5]];
    expect(fused.grads.get(xhat)!.dataSync()[5]).toBeCloseTo(((hv - xv) * 2 * 0.7) / B, 6);
    for (const t of [fused.value, plain.value, ...fused.grads.values(), ...plain.grads.values(), x, xhat])
      t.dispose();
  });

  it('holds no [B, d] temporary: its pass and its gradient are one array each', () => {
    const [B, d] = [256, 64];
    const x = ops.randomNormal([B, d], { seed: 3 });
    const xhat = ops.randomNormal([B, d], { seed: 4 });
    const base = memory().backends[NAME]!.bytes;
    resetPeakMemory(NAME);
    const r = valueAndGrad(() => ops.meanSquaredError(x, xhat), [xhat]);
    // x̂'s gradient and scalars
    expect(memory().backends[NAME]!.peakBytes - base).toBeLessThan(2 * 4 * B * d);
    for (const t of [r.value, ...r.grads.values(), x, xhat]) t.dispose();
  });

  it('refuses different shapes and 0-d inputs by name', () => {
    const a = ops.zeros([2, 3]);
    expect(() => ops.meanSquaredError(a, ops.zeros([3, 2]))).toThrow(
      /meanSquaredError.*same shape.*\[2, 3\].*\[3, 2\]/,
    );
    expect(() => ops.meanSquaredError(ops.scalar(1), ops.scalar(2))).toThrow(/meanSquaredError.*batch axis/);
  });
});
