import { createCpuBackend } from '@dictlearn/backend-cpu';
import { initBackend, registerBackend } from '@dictlearn/core';
import { conformanceSuite } from '@dictlearn/core/testing';
import { createWebGPUBackend } from './backend.js';

// The same conformance suite in headless Chromium, on navigator.gpu (SwiftShader where there is
// no GPU), against the CPU backend running in the same page.
registerBackend(createCpuBackend({ name: 'cpu' }));
registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
const webgpu = registerBackend(createWebGPUBackend());

let skip: string | undefined;
try {
  await initBackend(webgpu);
} catch (e) {
  skip = `no WebGPU in this browser: ${(e as Error).message}`;
}

conformanceSuite({ backend: 'webgpu', reference: 'cpu', gradientBackend: 'cpu64', skip });
