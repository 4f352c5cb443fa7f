import type { DType } from '@dictlearn/core';
import { broadcastStrides } from '@dictlearn/core';
import { arr, type CpuArray, type CpuContext, out } from './context.js';
import { DENSE_MIN_ELEMENTS, isDenseBinary, isDenseUnary } from './dense-wasm.js';

/** A unary elementwise op on one value; `p` is pow's exponent, `t` step's threshold. */
type UnaryFn = (x: number, p: number, t: number) => number;
/** A binary elementwise op on one pair of values. */
type BinaryFn = (x: number, y: number) => number;

/**
 * Every elementwise op twice, side by side: as an expression over `x` (and `y`; attributes
 * `p` and `t`) that {@link unaryLoop} and {@link binaryLoopOf} compile into one loop per op,
 * and as a closure computing the same value. Generated loops are monomorphic: a shared loop
 * calling `f(x, y)` through a function value runs several times slower because V8 cannot
 * inline a call site that sees dozens of functions. The closures serve where code generation
 * is forbidden (a content-security policy without 'unsafe-eval') and for broadcasts the
 * generated loops do not cover; the conformance suite runs a closures-only backend
 * (`codegen: false`) so the two columns cannot drift apart.
 */
const UNARY = {
  neg: ['-x', (x) => -x],
  abs: ['Math.abs(x)', (x) => Math.abs(x)],
  // Branch-free forms where the data decide the branch (random signs mispredict ~50%, which
  // measured 4-5x slower); the remaining conditions (NaN, −Inf) are rare, so they predict well.
  sign: ['x !== x ? x : (x > 0) - (x < 0)', (x) => (Number.isNaN(x) ? x : +(x > 0) - +(x < 0))],
  square: ['x * x', (x) => x * x],
  sqrt: ['Math.sqrt(x)', (x) => Math.sqrt(x)],
  exp: ['Math.exp(x)', (x) => Math.exp(x)],
  log: ['Math.log(x)', (x) => Math.log(x)],
  pow: ['Math.pow(x, p)', (x, p) => x ** p],
  relu: ['x === -Infinity ? 0 : x * (x > 0)', (x) => (x === -Infinity ? 0 : x * +(x > 0))], // NaN · 0 stays NaN
  step: ['x !== x ? x : +(x > t)', (x, _p, t) => (Number.isNaN(x) ? x : +(x > t))],
} satisfies Record<string, readonly [string, UnaryFn]>;

const BINARY = {
  add: ['x + y', (x, y) => x + y],
  sub: ['x - y', (x, y) => x - y],
  mul: ['x * y', (x, y) => x * y],
  div: ['x / y', (x, y) => x / y],
  maximum: ['Math.max(x, y)', (x, y) => Math.max(x, y)], // Math.max propagates NaN
  minimum: ['Math.min(x, y)', (x, y) => Math.min(x, y)],
  greater: ['+(x > y)', (x, y) => +(x > y)],
  greaterEqual: ['+(x >= y)', (x, y) => +(x >= y)],
  less: ['+(x < y)', (x, y) => +(x < y)],
  lessEqual: ['+(x <= y)', (x, y) => +(x <= y)],
  equal: ['+(x === y)', (x, y) => +(x === y)],
  notEqual: ['+(x !== y)', (x, y) => +(x !== y)],
} satisfies Record<string, readonly [string, BinaryFn]>;

/** relu's gradient in one pass: dy where x > 0 (NaN in x gives 0, as the composition's mask). */
const RELU_GRAD: readonly [string, BinaryFn] = ['x * (y > 0)', (x, y) => x * +(y > 0)];
/** relu(x + b) with a row bias in one pass (the SAE encoder's bias and activation). */
const BIAS_RELU: readonly [string, BinaryFn] = [
  'x + y === -Infinity ? 0 : (x + y) * (x + y > 0)',
  (x, y) => (x + y === -Infinity ? 0 : (x + y) * +(x + y > 0)),
];

const COMPARISONS = new Set(['greater', 'greaterEqual', 'less', 'lessEqual', 'equal', 'notEqual']);

type Arr = CpuArray;
/** A unary loop: dst[i] = f(a[i]) for i < n. */
type UnaryLoop = (a: Arr, dst: Arr, n: number, p: number, t: number) => void;
/**
 * A binary loop. `mode` says how the operands line up with the output (n elements, rows of
 * `last`): 0 same size, 1 b scalar, 2 a scalar, 3 b one row, 4 a one row, 5 b one value per
 * row, 6 a one value per row.
 */
type BinaryLoop = (a: Arr, b: Arr, dst: Arr, n: number, mode: number, last: number) => void;
/** A compiled binary op: the loop over the common modes and the closure for the general case. */
interface BinaryOp {
  loop: BinaryLoop;
  f: BinaryFn;
}

let evalAllowed: boolean | undefined;

/**
 * Whether this runtime allows `new Function`, probed once: a page whose content-security
 * policy lacks 'unsafe-eval' makes it throw an EvalError, and then every backend uses closures.
 */
export function codegenAllowed(): boolean {
  if (evalAllowed === undefined) {
    try {
      evalAllowed = new Function('return 1')() === 1;
    } catch {
      evalAllowed = false;
    }
  }
  return evalAllowed;
}

