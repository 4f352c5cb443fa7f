import {
  abs,
  add,
  argmax,
  concat,
  type DictionaryLike,
  DictlearnError,
  div,
  fmtShape,
  gatherRows,
  keep,
  l2Norm,
  matmul,
  max,
  maximum,
  mean,
  mul,
  neg,
  noGrad,
  notEqual,
  relu,
  reshape,
  scatterLast,
  scope,
  square,
  sub,
  sum,
  Tensor,
  tensor,
  zeros,
} from '@dictlearn/core';
import { type BatchStream, type BatchStreamOptions, forEachBatch } from './batches.js';

/**
 * An affine decoder x̂ = f·rows + bias: what inference-time sparse coding needs of a dictionary.
 * {@link linearDecoder} reads it from any `DictionaryLike` whose `decode` is affine.
 */
export interface LinearDecoder {
  /** Feature directions [F, d], one row per feature (the rows x̂ is a combination of). */
  rows: Tensor;
  /** The offset b [d] (x̂ of the all-zero code). */
  bias: Tensor;
}

/**
 * The affine decoder of a dictionary: rows = `dict.decoderRows()`, bias = `dict.decode(0)`.
 * Checks, on one probe code, that `decode(f)` equals f·rows + bias (a decoder that normalises or
 * gates its output is not affine and is refused, naming the difference). Dispose both tensors.
 */
export async function linearDecoder(dict: DictionaryLike): Promise<LinearDecoder> {
  const F = dict.dictSize;
  const rows = dict.decoderRows();
  const [bias, gap] = scope(() =>
    noGrad(() => {
      const zero = reshape(dict.decode(zeros([1, F], { backend: rows.backend })), [dict.activationDim]);
      // A probe code with varied signs and magnitudes on every feature.
      const probe = new Float32Array(F);
      for (let i = 0; i < F; i++) probe[i] = ((i * 37) % 11) / 5 - 1;
      const f = tensor(probe, [1, F], { backend: rows.backend });
      const want = add(matmul(f, rows), zero);
      const got = dict.decode(f);
      return [zero, div(max(abs(sub(got, want))), maximum(max(abs(want)), 1e-12))];
    }),
  );
  const rel = (await gap.data())[0];
  gap.dispose();
  if (!(rel <= 1e-4)) {
    rows.dispose();
    bias.dispose();
    throw new DictlearnError(
      'linearDecoder',
      `the dictionary's decode is not f·decoderRows() + decode(0) (relative difference ${rel.toExponential(2)} on a probe code); inference-time sparse coding needs an affine decoder`,
    );
  }
  return { rows, bias };
}

function checkCoding(op: string, decoder: LinearDecoder, x: Tensor): void {
  if (!(decoder?.rows instanceof Tensor) || !(decoder?.bias instanceof Tensor)) {
    throw new DictlearnError(
      op,
      'decoder must be { rows: Tensor [F, d], bias: Tensor [d] } (see linearDecoder)',
    );
  }
  const { rows, bias } = decoder;
  if (rows.rank !== 2 || bias.rank !== 1 || bias.shape[0] !== rows.shape[1]) {
    throw new DictlearnError(
      op,
      `decoder rows ${fmtShape(rows.shape)} and bias ${fmtShape(bias.shape)} must be [F, d] and [d]`,
    );
  }
  if (!(x instanceof Tensor) || x.rank !== 2 || x.shape[1] !== rows.shape[1] || x.dtype !== 'float32') {
    throw new DictlearnError(
      op,
      `x must be a float32 [rows, ${rows.shape[1]}] tensor (the decoder's width), got ${x instanceof Tensor ? `${fmtShape(x.shape)} ${x.dtype}` : typeof x}`,
    );
  }
}

/**
 * The largest eigenvalue of W Wᵀ for W [F, d] (the squared spectral norm: the Lipschitz constant
 * of ½‖x − zW‖²'s gradient), by power iteration on the tensors' backend: v ← (v Wᵀ) W until the
 * estimate moves by less than 1e-5 relative (checked every 10 steps; at most `maxIterations`).
 * Power iteration approaches from below.
 */
