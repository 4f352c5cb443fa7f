// geometricMedian's 100 Weiszfeld iterations free their temporaries as they go: the peak of live
// tensor bytes stays a small multiple of the points' size instead of growing with the iterations.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { memory, randomNormal, registerBackend, resetPeakMemory, scope, useBackend } from '@dictlearn/core';
import { expect, it } from 'vitest';
import { geometricMedian } from './sparse.js';

registerBackend(createCpuBackend({ name: 'median-cpu', fastMatmul: false }));

it('geometricMedian peaks at a few copies of the points, not one per iteration', async () => {
  await useBackend('median-cpu');
  const [n, d] = [256, 64];
  const points = randomNormal([n, d], { seed: 1 });
  const pointBytes = 4 * n * d;
  resetPeakMemory('median-cpu');
  const before = memory().backends['median-cpu'].bytes;
  const m = scope(() => geometricMedian(points));
  const peak = memory().backends['median-cpu'].peakBytes - before;
  // One iteration holds x − y and x·w ([n, d] each) plus [n, 1] and [d] vectors: under 3 copies.
  // Keeping every iteration's temporaries would reach 2·100 copies.
  expect(peak).toBeLessThan(3 * pointBytes);
  expect(memory().backends['median-cpu'].bytes - before).toBe(4 * d);
  m.dispose();
  points.dispose();
});
