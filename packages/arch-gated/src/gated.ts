import { annealedPenalty, PAnnealer, type PAnnealSchedule, pAnnealSpec } from '@dictlearn/arch-standard';
import {
  type ArchitectureFactory,
  type ArchitecturePlugin,
  add,
  div,
  exp,
  greater,
  type LossContext,
  type LossOutput,
  l2Norm,
  matmul,
  mul,
  noGrad,
  type Params,
  randomUnitRows,
  relu,
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

const PACKAGE = '@dictlearn/arch-gated';

/** Hyper-parameters of the gated SAE. */
export interface GatedConfig {
  /** λ of the penalty λ·mean_b ‖ReLU(π_gate)‖₁ (default 0.1, dictionary_learning's `l1_penalty`). */
  l1Penalty: number;
}

/**
 * Hyper-parameters of the p-annealed gated SAE: the schedule of `@dictlearn/arch-standard`'s
 * p-annealing (`sparsityFunction` defaults to `'Lp^p'` here, as dictionary_learning's
 * `GatedAnnealTrainer`).
 */
export type GatedAnnealConfig = PAnnealSchedule;

/** dictionary_learning's `GatedSAETrainer`: lr 5e-5, ConstrainedAdam with β = (0, 0.999). */
const GATED_TRAINING: TrainingDefaults = {
  lr: 5e-5,
  betas: [0, 0.999],
  warmupSteps: 1000,
  sparsityWarmupSteps: 2000,
  unitNormRows: ['W_dec'],
};

/** A view of `t` the tape does not see: the stop-gradient of the auxiliary reconstruction. */
const stopGradient = (t: Tensor): Tensor => noGrad(() => reshape(t, t.shape));

/**
 * The gated encoder on x [B, d]: the shared product x_enc = (x − b_dec) W_enc, the gate
 * pre-activation π_gate = x_enc + b_gate and the features
 * f = 1[π_gate > 0] · ReLU(x_enc ⊙ exp(r_mag) + b_mag). The gate mask passes no gradient: the gate
 * path learns from the sparsity and auxiliary terms only.
 */
function encodeGated(p: Params, x: Tensor): { f: Tensor; piGate: Tensor } {
  // (x − b_dec) W_enc as x W_enc − b_dec W_enc: b_dec's gradient then needs a [1, d]·[d, F]
  // product, not the batch gradient pushed back through the encoder.
  const xEnc = sub(matmul(x, p.W_enc), reshape(matmul(reshape(p.b_dec, [1, -1]), p.W_enc), [-1]));
  const piGate = add(xEnc, p.b_gate);
  const f = mul(greater(piGate, 0), relu(add(mul(xEnc, exp(p.r_mag)), p.b_mag)));
  return { f, piGate };
}

/**
 * The gated loss from a sparsity term of the gate activations ReLU(π_gate):
 * mean_b ‖x − x̂‖² + s(t)·penalty + mean_b ‖x − x̂_aux‖², x̂_aux = ReLU(π_gate) W_dec + b_dec with
 * W_dec and b_dec behind a stop-gradient (they learn from the main reconstruction only).
 */
function gatedLoss(
  p: Params,
  x: Tensor,
  ctx: LossContext,
  sparsity: (gate: Tensor) => { penalty: Tensor; logs: Record<string, Tensor> },
): LossOutput {
  const B = x.shape[0];
  const { f, piGate } = encodeGated(p, x);
  const xhat = add(matmul(f, p.W_dec), p.b_dec);
  const gate = relu(piGate);
  const xhatAux = add(matmul(gate, stopGradient(p.W_dec)), stopGradient(p.b_dec));
  const mse = div(sum(square(sub(x, xhat))), B);
  const aux = div(sum(square(sub(x, xhatAux))), B);
  const { penalty, logs } = sparsity(gate);
  return {
    loss: add(add(mse, mul(penalty, ctx.sparsityScale)), aux),
    logs: {
      mse_loss: mse,
      aux_loss: aux,
      ...logs,
      ...(ctx.withLogs ? { l2_loss: div(sum(l2Norm(sub(x, xhat), -1)), B) } : {}),
    },
    features: f,
    reconstruction: xhat,
  };
}

/** Everything but the loss: shapes, init, encode/decode, folding (shared by both plugins). */
function gatedBase(): Omit<ArchitecturePlugin<object>, 'name' | 'config' | 'loss' | 'training'> {
  return {
    packageName: PACKAGE,
    nonNegativeFeatures: true,
    paramShapes: ({ activationDim: d, dictSize: F }) => ({
      W_enc: [d, F],
      b_gate: [F],
      r_mag: [F],
      b_mag: [F],
      W_dec: [F, d],
      b_dec: [d],
    }),
    featureAxes: () => ({ W_enc: 1, b_gate: 0, r_mag: 0, b_mag: 0, W_dec: 0 }),
    init({ activationDim: d, dictSize: F }, { seed, backend }) {
      // dictionary_learning's GatedAutoEncoder: decoder rows random unit vectors, W_enc = W_decᵀ,
      // biases and r_mag 0 (directions from the seed's 'init' Philox domain).
      const W_dec = randomUnitRows(F, d, { seed, stream: 0, purpose: 'init', norm: 1, backend });
      return {
        W_enc: transpose(W_dec),
        b_gate: zeros([F], { backend }),
        r_mag: zeros([F], { backend }),
        b_mag: zeros([F], { backend }),
        W_dec,
        b_dec: zeros([d], { backend }),
      };
    },
    encode: (p, x) => encodeGated(p, x).f,
    decode: (p, f) => add(matmul(f, p.W_dec), p.b_dec),
    decoderRows: (p) => add(p.W_dec, 0),
    // Training ran on x/s: π_gate and π_mag scale with s, so the three biases take the factor
    // (dictionary_learning's `scale_biases`); r_mag is a ratio and stays.
    foldScale: (p, s) => ({ b_gate: mul(p.b_gate, s), b_mag: mul(p.b_mag, s), b_dec: mul(p.b_dec, s) }),
    unfoldScale: (p, s) => ({
      b_gate: mul(p.b_gate, 1 / s),
      b_mag: mul(p.b_mag, 1 / s),
      b_dec: mul(p.b_dec, 1 / s),
    }),
  };
}

/**
 * The gated SAE (Rajamanoharan et al. 2024; dictionary_learning's `GatedAutoEncoder` +
 * `GatedSAETrainer`): f = 1[π_gate > 0]·ReLU((x − b_dec)(W_enc ⊙ exp(r_mag)) + b_mag),
 * π_gate = (x − b_dec) W_enc + b_gate, x̂ = f W_dec + b_dec;
 * loss = mean‖x − x̂‖² + λ·s(t)·mean‖ReLU(π_gate)‖₁ + mean‖x − x̂_aux‖² (see the README for the
 * decoder norms). Decoder rows unit-norm (ConstrainedAdam), Adam β = (0, 0.999), lr 5e-5.
 */
export function gated(config: Partial<GatedConfig> = {}): ArchitecturePlugin<GatedConfig> {
  const cfg = validateConfig<GatedConfig>('gated', config, {
    l1Penalty: { kind: 'number', default: 0.1, check: (v: number) => (v >= 0 ? null : 'must be ≥ 0') },
  });
  return {
    ...gatedBase(),
    name: 'gated',
    config: cfg,
    training: GATED_TRAINING,
    loss: (p, x, ctx) =>
      gatedLoss(p, x, ctx, (gate) => {
        const l1 = div(sum(gate), x.shape[0]);
        return { penalty: mul(l1, cfg.l1Penalty), logs: { sparsity_loss: l1 } };
      }),
  };
}

/**
 * The gated SAE with a p-annealed L_p penalty on the gate activations (dictionary_learning's
 * `GatedAnnealTrainer`): loss = mean‖x − x̂‖² + s(t)·α·L_p(ReLU(π_gate)) + mean‖x − x̂_aux‖², p
 * and α following the schedule of `@dictlearn/arch-standard`'s `PAnnealSchedule`
 * (`sparsityFunction` default `'Lp^p'`). lr 3e-4, ConstrainedAdam with β = (0, 0.999). The
 * plugin value holds the annealing state (which trainer checkpoints save, so a resumed run is
 * exact): give each trainer its own.
 */
export function gatedAnneal(config: Partial<GatedAnnealConfig> = {}): ArchitecturePlugin<GatedAnnealConfig> {
  const cfg = validateConfig<GatedAnnealConfig>('gated-anneal', config, pAnnealSpec('Lp^p'));
  const annealer = new PAnnealer(cfg);
  return {
    ...gatedBase(),
    name: 'gated-anneal',
    config: cfg,
    trainingState: annealer,
    training: { ...GATED_TRAINING, lr: 3e-4 },
    loss: (p, x, ctx) =>
      gatedLoss(p, x, ctx, (gate) => {
        const { scaled, lp, logs } = annealedPenalty(annealer, gate, cfg.sparsityFunction, ctx);
        return { penalty: scaled, logs: { sparsity_loss: lp, ...logs } };
      }),
  };
}

/** Registry factories of this package (what `@dictlearn/arch-gated/register` registers). */
export const factories: readonly ArchitectureFactory[] = [
  { name: 'gated', packageName: PACKAGE, create: (c) => gated(c as Partial<GatedConfig>) },
  { name: 'gated-anneal', packageName: PACKAGE, create: (c) => gatedAnneal(c as Partial<GatedAnnealConfig>) },
];
