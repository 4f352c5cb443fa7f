import { DictlearnError, type KernelTensor } from '@dictlearn/core';
import type { FastMatmul } from '../fast/ort-matmul.js';
import { arr, type CpuArray, type CpuContext, type FloatArray, out } from './context.js';
import { FAST_MATMUL_MIN_WORK, matmulTS } from './matmul.js';
import { loadSparseWasm, type SparseWasm } from './sparse-wasm.js';

/**
 * Multiply-adds from which a sparse call is split over the kernel pool's threads (a split costs
 * tens of microseconds of signalling).
 */
const POOL_MIN_WORK = 1 << 18;

/**
 * The sparse-code kernels (core's `topkEncode`, `batchTopkEncode`, `sparseDecode`, `sparseDot`,
 * `sparseOuter`). Only the encoder product is dense (the fast matmul path where there is one);
 * the top-k selection never sorts a row's F features (in WebAssembly: a threshold no top-k
 * column can miss, the few columns above it, a size-k heap over those; in TypeScript: a size-k
 * heap over the row); decode and the gradient ops touch the k chosen rows of each sample, in
 * entry order, through WebAssembly SIMD loops where the runtime allows (float32 backends; large
 * calls split over the kernel pool's threads in Node), TypeScript otherwise.
 */
export function registerSparse(ctx: CpuContext, fast: () => FastMatmul | undefined): void {
  let wasm: SparseWasm | undefined | null = null;
  const simd = (a: CpuArray): SparseWasm | undefined => {
    if (!(a instanceof Float32Array)) return undefined; // the float64 oracle stays in TypeScript
    if (wasm === null) {
      const w = loadSparseWasm();
      wasm = typeof w === 'string' ? undefined : w;
    }
    return wasm;
  };

  // The last grouping of entries, kept while its key and index arrays are alive: a step's
  // backward groups the same code by feature up to four times (the dictionary gradients of the
  // decoder and encoder, the encoder bias, the activity count). Tensor storage never changes
  // while the tensor lives, and is recycled (so dropped here) before it is reused.
  let last:
    | { keys: CpuArray; other: CpuArray | undefined; nKeys: number; k: number; n: number; g: Grouping }
    | undefined;
  ctx.onRecycle((data) => {
    if (last && (data === last.keys || data === last.other)) last = undefined;
    // operands a kernel pool keeps between calls (see SparseWasm.forget)
    if (wasm) wasm.forget(data);
  });
  const grouped = (
    keysData: Int32Array,
    keys: Int32Array,
    nKeys: number,
    otherData: Int32Array | undefined,
    other: Int32Array | undefined,
    k: number,
  ): Grouping => {
    const n = keys.length;
    if (
      last &&
      last.keys === keysData &&
      last.other === otherData &&
      last.nKeys === nKeys &&
      last.k === k &&
      last.n === n
    )
      return last.g;
    const g = groupEntries(keys, nKeys, other, k);
    last = { keys: keysData, other: otherData, nKeys, k, n, g };
    return g;
  };
  /** values[perm[q]] for each grouped position q (pooled storage: recycle it). */
  const gather = (values: FloatArray, perm: Int32Array): FloatArray => {
    const v = ctx.alloc('float32', perm.length, false) as FloatArray;
    for (let q = 0; q < perm.length; q++) v[q] = values[perm[q]];
    return v;
  };

  /** The kernel pool for a call of `work` multiply-adds: big enough that splitting it pays. */
  const poolFor = (work: number) => (work >= POOL_MIN_WORK ? ctx.pool : undefined);

  /**
   * The encoder product x·op(W) (before bias and ReLU) of B rows of x from row r0 into `into`, or
   * into a fresh array (recycle it when done).
   */
  const product = (
    x: KernelTensor,
    w: KernelTensor,
    transB: boolean,
    B: number,
    F: number,
    into?: FloatArray,
    r0 = 0,
  ): FloatArray => {
    const d = x.shape[1];
    const f = B * F * d >= FAST_MATMUL_MIN_WORK ? fast() : undefined;
    const C = into ?? (ctx.alloc('float32', B * F, !f) as FloatArray);
    if (C.length === 0) return C;
    if (d === 0 || (into && !f)) C.fill(0);
    if (d === 0) return C;
    const X = (arr(x) as FloatArray).subarray(r0 * d, (r0 + B) * d);
    const W = arr(w) as FloatArray;
    if (f) {
      f.matmul(X as Float32Array, W as Float32Array, 1, B, F, d, false, transB, C as Float32Array);
      return C;
    }
    let Wm: FloatArray = W;
    if (transB) {
      Wm = new (W instanceof Float64Array ? Float64Array : Float32Array)(d * F);
      for (let i = 0; i < F; i++) for (let j = 0; j < d; j++) Wm[j * F + i] = W[i * d + j];
    }
    matmulTS(X, Wm, C, B, F, d);
    return C;
  };

  ctx.kernel('topkEncode', ([x, w, b], attrs) => {
    const { k, transB, shape } = attrs;
    const B = x.shape[0];
    const F = b.shape[0];
    const values = ctx.alloc('float32', B * k, false) as FloatArray;
    const indices = ctx.alloc('int32', B * k, false) as Int32Array;
    if (B * k > 0) {
      const bias = arr(b) as FloatArray;
      const sel = new Selector(k);
      // SIMD selection on the product written straight into WebAssembly memory, where it can run
      const s = simd(bias);
      const done = s?.topk(
        B,
        F,
        k,
        bias as Float32Array,
        (pre, r0, rows) => product(x, w, transB, rows, F, pre, r0),
        values as Float32Array,
        indices,
        (pre, q, r) => sel.row(pre, q * F, F, bias, values, indices, r * k),
        poolFor(B * F),
      );
      if (!done) {
        const C = product(x, w, transB, B, F);
        for (let r = 0; r < B; r++) sel.row(C, r * F, F, bias, values, indices, r * k);
        ctx.recycle(C);
      }
    }
    return [out(values, shape, 'float32'), out(indices, shape, 'int32')];
  });

  ctx.kernel('batchTopkEncode', ([x, w, b], attrs) => {
    const { k, transB, shape } = attrs;
    const B = x.shape[0];
    const F = b.shape[0];
    const n = B * k;
    const values = ctx.alloc('float32', n, false) as FloatArray;
    const features = ctx.alloc('int32', n, false) as Int32Array;
    const rows = ctx.alloc('int32', n, false) as Int32Array;
    if (n > 0) {
      const C = product(x, w, transB, B, F);
      const bias = arr(b) as FloatArray;
      // relu(pre + b) in place, then one selection over the flat [B·F] positions.
      for (let r = 0; r < B; r++) {
        const o = r * F;
        for (let j = 0; j < F; j++) {
          const v = C[o + j] + bias[j];
          C[o + j] = v > 0 || Number.isNaN(v) ? v : 0;
        }
      }
      new Selector(n).row(C, 0, B * F, undefined, values, features, 0);
      for (let e = 0; e < n; e++) {
        const p = features[e];
        rows[e] = Math.floor(p / F);
        features[e] = p - rows[e] * F;
      }
      ctx.recycle(C);
    }
    return [out(values, shape, 'float32'), out(features, shape, 'int32'), out(rows, shape, 'int32')];
  });

  ctx.kernel('sparseDecode', (inputs, attrs) => {
    const [values, indices, w] = inputs;
    const bias = attrs.bias ? arr(inputs[3]) : undefined;
    const [B, d] = attrs.shape;
    const F = w.shape[0];
    const idx = checkedIndices('sparseDecode', indices, F);
    const V = arr(values) as FloatArray;
    const dst = ctx.alloc('float32', B * d, false) as FloatArray;
    if (attrs.rows) {
      // The batch layout: entries grouped by output row (stably, so each row keeps entry order).
      const rowsT = inputs[inputs.length - 1];
      const rows = checkedIndices('sparseDecode', rowsT, B, 'row');
      const g = grouped(arr(rowsT) as Int32Array, rows, B, arr(indices) as Int32Array, idx, 1);
      const v = gather(V, g.perm);
      segsum(B, d, g.start, v, g.other, arr(w) as FloatArray, bias, dst);
      ctx.recycle(v);
    } else {
      const k = values.shape.length === 2 ? values.shape[1] : 1;
      const start = new Int32Array(B + 1);
      for (let r = 0; r <= B; r++) start[r] = r * k;
      segsum(B, d, start, V, idx, arr(w) as FloatArray, bias, dst);
    }
    return out(dst, attrs.shape, 'float32');
  });

  ctx.kernel('sparseDot', (inputs, attrs) => {
    const [y, indices, w] = inputs;
    const [B, d] = y.shape;
    const n = indices.size;
    const k = indices.shape.length === 2 ? indices.shape[1] : 1;
    const rows = attrs.rows ? checkedIndices('sparseDot', inputs[3], B, 'row') : implicitRows(n, k);
    const idx = checkedIndices('sparseDot', indices, w.shape[0]);
    const dst = ctx.alloc('float32', n, false) as FloatArray;
    const Y = arr(y) as FloatArray;
    const W = arr(w) as FloatArray;
    const s = simd(Y);
    if (!s?.dot(n, d, rows, idx, Y as Float32Array, W as Float32Array, dst as Float32Array, poolFor(n * d))) {
      for (let e = 0; e < n; e++) {
        const yo = rows[e] * d;
        const wo = idx[e] * d;
        let acc = 0;
        for (let c = 0; c < d; c++) acc += Y[yo + c] * W[wo + c];
        dst[e] = acc;
      }
    }
    return out(dst, attrs.shape, 'float32');
  });

  ctx.kernel('sparseOuter', (inputs, attrs) => {
    const [values, indices, y] = inputs;
    const [F, d] = attrs.shape;
    const idx = checkedIndices('sparseOuter', indices, F);
    const rows = attrs.rows ? checkedIndices('sparseOuter', inputs[3], y.shape[0], 'row') : undefined;
    const k = values.shape.length === 2 ? values.shape[1] : 1;
    const dst = ctx.alloc('float32', F * d, false) as FloatArray;
    // Entries grouped by feature (a stable counting sort): each output row then sums all its
    // entries at once, in entry order, so every sum is the same as in entry order, bit for bit.
    const g = grouped(
      arr(indices) as Int32Array,
      idx,
      F,
      attrs.rows ? (arr(inputs[3]) as Int32Array) : undefined,
      rows,
      k,
    );
    if (d < 4 && dst instanceof Float32Array) {
      // A column or three (a bias gradient, a count of firings): summed here in the grouped order
      // with the SIMD loop's float32 arithmetic, saving its copies in and out.
      const [V, Y] = [arr(values), arr(y)];
      const { start, perm, other } = g;
      for (let f = 0; f < F; f++) {
        for (let c = 0; c < d; c++) {
          let acc = 0;
          for (let q = start[f]; q < start[f + 1]; q++)
            acc = Math.fround(acc + Math.fround(V[perm[q]] * Y[other[q] * d + c]));
          dst[f * d + c] = acc;
        }
      }
      return out(dst, attrs.shape, 'float32');
    }
    const v = gather(arr(values) as FloatArray, g.perm);
    segsum(F, d, g.start, v, g.other, arr(y) as FloatArray, undefined, dst);
    ctx.recycle(v);
    return out(dst, attrs.shape, 'float32');
  });

  /**
   * dst[r] = Σ_{e ∈ [start[r], start[r+1])} vals[e] · src[srcIdx[e]] (+ bias) for each of the
   * nDst rows of d, the entries in order.
   */
  function segsum(
    nDst: number,
    d: number,
    start: Int32Array,
    vals: FloatArray,
    srcIdx: Int32Array,
    src: FloatArray,
    bias: CpuArray | undefined,
    dst: FloatArray,
  ): void {
    const s = simd(src);
    if (
      s?.segsum(
        nDst,
        d,
        start,
        vals as Float32Array,
        srcIdx,
        src as Float32Array,
        bias as Float32Array | undefined,
        dst as Float32Array,
        poolFor(start[nDst] * d),
      )
    )
      return;
    dst.fill(0);
    for (let r = 0; r < nDst; r++) {
      const o = r * d;
      for (let e = start[r]; e < start[r + 1]; e++) {
        const v = vals[e];
        const i = srcIdx[e] * d;
        for (let c = 0; c < d; c++) dst[o + c] += v * src[i + c];
      }
      if (bias) for (let c = 0; c < d; c++) dst[o + c] += bias[c];
    }
  }
}

