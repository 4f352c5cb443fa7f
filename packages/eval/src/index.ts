/**
 * `@dictlearn/eval`: evaluation of trained dictionaries (sparse autoencoders). The
 * reconstruction and sparsity metrics of dictionary_learning's `evaluate` ({@link evaluate}),
 * per-feature firing frequencies ({@link featureDensity}), mean max cosine similarity between
 * dictionaries ({@link mmcs}), recovery of known ground-truth features
 * ({@link groundTruthRecovery}), inference-time sparse coding for any trained decoder (FISTA/ISTA
 * {@link fistaCodes}, OMP {@link ompCodes}) and the amortisation gap of an encoder
 * ({@link amortisationGap}), and an aligned text table of the results ({@link formatMetrics}).
 * Everything runs on the tensors' backend with core ops.
 *
 * ```ts
 * import { evaluate, formatMetrics } from '@dictlearn/eval';
 * const metrics = await evaluate(dict, source.batches({ batchSize: 4096 }), { maxBatches: 8 });
 * console.log(formatMetrics(metrics));
 * ```
 * @packageDocumentation
 */
export type { BatchStream, BatchStreamOptions } from './batches.js';
export { type FeatureDensity, featureDensity } from './density.js';
export { type EvalMetrics, evaluate } from './evaluate.js';
export { type FormatMetricsOptions, formatMetrics, type MetricsColumn, type MetricValues } from './format.js';
export { type GroupSparsity, groupSparsity } from './groups.js';
export {
  type GroundTruthRecovery,
  groundTruthRecovery,
  type Mmcs,
  type MmcsOptions,
  mmcs,
  ZERO_NORM,
} from './similarity.js';
export {
  type AmortisationGap,
  type AmortisationOptions,
  amortisationGap,
  type CodingFigures,
  type FistaOptions,
  type FistaResult,
  fistaCodes,
  istaCodes,
  type LinearDecoder,
  linearDecoder,
  type OmpOptions,
  ompCodes,
  squaredSpectralNorm,
} from './sparse-coding.js';
