import {
  concat,
  countNonFinite,
  type DictionaryLike,
  div,
  l1Norm,
  l2Norm,
  mean,
  mul,
  noGrad,
  notEqual,
  reshape,
  scope,
  square,
  sub,
  sum,
  type Tensor,
} from '@dictlearn/core';
import {
  type BatchStream,
  type BatchStreamOptions,
  forEachBatch,
  forwardChecked,
  nonFiniteError,
} from './batches.js';

/**
 * The reconstruction and sparsity metrics of dictionary_learning's `evaluate`, under its key
 * names. Every metric except `frac_alive` is computed per batch and then averaged over the
 * batches with equal weight (as DL does, so a smaller last batch counts as much as a full one).
 * For one batch x [B, d], with reconstruction x̂ and features f [B, F]:
 */
export type EvalMetrics = {
  /** mean_b ‖x − x̂‖₂ — the L2 norm of the residual, **not** squared. */
  l2_loss: number;
  /** mean_b ‖f‖₁. */
  l1_loss: number;
  /** mean_b #{i : f_i ≠ 0}, the average number of active features per row. */
  l0: number;
  /**
   * 1 − Σ_j var_b(x − x̂)_j / Σ_j var_b(x_j): the variance is over the batch rows, per
   * activation dimension j, summed over j. 1 is a perfect reconstruction; 0 is no better than
   * the batch mean; it can be negative.
   */
  frac_variance_explained: number;
  /** mean_b cos(x, x̂). NaN when some row has ‖x‖ = 0 or ‖x̂‖ = 0 (as in DL). */
  cossim: number;
  /** mean_b ‖x̂‖₂ / ‖x‖₂ (below 1: the reconstruction is shrunk). */
  l2_ratio: number;
  /**
   * mean_b ‖x̂‖₂² / mean_b ⟨x, x̂⟩, as dictionary_learning and SAEBench report it: γ of the Gated
   * SAE paper (eq. 10), the γ that minimises E‖x̂/γ − x‖²; below 1 means shrinkage.
   */
  relative_reconstruction_bias: number;
  /** Fraction of the F features with f_i ≠ 0 on at least one row of the evaluated batches. */
  frac_alive: number;
  /** Batches evaluated. */
  batches: number;
  /** Rows (tokens) evaluated, over all batches. */
  tokens: number;
};

// Layout of the per-batch vector read back from the device: these scalars, then the F
// per-feature firing counts.
const L2 = 0;
const L1 = 1;
const L0 = 2;
const RESIDUAL_SS = 3;
const TOTAL_SS = 4;
const COSSIM = 5;
const L2_RATIO = 6;
const XHAT_SQ = 7;
const X_DOT_XHAT = 8;
const NON_FINITE = 9;
const SCALARS = 10;

/**
 * One batch on the batch's backend: every reduction runs there, and one vector of 10 scalars
 * plus the F firing counts comes back.
 */
function batchStatistics(dict: DictionaryLike, x: Tensor, index: number): Tensor {
  return scope(() =>
    noGrad(() => {
      const { reconstruction: xh, features: f } = forwardChecked('evaluate', dict, x, index);
      const residual = sub(x, xh);
      const fired = notEqual(f, 0);
      const xNorm = l2Norm(x);
      const xhNorm = l2Norm(xh);
      const dot = sum(mul(x, xh), -1);
      // Σ over rows and columns of (t − column mean)². torch.var divides by B − 1 (unbiased),
      // a population variance by B; either factor cancels in the ratio of frac_variance_explained.
      const centredSquares = (t: Tensor) => sum(square(sub(t, mean(t, 0, true))));
      const scalars: Tensor[] = [];
      scalars[L2] = mean(l2Norm(residual));
      scalars[L1] = mean(l1Norm(f));
      scalars[L0] = mean(sum(fired, -1));
      scalars[RESIDUAL_SS] = centredSquares(residual);
      scalars[TOTAL_SS] = centredSquares(x);
      scalars[COSSIM] = mean(div(dot, mul(xNorm, xhNorm)));
      scalars[L2_RATIO] = mean(div(xhNorm, xNorm));
      scalars[XHAT_SQ] = mean(square(xhNorm));
      scalars[X_DOT_XHAT] = mean(dot);
      scalars[NON_FINITE] = countNonFinite(x);
      return concat([...scalars.map((s) => reshape(s, [1])), sum(fired, 0)]);
    }),
  );
}

/**
 * Evaluates a dictionary on a stream of activation batches with the metrics of
 * dictionary_learning's `evaluate` (see {@link EvalMetrics} for each definition).
 *
 * Each batch x [rows, d] goes through `dict.forward(x, { outputFeatures: true })` on the batch's
 * backend; the reductions run there too and only a short vector per batch is read back, so it
 * works the same on CPU and GPU backends. Every intermediate tensor is freed; each batch is
 * disposed after use unless `disposeBatches: false`.
 *
 * Throws a `DictlearnError` when the stream is empty, when a batch is not a float32
 * [rows, d] tensor with d = `dict.activationDim` and at least 2 rows (the variance of
 * frac_variance_explained needs two), when a batch holds NaN or Inf, or when the dictionary
 * returns tensors of the wrong shape.
 *
 * ```ts
 * const metrics = await evaluate(dict, source.batches({ batchSize: 4096 }), { maxBatches: 8 });
 * console.log(formatMetrics(metrics));
 * ```
 */
export async function evaluate(
  dict: DictionaryLike,
  batches: BatchStream,
  options: BatchStreamOptions = {},
): Promise<EvalMetrics> {
  const totals = new Float64Array(SCALARS);
  let alive: Uint8Array | undefined;
  let fve = 0;
  let bias = 0;
  const counts = await forEachBatch('evaluate', dict, batches, options, 2, async (x, index) => {
    const packed = batchStatistics(dict, x, index);
    let v: Float32Array;
    try {
      v = (await packed.data()) as Float32Array;
    } finally {
      packed.dispose();
    }
    if (v[NON_FINITE] > 0) throw await nonFiniteError('evaluate', x, index, v[NON_FINITE]);
    for (let i = 0; i < SCALARS; i++) totals[i] += v[i];
    fve += 1 - v[RESIDUAL_SS] / v[TOTAL_SS];
    // E‖x̂‖² / E⟨x, x̂⟩, dictionary_learning's and SAEBench's direction (below 1: shrinkage).
    bias += v[XHAT_SQ] / v[X_DOT_XHAT];
    alive ??= new Uint8Array(dict.dictSize);
    for (let i = 0; i < alive.length; i++) if (v[SCALARS + i] > 0) alive[i] = 1;
  });
  const n = counts.batches;
  let aliveCount = 0;
  for (const a of alive!) aliveCount += a;
  return {
    l2_loss: totals[L2] / n,
    l1_loss: totals[L1] / n,
    l0: totals[L0] / n,
    frac_variance_explained: fve / n,
    cossim: totals[COSSIM] / n,
    l2_ratio: totals[L2_RATIO] / n,
    relative_reconstruction_bias: bias / n,
    frac_alive: aliveCount / dict.dictSize,
    batches: n,
    tokens: counts.tokens,
  };
}
