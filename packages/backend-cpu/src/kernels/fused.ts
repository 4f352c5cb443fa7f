/**
 * Fused kernels of the ReLU encoder with its L1 penalty (the Standard SAE's step): the passes
 * over the [B, F] activations that autograd would make one op at a time, made once.
 *
 * - `linearBiasReluSum(x, W, b)` → [f, Σ_b f]: the encoder with its column sums (the L1 penalty
 *   and the firing activity), summed in the epilogue pass that adds the bias and applies ReLU.
 * - `reluGradRowSum(dF, row, f)` → [dPre, Σ_b dPre]: the encoder's backward in one pass,
 *   dPre = (dF + row)·[f > 0] with the penalty's gradient `row` broadcast down the batch, and
 *   the bias gradient as its column sums.
 *
 * Each computes exactly what its reference composition in core computes (linearBiasRelu then
 * sum; add, reluGrad then sum), in the same float32 roundings; column sums accumulate in float64
 * in blocks of rows (`COLUMN_BLOCK_ROWS`), as the sum kernel's WebAssembly loop does, which lets
 * the backend split them over its threads with the same bits.
 *
 * @module
 */
import type { Attrs, KernelOutput, KernelTensor } from '@dictlearn/core';
import { arr, type CpuArray, type CpuContext, type FloatArray, out } from './context.js';
import { COLUMN_BLOCK_ROWS, DENSE_MIN_ELEMENTS } from './dense-wasm.js';

/**
 * acc[j] += the float64 column sums of what `row(o, sums)` writes, `rows` rows of `cols`, in
 * blocks of COLUMN_BLOCK_ROWS rows (each block summed from 0, the blocks added in order: the
 * order of the WebAssembly loops). `row(o, sums)` computes the row at offset o and adds it into sums.
 */
function blockedColumnSums(
  rows: number,
  cols: number,
  acc: Float64Array,
  row: (o: number, sums: Float64Array) => void,
): void {
  const sums = new Float64Array(cols);
  for (let b = 0; b < rows; b += COLUMN_BLOCK_ROWS) {
    sums.fill(0);
    const end = Math.min(rows, b + COLUMN_BLOCK_ROWS);
    for (let r = b; r < end; r++) row(r * cols, sums);
    for (let j = 0; j < cols; j++) acc[j] += sums[j];
  }
}

/**
 * In place over c [rows, cols]: c ← relu(c + bias) (−∞ gives 0, NaN stays NaN, a negative value
 * −0, as the linearBiasRelu kernel), and acc[j] += Σ_r c[r, j] (float64, in blocks of rows).
 */
export function biasReluColsum(
  ctx: CpuContext,
  c: FloatArray,
  bias: FloatArray,
  rows: number,
  cols: number,
  acc: Float64Array,
): void {
  if (c.length >= DENSE_MIN_ELEMENTS) {
    const simd = ctx.dense(c, bias);
    if (simd?.biasReluColsum(c as Float32Array, bias as Float32Array, { acc }, rows, cols)) return;
  }
  blockedColumnSums(rows, cols, acc, (o, sums) => {
    for (let j = 0; j < cols; j++) {
      const v = c[o + j] + bias[j];
      c[o + j] = v === Number.NEGATIVE_INFINITY ? 0 : v * +(v > 0);
      sums[j] += c[o + j];
    }
  });
}

/**
 * dst = (dy + row)·[y > 0] over [rows, cols] (the float32 sum rounded first, as the add kernel
 * stores it), and acc[j] += Σ_r dst[r, j] (float64, in blocks of rows). `y` may be given as
 * {@link reluMask}'s bits of y instead (for a y whose memory dst or dy now is): the same values.
 */
export function reluGradRowColsum(
  ctx: CpuContext,
  dy: FloatArray,
  row: FloatArray,
  y: FloatArray | Uint8Array,
  dst: FloatArray,
  rows: number,
  cols: number,
  acc: Float64Array,
): void {
  const bits = y instanceof Uint8Array;
  if (dst.length >= DENSE_MIN_ELEMENTS) {
    const simd = bits ? ctx.dense(dy, row, dst) : ctx.dense(dy, row, y, dst);
    const args = [dy as Float32Array, row as Float32Array] as const;
    const [d, sums] = [dst as Float32Array, { acc }];
    if (
      simd &&
      (bits
        ? simd.reluGradRowMaskColsum(...args, y, d, sums, rows, cols)
        : simd.reluGradRowColsum(...args, y as Float32Array, d, sums, rows, cols))
    )
      return;
  }
  const round = dst instanceof Float32Array ? Math.fround : (v: number) => v;
  const on = bits ? (i: number) => (y[i >> 2] >> (i & 3)) & 1 : (i: number) => +(y[i] > 0);
  blockedColumnSums(rows, cols, acc, (o, sums) => {
    for (let j = 0; j < cols; j++) {
      dst[o + j] = round(dy[o + j] + row[j]) * on(o + j);
      sums[j] += dst[o + j];
    }
  });
}

