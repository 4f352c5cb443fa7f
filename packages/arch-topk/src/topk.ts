import {
  type ArchitectureFactory,
  type ArchitecturePlugin,
  add,
  type DictionarySizes,
  DictlearnError,
  div,
  greater,
  greaterEqual,
  type LossContext,
  type LossOutput,
  linearBiasRelu,
  matmul,
  meanL0,
  mul,
  noGrad,
  type Params,
  randomUnitRows,
  reshape,
  slice,
  sum,
  type Tensor,
  type TrainingDefaults,
  tensor,
  transpose,
  validateConfig,
  where,
  zeros,
} from '@dictlearn/core';
import {
  auxKLoss,
  batchTopkDense,
  codeL0,
  decodeLinear,
  decodeSparse,
  denseFeatures,
  encoderShift,
  featureActivity,
  meanL2,
  meanSquaredError,
  medianInit,
  nextThreshold,
  sparseEncode,
  type TopKMode,
} from './sparse.js';

const PACKAGE = '@dictlearn/arch-topk';

/** Hyper-parameters of the TopK SAE (dictionary_learning's `TopKTrainer`). */
export interface TopKConfig {
  /** Features kept per row (required). */
  k: number;
  /** Dead features that reconstruct the residual in the aux-k loss; 0 (default) = ⌊d/2⌋. */
  auxK: number;
  /** α, the weight of the aux-k loss (default 1/32). */
  auxkAlpha: number;
  /** A feature is dead after this many tokens without firing (default 10 000 000). */
  deadTokens: number;
  /** Rows of the first batch whose geometric median initialises b_dec (default 4096). */
  medianSample: number;
}

/** Hyper-parameters of BatchTopK (dictionary_learning's `BatchTopKTrainer`). */
export interface BatchTopKConfig extends TopKConfig {
  /** β of the threshold's EMA (default 0.999). */
  thresholdBeta: number;
  /** The threshold is updated at steps after this one (default 1000). */
  thresholdStartStep: number;
}

/** Hyper-parameters of Matryoshka BatchTopK (dictionary_learning's `MatryoshkaBatchTopKTrainer`). */
export interface MatryoshkaBatchTopKConfig extends BatchTopKConfig {
  /** Sizes of the nested groups, summing to F: prefix i is the first g₁ + … + gᵢ features. */
  groups: number[];
  /** Weight of each prefix's reconstruction loss (default 1/G each, as DL). */
  weights: number[];
}

const positiveInt = (v: number) => (Number.isInteger(v) && v > 0 ? null : 'must be a positive integer');
const nonNegativeInt = (v: number) =>
  Number.isInteger(v) && v >= 0 ? null : 'must be a non-negative integer';
const nonNegative = (v: number) => (v >= 0 ? null : 'must be ≥ 0');
const unitInterval = (v: number) => (v >= 0 && v < 1 ? null : 'must be in [0, 1)');

const TOPK_SPEC = {
  k: { kind: 'number', check: positiveInt },
  auxK: { kind: 'number', default: 0, check: nonNegativeInt },
  auxkAlpha: { kind: 'number', default: 1 / 32, check: nonNegative },
  deadTokens: { kind: 'number', default: 10_000_000, check: positiveInt },
  medianSample: { kind: 'number', default: 4096, check: positiveInt },
} as const;

const BATCH_SPEC = {
  ...TOPK_SPEC,
  thresholdBeta: { kind: 'number', default: 0.999, check: unitInterval },
  thresholdStartStep: { kind: 'number', default: 1000, check: nonNegativeInt },
} as const;

/**
 * REFERENCE defaults of the TopK trainers: lr 2e-4/√(F/2¹⁴) (the `lr` field is the F = 2¹⁴
 * value), Adam (0.9, 0.999), lr warm-up 1000 steps, gradient norm clipped to 1 after removing the
 * decoder rows' parallel component, unit-norm decoder rows; no resampling (aux-k instead).
 */
