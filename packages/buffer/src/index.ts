/**
 * `@dictlearn/buffer`: where activations come from and how they reach a trainer.
 *
 * - {@link SyntheticSource}: synthetic data with known ground-truth features (sparse_coding's
 *   generator, made exact and fast), for checking that a dictionary recovers them.
 * - {@link NpySource} and {@link SafetensorsSource}: activations saved to disk, streamed in
 *   chunks (Node only; `node:fs` is loaded when a file source is opened).
 * - {@link ActivationBuffer}: dictionary_learning's shuffling reservoir between a source and
 *   a trainer.
 *
 * ```ts
 * import '@dictlearn/backend-cpu/register';
 * import { ActivationBuffer, SyntheticSource } from '@dictlearn/buffer';
 * const buffer = new ActivationBuffer(new SyntheticSource({ seed: 1 }), { batchSize: 4096 });
 * for await (const x of buffer) { x.dispose(); break; }
 * ```
 * @packageDocumentation
 */
export {
  ActivationBuffer,
  type ActivationBufferOptions,
  type ActivationBufferStats,
  type ActivationOutput,
  type NestedActivationSource,
  takeFirst,
} from './buffer.js';
export { npySourceFactory, safetensorsSourceFactory, syntheticSourceFactory } from './factories.js';
export {
  type ActivationFile,
  type FileBatchOptions,
  type FileSourceLayout,
  type FileSourceOptions,
  NpySource,
  SafetensorsSource,
  type SafetensorsSourceOptions,
} from './files.js';
export { FILE_DTYPE_BYTES, type FileDType, type NpyHeader, npyDataOffset, parseNpyHeader } from './npy.js';
export {
  firingProbabilities,
  type SparseCodes,
  type SyntheticBatchOptions,
  SyntheticSource,
  type SyntheticSourceOptions,
} from './synthetic.js';
