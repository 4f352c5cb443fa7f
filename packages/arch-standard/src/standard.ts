import {
  type ArchitectureFactory,
  type ArchitecturePlugin,
  add,
  l2Norm,
  mean,
  mul,
  type Params,
  sum,
  type TrainingDefaults,
  transpose,
  validateConfig,
} from '@dictlearn/core';
import {
  checkEncoderBiasInit,
  decodeLinear,
  type EncoderBiasInit,
  encodeDecodeRelu,
  encodeRelu,
  initBiases,
  initDecoder,
  meanL2,
  meanSquaredError,
  reluL1Loss,
  resampleLinear,
  scaleBiases,
} from './linear.js';

const PACKAGE = '@dictlearn/arch-standard';

/** Hyper-parameters of the standard SAE. */
export interface StandardConfig {
  /** λ, the L1 penalty coefficient (REFERENCE default 0.1). */
  l1Penalty: number;
  /**
   * How b_enc starts (default `'zero'`, REFERENCE); `'torch'`: uniform in ±1/√d, as
   * dictionary_learning's `AutoEncoder` leaves it (see {@link EncoderBiasInit}).
   */
  encoderBiasInit: EncoderBiasInit;
}

/** Hyper-parameters of the April-update SAE. */
export interface AprilUpdateConfig {
  /** λ of the decoder-norm-weighted L1 penalty Σ_i f_i·‖W_dec,i‖. */
  l1Penalty: number;
  /** How b_enc starts (default `'zero'`; `'torch'`: uniform in ±1/√d, as dictionary_learning). */
  encoderBiasInit: EncoderBiasInit;
}

const positive = (v: number) => (v >= 0 ? null : 'must be ≥ 0');

/** REFERENCE defaults of the standard trainer. */
const STANDARD_TRAINING: TrainingDefaults = {
  lr: 1e-3,
  betas: [0.9, 0.999],
  warmupSteps: 1000,
  sparsityWarmupSteps: 2000,
  unitNormRows: ['W_dec'],
};

function untiedShapes(s: { activationDim: number; dictSize: number }): Record<string, number[]> {
  return {
    W_enc: [s.activationDim, s.dictSize],
    b_enc: [s.dictSize],
    W_dec: [s.dictSize, s.activationDim],
    b_dec: [s.activationDim],
  };
}

/**
 * The standard SAE (Towards Monosemanticity; dictionary_learning's `AutoEncoder` +
 * `StandardTrainer`): f = ReLU((x − b_dec) W_enc + b_enc), x̂ = f W_dec + b_dec,
 * loss = mean_b ‖x − x̂‖² + λ·s(t)·mean_b ‖f‖₁, decoder rows unit-norm (ConstrainedAdam).
 * Resampling is opt-in: set `resampleSteps` on the trainer.
 */
export function standard(config: Partial<StandardConfig> = {}): ArchitecturePlugin<StandardConfig> {
  const cfg = validateConfig<StandardConfig>('standard', config, {
    l1Penalty: { kind: 'number', default: 0.1, check: positive },
    encoderBiasInit: { kind: 'string', default: 'zero', check: checkEncoderBiasInit },
  });
  return {
    name: 'standard',
    packageName: PACKAGE,
    config: cfg,
    training: STANDARD_TRAINING,
    nonNegativeFeatures: true,
    paramShapes: untiedShapes,
    featureAxes: () => ({ W_enc: 1, b_enc: 0, W_dec: 0 }),
    init(sizes, { seed, backend }) {
      const W_dec = initDecoder(sizes, seed, backend);
      return {
        W_enc: transpose(W_dec),
        W_dec,
        ...initBiases(sizes, backend, { init: cfg.encoderBiasInit, seed }),
      };
    },
    encode: (p, x) => encodeRelu(x, p.b_dec, p.b_enc, { W_enc: p.W_enc }),
    decode: (p, f) => decodeLinear(f, p.W_dec, p.b_dec),
    loss: (p, x, ctx) =>
      reluL1Loss(
        p,
        x,
        encodeDecodeRelu(x, p.b_dec, p.b_enc, { W_enc: p.W_enc }, p.W_dec),
        cfg.l1Penalty,
        ctx,
      ),
    decoderRows: (p) => add(p.W_dec, 0),
    foldScale: scaleBiases,
    unfoldScale: (p, s) => scaleBiases(p, 1 / s),
    resample: (p, features, inputs) => resampleLinear(p, features, inputs, false),
  };
}

