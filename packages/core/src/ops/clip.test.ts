// clipByGlobalNorm's composition (what every backend without a fused kernel runs) on the CPU
// reference backend (resolved from source by the workspace's vitest alias): values against a
// hand computation, and no intermediate left alive when called outside any scope, as the trainer
// calls it once per step.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, expect, it } from 'vitest';
import { registerBackend, useBackend } from '../backend.js';
import { getKernel, unregisterKernel } from '../kernel-registry.js';
import { memory } from '../tensor.js';
import { compareValues } from '../testing/compare.js';
import { clipByGlobalNorm } from './clip.js';
import { tensor } from './create.js';

const NAME = 'clip-core-cpu';
const backend = registerBackend(createCpuBackend({ name: NAME, fastMatmul: false }));
beforeAll(async () => {
  await useBackend(NAME);
  // The composition is under test: drop a fused kernel should the backend ever gain one.
  if (getKernel('clipByGlobalNorm', backend)) unregisterKernel('clipByGlobalNorm', backend);
});

it('clipByGlobalNorm (composition): scaled values, and only its outputs stay alive', async () => {
  const a = tensor([3, 0], [2]);
  const b = tensor([[4]], [1, 1]);
  const live = () => memory().backends[NAME].tensors;
  const before = live();
  const r = clipByGlobalNorm([a, b], 1);
  // The outputs and the norm, nothing else (the squares, sums and coefficient are freed).
  expect(live()).toBe(before + 3);
  // ‖(3, 0, 4)‖ = 5, coefficient 1 / (5 + 1e-6).
  const coef = 1 / (5 + 1e-6);
  const tol = { rtol: 1e-6, atol: 0 };
  expect(compareValues(await r.tensors[0].data(), [3 * coef, 0], tol, 'a clipped')).toBeNull();
  expect(compareValues(await r.tensors[1].data(), [4 * coef], tol, 'b clipped')).toBeNull();
  expect(compareValues(await r.norm.data(), [5], tol, 'norm')).toBeNull();
  for (const t of [...r.tensors, r.norm, a, b]) t.dispose();
  expect(live()).toBe(before - 2);
});