export async function squaredSpectralNorm(w: Tensor, maxIterations = 500): Promise<number> {
  const d = w.shape[1];
  let v = keep(scope(() => add(zeros([1, d], { backend: w.backend }), 1)));
  let last = 0;
  try {
    for (let it = 0; it < maxIterations; it += 10) {
      const [next, est] = scope(() =>
        noGrad(() => {
          let u = v;
          let lambda: Tensor = zeros([], { backend: w.backend });
          for (let j = 0; j < 10; j++) {
            const unit = div(u, maximum(l2Norm(u), 1e-30));
            u = matmul(matmul(unit, w, { transB: true }), w);
            lambda = sum(mul(u, unit));
          }
          return [u, lambda];
        }),
      );
      v.dispose();
      v = next;
      const lambda = (await est.data())[0];
      est.dispose();
      if (lambda === 0 || Math.abs(lambda - last) <= 1e-5 * lambda) return lambda;
      last = lambda;
    }
    return last;
  } finally {
    v.dispose();
  }
}

/** Options of {@link fistaCodes} and {@link istaCodes}. */
export interface FistaOptions {
  /** λ of ‖x − b − zW‖² + λ‖z‖₁ (the training loss of the ReLU family, per row). */
  l1Penalty: number;
  /** Iterations (default 500). */
  iterations?: number;
  /** Codes constrained to z ≥ 0 (default `true`, the ReLU family's). */
  nonNegative?: boolean;
  /**
   * Stop early once the largest change of any code entry over 25 iterations is below this
   * (default 0: always run every iteration; each check reads one number back).
   */
  tolerance?: number;
  /** L, the largest eigenvalue of W Wᵀ, when known (default: {@link squaredSpectralNorm}). */
  lipschitz?: number;
  /** Codes [B, F] to start from (a warm start, e.g. the solution at a nearby λ; not disposed). */
  init?: Tensor;
}

/** What {@link fistaCodes} returns. */
export interface FistaResult {
  /** The codes z [B, F] (dispose them). */
  codes: Tensor;
  /** Iterations run. */
  iterations: number;
  /** The L used (step 1/(2L)). */
  lipschitz: number;
}

async function proximalCodes(
  op: string,
  momentum: boolean,
  decoder: LinearDecoder,
  x: Tensor,
  o: FistaOptions,
): Promise<FistaResult> {
  checkCoding(op, decoder, x);
  if (typeof o?.l1Penalty !== 'number' || !(o.l1Penalty >= 0) || !Number.isFinite(o.l1Penalty)) {
    throw new DictlearnError(
      op,
      `options.l1Penalty must be a finite number ≥ 0, got ${String(o?.l1Penalty)}`,
    );
  }
  const iterations = o.iterations ?? 500;
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new DictlearnError(op, `options.iterations must be a positive integer, got ${String(iterations)}`);
  }
  const nonNegative = o.nonNegative ?? true;
  const tolerance = o.tolerance ?? 0;
  const { rows: W, bias } = decoder;
  // 2% above the power-iteration estimate (which is from below): the step must not exceed 1/(2L).
  const L = o.lipschitz ?? 1.02 * (await squaredSpectralNorm(W));
  if (!(L > 0)) throw new DictlearnError(op, 'the decoder rows are all zero; no code can explain x');
  // min ‖x − b − zW‖² + λ‖z‖₁: gradient −2(x − b − zW)Wᵀ with Lipschitz constant 2L, so the
  // proximal step is z ← shrink(y + (x − b − yW)Wᵀ/L, λ/(2L)).
  const step = 1 / L;
  const threshold = o.l1Penalty / (2 * L);
  const shrink = (u: Tensor) =>
    nonNegative ? relu(sub(u, threshold)) : sub(relu(sub(u, threshold)), relu(sub(neg(u), threshold)));
  const B = x.shape[0];
  const F = W.shape[0];
  // Precomputed: the data term of every gradient step, (x − b)Wᵀ/L.
  const target = scope(() => noGrad(() => mul(matmul(sub(x, bias), W, { transB: true }), step)));
  if (o.init && (o.init.rank !== 2 || o.init.shape[0] !== B || o.init.shape[1] !== F)) {
    throw new DictlearnError(op, `options.init must be codes [${B}, ${F}], got ${fmtShape(o.init.shape)}`);
  }
  let z = o.init ? scope(() => add(o.init as Tensor, 0)) : zeros([B, F], { backend: x.backend });
  let y = z;
  let t = 1;
  let done = 0;
  try {
    while (done < iterations) {
      const chunk = Math.min(25, iterations - done);
      const [zNext, yNext, change] = scope(() =>
        noGrad(() => {
          let zi = z;
          let yi = y;
          for (let j = 0; j < chunk; j++) {
            // y + (x − b − yW)Wᵀ/L = y + target − (yW)Wᵀ/L
            const u = add(yi, sub(target, mul(matmul(matmul(yi, W), W, { transB: true }), step)));
            const zj = shrink(u);
            if (momentum) {
              const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
              yi = add(zj, mul(sub(zj, zi), (t - 1) / tNext));
              t = tNext;
            } else yi = zj;
            zi = zj;
          }
          return [zi, yi, tolerance > 0 ? max(abs(sub(zi, z))) : null] as const;
        }),
      );
      if (y !== z) y.dispose();
      z.dispose();
      z = zNext;
      y = yNext;
      done += chunk;
      if (change) {
        const c = (await change.data())[0];
        change.dispose();
        if (c < tolerance) break;
      }
    }
    if (y !== z) y.dispose();
    return { codes: z, iterations: done, lipschitz: L };
  } catch (e) {
    if (!z.isDisposed) z.dispose();
    if (!y.isDisposed) y.dispose();
    throw e;
  } finally {
    target.dispose();
  }
}

