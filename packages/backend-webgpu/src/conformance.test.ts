import { createCpuBackend } from '@dictlearn/backend-cpu';
import { initBackend, registerBackend } from '@dictlearn/core';
import { conformanceSuite } from '@dictlearn/core/testing';
import { expect, it } from 'vitest';
import { createWebGPUBackend, type WebGPUBackend } from './backend.js';

// The core conformance suite on WebGPU in Node (Dawn; Mesa lavapipe where there is no GPU),
// compared op by op with the CPU reference; gradients against float64 finite differences.
registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
const webgpu = registerBackend(createWebGPUBackend());
// The same kernels with subgroups turned off: the workgroup-memory matmul stays tested where the
// adapter has subgroups (lavapipe: 8 lanes), and vice versa.
const fallback = registerBackend(createWebGPUBackend({ name: 'webgpu-no-subgroups', subgroups: false }));

let skip: string | undefined;
try {
  await initBackend(webgpu);
  await initBackend(fallback);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

conformanceSuite({ backend: 'webgpu', reference: 'cpu', gradientBackend: 'cpu64', skip });
conformanceSuite({ backend: 'webgpu-no-subgroups', reference: 'cpu', gradientBackend: 'cpu64', skip });

it.skipIf(skip !== undefined)(
  'the subgroup matmul is used where the adapter has fixed-width subgroups',
  () => {
    const gpu = webgpu as WebGPUBackend;
    expect((fallback as WebGPUBackend).subgroupSize).toBe(0);
    // lavapipe reports subgroups of exactly 8 lanes; other adapters may legitimately fall back.
    if (/llvmpipe/.test(gpu.adapter ?? '')) expect(gpu.subgroupSize).toBe(8);
  },
);

// The browser run of this suite (conformance.browser.test.ts) needs Chromium; where vitest found
// none it has no browser project, so say so here rather than pass in silence.
if (process.env.DICTLEARN_CHROMIUM_FOUND !== '1') {
  it.skip('WebGPU conformance in headless Chromium (skipped: Chromium not found; apt-get install chromium or set DICTLEARN_CHROMIUM)', () => {});
}
