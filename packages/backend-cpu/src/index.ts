/**
 * `@dictlearn/backend-cpu`: the reference backend. Every kernel is plain TypeScript (it runs
 * in browsers too) and is the oracle other backends are tested against; in Node, large
 * matmuls go to onnxruntime-node's MLAS kernels when the optional dependency loads.
 *
 * ```ts
 * import '@dictlearn/backend-cpu/register';
 * import { useBackend } from '@dictlearn/core';
 * await useBackend('cpu');
 * ```
 * @packageDocumentation
 */

export { type CpuBackend, type CpuBackendOptions, createCpuBackend, type FastPathStatus } from './backend.js';
export type { BlasKernels } from './fast/blas-matmul.js';
export type { FloatArray } from './kernels/context.js';
export { FAST_MATMUL_MIN_WORK, matmulTS } from './kernels/matmul.js';
