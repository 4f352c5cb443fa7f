/**
 * Side-effect entry: registers the WebGPU backend as `'webgpu'` (started by `useBackend`).
 * @packageDocumentation
 */
import { registerBackend } from '@dictlearn/core';
import { createWebGPUBackend } from './backend.js';

/** The backend registered by this module. */
export const webgpu = createWebGPUBackend();
registerBackend(webgpu);
