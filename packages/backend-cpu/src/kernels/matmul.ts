import type { Attrs, KernelTensor } from '@dictlearn/core';
import type { FastMatmul } from '../fast/ort-matmul.js';
import { arr, type CpuContext, type FloatArray, out } from './context.js';
import { registerFused } from './fused.js';

/**
 * C = A·B for row-major A [m,k], B [k,n] into C (zeroed), in plain TypeScript: i-p-j order
 * with four rows of A at a time so each loaded row of B feeds four accumulating rows of C.
 */
export function matmulTS(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  c: FloatArray,
  m: number,
  n: number,
  k: number,
): void {
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const c0 = i * n;
    const c1 = c0 + n;
    const c2 = c1 + n;
    const c3 = c2 + n;
    for (let p = 0; p < k; p++) {
      const a0 = a[i * k + p];
      const a1 = a[(i + 1) * k + p];
      const a2 = a[(i + 2) * k + p];
      const a3 = a[(i + 3) * k + p];
      const bo = p * n;
      for (let j = 0; j < n; j++) {
        const bv = b[bo + j];
        c[c0 + j] += a0 * bv;
        c[c1 + j] += a1 * bv;
        c[c2 + j] += a2 * bv;
        c[c3 + j] += a3 * bv;
      }
    }
  }
  for (; i < m; i++) {
    const co = i * n;
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p];
      const bo = p * n;
      for (let j = 0; j < n; j++) c[co + j] += av * b[bo + j];
    }
  }
}

function transposed(src: ArrayLike<number>, rows: number, cols: number, into: FloatArray): FloatArray {
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) into[j * rows + i] = src[i * cols + j];
  return into;
}

/** Products at least this large (m·n·k) go to the fast path; below it a native call costs more than it saves. */
export const FAST_MATMUL_MIN_WORK = 32 * 32 * 32;

/** Registers matmul: the fast path for large float32 products when present, plain TS otherwise. */
export function registerMatmul(ctx: CpuContext, fast: () => FastMatmul | undefined): void {
  // The encoder: the product, then bias + ReLU in place over the fresh output (one pass, no copy).
  ctx.kernel('linearBiasRelu', ([x, w, bias], attrs) => {
    const o = product(x, w, { transA: false, transB: attrs.transB, shape: attrs.shape });
    const C = o.data as FloatArray;
    const B = arr(bias);
    const cols = (attrs.shape as number[])[1];
    for (let i = 0; i < C.length; i += cols) {
      for (let j = 0; j < cols; j++) {
        const v = C[i + j] + B[j];
        C[i + j] = v === Number.NEGATIVE_INFINITY ? 0 : v * +(v > 0);
      }
    }
    return o;
  });
  ctx.kernel('matmul', ([a, b], attrs) => product(a, b, attrs));
  registerFused(ctx, product);
  /** op(a)·op(b) into a new array, or over `into` (its old values unread) where given. */
  function product(a: KernelTensor, b: KernelTensor, attrs: Attrs, into?: FloatArray) {
    const transA = attrs.transA as boolean;
    const transB = attrs.transB as boolean;
    const shape = attrs.shape as number[];
    const batched = shape.length === 3;
    const batch = batched ? shape[0] : 1;
    const m = shape[shape.length - 2];
    const n = shape[shape.length - 1];
    const k = transA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
    const A = arr(a) as FloatArray;
    const B = arr(b) as FloatArray;
    const work = m * n * k;
    // Only float32 backends ever load a fast path.
    const f = work >= FAST_MATMUL_MIN_WORK ? fast() : undefined;
    // The native product overwrites C (beta = 0), so it needs no zeroing.
    const C = into ?? (ctx.alloc('float32', batch * m * n, !f) as FloatArray);
    if (into && !f) into.fill(0);
    if (C.length === 0 || k === 0) return out(C.fill(0), shape, 'float32');
    const strideA = a.shape.length === 3 ? m * k : 0;
    const strideB = b.shape.length === 3 ? k * n : 0;
    if (f) {
      if (strideA && strideB) {
        f.matmul(A as Float32Array, B as Float32Array, batch, m, n, k, transA, transB, C as Float32Array);
      } else {
        for (let q = 0; q < batch; q++) {
          const Aq = (A as Float32Array).subarray(q * strideA, q * strideA + m * k);
          const Bq = (B as Float32Array).subarray(q * strideB, q * strideB + k * n);
          f.matmul(
            Aq,
            Bq,
            1,
            m,
            n,
            k,
            transA,
            transB,
            (C as Float32Array).subarray(q * m * n, (q + 1) * m * n),
          );
        }
      }
      return out(C, shape, 'float32');
    }
    const Tmp = C instanceof Float64Array ? Float64Array : Float32Array;
    const aBuf = transA ? new Tmp(m * k) : undefined;
    const bBuf = transB ? new Tmp(k * n) : undefined;
    for (let q = 0; q < batch; q++) {
      let Aq: ArrayLike<number> = A.subarray(q * strideA, q * strideA + m * k);
      let Bq: ArrayLike<number> = B.subarray(q * strideB, q * strideB + k * n);
      if (aBuf) Aq = transposed(Aq, k, m, aBuf);
      if (bBuf) Bq = transposed(Bq, n, k, bBuf);
      matmulTS(Aq, Bq, C.subarray(q * m * n, (q + 1) * m * n), m, n, k);
    }
    return out(C, shape, 'float32');
  }
}
