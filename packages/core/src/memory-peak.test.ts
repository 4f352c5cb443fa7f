// The peak counters of memory(): hand-computed byte counts on the CPU reference backend
// (float32: 4 bytes per element), under a backend name of its own so other tests' tensors
// do not move the figures.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from './backend.js';
import { scope } from './engine.js';
import * as ops from './ops/index.js';
import { memory, resetPeakMemory } from './tensor.js';

const NAME = 'peak-cpu';
beforeAll(async () => {
  registerBackend(createCpuBackend({ name: NAME, fastMatmul: false }));
  await useBackend(NAME);
});

const mem = () => memory().backends[NAME] ?? { tensors: 0, bytes: 0, peakBytes: 0 };

describe('peak memory', () => {
  it('tracks the most bytes live at once, and restarts from the live bytes on reset', () => {
    resetPeakMemory(NAME);
    const b0 = mem().bytes;
    expect(mem().peakBytes).toBe(b0);
    const a = ops.zeros([10]); // 40 bytes
    const b = ops.zeros([5, 5]); // 100 bytes
    expect(mem().peakBytes).toBe(b0 + 140);
    a.dispose();
    const c = ops.zeros([2]); // 8 bytes: live 108, below the peak
    expect(mem().bytes).toBe(b0 + 108);
    expect(mem().peakBytes).toBe(b0 + 140);
    resetPeakMemory(NAME);
    expect(mem().peakBytes).toBe(b0 + 108);
    const d = ops.ones([100]); // 400 bytes
    expect(mem().peakBytes).toBe(b0 + 508);
    for (const t of [b, c, d]) t.dispose();
    expect(mem().bytes).toBe(b0);
    expect(mem().peakBytes).toBe(b0 + 508);
  });

  it("counts a scope's intermediates, and shared storage (reshape) once", () => {
    const x = ops.ones([1000]); // 4000 bytes
    resetPeakMemory(NAME);
    const b0 = mem().bytes;
    // The scalars 2 and 1 become tensors (4 bytes each); mul's result (4000) is still live when
    // add's (4000) is made, so the scope peaks 8008 bytes above x.
    const y = scope(() => ops.add(ops.mul(x, 2), 1));
    expect(mem().bytes).toBe(b0 + 4000);
    expect(mem().peakBytes).toBe(b0 + 8008);
    const r = ops.reshape(y, [10, 100]); // no new storage
    expect(mem().peakBytes).toBe(b0 + 8008);
    for (const t of [x, y, r]) t.dispose();
  });

  it('the total peak is of the sum over backends; a reset without a name restarts every counter', () => {
    resetPeakMemory();
    const m0 = memory();
    expect(m0.peakBytes).toBe(m0.bytes);
    for (const s of Object.values(m0.backends)) expect(s.peakBytes).toBe(s.bytes);
    const t = ops.zeros([64]); // 256 bytes
    expect(memory().peakBytes).toBe(m0.bytes + 256);
    t.dispose();
    expect(memory().peakBytes).toBe(m0.bytes + 256);
  });
});
