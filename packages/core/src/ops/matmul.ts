import { runOp } from '../engine.js';
import { check, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { requireFloat } from './elementwise.js';
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
