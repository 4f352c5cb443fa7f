// What a TopK training step holds at its peak beyond what lives between steps (parameters, Adam's
// moments, the batch), on the CPU backend. Counted by hand: the two weight gradients [d, F], x̂
// and its gradient [B, d], and the sparse codes' [B, k] values, indices and their gradients, with
// vectors. The squared error holds no [B, d] temporary (core's fused meanSquaredError), the
// aux-k loss's residual statistics are freed before the backward pass, a tensor's gradients are
// summed over the first (W_enc gets two: the encoder's and the b_dec fold's), and the gradient
// clipping, projection and Adam write over what they are given: none adds a [B, d] or [d, F]
// array. (Were any of them to make one, the peak would grow by at least a [B, d] array.)
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { memory, randomNormal, registerBackend, resetPeakMemory, Trainer, useBackend } from '@dictlearn/core';
import { beforeAll, expect, it } from 'vitest';
import { topk } from './topk.js';

const NAME = 'topk-mem-cpu';
beforeAll(async () => {
  registerBackend(createCpuBackend({ name: NAME, fastMatmul: false, kernelThreads: 1 }));
  await useBackend(NAME);
});

it.each([
  [256, 256, 1024, 16],
  [512, 128, 256, 8],
])(
  'TopK at B %i, d %i, F %i, k %i: the weight gradients, x̂ and its gradient, the codes',
  async (B, d, F, k) => {
    const trainer = new Trainer(
      {
        architecture: topk({ k }),
        dictSize: F,
        warmupSteps: 0,
        sparsityWarmupSteps: 0,
        seed: 0,
      },
      d,
      1_000_000,
      0,
      NAME,
    );
    const x = randomNormal([B, d], { seed: 3, backend: NAME });
    await trainer.update(x, false);
    const live = memory().backends[NAME]!.bytes;
    resetPeakMemory(NAME);
    await trainer.update(x, false);
    const extra = memory().backends[NAME]!.peakBytes - live;
    const [df, bd, codes] = [4 * d * F, 4 * B * d, 4 * 4 * B * k];
    const vectors = 8 * 4 * (F + d);
    const most = Math.max(2 * bd + df, 3 * df);
    expect(extra).toBeGreaterThanOrEqual(most);
    expect(extra).toBeLessThan(most + codes + vectors);
    expect(bd).toBeGreaterThan(codes + vectors); // the bound tells one [B, d] array more
    expect(memory().backends[NAME]!.bytes).toBe(live);
    x.dispose();
    trainer.dispose();
  },
);