/**
 * Optimal sparse codes for a fixed decoder by FISTA (Beck & Teboulle 2009): the minimiser of
 * ‖x − b − zW‖² + λ‖z‖₁ for every row of x [B, d] at once (z ≥ 0 unless `nonNegative: false`),
 * with step 1/(2L), L the largest eigenvalue of W Wᵀ. Runs on x's backend with core ops, all rows
 * batched into each product. The "optimal code" a learned encoder is compared against.
 *
 * ```ts
 * const decoder = await linearDecoder(dict);
 * const { codes } = await fistaCodes(decoder, x, { l1Penalty: 0.1, iterations: 300 });
 * ```
 */
export function fistaCodes(decoder: LinearDecoder, x: Tensor, options: FistaOptions): Promise<FistaResult> {
  return proximalCodes('fistaCodes', true, decoder, x, options);
}

/** The same problem as {@link fistaCodes} by plain ISTA (proximal gradient without momentum). */
export function istaCodes(decoder: LinearDecoder, x: Tensor, options: FistaOptions): Promise<FistaResult> {
  return proximalCodes('istaCodes', false, decoder, x, options);
}

/** Options of {@link ompCodes}. */
export interface OmpOptions {
  /** Atoms per row, k ≥ 1 (at most F and d). */
  atoms: number;
}

/**
 * Orthogonal matching pursuit (Pati et al. 1993) with exactly `atoms` atoms per row, for every
 * row of x [B, d] at once: pick the atom most correlated (in absolute cosine) with the residual,
 * re-fit x − b by least squares on all atoms picked so far (an incremental modified Gram–Schmidt
 * per row, kept as [B, d] tensors), repeat. The codes z [B, F] (signed) hold the least-squares
 * coefficients; a row whose residual reaches 0 early picks no new atom (its later coefficients
 * are 0). Runs on x's backend with core ops; O(k²) small operations on [B] vectors.
 */
export function ompCodes(decoder: LinearDecoder, x: Tensor, options: OmpOptions): Tensor {
  checkCoding('ompCodes', decoder, x);
  const { rows: W, bias } = decoder;
  const [F, d] = W.shape;
  const k = options?.atoms;
  if (!Number.isInteger(k) || k < 1 || k > Math.min(F, d)) {
    throw new DictlearnError(
      'ompCodes',
      `options.atoms must be an integer in [1, ${Math.min(F, d)}] (at most F = ${F} and d = ${d}), got ${String(k)}`,
    );
  }
  return scope(() =>
    noGrad(() => {
      const xc = sub(x, bias);
      const unitW = div(W, maximum(l2Norm(W, -1, true), 1e-30));
      const q: Tensor[] = []; // orthonormal directions [B, d]
      const R: Tensor[][] = []; // R[j][t] [B]: atom t = Σ_j R[j][t] q_j
      const picks: Tensor[] = [];
      let r = xc;
      for (let t = 0; t < k; t++) {
        const idx = argmax(abs(matmul(r, unitW, { transB: true })), -1); // [B] int32
        picks.push(reshape(idx, [-1, 1]));
        let u = gatherRows(W, idx); // [B, d]
        R[t] = [];
        for (let j = 0; j < t; j++) {
          const c = sum(mul(u, q[j]), -1);
          R[j][t] = c;
          u = sub(u, mul(reshape(c, [-1, 1]), q[j]));
        }
        // Twice is enough: a second pass restores orthogonality lost to rounding.
        for (let j = 0; j < t; j++) {
          const c = sum(mul(u, q[j]), -1);
          R[j][t] = add(R[j][t], c);
          u = sub(u, mul(reshape(c, [-1, 1]), q[j]));
        }
        const norm = l2Norm(u, -1); // [B]
        // An atom already in the span (the residual was 0) adds a zero direction and coefficient.
        const ok = notEqual(relu(sub(norm, 1e-6)), 0);
        R[t][t] = add(mul(norm, ok), sub(1, ok));
        q[t] = mul(div(u, reshape(maximum(norm, 1e-30), [-1, 1])), reshape(ok, [-1, 1]));
        r = sub(r, mul(reshape(sum(mul(r, q[t]), -1), [-1, 1]), q[t]));
      }
      // Back-substitution R c = Qᵀ(x − b), all rows at once.
      const c: Tensor[] = new Array(k);
      for (let t = k - 1; t >= 0; t--) {
        let g = sum(mul(xc, q[t]), -1);
        for (let j = t + 1; j < k; j++) g = sub(g, mul(R[t][j], c[j]));
        c[t] = div(g, R[t][t]);
      }
      const indices = concat(picks, 1);
      const values = concat(
        c.map((v) => reshape(v, [-1, 1])),
        1,
      );
      return scatterLast(indices, values, F);
    }),
  );
}

