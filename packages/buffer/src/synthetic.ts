import {
  type BatchOptions,
  DictlearnError,
  type GroundTruthSource,
  philoxKey,
  philoxNormal,
  seedFor,
  type Tensor,
  tensor,
} from '@dictlearn/core';
import { bufferWasm, bufferWasmModule, HEAP_AT } from './buffer-wasm.js';
import {
  belowNormalCdf,
  cdfBound,
  cdfBoundLogMiss,
  normalCdfUpperIndex,
  normalQuantile,
  PhiloxStream,
} from './random.js';
import type { RowThreads } from './synthetic-threads.js';
import {
  CORRELATED_BLOCK,
  type CodeLists,
  type CorrelatedTables,
  DIRECT_BOUND,
  type FiringTables,
  type SyntheticKernels,
  syntheticKernels,
} from './synthetic-wasm.js';

/** Options of {@link SyntheticSource}; every field has the default of the sparse_coding experiments. */
export interface SyntheticSourceOptions {
  /** Width d of each sample (default 256). */
  dim?: number;
  /** Number of ground-truth features (default 512). */
  numFeatures?: number;
  /** Expected number of active features per sample, Σᵢ pᵢ (default 5). */
  meanActive?: number;
  /** Geometric decay of the firing probabilities, pᵢ ∝ decayⁱ, in (0, 1] (default 0.99). */
  decay?: number;
  /** Expected norm of the noise vector: each component is N(0, noise²/d) (default 0.1; 0 for none). */
  noise?: number;
  /** Gaussian-copula correlation ρ in [0, 1) between the features' firing decisions (default 0). */
  correlation?: number;
  /** Number of random factors that shape the correlation matrix (default 4). */
  correlationRank?: number;
  /**
   * Coefficient of an active feature: `'uniform'` (default), U[0, 1); `'uniform-product'`, the
   * product of two U[0, 1) values, as sparse_coding's generator draws them.
   */
  coefficients?: 'uniform' | 'uniform-product';
  /** Seed of every random draw: features, correlations and samples (default 0). */
  seed?: number;
  /**
   * Compute the samples in WebAssembly SIMD where it is available (default true): the Philox
   * blocks, the firing decisions and coefficients, the sums and the noise; `false` keeps the
   * TypeScript loops. Either gives the same values, bit for bit.
   */
  wasm?: boolean;
  /**
   * Threads that draw a batch's rows, this one included (Node only; default: the cores, at most
   * 4). Batches of 512 rows or more are split over worker threads once `batches()` or
   * {@link SyntheticSource.startThreads} has started them (with WebAssembly; see `wasm`); 1 draws
   * on this thread alone. The values do not depend on it: every sample has its own random streams.
   */
  threads?: number;
}

/** Batches of a {@link SyntheticSource}: core's `BatchOptions` plus the index of the first sample. */
export interface SyntheticBatchOptions extends BatchOptions {
  /** Index of the first sample (default 0); a disjoint range gives held-out data. */
  start?: number;
}

/** Ground-truth sparse codes of a range of samples, in compressed-row form. */
export interface SparseCodes {
  /** Row r's entries are `indices`/`values` at positions `offsets[r]` … `offsets[r + 1] − 1`. */
  offsets: Int32Array;
  /** Active feature ids, increasing within a row. */
  indices: Int32Array;
  /** Their coefficients. */
  values: Float32Array;
}

const OP = 'SyntheticSource';
/** Philox counter word c3 of each per-sample stream (core's own draws use c3 = 0). */
const TAG_CODE = 1;
const TAG_NOISE = 2;
/** Philox streams of the fixed draws (with c3 = 0, as core's `philoxNormal`). */
const STREAM_FEATURES = 0;
const STREAM_LOADINGS = 1;
const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** A source's place in a pool of worker threads. */
interface ThreadSlot {
  pool: RowThreads;
  id: number;
}
/** Drops a collected source's instances from its pool's workers. */
const threadSlots = new FinalizationRegistry<ThreadSlot>(({ pool, id }) => pool.drop(id));

function checkInt(name: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new DictlearnError(OP, `option '${name}' must be an integer ≥ ${min}, got ${v}`);
  }
  return v;
}

