import {
  type ArchitectureFactory,
  type ArchitecturePlugin,
  abs,
  add,
  concat,
  type DeadFeatures,
  type DictionarySizes,
  DictlearnError,
  div,
  exp,
  l2Norm,
  matmul,
  mul,
  neg,
  type Params,
  philoxUnitRows,
  relu,
  reshape,
  scatterAddRows,
  seedFor,
  slice,
  square,
  sub,
  sum,
  type Tensor,
  type TrainingDefaults,
  tensor,
  transpose,
  validateConfig,
  zeros,
} from '@dictlearn/core';

const PACKAGE = '@dictlearn/arch-lista';

/**
 * How the unrolled iterations move: `'ista'` takes each gradient step at the previous code;
 * `'fista'` takes it at an extrapolated point y = z⁽ᵏ⁾ + βₖ(z⁽ᵏ⁾ − z⁽ᵏ⁻¹⁾) with FISTA's fixed
 * momentum schedule βₖ ({@link fistaMomentum}).
 */
export type ListaVariant = 'ista' | 'fista';

/** Hyper-parameters of the LISTA SAE. */
export interface ListaConfig {
  /** n, the number of unrolled iterations (default 3; 1 is a one-layer encoder). */
  iterations: number;
  /** `'ista'` (default) or `'fista'` (momentum). */
  variant: ListaVariant;
  /**
   * Tied: every iteration's encoder matrix is the decoder, W_e⁽ᵏ⁾ = ηₖ·W_decᵀ with a learned
   * step ηₖ (unrolled ISTA with learned steps and thresholds); untied (default `false`): each
   * iteration learns its own W_e⁽ᵏ⁾ [d, F].
   */
  tied: boolean;
  /**
   * Non-negative codes (default `true`, the ReLU family): the threshold is relu(u − θ);
   * `false`: the two-sided soft threshold sign(u)·relu(|u| − θ).
   */
  nonNegative: boolean;
  /** λ of the loss mean_b ‖x − x̂‖² + λ·s(t)·mean_b ‖z‖₁ (default 0.1). */
  l1Penalty: number;
  /**
   * Every θ⁽ᵏ⁾ at initialisation; 0 (default) means ISTA's own λ/(2L), L the largest eigenvalue
   * of W_dec W_decᵀ at initialisation, so the untrained encoder is exactly n ISTA steps on the
   * training objective.
   */
  initThreshold: number;
}

/** Training defaults: the standard SAE's (REFERENCE), decoder rows unit-norm. */
const LISTA_TRAINING: TrainingDefaults = {
  lr: 1e-3,
  betas: [0.9, 0.999],
  warmupSteps: 1000,
  sparsityWarmupSteps: 2000,
  unitNormRows: ['W_dec'],
};

/**
 * The soft threshold: sign(u)·relu(|u| − θ), written relu(u − θ) − relu(−u − θ) so both sides
 * pass gradient through relu; with `nonNegative` only relu(u − θ). θ broadcasts over u's rows.
 */
export function softThreshold(u: Tensor, theta: Tensor, nonNegative: boolean): Tensor {
  const up = relu(sub(u, theta));
  return nonNegative ? up : sub(up, relu(sub(neg(u), theta)));
}

/**
 * FISTA's momentum coefficients β₀ … β_{n−1}: t₀ = 1, tₖ₊₁ = (1 + √(1 + 4tₖ²))/2,
 * βₖ = (tₖ − 1)/tₖ₊₁ (β₀ = 0: the first step has no previous code to extrapolate from).
 */
export function fistaMomentum(n: number): number[] {
  const out: number[] = [];
  let t = 1;
  for (let k = 0; k < n; k++) {
    const next = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
    out.push((t - 1) / next);
    t = next;
  }
  return out;
}

/**
 * The largest eigenvalue of W Wᵀ (the squared spectral norm of W [rows, cols], row-major) by
 * power iteration on WᵀW in float64, from a fixed start, until the estimate moves by less than
 * 1e-6 relative (at most `maxIterations`). Power iteration approaches from below.
 */