/** Options of {@link amortisationGap}. */
export interface AmortisationOptions extends BatchStreamOptions {
  /** `'fista'` (L1-optimal codes) or `'omp'` (k-sparse least-squares codes). */
  codes: 'fista' | 'omp';
  /**
   * FISTA's λ. Default: found by bisection on the first batch so that the optimal codes' L0
   * matches the encoder's (within 2%, at most 12 solves).
   */
  l1Penalty?: number;
  /** FISTA iterations per solve (default 300). */
  iterations?: number;
  /** FISTA's sign constraint (default: non-negative when every encoder feature of the first batch is ≥ 0). */
  nonNegative?: boolean;
  /** OMP's atoms per row (default: the encoder's mean L0 of the first batch, rounded, at least 1). */
  atoms?: number;
}

/** L0 and FVE of one way of coding the batches. */
export interface CodingFigures {
  /** Mean number of non-zero code entries per row. */
  l0: number;
  /** frac_variance_explained, as in `evaluate` (per batch, averaged). */
  fve: number;
}

/** What {@link amortisationGap} returns. */
export interface AmortisationGap {
  /** The dictionary's own encoder. */
  encoder: CodingFigures;
  /** The inference-time codes on the same decoder. */
  optimal: CodingFigures & {
    /** How they were found. */
    method: 'fista' | 'omp';
    /** FISTA's λ (given or matched). */
    l1Penalty?: number;
    /** OMP's atoms per row. */
    atoms?: number;
  };
  /** optimal.fve − encoder.fve: the FVE the amortised encoder leaves on the table. */
  gap: number;
  /** Batches evaluated. */
  batches: number;
  /** Rows evaluated. */
  tokens: number;
}

/** [L0, FVE] of codes z on x with the decoder, on the device (two numbers read back). */
function figures(decoder: LinearDecoder, x: Tensor, z: Tensor): Tensor {
  return scope(() =>
    noGrad(() => {
      const xhat = add(matmul(z, decoder.rows), decoder.bias);
      const centred = (t: Tensor) => sum(square(sub(t, mean(t, 0, true))));
      const fve = sub(1, div(centred(sub(x, xhat)), centred(x)));
      const l0 = mean(sum(notEqual(z, 0), -1));
      return concat([reshape(l0, [1]), reshape(fve, [1])]);
    }),
  );
}

