import {
  concat,
  countNonFinite,
  type DictionaryLike,
  noGrad,
  notEqual,
  reshape,
  scope,
  sum,
} from '@dictlearn/core';
import {
  type BatchStream,
  type BatchStreamOptions,
  forEachBatch,
  forwardChecked,
  nonFiniteError,
} from './batches.js';

/** Per-feature firing frequencies, from {@link featureDensity}. */
export type FeatureDensity = {
  /** For each feature i, the fraction of evaluated rows with f_i ≠ 0 (length F). */
  density: Float64Array;
  /** Fraction of the F features that never fired (density exactly 0). */
  deadFraction: number;
  /** Number of features that never fired. */
  dead: number;
  /** Batches read. */
  batches: number;
  /** Rows (tokens) read, over all batches. */
  tokens: number;
};

/**
 * Measures how often each feature fires: streams the batches through `dict.forward`, counts the
 * rows where f_i ≠ 0 per feature on the batch's backend, and accumulates the counts on the host
 * in float64 (exact for any number of rows). `1 − deadFraction` equals `frac_alive` of
 * {@link evaluate} on the same batches.
 *
 * Batches must be float32 [rows, d] with d = `dict.activationDim` and at least one row; each is
 * disposed after use unless `disposeBatches: false`. Throws a `DictlearnError` for an empty
 * stream, a malformed batch, or a batch holding NaN or Inf.
 *
 * ```ts
 * const { density, deadFraction } = await featureDensity(dict, source.batches({ batchSize: 4096 }), { maxBatches: 16 });
 * ```
 */
export async function featureDensity(
  dict: DictionaryLike,
  batches: BatchStream,
  options: BatchStreamOptions = {},
): Promise<FeatureDensity> {
  let fired: Float64Array | undefined;
  const counts = await forEachBatch('featureDensity', dict, batches, options, 1, async (x, index) => {
    const packed = scope(() =>
      noGrad(() => {
        const { features } = forwardChecked('featureDensity', dict, x, index);
        return concat([reshape(countNonFinite(x), [1]), sum(notEqual(features, 0), 0)]);
      }),
    );
    let v: Float32Array;
    try {
      v = (await packed.data()) as Float32Array;
    } finally {
      packed.dispose();
    }
    if (v[0] > 0) throw await nonFiniteError('featureDensity', x, index, v[0]);
    fired ??= new Float64Array(dict.dictSize);
    for (let i = 0; i < fired.length; i++) fired[i] += v[1 + i];
  });
  const density = fired!;
  let dead = 0;
  for (let i = 0; i < density.length; i++) {
    density[i] /= counts.tokens;
    if (density[i] === 0) dead++;
  }
  return { density, deadFraction: dead / density.length, dead, ...counts };
}
