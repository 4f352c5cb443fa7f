import { isRecording, recordNode, runOp, shareStorage } from '../engine.js';
import { check, DictlearnError, fmtShape } from '../errors.js';
import { broadcastShapes, checkShape, sameShape, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { zeros } from './create.js';
import { add, sumTo } from './elementwise.js';

/** Same values under a new shape of the same size; one axis may be -1 (inferred). No copy. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  x.assertAlive('reshape');
  const inferAt = shape.indexOf(-1);
  let target = [...shape];
  if (inferAt >= 0) {
    const rest = sizeOf(shape.filter((_, i) => i !== inferAt));
    check(
      shape.filter((d) => d === -1).length === 1 && rest > 0 && x.size % rest === 0,
      'reshape',
      () => `cannot infer the -1 axis reshaping ${fmtShape(x.shape)} to ${fmtShape(shape)}`,
    );
    target[inferAt] = x.size / rest;
  }
  checkShape('reshape', target);
  check(
    sizeOf(target) === x.size,
    'reshape',
    () =>
      `cannot reshape ${fmtShape(x.shape)} (${x.size} elements) to ${fmtShape(target)} (${sizeOf(target)} elements)`,
  );
  if (sameShape(target, x.shape)) target = [...x.shape];
  const y = shareStorage(x, target);
  if (isRecording()) recordNode([x], [y], (dys) => [reshape(dys[0], x.shape)]);
  return y;
}

/** Inserts a size-1 axis at `axis`. */
export function expandDims(x: Tensor, axis: number): Tensor {
  const a = axis < 0 ? axis + x.rank + 1 : axis;
  check(a >= 0 && a <= x.rank, 'expandDims', () => `axis ${axis} out of range for rank ${x.rank}`);
  const shape = [...x.shape];
  shape.splice(a, 0, 1);
  return reshape(x, shape);
}

/** Permutes axes (default: reverses them). Returns a contiguous copy. */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  x.assertAlive('transpose');
  const p = perm ? [...perm] : x.shape.map((_, i) => x.rank - 1 - i);
  check(
    p.length === x.rank && [...p].sort((a, b) => a - b).every((v, i) => v === i),
    'transpose',
    () => `perm ${JSON.stringify(perm)} is not a permutation of the ${x.rank} axes of ${fmtShape(x.shape)}`,
  );
  const inverse = new Array<number>(p.length);
  p.forEach((v, i) => {
    inverse[v] = i;
  });
  return runOp(
    'transpose',
    [x],
    { perm: p, shape: p.map((i) => x.shape[i]) },
    {
      grad: () => (dys) => [transpose(dys[0], inverse)],
    },
  )[0];
}

/**
 * A contiguous block: `begin[i]` to `begin[i] + size[i]` on each axis (size -1 = to the end).
 * Axes not listed are taken whole.
 */
export function slice(x: Tensor, begin: readonly number[], size?: readonly number[]): Tensor {
  x.assertAlive('slice');
  check(
    begin.length <= x.rank,
    'slice',
    () => `begin has ${begin.length} entries for a tensor of rank ${x.rank}`,
  );
  const b = x.shape.map((_, i) => begin[i] ?? 0);
  const s = x.shape.map((d, i) => {
    const want = size?.[i] ?? -1;
    return want === -1 ? d - b[i] : want;
  });
  check(
    b.every(
      (v, i) =>
        Number.isInteger(v) && v >= 0 && Number.isInteger(s[i]) && s[i] >= 0 && v + s[i] <= x.shape[i],
    ),
    'slice',
    () => `begin ${fmtShape(b)} size ${fmtShape(s)} is outside shape ${fmtShape(x.shape)}`,
  );
  return runOp(
    'slice',
    [x],
    { begin: b, size: s, shape: s },
    {
      grad: (inputs) => (dys) => [
        pad(
          dys[0],
          b.map((v, i) => [v, inputs[0].shape[i] - v - s[i]] as [number, number]),
        ),
      ],
    },
  )[0];
}

/** Pads with zeros: `paddings[i] = [before, after]` for each axis. */
export function pad(x: Tensor, paddings: readonly (readonly [number, number])[]): Tensor {
  x.assertAlive('pad');
  check(
    paddings.length === x.rank &&
      paddings.every(([a, b]) => Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b >= 0),
    'pad',
    () =>
      `paddings must give [before, after] non-negative integers for each of the ${x.rank} axes, got ${JSON.stringify(paddings)}`,
  );
  const shape = x.shape.map((d, i) => d + paddings[i][0] + paddings[i][1]);
  return runOp(
    'pad',
    [x],
    { paddings: paddings.map((p) => [...p]), shape },
    {
      grad: () => (dys) => [
        slice(
          dys[0],
          paddings.map((p) => p[0]),
          x.shape,
        ),
      ],
    },
  )[0];
}

/** Joins tensors along an axis; all other axes must match. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  check(xs.length > 0, 'concat', () => 'needs at least one tensor');
  const rank = xs[0].rank;
  const a = axis < 0 ? axis + rank : axis;
  check(a >= 0 && a < rank, 'concat', () => `axis ${axis} out of range for rank ${rank}`);
  for (const t of xs) {
    t.assertAlive('concat');
    if (
      t.rank !== rank ||
      t.shape.some((d, i) => i !== a && d !== xs[0].shape[i]) ||
      t.dtype !== xs[0].dtype
    ) {
      throw new DictlearnError(
        'concat',
        `tensors must match except on axis ${a}: got ${xs.map((x) => `${fmtShape(x.shape)} ${x.dtype}`).join(', ')}`,
      );
    }
  }
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((n, t) => n + t.shape[a], 0);
  return runOp(
    'concat',
    [...xs],
    { axis: a, shape },
    {
      grad: (inputs) => (dys) => {
        let offset = 0;
        return inputs.map((t) => {
          const begin = t.shape.map((_, i) => (i === a ? offset : 0));
          offset += t.shape[a];
          return slice(dys[0], begin, t.shape);
        });
      },
    },
  )[0];
}

/** Broadcasts to a shape (numpy rules). */
export function broadcastTo(x: Tensor, shape: readonly number[]): Tensor {
  const out = broadcastShapes('broadcastTo', x.shape, shape);
  check(
    sameShape(out, shape),
    'broadcastTo',
    () => `cannot broadcast ${fmtShape(x.shape)} to ${fmtShape(shape)}`,
  );
  if (sameShape(x.shape, shape)) return x;
  return runOp(
    'broadcastTo',
    [x],
    { shape: [...shape] },
    {
      composition: () => add(x, zeros(shape, { dtype: x.dtype, backend: x.backend })),
      grad: (inputs) => (dys) => [sumTo(dys[0], inputs[0].shape)],
    },
  )[0];
}
