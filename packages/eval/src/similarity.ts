import {
  countNonFinite,
  DictlearnError,
  div,
  fmtShape,
  l2Norm,
  matmul,
  max,
  maximum,
  noGrad,
  scope,
  slice,
  Tensor,
} from '@dictlearn/core';

/** Rows with an L2 norm below this count as zero vectors: their cosine to anything is 0. */
export const ZERO_NORM = 1e-12;

/** Options of {@link mmcs}. */
export interface MmcsOptions {
  /**
   * Rows of A per block. The cosine matrix is built block by block ([blockRows, Fb] at a time)
   * so two large dictionaries never need an [Fa, Fb] matrix at once. Default: as many rows as
   * keep a block under 2²⁴ elements (64 MiB of float32).
   */
  blockRows?: number;
}

/** Result of {@link mmcs}. */
export type Mmcs = {
  /** Mean over the rows of A of their best cosine similarity to a row of B. */
  mmcs: number;
  /** For each row of A (length Fa), its maximum cosine similarity to any row of B. */
  maxCos: Float32Array;
};

/** Result of {@link groundTruthRecovery}. */
export type GroundTruthRecovery = {
  /** MMCS with the true features as A: mean over true features of the best cosine to a learned row. */
  mmcs: number;
  /** Fraction of the true features whose best cosine to a learned row is above the threshold. */
  fractionRecovered: number;
  /** Number of true features whose best cosine to a learned row is above the threshold. */
  recovered: number;
  /** The threshold used. */
  threshold: number;
  /** For each true feature (length G), its maximum cosine similarity to any learned row. */
  maxCos: Float32Array;
};

function checkMatrix(op: string, name: string, t: unknown): asserts t is Tensor {
  if (!(t instanceof Tensor)) {
    throw new DictlearnError(op, `${name} must be a Tensor [rows, d], got ${t === null ? 'null' : typeof t}`);
  }
  t.assertAlive(op);
  if (t.rank !== 2 || t.shape[0] === 0 || t.shape[1] === 0) {
    throw new DictlearnError(
      op,
      `${name} has shape ${fmtShape(t.shape)}; expected a non-empty matrix [rows, d], one feature direction per row`,
    );
  }
  if (t.dtype !== 'float32') throw new DictlearnError(op, `${name} is ${t.dtype}; expected float32`);
}

/** Each row divided by its L2 norm (rows of norm below {@link ZERO_NORM} become zero rows). */
function unitRows(t: Tensor): Tensor {
  return div(t, maximum(l2Norm(t, -1, true), ZERO_NORM));
}

async function checkFinite(op: string, name: string, t: Tensor): Promise<void> {
  const count = scope(() => countNonFinite(t));
  let n: number;
  try {
    n = (await count.data())[0];
  } finally {
    count.dispose();
  }
  if (n === 0) return;
  const values = await t.data();
  const first = values.findIndex((v) => !Number.isFinite(v));
  const d = t.shape[1];
  throw new DictlearnError(
    op,
    `${name} holds ${n} NaN or Inf value${n === 1 ? '' : 's'} (first at row ${Math.floor(first / d)}, column ${first % d}: ${values[first]}); expected finite feature directions`,
  );
}

