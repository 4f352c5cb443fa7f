import { describe, expect, it, vi } from 'vitest';
import { type Backend, backendFailure, currentBackend, registerBackend, useBackend } from './backend.js';
import { unregisterPlugin } from './registry.js';

function fakeBackend(name: string, priority: number, init: () => Promise<void>): Backend {
  return {
    name,
    priority,
    init,
    upload: (v) => v,
    read: async (d) => d as Float32Array,
    free: () => {},
  };
}

describe('backend resolution', () => {
  it("'auto' takes the highest priority that starts, logs the fallback and why; init runs once", async () => {
    const gpuInit = vi.fn(async () => {
      throw new Error('no adapter: Vulkan driver missing');
    });
    const gpu = registerBackend(fakeBackend('fake-gpu', 10_000, gpuInit));
    const cpuInit = vi.fn(async () => {});
    const cpu = registerBackend(fakeBackend('fake-cpu', 9_000, cpuInit));
    const log = vi.fn();
    expect(await useBackend('auto', { log })).toBe(cpu);
    expect(log).toHaveBeenCalledWith(
      "dictlearn: using backend 'fake-cpu' ('fake-gpu' unavailable: no adapter: Vulkan driver missing)",
    );
    expect(currentBackend()).toBe(cpu);
    expect(backendFailure('fake-gpu')).toBe('no adapter: Vulkan driver missing');
    await expect(useBackend('fake-gpu')).rejects.toThrow(
      "useBackend: backend 'fake-gpu' cannot start: no adapter: Vulkan driver missing",
    );
    await useBackend('fake-cpu');
    expect(gpuInit).toHaveBeenCalledTimes(1);
    expect(cpuInit).toHaveBeenCalledTimes(1);
    unregisterPlugin('backend', gpu.name);
    unregisterPlugin('backend', cpu.name);
  });

  it("'auto' passes over a backend that started but says why it should not be chosen", async () => {
    const slow = registerBackend({
      ...fakeBackend('fake-soft', 20_000, async () => {}),
      autoSkipReason: 'software adapter',
    });
    const cpu = registerBackend(fakeBackend('fake-cpu2', 19_000, async () => {}));
    const log = vi.fn();
    expect(await useBackend('auto', { log })).toBe(cpu);
    expect(log).toHaveBeenCalledWith(
      "dictlearn: using backend 'fake-cpu2' ('fake-soft' passed over: software adapter)",
    );
    expect(await useBackend('fake-soft')).toBe(slow); // naming it still works
    unregisterPlugin('backend', slow.name);
    unregisterPlugin('backend', cpu.name);
  });

  it('naming an unknown backend says which are registered and what to install', async () => {
    await expect(useBackend('cuda-missing')).rejects.toThrow(
      /no backend named 'cuda-missing' is registered .*install @dictlearn\/backend-cuda-missing/,
    );
  });
});
