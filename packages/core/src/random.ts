/**
 * Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
 * one random generator of dictlearn. It is counter-based: element i of a draw depends only on
 * (seed, stream, i), so every backend computes the same stream, in any order, in parallel.
 *
 * Purposes: every random purpose (data, ground truth, init, row sampling, resampling, shuffling…)
 * has its own key domain. A draw's seed is either a plain number (the `'user'` domain, tag 0) or
 * `seedFor(purpose, seed)`; the key packs the seed (< 2⁵³, so at most 21 bits in the high word)
 * with the purpose's tag in the 11 bits above it. The map (seed, purpose) → key is injective, so
 * no two purposes share a key whatever seeds a user picks: a dictionary initialised with seed 0
 * never starts on the ground truth of a synthetic source with seed 0.
 *
 * The stream of a draw of n values with `seed` and `stream`:
 * - key = [seed mod 2³², floor(seed / 2³²) + 2²¹ · tag(purpose)]; counter of block b =
 *   [b mod 2³², floor(b / 2³²), stream, 0];
 *   block b yields four uint32 words, the values of elements 4b … 4b+3.
 * - uniform [0, 1): (word >>> 8) · 2⁻²⁴ (exact in float32); [low, high): low + (high − low) · u in float32.
 * - normal: per block, Box–Muller on the word pairs (w0, w1) and (w2, w3):
 *   u1 = ((w >>> 8) + 1) · 2⁻²⁴ ∈ (0, 1], u2 = (w' >>> 8) · 2⁻²⁴, r = √(−2 ln u1), θ = 2π u2,
 *   values r·cos θ and r·sin θ, computed in float64 and rounded to float32, then mean + std · z
 *   in float32. GPU backends without float64 compute normals on the host with {@link philoxNormal}
 *   and upload them, so they too match bit for bit.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32 (exact, via 16-bit halves). */
function mulhi(a: number, b: number): number {
  const aH = a >>> 16;
  const aL = a & 0xffff;
  const bH = b >>> 16;
  const bL = b & 0xffff;
  const ll = aL * bL;
  const lh = aL * bH;
  const hl = aH * bL;
  const hh = aH * bH;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + Math.floor(lh / 65536) + Math.floor(hl / 65536) + Math.floor(mid / 65536)) >>> 0;
}

/** One Philox-4x32-10 block: 4 uint32 counter words and 2 key words → 4 uint32 words. */
export function philox4x32(
  counter: readonly number[],
  key: readonly number[],
  out = new Uint32Array(4),
): Uint32Array {
  let c0 = counter[0] >>> 0;
  let c1 = counter[1] >>> 0;
  let c2 = counter[2] >>> 0;
  let c3 = counter[3] >>> 0;
  let k0 = key[0] >>> 0;
  let k1 = key[1] >>> 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

/**
 * What a random draw is for. Each purpose is its own key domain (see the module comment), so
 * draws for different purposes never coincide, whatever seeds they are given.
 */
export type RandomPurpose =
  | 'user'
  | 'init'
  | 'data'
  | 'groundTruth'
  | 'sampling'
  | 'resampling'
  | 'shuffle'
  | 'test'
  | 'baseline';

/** The tag of each purpose in the key's high bits (stable: changing one changes every stream). */
export const RANDOM_PURPOSE_TAGS: Readonly<Record<RandomPurpose, number>> = Object.freeze({
  user: 0,
  init: 1,
  data: 2,
  groundTruth: 3,
  sampling: 4,
  resampling: 5,
  shuffle: 6,
  test: 7,
  // Random directions that stand beside learned ones as a chance baseline (nearest-token lists).
  baseline: 8,
});

/** A seed bound to a purpose: made by {@link seedFor}. */
export interface PurposeSeed {
  /** A non-negative safe integer. */
  readonly seed: number;
  /** The key domain. */
  readonly purpose: RandomPurpose;
}

/** A draw's seed: a plain number (the `'user'` domain) or a seed bound to a purpose. */
export type Seed = number | PurposeSeed;

/** `seed` in the key domain of `purpose` (checked here, so a bad seed is named where it is made). */
export function seedFor(purpose: RandomPurpose, seed: number): PurposeSeed {
  if (!Object.hasOwn(RANDOM_PURPOSE_TAGS, purpose)) {
    throw new RangeError(
      `random: unknown purpose '${purpose}' (known: ${Object.keys(RANDOM_PURPOSE_TAGS).join(', ')})`,
    );
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`random: seed must be a non-negative safe integer, got ${seed}`);
  }
  return Object.freeze({ seed, purpose });
}