/** Entries grouped by key: `start` [nKeys + 1] (key q's entries are start[q]..start[q + 1]), and
 * for each grouped position its entry (`perm`) and its `other` index. */
interface Grouping {
  start: Int32Array;
  perm: Int32Array;
  other: Int32Array;
}

/**
 * The entries grouped by key (a stable counting sort), with their `other` index (an explicit
 * array, or e / k: the row of the per-row layout [B, k]).
 */
function groupEntries(keys: Int32Array, nKeys: number, other: Int32Array | undefined, k: number): Grouping {
  const n = keys.length;
  const start = new Int32Array(nKeys + 1);
  for (let e = 0; e < n; e++) start[keys[e] + 1]++;
  for (let q = 0; q < nKeys; q++) start[q + 1] += start[q];
  const pos = start.slice(0, nKeys);
  const perm = new Int32Array(n);
  const o = new Int32Array(n);
  if (other) {
    for (let e = 0; e < n; e++) {
      const q = pos[keys[e]]++;
      perm[q] = e;
      o[q] = other[e];
    }
  } else {
    for (let e = 0, row = 0, j = 0; e < n; e++) {
      const q = pos[keys[e]]++;
      perm[q] = e;
      o[q] = row;
      if (++j === k) {
        j = 0;
        row++;
      }
    }
  }
  return { start, perm, other: o };
}

