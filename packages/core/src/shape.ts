import { check, fmtShape } from './errors.js';
import type { Shape } from './types.js';

/** Number of elements of a shape (1 for a scalar). */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** Checks that a shape is a list of non-negative integers. */
export function checkShape(op: string, shape: Shape, what = 'shape'): void {
  check(
    Array.isArray(shape) && shape.every((d) => Number.isInteger(d) && d >= 0),
    op,
    () => `${what} must be a list of non-negative integers, got ${JSON.stringify(shape)}`,
  );
}

/** numpy broadcasting of two shapes; throws naming the op and both shapes when they do not broadcast. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    check(
      da === db || da === 1 || db === 1,
      op,
      () => `shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast (axis ${i}: ${da} vs ${db})`,
    );
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Whether two shapes are equal. */
export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Normalises axes (negative counts from the end) to a sorted, unique list.
 * `undefined` means every axis.
 */
export function normalizeAxes(
  op: string,
  axes: number | readonly number[] | undefined,
  rank: number,
): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const out = list.map((a) => {
    check(
      Number.isInteger(a) && a >= -rank && a < rank,
      op,
      () => `axis ${a} is out of range for a tensor of rank ${rank}`,
    );
    return a < 0 ? a + rank : a;
  });
  return [...new Set(out)].sort((x, y) => x - y);
}

/** The shape left after reducing `axes` (kept as size-1 axes when `keepDims`). */
export function reducedShape(shape: Shape, axes: readonly number[], keepDims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (axes.includes(i)) {
      if (keepDims) out.push(1);
    } else out.push(d);
  });
  return out;
}

/**
 * Strides of an array of `shape` read as if broadcast to `out`: 0 along axes it is broadcast
 * over (missing leading axes, or size 1 where `out` is larger), its own stride elsewhere.
 */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const own = stridesOf(shape);
  const lead = out.length - shape.length;
  return out.map((d, i) => {
    if (i < lead) return 0;
    const sd = shape[i - lead];
    return sd === 1 && d !== 1 ? 0 : own[i - lead];
  });
}
