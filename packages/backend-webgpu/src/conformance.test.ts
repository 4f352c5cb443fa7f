import { createCpuBackend } from '@dictlearn/backend-cpu';
import { initBackend, registerBackend } from '@dictlearn/core';
import { conformanceSuite } from '@dictlearn/core/testing';
import { it } from 'vitest';
import { createWebGPUBackend } from './backend.js';

// The core conformance suite on WebGPU in Node (Dawn; Mesa lavapipe where there is no GPU),
// compared op by op with the CPU reference; gradients against float64 finite differences.
registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
const webgpu = registerBackend(createWebGPUBackend());

let skip: string | undefined;
try {
  await initBackend(webgpu);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

conformanceSuite({ backend: 'webgpu', reference: 'cpu', gradientBackend: 'cpu64', skip });

// The browser run of this suite (conformance.browser.test.ts) needs Chromium; where vitest found
// none it has no browser project, so say so here rather than pass in silence.
if (process.env.DICTLEARN_CHROMIUM_FOUND !== '1') {
  it.skip('WebGPU conformance in headless Chromium (skipped: Chromium not found; apt-get install chromium or set DICTLEARN_CHROMIUM)', () => {});
}
