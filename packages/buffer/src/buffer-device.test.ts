// The device reservoir (`onDevice`): the same batches as the host reservoir for the same source and
// seed, with one upload per refill and no read-back of activations (the batches' backend is spied on;
// the source yields on a second backend, as a model source hands the buffer host rows).
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  type ActivationSource,
  type Backend,
  type BatchOptions,
  memory,
  registerBackend,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { ActivationBuffer } from './buffer.js';

let train: Backend;

beforeAll(async () => {
  train = registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  registerBackend(createCpuBackend({ name: 'cpu-source', fastMatmul: false }));
  await useBackend('cpu');
  await useBackend('cpu-source');
});

/** `rows` rows whose values name them (row r: r, r + 0.25, …), on the 'cpu-source' backend. */
function source(rows: number, dim = 3): ActivationSource {
  return {
    name: 'indexed',
    dim,
    async *batches(options: BatchOptions): AsyncGenerator<Tensor> {
      for (let start = 0; start < rows; start += options.batchSize) {
        const n = Math.min(options.batchSize, rows - start);
        const v = new Float32Array(n * dim);
        for (let r = 0; r < n; r++) for (let k = 0; k < dim; k++) v[r * dim + k] = start + r + k / 4;
        yield tensor(v, [n, dim], { backend: 'cpu-source' });
      }
    },
  };
}

/** Every batch of a buffer until the source is drained, as tensors (not read yet). */
async function drain(buffer: ActivationBuffer): Promise<Tensor[]> {
  const out: Tensor[] = [];
  for (;;) {
    const t = await buffer.tryNext();
    if (!t) return out;
    out.push(t);
  }
}

async function values(ts: Tensor[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const t of ts) {
    out.push(Array.from(await t.data()));
    t.dispose();
  }
  return out;
}

describe('ActivationBuffer onDevice', () => {
  // 333 rows through a reservoir of 100 in reads of 7: refills at half, a source batch split across
  // refills (the pending rows), and a short last batch when the source ends.
  const options = {
    capacity: 100,
    batchSize: 16,
    sourceBatchSize: 7,
    seed: 5,
    backend: 'cpu',
    sourceBackend: 'cpu-source',
  };

  it('yields the batches of the host reservoir, row for row, until the source is drained', async () => {
    const host = new ActivationBuffer(source(333), options);
    const device = new ActivationBuffer(source(333), { ...options, onDevice: true });
    expect(device.onDevice).toBe(true);
    expect(host.onDevice).toBe(false);
    const a = await values(await drain(host));
    const b = await values(await drain(device));
    expect(b).toEqual(a);
    // Every row once: the buffer neither loses nor repeats rows.
    const firsts = b.flatMap((batch) => batch.filter((_, i) => i % 3 === 0)).sort((x, y) => x - y);
    expect(firsts).toEqual(Array.from({ length: 333 }, (_, i) => i));
    expect(a.at(-1)?.length).toBe((333 % 16) * 3);
    expect(device.stats).toEqual(host.stats);
    await host.close();
    await device.close();
  });

  it('uploads once per refill, gathers batches on the device and reads nothing back', async () => {
    const upload = vi.spyOn(train, 'upload');
    const read = vi.spyOn(train, 'read');
    const readSync = train.readSync ? vi.spyOn(train, 'readSync') : undefined;
    try {
      const device = new ActivationBuffer(source(333), { ...options, onDevice: true });
      const batches = await drain(device);
      const floatUploads = upload.mock.calls.filter(([, dtype]) => dtype === 'float32');
      // At most one float upload per refill (none when the source had ended), each at most a
      // reservoir's worth, together every row once.
      expect(floatUploads.length).toBeLessThanOrEqual(device.stats.refills);
      expect(floatUploads.length).toBeGreaterThanOrEqual(Math.ceil(333 / 100));
      for (const [v] of floatUploads) expect((v as ArrayLike<number>).length).toBeLessThanOrEqual(100 * 3);
      expect(floatUploads.reduce((s, [v]) => s + (v as ArrayLike<number>).length, 0)).toBe(333 * 3);
      // The only other uploads are the int32 row indices.
      expect(upload.mock.calls.every(([, dtype]) => dtype === 'float32' || dtype === 'int32')).toBe(true);
      expect(read).not.toHaveBeenCalled();
      expect(readSync ?? vi.fn()).not.toHaveBeenCalled();
      for (const t of batches) t.dispose();
      await device.close();
    } finally {
      vi.restoreAllMocks();
    }
    // The host path, for contrast: every batch is an upload of its rows.
    const host = new ActivationBuffer(source(333), options);
    const up = vi.spyOn(train, 'upload');
    try {
      const batches = await drain(host);
      expect(up.mock.calls.filter(([, dtype]) => dtype === 'float32').length).toBe(batches.length);
      for (const t of batches) t.dispose();
    } finally {
      vi.restoreAllMocks();
    }
  });

  it('frees the device reservoir on close', async () => {
    const before = memory().backends.cpu?.tensors ?? 0;
    const device = new ActivationBuffer(source(333), { ...options, onDevice: true });
    (await device.next()).dispose();
    expect(memory().backends.cpu?.tensors ?? 0).toBe(before + 1);
    await device.close();
    expect(memory().backends.cpu?.tensors ?? 0).toBe(before);
  });
});
