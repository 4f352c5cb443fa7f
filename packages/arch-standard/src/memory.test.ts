// What a Standard training step's backward pass holds at its peak, on the CPU backend (float32,
// 4 bytes), checked against sizes counted by hand: the features f [B, F] the tape keeps, and no
// other [B, F] array — f's gradient from the decoder, dF = dx̂·W_decᵀ, is formed over f's own
// memory once W_dec's gradient has read f, with the ReLU's mask kept as bits (B·F/4 bytes of
// kernel scratch, outside the tensors counted here), and reluDecodeGrad's dPre takes its place
// too — besides [B, d] and [d, F]-sized arrays. Were dF a fresh array (as when the two ops ran
// one after the other), a second [B, F] array would be live.
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
    it(`${name}: the step's peak holds one [B, F] array, not two`, async () => {
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
      // f, and at most eight arrays of the [B, d] / [d, F] sizes (x̂, its gradient, the weight
      // gradients, their sum and products) and vectors
      expect(extra).toBeGreaterThanOrEqual(bf);
      expect(extra).toBeLessThan(bf + 8 * small);
      expect(bf + 8 * small).toBeLessThan(2 * bf); // the bound tells one from two
      expect(memory().backends[NAME]!.bytes).toBe(live); // nothing left behind
      x.dispose();
      trainer.dispose();
    });
  }
});
