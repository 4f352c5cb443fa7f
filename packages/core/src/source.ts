import type { Tensor } from './tensor.js';

/** Options of {@link ActivationSource.batches}. */
export interface BatchOptions {
  /** Rows per yielded batch (a source may yield a smaller last batch). */
  batchSize: number;
  /** Backend the tensors are created on (default: the current backend). */
  backend?: string;
}

/**
 * Where activations come from: a synthetic generator, files of saved activations, or a model run.
 * `batches()` yields float32 tensors of shape [rows, dim]; the consumer disposes each one.
 * Register a source factory with `registerPlugin('source', name, factory)` to make it
 * available by name to the CLI.
 */
export interface ActivationSource {
  /** A short description for logs, e.g. `synthetic(d=256, features=512, seed=0)`. */
  readonly name: string;
  /** Width d of each activation vector. */
  readonly dim: number;
  /** Yields batches [rows, dim] until the source is exhausted (synthetic sources never are). */
  batches(options: BatchOptions): AsyncIterable<Tensor>;
}

/** An activation source that knows the features that generated it (synthetic data). */
export interface GroundTruthSource extends ActivationSource {
  /** The true feature directions, one unit-norm row per feature: [features, dim]. */
  groundTruth(backend?: string): Tensor;
}
