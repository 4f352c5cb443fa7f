import {
  add,
  batchTopkEncode,
  DictlearnError,
  div,
  fill,
  gatherRows,
  greater,
  l2Norm,
  less,
  lessEqual,
  linearBiasRelu,
  matmul,
  max,
  maximum,
  mean,
  min,
  mul,
  noGrad,
  type Params,
  philoxUniform,
  reshape,
  scatterLast,
  scope,
  seedFor,
  sparseDecode,
  sparseOuter,
  square,
  sub,
  sum,
  type Tensor,
  tensor,
  topk,
  topkEncode,
  transpose,
  where,
  zeros,
} from '@dictlearn/core';

/**
 * Building blocks of the TopK family (SAELens layout: `W_enc` [d, F], `W_dec` [F, d]), written
 * with core ops only so gradients and every backend come for free.
 */

/** Where the k largest activations are chosen: per row (TopK) or over the whole batch (BatchTopK). */
export type TopKMode = 'row' | 'batch';

/**
 * What {@link sparseEncode} returns: the k live features of each row as a sparse code (core's
 * layouts: per row `values`/`indices` [B, k]; over the batch 1-D [B·k] entries with their `rows`),
 * never the dense [B, F] features.
 */
export interface TopKCode {
  /** The kept activations, in descending order (per row, or over the whole batch). */
  values: Tensor;
  /** Their features (int32), the shape of `values`. */
  indices: Tensor;
  /** The batch layout's row of each entry (int32 [B·k]); undefined per row. */
  rows?: Tensor;
  /** Rows B of the batch. */
  batch: number;
  /** The encoder bias with b_dec folded in, b_enc − b_dec W_enc [F] (aux-k reuses it). */
  shift: Tensor;
}

/** b_enc − b_dec W_enc [F]: (x − b_dec) W_enc + b_enc = x W_enc + this. */
export function encoderShift(p: Params): Tensor {
  return sub(p.b_enc, reshape(matmul(reshape(p.b_dec, [1, -1]), p.W_enc), [-1]));
}

/**
 * The TopK encoder: keep the k largest of post = ReLU((x − b_dec) W_enc + b_enc) per row
 * (`'row'`, core's fused `topkEncode`) or the B·k largest of the whole [B, F] batch (`'batch'`,
 * `batchTopkEncode`). The pre-activation is computed as x W_enc + (b_enc − b_dec W_enc) (same
 * value; b_dec's gradient then costs a [1, d]·[d, F] product). Backends select inside the
 * encoder product's epilogue, and the gradient touches only the kept features.
 */
export function sparseEncode(p: Params, x: Tensor, k: number, mode: TopKMode): TopKCode {
  const shift = encoderShift(p);
  const batch = x.shape[0];
  if (mode === 'row') return { ...topkEncode(x, p.W_enc, shift, k), batch, shift };
  return { ...batchTopkEncode(x, p.W_enc, shift, k), batch, shift };
}

/** x̂ = f W_dec + b_dec from the sparse code, gathering k decoder rows per sample. */
export function decodeSparse(p: Params, code: TopKCode): Tensor {
  const opt = code.rows ? { rows: code.rows, batch: code.batch } : {};
  return sparseDecode(code.values, code.indices, p.W_dec, p.b_dec, opt);
}

/** The dense features [B, F] of a per-row code (inference's `encode`). */
export function denseFeatures(code: TopKCode, numFeatures: number): Tensor {
  if (code.rows) throw new DictlearnError('topk', 'denseFeatures takes a per-row code');
  return scatterLast(code.indices, code.values, numFeatures);
}

/** Σ_b f[b] [F] (no gradient): non-zero exactly for the features that fired in the batch. */
export function featureActivity(code: TopKCode, numFeatures: number): Tensor {
  return noGrad(() => {
    const ones = fill([code.batch, 1], 1, { backend: code.values.backend });
    const opt = code.rows ? { rows: code.rows } : {};
    return reshape(sparseOuter(code.values, code.indices, ones, numFeatures, opt), [numFeatures]);
  });
}

/** Mean number of non-zero features per row (0-d, no gradient). */
export function codeL0(code: TopKCode): Tensor {
  return noGrad(() => div(sum(greater(code.values, 0)), code.batch));
}

