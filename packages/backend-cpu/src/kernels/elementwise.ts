import type { DType } from '@dictlearn/core';
import { broadcastStrides } from '@dictlearn/core';
import { arr, type CpuArray, type CpuContext, out } from './context.js';

/**
 * Every elementwise op as one expression over `x` (and `y`); attributes are `p` and `t`.
 * The loops around them are generated once per op (see {@link compile}), so each op gets its
 * own monomorphic loop: a shared loop calling `f(x, y)` through a function value runs several
 * times slower because V8 cannot inline a call site that sees dozens of functions.
 */
const UNARY: Record<string, string> = {
  neg: '-x',
  abs: 'Math.abs(x)',
  // Branch-free forms where the data decide the branch (random signs mispredict ~50%, which
  // measured 4-5x slower); the remaining conditions (NaN, −Inf) are rare, so they predict well.
  sign: 'x !== x ? x : (x > 0) - (x < 0)',
  square: 'x * x',
  sqrt: 'Math.sqrt(x)',
  exp: 'Math.exp(x)',
  log: 'Math.log(x)',
  pow: 'Math.pow(x, p)',
  relu: 'x === -Infinity ? 0 : x * (x > 0)', // NaN · 0 stays NaN
  step: 'x !== x ? x : +(x > t)',
};

const BINARY: Record<string, string> = {
  add: 'x + y',
  sub: 'x - y',
  mul: 'x * y',
  div: 'x / y',
  maximum: 'Math.max(x, y)', // Math.max propagates NaN
  minimum: 'Math.min(x, y)',
  greater: '+(x > y)',
  greaterEqual: '+(x >= y)',
  less: '+(x < y)',
  lessEqual: '+(x <= y)',
  equal: '+(x === y)',
  notEqual: '+(x !== y)',
};

const COMPARISONS = new Set(['greater', 'greaterEqual', 'less', 'lessEqual', 'equal', 'notEqual']);

type Arr = CpuArray;
/** A generated unary loop: dst[i] = expr(a[i]) for i < n. */
type UnaryLoop = (a: Arr, dst: Arr, n: number, p: number, t: number) => void;
/**
 * A generated binary loop. `mode` says how the operands line up with the output (n elements,
 * rows of `last`): 0 same size, 1 b scalar, 2 a scalar, 3 b one row, 4 a one row, 5 b one value
 * per row, 6 a one value per row.
 */
type BinaryLoop = (a: Arr, b: Arr, dst: Arr, n: number, mode: number, last: number) => void;

/** Whether this runtime allows `new Function` (a page's CSP may forbid it). */
const CAN_GENERATE = (() => {
  try {
    return new Function('return 1')() === 1;
  } catch {
    return false;
  }
})();

function unaryLoop(expr: string): UnaryLoop {
  const body = `for (let i = 0; i < n; i++) { const x = a[i]; dst[i] = ${expr}; }`;
  if (CAN_GENERATE) return new Function('a', 'dst', 'n', 'p', 't', body) as UnaryLoop;
  const f = new Function('x', 'p', 't', `return ${expr};`) as (x: number, p: number, t: number) => number;
  return (a, dst, n, p, t) => {
    for (let i = 0; i < n; i++) dst[i] = f(a[i], p, t);
  };
}

const BINARY_TEMPLATE = `
switch (mode) {
  case 0: for (let i = 0; i < n; i++) { const x = a[i], y = b[i]; dst[i] = EXPR; } return;
  case 1: { const y = b[0]; for (let i = 0; i < n; i++) { const x = a[i]; dst[i] = EXPR; } return; }
  case 2: { const x = a[0]; for (let i = 0; i < n; i++) { const y = b[i]; dst[i] = EXPR; } return; }
  case 3: for (let i = 0; i < n; i += last) for (let j = 0; j < last; j++) { const x = a[i + j], y = b[j]; dst[i + j] = EXPR; } return;
  case 4: for (let i = 0; i < n; i += last) for (let j = 0; j < last; j++) { const x = a[j], y = b[i + j]; dst[i + j] = EXPR; } return;
  case 5: for (let i = 0, r = 0; i < n; i += last, r++) { const y = b[r]; for (let j = 0; j < last; j++) { const x = a[i + j]; dst[i + j] = EXPR; } } return;
  case 6: for (let i = 0, r = 0; i < n; i += last, r++) { const x = a[r]; for (let j = 0; j < last; j++) { const y = b[i + j]; dst[i + j] = EXPR; } } return;
}`;

function binaryLoopOf(expr: string): { loop: BinaryLoop; f: (x: number, y: number) => number } {
  const f = new Function('x', 'y', `return ${expr};`) as (x: number, y: number) => number;
  if (CAN_GENERATE) {
    return {
      loop: new Function(
        'a',
        'b',
        'dst',
        'n',
        'mode',
        'last',
        BINARY_TEMPLATE.replaceAll('EXPR', expr),
      ) as BinaryLoop,
      f,
    };
  }
  return {
    f,
    loop: (a, b, dst, n, mode, last) => {
      for (let i = 0; i < n; i++) {
        const row = Math.floor(i / last);
        const col = i - row * last;
        const x = mode === 2 ? a[0] : mode === 4 ? a[col] : mode === 6 ? a[row] : a[i];
        const y = mode === 1 ? b[0] : mode === 3 ? b[col] : mode === 5 ? b[row] : b[i];
        dst[i] = f(x, y);
      }
    },
  };
}

