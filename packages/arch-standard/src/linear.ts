import {
  add,
  type DeadFeatures,
  type DictionarySizes,
  div,
  type LossContext,
  type LossOutput,
  l2Norm,
  linearBiasRelu,
  linearBiasReluSumDecode,
  matmul,
  meanSquaredError,
  mul,
  type Params,
  randomUniform,
  randomUnitRows,
  reshape,
  scatterAddRows,
  sub,
  sum,
  type Tensor,
  tensor,
  transpose,
  zeros,
} from '@dictlearn/core';

/**
 * Building blocks shared by the ReLU SAEs of this package (SAELens layout: `W_enc` [d, F],
 * `W_dec` [F, d]). Every function uses core ops only, so gradients and backends come for free;
 * the fused encoder (`linearBiasReluSum`, with its one-pass backward `reluGradRowSum`) runs as
 * its reference composition on any backend without its kernels, gradients included.
 */

/**
 * Features f = ReLU((x − b_dec) W_enc + b_enc) for an encoder matrix given as [d, F] or as
 * W_decᵀ. Computed as ReLU(x W_enc + (b_enc − b_dec W_enc)): the same value, but the gradient of
 * b_dec then needs a [1, d]·[d, F] product instead of a [B, F]·[F, d] one (autograd of x − b_dec
 * would push the whole batch gradient back through the encoder); bias and ReLU fuse into one pass
 * where the backend has the kernel.
 */
export function encodeRelu(
  x: Tensor,
  bDec: Tensor,
  bEnc: Tensor,
  enc: { W_enc: Tensor } | { W_dec: Tensor },
): Tensor {
  const [w, transB] = 'W_enc' in enc ? [enc.W_enc, false] : [enc.W_dec, true];
  return linearBiasRelu(x, w, encoderShift(bDec, bEnc, w, transB), { transB });
}

/** b_enc − b_dec·op(W): the encoder's bias once b_dec is folded in (see {@link encodeRelu}). */
function encoderShift(bDec: Tensor, bEnc: Tensor, w: Tensor, transB: boolean): Tensor {
  return sub(bEnc, reshape(matmul(reshape(bDec, [1, -1]), w, { transB }), [-1]));
}

/**
 * {@link encodeRelu} with the features' column sums Σ_b f (what the L1 penalty of a ReLU SAE
 * and its firing activity need) and the reconstruction x̂ = f·W_dec + b_dec, in one op
 * ({@link linearBiasReluSumDecode}): the same values as those computed one after the other,
 * but the backward pass forms f's gradient from the decoder where it applies the ReLU's mask,
 * over f's own memory, so a training step holds one [B, F] array instead of two.
 */
export function encodeDecodeRelu(
  x: Tensor,
  bDec: Tensor,
  bEnc: Tensor,
  enc: { W_enc: Tensor } | { W_dec: Tensor },
  wDec: Tensor,
): { features: Tensor; sums: Tensor; reconstruction: Tensor } {
  const [w, transB] = 'W_enc' in enc ? [enc.W_enc, false] : [enc.W_dec, true];
  const shift = encoderShift(bDec, bEnc, w, transB);
  const [features, sums, reconstruction] = linearBiasReluSumDecode(x, w, shift, wDec, bDec, { transB });
  return { features, sums, reconstruction };
}

/** f W_dec + b_dec. */
export function decodeLinear(f: Tensor, wDec: Tensor, bDec: Tensor): Tensor {
  return add(matmul(f, wDec), bDec);
}

/**
 * REFERENCE init: W_dec [F, d] random normal (the `'init'` Philox domain of the seed, which no
 * data or ground-truth draw shares), rows scaled to norm 0.1; W_enc = W_decᵀ.
 */
export function initDecoder(sizes: DictionarySizes, seed: number, backend?: string): Tensor {
  return randomUnitRows(sizes.dictSize, sizes.activationDim, {
    seed,
    stream: 0,
    purpose: 'init',
    norm: 0.1,
    backend,
  });
}

/**
 * How b_enc starts: `'zero'` (REFERENCE, the default) or `'torch'`, uniform in ±1/√d as torch's
 * `nn.Linear` leaves it, which dictionary_learning's `AutoEncoder` keeps (to reproduce its runs).
 */
export type EncoderBiasInit = 'zero' | 'torch';

/** Checks an `encoderBiasInit` config value (for `validateConfig`). */
export const checkEncoderBiasInit = (v: string): string | null =>
  v === 'zero' || v === 'torch' ? null : "must be 'zero' or 'torch'";

/**
 * Biases b_enc [F] and b_dec [d]: b_dec zero; b_enc zero, or with `'torch'` uniform in
 * [−1/√d, 1/√d) from stream 1 of the seed's `'init'` domain.
 */
