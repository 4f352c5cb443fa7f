import type { DType } from '@dictlearn/core';
import { arr, broadcastStrides, type CpuArray, type CpuContext, out } from './context.js';

type Unary = (x: number, attrs: Record<string, unknown>) => number;

/** Every unary op as one scalar function; the loop is shared. */
const UNARY: Record<string, Unary> = {
  neg: (x) => -x,
  abs: (x) => Math.abs(x),
  sign: (x) => (x > 0 ? 1 : x < 0 ? -1 : x), // keeps NaN and ±0
  square: (x) => x * x,
  sqrt: (x) => Math.sqrt(x),
  exp: (x) => Math.exp(x),
  log: (x) => Math.log(x),
  pow: (x, a) => x ** (a.p as number),
  relu: (x) => (x > 0 ? x : Number.isNaN(x) ? x : 0), // NaN stays NaN
  step: (x, a) => (x > (a.threshold as number) ? 1 : Number.isNaN(x) ? x : 0),
};

type Binary = (a: number, b: number) => number;

/** Every binary op as one scalar function; broadcasting is handled once in {@link binaryLoop}. */
const BINARY: Record<string, Binary> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  maximum: (a, b) => Math.max(a, b), // Math.max propagates NaN
  minimum: (a, b) => Math.min(a, b),
  greater: (a, b) => (a > b ? 1 : 0),
  greaterEqual: (a, b) => (a >= b ? 1 : 0),
  less: (a, b) => (a < b ? 1 : 0),
  lessEqual: (a, b) => (a <= b ? 1 : 0),
  equal: (a, b) => (a === b ? 1 : 0),
  notEqual: (a, b) => (a !== b ? 1 : 0),
};

const COMPARISONS = new Set(['greater', 'greaterEqual', 'less', 'lessEqual', 'equal', 'notEqual']);

/**
 * Applies f over broadcast operands into `dst` (shape `shape`). Fast paths for equal shapes,
 * a scalar operand and a row vector broadcast over rows (bias adds); an odometer otherwise.
 */
export function binaryLoop(
  f: Binary,
  a: CpuArray,
  aShape: readonly number[],
  b: CpuArray,
  bShape: readonly number[],
  dst: CpuArray,
  shape: readonly number[],
): void {
  const n = dst.length;
  if (a.length === n && b.length === n) {
    for (let i = 0; i < n; i++) dst[i] = f(a[i], b[i]);
    return;
  }
  if (b.length === 1 && a.length === n) {
    const bv = b[0];
    for (let i = 0; i < n; i++) dst[i] = f(a[i], bv);
    return;
  }
  if (a.length === 1 && b.length === n) {
    const av = a[0];
    for (let i = 0; i < n; i++) dst[i] = f(av, b[i]);
    return;
  }
  const last = shape[shape.length - 1] ?? 1;
  if (a.length === n && b.length === last && bShape[bShape.length - 1] === last) {
    for (let i = 0; i < n; i += last) for (let j = 0; j < last; j++) dst[i + j] = f(a[i + j], b[j]);
    return;
  }
  if (b.length === n && a.length === last && aShape[aShape.length - 1] === last) {
    for (let i = 0; i < n; i += last) for (let j = 0; j < last; j++) dst[i + j] = f(a[j], b[i + j]);
    return;
  }
  const sa = broadcastStrides(aShape, shape);
  const sb = broadcastStrides(bShape, shape);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let ia = 0;
  let ib = 0;
  for (let i = 0; i < n; i++) {
    dst[i] = f(a[ia], b[ib]);
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]++;
      ia += sa[ax];
      ib += sb[ax];
      if (idx[ax] < shape[ax]) break;
      ia -= sa[ax] * shape[ax];
      ib -= sb[ax] * shape[ax];
      idx[ax] = 0;
    }
  }
}

/** Registers the elementwise kernels (unary, binary, comparisons, where, cast). */
export function registerElementwise(ctx: CpuContext): void {
  for (const [op, f] of Object.entries(UNARY)) {
    ctx.kernel(op, ([x], attrs) => {
      const src = arr(x);
      const dst = ctx.alloc(x.dtype, x.size);
      for (let i = 0; i < src.length; i++) dst[i] = f(src[i], attrs);
      return out(dst, x.shape, x.dtype);
    });
  }
  for (const [op, f] of Object.entries(BINARY)) {
    const isCmp = COMPARISONS.has(op);
    ctx.kernel(op, ([a, b], attrs) => {
      const shape = attrs.shape as number[];
      const dtype: DType = isCmp ? 'float32' : a.dtype;
      const size = shape.reduce((p, d) => p * d, 1);
      const dst = ctx.alloc(dtype, size);
      // int32 arithmetic wraps like C (the Int32Array store truncates to 32 bits).
      binaryLoop(f, arr(a), a.shape, arr(b), b.shape, dst, shape);
      return out(dst, shape, dtype);
    });
  }
  ctx.kernel('where', ([c, a, b], attrs) => {
    const shape = attrs.shape as number[];
    const size = shape.reduce((p, d) => p * d, 1);
    // Broadcast the condition first, then select with the shared binary loop per branch.
    const cond = ctx.alloc('float32', size);
    binaryLoop((x) => (x !== 0 ? 1 : 0), arr(c), c.shape, cond, shape, cond, shape);
    const av = ctx.alloc(a.dtype, size);
    binaryLoop((x) => x, arr(a), a.shape, av, shape, av, shape);
    const dst = ctx.alloc(a.dtype, size);
    binaryLoop((_m, y) => y, cond, shape, arr(b), b.shape, dst, shape);
    for (let i = 0; i < size; i++) if (cond[i] !== 0) dst[i] = av[i];
    return out(dst, shape, a.dtype);
  });
  ctx.kernel('cast', ([x], attrs) => {
    const dtype = attrs.dtype as DType;
    const src = arr(x);
    const dst = ctx.alloc(dtype, x.size);
    if (dtype === 'int32') for (let i = 0; i < src.length; i++) dst[i] = Math.trunc(src[i]) | 0;
    else dst.set(src);
    return out(dst, x.shape, dtype);
  });
}