/**
 * mask[i >> 2] bit (i & 3) = [y[i] > 0] for the n elements of y (the bits of the dense loops'
 * reluMask, for any n): what the ReLU's backward needs of y once y's memory is reused.
 */
export function reluMask(ctx: CpuContext, y: FloatArray, mask: Uint8Array): void {
  const n = y.length;
  if (n >= DENSE_MIN_ELEMENTS && n % 4 === 0 && ctx.dense(y)?.reluMask(y as Float32Array, mask, n)) return;
  mask.fill(0);
  for (let i = 0; i < n; i++) mask[i >> 2] |= +(y[i] > 0) << (i & 3);
}

/** Column sums held in float64, stored at the backend's precision. */
function stored(ctx: CpuContext, acc: Float64Array): CpuArray {
  const s = ctx.alloc('float32', acc.length, false);
  s.set(acc);
  return s;
}

/**
 * Registers the fused kernels. `product` is the backend's matmul (fast path or TypeScript),
 * whose fresh output the encoder's epilogue rewrites in place.
 */
export function registerFused(
  ctx: CpuContext,
  product: (a: KernelTensor, b: KernelTensor, attrs: Attrs, into?: FloatArray) => KernelOutput,
): void {
  const encode = (x: KernelTensor, w: KernelTensor, bias: KernelTensor, transB: boolean, shape: number[]) => {
    const o = product(x, w, { transA: false, transB, shape });
    const [rows, cols] = shape;
    const acc = new Float64Array(cols);
    biasReluColsum(ctx, o.data as FloatArray, arr(bias) as FloatArray, rows, cols, acc);
    return [out(o.data as CpuArray, shape, 'float32'), out(stored(ctx, acc), [cols], 'float32')];
  };
  ctx.kernel('linearBiasReluSum', ([x, w, bias], attrs) => encode(x, w, bias, attrs.transB, attrs.shape));
  ctx.kernel('linearBiasReluSumDecode', ([x, w, bias, wDec, bDec], attrs) => {
    const [f, sums] = encode(x, w, bias, attrs.transB, attrs.shape);
    const fView: KernelTensor = {
      data: f.data,
      shape: f.shape,
      dtype: 'float32',
      size: f.shape[0] * f.shape[1],
    };
    const rows = attrs.shape[0];
    const [n, b] = [wDec.shape[1], arr(bDec) as FloatArray];
    const xhat = product(fView, wDec, { transA: false, transB: false, shape: [rows, n] });
    // + b_dec in place over the fresh product, rounded as the add kernel rounds it
    const c = xhat.data as FloatArray;
    const simd = c.length >= DENSE_MIN_ELEMENTS ? ctx.dense(c, b) : undefined;
    if (!simd?.binary('add', c as Float32Array, b as Float32Array, c as Float32Array, c.length, 3, n)) {
      for (let o = 0; o < c.length; o += n) for (let j = 0; j < n; j++) c[o + j] += b[j];
    }
    return [f, sums, xhat];
  });
  ctx.kernel('reluDecodeGrad', ([dDecoded, wDec, row, f], attrs) => {
    const [rows, cols] = f.shape;
    const y = arr(f) as FloatArray;
    const r = arr(row) as FloatArray;
    const acc = new Float64Array(cols);
    const sums = () => out(stored(ctx, acc), [cols], f.dtype);
    const attrsOf = { transA: false, transB: true, shape: [rows, cols] };
    if (attrs.inPlace) {
      // f is ours: keep its ReLU mask (a bit per element), then the product goes over f
      const mask = new Uint8Array(Math.ceil(y.length / 4));
      reluMask(ctx, y, mask);
      product(dDecoded, wDec, attrsOf, y);
      reluGradRowColsum(ctx, y, r, mask, y, rows, cols, acc);
      return [out(y, f.shape, f.dtype), sums()];
    }
    const o = product(dDecoded, wDec, attrsOf).data as FloatArray;
    reluGradRowColsum(ctx, o, r, y, o, rows, cols, acc);
    return [out(o, f.shape, f.dtype), sums()];
  });
  ctx.kernel('reluGradRowSum', ([dy, row, y], attrs) => {
    const [rows, cols] = dy.shape.length === 2 ? dy.shape : [1, dy.size];
    // in place: each element is read before it is written, in the TypeScript and the SIMD loop
    const dst = attrs.inPlace ? (arr(dy) as FloatArray) : (ctx.alloc(dy.dtype, dy.size, false) as FloatArray);
    const acc = new Float64Array(cols);
    reluGradRowColsum(
      ctx,
      arr(dy) as FloatArray,
      arr(row) as FloatArray,
      arr(y) as FloatArray,
      dst,
      rows,
      cols,
      acc,
    );
    return [out(dst, dy.shape, dy.dtype), out(stored(ctx, acc), [cols], dy.dtype)];
  });
}