/** What {@link batchTopkDense} returns. */
export interface DenseBatchCode {
  /** The features [B, F]: the kept activations, zero elsewhere. */
  f: Tensor;
  /** The kept activations [1, B·k], in descending order. */
  values: Tensor;
  /** The encoder bias with b_dec folded in [F]. */
  shift: Tensor;
}

/**
 * BatchTopK's features as a dense [B, F] matrix (Matryoshka's nested prefixes slice it): the
 * B·k largest of ReLU(x W_enc + shift) over the batch, zero elsewhere; same selection and ties
 * as `batchTopkEncode`. Returns the kept values too (the threshold's EMA reads them).
 */
export function batchTopkDense(p: Params, x: Tensor, k: number): DenseBatchCode {
  const [B, F] = [x.shape[0], p.W_enc.shape[1]];
  const shift = encoderShift(p);
  const post = linearBiasRelu(x, p.W_enc, shift);
  const { values, indices } = topk(reshape(post, [1, B * F]), k * B);
  return { f: reshape(scatterLast(indices, values, B * F), [B, F]), values, shift };
}

/** x̂ = f W_dec + b_dec. */
export function decodeLinear(p: Params, f: Tensor): Tensor {
  return add(matmul(f, p.W_dec), p.b_dec);
}

/**
 * mean_b ‖x − x̂‖² (squared error summed over d, averaged over the batch; DL's `l2_loss`): core's
 * fused {@link meanSquaredError} (no [B, d] temporary), re-exported.
 */
export { meanSquaredError } from '@dictlearn/core';

/** mean_b ‖x − x̂‖₂ (DL `evaluate`'s l2_loss, logged). */
export function meanL2(x: Tensor, xhat: Tensor): Tensor {
  return div(sum(l2Norm(sub(x, xhat), -1)), x.shape[0]);
}

/** Settings of the aux-k loss. */
export interface AuxKSettings {
  /** How many dead features reconstruct the residual (0 = ⌊d/2⌋). */
  auxK: number;
  /** Tokens without firing after which a feature is dead. */
  deadTokens: number;
}

/** What {@link auxKLoss} returns. */
export interface AuxK {
  /** The normalised aux-k loss (0 when no feature is dead). */
  loss: Tensor;
  /** Number of dead features (0-d). */
  dead: Tensor;
}

/**
 * The aux-k loss of dictionary_learning's TopK trainers (after OpenAI's): the residual
 * e = x − x̂ (no gradient) is reconstructed, without b_dec, from the k_aux largest activations
 * ReLU(x W_enc + shift) among dead features, aux = mean_b ‖e − ê‖² / mean_b ‖e − mean_b e‖²;
 * zero when no feature is dead (or the residual has no variance, DL's `nan_to_num`).
 *
 * Dead, as DL counts it after this step's update: a feature that did not fire in this batch
 * (`activity` ≤ 0) and whose tokens since firing, (steps since fired + 1)·B, reach
 * `deadTokens`. The trainer counts steps (`ctx.stepsSinceFired`), so this is DL's token count
 * when every batch has B rows. k_aux = min(auxK, features that may be dead); a non-dead feature
 * among the chosen adds 0, so the value and gradient are DL's. Only the candidates' encoder
 * columns and decoder rows are touched: the [B, F] activations are never built.
 */
export function auxKLoss(
  p: Params,
  x: Tensor,
  xhat: Tensor,
  code: { shift: Tensor; activity: Tensor },
  settings: AuxKSettings,
  stepsSinceFired: Readonly<Int32Array> | undefined,
): AuxK {
  const [B, d] = x.shape;
  const F = code.activity.shape[0];
  const backend = x.backend;
  const picked: number[] = [];
  if (stepsSinceFired) {
    for (let j = 0; j < F; j++) if ((stepsSinceFired[j] + 1) * B >= settings.deadTokens) picked.push(j);
  }
  const count = picked.length;
  if (count === 0 || B < 2) return { loss: zeros([], { backend }), dead: zeros([], { backend }) };
  const kAux = Math.min(settings.auxK > 0 ? settings.auxK : Math.floor(d / 2), count);
  const cand = tensor(Int32Array.from(picked), [count], { dtype: 'int32', backend });
  const deadNow = noGrad(() => lessEqual(gatherRows(code.activity, cand), 0)); // [count]
  // The candidates' activations ReLU(x W_enc[:, cand] + shift[cand]) [B, count], live only where dead now.
  const post = linearBiasRelu(x, gatherRows(transpose(p.W_enc), cand), gatherRows(code.shift, cand), {
    transB: true,
  });
  const { values, indices } = topk(mul(post, deadNow), kAux);
  const eHat = sparseDecode(values, indices, gatherRows(p.W_dec, cand));
  // scope: the [B, d] temporaries of the denominator go now, not when the loss's scope ends
  const [e, scale, dead] = noGrad(() =>
    scope(() => {
      const e = sub(x, xhat);
      const denom = div(sum(square(sub(e, mean(e, 0, true)))), B);
      const dead = sum(deadNow);
      const ok = mul(greater(denom, 0), greater(dead, 0));
      return [e, where(ok, div(1, maximum(denom, 1e-30)), 0), dead];
    }),
  );
  return { loss: mul(div(sum(square(sub(e, eHat))), B), scale), dead };
}

