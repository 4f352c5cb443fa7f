// What a Standard training step holds at its peak on WebGPU, against the CPU backend at the same
// sizes (the oracle: arch-standard's memory test checks the CPU's figure against sizes counted by
// hand). Both count live tensors' bytes, so a WebGPU kernel or composition that made a [B, F] or
// [d, F] temporary the CPU avoids (Adam's new p, m, v; the decoder rows' projection and
// renormalisation; the fused backward over f) shows up as a difference.
import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  Adam,
  initBackend,
  memory,
  randomNormal,
  registerBackend,
  resetPeakMemory,
  Trainer,
  useBackend,
  Variable,
} from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { createWebGPUBackend } from './backend.js';

registerBackend(createCpuBackend({ name: 'cpu-mem', fastMatmul: false, kernelThreads: 1 }));
const webgpu = registerBackend(createWebGPUBackend({ name: 'webgpu-mem' }));
let skip: string | undefined;
try {
  await initBackend(webgpu);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

/** Bytes a second Standard step holds at its peak beyond what lives between steps. */
async function stepExtra(backend: string, B: number, d: number, F: number): Promise<number> {
  await useBackend(backend);
  const trainer = new Trainer(
    {
      architecture: standard({ l1Penalty: 0.1 }),
      dictSize: F,
      warmupSteps: 0,
      sparsityWarmupSteps: 0,
      seed: 0,
    },
    d,
    1000,
    0,
    backend,
  );
  const x = randomNormal([B, d], { seed: 5, backend });
  await trainer.update(x, false);
  const live = memory().backends[backend]!.bytes;
  resetPeakMemory(backend);
  await trainer.update(x, false);
  const extra = memory().backends[backend]!.peakBytes - live;
  expect(memory().backends[backend]!.bytes).toBe(live);
  x.dispose();
  trainer.dispose();
  return extra;
}

describe.skipIf(skip !== undefined)(
  `Standard step memory on WebGPU${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it.each([
      [256, 128, 512],
      [512, 16, 256],
    ])('B %i, d %i, F %i: the same peak as the CPU backend', async (B, d, F) => {
      const cpu = await stepExtra('cpu-mem', B, d, F);
      const gpu = await stepExtra('webgpu-mem', B, d, F);
      expect(gpu).toBe(cpu);
      // f and the two weight gradients at least: the figure is a real peak
      expect(cpu).toBeGreaterThanOrEqual(4 * B * F + 2 * 4 * d * F);
    });

    // The step's peak is usually the backward pass's, which hides the optimizer's: so the
    // optimizer alone, as core's optim.test.ts checks it on the CPU.
    it('a ConstrainedAdam step makes no [rows, cols] temporary', async () => {
      await useBackend('webgpu-mem');
      const [rows, cols] = [512, 64];
      const p = new Variable(randomNormal([rows, cols], { seed: 1, backend: 'webgpu-mem' }), 'W_dec');
      const adam = new Adam([p], { unitNormRows: [p] });
      const g = randomNormal([rows, cols], { seed: 2, backend: 'webgpu-mem' });
      const live = memory().backends['webgpu-mem']!.bytes;
      resetPeakMemory('webgpu-mem');
      adam.step(new Map([[p, g]]), 1e-3);
      const array = 4 * rows * cols;
      expect(memory().backends['webgpu-mem']!.peakBytes - live).toBeLessThan(array);
      expect(memory().backends['webgpu-mem']!.bytes).toBe(live - array); // the gradient is gone
      adam.dispose();
      p.value.dispose();
    });
  },
);
