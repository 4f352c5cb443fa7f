import { initBackend, registerBackend, useBackend, zeros } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { createWebGPUBackend } from './backend.js';

const webgpu = registerBackend(createWebGPUBackend({ name: 'webgpu-limits' }));
let skip: string | undefined;
try {
  await initBackend(webgpu);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

describe.skipIf(skip !== undefined)(`WebGPU limits${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('a tensor past the storage-buffer binding limit is refused with a clear error, and the device lives on', async () => {
    await useBackend('webgpu-limits');
    const gpu = (webgpu as unknown as { gpu: GPU }).gpu;
    expect(gpu).toBeDefined();
    // maxStorageBufferBindingSize is 128 MiB on lavapipe and SwiftShader; ask for one more float.
    const adapter = await gpu.requestAdapter();
    const limit = adapter!.limits.maxStorageBufferBindingSize;
    const elements = limit / 4 + 1;
    expect(() => zeros([elements], { backend: 'webgpu-limits' })).toThrow(
      `fill: a tensor of ${elements} elements (${elements * 4} bytes) exceeds this adapter's storage-buffer limit of ${limit} bytes`,
    );
    const ok = zeros([4], { backend: 'webgpu-limits' });
    expect(Array.from(await ok.data())).toEqual([0, 0, 0, 0]);
  });
});
