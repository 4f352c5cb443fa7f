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

/**
 * Makes an {@link ActivationSource} from plain options (parsed from a CLI flag or a config
 * file). Register one with `registerPlugin('source', factory.name, factory)`; the CLI looks it
 * up with `findPlugin<SourceFactory>('source', name)`. `create` validates its options and
 * throws a `DictlearnError` naming the offending field; it may return a promise when the
 * source must read something first (file sources read their headers).
 */
export interface SourceFactory {
  /** The name it is registered under, e.g. `'synthetic'`. */
  readonly name: string;
  /** One line for `--help`: what the source produces and its main options. */
  readonly description: string;
  /** Creates the source; throws a `DictlearnError` naming the field for a bad option. */
  create(options: Record<string, unknown>): ActivationSource | Promise<ActivationSource>;
}