function checkNumber(name: string, v: number, ok: (v: number) => boolean, expected: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) {
    throw new DictlearnError(OP, `option '${name}' must be ${expected}, got ${v}`);
  }
  return v;
}

/**
 * Firing probabilities pᵢ = min(1, c·decayⁱ), with c found by bisection so that Σᵢ pᵢ = meanActive.
 */
export function firingProbabilities(numFeatures: number, meanActive: number, decay: number): Float64Array {
  if (meanActive >= numFeatures) return new Float64Array(numFeatures).fill(1);
  const powers = new Float64Array(numFeatures);
  for (let i = 0; i < numFeatures; i++) powers[i] = decay ** i;
  const total = (c: number) => {
    let s = 0;
    for (let i = 0; i < numFeatures; i++) s += Math.min(1, c * powers[i]);
    return s;
  };
  const last = powers[numFeatures - 1];
  let lo = 0;
  let hi = last > 0 && 1 / last < 1e300 ? 1 / last : 1; // c = 1/last makes every p = 1
  while (total(hi) < meanActive && hi < 1e300) {
    lo = hi;
    hi *= 16;
  }
  if (total(hi) < meanActive * (1 - 1e-12)) {
    throw new DictlearnError(
      OP,
      `option 'meanActive' ${meanActive} cannot be reached with decay ${decay} over ${numFeatures} features (the last probabilities underflow); lower meanActive or raise decay`,
    );
  }
  for (let it = 0; it < 2000; it++) {
    const mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    if (total(mid) < meanActive) lo = mid;
    else hi = mid;
  }
  const c = Math.abs(total(hi) - meanActive) <= Math.abs(meanActive - total(lo)) ? hi : lo;
  const p = new Float64Array(numFeatures);
  for (let i = 0; i < numFeatures; i++) p[i] = Math.min(1, c * powers[i]);
  return p;
}

/** The blocks over which independent firing decisions are drawn (see {@link firingBlocks}). */
export interface FiringBlocks {
  /** First feature of each block, then the number of features. */
  blockStart: Int32Array;
  /** Each block's largest (first) probability: the bound its decisions are thinned against. */
  blockBound: Float64Array;
  /** log(1 − bound) of each block, the scale of its geometric skips. */
  blockLogMiss: Float64Array;
}

/**
 * Blocks for thinning non-increasing firing probabilities p: a new block starts where p falls
 * below half the block's first p, or after 64 features.
 */
export function firingBlocks(p: Float64Array): FiringBlocks {
  const starts: number[] = [];
  for (let i = 0; i < p.length; i++) {
    const s = starts[starts.length - 1];
    if (starts.length === 0 || p[i] < 0.5 * p[s] || i - s >= 64) starts.push(i);
  }
  return {
    blockStart: Int32Array.from([...starts, p.length]),
    blockBound: Float64Array.from(starts, (s) => p[s]),
    blockLogMiss: Float64Array.from(starts, (s) => Math.log1p(-p[s])),
  };
}

