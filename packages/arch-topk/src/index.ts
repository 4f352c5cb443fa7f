/**
 * `@dictlearn/arch-topk`: the TopK family of sparse autoencoders as dictlearn architecture
 * plugins — `topk` (k largest per row), `batchTopk` (B·k largest per batch, a learned inference
 * threshold) and `matryoshkaBatchTopk` (nested prefixes that each reconstruct), with
 * dictionary_learning's aux-k loss, lr scaling and geometric-median b_dec. Plugins are values:
 *
 * ```ts
 * import { topk } from '@dictlearn/arch-topk';
 * const arch = topk({ k: 32 });
 * ```
 * @packageDocumentation
 */

export {
  type AuxK,
  type AuxKSettings,
  auxKLoss,
  batchTopkDense,
  codeL0,
  type DenseBatchCode,
  decodeLinear,
  decodeSparse,
  denseFeatures,
  encoderShift,
  featureActivity,
  geometricMedian,
  MEDIAN_ITERATIONS,
  MEDIAN_SAMPLE_STREAM,
  medianInit,
  nextThreshold,
  sampleRows,
  sparseEncode,
  type TopKCode,
  type TopKMode,
} from './sparse.js';
export {
  type BatchTopKConfig,
  batchTopk,
  factories,
  type MatryoshkaBatchTopKConfig,
  matryoshkaBatchTopk,
  type TopKConfig,
  topk,
} from './topk.js';