/**
 * Anthropic's April update (dictionary_learning's `StandardTrainerAprilUpdate`): the same
 * encoder and decoder, no norm constraint; the penalty weights each feature by its decoder
 * row's norm, loss = mean_b ‖x − x̂‖² + λ·s(t)·mean_b Σ_i f_i‖W_dec,i‖₂; gradient norm clipped
 * to 1; plain Adam.
 */
export function aprilUpdate(config: Partial<AprilUpdateConfig> = {}): ArchitecturePlugin<AprilUpdateConfig> {
  const cfg = validateConfig<AprilUpdateConfig>('april-update', config, {
    l1Penalty: { kind: 'number', default: 0.1, check: positive },
    encoderBiasInit: { kind: 'string', default: 'zero', check: checkEncoderBiasInit },
  });
  const base = standard(cfg);
  return {
    ...base,
    name: 'april-update',
    config: cfg,
    training: { ...STANDARD_TRAINING, unitNormRows: [], clipGradNorm: 1 },
    resample: undefined,
    loss(p: Params, x, ctx) {
      const f = encodeRelu(x, p.b_dec, p.b_enc, { W_enc: p.W_enc });
      const xhat = decodeLinear(f, p.W_dec, p.b_dec);
      const mse = meanSquaredError(x, xhat);
      const weighted = mean(sum(mul(f, l2Norm(p.W_dec, -1)), -1));
      return {
        loss: add(mse, mul(weighted, cfg.l1Penalty * ctx.sparsityScale)),
        logs: {
          mse_loss: mse,
          sparsity_loss: weighted,
          ...(ctx.withLogs ? { l2_loss: meanL2(x, xhat) } : {}),
        },
        features: f,
        reconstruction: xhat,
      };
    },
  };
}

/**
 * Tied weights: one matrix W_dec [F, d] serves as decoder and (transposed) encoder:
 * f = ReLU((x − b_dec) W_decᵀ + b_enc), x̂ = f W_dec + b_dec. Loss and training as standard.
 */
export function tied(config: Partial<StandardConfig> = {}): ArchitecturePlugin<StandardConfig> {
  const base = standard(config);
  return {
    ...base,
    name: 'tied',
    paramShapes: (s) => ({
      W_dec: [s.dictSize, s.activationDim],
      b_enc: [s.dictSize],
      b_dec: [s.activationDim],
    }),
    featureAxes: () => ({ b_enc: 0, W_dec: 0 }),
    init(sizes, { seed, backend }) {
      return {
        W_dec: initDecoder(sizes, seed, backend),
        ...initBiases(sizes, backend, { init: base.config.encoderBiasInit, seed }),
      };
    },
    encode: (p, x) => encodeRelu(x, p.b_dec, p.b_enc, { W_dec: p.W_dec }),
    loss: (p, x, ctx) =>
      reluL1Loss(
        p,
        x,
        encodeDecodeRelu(x, p.b_dec, p.b_enc, { W_dec: p.W_dec }, p.W_dec),
        base.config.l1Penalty,
        ctx,
      ),
    resample: (p, features, inputs) => resampleLinear(p, features, inputs, true),
  };
}

function factory(name: string, make: (c: never) => ArchitecturePlugin<object>): ArchitectureFactory {
  return { name, packageName: PACKAGE, create: (config) => make(config as never) };
}

/** Registry factories of this package (what `@dictlearn/arch-standard/register` registers). */
export const factories: readonly ArchitectureFactory[] = [
  factory('standard', standard),
  factory('april-update', aprilUpdate),
  factory('tied', tied),
];