/**
 * Synthetic activations with known ground-truth features, after the generator of the
 * sparse_coding experiments (`RandomDatasetGenerator`), with the definitions made exact:
 *
 * - **Features**: `numFeatures` unit-norm directions gᵢ in d dimensions: the rows of
 *   `randomNormal([numFeatures, dim], { seed, stream: 0, purpose: 'groundTruth' })` (core's
 *   Philox normals in the ground-truth key domain, so no initialisation can draw them; every
 *   backend computes the same matrix), each divided by its norm.
 * - **Firing**: feature i fires with probability pᵢ = min(1, c·decayⁱ), c chosen so that
 *   Σᵢ pᵢ = `meanActive` ({@link featureProbabilities}). Independently per feature when
 *   `correlation` is 0. Otherwise through a Gaussian copula: z ~ N(0, Σ) with
 *   Σ = (1 − ρ)·I + ρ·C, where C = L Lᵀ is the correlation matrix of `correlationRank` random
 *   factors (L: the rows of `randomNormal([numFeatures, rank], { seed, stream: 1, purpose:
 *   'groundTruth' })`, each
 *   normalised to unit length, so C has a unit diagonal), and feature i fires where
 *   Φ(zᵢ) < pᵢ. The marginal firing probabilities stay exactly pᵢ; features whose loadings
 *   point the same way tend to fire together.
 * - **Coefficients**: each active feature gets U[0, 1) (or the product of two, see
 *   {@link SyntheticSourceOptions.coefficients}).
 * - **Sample**: x = Σ coefᵢ·gᵢ + ε, ε ~ N(0, (noise²/d)·I), so E‖ε‖ ≈ noise.
 *
 * Sample n (a global index, whatever the batch size) is computed from its own Philox streams:
 * counter [k, n mod 2³², ⌊n / 2³²⌋, 1] for the firing decisions and coefficients, and
 * [k, n mod 2³², ⌊n / 2³²⌋, 2] for the noise, under the key `philoxKey(seedFor('data', seed))`. Any range of samples is thus
 * computable on its own, reproducibly, and the sparse code of a sample does not depend on
 * the noise setting. Generation runs on the host and is sparse: the active set of a sample is
 * drawn by geometric skipping over blocks of features (thinning against the block's largest
 * probability), and only active rows are accumulated.
 *
 * Differences from sparse_coding: there pᵢ = (k/F)·decayⁱ (so Σ pᵢ is about k·(1 − decay^F) /
 * (F·(1 − decay)), not k), coefficients are products of two uniforms, the noise is N(0, s²)
 * per component, and correlations come from one correlated draw per batch that rescales the
 * probabilities. Here `meanActive` is the true mean count, and correlations act within samples.
 */
export class SyntheticSource implements GroundTruthSource {
  /** A short description, e.g. `synthetic(d=256, features=512, meanActive=5, seed=0)`. */
  readonly name: string;
  /** Width d of each sample. */
  readonly dim: number;
  /** Number of ground-truth features. */
  readonly numFeatures: number;
  /** Expected number of active features per sample. */
  readonly meanActive: number;
  /** Geometric decay of the firing probabilities. */
  readonly decay: number;
  /** Expected norm of the noise vector. */
  readonly noise: number;
  /** Copula correlation ρ (0: independent features). */
  readonly correlation: number;
  /** Rank of the factor structure of the correlations. */
  readonly correlationRank: number;
  /** How coefficients are drawn. */
  readonly coefficients: 'uniform' | 'uniform-product';
  /** The seed. */
  readonly seed: number;
  /** Firing probability pᵢ of each feature (decreasing; sums to `meanActive`). */
  readonly featureProbabilities: Float64Array;

  readonly #features: Float32Array;
  readonly #loadings: Float32Array | undefined;
  readonly #thresholds: Float64Array | undefined;
  // independent mode: blocks of features with the block's largest probability
  readonly #blockStart: Int32Array;
  readonly #blockBound: Float64Array;
  readonly #blockLogMiss: Float64Array;
  readonly #codeStream: PhiloxStream;
  /** Words a sample's code stream usually needs: ~2 per candidate, 1 per block, 1–2 per coefficient. */
  readonly #codeWords: number;
  readonly #useWasm: boolean;
  /** The WebAssembly kernels (null: none), made on first use by `#wasmKernels`. */
  #kernels: SyntheticKernels | null | undefined;
  /** The TypeScript path's noise stream, made on first use. */
  #noise: PhiloxStream | undefined;
  readonly #threadsOption: number | undefined;
  /** Worker threads drawing ranges of rows (null: none), once `#startThreads` has settled. */
  #threads: ThreadSlot | null | undefined;
  #threadsStarting: Promise<ThreadSlot | null> | undefined;