async function read(t: Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

/**
 * The amortisation gap of a dictionary (sparse_coding's question: how far is a learned encoder
 * from the best codes its own decoder allows?): on each batch, L0 and FVE of the encoder's codes
 * and of inference-time codes on the same decoder — FISTA at a λ that matches the encoder's L0
 * (or a given λ), or OMP with as many atoms as the encoder's L0. Both are averaged over batches
 * like `evaluate`'s FVE. Needs an affine decoder ({@link linearDecoder}).
 *
 * ```ts
 * const gap = await amortisationGap(dict, source.batches({ batchSize: 1024 }), { codes: 'fista', maxBatches: 2 });
 * console.log(gap.encoder.fve, gap.optimal.fve, gap.optimal.l0);
 * ```
 */
export async function amortisationGap(
  dict: DictionaryLike,
  batches: BatchStream,
  options: AmortisationOptions,
): Promise<AmortisationGap> {
  const method = options?.codes;
  if (method !== 'fista' && method !== 'omp') {
    throw new DictlearnError(
      'amortisationGap',
      `options.codes must be 'fista' or 'omp', got ${String(method)}`,
    );
  }
  const decoder = await linearDecoder(dict);
  const enc = { l0: 0, fve: 0 };
  const opt = { l0: 0, fve: 0 };
  let lambda = options.l1Penalty;
  let atoms = options.atoms;
  let nonNegative = options.nonNegative;
  let lipschitz: number | undefined;
  const iterations = options.iterations ?? 300;
  try {
    const counts = await forEachBatch('amortisationGap', dict, batches, options, 2, async (x) => {
      const z = scope(() => noGrad(() => dict.encode(x)));
      let e: Float32Array;
      let negative: number;
      try {
        e = await read(figures(decoder, x, z));
        negative = (await read(scope(() => noGrad(() => sum(notEqual(relu(neg(z)), 0))))))[0];
      } finally {
        z.dispose();
      }
      enc.l0 += e[0];
      enc.fve += e[1];
      nonNegative ??= negative === 0;
      let codes: Tensor;
      if (method === 'omp') {
        atoms ??= Math.max(1, Math.round(e[0]));
        codes = ompCodes(decoder, x, { atoms });
      } else {
        lipschitz ??= 1.02 * (await squaredSpectralNorm(decoder.rows));
        if (lambda === undefined) {
          // The first batch sets λ; its codes are already the solution at that λ.
          const matched = await matchL0(decoder, x, e[0], { iterations, nonNegative, lipschitz });
          lambda = matched.lambda;
          codes = matched.codes;
        } else {
          codes = (await fistaCodes(decoder, x, { l1Penalty: lambda, iterations, nonNegative, lipschitz }))
            .codes;
        }
      }
      const o = await read(figures(decoder, x, codes));
      codes.dispose();
      opt.l0 += o[0];
      opt.fve += o[1];
    });
    const n = counts.batches;
    const encoder = { l0: enc.l0 / n, fve: enc.fve / n };
    const optimal = {
      l0: opt.l0 / n,
      fve: opt.fve / n,
      method,
      ...(method === 'fista' ? { l1Penalty: lambda } : { atoms }),
    };
    return { encoder, optimal, gap: optimal.fve - encoder.fve, batches: n, tokens: counts.tokens };
  } finally {
    decoder.rows.dispose();
    decoder.bias.dispose();
  }
}

/**
 * λ whose FISTA codes on x have mean L0 within 2% of `target`, and those codes: bracketing by
 * factors of 4 from λ = 0.01 (L0 falls as λ grows), then bisection in log λ; each solve starts
 * from the previous one's codes. At most 12 solves; the last one's λ and codes are returned.
 */
async function matchL0(
  decoder: LinearDecoder,
  x: Tensor,
  target: number,
  o: { iterations: number; nonNegative: boolean; lipschitz: number },
): Promise<{ lambda: number; codes: Tensor }> {
  let codes: Tensor | undefined;
  const l0At = async (l1Penalty: number) => {
    const next = (await fistaCodes(decoder, x, { l1Penalty, ...o, init: codes })).codes;
    codes?.dispose();
    codes = next;
    return (await read(scope(() => noGrad(() => mean(sum(notEqual(next, 0), -1))))))[0];
  };
  const MAX = 12;
  // lo: the largest λ seen whose L0 is above the target; hi: the smallest with L0 at or below.
  let lo: number | undefined;
  let hi: number | undefined;
  let lambda = 0.01;
  let l0 = 0;
  const solve = async () => {
    l0 = await l0At(lambda);
    if (l0 > target) lo = lambda;
    else hi = lambda;
  };
  await solve();
  let solves = 1;
  while ((lo === undefined || hi === undefined) && solves < MAX) {
    lambda = lo === undefined ? lambda / 4 : lambda * 4;
    await solve();
    solves++;
  }
  while (lo !== undefined && hi !== undefined && Math.abs(l0 - target) > 0.02 * target && solves < MAX) {
    lambda = Math.sqrt(lo * hi);
    await solve();
    solves++;
  }
  return { lambda, codes: codes as Tensor };
}