/** The Philox key [k0, k1] of a seed: [seed mod 2³², ⌊seed / 2³²⌋ + 2²¹ · tag(purpose)]. */
export function philoxKey(seed: Seed): [number, number] {
  const s = typeof seed === 'number' ? seedFor('user', seed) : seedFor(seed.purpose, seed.seed);
  const tag = RANDOM_PURPOSE_TAGS[s.purpose];
  return [s.seed >>> 0, (Math.floor(s.seed / 2 ** 32) + tag * 2 ** 21) >>> 0];
}

/** The raw uint32 words of a draw (see the module comment for the layout). */
export function philoxWords(n: number, seed: Seed, stream = 0): Uint32Array {
  const key = philoxKey(seed);
  const out = new Uint32Array(Math.ceil(n / 4) * 4);
  const block = new Uint32Array(4);
  for (let b = 0; b * 4 < n; b++) {
    philox4x32([b >>> 0, Math.floor(b / 2 ** 32), stream >>> 0, 0], key, block);
    out.set(block, b * 4);
  }
  return out.subarray(0, n);
}

const TWO_POW_M24 = 2 ** -24;

/** n uniform float32 values in [low, high). */
export function philoxUniform(n: number, seed: Seed, stream = 0, low = 0, high = 1): Float32Array {
  const words = philoxWords(n, seed, stream);
  const out = new Float32Array(n);
  const scale = Math.fround(high - low);
  for (let i = 0; i < n; i++) {
    const u = (words[i] >>> 8) * TWO_POW_M24;
    out[i] = Math.fround(low + Math.fround(scale * u));
  }
  return out;
}

/** n normal float32 values with the given mean and standard deviation. */
export function philoxNormal(n: number, seed: Seed, stream = 0, mean = 0, std = 1): Float32Array {
  const words = philoxWords(Math.ceil(n / 2) * 2, seed, stream);
  const out = new Float32Array(n);
  const m = Math.fround(mean);
  const s = Math.fround(std);
  for (let i = 0; i < n; i += 2) {
    const u1 = ((words[i] >>> 8) + 1) * TWO_POW_M24;
    const u2 = (words[i + 1] >>> 8) * TWO_POW_M24;
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    out[i] = Math.fround(m + Math.fround(s * Math.fround(r * Math.cos(theta))));
    if (i + 1 < n) out[i + 1] = Math.fround(m + Math.fround(s * Math.fround(r * Math.sin(theta))));
  }
  return out;
}

/**
 * Random directions: `rows` vectors of length `cols` from the normal stream, each scaled to L2
 * norm `norm`. The norm is taken in float64 over the float32 normals and every value rounded once
 * to float32, so every backend (which computes this on the host) gets the same bits.
 */
export function philoxUnitRows(rows: number, cols: number, seed: Seed, stream = 0, norm = 1): Float32Array {
  const v = philoxNormal(rows * cols, seed, stream);
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < cols; j++) ss += v[r * cols + j] * v[r * cols + j];
    const scale = ss > 0 ? norm / Math.sqrt(ss) : 0;
    for (let j = 0; j < cols; j++) out[r * cols + j] = Math.fround(v[r * cols + j] * scale);
  }
  return out;
}