export function squaredSpectralNorm(
  w: ArrayLike<number>,
  rows: number,
  cols: number,
  maxIterations = 200,
): number {
  let v = new Float64Array(cols);
  for (let j = 0; j < cols; j++) v[j] = 1 + j / cols; // not orthogonal to a random top vector
  let estimate = 0;
  const u = new Float64Array(rows);
  for (let it = 0; it < maxIterations; it++) {
    let norm = 0;
    for (const e of v) norm += e * e;
    norm = Math.sqrt(norm);
    if (norm === 0) return 0;
    for (let j = 0; j < cols; j++) v[j] /= norm;
    // u = W v, then v' = Wᵀ u: ‖v'‖ → the largest eigenvalue of WᵀW.
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const base = r * cols;
      for (let j = 0; j < cols; j++) s += w[base + j] * v[j];
      u[r] = s;
    }
    const next = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      const ur = u[r];
      const base = r * cols;
      for (let j = 0; j < cols; j++) next[j] += w[base + j] * ur;
    }
    let lambda = 0;
    for (let j = 0; j < cols; j++) lambda += next[j] * v[j];
    v = next;
    if (Math.abs(lambda - estimate) <= 1e-6 * lambda) return lambda;
    estimate = lambda;
  }
  return estimate;
}

/**
 * The LISTA SAE (Gregor & LeCun 2010, in the coupled form z ← h(z + W_e(x − z W_d)) the
 * sparse_coding experiments use): the code z⁽ⁿ⁾ after n unrolled iterations
 *
 *   z⁽⁰⁾ = 0,  z⁽ᵏ⁺¹⁾ = soft_threshold(y⁽ᵏ⁾ + (x − b_dec − y⁽ᵏ⁾ W_dec) W_e⁽ᵏ⁾, θ⁽ᵏ⁾),
 *
 * with y⁽ᵏ⁾ = z⁽ᵏ⁾ (`'ista'`) or z⁽ᵏ⁾ + βₖ(z⁽ᵏ⁾ − z⁽ᵏ⁻¹⁾) (`'fista'`), learned W_e⁽ᵏ⁾ (or ηₖ W_decᵀ
 * when tied) and θ⁽ᵏ⁾ = exp(log_threshold[k]) per feature; x̂ = z W_dec + b_dec with the same
 * W_dec. Loss = mean_b ‖x − x̂‖² + λ·s(t)·mean_b ‖z‖₁; decoder rows unit-norm (ConstrainedAdam).
 * Initialised as ISTA on that loss (W_e⁽ᵏ⁾ = W_decᵀ/L, θ = λ/(2L)), from a decoder of random unit
 * rows (the seed's `'init'` Philox domain). Resampling is opt-in (`resampleSteps` on the
 * trainer), see `ArchitecturePlugin.resample` in `@dictlearn/core`.
 */
