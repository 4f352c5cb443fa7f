/**
 * `@dictlearn/core`: tensors with autograd, the kernel registry, backend resolution and the
 * plugin registry. Ops are plain functions (`matmul`, `relu`, `topk`...) that dispatch to the
 * backend holding their inputs.
 *
 * ```ts
 * import '@dictlearn/backend-cpu/register';
 * import { tensor, matmul, relu, sum, valueAndGrad, useBackend } from '@dictlearn/core';
 * await useBackend('auto');
 * const w = tensor([[1, -2], [3, 4]]);
 * const { value, grads } = valueAndGrad(() => sum(relu(matmul(tensor([[1, 1]]), w))), [w]);
 * ```
 * @packageDocumentation
 */
export * from './backend.js';
export {
  type Attrs,
  collectTensors,
  commonBackend,
  customGrad,
  type GradFn,
  getKernel,
  isRecording,
  type Kernel,
  type KernelOutput,
  type KernelTensor,
  keep,
  kernelsOf,
  noGrad,
  type OpSpec,
  type Param,
  registerKernel,
  runOp,
  scope,
  type ValueAndGrad,
  Variable,
  valueAndGrad,
} from './engine.js';
export type { DictionaryLike } from './dictionary-types.js';
export * from './errors.js';
export * from './ops/index.js';
export * as ops from './ops/index.js';
export { philox4x32, philoxNormal, philoxUniform, philoxWords } from './random.js';
export * from './registry.js';
export type { ActivationSource, BatchOptions, GroundTruthSource } from './source.js';
export { broadcastShapes, normalizeAxes, reducedShape, sizeOf, stridesOf } from './shape.js';
export { type BackendMemory, type MemoryInfo, memory, nest, Tensor } from './tensor.js';
export type { DType, HostArray, NestedArray, Shape, TensorValues } from './types.js';

/** The library version written into checkpoints. */
export const VERSION = '0.1.0';