  constructor(options: SyntheticSourceOptions = {}) {
    const o = options ?? {};
    this.dim = checkInt('dim', o.dim ?? 256, 1);
    this.numFeatures = checkInt('numFeatures', o.numFeatures ?? 512, 1);
    this.meanActive = checkNumber(
      'meanActive',
      o.meanActive ?? 5,
      (v) => v > 0 && v <= this.numFeatures,
      `a number in (0, numFeatures = ${this.numFeatures}]`,
    );
    this.decay = checkNumber('decay', o.decay ?? 0.99, (v) => v > 0 && v <= 1, 'a number in (0, 1]');
    this.noise = checkNumber('noise', o.noise ?? 0.1, (v) => v >= 0, 'a number ≥ 0');
    this.correlation = checkNumber(
      'correlation',
      o.correlation ?? 0,
      (v) => v >= 0 && v < 1,
      'a number in [0, 1)',
    );
    this.correlationRank = checkInt('correlationRank', o.correlationRank ?? 4, 1);
    this.coefficients = o.coefficients ?? 'uniform';
    if (this.coefficients !== 'uniform' && this.coefficients !== 'uniform-product') {
      throw new DictlearnError(
        OP,
        `option 'coefficients' must be 'uniform' or 'uniform-product', got ${JSON.stringify(o.coefficients)}`,
      );
    }
    this.seed = checkInt('seed', o.seed ?? 0, 0);
    this.#threadsOption = o.threads === undefined ? undefined : checkInt('threads', o.threads, 1);
    this.name =
      `synthetic(d=${this.dim}, features=${this.numFeatures}, meanActive=${this.meanActive}, decay=${this.decay}, ` +
      `noise=${this.noise}${this.correlation > 0 ? `, correlation=${this.correlation}` : ''}, seed=${this.seed})`;

    this.featureProbabilities = firingProbabilities(this.numFeatures, this.meanActive, this.decay);
    this.#features = unitRows(
      philoxNormal(this.numFeatures * this.dim, seedFor('groundTruth', this.seed), STREAM_FEATURES),
      this.dim,
    );
    if (this.correlation > 0) {
      // unit-norm rows of L [numFeatures, rank], stored transposed ([rank, numFeatures]) for speed
      const rows = unitRows(
        philoxNormal(
          this.numFeatures * this.correlationRank,
          seedFor('groundTruth', this.seed),
          STREAM_LOADINGS,
        ),
        this.correlationRank,
      );
      const lt = new Float32Array(rows.length);
      for (let i = 0; i < this.numFeatures; i++) {
        for (let k = 0; k < this.correlationRank; k++)
          lt[k * this.numFeatures + i] = rows[i * this.correlationRank + k];
      }
      this.#loadings = lt;
      this.#thresholds = this.featureProbabilities.map(normalQuantile);
    }

    const blocks = firingBlocks(this.featureProbabilities);
    this.#blockStart = blocks.blockStart;
    this.#blockBound = blocks.blockBound;
    this.#blockLogMiss = blocks.blockLogMiss;
    this.#codeWords =
      Math.ceil(4 * this.meanActive) +
      2 * this.#blockBound.length +
      (this.#loadings ? this.correlationRank + 16 : 0);
    this.#useWasm = o.wasm !== false;
    this.#codeStream = new PhiloxStream(seedFor('data', this.seed), { wasm: this.#useWasm });
  }