const TOPK_TRAINING: TrainingDefaults = {
  lr: 2e-4,
  lrFor: ({ dictSize }) => 2e-4 / Math.sqrt(dictSize / 2 ** 14),
  betas: [0.9, 0.999],
  warmupSteps: 1000,
  sparsityWarmupSteps: 0,
  clipGradNorm: 1,
  unitNormRows: ['W_dec'],
};

/** What differs between the three plugins. */
interface Variant {
  name: string;
  mode: TopKMode;
  /** BatchTopK's learned threshold (EMA β, first step after which it is updated). */
  threshold?: { beta: number; startStep: number };
  /** Matryoshka groups and weights. */
  groups?: { sizes: number[]; weights: number[] };
}

function checkGroups(variant: Variant, dictSize: number): void {
  const sizes = variant.groups?.sizes;
  const total = sizes?.reduce((a, b) => a + b, 0);
  if (sizes && total !== dictSize) {
    throw new DictlearnError(
      variant.name,
      `groups [${sizes}] sum to ${total}, but the dictionary has ${dictSize} features (dictSize)`,
    );
  }
}

/** Reconstruction loss of nested prefixes (DL: mean over groups of wᵢ·mean_b‖x − x̂ᵢ‖²). */
function prefixLoss(p: Params, x: Tensor, f: Tensor, groups: { sizes: number[]; weights: number[] }) {
  const [B, d] = x.shape;
  let xhat: Tensor = p.b_dec;
  let total: Tensor | undefined;
  let offset = 0;
  groups.sizes.forEach((g, i) => {
    const part = matmul(slice(f, [0, offset], [B, g]), slice(p.W_dec, [offset, 0], [g, d]));
    xhat = add(xhat, part);
    const term = mul(meanSquaredError(x, xhat), groups.weights[i]);
    total = total ? add(total, term) : term;
    offset += g;
  });
  return { xhat, loss: div(total!, groups.sizes.length) };
}

/** What the three variants' encoders hand the shared loss. */
interface Encoded {
  /** Reconstruction loss (MSE, or Matryoshka's prefix loss). */
  recon: Tensor;
  xhat: Tensor;
  /** The kept activations (BatchTopK's threshold EMA reads them). */
  values: Tensor;
  shift: Tensor;
  activity: Tensor;
  /** L0, lazily (logging steps only). */
  l0: () => Tensor;
  prefix?: Tensor;
}

/**
 * TopK and BatchTopK stay sparse end to end (fused encode, k-row decode, no [B, F] matrix);
 * Matryoshka slices the dense features into its nested prefixes.
 */
function encodeForLoss<C extends TopKConfig>(p: Params, x: Tensor, cfg: C, variant: Variant): Encoded {
  if (variant.groups) {
    const F = p.W_enc.shape[1];
    const { f, values, shift } = batchTopkDense(p, x, cfg.k);
    const prefixes = prefixLoss(p, x, f, variant.groups);
    return {
      recon: prefixes.loss,
      prefix: prefixes.loss,
      xhat: prefixes.xhat,
      values,
      shift,
      activity: noGrad(() => reshape(sum(f, 0), [F])),
      l0: () => meanL0(f),
    };
  }
  const code = sparseEncode(p, x, cfg.k, variant.mode);
  const xhat = decodeSparse(p, code);
  return {
    recon: meanSquaredError(x, xhat),
    xhat,
    values: code.values,
    shift: code.shift,
    activity: featureActivity(code, p.W_enc.shape[1]),
    l0: () => codeL0(code),
  };
}