export function initBiases(
  sizes: DictionarySizes,
  backend?: string,
  encoderBias: { init: EncoderBiasInit; seed: number } = { init: 'zero', seed: 0 },
): { b_enc: Tensor; b_dec: Tensor } {
  const bound = 1 / Math.sqrt(sizes.activationDim);
  const b_enc =
    encoderBias.init === 'torch'
      ? randomUniform([sizes.dictSize], {
          seed: encoderBias.seed,
          stream: 1,
          purpose: 'init',
          low: -bound,
          high: bound,
          backend,
        })
      : zeros([sizes.dictSize], { backend });
  return { b_enc, b_dec: zeros([sizes.activationDim], { backend }) };
}

/** mean_b ‖x − x̂‖² (DL's l2_loss): core's fused {@link meanSquaredError}, re-exported. */
export { meanSquaredError };

/** mean_b ‖x − x̂‖₂ (DL's l2_loss, logged). */
export function meanL2(x: Tensor, xhat: Tensor): Tensor {
  return div(sum(l2Norm(sub(x, xhat), -1)), x.shape[0]);
}

/** Biases scaled by s: the normalisation fold of REFERENCE (b_enc·s, b_dec·s). */
export function scaleBiases(p: Params, s: number): Params {
  return { b_enc: mul(p.b_enc, s), b_dec: mul(p.b_dec, s) };
}

/** 1 for every feature, 0 for those listed in `features`, as a host array of length F. */
export function keepMask(dictSize: number, features: Int32Array): Float32Array {
  const m = new Float32Array(dictSize).fill(1);
  for (const j of features) m[j] = 0;
  return m;
}

/**
 * REFERENCE resampling of a ReLU SAE (dictionary_learning's `resample_neurons`): each feature
 * `replace[i]` is rebuilt from input row x_i: encoder direction ← x_i · 0.2 · (mean norm of the
 * alive encoder directions), decoder row ← x_i/‖x_i‖, b_enc ← 0. Alive means not in `dead`: every
 * dead feature is left out of that mean, also those not rebuilt this time (their directions are
 * stale and often far larger or smaller). With no alive feature the mean is taken as 1.
 * `tied`: one matrix W_dec [F, d] (the decoder is the encoder), so only the decoder row is set.
 * Returns the replaced parameters.
 */
export function resampleLinear(p: Params, features: DeadFeatures, inputs: Tensor, tied: boolean): Params {
  const [F, d] = p.W_dec.shape;
  const backend = p.W_dec.backend;
  const keepRows = tensor(keepMask(F, features.replace), [F, 1], { backend });
  const idx = tensor(features.replace, [features.replace.length], { dtype: 'int32', backend });
  const unit = div(inputs, l2Norm(inputs, -1, true));
  const out: Params = { b_enc: mul(p.b_enc, reshape(keepRows, [F])) };
  out.W_dec = add(mul(p.W_dec, keepRows), scatterAddRows(zeros([F, d], { backend }), idx, unit));
  if (tied) return out;
  const alive = keepMask(F, features.dead);
  const aliveCount = alive.reduce((a, b) => a + b, 0);
  const encNorms = l2Norm(p.W_enc, 0); // [F]: norm of each feature's encoder direction
  const aliveNorm =
    aliveCount > 0
      ? div(sum(mul(encNorms, tensor(alive, [F], { backend }))), aliveCount)
      : tensor([1], [], { backend });
  const encRows = mul(inputs, mul(aliveNorm, 0.2));
  out.W_enc = add(
    mul(p.W_enc, reshape(keepRows, [1, F])),
    transpose(scatterAddRows(zeros([F, d], { backend }), idx, encRows)),
  );
  return out;
}

/**
 * The standard SAE loss from features f ≥ 0: mean‖x − x̂‖² + λ·s(t)·mean‖f‖₁, with x̂ decoded by
 * W_dec. The per-feature sums of f (needed for ‖f‖₁ anyway) double as the firing activity;
 * `enc` is the features, or the features with those sums and x̂ ({@link encodeDecodeRelu}).
 */
export function reluL1Loss(
  p: Params,
  x: Tensor,
  enc: Tensor | { features: Tensor; sums: Tensor; reconstruction: Tensor },
  l1Penalty: number,
  ctx: LossContext,
): LossOutput {
  const f = 'features' in enc ? enc.features : enc;
  const xhat = 'features' in enc ? enc.reconstruction : decodeLinear(f, p.W_dec, p.b_dec);
  const mse = meanSquaredError(x, xhat);
  const activity = 'features' in enc ? enc.sums : sum(f, 0);
  const l1 = div(sum(activity), x.shape[0]);
  return {
    loss: add(mse, mul(l1, l1Penalty * ctx.sparsityScale)),
    logs: { mse_loss: mse, sparsity_loss: l1, ...(ctx.withLogs ? { l2_loss: meanL2(x, xhat) } : {}) },
    features: f,
    reconstruction: xhat,
    activity,
  };
}