  /** The ground-truth features, one unit-norm row per feature: a new [numFeatures, dim] tensor. */
  groundTruth(backend?: string): Tensor {
    return tensor(this.#features.slice(), [this.numFeatures, this.dim], { backend });
  }

  /** The ground-truth features on the host, row-major [numFeatures, dim] (a copy). */
  groundTruthHost(): Float32Array {
    return this.#features.slice();
  }

  /** Samples `start` … `start + count − 1` as a new [count, dim] tensor. */
  sample(start: number, count: number, backend?: string): Tensor {
    this.#checkRange(start, count);
    // the tensor copies the rows out of the WebAssembly memory: no host array of its own
    const rows = this.#wasmRows(start, count);
    return tensor(rows ?? this.sampleHost(start, count), [count, this.dim], { backend });
  }

  /** Samples `start` … `start + count − 1` on the host, row-major [count, dim]. */
  sampleHost(start: number, count: number): Float32Array {
    this.#checkRange(start, count);
    const rows = this.#wasmRows(start, count);
    if (rows) return rows.slice();
    const d = this.dim;
    const out = new Float32Array(count * d);
    if (count === 0) return out;
    const sigma = this.noise / Math.sqrt(d);
    const g = this.#features;
    const noise = sigma > 0 ? this.#noiseStream() : undefined;
    this.#forEachCode(start, count, (r, active, coef, n) => {
      const base = r * d;
      for (let a = 0; a < n; a++) axpy(out, base, g, active[a] * d, coef[a], d);
      if (noise) {
        const sample = start + r;
        noise.reset(sample >>> 0, Math.floor(sample / 2 ** 32), TAG_NOISE, d + 8);
        noise.addNormals(out, base, d, sigma);
      }
    });
    return out;
  }

  /** The ground-truth sparse codes of samples `start` … `start + count − 1`. */
  sparseCodes(start: number, count: number): SparseCodes {
    this.#checkRange(start, count);
    const kernels = count === 0 ? null : this.#wasmKernels();
    const lists = kernels ? kernels.codes(start, count) : this.#codeLists(start, count);
    const n = lists.offs[count];
    return {
      offsets: lists.offs,
      indices: lists.idx.slice(0, n),
      values: Float32Array.from(lists.coef.subarray(0, n)),
    };
  }

  /** Yields [batchSize, dim] batches of consecutive samples from `start` (default 0), forever. */
  async *batches(options: SyntheticBatchOptions): AsyncGenerator<Tensor> {
    const batchSize = options?.batchSize;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new DictlearnError(OP, `batchSize must be a positive integer, got ${batchSize}`);
    }
    let next = options.start ?? 0;
    this.#checkRange(next, 0);
    // workers take ranges of rows as soon as they are ready; until then this thread draws them
    await this.#startThreads();
    for (;;) {
      yield this.sample(next, batchSize, options.backend);
      next += batchSize;
    }
  }

  /**
   * Starts the worker threads that split batches (see the `threads` option) and resolves, once
   * they are ready, with the threads that draw a batch now: 1 where there are none (not Node, the
   * TypeScript loops, `threads: 1`, or workers refused).
   */
  async startThreads(): Promise<number> {
    const slot = await this.#startThreads();
    return slot ? 1 + (await slot.pool.whenReady()) : 1;
  }

  /** This source's slot in its thread pool, started on first call; null where it has none. */
  #startThreads(): Promise<ThreadSlot | null> {
    this.#threadsStarting ??= (async () => {
      const kernels = this.#threadsOption === 1 || !isNode ? null : this.#wasmKernels();
      const module = bufferWasmModule();
      if (!kernels || !module) return null;
      const { defaultSyntheticThreads, rowThreads } = await import('./synthetic-threads.js');
      const pool = rowThreads(this.#threadsOption ?? defaultSyntheticThreads(), module);
      if (typeof pool === 'string') return null;
      const slot = { pool, id: pool.add(kernels.image(), kernels.plan) };
      threadSlots.register(this, slot);
      return slot;
    })().then((slot) => {
      this.#threads = slot;
      return slot;
    });
    return this.#threadsStarting;
  }

  #checkRange(start: number, count: number): void {
    if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(count) || count < 0) {
      throw new DictlearnError(
        OP,
        `sample range needs non-negative integers, got start ${start}, count ${count}`,
      );
    }
    if (start + count > 2 ** 52) throw new DictlearnError(OP, `sample index ${start + count} is beyond 2^52`);
  }

  /**
   * Samples `start` … `start + count − 1` computed in WebAssembly (a view of its memory, valid
   * until the next call), or undefined where the TypeScript loop computes them.
   */
  #wasmRows(start: number, count: number): Float32Array | undefined {
    const kernels = count > 0 ? this.#wasmKernels() : null;
    if (!kernels) return undefined;
    const sigma = this.noise / Math.sqrt(this.dim);
    // codes, sums and noise, ranges of rows on worker threads where they are started
    const threads = this.#threads;
    const here = (first: number, rows: number) => kernels.rows(first, rows, sigma);
    return threads ? threads.pool.rows(threads.id, start, count, sigma, here) : here(start, count);
  }

  /**
   * Draws the sparse code of each sample `start` … `start + count − 1` in TypeScript and hands
   * it to `visit` (row index, active features, coefficients, how many; the arrays are reused).
   */
  #forEachCode(
    start: number,
    count: number,
    visit: (r: number, active: Int32Array, coef: Float64Array, n: number) => void,
  ): void {
    const product = this.coefficients === 'uniform-product';
    const active = new Int32Array(this.numFeatures);
    const coef = new Float64Array(this.numFeatures);
    const cs = this.#codeStream;
    const m = this.#loadings ? new Float64Array(this.numFeatures) : undefined;
    const eta = this.#loadings ? new Float64Array(this.correlationRank) : undefined;
    for (let r = 0; r < count; r++) {
      const n = start + r;
      cs.reset(n >>> 0, Math.floor(n / 2 ** 32), TAG_CODE, this.#codeWords);
      const k = m && eta ? this.#drawCorrelated(cs, active, m, eta) : this.#drawIndependent(cs, active);
      for (let a = 0; a < k; a++) coef[a] = product ? cs.uniform() * cs.uniform() : cs.uniform();
      visit(r, active, coef, k);
    }
  }

  /** The sparse codes of a range, drawn in TypeScript, as compressed rows. */
  #codeLists(start: number, count: number): CodeLists {
    const lists = new ActiveLists(count, Math.ceil(2 * this.meanActive * count) + 16);
    this.#forEachCode(start, count, (_r, active, coef, n) => lists.add(active, coef, n));
    return lists;
  }

  /**
   * The WebAssembly kernels (made on first use), or null: WebAssembly off or unavailable, d not a
   * multiple of 4, or features too large for its memory.
   */
  #wasmKernels(): SyntheticKernels | null {
    if (this.#kernels === undefined) {
      const w = this.#useWasm ? bufferWasm() : null;
      const common = {
        product: this.coefficients === 'uniform-product',
        chunk: Math.ceil(this.#codeWords / 4) + 1,
        meanActive: this.meanActive,
      };
      const firing: FiringTables | CorrelatedTables = this.#loadings
        ? {
            ...common,
            loadings: this.#loadings,
            thresholds: this.#thresholds!,
            rank: this.correlationRank,
            correlation: this.correlation,
          }
        : {
            ...common,
            p: this.featureProbabilities,
            blockStart: this.#blockStart,
            blockBound: this.#blockBound,
            blockLogMiss: this.#blockLogMiss,
          };
      this.#kernels = w
        ? syntheticKernels(
            w,
            HEAP_AT,
            this.#features,
            this.dim,
            philoxKey(seedFor('data', this.seed)),
            firing,
          )
        : null;
    }
    return this.#kernels;
  }

  /** The noise stream of the TypeScript path (its normals' fast path still in WebAssembly where it can). */
  #noiseStream(): PhiloxStream {
    this.#noise ??= new PhiloxStream(seedFor('data', this.seed), { wasm: this.#useWasm });
    return this.#noise;
  }

  /** Independent Bernoulli(pᵢ) decisions: geometric skips per block, thinned by pᵢ / bound. */
  #drawIndependent(s: PhiloxStream, active: Int32Array): number {
    let count = 0;
    const p = this.featureProbabilities;
    const starts = this.#blockStart;
    for (let b = 0; b < this.#blockBound.length; b++) {
      const bound = this.#blockBound[b];
      const end = starts[b + 1];
      let j = starts[b];
      if (bound >= 1) {
        for (; j < end; j++) if (p[j] >= 1 || s.uniform() < p[j]) active[count++] = j;
        continue;
      }
      if (bound <= 0) {
        // Probabilities that underflowed to 0: nothing here fires. One draw, as the skip below
        // takes (log u / −0 = +∞ jumps past the block), without its 0/0 = NaN, which looped
        // forever, when that draw is exactly 1.
        s.uniformPositive();
        continue;
      }
      const logMiss = this.#blockLogMiss[b];
      for (;;) {
        j += Math.floor(Math.log(s.uniformPositive()) / logMiss);
        if (j >= end) break;
        if (p[j] === bound || s.uniform() * bound < p[j]) active[count++] = j;
        j++;
      }
    }
    return count;
  }

  /**
   * Copula decisions. With z = √(1−ρ)·e + √ρ·L·η (e ~ N(0, I), η ~ N(0, I_rank)), feature i fires
   * where zᵢ < tᵢ = Φ⁻¹(pᵢ). Given η the features are independent with probability
   * qᵢ = Φ((tᵢ − √ρ·(Lη)ᵢ) / √(1−ρ)), drawn over blocks of 8 features: by geometric skips thinned
   * against an upper bound of the block's largest qᵢ, or, when that bound is 1/4 or more, one
   * uniform per feature.
   */
  #drawCorrelated(s: PhiloxStream, active: Int32Array, m: Float64Array, eta: Float64Array): number {
    let count = 0;
    const L = this.#loadings!;
    const t = this.#thresholds!;
    const rank = this.correlationRank;
    const F = this.numFeatures;
    const sr = Math.sqrt(this.correlation);
    const inv = 1 / Math.sqrt(1 - this.correlation);
    for (let k = 0; k < rank; k++) eta[k] = s.normal();
    // m = L·η over the transposed loadings, each mᵢ summed in the order k = 0, 1, …, then the
    // argument of Φ at once (one pass over the features, no second pass over m)
    const e0 = eta[0];
    for (let b = 0; b < F; b += CORRELATED_BLOCK) {
      const end = Math.min(F, b + CORRELATED_BLOCK);
      let top = Number.NEGATIVE_INFINITY;
      for (let i = b; i < end; i++) {
        let li = L[i] * e0;
        for (let k = 1, at = F + i; k < rank; k++, at += F) li += L[at] * eta[k];
        const a = (t[i] - sr * li) * inv; // the argument of Φ
        m[i] = a;
        if (a > top) top = a;
      }
      const k = normalCdfUpperIndex(top);
      const bound = cdfBound(k);
      if (bound >= DIRECT_BOUND) {
        for (let j = b; j < end; j++) if (belowNormalCdf(s.uniform(), m[j])) active[count++] = j;
        continue;
      }
      const logMiss = cdfBoundLogMiss(k);
      let j = b;
      for (;;) {
        j += Math.floor(Math.log(s.uniformPositive()) / logMiss);
        if (j >= end) break;
        if (belowNormalCdf(s.uniform() * bound, m[j])) active[count++] = j;
        j++;
      }
    }
    return count;
  }
}