function familyLoss<C extends TopKConfig>(
  p: Params,
  x: Tensor,
  ctx: LossContext,
  cfg: C,
  variant: Variant,
): LossOutput {
  const enc = encodeForLoss(p, x, cfg, variant);
  const mse = enc.prefix ? meanSquaredError(x, enc.xhat) : enc.recon;
  const aux = auxKLoss(p, x, enc.xhat, enc, cfg, ctx.stepsSinceFired);
  const logs: Record<string, Tensor> = { mse_loss: mse, auxk_loss: aux.loss, dead_features: aux.dead };
  if (enc.prefix) logs.prefix_loss = enc.prefix;
  if (ctx.withLogs) logs.l2_loss = meanL2(x, enc.xhat);
  const out: LossOutput = {
    loss: add(enc.recon, mul(aux.loss, cfg.auxkAlpha)),
    logs,
    reconstruction: enc.xhat,
    activity: enc.activity,
    ...(ctx.withLogs ? { l0: enc.l0() } : {}),
  };
  if (variant.threshold) {
    const { beta, startStep } = variant.threshold;
    const theta = ctx.step > startStep ? nextThreshold(p.threshold, enc.values, beta) : undefined;
    if (theta) out.buffers = { threshold: theta };
    logs.threshold = noGrad(() => add(theta ?? p.threshold, 0));
  }
  return out;
}

function makePlugin<C extends TopKConfig>(cfg: C, variant: Variant): ArchitecturePlugin<C> {
  const batch = variant.threshold !== undefined;
  return {
    name: variant.name,
    packageName: PACKAGE,
    config: cfg,
    training: TOPK_TRAINING,
    nonNegativeFeatures: true,
    paramShapes(s: DictionarySizes) {
      checkGroups(variant, s.dictSize);
      return {
        W_enc: [s.activationDim, s.dictSize],
        b_enc: [s.dictSize],
        W_dec: [s.dictSize, s.activationDim],
        b_dec: [s.activationDim],
        ...(batch ? { threshold: [] } : {}),
      };
    },
    featureAxes: () => ({ W_enc: 1, b_enc: 0, W_dec: 0 }),
    init(sizes, { seed, backend }) {
      checkGroups(variant, sizes.dictSize);
      // DL: unit-norm random decoder rows, W_enc = W_decᵀ, zero biases (b_dec is then set to the
      // geometric median of the first batch), threshold −1 = not learned yet.
      const W_dec = randomUnitRows(sizes.dictSize, sizes.activationDim, {
        seed,
        stream: 0,
        purpose: 'init',
        norm: 1,
        backend,
      });
      return {
        W_enc: transpose(W_dec),
        b_enc: zeros([sizes.dictSize], { backend }),
        W_dec,
        b_dec: zeros([sizes.activationDim], { backend }),
        ...(batch ? { threshold: tensor([-1], [], { backend }) } : {}),
      };
    },
    initFromData: (_p, x, { seed }) => medianInit(x, cfg.medianSample, seed),
    encode(p, x) {
      if (!batch) return denseFeatures(sparseEncode(p, x, cfg.k, 'row'), p.W_enc.shape[1]);
      // Inference with the learned threshold: f = post · 1[post > θ] (θ = −1, never learned:
      // every positive activation, as DL).
      const post = linearBiasRelu(x, p.W_enc, encoderShift(p));
      return mul(post, greater(post, p.threshold));
    },
    decode: decodeLinear,
    loss: (p, x, ctx) => familyLoss(p, x, ctx, cfg, variant),
    decoderRows: (p) => add(p.W_dec, 0),
    foldScale: (p, s) => scaleBiases(p, s, batch),
    unfoldScale: (p, s) => scaleBiases(p, 1 / s, batch),
  };
}

/** Biases (and a learned threshold θ ≥ 0) times s: the normalisation fold of REFERENCE. */
function scaleBiases(p: Params, s: number, threshold: boolean): Params {
  const out: Params = { b_enc: mul(p.b_enc, s), b_dec: mul(p.b_dec, s) };
  if (threshold) out.threshold = where(greaterEqual(p.threshold, 0), mul(p.threshold, s), p.threshold);
  return out;
}

/**
 * TopK SAE (Gao et al.; dictionary_learning's `AutoEncoderTopK` + `TopKTrainer`):
 * f = the k largest of ReLU((x − b_dec) W_enc + b_enc) per row, x̂ = f W_dec + b_dec,
 * loss = mean_b ‖x − x̂‖² + α·aux_k (see {@link TopKConfig}); b_dec starts at the geometric
 * median of the first batch; unit-norm decoder rows.
 */