export function lista(config: Partial<ListaConfig> = {}): ArchitecturePlugin<ListaConfig> {
  const cfg = validateConfig<ListaConfig>('lista', config, {
    iterations: {
      kind: 'number',
      default: 3,
      check: (v: number) =>
        Number.isInteger(v) && v >= 1 && v <= 64 ? null : 'must be an integer in [1, 64]',
    },
    variant: {
      kind: 'string',
      default: 'ista',
      check: (v: string) => (v === 'ista' || v === 'fista' ? null : "must be 'ista' or 'fista'"),
    },
    tied: { kind: 'boolean', default: false },
    nonNegative: { kind: 'boolean', default: true },
    l1Penalty: { kind: 'number', default: 0.1, check: (v: number) => (v >= 0 ? null : 'must be ≥ 0') },
    initThreshold: {
      kind: 'number',
      default: 0,
      check: (v: number) => (v >= 0 ? null : 'must be ≥ 0 (0: ISTA’s λ/(2L))'),
    },
  });
  if (cfg.l1Penalty === 0 && cfg.initThreshold === 0) {
    throw new DictlearnError(
      'lista',
      "field 'initThreshold' must be > 0 when 'l1Penalty' is 0 (ISTA's λ/(2L) would be 0), got 0",
    );
  }
  const n = cfg.iterations;
  const momentum = cfg.variant === 'fista' ? fistaMomentum(n) : new Array<number>(n).fill(0);

  /** r W_e⁽ᵏ⁾ for a residual r [B, d]. */
  const encoderStep = (p: Params, r: Tensor, k: number): Tensor => {
    const [F, d] = p.W_dec.shape;
    if (cfg.tied) {
      // η_k·(r W_decᵀ), with η scaling r ([B, d]) rather than the wider product [B, F].
      const eta = exp(slice(p.log_step, [k], [1]));
      return matmul(mul(r, eta), p.W_dec, { transB: true });
    }
    return matmul(r, reshape(slice(p.W_enc, [k, 0, 0], [1, d, F]), [d, F]));
  };

  const encode = (p: Params, x: Tensor): Tensor => {
    const F = p.W_dec.shape[0];
    const xc = sub(x, p.b_dec);
    let z: Tensor | null = null;
    let y: Tensor | null = null;
    for (let k = 0; k < n; k++) {
      const theta = reshape(exp(slice(p.log_threshold, [k, 0], [1, F])), [F]);
      // From z⁽⁰⁾ = 0 the first step needs no decoder product.
      const u = y === null ? encoderStep(p, xc, k) : add(y, encoderStep(p, sub(xc, matmul(y, p.W_dec)), k));
      const next = softThreshold(u, theta, cfg.nonNegative);
      y = z !== null && momentum[k] !== 0 && k < n - 1 ? add(next, mul(sub(next, z), momentum[k])) : next;
      z = next;
    }
    return z as Tensor;
  };
  const decode = (p: Params, f: Tensor) => add(matmul(f, p.W_dec), p.b_dec);

  return {
    name: 'lista',
    packageName: PACKAGE,
    config: cfg,
    training: LISTA_TRAINING,
    nonNegativeFeatures: cfg.nonNegative,
    paramShapes: ({ activationDim: d, dictSize: F }: DictionarySizes): Record<string, number[]> =>
      cfg.tied
        ? { W_dec: [F, d], b_dec: [d], log_step: [n], log_threshold: [n, F] }
        : { W_enc: [n, d, F], W_dec: [F, d], b_dec: [d], log_threshold: [n, F] },
    featureAxes: (): Record<string, number> =>
      cfg.tied ? { W_dec: 0, log_threshold: 1 } : { W_enc: 2, W_dec: 0, log_threshold: 1 },
    init({ activationDim: d, dictSize: F }, { seed, backend }) {
      // The decoder as randomUnitRows would draw it (the same host Philox values), kept on the
      // host for the power iteration that sets ISTA's step 1/L.
      const wDec = philoxUnitRows(F, d, seedFor('init', seed), 0, 1);
      const L = squaredSpectralNorm(wDec, F, d);
      const theta = cfg.initThreshold > 0 ? cfg.initThreshold : cfg.l1Penalty / (2 * L);
      const params: Params = {
        W_dec: tensor(wDec, [F, d], { backend }),
        b_dec: zeros([d], { backend }),
        log_threshold: tensor(new Float32Array(n * F).fill(Math.log(theta)), [n, F], { backend }),
      };
      if (cfg.tied) {
        params.log_step = tensor(new Float32Array(n).fill(-Math.log(L)), [n], { backend });
      } else {
        const wEnc = new Float32Array(n * d * F);
        for (let i = 0; i < d; i++) for (let f = 0; f < F; f++) wEnc[i * F + f] = wDec[f * d + i] / L;
        for (let k = 1; k < n; k++) wEnc.copyWithin(k * d * F, 0, d * F);
        params.W_enc = tensor(wEnc, [n, d, F], { backend });
      }
      return params;
    },
    encode,
    decode,
    loss(p, x, ctx) {
      const B = x.shape[0];
      const z = encode(p, x);
      const xhat = decode(p, z);
      const mse = div(sum(square(sub(x, xhat))), B);
      const activity = sum(cfg.nonNegative ? z : abs(z), 0);
      const l1 = div(sum(activity), B);
      return {
        loss: add(mse, mul(l1, cfg.l1Penalty * ctx.sparsityScale)),
        logs: {
          mse_loss: mse,
          sparsity_loss: l1,
          ...(ctx.withLogs ? { l2_loss: div(sum(l2Norm(sub(x, xhat), -1)), B) } : {}),
        },
        features: z,
        reconstruction: xhat,
        activity,
      };
    },
    decoderRows: (p) => add(p.W_dec, 0),
    // Training ran on x/s: the residual, every iterate and so every threshold scale with s,
    // while W_e, η and W_dec do not; b_dec and θ take the factor.
    foldScale: (p, s) => ({ b_dec: mul(p.b_dec, s), log_threshold: add(p.log_threshold, Math.log(s)) }),
    unfoldScale: (p, s) => ({
      b_dec: mul(p.b_dec, 1 / s),
      log_threshold: add(p.log_threshold, -Math.log(s)),
    }),
    resample: (p, features, inputs) => resampleLista(p, features, inputs, n),
  };
}

