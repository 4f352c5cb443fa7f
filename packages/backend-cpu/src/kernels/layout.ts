import { broadcastStrides, stridesOf as strides } from '@dictlearn/core';
import { arr, type CpuContext, out } from './context.js';
import { DENSE_MIN_ELEMENTS, denseFor } from './dense-wasm.js';

/**
 * Fills `dst` (row-major, shape `shape`) from `src` read with per-axis strides `s`: a transpose
 * when the strides are permuted, a broadcast when some are 0.
 */
function gatherStrided(
  src: ArrayLike<number>,
  s: readonly number[],
  dst: { [i: number]: number; length: number },
  shape: readonly number[],
): void {
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let o = 0;
  for (let i = 0; i < dst.length; i++) {
    dst[i] = src[o];
    for (let ax = rank - 1; ax >= 0; ax--) {
      idx[ax]++;
      o += s[ax];
      if (idx[ax] < shape[ax]) break;
      o -= s[ax] * shape[ax];
      idx[ax] = 0;
    }
  }
}

/** Registers transpose, slice, pad, concat and broadcastTo (copies between layouts). */
export function registerLayout(ctx: CpuContext): void {
  ctx.kernel('transpose', ([x], attrs) => {
    const perm = attrs.perm as number[];
    const shape = attrs.shape as number[];
    const src = arr(x);
    const dst = ctx.alloc(x.dtype, x.size, false);
    const rank = shape.length;
    if (rank === 2 && perm[0] === 1) {
      const [r, c] = x.shape;
      if (
        x.size >= DENSE_MIN_ELEMENTS &&
        denseFor(src, dst)?.transpose(src as Float32Array, r, c, dst as Float32Array)
      )
        return out(dst, shape, x.dtype);
      // Tiled so both reads and writes stay in cache, each tile written row by row: writing
      // down columns of a power-of-two-wide output (rows 16 KiB apart at r = 4096) lands every
      // store in the same cache set, which measured five times slower.
      const T = 64;
      for (let j0 = 0; j0 < c; j0 += T) {
        const j1 = Math.min(j0 + T, c);
        for (let i0 = 0; i0 < r; i0 += T) {
          const i1 = Math.min(i0 + T, r);
          for (let j = j0; j < j1; j++) {
            const o = j * r;
            for (let i = i0; i < i1; i++) dst[o + i] = src[i * c + j];
          }
        }
      }
      return out(dst, shape, x.dtype);
    }
    const inStrides = strides(x.shape);
    gatherStrided(
      src,
      perm.map((p) => inStrides[p]),
      dst,
      shape,
    );
    return out(dst, shape, x.dtype);
  });

  // Copies a block of `src` (shape srcShape) starting at srcBegin into dst (shape dstShape) at dstBegin.
  const copyBlock = (
    src: ArrayLike<number>,
    srcShape: readonly number[],
    srcBegin: readonly number[],
    dst: { [i: number]: number },
    dstShape: readonly number[],
    dstBegin: readonly number[],
    block: readonly number[],
  ): void => {
    const rank = block.length;
    if (block.some((d) => d === 0)) return;
    const ss = strides(srcShape);
    const ds = strides(dstShape);
    let so = srcBegin.reduce((p, b, i) => p + b * ss[i], 0);
    let dO = dstBegin.reduce((p, b, i) => p + b * ds[i], 0);
    const last = rank - 1;
    const rowLen = rank === 0 ? 1 : block[last];
    const idx = new Array<number>(rank).fill(0);
    const rows = rank === 0 ? 1 : block.slice(0, last).reduce((p, d) => p * d, 1);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < rowLen; j++) dst[dO + j] = src[so + j];
      for (let ax = last - 1; ax >= 0; ax--) {
        idx[ax]++;
        so += ss[ax];
        dO += ds[ax];
        if (idx[ax] < block[ax]) break;
        so -= ss[ax] * block[ax];
        dO -= ds[ax] * block[ax];
        idx[ax] = 0;
      }
    }
  };

  ctx.kernel('slice', ([x], attrs) => {
    const shape = attrs.shape as number[];
    const dst = ctx.alloc(
      x.dtype,
      shape.reduce((p, d) => p * d, 1),
    );
    copyBlock(
      arr(x),
      x.shape,
      attrs.begin as number[],
      dst,
      shape,
      shape.map(() => 0),
      shape,
    );
    return out(dst, shape, x.dtype);
  });
  ctx.kernel('pad', ([x], attrs) => {
    const shape = attrs.shape as number[];
    const paddings = attrs.paddings as [number, number][];
    const dst = ctx.alloc(
      x.dtype,
      shape.reduce((p, d) => p * d, 1),
    );
    copyBlock(
      arr(x),
      x.shape,
      x.shape.map(() => 0),
      dst,
      shape,
      paddings.map((p) => p[0]),
      x.shape,
    );
    return out(dst, shape, x.dtype);
  });
  ctx.kernel('concat', (xs, attrs) => {
    const axis = attrs.axis as number;
    const shape = attrs.shape as number[];
    const dst = ctx.alloc(
      xs[0].dtype,
      shape.reduce((p, d) => p * d, 1),
    );
    let offset = 0;
    for (const x of xs) {
      const begin = shape.map((_, i) => (i === axis ? offset : 0));
      copyBlock(
        arr(x),
        x.shape,
        x.shape.map(() => 0),
        dst,
        shape,
        begin,
        x.shape,
      );
      offset += x.shape[axis];
    }
    return out(dst, shape, xs[0].dtype);
  });
  ctx.kernel('broadcastTo', ([x], attrs) => {
    const shape = attrs.shape as number[];
    const src = arr(x);
    const dst = ctx.alloc(
      x.dtype,
      shape.reduce((p, d) => p * d, 1),
      false,
    );
    // Common cases: a scalar (fill) or one row repeated (copy the row along the buffer).
    if (src.length === 1) return out(dst.fill(src[0]), shape, x.dtype);
    const last = shape[shape.length - 1];
    if (src.length === last && x.shape[x.shape.length - 1] === last) {
      for (let i = 0; i < dst.length; i += last) dst.set(src, i);
      return out(dst, shape, x.dtype);
    }
    gatherStrided(src, broadcastStrides(x.shape, shape), dst, shape);
    return out(dst, shape, x.dtype);
  });
}