function implicitRows(n: number, k: number): Int32Array {
  const rows = new Int32Array(n);
  for (let e = 0; e < n; e++) rows[e] = Math.floor(e / k);
  return rows;
}

function checkedIndices(op: string, t: KernelTensor, n: number, what = 'index'): Int32Array {
  const a = arr(t) as Int32Array;
  for (let e = 0; e < t.size; e++) {
    const i = a[e];
    if (!(i >= 0 && i < n)) {
      throw new DictlearnError(op, `${what} ${i} at position ${e} is out of range [0, ${n})`);
    }
  }
  return a.length === t.size ? a : a.subarray(0, t.size);
}

/** True when value a (at index ia) ranks before b (at ib): larger first, NaN largest, ties to the lower index. */
function before(a: number, ia: number, b: number, ib: number): boolean {
  const na = Number.isNaN(a);
  const nb = Number.isNaN(b);
  if (na || nb) return na && nb ? ia < ib : na;
  return a > b || (a === b && ia < ib);
}

/**
 * Top-k of relu(src[base + j] + bias[j]) over j < len (or of src itself without a bias): a
 * min-heap of the k best so far whose root is the worst kept, so a later element enters only
 * when it is strictly larger (at an equal value the earlier index ranks first). A row holding
 * a NaN takes the general path (a full ordering), since NaN ranks first.
 */
