// Batched submission: dispatches are recorded into one command encoder and submitted together.
// The oracle is the same backend with batching off (maxBatchedDispatches: 1, one submit per
// dispatch, as before batching): the same kernels in the same order, so values must agree bit
// for bit. Submissions are counted on GPUQueue.prototype.submit, independently of the device's
// own counters.
import { standard } from '@dictlearn/arch-standard';
import { topk } from '@dictlearn/arch-topk';
import {
  add,
  initBackend,
  neg,
  randomNormal,
  registerBackend,
  type Tensor,
  Trainer,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { afterEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import { createWebGPUBackend, type WebGPUBackend } from './backend.js';

const batched = registerBackend(createWebGPUBackend({ name: 'webgpu-batched' }));
const single = registerBackend(createWebGPUBackend({ name: 'webgpu-single', maxBatchedDispatches: 1 }));
const noPool = registerBackend(createWebGPUBackend({ name: 'webgpu-nopool', poolBytes: 0 }));
let skip: string | undefined;
let queueProto: { submit: GPUQueue['submit'] } | undefined;
try {
  await initBackend(batched);
  await initBackend(single);
  await initBackend(noPool);
  // Every GPUQueue shares this prototype, so a spy on it sees the backends' submits.
  const device = await (await batched.gpu!.requestAdapter())!.requestDevice();
  queueProto = Object.getPrototypeOf(device.queue);
  device.destroy();
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

const D = 32;
const F = 64;
const B = 64;
const archs = {
  standard: () => standard({ l1Penalty: 0.05 }),
  topk: () => topk({ k: 8 }),
} as const;

function trainer(arch: keyof typeof archs, backend: string): Trainer {
  const spec = { architecture: archs[arch](), dictSize: F, warmupSteps: 0, sparsityWarmupSteps: 0, seed: 4 };
  return new Trainer(spec, D, 100, 0, backend);
}

let spy: MockInstance | undefined;
afterEach(() => {
  spy?.mockRestore();
  spy = undefined;
});

describe.skipIf(skip !== undefined)(`WebGPU batched submission${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it.each(['standard', 'topk'] as const)(
    '%s: a training step is at most 3 submissions (it records over 30 dispatches)',
    async (arch) => {
      await useBackend('webgpu-batched');
      const b = batched as WebGPUBackend;
      const t = trainer(arch, b.name);
      const x = randomNormal([B, D], { seed: 1, backend: b.name });
      await t.update(x, false); // first step: pipelines compiled, TopK's b_dec init
      // The Trainer flushes at the end of the step: the update runs while the host moves on.
      expect(b.stats!.pendingDispatches).toBe(0);
      spy = vi.spyOn(queueProto!, 'submit');
      const before = b.stats!;
      const steps = 4;
      for (let s = 0; s < steps; s++) await t.update(x, false);
      await b.sync!();
      const after = b.stats!;
      const submitsPerStep = spy.mock.calls.length / steps;
      const dispatchesPerStep = (after.dispatches - before.dispatches) / steps;
      // Per step: the loss read (forward + backward), the read of which features fired, and the
      // update, flushed at the end of the step. (Before batching: one submit per dispatch.)
      expect(submitsPerStep).toBeLessThanOrEqual(3);
      expect(spy.mock.calls.filter((c) => c[0].length !== 1)).toEqual([]);
      expect(dispatchesPerStep).toBeGreaterThan(30);
      expect(after.submits - before.submits).toBe(spy.mock.calls.length);
      // A logged step adds one read (one submit) per number logged from the GPU, no more.
      const n0 = spy.mock.calls.length;
      const logs = await t.update(x, true);
      expect(spy.mock.calls.length - n0).toBeLessThanOrEqual(3 + Object.keys(logs).length);
      x.dispose();
      t.dispose();
    },
  );

  it.each(['standard', 'topk'] as const)(
    '%s: batched training equals one-submit-per-dispatch training bit for bit',
    async (arch) => {
      const run = async (name: string) => {
        await useBackend(name);
        const t = trainer(arch, name);
        const x = randomNormal([B, D], { seed: 2, backend: name });
        const losses: number[] = [];
        for (let s = 0; s < 5; s++) losses.push((await t.update(x, s === 4)).loss);
        const params: Record<string, number[]> = {};
        for (const [k, v] of Object.entries(t.vars)) params[k] = Array.from(await v.value.data());
        x.dispose();
        t.dispose();
        return { losses, params };
      };
      const one = await run('webgpu-single');
      const many = await run('webgpu-batched');
      expect(many.losses).toEqual(one.losses);
      expect(many.params).toEqual(one.params);
      expect(one.losses[4]).toBeLessThan(one.losses[0]);
    },
  );

  it('an upload never overtakes recorded work that reads the pooled buffer it could reuse', async () => {
    await useBackend('webgpu-batched');
    const a = tensor([1, 2, 3, 4]);
    const y = neg(a); // recorded, not submitted
    a.dispose(); // a's buffer goes back to the pool while the recorded neg still reads it
    const c = tensor([10, 20, 30, 40]); // same size: the pool would hand back a's buffer
    expect(Array.from(await y.data())).toEqual([-1, -2, -3, -4]);
    expect(Array.from(await c.data())).toEqual([10, 20, 30, 40]);
    for (const t of [y, c]) t.dispose();
  });

  it('a buffer destroyed past the pool limit outlives the recorded work that uses it', async () => {
    await useBackend('webgpu-nopool');
    const a = tensor([1, 2, 3, 4]);
    const y = neg(a);
    a.dispose(); // no pool: destroyed, but the recorded neg is not submitted yet
    expect(Array.from(await y.data())).toEqual([-1, -2, -3, -4]);
    expect((noPool as WebGPUBackend).stats!.pooledBytes).toBe(0);
    y.dispose();
  });

  it('past maxBatchedDispatches (512) a submit is forced, and a long chain stays exact', async () => {
    await useBackend('webgpu-batched');
    const b = batched as WebGPUBackend;
    await b.sync!();
    const before = b.stats!.submits;
    const one = tensor([1]);
    let x: Tensor = tensor([0, 0.5, -3]);
    for (let i = 0; i < 600; i++) {
      const next = add(x, one); // each dispatch reads its own parameters: the arena slices must not mix
      x.dispose();
      x = next;
    }
    expect(b.stats!.submits - before).toBe(1); // the 513th dispatch forced the first submit
    expect(Array.from(await x.data())).toEqual([600, 600.5, 597]);
    x.dispose();
    one.dispose();
  });

  it('device memory: live buffers, the pool and the peak, in hand-computed bytes', async () => {
    await useBackend('webgpu-batched');
    const b = batched as WebGPUBackend;
    await b.sync!();
    b.trimPool();
    const base = b.stats!.allocatedBytes; // live tensors of earlier tests and the parameter arena
    expect(b.stats!.pooledBytes).toBe(0);
    b.resetPeak();
    const x = tensor(new Float32Array(1000)); // 4000 bytes, a new buffer (the pool is empty)
    const y = tensor(new Float32Array(500)); // 2000 bytes
    expect(b.stats!.allocatedBytes).toBe(base + 6000);
    x.dispose(); // to the pool: still device memory
    expect(b.stats!).toMatchObject({ allocatedBytes: base + 6000, pooledBytes: 4000 });
    const z = tensor(new Float32Array(1000)); // takes the pooled buffer back: nothing new
    expect(b.stats!).toMatchObject({ allocatedBytes: base + 6000, pooledBytes: 0 });
    for (const t of [y, z]) t.dispose();
    b.trimPool();
    expect(b.stats!).toMatchObject({ allocatedBytes: base, pooledBytes: 0, peakAllocatedBytes: base + 6000 });
  });

  it('recorded work nobody waits for is submitted once the caller yields to the event loop', async () => {
    await useBackend('webgpu-batched');
    const b = batched as WebGPUBackend;
    await b.sync!();
    const before = b.stats!.submits;
    const a = tensor([1]);
    const y = neg(a);
    expect(b.stats!.submits).toBe(before);
    await new Promise((r) => setTimeout(r, 20));
    expect(b.stats!.submits).toBe(before + 1);
    for (const t of [a, y]) t.dispose();
  });
});
