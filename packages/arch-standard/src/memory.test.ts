// What a Standard training step's backward pass holds at its peak, on the CPU backend (float32,
// 4 bytes), checked against sizes counted by hand: the features f [B, F] the tape keeps, and no
// other [B, F] array — f's gradient from the decoder, dF = dx̂·W_decᵀ, is formed over f's own
// memory once W_dec's gradient has read f, with the ReLU's mask kept as bits (B·F/4 bytes of
// kernel scratch, outside the tensors counted here), and reluDecodeGrad's dPre takes its place
// too — besides the weight gradients and vectors. Were dF a fresh array (as when
// the two ops ran one after the other), a second [B, F] array would be live; were the squared
// error or its gradient made from a − b as a tensor, one more [B, d] array.
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
    // F > B: the weight gradients outgrow x̂ and its gradient; B > F: the other way round; d 128:
    // the [d, F] arrays are large next to f, so the optimizer step would show any [d, F]
    // temporary it made (Adam's new p, m, v, ConstrainedAdam's projection and renormalisation:
    // all written over their inputs)
    it.each([
      [256, 16, 512],
      [512, 16, 256],
      [256, 128, 512],
    ])(`${name} at B %i, d %i, F %i: the step's peak holds one [B, F] array, not two`, async (B, d, F) => {
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
      const [bf, bd, df] = [4 * B * F, 4 * B * d, 4 * d * F];
      // f (then dPre over it), and the larger of: x̂'s gradient (written over x̂ by the squared
      // error's backward) with W_dec's gradient, or two [d, F] arrays (the weight gradients;
      // tied: W_dec's two, summed over the first) once x̂'s gradient is freed; and vectors. The
      // squared error and its gradient hold no [B, d] temporary (fused ops).
      const most = Math.max(bd + df, 2 * df);
      const vectors = 3 * 4096;
      expect(extra).toBeGreaterThanOrEqual(bf + most);
      expect(extra).toBeLessThan(bf + most + vectors);
      expect(bd).toBeGreaterThan(vectors); // the bound tells one [B, d] array more
      expect(memory().backends[NAME]!.bytes).toBe(live); // nothing left behind
      x.dispose();
      trainer.dispose();
    });
  }
});