function unaryLoop([expr, f]: readonly [string, UnaryFn], codegen: boolean): UnaryLoop {
  if (codegen) {
    const body = `for (let i = 0; i < n; i++) { const x = a[i]; dst[i] = ${expr}; }`;
    return new Function('a', 'dst', 'n', 'p', 't', body) as UnaryLoop;
  }
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

function binaryLoopOf([expr, f]: readonly [string, BinaryFn], codegen: boolean): BinaryOp {
  if (codegen) {
    const code = BINARY_TEMPLATE.replaceAll('EXPR', expr);
    return { f, loop: new Function('a', 'b', 'dst', 'n', 'mode', 'last', code) as BinaryLoop };
  }
  // The same modes as the template, calling the closure (no code generation).
  return {
    f,
    loop: (a, b, dst, n, mode, last) => {
      switch (mode) {
        case 0:
          for (let i = 0; i < n; i++) dst[i] = f(a[i], b[i]);
          return;
        case 1:
          for (let i = 0; i < n; i++) dst[i] = f(a[i], b[0]);
          return;
        case 2:
          for (let i = 0; i < n; i++) dst[i] = f(a[0], b[i]);
          return;
        case 3:
          for (let i = 0; i < n; i += last) for (let j = 0; j < last; j++) dst[i + j] = f(a[i + j], b[j]);
          return;
        case 4:
          for (let i = 0; i < n; i += last) for (let j = 0; j < last; j++) dst[i + j] = f(a[j], b[i + j]);
          return;
        case 5:
          for (let i = 0, r = 0; i < n; i += last, r++)
            for (let j = 0; j < last; j++) dst[i + j] = f(a[i + j], b[r]);
          return;
        case 6:
          for (let i = 0, r = 0; i < n; i += last, r++)
            for (let j = 0; j < last; j++) dst[i + j] = f(a[r], b[i + j]);
          return;
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
  op: BinaryOp,
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
  const codegen = ctx.codegen;
  for (const op of Object.keys(UNARY) as (keyof typeof UNARY)[]) {
    const loop = unaryLoop(UNARY[op], codegen);
    const simd = isDenseUnary(op) ? op : undefined;
    ctx.kernel(op, ([x], attrs) => {
      const dst = ctx.alloc(x.dtype, x.size, false);
      if (simd && x.size >= DENSE_MIN_ELEMENTS) {
        const a = arr(x);
        if (ctx.dense(a, dst)?.unary(simd, a as Float32Array, dst as Float32Array, x.size))
          return out(dst, x.shape, x.dtype);
      }
      const { p = 0, threshold = 0 } = attrs as { p?: number; threshold?: number };
      loop(arr(x), dst, x.size, p, threshold);
      return out(dst, x.shape, x.dtype);
    });
  }
  for (const op of Object.keys(BINARY) as (keyof typeof BINARY)[]) {
    const isCmp = COMPARISONS.has(op);
    const compiled = binaryLoopOf(BINARY[op], codegen);
    const simd = isDenseBinary(op) ? op : undefined;
    ctx.kernel(op, ([a, b], attrs) => {
      const shape = attrs.shape;
      const dtype: DType = isCmp ? 'float32' : a.dtype;
      const size = shape.reduce((p, d) => p * d, 1);
      // in place over a (add's inPlace): a has the output's shape, so each element is read before
      // it is written, by the SIMD loop and the TypeScript one alike
      const over = (attrs as { inPlace?: boolean }).inPlace && a.size === size && a.dtype === dtype;
      const dst = over ? arr(a) : ctx.alloc(dtype, size, false);
      if (simd && size >= DENSE_MIN_ELEMENTS) {
        const [A, B] = [arr(a), arr(b)];
        const mode = modeOf(a.shape, A.length, b.shape, B.length, shape, size);
        const last = shape[shape.length - 1] ?? 1;
        const f = ctx.dense(A, B, dst);
        if (f?.binary(simd, A as Float32Array, B as Float32Array, dst as Float32Array, size, mode, last))
          return out(dst, shape, dtype);
      }
      // int32 arithmetic wraps like C (the Int32Array store truncates to 32 bits).
      applyBinary(compiled, arr(a), a.shape, arr(b), b.shape, dst, shape);
      return out(dst, shape, dtype);
    });
  }
  // mul(sub(a, b), s) in one output: the difference goes into dst, then dst·s over it, each
  // rounded as the sub and mul kernels round it
  ctx.kernel('scaledDifference', ([a, b, s], attrs) => {
    const [A, B, S] = [arr(a), arr(b), arr(s)];
    const n = a.size;
    // in place over a: element i of a is read before it is written, in both loops
    const dst = attrs.inPlace ? A : ctx.alloc(a.dtype, n, false);
    const f = n >= DENSE_MIN_ELEMENTS ? ctx.dense(A, B, S, dst) : undefined;
    const [a32, d32] = [A as Float32Array, dst as Float32Array];
    if (
      f?.binary('sub', a32, B as Float32Array, d32, n, 0, n) &&
      f.binary('mul', d32, S as Float32Array, d32, n, 1, n)
    )
      return out(dst, a.shape, a.dtype);
    const round = dst instanceof Float32Array ? Math.fround : (v: number) => v;
    const scale = S[0];
    for (let i = 0; i < n; i++) dst[i] = round(round(A[i] - B[i]) * scale);
    return out(dst, a.shape, a.dtype);
  });
  const reluGradLoop = binaryLoopOf(RELU_GRAD, codegen);
  ctx.kernel('reluGrad', ([dy, x]) => {
    const dst = ctx.alloc(dy.dtype, dy.size, false);
    applyBinary(reluGradLoop, arr(dy), dy.shape, arr(x), x.shape, dst, dy.shape);
    return out(dst, dy.shape, dy.dtype);
  });
  const biasReluLoop = binaryLoopOf(BIAS_RELU, codegen);
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