/** The active features and coefficients of a batch's rows, one list after another (CSR). */
class ActiveLists implements CodeLists {
  offs: Int32Array;
  idx: Int32Array;
  coef: Float64Array;
  #rows = 0;
  constructor(rows: number, capacity: number) {
    this.offs = new Int32Array(rows + 1);
    this.idx = new Int32Array(capacity);
    this.coef = new Float64Array(capacity);
  }
  /** Appends one row's `count` features and coefficients. */
  add(active: Int32Array, coef: Float64Array, count: number): void {
    const at = this.offs[this.#rows];
    if (at + count > this.idx.length) {
      const grown = Math.max(2 * this.idx.length, at + count);
      const idx = new Int32Array(grown);
      idx.set(this.idx);
      this.idx = idx;
      const c = new Float64Array(grown);
      c.set(this.coef);
      this.coef = c;
    }
    this.idx.set(active.subarray(0, count), at);
    this.coef.set(coef.subarray(0, count), at);
    this.offs[++this.#rows] = at + count;
  }
}

/** out[o … o+n) += c · g[go … go+n), unrolled by four. */
function axpy(out: Float32Array, o: number, g: Float32Array, go: number, c: number, n: number): void {
  let k = 0;
  for (; k + 3 < n; k += 4) {
    out[o + k] += c * g[go + k];
    out[o + k + 1] += c * g[go + k + 1];
    out[o + k + 2] += c * g[go + k + 2];
    out[o + k + 3] += c * g[go + k + 3];
  }
  for (; k < n; k++) out[o + k] += c * g[go + k];
}

function unitRows(values: Float32Array, width: number): Float32Array {
  const rows = values.length / width;
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let k = 0; k < width; k++) ss += values[r * width + k] ** 2;
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let k = 0; k < width; k++) values[r * width + k] *= inv;
  }
  return values;
}
