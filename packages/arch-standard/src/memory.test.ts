// What a Standard training step's backward pass holds at its peak, on the CPU backend (float32,
// 4 bytes), checked against sizes counted by hand: the features f [B, F] the tape keeps, and one
// more [B, F] array for the encoder's backward — dF = dx̂·W_decᵀ, over which reluGradRowSum
// writes dPre in place (the backward pass hands dF over) — besides [B, d] and [d, F]-sized
// arrays. Were dPre a fresh array, or the backward's gradients kept to its end, a third [B, F]
// array would be live.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { memory, randomNormal, registerBackend, resetPeakMemory, Trainer, useBackend } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { standard, tied } from './standard.js';

const NAME = 'std-mem-cpu';
beforeAll(async () => {
  registerBackend(createCpuBackend({ name: NAME, fastMatmul: false, kernelThreads: 1 }));
  await useBackend(NAME);
});

describe('Standard step memory', () => {
  for (const [name, make] of [
    ['standard', standard],
    ['tied', tied],
  ] as const) {
    it(`${name}: the step's peak holds two [B, F] arrays, not three`, async () => {
      const [B, d, F] = [256, 16, 512];
      const trainer = new Trainer(
        {
          architecture: make({ l1Penalty: 0.1 }),
          dictSize: F,
          warmupSteps: 0,
          sparsityWarmupSteps: 0,
          seed: 0,
        },
        d,
        1000,
        0,
        NAME,
      );
      const x = randomNormal([B, d], { seed: 5, backend: NAME });
      await trainer.update(x, false);
      const live = memory().backends[NAME]!.bytes; // parameters, Adam moments, the batch
      resetPeakMemory(NAME);
      await trainer.update(x, false);
      const extra = memory().backends[NAME]!.peakBytes - live;
      const [bf, small] = [4 * B * F, 4 * (B * d + d * F)];
      // two [B, F] arrays, and at most eight arrays of the [B, d] / [d, F] sizes (x̂, its
      // gradient, the weight gradients, their sum and products) and vectors
      expect(extra).toBeGreaterThanOrEqual(2 * bf);
      expect(extra).toBeLessThan(2 * bf + 8 * small);
      expect(2 * bf + 8 * small).toBeLessThan(3 * bf); // the bound tells two from three
      expect(memory().backends[NAME]!.bytes).toBe(live); // nothing left behind
      x.dispose();
      trainer.dispose();
    });
  }
});
