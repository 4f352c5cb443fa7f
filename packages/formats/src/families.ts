/**
 * How dictlearn's architectures map onto the tensors every format stores. The formats store
 * one of four encoder kinds, in dictlearn names once the format's key names and layouts are
 * undone (a {@link NativeParams}):
 *
 * | kind | dictlearn architectures | tensors |
 * | --- | --- | --- |
 * | `relu` | standard, april-update, p-anneal, tied | W_enc, b_enc, W_dec, b_dec |
 * | `topk` | topk | W_enc, b_enc, W_dec, b_dec (+ k) |
 * | `threshold` | batch-topk, matryoshka-batch-topk, jumprelu | W_enc, b_enc, W_dec, b_dec, threshold |
 * | `gated` | gated, gated-anneal | W_enc, b_gate, r_mag, b_mag, W_dec, b_dec |
 *
 * `tied` stores W_enc = W_decᵀ explicitly; JumpReLU's θ is stored as `threshold` (dictlearn keeps
 * log θ), BatchTopK's one θ as a scalar or repeated per feature.
 */
import { DictlearnError } from '@dictlearn/core';
import { type DictionaryParts, type HostParam, transpose2d } from './parts.js';

/** A dictionary's tensors in dictlearn names and layouts, before an architecture is chosen. */
export interface NativeParams {
  /** [d, F]. */
  W_enc: Float32Array;
  /** [F] (absent for gated). */
  b_enc?: Float32Array;
  /** [F, d]. */
  W_dec: Float32Array;
  /** [d]. */
  b_dec: Float32Array;
  /** θ: one value (BatchTopK) or one per feature (JumpReLU); absent when there is none. */
  threshold?: Float32Array;
  /** Gated: [F] each. */
  b_gate?: Float32Array;
  /** Gated. */
  r_mag?: Float32Array;
  /** Gated. */
  b_mag?: Float32Array;
}

/** The architectures of each kind. */
export const KINDS = {
  /** ReLU encoders: W_enc, b_enc, W_dec, b_dec. */
  relu: ['standard', 'april-update', 'p-anneal', 'tied'],
  /** Per-row TopK: the ReLU tensors (and k). */
  topk: ['topk'],
  /** A threshold on the encoder's output: the ReLU tensors and θ. */
  threshold: ['batch-topk', 'matryoshka-batch-topk', 'jumprelu'],
  /** Gated encoders: W_enc, b_gate, r_mag, b_mag, W_dec, b_dec. */
  gated: ['gated', 'gated-anneal'],
} as const;

/** The kind of a dictlearn architecture, or undefined for one no format can hold yet. */
export function kindOf(architecture: string): keyof typeof KINDS | undefined {
  for (const [k, names] of Object.entries(KINDS))
    if ((names as readonly string[]).includes(architecture)) return k as keyof typeof KINDS;
  return undefined;
}

/** Every architecture the formats can hold. */
export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.values(KINDS).flat();

/**
 * The float32 θ nearest to being exp(log θ) for a stored `threshold` t > 0: log t rounded to
 * float32, or the neighbour whose float32 exp is exactly t when there is one, so a dictlearn
 * JumpReLU written as `threshold` and read back gets its log θ bit for bit (whenever exp is
 * one-to-one there, i.e. |log θ| > 1).
 */
export function logThreshold(t: number): number {
  const v = Math.fround(Math.log(t));
  const f = new Float32Array([v]);
  const u = new Int32Array(f.buffer);
  const base = u[0];
  for (const step of [0, 1, -1, 2, -2]) {
    u[0] = base + step;
    if (Math.fround(Math.exp(f[0])) === t) return f[0];
  }
  return v;
}

const p = (shape: number[], values: Float32Array): HostParam => ({ shape, values });

/**
 * dictlearn parameters of `architecture` from the stored tensors. Errors name `source`: a tied
 * dictionary whose encoder is not the decoder's transpose, a BatchTopK threshold that differs
 * across features, a JumpReLU threshold ≤ 0 (dictlearn stores log θ), a missing tensor.
 */
