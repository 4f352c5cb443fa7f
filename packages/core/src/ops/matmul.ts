import { runOp } from '../engine.js';
import { check, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { zeros, zerosLike } from './create.js';
import { add, biasRelu, reluGrad, requireFloat, sumTo } from './elementwise.js';
import { sum } from './reduce.js';

/** Transpose flags of {@link matmul}. */
export interface MatmulOptions {
  /** Use Aᵀ (A stored [k, m], or [batch, k, m]). */
  transA?: boolean;
  /** Use Bᵀ (B stored [n, k], or [batch, n, k]). */
  transB?: boolean;
}

/**
 * Matrix product op(A)·op(B). 2-D × 2-D gives [m, n]; 3-D × 3-D with equal batch gives
 * [batch, m, n]; a 3-D operand with a 2-D one broadcasts the 2-D matrix over the batch.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  a.assertAlive('matmul');
  b.assertAlive('matmul');
  requireFloat('matmul', a, 'A');
  requireFloat('matmul', b, 'B');
  check(
    (a.rank === 2 || a.rank === 3) && (b.rank === 2 || b.rank === 3),
    'matmul',
    () => `expects 2-D or 3-D operands, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
  );
  const [am, ak] = transA
    ? [a.shape[a.rank - 1], a.shape[a.rank - 2]]
    : [a.shape[a.rank - 2], a.shape[a.rank - 1]];
  const [bk, bn] = transB
    ? [b.shape[b.rank - 1], b.shape[b.rank - 2]]
    : [b.shape[b.rank - 2], b.shape[b.rank - 1]];
  check(
    ak === bk,
    'matmul',
    () =>
      `inner dimensions differ: A${transA ? 'ᵀ' : ''} ${fmtShape(a.shape)} has k=${ak}, B${transB ? 'ᵀ' : ''} ${fmtShape(b.shape)} has k=${bk}`,
  );
  const batchA = a.rank === 3 ? a.shape[0] : 0;
  const batchB = b.rank === 3 ? b.shape[0] : 0;
  check(
    !batchA || !batchB || batchA === batchB,
    'matmul',
    () => `batch sizes differ: ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
  );
  const batch = Math.max(batchA, batchB);
  const shape = batch ? [batch, am, bn] : [am, bn];
  return runOp(
    'matmul',
    [a, b],
    { transA, transB, shape },
    {
      grad: (inputs) => (dys, needs) => {
        const [x, y] = inputs;
        const dc = dys[0];
        let da: Tensor | null = null;
        let db: Tensor | null = null;
        // C = op(A)·op(B): the four cases of the chain rule, each a single product.
        if (needs[0]) {
          da = transA ? matmul(y, dc, { transA: transB, transB: true }) : matmul(dc, y, { transB: !transB });
          da = reduceBatch(da, x);
        }
        if (needs[1]) {
          db = transB ? matmul(dc, x, { transA: true, transB: transA }) : matmul(x, dc, { transA: !transA });
          db = reduceBatch(db, y);
        }
        return [da, db];
      },
    },
  )[0];
}

// A 2-D operand broadcast over a batch gets the batch-summed gradient.
function reduceBatch(g: Tensor, like: Tensor): Tensor {
  if (g.rank === like.rank) return g;
  return sum(g, 0);
}

/**
 * The SAE encoder in one op: relu(x·op(W) + b) for x [B, d], W [d, F] (or [F, d] with `transB`),
 * b [F]. Backends fuse the bias and ReLU into the product's epilogue; the gradient uses the
 * output (y > 0 ⇔ pre-activation > 0).
 */
export function linearBiasRelu(x: Tensor, w: Tensor, b: Tensor, options: { transB?: boolean } = {}): Tensor {
  const transB = options.transB ?? false;
  const shape = encoderShape('linearBiasRelu', x, w, b, transB);
  return runOp(
    'linearBiasRelu',
    [x, w, b],
    { transB, shape },
    {
      composition: () => biasRelu(matmul(x, w, { transB }), b),
      grad: (inputs, outputs) => (dys, needs) => {
        const dpre = reluGrad(dys[0], outputs[0]);
        return encoderGrads(inputs, dpre, transB, needs, () => sum(dpre, 0));
      },
    },
  )[0];
}

/**
 * The encoder with its column sums: [relu(x·op(W) + b), Σ_b relu(…)] for x [B, d], W [d, F] (or
 * [F, d] with `transB`), b [F] — what the L1 penalty of a ReLU SAE and its firing activity need,
 * computed by a backend in the pass that adds the bias. Its gradient takes both outputs' in one
 * pass ({@link reluGradRowSum}), so the penalty's gradient (constant down the batch) never becomes
 * a [B, F] tensor of its own. The composition (linearBiasRelu, then sum) is the reference.
 */
export function linearBiasReluSum(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  options: { transB?: boolean } = {},
): [Tensor, Tensor] {
  const transB = options.transB ?? false;
  const shape = encoderShape('linearBiasReluSum', x, w, b, transB);
  const [f, colsum] = runOp(
    'linearBiasReluSum',
    [x, w, b],
    { transB, shape },
    {
      composition: () => {
        const f = linearBiasRelu(x, w, b, { transB });
        return [f, sum(f, 0)];
      },
      grad: (inputs, outputs) => (dys, needs, own) => {
        // dF is ours to overwrite when the backward pass hands it over: dPre then takes its memory
        const [dpre, db] = reluGradRowSum(dys[0], dys[1], outputs[0], { inPlace: own?.[0] ?? false });
        return encoderGrads(inputs, dpre, transB, needs, () => db);
      },
    },
  );
  return [f, colsum];
}

/**
 * The ReLU encoder's backward in one op: [dPre, Σ_b dPre] with dPre = (dF + row)·[f > 0], for
 * dF and f [B, F] and `row` [F] (the gradient reaching the column sums Σ_b f, broadcast down the
 * batch). The composition (add, reluGrad, sum) is the unfused reference; backends fuse it into
 * one pass. `inPlace`: the caller gives dF up (it never reads it again), so a backend may write
 * dPre over it instead of allocating a second [B, F] array (only the backward pass knows when
 * that holds: see `GradFn`'s `own`).
 */
export function reluGradRowSum(
  dF: Tensor,
  row: Tensor,
  f: Tensor,
  options: { inPlace?: boolean } = {},
): [Tensor, Tensor] {
  check(
    dF.rank === 2 && f.rank === 2 && dF.shape[0] === f.shape[0] && dF.shape[1] === f.shape[1],
    'reluGradRowSum',
    () => `dF and f must be the same 2-D shape, got ${fmtShape(dF.shape)} and ${fmtShape(f.shape)}`,
  );
  check(
    row.rank === 1 && row.shape[0] === f.shape[1],
    'reluGradRowSum',
    () => `row must be [${f.shape[1]}] for f ${fmtShape(f.shape)}, got ${fmtShape(row.shape)}`,
  );
  for (const [what, t] of [
    ['dF', dF],
    ['row', row],
    ['f', f],
  ] as const) {
    requireFloat('reluGradRowSum', t, what);
  }
  const [dpre, colsum] = runOp(
    'reluGradRowSum',
    [dF, row, f],
    { inPlace: options.inPlace ?? false },
    {
      composition: () => {
        const d = reluGrad(add(dF, row), f);
        return [d, sum(d, 0)];
      },
    },
  );
  return [dpre, colsum];
}

/**
 * The ReLU SAE's forward pass in one op: [f, Σ_b f, f·W_dec + b_dec] with f = relu(x·op(W) + b)
 * as {@link linearBiasReluSum} gives them, for W_dec [F, n] and b_dec [n]. The same values as
 * those ops one after the other; what it changes is the backward pass, which runs through
 * {@link reluDecodeGrad}: f's gradient from the decoder (dX̂·W_decᵀ, [B, F]) is formed in the
 * pass that applies the ReLU's mask, written over f where nothing else reads f afterwards, so the
 * step never holds two [B, F] arrays. A gradient reaching f itself (a penalty on f) takes the
 * unfused path.
 */
export function linearBiasReluSumDecode(
  x: Tensor,
  w: Tensor,
  b: Tensor,
  wDec: Tensor,
  bDec: Tensor,
  options: { transB?: boolean } = {},
): [Tensor, Tensor, Tensor] {
  const op = 'linearBiasReluSumDecode';
  const transB = options.transB ?? false;
  const shape = encoderShape(op, x, w, b, transB);
  requireFloat(op, wDec, 'W_dec');
  requireFloat(op, bDec, 'b_dec');
  check(
    wDec.rank === 2 && wDec.shape[0] === shape[1],
    op,
    () => `W_dec must be [${shape[1]}, n] for ${shape[1]} features, got ${fmtShape(wDec.shape)}`,
  );
  check(
    bDec.rank === 1 && bDec.shape[0] === wDec.shape[1],
    op,
    () => `b_dec must be [${wDec.shape[1]}] for W_dec ${fmtShape(wDec.shape)}, got ${fmtShape(bDec.shape)}`,
  );
  const [f, colsum, xhat] = runOp(
    op,
    [x, w, b, wDec, bDec],
    { transB, shape },
    {
      composition: () => {
        const [f, colsum] = linearBiasReluSum(x, w, b, { transB });
        return [f, colsum, add(matmul(f, wDec), bDec)];
      },
      missingGrads: true,
      // only f: x̂ and the sums are freed before the rule runs
      gradReadsOutputs: [0],
      grad: (inputs, outputs) => (dys, needs, own, ownOutputs) => {
        const [dF, dSums, dXhat] = dys as (Tensor | undefined)[];
        const f = outputs[0];
        const wDec = inputs[3];
        // W_dec's gradient first, while f still holds f; then b_dec's (x̂ = f·W_dec + b_dec)
        const dWDec = needs[3] && dXhat ? matmul(f, dXhat, { transA: true }) : null;
        const dBDec = needs[4] && dXhat ? sumTo(dXhat, inputs[4].shape) : null;
        const row = dSums ?? zeros([f.shape[1]], { backend: f.backend });
        let dpre: Tensor;
        let db: Tensor;
        if (dXhat && !dF) {
          [dpre, db] = reluDecodeGrad(dXhat, wDec, row, f, { inPlace: ownOutputs?.[0] ?? false });
        } else {
          const fromDecoder = dXhat ? matmul(dXhat, wDec, { transB: true }) : undefined;
          const total = dF && fromDecoder ? add(dF, fromDecoder) : (dF ?? fromDecoder);
          const owned = fromDecoder !== undefined || (own?.[0] ?? false);
          [dpre, db] = reluGradRowSum(total ?? zerosLike(f), row, f, { inPlace: owned || !total });
        }
        // dX̂ is read for the last time: free it before the encoder's products
        if (dXhat && own?.[2]) dXhat.dispose();
        return [...encoderGrads(inputs, dpre, transB, needs, () => db), dWDec, dBDec];
      },
    },
  );
  return [f, colsum, xhat];
}

/**
 * The backward of {@link linearBiasReluSumDecode} where only its decoded output and its column
 * sums carry a gradient: [dPre, Σ_b dPre] with dPre = (dX̂·W_decᵀ + row)·[f > 0], for dX̂ [B, n],
 * W_dec [F, n], row [F] and f [B, F]; the same values as `matmul(dX̂, W_dec, { transB: true })`
 * then {@link reluGradRowSum}. `inPlace`: the caller gives f up (it never reads it again), so a
 * backend may write dPre over f instead of allocating a second [B, F] array.
 */
export function reluDecodeGrad(
  dDecoded: Tensor,
  wDec: Tensor,
  row: Tensor,
  f: Tensor,
  options: { inPlace?: boolean } = {},
): [Tensor, Tensor] {
  check(
    dDecoded.rank === 2 &&
      wDec.rank === 2 &&
      f.rank === 2 &&
      dDecoded.shape[0] === f.shape[0] &&
      wDec.shape[0] === f.shape[1] &&
      wDec.shape[1] === dDecoded.shape[1],
    'reluDecodeGrad',
    () =>
      `expects dX̂ [B, n], W_dec [F, n] and f [B, F], got ${fmtShape(dDecoded.shape)}, ${fmtShape(wDec.shape)} and ${fmtShape(f.shape)}`,
  );
  check(
    row.rank === 1 && row.shape[0] === f.shape[1],
    'reluDecodeGrad',
    () => `row must be [${f.shape[1]}] for f ${fmtShape(f.shape)}, got ${fmtShape(row.shape)}`,
  );
  for (const [what, t] of [
    ['dX̂', dDecoded],
    ['W_dec', wDec],
    ['row', row],
    ['f', f],
  ] as const) {
    requireFloat('reluDecodeGrad', t, what);
  }
  const [dpre, colsum] = runOp(
    'reluDecodeGrad',
    [dDecoded, wDec, row, f],
    { inPlace: options.inPlace ?? false },
    {
      composition: () => reluGradRowSum(matmul(dDecoded, wDec, { transB: true }), row, f, { inPlace: true }),
    },
  );
  return [dpre, colsum];
}

/** Checks the operands of an encoder op (x [B, d], W [d, F] or [F, d] with `transB`, b [F]); the output shape [B, F]. */
function encoderShape(op: string, x: Tensor, w: Tensor, b: Tensor, transB: boolean): number[] {
  check(
    x.rank === 2 && w.rank === 2,
    op,
    () => `x and W must be 2-D, got ${fmtShape(x.shape)} and ${fmtShape(w.shape)}`,
  );
  const F = transB ? w.shape[0] : w.shape[1];
  check(
    b.rank === 1 && b.shape[0] === F,
    op,
    () => `bias must be [${F}] for W ${fmtShape(w.shape)}${transB ? 'ᵀ' : ''}, got ${fmtShape(b.shape)}`,
  );
  for (const [what, t] of [
    ['x', x],
    ['W', w],
    ['bias', b],
  ] as const) {
    requireFloat(op, t, what);
  }
  const k = transB ? w.shape[1] : w.shape[0];
  check(
    x.shape[1] === k,
    op,
    () =>
      `inner dimensions differ: x ${fmtShape(x.shape)} has ${x.shape[1]}, W${transB ? 'ᵀ' : ''} ${fmtShape(w.shape)} has ${k}`,
  );
  return [x.shape[0], F];
}

/** Gradients of an encoder's inputs [x, W, b] from the pre-activation's gradient; `db` only when needed. */
function encoderGrads(
  inputs: readonly Tensor[],
  dpre: Tensor,
  transB: boolean,
  needs: readonly boolean[],
  db: () => Tensor,
): (Tensor | null)[] {
  const [x, w] = inputs;
  return [
    needs[0] ? matmul(dpre, w, { transB: !transB }) : null,
    needs[1] ? (transB ? matmul(dpre, x, { transA: true }) : matmul(x, dpre, { transA: true })) : null,
    needs[2] ? db() : null,
  ];
}
