import {
  type ArchitectureFactory,
  type ArchitecturePlugin,
  add,
  customGrad,
  div,
  exp,
  fill,
  greater,
  l2Norm,
  less,
  matmul,
  mul,
  type Params,
  randomUnitRows,
  reshape,
  square,
  sub,
  sum,
  type Tensor,
  type TrainingDefaults,
  transpose,
  validateConfig,
  zeros,
} from '@dictlearn/core';

const PACKAGE = '@dictlearn/arch-jumprelu';

/**
 * The sparsity penalty: `'l0-target'` is dictionary_learning's c·(L0/target − 1)², `'l0'` is
 * Gemma Scope's (and SAELens') λ·L0. L0 is the batch mean of the number of features above their
 * thresholds, differentiated through the step function's straight-through estimator.
 */
export type JumpReluPenalty = 'l0-target' | 'l0';

/** Hyper-parameters of the JumpReLU SAE. */
export interface JumpReluConfig {
  /** Which penalty (default `'l0-target'`, dictionary_learning's). */
  penalty: JumpReluPenalty;
  /** c of c·(L0/target − 1)², or λ of λ·L0 (default 1, dictionary_learning's `sparsity_penalty`). */
  sparsityPenalty: number;
  /** The target L0 of the `'l0-target'` penalty (default 20). */
  targetL0: number;
  /**
   * ε, the width of the rectangle kernel of the straight-through gradients (default 1e-3,
   * dictionary_learning's; SAELens and the Gemma Scope paper use 0.05 — activations there are
   * normalised the same way, so the figure is comparable).
   */
  bandwidth: number;
  /** θ at initialisation, the same for every feature (default 1e-3, dictionary_learning's). */
  initThreshold: number;
  /**
   * Subtract b_dec from x before the encoder (default `false`: dictionary_learning's
   * `JumpReluAutoEncoder` and Gemma Scope do not; SAELens makes it an option).
   */
  applyBDecToInput: boolean;
}

/** dictionary_learning's `JumpReluTrainer` settings (its "parameters from the paper"). */
const JUMPRELU_TRAINING: TrainingDefaults = {
  lr: 7e-5,
  betas: [0, 0.999],
  warmupSteps: 1000,
  sparsityWarmupSteps: 2000,
  clipGradNorm: 1,
  unitNormRows: ['W_dec'],
};

/** K((pre − θ)/ε): 1 where −½ < (pre − θ)/ε < ½, else 0 (dictionary_learning's `RectangleFunction`). */
function rectangle(pre: Tensor, theta: Tensor, bandwidth: number): Tensor {
  const u = div(sub(pre, theta), bandwidth);
  return mul(greater(u, -0.5), less(u, 0.5));
}

/**
 * JumpReLU_θ(pre) = pre·1[pre > θ] for pre [B, F] and thresholds θ [F], with the
 * straight-through gradients of the JumpReLU paper (dictionary_learning's `JumpReLUFunction`):
 * ∂/∂pre = 1[pre > θ]; ∂/∂θ ≈ −(θ/ε)·K((pre − θ)/ε), K the rectangle on (−½, ½) — the jump of
 * height θ smeared over a window of width ε.
 */
export function jumpReluFunction(bandwidth: number): (pre: Tensor, theta: Tensor) => Tensor {
  return customGrad((pre: Tensor, theta: Tensor) => ({
    value: mul(pre, greater(pre, theta)),
    grad: (dy) => [
      mul(dy, greater(pre, theta)),
      mul(sum(mul(rectangle(pre, theta, bandwidth), dy), 0), mul(theta, -1 / bandwidth)),
    ],
  }));
}

/**
 * H(pre − θ) = 1[pre > θ] with the straight-through gradient of the JumpReLU paper
 * (dictionary_learning's `StepFunction`): nothing flows to pre; ∂/∂θ ≈ −(1/ε)·K((pre − θ)/ε).
 */
export function stepFunction(bandwidth: number): (pre: Tensor, theta: Tensor) => Tensor {
  return customGrad((pre: Tensor, theta: Tensor) => ({
    value: greater(pre, theta),
    grad: (dy) => [null, mul(sum(mul(rectangle(pre, theta, bandwidth), dy), 0), -1 / bandwidth)],
  }));
}

/**
 * The JumpReLU SAE (Rajamanoharan et al. 2024; dictionary_learning's `JumpReluAutoEncoder` +
 * `JumpReluTrainer`). pre = x W_enc + b_enc (x − b_dec with `applyBDecToInput`),
 * f = pre·1[pre > θ], θ = exp(`log_threshold`) per feature, x̂ = f W_dec + b_dec;
 * loss = mean_b ‖x − x̂‖² + s(t)·c·(L0/target − 1)² (`'l0-target'`) or + s(t)·λ·L0 (`'l0'`).
 * Decoder rows unit-norm (the gradient's component along each row removed, rows renormalised),
 * gradient norm clipped to 1, Adam β = (0, 0.999), lr 7e-5. No resampling, as in the reference.
 */
