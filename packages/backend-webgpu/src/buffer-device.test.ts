// ActivationBuffer with its reservoir in GPU memory (`onDevice`): the batches equal the host
// reservoir's on the CPU backend for the same source and seed, each refill is one upload, and no
// activation comes back from the GPU while batches are drawn (the WebGPU backend's read is spied on).

import { createCpuBackend } from '@dictlearn/backend-cpu';
import { ActivationBuffer } from '@dictlearn/buffer';
import {
  type ActivationSource,
  type BatchOptions,
  initBackend,
  registerBackend,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { describe, expect, it, vi } from 'vitest';
import { createWebGPUBackend } from './backend.js';

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
const webgpu = registerBackend(createWebGPUBackend());
let skip: string | undefined;
try {
  await initBackend(webgpu);
  await useBackend('cpu');
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

/** `rows` rows of `dim` pseudo-random values on the CPU backend (host rows, as a model source gives). */
function source(rows: number, dim: number): ActivationSource {
  return {
    name: 'host-rows',
    dim,
    async *batches(options: BatchOptions): AsyncGenerator<Tensor> {
      for (let start = 0; start < rows; start += options.batchSize) {
        const n = Math.min(options.batchSize, rows - start);
        const v = new Float32Array(n * dim);
        for (let i = 0; i < v.length; i++) v[i] = Math.sin(start * dim + i) * 3;
        yield tensor(v, [n, dim], { backend: 'cpu' });
      }
    },
  };
}

async function drain(buffer: ActivationBuffer): Promise<Tensor[]> {
  const out: Tensor[] = [];
  for (let t = await buffer.tryNext(); t; t = await buffer.tryNext()) out.push(t);
  return out;
}

describe.skipIf(skip !== undefined)(`ActivationBuffer on WebGPU${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const rows = 2000;
  const dim = 24;
  const options = { capacity: 600, batchSize: 64, sourceBatchSize: 90, seed: 9, sourceBackend: 'cpu' };

  it('gives the host reservoir batches (CPU backend), gathered in GPU memory without a read-back', async () => {
    const host = new ActivationBuffer(source(rows, dim), { ...options, backend: 'cpu' });
    const expected: number[][] = [];
    for (const t of await drain(host)) {
      expected.push(Array.from(await t.data()));
      t.dispose();
    }
    const read = vi.spyOn(webgpu, 'read');
    const upload = vi.spyOn(webgpu, 'upload');
    let batches: Tensor[];
    const device = new ActivationBuffer(source(rows, dim), { ...options, backend: 'webgpu', onDevice: true });
    try {
      batches = await drain(device);
      expect(read).not.toHaveBeenCalled();
      const floats = upload.mock.calls.filter(([, dtype]) => dtype === 'float32');
      expect(floats.length).toBeLessThanOrEqual(device.stats.refills);
      expect(floats.reduce((s, [v]) => s + (v as ArrayLike<number>).length, 0)).toBe(rows * dim);
    } finally {
      vi.restoreAllMocks();
    }
    expect(batches.every((t) => t.backend === 'webgpu')).toBe(true);
    const got: number[][] = [];
    for (const t of batches) {
      got.push(Array.from(await t.data()));
      t.dispose();
    }
    expect(got.length).toBe(Math.ceil(rows / 64));
    expect(got).toEqual(expected);
    await device.close();
  });
});
