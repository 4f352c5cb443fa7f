/**
 * Random streams for the synthetic source, built on core's Philox-4x32-10 block function.
 *
 * A {@link PhiloxStream} reads the words of one counter stream in order: block k of the stream
 * (c1, c2, c3) under `seed` is `philox4x32([k, c1, c2, c3], philoxKey(seed))`, and its
 * four words are consumed in order. Core's own draws (`philoxWords`, `randomNormal`...) use
 * counters with c3 = 0, so streams with c3 ≥ 1 never overlap them under the same seed.
 *
 * Normal values use the ziggurat method (Marsaglia & Tsang 2000, 128 layers) on one 32-bit word
 * per try: bits 0–6 pick the layer, bit 7 the sign, bits 8–31 the 24-bit uniform; about 1.2% of
 * tries need more words (wedge test or tail). It is about ten times faster than Box–Muller in
 * JavaScript, which matters for the per-sample noise.
 */
import { philox4x32, philoxKey, type Seed } from '@dictlearn/core';
import {
  type BufferWasm,
  bufferWasm,
  PHILOX_BLOCKS_PER_STEP,
  SCRATCH_AT,
  SCRATCH_FLOATS,
  WORD_COUNT,
  WORDS_AT,
} from './buffer-wasm.js';
import { LOG_MISS_TABLE, normalCdf, PHI_MIN, PHI_N, PHI_STEPS, PHI_TABLE } from './normal-cdf.js';
import { ZIG_F, ZIG_R, ZIG_TAIL, ZIG_X } from './ziggurat.js';

const TWO_POW_M24 = 2 ** -24;
/** Most blocks fetched at once (the words region of the WebAssembly memory holds 4096). */
const MAX_CHUNK = WORD_COUNT / 4;

/** Options of {@link PhiloxStream}. */
export interface PhiloxStreamOptions {
  /**
   * Compute blocks and the normals' fast path in WebAssembly SIMD where available (default
   * true); `false` keeps the TypeScript loops (the oracle). Either gives the same values.
   */
  wasm?: boolean;
  /**
   * A WebAssembly instance to work in (instead of a new one), whose memory holds the rows the
   * stream's normals are added to (see {@link PhiloxStream.addNormals}); one stream per instance
   * (its words region is the stream's). Its owner may grow the memory, but must
   * {@link PhiloxStream.reset} the stream afterwards. Ignored with `wasm: false`.
   */
  instance?: BufferWasm;
}

/**
 * Sequential reader of one Philox counter stream (see the module comment for the layout).
 * Blocks are computed in chunks (by WebAssembly where available, else by core's
 * `philox4x32`); the chunk size is a speed hint only and never changes the words.
 */
export class PhiloxStream {
  readonly #k0: number;
  readonly #k1: number;
  readonly #wasm: BufferWasm | null;
  /** The computed words, viewed as int32: bit operations on them stay in small integers. */
  #words: Int32Array;
  #c0 = 0;
  #c1 = 0;
  #c2 = 0;
  #c3 = 0;
  #chunk = 1;
  #pos = 0;
  #end = 0;
  /** Whether blocks (and the normals' fast path) run in WebAssembly. */
  readonly usesWasm: boolean;

  /** `seed`: a plain seed or `seedFor(purpose, seed)`; its Philox key is core's `philoxKey(seed)`. */
  constructor(seed: Seed, options: PhiloxStreamOptions = {}) {
    [this.#k0, this.#k1] = philoxKey(seed);
    this.#wasm = options.wasm === false ? null : (options.instance ?? bufferWasm());
    this.#words = this.#wasm ? this.#wasmWords(this.#wasm) : new Int32Array(WORD_COUNT);
    this.usesWasm = this.#wasm !== null;
  }

  #wasmWords(w: BufferWasm): Int32Array {
    return new Int32Array(w.memory.buffer, WORDS_AT, WORD_COUNT);
  }