export function jumpRelu(config: Partial<JumpReluConfig> = {}): ArchitecturePlugin<JumpReluConfig> {
  const cfg = validateConfig<JumpReluConfig>('jumprelu', config, {
    penalty: {
      kind: 'string',
      default: 'l0-target',
      check: (v: string) => (v === 'l0-target' || v === 'l0' ? null : "must be 'l0-target' or 'l0'"),
    },
    sparsityPenalty: { kind: 'number', default: 1, check: (v: number) => (v >= 0 ? null : 'must be ≥ 0') },
    targetL0: { kind: 'number', default: 20, check: (v: number) => (v > 0 ? null : 'must be > 0') },
    bandwidth: { kind: 'number', default: 1e-3, check: (v: number) => (v > 0 ? null : 'must be > 0') },
    initThreshold: { kind: 'number', default: 1e-3, check: (v: number) => (v > 0 ? null : 'must be > 0') },
    applyBDecToInput: { kind: 'boolean', default: false },
  });
  const jump = jumpReluFunction(cfg.bandwidth);
  const step = stepFunction(cfg.bandwidth);
  const preActivation = (p: Params, x: Tensor): Tensor => {
    if (!cfg.applyBDecToInput) return add(matmul(x, p.W_enc), p.b_enc);
    // (x − b_dec) W_enc + b_enc as x W_enc + (b_enc − b_dec W_enc): b_dec's gradient then costs
    // a [1, d]·[d, F] product instead of pushing the batch gradient back through the encoder.
    const shift = sub(p.b_enc, reshape(matmul(reshape(p.b_dec, [1, -1]), p.W_enc), [-1]));
    return add(matmul(x, p.W_enc), shift);
  };
  const decode = (p: Params, f: Tensor) => add(matmul(f, p.W_dec), p.b_dec);
  return {
    name: 'jumprelu',
    packageName: PACKAGE,
    config: cfg,
    training: JUMPRELU_TRAINING,
    nonNegativeFeatures: true,
    paramShapes: ({ activationDim: d, dictSize: F }) => ({
      W_enc: [d, F],
      b_enc: [F],
      W_dec: [F, d],
      b_dec: [d],
      log_threshold: [F],
    }),
    featureAxes: () => ({ W_enc: 1, b_enc: 0, W_dec: 0, log_threshold: 0 }),
    init({ activationDim: d, dictSize: F }, { seed, backend }) {
      // dictionary_learning: decoder rows random unit vectors, W_enc = W_decᵀ, biases 0,
      // θ = 0.001 (its Appendix-I comment). Directions come from the seed's 'init' Philox domain.
      const W_dec = randomUnitRows(F, d, { seed, stream: 0, purpose: 'init', norm: 1, backend });
      return {
        W_enc: transpose(W_dec),
        b_enc: zeros([F], { backend }),
        W_dec,
        b_dec: zeros([d], { backend }),
        log_threshold: fill([F], Math.log(cfg.initThreshold), { backend }),
      };
    },
    encode: (p, x) => jump(preActivation(p, x), exp(p.log_threshold)),
    decode,
    loss(p, x, ctx) {
      const B = x.shape[0];
      const pre = preActivation(p, x);
      const theta = exp(p.log_threshold);
      const f = jump(pre, theta);
      const xhat = decode(p, f);
      const mse = div(sum(square(sub(x, xhat))), B);
      const l0 = div(sum(step(pre, theta)), B);
      const sparsity = cfg.penalty === 'l0' ? l0 : square(sub(div(l0, cfg.targetL0), 1));
      return {
        loss: add(mse, mul(sparsity, cfg.sparsityPenalty * ctx.sparsityScale)),
        logs: {
          mse_loss: mse,
          sparsity_loss: sparsity,
          ...(ctx.withLogs ? { l2_loss: div(sum(l2Norm(sub(x, xhat), -1)), B) } : {}),
        },
        features: f,
        reconstruction: xhat,
      };
    },
    decoderRows: (p) => add(p.W_dec, 0),
    // Training ran on x/s: pre and θ scale with s, so b_enc, b_dec and θ take the factor
    // (dictionary_learning's `scale_biases` multiplies `threshold`; here log θ gains log s).
    foldScale: (p, s) => ({
      b_enc: mul(p.b_enc, s),
      b_dec: mul(p.b_dec, s),
      log_threshold: add(p.log_threshold, Math.log(s)),
    }),
    unfoldScale: (p, s) => ({
      b_enc: mul(p.b_enc, 1 / s),
      b_dec: mul(p.b_dec, 1 / s),
      log_threshold: add(p.log_threshold, -Math.log(s)),
    }),
  };
}

/** Registry factories of this package (what `@dictlearn/arch-jumprelu/register` registers). */
export const factories: readonly ArchitectureFactory[] = [
  { name: 'jumprelu', packageName: PACKAGE, create: (config) => jumpRelu(config as Partial<JumpReluConfig>) },
];
