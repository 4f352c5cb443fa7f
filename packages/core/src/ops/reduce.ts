import { runOp } from '../engine.js';
import { check } from '../errors.js';
import { normalizeAxes, reducedShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { abs, div, equal, mul, requireFloat, sqrt, square } from './elementwise.js';
import { broadcastTo, reshape } from './shape-ops.js';

/** Axes to reduce over: one axis, a list, or `undefined` for all. Negative axes count from the end. */
export type Axes = number | readonly number[] | undefined;

/** Reshapes a reduced gradient so it broadcasts against the input (re-inserting the reduced axes). */
function expandReduced(dy: Tensor, inputShape: readonly number[], axes: number[]): Tensor {
  return reshape(dy, reducedShape(inputShape, axes, true));
}

/** Sum over axes (all by default). */
export function sum(x: Tensor, axes?: Axes, keepDims = false): Tensor {
  const ax = normalizeAxes('sum', axes, x.rank);
  return runOp(
    'sum',
    [x],
    { axes: ax, keepDims, shape: reducedShape(x.shape, ax, keepDims) },
    {
      grad: (inputs) => (dys) => [broadcastTo(expandReduced(dys[0], inputs[0].shape, ax), inputs[0].shape)],
    },
  )[0];
}

/** Mean over axes (all by default). The mean of zero elements is NaN. */
export function mean(x: Tensor, axes?: Axes, keepDims = false): Tensor {
  requireFloat('mean', x);
  const ax = normalizeAxes('mean', axes, x.rank);
  const count = ax.reduce((n, a) => n * x.shape[a], 1);
  return runOp(
    'mean',
    [x],
    { axes: ax, keepDims },
    {
      composition: () => div(sum(x, ax, keepDims), count),
    },
  )[0];
}

function extremum(op: 'max' | 'min', x: Tensor, axes: Axes, keepDims: boolean): Tensor {
  const ax = normalizeAxes(op, axes, x.rank);
  check(
    ax.every((a) => x.shape[a] > 0),
    op,
    () => `cannot take the ${op} over an empty axis (shape [${x.shape.join(', ')}])`,
  );
  return runOp(
    op,
    [x],
    { axes: ax, keepDims, shape: reducedShape(x.shape, ax, keepDims) },
    {
      // Ties share the gradient equally (like torch.amax), so the result is a valid subgradient.
      grad: (inputs, outputs) => (dys) => {
        const input = inputs[0];
        const y = expandReduced(outputs[0], input.shape, ax);
        const mask = equal(input, y);
        const count = sum(mask, ax, true);
        return [mul(div(mask, count), expandReduced(dys[0], input.shape, ax))];
      },
    },
  )[0];
}

/** Maximum over axes (NaN propagates). */
export function max(x: Tensor, axes?: Axes, keepDims = false): Tensor {
  return extremum('max', x, axes, keepDims);
}

/** Minimum over axes (NaN propagates). */
export function min(x: Tensor, axes?: Axes, keepDims = false): Tensor {
  return extremum('min', x, axes, keepDims);
}

/** Index of the maximum along one axis (int32; ties to the lower index; a NaN counts as the maximum). */
export function argmax(x: Tensor, axis = -1, keepDims = false): Tensor {
  const [a] = normalizeAxes('argmax', axis, x.rank);
  check(
    x.rank > 0 && x.shape[a] > 0,
    'argmax',
    () => `cannot take argmax over an empty axis (shape [${x.shape.join(', ')}])`,
  );
  return runOp('argmax', [x], { axis: a, keepDims, shape: reducedShape(x.shape, [a], keepDims) })[0];
}

/** L1 norm Σ|x| along axes (default: the last axis). */
export function l1Norm(x: Tensor, axes: Axes = -1, keepDims = false): Tensor {
  requireFloat('l1Norm', x);
  return runOp('l1Norm', [x], { axes, keepDims }, { composition: () => sum(abs(x), axes, keepDims) })[0];
}

/** L2 norm √Σx² along axes (default: the last axis). */
export function l2Norm(x: Tensor, axes: Axes = -1, keepDims = false): Tensor {
  requireFloat('l2Norm', x);
  return runOp(
    'l2Norm',
    [x],
    { axes, keepDims },
    { composition: () => sqrt(sum(square(x), axes, keepDims)) },
  )[0];
}