  /**
   * Restarts at block 0 of the stream (c1, c2, c3). `expectedWords` (a hint) sizes the first
   * chunks of blocks computed ahead.
   */
  reset(c1: number, c2: number, c3: number, expectedWords = 16): this {
    this.#c0 = 0;
    this.#c1 = c1 >>> 0;
    this.#c2 = c2 >>> 0;
    this.#c3 = c3 >>> 0;
    this.#chunk = Math.min(MAX_CHUNK, Math.max(1, Math.ceil(expectedWords / 4) + 1));
    this.#pos = 0;
    this.#end = 0;
    // the memory may have grown (a shared instance's owner grows it between uses)
    if (this.#wasm && this.#words.buffer !== this.#wasm.memory.buffer)
      this.#words = this.#wasmWords(this.#wasm);
    return this;
  }

  #refill(): void {
    let n = this.#chunk;
    if (this.#wasm) {
      // WebAssembly computes whole steps of blocks anyway: use them all (the words are the same)
      n = Math.ceil(n / PHILOX_BLOCKS_PER_STEP) * PHILOX_BLOCKS_PER_STEP;
      this.#wasm.philox(WORDS_AT, n, this.#c0, this.#c1, this.#c2, this.#c3, this.#k0, this.#k1);
    } else {
      const counter = [0, this.#c1, this.#c2, this.#c3];
      const key = [this.#k0, this.#k1];
      const block = new Uint32Array(4);
      for (let b = 0; b < n; b++) {
        counter[0] = (this.#c0 + b) >>> 0;
        philox4x32(counter, key, block);
        this.#words.set(new Int32Array(block.buffer), 4 * b);
      }
    }
    this.#c0 = (this.#c0 + n) >>> 0;
    this.#pos = 0;
    this.#end = 4 * n;
    this.#chunk = Math.min(MAX_CHUNK, 2 * n); // a stream read past its hint grows its chunks
  }

  /** The next word as an int32 (the same 32 bits as {@link word}). */
  #next(): number {
    if (this.#pos === this.#end) this.#refill();
    return this.#words[this.#pos++];
  }

  /** The next uint32 word. */
  word(): number {
    return this.#next() >>> 0;
  }

  /** A uniform value in [0, 1) with 24 bits, as core's `philoxUniform`. */
  uniform(): number {
    return (this.#next() >>> 8) * TWO_POW_M24;
  }

  /** A uniform value in (0, 1] with 24 bits (safe for logarithms). */
  uniformPositive(): number {
    return ((this.#next() >>> 8) + 1) * TWO_POW_M24;
  }

  /** A standard normal value (ziggurat). */
  normal(): number {
    const w = this.#next();
    const i = w & 127;
    const u = (w >>> 8) * TWO_POW_M24;
    // the sign (bit 7) as ±1 without a branch: a random branch would be mispredicted half the time
    if (u < ZIG_R[i]) return (1 - ((w >>> 6) & 2)) * u * ZIG_X[i];
    return this.#normalSlow(w);
  }

  /**
   * Adds `scale` times the next `n` normal values to `out[offset …]`: the same values, in the
   * same order, as `n` calls of {@link normal}, without the per-call overhead. With WebAssembly
   * the fast path runs there: in place where `out` is a view of the stream's instance memory,
   * else through its scratch rows.
   */
  addNormals(out: Float32Array, offset: number, n: number, scale: number): void {
    const w = this.#wasm;
    if (!w) {
      this.#addNormalsTs(out, offset, n, scale);
      return;
    }
    if (out.buffer === w.memory.buffer) {
      this.#addNormalsWasm(w, out, offset, n, scale);
      return;
    }
    const scratch = new Float32Array(w.memory.buffer, SCRATCH_AT, SCRATCH_FLOATS);
    for (let done = 0; done < n; done += SCRATCH_FLOATS) {
      const part = out.subarray(offset + done, offset + Math.min(n, done + SCRATCH_FLOATS));
      scratch.set(part);
      this.#addNormalsWasm(w, scratch, 0, part.length, scale);
      part.set(scratch.subarray(0, part.length));
    }
  }

  /** {@link addNormals} in TypeScript: the oracle of the WebAssembly fast path. */
  #addNormalsTs(out: Float32Array, offset: number, n: number, scale: number): void {
    const words = this.#words;
    let j = 0;
    while (j < n) {
      if (this.#pos === this.#end) this.#refill();
      let pos = this.#pos;
      const stop = Math.min(this.#end, pos + (n - j));
      // a tight loop over the words at hand; a word that misses the fast test leaves it
      let slow = false;
      while (pos < stop) {
        const w = words[pos++];
        const i = w & 127;
        const u = (w >>> 8) * TWO_POW_M24;
        if (u < ZIG_R[i]) {
          out[offset + j++] += scale * ((1 - ((w >>> 6) & 2)) * u * ZIG_X[i]);
        } else {
          this.#pos = pos;
          out[offset + j++] += scale * this.#normalSlow(w);
          slow = true;
          break;
        }
      }
      if (!slow) this.#pos = pos;
    }
  }

  /**
   * {@link addNormals} with `out` in the instance's memory: WebAssembly runs over the words at
   * hand up to the first that misses the fast test; that one takes {@link normalSlow} here
   * (which may read more words), then WebAssembly goes on.
   */
  #addNormalsWasm(w: BufferWasm, out: Float32Array, offset: number, n: number, scale: number): void {
    const outAt = out.byteOffset + 4 * offset;
    let j = 0;
    while (j < n) {
      if (this.#pos === this.#end) this.#refill();
      const pos = this.#pos;
      const stop = Math.min(this.#end, pos + (n - j));
      const missAt =
        (w.normals(WORDS_AT + 4 * pos, WORDS_AT + 4 * stop, outAt + 4 * j, scale) - WORDS_AT) >> 2;
      j += missAt - pos;
      this.#pos = missAt;
      if (missAt < stop) out[offset + j++] += scale * this.#normalSlow(this.#next());
    }
  }

  /** The ziggurat's rare path for a word that missed the fast test: tail, wedge, or retry. */
  #normalSlow(w: number): number {
    for (;;) {
      const i = w & 127;
      const u = (w >>> 8) * TWO_POW_M24;
      const x = u * ZIG_X[i];
      const sign = 1 - ((w >>> 6) & 2);
      if (u < ZIG_R[i]) return sign * u * ZIG_X[i];
      if (i === 0) {
        // the tail beyond r (Marsaglia 1964)
        for (;;) {
          const a = -Math.log(this.uniformPositive()) / ZIG_TAIL;
          const b = -Math.log(this.uniformPositive());
          if (b + b > a * a) return sign * (ZIG_TAIL + a);
        }
      }
      // the wedge between the layer's rectangle and the curve
      const y = ZIG_F[i] + this.uniform() * (ZIG_F[i + 1] - ZIG_F[i]);
      if (y < Math.exp(-0.5 * x * x)) return sign * x;
      w = this.#next();
    }
  }
}

export { erfc, normalCdf } from './normal-cdf.js';

/**
 * The index of an upper bound of {@link normalCdf}(x) among the tabulated values (the next one
 * up; PHI_N + 1 stands for 1): see {@link cdfBound} and {@link cdfBoundLogMiss}.
 */
export function normalCdfUpperIndex(x: number): number {
  const k = Math.ceil((x - PHI_MIN) * PHI_STEPS);
  return k <= 0 ? 0 : k > PHI_N ? PHI_N + 1 : k;
}

/** The bound of an index from {@link normalCdfUpperIndex}: within 0.007 above Φ(x). */
export function cdfBound(k: number): number {
  return k > PHI_N ? 1 : PHI_TABLE[k];
}

/** log(1 − bound) of an index from {@link normalCdfUpperIndex}. */
export function cdfBoundLogMiss(k: number): number {
  return LOG_MISS_TABLE[k];
}

/**
 * Whether v < {@link normalCdf}(x). The table settles almost every case (Φ is increasing); Φ
 * is evaluated only when v falls between the two tabulated values around x.
 */
export function belowNormalCdf(v: number, x: number): boolean {
  const k = Math.floor((x - PHI_MIN) * PHI_STEPS);
  if (k < 0) {
    if (v >= PHI_TABLE[0]) return false;
  } else if (k >= PHI_N) {
    if (v < PHI_TABLE[PHI_N]) return true;
  } else {
    if (v < PHI_TABLE[k]) return true;
    if (v >= PHI_TABLE[k + 1]) return false;
  }
  return v < normalCdf(x);
}

/**
 * Φ⁻¹(p), the standard normal quantile, for p in (0, 1): Acklam's rational approximation refined
 * by one Halley step against {@link normalCdf}.
 */
export function normalQuantile(p: number): number {
  if (p <= 0) return Number.NEGATIVE_INFINITY;
  if (p >= 1) return Number.POSITIVE_INFINITY;
  const a = [
    -39.69683028665376, 220.9460984245205, -275.928510446969, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ];
  const b = [
    -54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572,
  ];
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  let x: number;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    x =
      (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - low) {
    const q = p - 0.5;
    const r = q * q;
    x =
      ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
      (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    x =
      -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const e = normalCdf(x) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}
