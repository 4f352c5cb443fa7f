/**
 * `@dictlearn/backend-webgpu`: every core op as WGSL compute kernels, in browsers
 * (`navigator.gpu`) and in Node (Dawn through the `webgpu` package; on Linux without a GPU,
 * Mesa's lavapipe Vulkan driver runs it on the CPU).
 *
 * ```ts
 * import '@dictlearn/backend-webgpu/register';
 * import { useBackend } from '@dictlearn/core';
 * await useBackend('webgpu');
 * ```
 * @packageDocumentation
 */
export { createWebGPUBackend, type WebGPUBackend, type WebGPUBackendOptions } from './backend.js';
export type { GpuDeviceStats } from './device.js';
