import { noGrad, recordNode, runOp, scope } from '../engine.js';
import { check, DictlearnError } from '../errors.js';
import { normalizeAxes, reducedShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import {
  abs,
  div,
  equal,
  mul,
  notEqual,
  requireFloat,
  requireSameShape,
  scaledDifference,
  sqrt,
  square,
  sub,
} from './elementwise.js';
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
    { axes: ax, keepDims, shape: reducedShape(x.shape, ax, keepDims) },
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
  const ax = normalizeAxes('l1Norm', axes, x.rank);
  return runOp(
    'l1Norm',
    [x],
    { axes: ax, keepDims, shape: reducedShape(x.shape, ax, keepDims) },
    { composition: () => sum(abs(x), ax, keepDims) },
  )[0];
}

/** L2 norm √Σx² along axes (default: the last axis). */
export function l2Norm(x: Tensor, axes: Axes = -1, keepDims = false): Tensor {
  requireFloat('l2Norm', x);
  const ax = normalizeAxes('l2Norm', axes, x.rank);
  return runOp(
    'l2Norm',
    [x],
    { axes: ax, keepDims, shape: reducedShape(x.shape, ax, keepDims) },
    { composition: () => sqrt(sum(square(x), ax, keepDims)) },
  )[0];
}

/**
 * Σ (a − b)² over all elements of two same-shape tensors (a scalar): what `sum(square(sub(a,
 * b)))` computes, where a backend's kernel holds neither the difference nor its square as a
 * tensor (a reconstruction error over a whole batch costs no [B, d] temporary).
 */
export function sumSquaredDifference(a: Tensor, b: Tensor): Tensor {
  requireSameShape('sumSquaredDifference', a, b);
  return runOp('sumSquaredDifference', [a, b], {}, { composition: () => sum(square(sub(a, b))) })[0];
}

/**
 * mean_b ‖x − x̂‖²: the squared error over all elements divided by the batch size x.shape[0]
 * (a reconstruction loss). Its value is `div(sum(square(sub(x, xhat))), B)` bit for bit, and so
 * is its gradient (x̂'s: (x̂ − x)·((dy / B)·2), as autograd rounds it; x's: the negation), but
 * neither pass holds a [B, d] temporary where the backend has kernels for
 * {@link sumSquaredDifference} and {@link scaledDifference}, and the gradient is written over x̂
 * where the backward pass says nothing reads x̂ afterwards.
 */
export function meanSquaredError(x: Tensor, xhat: Tensor): Tensor {
  requireSameShape('meanSquaredError', x, xhat);
  check(x.rank >= 1, 'meanSquaredError', () => 'x and xhat need a batch axis, got 0-d tensors');
  const B = x.shape[0];
  const value = noGrad(() => div(sumSquaredDifference(x, xhat), B));
  recordNode([x, xhat], [value], (dys, needs, _own, _ownOutputs, ownInputs) => {
    const s = mul(div(dys[0], B), 2);
    // x̂'s gradient over x̂ itself where nothing reads x̂ afterwards (the backward pass says so):
    // then the step holds x̂ or its gradient, never both
    const over = (k: number) => ({ inPlace: (ownInputs?.[k] ?? false) && !needs[1 - k] });
    return [
      needs[0] ? scaledDifference(x, xhat, s, over(0)) : null,
      needs[1] ? scaledDifference(xhat, x, s, over(1)) : null,
    ];
  });
  return value;
}

/** Number of NaN or ±Inf elements (a float32 scalar). Runs on the tensor's backend. */
export function countNonFinite(x: Tensor): Tensor {
  requireFloat('countNonFinite', x);
  // x − x is 0 for finite x and NaN for NaN and ±Inf.
  return runOp('countNonFinite', [x], {}, { composition: () => sum(notEqual(sub(x, x), 0)) })[0];
}

/**
 * Throws a {@link DictlearnError} naming `what` when `x` holds NaN or ±Inf, with the count and
 * the first offending position. For inputs that must be finite (activations fed to training).
 */
export async function assertFinite(x: Tensor, what: string): Promise<void> {
  const count = scope(() => countNonFinite(x));
  const n = (await count.data())[0];
  count.dispose();
  if (n === 0) return;
  const values = await x.data();
  const first = values.findIndex((v) => !Number.isFinite(v));
  const at = x.shape.length > 0 ? unravel(first, x.shape) : [];
  throw new DictlearnError(
    what,
    `${n} of ${x.size} values are NaN or Inf (first at [${at.join(', ')}]: ${values[first]}); expected finite numbers`,
  );
}

function unravel(flat: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = flat % shape[i];
    flat = Math.floor(flat / shape[i]);
  }
  return out;
}