/**
 * Dead-feature resampling in the spirit of REFERENCE's (dictionary_learning's
 * `resample_neurons`), for every iteration at once. Feature `replace[i]` is rebuilt from input
 * row x_i: decoder row ← x_i/‖x_i‖; each iteration's encoder column ← x_i/‖x_i‖ · 0.2 · (mean norm
 * of that iteration's alive encoder columns) (untied only); each iteration's threshold ← the
 * mean of its alive features' log θ (a dead feature's threshold has often grown past every
 * input, which is why it died). Alive = not in `dead`. With no alive feature the norms are
 * taken as 1 and the thresholds kept.
 */
function resampleLista(p: Params, features: DeadFeatures, inputs: Tensor, n: number): Params {
  const [F, d] = p.W_dec.shape;
  const backend = p.W_dec.backend;
  const keep = new Float32Array(F).fill(1);
  for (const j of features.replace) keep[j] = 0;
  const alive = new Float32Array(F).fill(1);
  for (const j of features.dead) alive[j] = 0;
  const aliveCount = alive.reduce((a, b) => a + b, 0);
  const idx = tensor(features.replace, [features.replace.length], { dtype: 'int32', backend });
  const unit = div(inputs, l2Norm(inputs, -1, true));
  const keepRows = tensor(keep, [F, 1], { backend });
  const aliveT = tensor(alive, [F], { backend });
  const out: Params = {
    W_dec: add(mul(p.W_dec, keepRows), scatterAddRows(zeros([F, d], { backend }), idx, unit)),
  };
  if (aliveCount > 0) {
    // Per iteration: mean log θ of the alive features, written into the rebuilt columns.
    const meanLog = div(sum(mul(p.log_threshold, aliveT), 1, true), aliveCount); // [n, 1]
    const rebuilt = reshape(sub(1, keepRows), [1, F]);
    out.log_threshold = add(mul(p.log_threshold, reshape(keepRows, [1, F])), mul(meanLog, rebuilt));
  }
  if (p.W_enc) {
    const columns: Tensor[] = [];
    for (let k = 0; k < n; k++) {
      const wk = reshape(slice(p.W_enc, [k, 0, 0], [1, d, F]), [d, F]);
      const norm =
        aliveCount > 0 ? div(sum(mul(l2Norm(wk, 0), aliveT)), aliveCount) : tensor([1], [], { backend });
      const fresh = transpose(scatterAddRows(zeros([F, d], { backend }), idx, mul(unit, mul(norm, 0.2))));
      columns.push(reshape(add(mul(wk, reshape(keepRows, [1, F])), fresh), [1, d, F]));
    }
    out.W_enc = concat(columns, 0);
  }
  return out;
}

/** Registry factories of this package (what `@dictlearn/arch-lista/register` registers). */
export const factories: readonly ArchitectureFactory[] = [
  { name: 'lista', packageName: PACKAGE, create: (config) => lista(config as Partial<ListaConfig>) },
];