export function topk(config: Partial<TopKConfig> & { k: number }): ArchitecturePlugin<TopKConfig> {
  const cfg = validateConfig<TopKConfig>('topk', config, TOPK_SPEC);
  return makePlugin(cfg, { name: 'topk', mode: 'row' });
}

/**
 * BatchTopK SAE (dictionary_learning's `BatchTopKSAE` + `BatchTopKTrainer`): in training keep
 * the B·k largest activations of the whole batch; learn a threshold θ (EMA of the smallest kept
 * activation) and encode with f = post · 1[post > θ] at inference. Loss and training as TopK.
 */
export function batchTopk(
  config: Partial<BatchTopKConfig> & { k: number },
): ArchitecturePlugin<BatchTopKConfig> {
  const cfg = validateConfig<BatchTopKConfig>('batch-topk', config, BATCH_SPEC);
  return makePlugin(cfg, {
    name: 'batch-topk',
    mode: 'batch',
    threshold: { beta: cfg.thresholdBeta, startStep: cfg.thresholdStartStep },
  });
}

/**
 * Matryoshka BatchTopK (dictionary_learning's `MatryoshkaBatchTopKTrainer`): BatchTopK whose
 * nested prefixes of the dictionary (the first g₁, g₁ + g₂, … features) each reconstruct x;
 * loss = (1/G) Σᵢ wᵢ·mean_b ‖x − x̂ᵢ‖² + α·aux_k, as DL (with the default wᵢ = 1/G that is
 * Σᵢ mean_b ‖x − x̂ᵢ‖² / G²), the aux-k residual being the full reconstruction's.
 */
export function matryoshkaBatchTopk(
  config: Partial<MatryoshkaBatchTopKConfig> & { k: number; groups: number[] },
): ArchitecturePlugin<MatryoshkaBatchTopKConfig> {
  const name = 'matryoshka-batch-topk';
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    validateConfig(name, config, BATCH_SPEC); // throws, naming what was given
  }
  const { groups, weights, ...rest } = config as Partial<MatryoshkaBatchTopKConfig>;
  if (!Array.isArray(groups) || groups.length === 0 || groups.some((g) => positiveInt(g) !== null)) {
    throw new DictlearnError(
      name,
      `field 'groups' must be a non-empty array of positive integers (group sizes summing to dictSize), got ${JSON.stringify(groups)}`,
    );
  }
  const w = weights ?? groups.map(() => 1 / groups.length);
  if (
    !Array.isArray(w) ||
    w.length !== groups.length ||
    w.some((v) => typeof v !== 'number' || !Number.isFinite(v) || v < 0)
  ) {
    throw new DictlearnError(
      name,
      `field 'weights' must be ${groups.length} finite numbers ≥ 0 (one per group), got ${JSON.stringify(weights)}`,
    );
  }
  const base = validateConfig<BatchTopKConfig>(name, rest, BATCH_SPEC);
  const cfg: MatryoshkaBatchTopKConfig = { ...base, groups: [...groups], weights: [...w] };
  return makePlugin(cfg, {
    name,
    mode: 'batch',
    threshold: { beta: cfg.thresholdBeta, startStep: cfg.thresholdStartStep },
    groups: { sizes: cfg.groups, weights: cfg.weights },
  });
}

function factory(name: string, make: (c: never) => ArchitecturePlugin<object>): ArchitectureFactory {
  return { name, packageName: PACKAGE, create: (config) => make(config as never) };
}

/** Registry factories of this package (what `@dictlearn/arch-topk/register` registers). */
export const factories: readonly ArchitectureFactory[] = [
  factory('topk', topk),
  factory('batch-topk', batchTopk),
  factory('matryoshka-batch-topk', matryoshkaBatchTopk),
];
