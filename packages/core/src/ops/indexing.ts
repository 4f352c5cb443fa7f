import { runOp } from '../engine.js';
import { check, DictlearnError, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { zeros } from './create.js';
import { transpose } from './shape-ops.js';

function requireIndices(op: string, indices: Tensor): void {
  indices.assertAlive(op);
  check(indices.dtype === 'int32', op, () => `indices must be int32, got ${indices.dtype} (${indices})`);
}

/** Rows of `x` (axis 0) picked by int32 `indices` [n] → [n, ...x.shape[1:]]. Out-of-range indices throw. */
export function gatherRows(x: Tensor, indices: Tensor): Tensor {
  x.assertAlive('gatherRows');
  requireIndices('gatherRows', indices);
  check(x.rank >= 1, 'gatherRows', () => `x must have at least one axis, got ${fmtShape(x.shape)}`);
  check(indices.rank === 1, 'gatherRows', () => `indices must be 1-D, got ${fmtShape(indices.shape)}`);
  return runOp(
    'gatherRows',
    [x, indices],
    { shape: [indices.shape[0], ...x.shape.slice(1)] },
    {
      grad: (inputs) => (dys) => [
        scatterAddRows(zeros(inputs[0].shape, { backend: x.backend }), inputs[1], dys[0]),
        null,
      ],
    },
  )[0];
}

/**
 * A copy of `x` with `updates[i]` added to row `indices[i]`; repeated indices accumulate
 * (in index order, so every backend gives the same sums).
 */
export function scatterAddRows(x: Tensor, indices: Tensor, updates: Tensor): Tensor {
  x.assertAlive('scatterAddRows');
  updates.assertAlive('scatterAddRows');
  requireIndices('scatterAddRows', indices);
  check(indices.rank === 1, 'scatterAddRows', () => `indices must be 1-D, got ${fmtShape(indices.shape)}`);
  check(
    updates.rank === x.rank &&
      updates.shape[0] === indices.shape[0] &&
      updates.shape.every((d, i) => i === 0 || d === x.shape[i]),
    'scatterAddRows',
    () =>
      `updates must be [${indices.shape[0]}, ${x.shape.slice(1).join(', ')}] for x ${fmtShape(x.shape)} and ${indices.shape[0]} indices, got ${fmtShape(updates.shape)}`,
  );
  check(
    x.dtype === updates.dtype,
    'scatterAddRows',
    () => `x is ${x.dtype} but updates are ${updates.dtype}`,
  );
  return runOp(
    'scatterAddRows',
    [x, indices, updates],
    { shape: [...x.shape] },
    {
      grad: (inputs) => (dys, needs) => [dys[0], null, needs[2] ? gatherRows(dys[0], inputs[1]) : null],
    },
  )[0];
}

/** Columns (last axis) of a 2-D `x` picked by int32 `indices` [n] → [rows, n]. */
export function indexColumns(x: Tensor, indices: Tensor): Tensor {
  x.assertAlive('indexColumns');
  requireIndices('indexColumns', indices);
  check(x.rank === 2, 'indexColumns', () => `x must be 2-D, got ${fmtShape(x.shape)}`);
  check(indices.rank === 1, 'indexColumns', () => `indices must be 1-D, got ${fmtShape(indices.shape)}`);
  return runOp(
    'indexColumns',
    [x, indices],
    { shape: [x.shape[0], indices.shape[0]] },
    {
      grad: (inputs) => (dys) => {
        const [src, idx] = inputs;
        const zerosT = zeros([src.shape[1], src.shape[0]], { backend: src.backend });
        return [transpose(scatterAddRows(zerosT, idx, transpose(dys[0]))), null];
      },
    },
  )[0];
}

/**
 * Picks along the last axis: `out[..., j] = x[..., indices[..., j]]` (numpy's take_along_axis
 * on the last axis). `indices` has x's leading shape and any last size.
 */
export function gatherLast(x: Tensor, indices: Tensor): Tensor {
  x.assertAlive('gatherLast');
  requireIndices('gatherLast', indices);
  check(
    x.rank >= 1 &&
      indices.rank === x.rank &&
      indices.shape.every((d, i) => i === x.rank - 1 || d === x.shape[i]),
    'gatherLast',
    () => `indices ${fmtShape(indices.shape)} must match x ${fmtShape(x.shape)} on every axis but the last`,
  );
  return runOp(
    'gatherLast',
    [x, indices],
    { shape: [...indices.shape] },
    {
      grad: (inputs) => (dys) => [scatterLast(inputs[1], dys[0], inputs[0].shape[inputs[0].rank - 1]), null],
    },
  )[0];
}

/**
 * The inverse of {@link gatherLast}: zeros of shape [..., width] with `values[..., j]` added at
 * `indices[..., j]` (repeats accumulate in index order).
 */
export function scatterLast(indices: Tensor, values: Tensor, width: number): Tensor {
  values.assertAlive('scatterLast');
  requireIndices('scatterLast', indices);
  check(
    Number.isInteger(width) && width >= 0,
    'scatterLast',
    () => `width must be a non-negative integer, got ${width}`,
  );
  check(
    indices.rank >= 1 && indices.rank === values.rank && indices.shape.every((d, i) => d === values.shape[i]),
    'scatterLast',
    () => `indices ${fmtShape(indices.shape)} and values ${fmtShape(values.shape)} must have the same shape`,
  );
  return runOp(
    'scatterLast',
    [indices, values],
    { width, shape: [...values.shape.slice(0, -1), width] },
    {
      grad: (inputs) => (dys, needs) => [null, needs[1] ? gatherLast(dys[0], inputs[0]) : null],
    },
  )[0];
}

/** What {@link topk} returns. */
export interface TopK {
  /** The k largest values along the last axis, in descending order. */
  values: Tensor;
  /** Their int32 positions; ties go to the lower index; a NaN counts as larger than any number. */
  indices: Tensor;
}

/** The k largest entries along the last axis. The gradient flows to the chosen positions. */
export function topk(x: Tensor, k: number): TopK {
  x.assertAlive('topk');
  check(x.dtype === 'float32', 'topk', () => `x must be float32, got ${x.dtype}`);
  check(x.rank >= 1, 'topk', () => `x must have at least one axis, got ${fmtShape(x.shape)}`);
  const n = x.shape[x.rank - 1];
  if (!Number.isInteger(k) || k < 0 || k > n) {
    throw new DictlearnError(
      'topk',
      `k must be an integer in [0, ${n}] for last axis of size ${n}, got ${k}`,
    );
  }
  const shape = [...x.shape.slice(0, -1), k];
  const [values, indices] = runOp(
    'topk',
    [x],
    { k, shape },
    {
      grad: (inputs, outputs) => (dys) => [
        scatterLast(outputs[1], dys[0], inputs[0].shape[inputs[0].rank - 1]),
      ],
    },
  );
  return { values, indices };
}