class Selector {
  readonly hv: Float64Array;
  readonly hi: Int32Array;
  readonly ov: Float64Array;
  readonly oi: Int32Array;
  constructor(readonly k: number) {
    this.hv = new Float64Array(k);
    this.hi = new Int32Array(k);
    this.ov = new Float64Array(k);
    this.oi = new Int32Array(k);
  }

  row(
    src: FloatArray,
    base: number,
    len: number,
    bias: FloatArray | undefined,
    values: FloatArray,
    indices: Int32Array,
    at: number,
  ): void {
    const { k, hv, hi } = this;
    if (k === 0) return;
    const fround = src instanceof Float32Array ? Math.fround : (v: number) => v; // pre + b as stored
    const b = bias ?? this.zeros(len);
    // The first k (ReLU'd) fill the heap.
    let size = 0;
    let j = 0;
    for (; j < len && size < k; j++) {
      let v = fround(src[base + j] + b[j]);
      if (!(v > 0)) {
        if (Number.isNaN(v)) {
          this.general(src, base, len, bias, values, indices, at);
          return;
        }
        v = 0;
      }
      // sift up: parents are better (a min-heap on rank; the later index ranks after)
      let i = size++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!(hv[p] >= v)) break;
        hv[i] = hv[p];
        hi[i] = hi[p];
        i = p;
      }
      hv[i] = v;
      hi[i] = j;
    }
    // Then an element enters only when strictly larger than the worst kept (root ≥ 0, so ReLU
    // needs no test). The double sum is compared first: it exceeds the root whenever its float32
    // rounding does.
    let root = hv[0];
    for (; j < len; j++) {
      const s = src[base + j] + b[j];
      if (s > root) {
        const v = fround(s);
        if (v > root) {
          let i = 0;
          for (;;) {
            const l = 2 * i + 1;
            if (l >= k) break;
            let w = l;
            const r = l + 1;
            if (r < k && (hv[r] < hv[l] || (hv[r] === hv[l] && hi[r] > hi[l]))) w = r;
            if (!(hv[w] < v)) break; // an equal kept value has the lower index, so it ranks first
            hv[i] = hv[w];
            hi[i] = hi[w];
            i = w;
          }
          hv[i] = v;
          hi[i] = j;
          root = hv[0];
        }
      } else if (Number.isNaN(s)) {
        this.general(src, base, len, bias, values, indices, at);
        return;
      }
    }
    // the k kept, best first
    const ov = this.ov;
    const oi = this.oi;
    if (size > 64) {
      const order = Array.from({ length: size }, (_, q) => q);
      order.sort((p, q) => (before(hv[p], hi[p], hv[q], hi[q]) ? -1 : 1));
      for (let q = 0; q < size; q++) {
        values[at + q] = hv[order[q]];
        indices[at + q] = hi[order[q]];
      }
      return;
    }
    for (let q = 0; q < size; q++) {
      const v = hv[q];
      const x = hi[q];
      let p = q;
      while (p > 0 && (ov[p - 1] < v || (ov[p - 1] === v && oi[p - 1] > x))) {
        ov[p] = ov[p - 1];
        oi[p] = oi[p - 1];
        p--;
      }
      ov[p] = v;
      oi[p] = x;
    }
    for (let q = 0; q < size; q++) {
      values[at + q] = ov[q];
      indices[at + q] = oi[q];
    }
  }

  #zeros: Float64Array | undefined;
  private zeros(n: number): Float64Array {
    if (!this.#zeros || this.#zeros.length < n) this.#zeros = new Float64Array(n);
    return this.#zeros;
  }

  private general(
    src: FloatArray,
    base: number,
    len: number,
    bias: FloatArray | undefined,
    values: FloatArray,
    indices: Int32Array,
    at: number,
  ): void {
    const act = new Float64Array(len);
    const f32 = src instanceof Float32Array;
    for (let j = 0; j < len; j++) {
      let v = bias ? src[base + j] + bias[j] : src[base + j];
      if (f32) v = Math.fround(v);
      act[j] = v > 0 || Number.isNaN(v) ? v : 0;
    }
    const order = Array.from({ length: len }, (_, j) => j);
    order.sort((p, q) => (before(act[p], p, act[q], q) ? -1 : 1));
    for (let j = 0; j < this.k; j++) {
      values[at + j] = act[order[j]];
      indices[at + j] = order[j];
    }
  }
}