/** Which generated mode fits two operand shapes broadcast to `shape`, or -1 for the general case. */
function modeOf(
  aShape: readonly number[],
  aLen: number,
  bShape: readonly number[],
  bLen: number,
  shape: readonly number[],
  n: number,
): number {
  const last = shape[shape.length - 1] ?? 1;
  const rows = last === 0 ? 0 : n / last;
  const isRow = (s: readonly number[], len: number) =>
    len === last && s[s.length - 1] === last && s.slice(0, -1).every((d) => d === 1);
  const isCol = (s: readonly number[], len: number) =>
    len === rows &&
    (s[s.length - 1] ?? 1) === 1 &&
    s.length === shape.length &&
    s.slice(0, -1).every((d, i) => d === shape[i]);
  if (aLen === n && bLen === n) return 0;
  if (aLen === n && bLen === 1) return 1;
  if (aLen === 1 && bLen === n) return 2;
  if (aLen === n && isRow(bShape, bLen)) return 3;
  if (bLen === n && isRow(aShape, aLen)) return 4;
  if (aLen === n && isCol(bShape, bLen)) return 5;
  if (bLen === n && isCol(aShape, aLen)) return 6;
  return -1;
}

/**
 * Applies f over broadcast operands into `dst` (shape `shape`) with an odometer: the general
 * case, for broadcasts the generated loops do not cover.
 */
export function binaryLoop(
  f: (x: number, y: number) => number,
  a: CpuArray,
  aShape: readonly number[],
  b: CpuArray,
  bShape: readonly number[],
  dst: CpuArray,
  shape: readonly number[],
): void {
  const n = dst.length;
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

/** Broadcast-aware application of a compiled binary op. */
function applyBinary(
  op: { loop: BinaryLoop; f: (x: number, y: number) => number },
  a: CpuArray,
  aShape: readonly number[],
  b: CpuArray,
  bShape: readonly number[],
  dst: CpuArray,
  shape: readonly number[],
): void {
  const n = dst.length;
  if (n === 0) return;
  const mode = modeOf(aShape, a.length, bShape, b.length, shape, n);
  if (mode >= 0) op.loop(a, b, dst, n, mode, shape[shape.length - 1] ?? 1);
  else binaryLoop(op.f, a, aShape, b, bShape, dst, shape);
}

/** Registers the elementwise kernels (unary, binary, comparisons, where, cast). */
export function registerElementwise(ctx: CpuContext): void {
  for (const [op, expr] of Object.entries(UNARY)) {
    const loop = unaryLoop(expr);
    ctx.kernel(op, ([x], attrs) => {
      const dst = ctx.alloc(x.dtype, x.size, false);
      loop(arr(x), dst, x.size, (attrs.p as number) ?? 0, (attrs.threshold as number) ?? 0);
      return out(dst, x.shape, x.dtype);
    });
  }
  for (const [op, expr] of Object.entries(BINARY)) {
    const isCmp = COMPARISONS.has(op);
    const compiled = binaryLoopOf(expr);
    ctx.kernel(op, ([a, b], attrs) => {
      const shape = attrs.shape as number[];
      const dtype: DType = isCmp ? 'float32' : a.dtype;
      const size = shape.reduce((p, d) => p * d, 1);
      const dst = ctx.alloc(dtype, size, false);
      // int32 arithmetic wraps like C (the Int32Array store truncates to 32 bits).
      applyBinary(compiled, arr(a), a.shape, arr(b), b.shape, dst, shape);
      return out(dst, shape, dtype);
    });
  }
  // relu's gradient in one pass: dy where x > 0 (NaN in x gives 0, as the composition's mask).
  const reluGradLoop = binaryLoopOf('x * (y > 0)');
  ctx.kernel('reluGrad', ([dy, x]) => {
    const dst = ctx.alloc(dy.dtype, dy.size, false);
    applyBinary(reluGradLoop, arr(dy), dy.shape, arr(x), x.shape, dst, dy.shape);
    return out(dst, dy.shape, dy.dtype);
  });
  // relu(x + b) with a row bias in one pass (the SAE encoder's bias and activation).
  const biasReluLoop = binaryLoopOf('x + y === -Infinity ? 0 : (x + y) * (x + y > 0)');
  ctx.kernel('biasRelu', ([x, b]) => {
    const dst = ctx.alloc(x.dtype, x.size, false);
    applyBinary(biasReluLoop, arr(x), x.shape, arr(b), b.shape, dst, x.shape);
    return out(dst, x.shape, x.dtype);
  });
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
