import { DictlearnError } from '@dictlearn/core';
import { arr, type CpuContext, out } from './context.js';

function checkIndex(op: string, i: number, n: number, at: number): void {
  if (!(i >= 0 && i < n)) {
    throw new DictlearnError(op, `index ${i} at position ${at} is out of range [0, ${n})`);
  }
}

/** True when value a (at index ia) ranks before b (at ib) in top-k order: larger first, NaN largest, ties to the lower index. */
function before(a: number, ia: number, b: number, ib: number): boolean {
  const na = Number.isNaN(a);
  const nb = Number.isNaN(b);
  if (na || nb) return na && nb ? ia < ib : na;
  return a > b || (a === b && ia < ib);
}

/** Registers gather/scatter (rows, columns, along the last axis) and top-k. */
export function registerIndexing(ctx: CpuContext): void {
  ctx.kernel('gatherRows', ([x, indices], attrs) => {
    const shape = attrs.shape as number[];
    const src = arr(x);
    const idx = arr(indices);
    const row = x.shape.slice(1).reduce((p, d) => p * d, 1);
    const dst = ctx.alloc(x.dtype, idx.length * row);
    for (let r = 0; r < idx.length; r++) {
      checkIndex('gatherRows', idx[r], x.shape[0], r);
      dst.set(src.subarray(idx[r] * row, idx[r] * row + row), r * row);
    }
    return out(dst, shape, x.dtype);
  });
  ctx.kernel('scatterAddRows', ([x, indices, updates]) => {
    const dst = ctx.alloc(x.dtype, x.size);
    dst.set(arr(x));
    const idx = arr(indices);
    const upd = arr(updates);
    const row = x.shape.slice(1).reduce((p, d) => p * d, 1);
    for (let r = 0; r < idx.length; r++) {
      checkIndex('scatterAddRows', idx[r], x.shape[0], r);
      const o = idx[r] * row;
      for (let j = 0; j < row; j++) dst[o + j] += upd[r * row + j];
    }
    return out(dst, x.shape, x.dtype);
  });
  ctx.kernel('indexColumns', ([x, indices], attrs) => {
    const [rows, cols] = x.shape;
    const src = arr(x);
    const idx = arr(indices);
    for (let j = 0; j < idx.length; j++) checkIndex('indexColumns', idx[j], cols, j);
    const n = idx.length;
    const dst = ctx.alloc(x.dtype, rows * n);
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) dst[r * n + j] = src[r * cols + idx[j]];
    return out(dst, attrs.shape as number[], x.dtype);
  });
  ctx.kernel('gatherLast', ([x, indices], attrs) => {
    const width = x.shape[x.shape.length - 1];
    const k = indices.shape[indices.shape.length - 1];
    const src = arr(x);
    const idx = arr(indices);
    const dst = ctx.alloc(x.dtype, idx.length);
    for (let r = 0; k > 0 && r < idx.length / k; r++) {
      for (let j = 0; j < k; j++) {
        const i = idx[r * k + j];
        checkIndex('gatherLast', i, width, r * k + j);
        dst[r * k + j] = src[r * width + i];
      }
    }
    return out(dst, attrs.shape as number[], x.dtype);
  });
  ctx.kernel('scatterLast', ([indices, values], attrs) => {
    const width = attrs.width as number;
    const shape = attrs.shape as number[];
    const k = indices.shape[indices.shape.length - 1];
    const idx = arr(indices);
    const vals = arr(values);
    const dst = ctx.alloc(
      values.dtype,
      shape.reduce((p, d) => p * d, 1),
    );
    for (let r = 0; k > 0 && r < idx.length / k; r++) {
      for (let j = 0; j < k; j++) {
        const i = idx[r * k + j];
        checkIndex('scatterLast', i, width, r * k + j);
        dst[r * width + i] += vals[r * k + j];
      }
    }
    return out(dst, shape, values.dtype);
  });
  ctx.kernel('topk', ([x], attrs) => {
    const k = attrs.k as number;
    const shape = attrs.shape as number[];
    const n = x.shape[x.shape.length - 1];
    const rows = n === 0 ? 0 : x.size / n;
    const src = arr(x);
    const values = ctx.alloc('float32', rows * k);
    const indices = ctx.alloc('int32', rows * k);
    const heapIdx = new Int32Array(k);
    const order = new Int32Array(n);
    for (let r = 0; r < rows && k > 0; r++) {
      const base = r * n;
      let chosen: ArrayLike<number>;
      if (k * 16 < n) {
        // A size-k heap whose root is the worst kept element: O(n log k) for the SAE case k ≪ n.
        let size = 0;
        const worse = (p: number, q: number) => before(src[base + q], q, src[base + p], p); // p ranks after q
        const siftDown = (start: number) => {
          let i = start;
          for (;;) {
            const l = 2 * i + 1;
            const rr = l + 1;
            let w = i;
            if (l < size && worse(heapIdx[l], heapIdx[w])) w = l;
            if (rr < size && worse(heapIdx[rr], heapIdx[w])) w = rr;
            if (w === i) return;
            const t = heapIdx[i];
            heapIdx[i] = heapIdx[w];
            heapIdx[w] = t;
            i = w;
          }
        };
        for (let j = 0; j < n; j++) {
          if (size < k) {
            heapIdx[size] = j;
            let i = size++;
            while (i > 0) {
              const p = (i - 1) >> 1;
              if (!worse(heapIdx[i], heapIdx[p])) break;
              const t = heapIdx[i];
              heapIdx[i] = heapIdx[p];
              heapIdx[p] = t;
              i = p;
            }
          } else if (before(src[base + j], j, src[base + heapIdx[0]], heapIdx[0])) {
            heapIdx[0] = j;
            siftDown(0);
          }
        }
        chosen = heapIdx;
      } else {
        for (let j = 0; j < n; j++) order[j] = j;
        chosen = order;
      }
      const sorted = Array.from(chosen);
      sorted.sort((p, q) => (before(src[base + p], p, src[base + q], q) ? -1 : 1));
      for (let j = 0; j < k; j++) {
        indices[r * k + j] = sorted[j];
        values[r * k + j] = src[base + sorted[j]];
      }
    }
    return [out(values, shape, 'float32'), out(indices, shape, 'int32')];
  });
}
