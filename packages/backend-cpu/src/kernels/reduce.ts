import { stridesOf as strides } from '@dictlearn/core';
import { arr, type CpuArray, type CpuContext, out } from './context.js';
import { DENSE_MIN_ELEMENTS } from './dense-wasm.js';

type Combine = 'sum' | 'max' | 'min';

/**
 * Reduces `src` (shape `shape`) over `axes` into `dst`. Sums accumulate in float64, so the
 * float32 result is the correctly rounded sum more often than numpy's pairwise float32 sum.
 * Max/min propagate NaN.
 */
function reduceInto(
  src: CpuArray,
  shape: readonly number[],
  axes: readonly number[],
  kind: Combine,
  dst: CpuArray,
  ctx: CpuContext,
): void {
  const rank = shape.length;
  const reduced = new Array<boolean>(rank).fill(false);
  for (const a of axes) reduced[a] = true;
  // Output strides over the input's axes: 0 on reduced axes.
  const keptShape = shape.filter((_, i) => !reduced[i]);
  const ks = strides(keptShape);
  const os: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) os.push(reduced[i] ? 0 : ks[k++]);
  const acc = new Float64Array(dst.length);
  const init = kind === 'sum' ? 0 : kind === 'max' ? -Infinity : Infinity;
  acc.fill(init);
  const n = src.length;
  // Fast path: reducing a trailing block (e.g. sum over features of [B, F]).
  let suffix = true;
  for (let i = 0; i < rank; i++) if (reduced[i] !== i >= rank - axes.length) suffix = false;
  const inner = axes.reduce((p, a) => p * shape[a], 1);
  // float32 sums in WebAssembly SIMD: the whole array, or over leading axes (float64 lanes)
  const simd = kind === 'sum' && n >= DENSE_MIN_ELEMENTS ? ctx.dense(src) : undefined;
  if (simd && acc.length === 1) {
    const s = simd.sum(src as Float32Array, n);
    if (s !== undefined) {
      dst[0] = s;
      return;
    }
  }
  if (
    simd &&
    prefix(reduced, axes.length) &&
    simd.colsum(src as Float32Array, { acc }, n / acc.length, acc.length)
  ) {
    dst.set(acc);
    return;
  }
  if (suffix && inner > 0) {
    for (let o = 0; o < acc.length; o++) {
      let s = init;
      const base = o * inner;
      if (kind === 'sum') for (let j = 0; j < inner; j++) s += src[base + j];
      else if (kind === 'max') for (let j = 0; j < inner; j++) s = combineMax(s, src[base + j]);
      else for (let j = 0; j < inner; j++) s = combineMin(s, src[base + j]);
      acc[o] = s;
    }
  } else if (prefix(reduced, axes.length)) {
    // Reducing leading axes (a bias gradient, or which features fired in a batch [B, F]):
    // combine whole rows, in memory order.
    const width = acc.length;
    if (kind === 'sum') {
      // Four rows per sweep: a quarter of the loads and stores of the accumulator row.
      let i = 0;
      for (; i + 4 * width <= n; i += 4 * width) {
        const i1 = i + width;
        const i2 = i1 + width;
        const i3 = i2 + width;
        for (let j = 0; j < width; j++) acc[j] += src[i + j] + src[i1 + j] + src[i2 + j] + src[i3 + j];
      }
      for (; i < n; i += width) for (let j = 0; j < width; j++) acc[j] += src[i + j];
    } else if (kind === 'max')
      for (let i = 0; i < n; i += width)
        for (let j = 0; j < width; j++) acc[j] = Math.max(acc[j], src[i + j]);
    else
      for (let i = 0; i < n; i += width)
        for (let j = 0; j < width; j++) acc[j] = Math.min(acc[j], src[i + j]);
  } else {
    const idx = new Array<number>(rank).fill(0);
    let o = 0;
    for (let i = 0; i < n; i++) {
      const v = src[i];
      if (kind === 'sum') acc[o] += v;
      else if (kind === 'max') acc[o] = combineMax(acc[o], v);
      else acc[o] = combineMin(acc[o], v);
      for (let ax = rank - 1; ax >= 0; ax--) {
        idx[ax]++;
        o += os[ax];
        if (idx[ax] < shape[ax]) break;
        o -= os[ax] * shape[ax];
        idx[ax] = 0;
      }
    }
  }
  dst.set(acc);
}

/** Whether the reduced axes are exactly the first `count` axes. */
function prefix(reduced: readonly boolean[], count: number): boolean {
  return reduced.every((r, i) => r === i < count);
}

function combineMax(a: number, b: number): number {
  return Math.max(a, b);
}
function combineMin(a: number, b: number): number {
  return Math.min(a, b);
}

/** Registers sum, max, min and argmax. */
export function registerReduce(ctx: CpuContext): void {
  // sum(square(sub(a, b))) without its two temporaries: the same roundings and, where the sum
  // kernel runs in WebAssembly (float32, n ≥ DENSE_MIN_ELEMENTS), the same order
  ctx.kernel('sumSquaredDifference', ([a, b]) => {
    const [x, y] = [arr(a), arr(b)];
    const n = x.length;
    const simd = n >= DENSE_MIN_ELEMENTS ? ctx.dense(x, y) : undefined;
    let s = simd?.sumSquaredDifference(x as Float32Array, y as Float32Array, n);
    if (s === undefined) {
      const round = x instanceof Float64Array ? (v: number) => v : Math.fround;
      s = 0;
      for (let i = 0; i < n; i++) {
        const d = round(x[i] - y[i]);
        s += round(d * d);
      }
    }
    const dst = ctx.alloc(a.dtype, 1, false);
    dst[0] = s;
    return out(dst, [], a.dtype);
  });
  for (const kind of ['sum', 'max', 'min'] as const) {
    ctx.kernel(kind, ([x], attrs) => {
      const shape = attrs.shape as number[];
      const dst = ctx.alloc(
        x.dtype,
        shape.reduce((p, d) => p * d, 1),
      );
      reduceInto(arr(x), x.shape, attrs.axes as number[], kind, dst, ctx);
      return out(dst, shape, x.dtype);
    });
  }
  ctx.kernel('argmax', ([x], attrs) => {
    const axis = attrs.axis as number;
    const shape = attrs.shape as number[];
    const src = arr(x);
    const n = x.shape[axis];
    const innerSize = x.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
    const outerSize = x.shape.slice(0, axis).reduce((p, d) => p * d, 1);
    const dst = ctx.alloc('int32', outerSize * innerSize);
    for (let o = 0; o < outerSize; o++) {
      for (let i = 0; i < innerSize; i++) {
        const base = o * n * innerSize + i;
        let best = 0;
        let bv = src[base];
        for (let j = 1; j < n && !Number.isNaN(bv); j++) {
          const v = src[base + j * innerSize];
          // strictly greater keeps the lower index on ties; the first NaN wins outright
          if (v > bv || Number.isNaN(v)) {
            best = j;
            bv = v;
          }
        }
        dst[o * innerSize + i] = best;
      }
    }
    return out(dst, shape, 'int32');
  });
}