export function paramsOf(
  architecture: string,
  n: NativeParams,
  d: number,
  F: number,
  source: string,
): Record<string, HostParam> {
  const need = (name: keyof NativeParams): Float32Array => {
    const v = n[name];
    if (!v)
      throw new DictlearnError(
        source,
        `architecture '${architecture}' needs '${name}', which the file does not hold`,
      );
    return v;
  };
  const base = () => ({
    W_enc: p([d, F], n.W_enc),
    b_enc: p([F], need('b_enc')),
    W_dec: p([F, d], n.W_dec),
    b_dec: p([d], n.b_dec),
  });
  switch (architecture) {
    case 'standard':
    case 'april-update':
    case 'p-anneal':
    case 'topk':
      return base();
    case 'tied': {
      const t = transpose2d(n.W_dec, F, d);
      const at = n.W_enc.findIndex((v, i) => !Object.is(v, t[i]));
      if (at >= 0) {
        throw new DictlearnError(
          source,
          `a tied dictionary needs the encoder to be the decoder's transpose, but they differ at W_enc flat index ${at}`,
        );
      }
      return { W_dec: p([F, d], n.W_dec), b_enc: p([F], need('b_enc')), b_dec: p([d], n.b_dec) };
    }
    case 'batch-topk':
    case 'matryoshka-batch-topk': {
      const t = need('threshold');
      if (t.some((v) => !Object.is(v, t[0]))) {
        throw new DictlearnError(
          source,
          `architecture '${architecture}' has one threshold, but the file's threshold differs across features`,
        );
      }
      return { ...base(), threshold: p([], Float32Array.of(t[0])) };
    }
    case 'jumprelu': {
      const t = need('threshold');
      const full = t.length === F ? t : t.length === 1 ? new Float32Array(F).fill(t[0]) : undefined;
      if (!full)
        throw new DictlearnError(source, `threshold has ${t.length} values, expected ${F} (one per feature)`);
      const bad = full.findIndex((v) => !(v > 0));
      if (bad >= 0) {
        throw new DictlearnError(
          source,
          `threshold of feature ${bad} is ${full[bad]}: dictlearn's jumprelu needs θ > 0 (it stores log θ)`,
        );
      }
      return { ...base(), log_threshold: p([F], full.map(logThreshold)) };
    }
    case 'gated':
    case 'gated-anneal':
      return {
        W_enc: p([d, F], n.W_enc),
        b_gate: p([F], need('b_gate')),
        r_mag: p([F], need('r_mag')),
        b_mag: p([F], need('b_mag')),
        W_dec: p([F, d], n.W_dec),
        b_dec: p([d], n.b_dec),
      };
    default:
      throw new DictlearnError(
        source,
        `architecture '${architecture}' cannot be stored in this format yet (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`,
      );
  }
}

/**
 * The stored tensors of a dictionary (the inverse of {@link paramsOf}). `thresholdPerFeature`
 * repeats a BatchTopK θ over the features (SAELens stores every threshold as JumpReLU's).
 */
export function nativeOf(parts: DictionaryParts, where: string, thresholdPerFeature = false): NativeParams {
  const { activationDim: d, dictSize: F, params } = parts;
  const get = (name: string) => {
    const v = params[name];
    if (!v)
      throw new DictlearnError(where, `architecture '${parts.architecture}' has no parameter '${name}'`);
    return v.values;
  };
  switch (kindOf(parts.architecture)) {
    case 'relu':
    case 'topk':
      return {
        W_enc: parts.architecture === 'tied' ? transpose2d(get('W_dec'), F, d) : get('W_enc'),
        b_enc: get('b_enc'),
        W_dec: get('W_dec'),
        b_dec: get('b_dec'),
      };
    case 'threshold': {
      const threshold =
        parts.architecture === 'jumprelu'
          ? get('log_threshold').map((v) => Math.fround(Math.exp(v)))
          : thresholdPerFeature
            ? new Float32Array(F).fill(get('threshold')[0])
            : Float32Array.of(get('threshold')[0]);
      return {
        W_enc: get('W_enc'),
        b_enc: get('b_enc'),
        W_dec: get('W_dec'),
        b_dec: get('b_dec'),
        threshold,
      };
    }
    case 'gated':
      return {
        W_enc: get('W_enc'),
        b_gate: get('b_gate'),
        r_mag: get('r_mag'),
        b_mag: get('b_mag'),
        W_dec: get('W_dec'),
        b_dec: get('b_dec'),
      };
    default:
      throw new DictlearnError(
        where,
        `architecture '${parts.architecture}' is not supported by this format yet (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`,
      );
  }
}

/**
 * Folds "b_dec is not subtracted before encoding" into the encoder biases: an SAE computing
 * x W + b equals dictlearn's (x − b_dec) W + (b + b_dec W). Exact in real arithmetic; float32
 * rounding of the new bias differs from the file's computation by about one ulp.
 */
export function foldBDecIntoBias(
  bias: Float32Array,
  bDec: Float32Array,
  W: Float32Array,
  d: number,
  F: number,
): Float32Array {
  const out = new Float32Array(F);
  for (let j = 0; j < F; j++) {
    let s = bias[j];
    for (let i = 0; i < d; i++) s += bDec[i] * W[i * F + j];
    out[j] = s;
  }
  return out;
}
