import {
  add,
  DictlearnError,
  div,
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
  seedFor,
  square,
  sub,
  sum,
  type Tensor,
  tensor,
  topk,
  where,
  zeros,
} from '@dictlearn/core';

/**
 * Building blocks of the TopK family (SAELens layout: `W_enc` [d, F], `W_dec` [F, d]), written
 * with core ops only so gradients and every backend come for free.
 */

/** Where the k largest activations are chosen: per row (TopK) or over the whole batch (BatchTopK). */
export type TopKMode = 'row' | 'batch';

/** What {@link sparseEncode} returns. */
export interface TopKCode {
  /** ReLU((x − b_dec) W_enc + b_enc) [B, F], every feature (aux-k picks dead ones from it). */
  post: Tensor;
  /** The features [B, F]: the kept activations, zero elsewhere. */
  f: Tensor;
  /** The kept activations: [B, k] per row, or [1, B·k] over the batch. */
  values: Tensor;
}

/**
 * The TopK encoder, in one place so a fused `topkEncode` kernel can replace it:
 * post = ReLU((x − b_dec) W_enc + b_enc), then keep the k largest per row (`'row'`) or the B·k
 * largest of the whole [B, F] batch (`'batch'`) and zero the rest. The gradient reaches only the
 * kept positions. The pre-activation is computed as x W_enc + (b_enc − b_dec W_enc) (same value;
 * b_dec's gradient then costs a [1, d]·[d, F] product, and bias and ReLU fuse into the product's
 * epilogue where the backend can).
 */
export function sparseEncode(p: Params, x: Tensor, k: number, mode: TopKMode): TopKCode {
  const [B, F] = [x.shape[0], p.W_enc.shape[1]];
  const shift = sub(p.b_enc, reshape(matmul(reshape(p.b_dec, [1, -1]), p.W_enc), [-1]));
  const post = linearBiasRelu(x, p.W_enc, shift);
  if (mode === 'row') {
    const { values, indices } = topk(post, k);
    return { post, f: scatterLast(indices, values, F), values };
  }
  const { values, indices } = topk(reshape(post, [1, B * F]), k * B);
  return { post, f: reshape(scatterLast(indices, values, B * F), [B, F]), values };
}

/** x̂ = f W_dec + b_dec. */
export function decodeLinear(p: Params, f: Tensor): Tensor {
  return add(matmul(f, p.W_dec), p.b_dec);
}

/** mean_b ‖x − x̂‖² (squared error summed over d, averaged over the batch; DL's `l2_loss`). */
export function meanSquaredError(x: Tensor, xhat: Tensor): Tensor {
  return div(sum(square(sub(x, xhat))), x.shape[0]);
}

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
 * among dead features, aux = mean_b ‖e − ê‖² / mean_b ‖e − mean_b e‖²; zero when no feature is
 * dead (or the residual has no variance, DL's `nan_to_num`).
 *
 * Dead, as DL counts it after this step's update: a feature that did not fire in this batch
 * (`activity` ≤ 0) and whose tokens since firing, (steps since fired + 1)·B, reach
 * `deadTokens`. The trainer counts steps (`ctx.stepsSinceFired`), so this is DL's token count
 * when every batch has B rows. k_aux = min(auxK, features that may be dead); a non-dead feature
 * among the chosen adds 0, so the value and gradient are DL's.
 */
export function auxKLoss(
  p: Params,
  x: Tensor,
  xhat: Tensor,
  code: { post: Tensor; activity: Tensor },
  settings: AuxKSettings,
  stepsSinceFired: Readonly<Int32Array> | undefined,
): AuxK {
  const [B, d] = x.shape;
  const F = code.post.shape[1];
  const backend = x.backend;
  const candidates = new Float32Array(F);
  let count = 0;
  if (stepsSinceFired) {
    for (let j = 0; j < F; j++) {
      if ((stepsSinceFired[j] + 1) * B >= settings.deadTokens) {
        candidates[j] = 1;
        count++;
      }
    }
  }
  if (count === 0 || B < 2) return { loss: zeros([], { backend }), dead: zeros([], { backend }) };
  const kAux = Math.min(settings.auxK > 0 ? settings.auxK : Math.floor(d / 2), count);
  const deadNow = noGrad(() => mul(tensor(candidates, [F], { backend }), lessEqual(code.activity, 0)));
  const { values, indices } = topk(mul(code.post, deadNow), kAux);
  const eHat = matmul(scatterLast(indices, values, F), p.W_dec);
  const [e, scale, dead] = noGrad(() => {
    const e = sub(x, xhat);
    const denom = div(sum(square(sub(e, mean(e, 0, true)))), B);
    const dead = sum(deadNow);
    const ok = mul(greater(denom, 0), greater(dead, 0));
    return [e, where(ok, div(1, maximum(denom, 1e-30)), 0), dead];
  });
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
      const w = div(1, maximum(l2Norm(sub(points, guess), -1, true), 1e-12)); // [n, 1]
      guess = div(sum(mul(points, w), 0), sum(w));
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