async function similarity(
  op: string,
  names: [string, string],
  a: Tensor,
  b: Tensor,
  options: MmcsOptions,
): Promise<Mmcs> {
  checkMatrix(op, names[0], a);
  checkMatrix(op, names[1], b);
  const [fa, d] = a.shape;
  const fb = b.shape[0];
  if (b.shape[1] !== d) {
    throw new DictlearnError(
      op,
      `${names[0]} ${fmtShape(a.shape)} and ${names[1]} ${fmtShape(b.shape)} have different widths; both must be [rows, d] with the same d`,
    );
  }
  if (a.backend !== b.backend) {
    throw new DictlearnError(
      op,
      `${names[0]} is on backend '${a.backend}' and ${names[1]} on '${b.backend}'; move one with toBackend()`,
    );
  }
  if (options === null || typeof options !== 'object') {
    throw new DictlearnError(
      op,
      `options must be an object, got ${options === null ? 'null' : typeof options}`,
    );
  }
  const blockRows = options.blockRows ?? Math.max(1, Math.floor(2 ** 24 / fb));
  if (!Number.isInteger(blockRows) || blockRows <= 0) {
    throw new DictlearnError(op, `options.blockRows must be a positive integer, got ${String(blockRows)}`);
  }
  await checkFinite(op, names[0], a);
  await checkFinite(op, names[1], b);

  const maxCos = new Float32Array(fa);
  const unitB = scope(() => noGrad(() => unitRows(b)));
  try {
    for (let start = 0; start < fa; start += blockRows) {
      const rows = Math.min(blockRows, fa - start);
      const best = scope(() =>
        noGrad(() => max(matmul(unitRows(slice(a, [start, 0], [rows, d])), unitB, { transB: true }), 1)),
      );
      try {
        maxCos.set((await best.data()) as Float32Array, start);
      } finally {
        best.dispose();
      }
    }
  } finally {
    unitB.dispose();
  }
  let total = 0;
  for (const c of maxCos) total += c;
  return { mmcs: total / fa, maxCos };
}

/**
 * Mean max cosine similarity (MMCS) of dictionary A against dictionary B, both with one feature
 * direction per row ([Fa, d] and [Fb, d], e.g. two decoders' `decoderRows()`): for each row of
 * A, the largest cosine similarity to any row of B, averaged over the rows of A. It is not
 * symmetric — swap the arguments to ask the other question. A zero row has cosine 0 to
 * everything (as with torch's `cosine_similarity`). The cosines are computed on the tensors'
 * backend in blocks of rows of A; only the Fa maxima are read back.
 *
 * Throws a `DictlearnError` when an input is not a non-empty float32 matrix, when the widths
 * differ, or when an input holds NaN or Inf.
 *
 * ```ts
 * const { mmcs: similarity, maxCos } = await mmcs(dictA.decoderRows(), dictB.decoderRows());
 * ```
 */
export function mmcs(a: Tensor, b: Tensor, options: MmcsOptions = {}): Promise<Mmcs> {
  return similarity('mmcs', ['a', 'b'], a, b, options);
}

/**
 * How well a learned dictionary recovers known ground-truth features (synthetic data, as in
 * the sparse_coding experiments): for each true feature (a row of `truth` [G, d]) the largest
 * cosine similarity to a learned feature direction (a row of `learned` [F, d], e.g.
 * `dict.decoderRows()`). Reports their mean (MMCS with the truth as A) and the number and
 * fraction of true features whose best cosine is strictly above `threshold` (0.9 by default).
 *
 * Throws a `DictlearnError` for malformed or non-finite inputs, different widths, or a threshold
 * outside [−1, 1].
 *
 * ```ts
 * const { fractionRecovered } = await groundTruthRecovery(dict.decoderRows(), source.groundTruth());
 * ```
 */
export async function groundTruthRecovery(
  learned: Tensor,
  truth: Tensor,
  threshold = 0.9,
): Promise<GroundTruthRecovery> {
  if (typeof threshold !== 'number' || !(threshold >= -1 && threshold <= 1)) {
    throw new DictlearnError(
      'groundTruthRecovery',
      `threshold must be a cosine similarity in [-1, 1], got ${String(threshold)}`,
    );
  }
  const { mmcs: meanMax, maxCos } = await similarity(
    'groundTruthRecovery',
    ['truth', 'learned'],
    truth,
    learned,
    {},
  );
  let recovered = 0;
  for (const c of maxCos) if (c > threshold) recovered++;
  return { mmcs: meanMax, fractionRecovered: recovered / maxCos.length, recovered, threshold, maxCos };
}