/** The largest float32, a finite stand-in for +∞ (WGSL need not support infinities). */
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * BatchTopK's threshold after one step, as dictionary_learning's `update_threshold`:
 * m = the smallest kept activation above 0; θ ← m the first time (θ < 0: not yet set), else
 * θ ← β·θ + (1 − β)·m. When no kept activation is positive θ stays as it was (DL folds in
 * m = 0 there, and its TopK trainer an infinite m), so θ is always finite.
 */
export function nextThreshold(theta: Tensor, kept: Tensor, beta: number): Tensor {
  return noGrad(() => {
    const positive = greater(kept, 0);
    const m = min(where(positive, kept, FLOAT32_MAX));
    const next = where(less(theta, 0), m, add(mul(theta, beta), mul(m, 1 - beta)));
    return where(greater(max(positive), 0), next, theta);
  });
}

/** Philox stream of the seed's `'init'` domain for the median's sample (W_dec draws stream 0). */
export const MEDIAN_SAMPLE_STREAM = 2;

/**
 * n distinct row indices of [0, rows) (partial Fisher–Yates) from stream
 * {@link MEDIAN_SAMPLE_STREAM} of the seed's `'init'` Philox domain, which no data, ground-truth
 * or buffer-sampling draw uses; all rows in order when n ≥ rows.
 */
export function sampleRows(rows: number, n: number, seed: number): Int32Array {
  const idx = Int32Array.from({ length: rows }, (_, i) => i);
  if (n >= rows) return idx;
  const u = philoxUniform(n, seedFor('init', seed), MEDIAN_SAMPLE_STREAM);
  for (let i = 0; i < n; i++) {
    const j = i + Math.min(Math.floor(u[i] * (rows - i)), rows - i - 1);
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, n);
}

/** Weiszfeld iterations of {@link geometricMedian} (dictionary_learning's `max_iter`). */
export const MEDIAN_ITERATIONS = 100;

/**
 * The geometric median of the rows of `points` [n, d] → [d] by Weiszfeld's iteration, as
 * dictionary_learning's `geometric_median`: start at the mean; y ← Σ wᵢxᵢ / Σ wᵢ with
 * wᵢ = 1/max(‖xᵢ − y‖, 1e-12). A fixed number of iterations (DL stops early once a step moves
 * less than 1e-5), so every backend runs the same ops without reading back.
 */
export function geometricMedian(points: Tensor, iterations = MEDIAN_ITERATIONS): Tensor {
  return noGrad(() => {
    let guess = mean(points, 0);
    for (let i = 0; i < iterations; i++) {
      // Each iteration frees its [n, d] temporaries: left to the caller's scope, 100 iterations
      // held 2·100·n·d floats (420 MB at n 1024, d 512) until the first step ended.
      const next = scope(() => {
        const w = div(1, maximum(l2Norm(sub(points, guess), -1, true), 1e-12)); // [n, 1]
        return div(sum(mul(points, w), 0), sum(w));
      });
      guess.dispose();
      guess = next;
    }
    return guess;
  });
}

/** b_dec ← geometric median of up to `sample` rows of the first batch (a seeded sample). */
export function medianInit(x: Tensor, sample: number, seed: number): Params {
  const rows = x.shape[0];
  if (rows === 0) throw new DictlearnError('topk', 'the first batch is empty: no geometric median');
  const pts =
    sample >= rows
      ? x
      : gatherRows(
          x,
          tensor(sampleRows(rows, sample, seed), [sample], { dtype: 'int32', backend: x.backend }),
        );
  return { b_dec: geometricMedian(pts) };
}
