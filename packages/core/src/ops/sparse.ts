import { runOp } from '../engine.js';
import { check, DictlearnError, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { arange, ones, zeros } from './create.js';
import { add, mul, reluGrad, requireFloat } from './elementwise.js';
import { gatherRows, scatterAddRows, topk } from './indexing.js';
import { linearBiasRelu } from './matmul.js';
import { sum } from './reduce.js';
import { broadcastTo, expandDims, reshape, transpose } from './shape-ops.js';

// Sparse codes: the k live features of each row of an SAE's [B, F] activations, and the ops that
// encode to them and decode from them without ever building the dense [B, F] matrix. Two layouts:
//
// - per row (TopK): `values` [B, k] float32 and `indices` [B, k] int32; entry (b, j) is feature
//   indices[b, j] of row b with activation values[b, j].
// - batch (BatchTopK): `values` [n], `indices` [n] (features) and `rows` [n] (rows), int32; entry e
//   is feature indices[e] of row rows[e]. Rows may hold any number of entries, zero included.
//
// Entries are summed in entry order (row-major for the per-row layout) by every backend, so sums
// over entries are the same on every run.

/** A per-row sparse code: what {@link topkEncode} returns and {@link sparseDecode} takes. */
export interface SparseCode {
  /** Activations [B, k], in descending order along each row. */
  values: Tensor;
  /** Their features [B, k] (int32). */
  indices: Tensor;
}

/**
 * A batch sparse code: what {@link batchTopkEncode} returns. Its entries go to
 * {@link sparseDecode} with `{ rows, batch }`.
 */
export interface BatchSparseCode {
  /** Activations [n], in descending order over the whole batch. */
  values: Tensor;
  /** The feature of each entry [n] (int32). */
  indices: Tensor;
  /** The row (sample) of each entry [n] (int32). */
  rows: Tensor;
}

/** Options of {@link topkEncode} and {@link batchTopkEncode}. */
export interface SparseEncodeOptions {
  /** W is stored [F, d] (nn.Linear's `encoder.weight`) instead of [d, F]. */
  transB?: boolean;
}

/** Options of {@link sparseDot} and {@link sparseOuter}: the batch layout's rows. */
export interface SparseRowsOptions {
  /**
   * The row of each entry (int32 [n]) for the batch layout, whose `values` and `indices` are
   * 1-D [n]. Omitted for the per-row layout ([B, k], entry (b, j) in row b).
   */
  rows?: Tensor;
}

/** Options of {@link sparseDecode}. */
export interface SparseDecodeOptions extends SparseRowsOptions {
  /** Rows of the output; required with `rows` (the per-row layout has B = values.shape[0]). */
  batch?: number;
}

function requireInt(op: string, t: Tensor, what: string): void {
  t.assertAlive(op);
  check(t.dtype === 'int32', op, () => `${what} must be int32, got ${t.dtype} (${t})`);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Checks a sparse code (values, indices, optional rows) and returns B for the per-row layout
 * (values.shape[0]) or undefined for the batch layout.
 */
function checkCode(
  op: string,
  values: Tensor,
  indices: Tensor,
  rows: Tensor | undefined,
): number | undefined {
  values.assertAlive(op);
  requireFloat(op, values, 'values');
  requireInt(op, indices, 'indices');
  check(
    sameShape(values.shape, indices.shape),
    op,
    () => `values ${fmtShape(values.shape)} and indices ${fmtShape(indices.shape)} must have the same shape`,
  );
  if (rows) {
    requireInt(op, rows, 'rows');
    check(
      values.rank === 1 && sameShape(rows.shape, values.shape),
      op,
      () =>
        `with rows, values, indices and rows must be 1-D of one length, got ${fmtShape(values.shape)} and rows ${fmtShape(rows.shape)}`,
    );
    return undefined;
  }
  check(
    values.rank === 2,
    op,
    () => `values and indices must be [B, k] (or 1-D with { rows }), got ${fmtShape(values.shape)}`,
  );
  return values.shape[0];
}

function requireMatrix(op: string, t: Tensor, what: string): void {
  t.assertAlive(op);
  requireFloat(op, t, what);
  check(t.rank === 2, op, () => `${what} must be 2-D, got ${fmtShape(t.shape)}`);
}

/**
 * Σ over a sparse code's entries of value · a dictionary row, plus an optional bias:
 * out[b] = bias + Σ_{entries e of row b} values[e] · W[indices[e]], for W [F, d] → [B, d].
 * The decoder of a sparse autoencoder (x̂ = f W_dec + b_dec with f given by its k live
 * features), gathering k rows per sample instead of a [B, F]·[F, d] product.
 *
 * Gradients: d values = sparseDot(dY, indices, W) (each entry's dictionary row against its
 * row of dY), dW = sparseOuter(values, indices, dY) (k rows per sample scatter-added, in entry
 * order), d bias = Σ_b dY[b]. Out-of-range indices throw (GPU backends may skip them).
 */
export function sparseDecode(
  values: Tensor,
  indices: Tensor,
  w: Tensor,
  bias?: Tensor,
  options: SparseDecodeOptions = {},
): Tensor {
  const op = 'sparseDecode';
  const rows = options.rows;
  const perRowB = checkCode(op, values, indices, rows);
  requireMatrix(op, w, 'W');
  const d = w.shape[1];
  let B: number;
  if (perRowB === undefined) {
    const batch = options.batch;
    if (batch === undefined || !Number.isInteger(batch) || batch < 0) {
      throw new DictlearnError(
        op,
        `with rows, { batch } (the output's rows) must be a non-negative integer, got ${batch}`,
      );
    }
    B = batch;
  } else {
    check(
      options.batch === undefined || options.batch === perRowB,
      op,
      () => `batch ${options.batch} differs from values' ${perRowB} rows`,
    );
    B = perRowB;
  }
  if (bias) {
    bias.assertAlive(op);
    requireFloat(op, bias, 'bias');
    check(
      bias.rank === 1 && bias.shape[0] === d,
      op,
      () => `bias must be [${d}] for W ${fmtShape(w.shape)}, got ${fmtShape(bias.shape)}`,
    );
  }
  const inputs = [values, indices, w, ...(bias ? [bias] : []), ...(rows ? [rows] : [])];
  return runOp(
    'sparseDecode',
    inputs,
    { shape: [B, d], bias: bias !== undefined, rows: rows !== undefined },
    {
      composition: () => {
        let out: Tensor;
        if (rows) {
          const contrib = mul(gatherRows(w, indices), expandDims(values, -1)); // [n, d]
          out = scatterAddRows(zeros([B, d], { backend: w.backend }), rows, contrib);
        } else {
          const k = values.shape[1];
          const picked = reshape(gatherRows(w, reshape(indices, [-1])), [B, k, d]);
          out = sum(mul(picked, expandDims(values, -1)), 1);
        }
        return bias ? add(out, bias) : out;
      },
      grad: (ins) => (dys, needs) => {
        const dy = dys[0];
        const [v, idx, W] = ins;
        return [
          needs[0] ? sparseDot(dy, idx, W, { rows }) : null,
          null,
          needs[2] ? sparseOuter(v, idx, dy, W.shape[0], { rows }) : null,
          ...(bias ? [needs[3] ? sum(dy, 0) : null] : []),
          ...(rows ? [null] : []),
        ];
      },
    },
  )[0];
}

/**
 * Each entry's dictionary row against its row of `y`: out[e] = y[row(e)] · W[indices[e]],
 * for y [B, d] and W [F, d]; the output has the shape of `indices`. The gradient of
 * {@link sparseDecode}'s values, computed for k of F features per row instead of dY·Wᵀ [B, F].
 */
export function sparseDot(y: Tensor, indices: Tensor, w: Tensor, options: SparseRowsOptions = {}): Tensor {
  const op = 'sparseDot';
  const rows = options.rows;
  requireMatrix(op, y, 'y');
  requireMatrix(op, w, 'W');
  requireInt(op, indices, 'indices');
  check(
    y.shape[1] === w.shape[1],
    op,
    () => `y ${fmtShape(y.shape)} and W ${fmtShape(w.shape)} must have the same width`,
  );
  if (rows) {
    requireInt(op, rows, 'rows');
    check(
      indices.rank === 1 && sameShape(rows.shape, indices.shape),
      op,
      () =>
        `with rows, indices and rows must be 1-D of one length, got ${fmtShape(indices.shape)} and ${fmtShape(rows.shape)}`,
    );
  } else {
    check(
      indices.rank === 2 && indices.shape[0] === y.shape[0],
      op,
      () =>
        `indices must be [${y.shape[0]}, k] for y ${fmtShape(y.shape)} (or 1-D with { rows }), got ${fmtShape(indices.shape)}`,
    );
  }
  const inputs = [y, indices, w, ...(rows ? [rows] : [])];
  return runOp(
    'sparseDot',
    inputs,
    { shape: [...indices.shape], rows: rows !== undefined },
    {
      composition: () => {
        if (rows) return sum(mul(gatherRows(w, indices), gatherRows(y, rows)), -1);
        const [B, k] = indices.shape;
        const picked = reshape(gatherRows(w, reshape(indices, [-1])), [B, k, w.shape[1]]);
        return sum(mul(picked, expandDims(y, 1)), -1);
      },
      grad: (ins) => (dys, needs) => {
        const [Y, idx, W] = ins;
        const dout = dys[0];
        return [
          needs[0] ? sparseDecode(dout, idx, W, undefined, { rows, batch: Y.shape[0] }) : null,
          null,
          needs[2] ? sparseOuter(dout, idx, Y, W.shape[0], { rows }) : null,
          ...(rows ? [null] : []),
        ];
      },
    },
  )[0];
}

/**
 * Scatter-add of value-weighted rows: out[indices[e]] += values[e] · y[row(e)] into zeros
 * [numFeatures, d], for y [B, d], in entry order (so every run gives the same sums). The
 * dictionary gradient of {@link sparseDecode} (dW_dec, with y = dY) and of the top-k encoders
 * (dW_enc, with y = x): k rows per sample instead of a [F, B]·[B, d] product.
 */
export function sparseOuter(
  values: Tensor,
  indices: Tensor,
  y: Tensor,
  numFeatures: number,
  options: SparseRowsOptions = {},
): Tensor {
  const op = 'sparseOuter';
  const rows = options.rows;
  const perRowB = checkCode(op, values, indices, rows);
  requireMatrix(op, y, 'y');
  check(
    perRowB === undefined || perRowB === y.shape[0],
    op,
    () => `values ${fmtShape(values.shape)} and y ${fmtShape(y.shape)} must have the same number of rows`,
  );
  check(
    Number.isInteger(numFeatures) && numFeatures >= 0,
    op,
    () => `numFeatures must be a non-negative integer, got ${numFeatures}`,
  );
  const d = y.shape[1];
  const inputs = [values, indices, y, ...(rows ? [rows] : [])];
  return runOp(
    'sparseOuter',
    inputs,
    { shape: [numFeatures, d], rows: rows !== undefined },
    {
      composition: () => {
        const zero = zeros([numFeatures, d], { backend: y.backend });
        if (rows) return scatterAddRows(zero, indices, mul(expandDims(values, -1), gatherRows(y, rows)));
        const [B, k] = values.shape;
        const upd = reshape(mul(expandDims(values, -1), expandDims(y, 1)), [B * k, d]);
        return scatterAddRows(zero, reshape(indices, [-1]), upd);
      },
      grad: (ins) => (dys, needs) => {
        const [v, idx, Y] = ins;
        const dG = dys[0];
        return [
          needs[0] ? sparseDot(Y, idx, dG, { rows }) : null,
          null,
          needs[2] ? sparseDecode(v, idx, dG, undefined, { rows, batch: Y.shape[0] }) : null,
          ...(rows ? [null] : []),
        ];
      },
    },
  )[0];
}

/** Checks the encoder operands; returns [B, F]. */
function checkEncoder(op: string, x: Tensor, w: Tensor, b: Tensor, transB: boolean): [number, number] {
  requireMatrix(op, x, 'x');
  requireMatrix(op, w, 'W');
  b.assertAlive(op);
  requireFloat(op, b, 'bias');
  const [wd, F] = transB ? [w.shape[1], w.shape[0]] : [w.shape[0], w.shape[1]];
  check(
    x.shape[1] === wd,
    op,
    () =>
      `inner dimensions differ: x ${fmtShape(x.shape)} has ${x.shape[1]}, W${transB ? 'ᵀ' : ''} ${fmtShape(w.shape)} has ${wd}`,
  );
  check(
    b.rank === 1 && b.shape[0] === F,
    op,
    () => `bias must be [${F}] for W ${fmtShape(w.shape)}${transB ? 'ᵀ' : ''}, got ${fmtShape(b.shape)}`,
  );
  return [x.shape[0], F];
}

/**
 * The gradient of both top-k encoders, touching only the chosen features: d pre = d values
 * where the value is positive; dx = Σ_e d pre[e] · W[:, feature e] (a sparse decode with Wᵀ),
 * dW = sparseOuter(d pre, indices, x) (k columns of W per row of x), db[f] = Σ d pre over f's
 * entries.
 */
function encoderGrad(
  ins: Tensor[],
  transB: boolean,
  values: Tensor,
  indices: Tensor,
  rows: Tensor | undefined,
  dvalues: Tensor,
  needs: boolean[],
): (Tensor | null)[] {
  const [x, w] = ins;
  const B = x.shape[0];
  const F = transB ? w.shape[0] : w.shape[1];
  const dpre = reluGrad(dvalues, values);
  const opt = { rows };
  const dx = needs[0]
    ? sparseDecode(dpre, indices, transB ? w : transpose(w), undefined, { rows, batch: B })
    : null;
  let dw: Tensor | null = null;
  if (needs[1]) {
    const g = sparseOuter(dpre, indices, x, F, opt); // [F, d]
    dw = transB ? g : transpose(g);
  }
  const db = needs[2]
    ? reshape(sparseOuter(dpre, indices, ones([B, 1], { backend: x.backend }), F, opt), [F])
    : null;
  return [dx, dw, db];
}

/**
 * The TopK encoder in one op: the k largest entries of relu(x·W + b) in each row, as a sparse
 * code { values [B, k] (descending), indices [B, k] (int32) }, for x [B, d], W [d, F] (or [F, d]
 * with `transB`) and b [F]. Ties go to the lower index, as in {@link topk}; a row with fewer than
 * k positive pre-activations fills up with zeros at its lowest such features. Backends fuse the
 * selection into the encoder product's epilogue (a partial selection per row, no sort of F).
 *
 * The gradient touches only the chosen features: dW gets k columns per row of x, db k entries
 * per row, dx a sparse decode of the chosen encoder directions; entries where the value is 0
 * (ReLU) get none.
 */
export function topkEncode(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  k: number,
  options: SparseEncodeOptions = {},
): SparseCode {
  const op = 'topkEncode';
  const transB = options.transB ?? false;
  const [B, F] = checkEncoder(op, x, w, b, transB);
  if (!Number.isInteger(k) || k < 0 || k > F) {
    throw new DictlearnError(op, `k must be an integer in [0, ${F}] for ${F} features, got ${k}`);
  }
  const [values, indices] = runOp(
    'topkEncode',
    [x, w, b],
    { k, transB, shape: [B, k] },
    {
      composition: () => {
        const r = topk(linearBiasRelu(x, w, b, { transB }), k);
        return [r.values, r.indices];
      },
      grad: (ins, outs) => (dys, needs) =>
        encoderGrad(ins, transB, outs[0], outs[1], undefined, dys[0], needs),
    },
  );
  return { values, indices };
}

/**
 * The BatchTopK encoder: the B·k largest entries of relu(x·W + b) over the whole batch (so
 * rows keep different numbers of features), as a batch sparse code { values [B·k] (descending),
 * indices [B·k] (features), rows [B·k] (rows) }. Ties go to the lower flat position
 * row·F + feature; when fewer than B·k pre-activations are positive, zeros at the lowest such
 * positions fill up. Decode with `sparseDecode(values, indices, W_dec, b_dec, { rows, batch: B })`.
 * Gradients as {@link topkEncode}'s.
 */
export function batchTopkEncode(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  k: number,
  options: SparseEncodeOptions = {},
): BatchSparseCode {
  const op = 'batchTopkEncode';
  const transB = options.transB ?? false;
  const [B, F] = checkEncoder(op, x, w, b, transB);
  if (!Number.isInteger(k) || k < 0 || k > F) {
    throw new DictlearnError(op, `k must be an integer in [0, ${F}] for ${F} features, got ${k}`);
  }
  const n = B * k;
  const [values, indices, rows] = runOp(
    'batchTopkEncode',
    [x, w, b],
    { k, transB, shape: [n] },
    {
      composition: () => {
        const pre = linearBiasRelu(x, w, b, { transB });
        const t = topk(reshape(pre, [1, B * F]), n);
        const flat = reshape(t.indices, [n]);
        const o = { backend: x.backend };
        const rowOf = reshape(broadcastTo(reshape(arange(0, B, 1, o), [B, 1]), [B, F]), [B * F]);
        const colOf = reshape(broadcastTo(reshape(arange(0, F, 1, o), [1, F]), [B, F]), [B * F]);
        return [reshape(t.values, [n]), gatherRows(colOf, flat), gatherRows(rowOf, flat)];
      },
      grad: (ins, outs) => (dys, needs) => encoderGrad(ins, transB, outs[0], outs[1], outs[2], dys[0], needs),
    },
  );
  return { values, indices, rows };
}
