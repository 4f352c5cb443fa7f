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

export * from './arch.js';
export * from './backend.js';
export {
  DICTIONARY_FILES,
  Dictionary,
  type DictionaryConfig,
  LIBRARY_VERSION,
  LIBRARY_VERSION as VERSION,
  parseConfig,
  sha256Hex,
  verifyChecksum,
} from './dictionary.js';
export type { DictionaryLike, ForwardOutput } from './dictionary-types.js';
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
export * from './errors.js';
export { ensureDir } from './io/dirs.js';
export { readFileBytes, writeFileAtomic } from './io/fs.js';
export * from './io/onnx-writer.js';
export * from './io/protobuf.js';
export * from './io/safetensors.js';
export * from './kernel-registry.js';
export * from './ops/index.js';
export * as ops from './ops/index.js';
export * from './optim.js';
export {
  type PurposeSeed,
  philox4x32,
  philoxKey,
  philoxNormal,
  philoxUniform,
  philoxUnitRows,
  philoxWords,
  RANDOM_PURPOSE_TAGS,
  type RandomPurpose,
  type Seed,
  seedFor,
} from './random.js';
export * from './registry.js';
export * from './schedule.js';
export {
  broadcastShapes,
  broadcastStrides,
  normalizeAxes,
  reducedShape,
  sizeOf,
  stridesOf,
} from './shape.js';
export type { ActivationSource, BatchOptions, GroundTruthSource, SourceFactory } from './source.js';
export { parseSourceOptions, type SourceOptionKind } from './source-options.js';
export { closestName } from './suggest.js';
export { type BackendMemory, type MemoryInfo, memory, nest, resetPeakMemory, Tensor } from './tensor.js';
export {
  applyTrainerState,
  loadTrainerState,
  readTrainerState,
  saveTrainerState,
  type TrainerState,
  type TrainerStateInfo,
} from './train/checkpoint.js';
export { fractionVarianceExplained, meanL0 } from './train/metrics.js';
export {
  CHANGEABLE_RUN_FIELDS,
  checkpointDir,
  type DataPosition,
  diffRunConfig,
  RUN_FILE,
  type RunConfigChange,
  RunStateError,
  type RunStateProblem,
  TrainInterruptedError,
  type TrainLogEntry,
  type TrainResult,
  type TrainSAEOptions,
  trainSAE,
} from './train/train-sae.js';
export {
  DEAD_LOG_STEPS,
  type ResampleCounts,
  type ResolvedTrainerSettings,
  type StepLogs,
  Trainer,
  type TrainerSpec,
  weightedSampleWithoutReplacement,
} from './train/trainer.js';
export type { DType, HostArray, NestedArray, Shape, TensorValues } from './types.js';
