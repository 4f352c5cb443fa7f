/**
 * The inner loops of the sparse kernels in WebAssembly SIMD (f32x4), assembled here byte by byte
 * (no toolchain, no binary blob: every instruction is spelled out below and in
 * {@link ./sparse-loops.js}):
 *
 * - `segsum`: each destination row the in-order sum of its entries' value-weighted source rows
 *   (+ bias). Sparse decode (destinations = output rows, sources = dictionary rows) and the
 *   dictionary gradient (destinations = features, sources = activation rows, the entries
 *   grouped by feature, stably) are both this loop.
 * - `dot(n, d, aIdx, bIdx, A, B, out)`: out[e] = A[aIdx[e]] · B[bIdx[e]] (four lane sums,
 *   added as (l0 + l1) + (l2 + l3), then the tail): the gradient of the sparse code's values.
 * - the top-k selection: `rowmax` and `filter` find each row's candidates above a threshold
 *   that cannot exclude any of its top k; `select` (a size-k heap) serves the rows they cannot.
 *
 * Pointers are byte offsets into the module's own memory; callers copy operands in and the
 * result out ({@link SparseWasm}). Where WebAssembly is unavailable (a content-security policy
 * without 'wasm-unsafe-eval', an old runtime without SIMD) {@link loadSparseWasm} returns why,
 * and the kernels use their TypeScript loops.
 *
 * @module
 */

import { type Engine, ownEngine, type SplitEngine, splitRanges } from './engine.js';
import {
  filterBody,
  finishBody,
  kthBisectBody,
  rowmaxBody,
  segsumBody,
  selectRowsBody,
  siftBody,
} from './sparse-loops.js';
import {
  BLOCK,
  BR,
  BR_IF,
  CALL,
  ELSE,
  END,
  F32,
  F32_ADD,
  F32_EQ,
  F32_GE,
  F32_GT,
  F32_LOAD,
  F32_LT,
  F32_MAX,
  F32_MUL,
  F32_NE,
  F32_STORE,
  F32X4_ADD,
  F32X4_EXTRACT,
  F32X4_GE,
  F32X4_GT,
  F32X4_MUL,
  F32X4_NE,
  F32X4_PMAX,
  F32X4_SPLAT,
  funcType,
  get,
  I32,
  I32_ADD,
  I32_AND,
  I32_EQZ,
  I32_GE_U,
  I32_GT_S,
  I32_GT_U,
  I32_LOAD,
  I32_LT_U,
  I32_MUL,
  I32_OR,
  I32_SHL,
  I32_SHR_U,
  I32_STORE,
  I32_SUB,
  IF,
  i32c,
  LOOP,
  mem,
  moduleBytes,
  RETURN,
  set,
  TEE,
  V128,
  V128_ANY_TRUE,
  V128_LOAD,
  VOID,
  vec,
} from './wasm-asm.js';

// Parameters of both functions (locals 0..6).
const N = 0;
const D = 1;

/**
 * `for (e = 0; e < n; e++) { body }` where body may use local `e`; `pre` sets up loop locals.
 * Branch depths inside `body` are relative to the loop (0 = continue, 1 = the outer block).
 */
function forEntries(e: number, body: number[]): number[] {
  return [
    ...i32c(0),
    ...set(e),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(e),
    ...get(N),
    I32_GE_U,
    BR_IF,
    1,
    ...body,
    ...get(e),
    ...i32c(1),
    I32_ADD,
    ...set(e),
    BR,
    0,
    END,
    END,
  ];
}

/** `while (off < limit) { body; off += step }` over byte offsets. */
function forOffsets(off: number, limit: number, step: number, body: number[]): number[] {
  return [
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(off),
    ...get(limit),
    I32_GE_U,
    BR_IF,
    1,
    ...body,
    ...get(off),
    ...i32c(step),
    I32_ADD,
    ...set(off),
    BR,
    0,
    END,
    END,
  ];
}

/** Byte address of row `idx[e]` of a [rows, d] float array at `base`: base + idx[e]·d·4. */
function rowAddress(idxPtr: number, base: number, e: number, rowBytes: number): number[] {
  return [
    ...get(base),
    ...get(idxPtr),
    ...get(e),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    I32_LOAD,
    ...mem(),
    ...get(rowBytes),
    I32_MUL,
    I32_ADD,
  ];
}

/** dot(n, d, aIdx, bIdx, A, B, out): out[e] = A[aIdx[e]] · B[bIdx[e]] (see the module comment). */
export function dotBody(): number[] {
  // params: n, d, aIdx, bIdx, A, B, out
  const [A_IDX, B_IDX, A, B, OUT] = [2, 3, 4, 5, 6];
  // locals: e, rowBytes, vecBytes, ap, bp, off, bytes in blocks of 16 floats (i32); s (f32);
  // acc and three more accumulators (v128): four independent chains, so the adds overlap
  const [E, RB, VB, AP, BP, OFF, S, ACC, ACC1, ACC2, ACC3, QB] = [
    7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
  ];
  const locals = vec([
    [6, I32],
    [1, F32],
    [4, V128],
    [1, I32],
  ]);
  const lane = (l: number) => [...get(ACC), ...F32X4_EXTRACT, l];
  const zero = [0x43, 0, 0, 0, 0, ...F32X4_SPLAT];
  const mulAdd = (acc: number, o: number) => [
    ...get(acc),
    ...get(AP),
    ...get(OFF),
    I32_ADD,
    ...V128_LOAD,
    ...mem(o),
    ...get(BP),
    ...get(OFF),
    I32_ADD,
    ...V128_LOAD,
    ...mem(o),
    ...F32X4_MUL,
    ...F32X4_ADD,
    ...set(acc),
  ];
  const body = [
    ...get(D),
    ...i32c(2),
    I32_SHL,
    ...set(RB),
    ...get(D),
    ...i32c(-4),
    I32_AND,
    ...i32c(2),
    I32_SHL,
    ...set(VB),
    ...get(D),
    ...i32c(-16),
    I32_AND,
    ...i32c(2),
    I32_SHL,
    ...set(QB),
    ...forEntries(E, [
      ...rowAddress(A_IDX, A, E, RB),
      ...set(AP),
      ...rowAddress(B_IDX, B, E, RB),
      ...set(BP),
      ...i32c(0),
      ...set(OFF),
      ...zero,
      ...set(ACC),
      ...zero,
      ...set(ACC1),
      ...zero,
      ...set(ACC2),
      ...zero,
      ...set(ACC3),
      // sixteen at a time into four accumulators, then acc = (acc + acc1) + (acc2 + acc3)
      ...forOffsets(OFF, QB, 64, [
        ...mulAdd(ACC, 0),
        ...mulAdd(ACC1, 16),
        ...mulAdd(ACC2, 32),
        ...mulAdd(ACC3, 48),
      ]),
      ...get(ACC),
      ...get(ACC1),
      ...F32X4_ADD,
      ...get(ACC2),
      ...get(ACC3),
      ...F32X4_ADD,
      ...F32X4_ADD,
      ...set(ACC),
      // then four at a time
      ...forOffsets(OFF, VB, 16, [...mulAdd(ACC, 0)]),
      // s = (l0 + l1) + (l2 + l3)
      ...lane(0),
      ...lane(1),
      F32_ADD,
      ...lane(2),
      ...lane(3),
      F32_ADD,
      F32_ADD,
      ...set(S),
      ...forOffsets(OFF, RB, 4, [
        ...get(S),
        ...get(AP),
        ...get(OFF),
        I32_ADD,
        F32_LOAD,
        ...mem(),
        ...get(BP),
        ...get(OFF),
        I32_ADD,
        F32_LOAD,
        ...mem(),
        F32_MUL,
        F32_ADD,
        ...set(S),
      ]),
      // out[e] = s
      ...get(OUT),
      ...get(E),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      ...get(S),
      F32_STORE,
      ...mem(),
    ]),
    END,
  ];
  return [...locals, ...body];
}

// --- top-k selection of one row: a size-k min-heap (root = worst kept) in module memory, hv
// (f32) and hi (i32), ordered by value and then index (the later index ranks after).

/** hv[i] / hi[i] loads for an index in local `i` (byte address base + 4i). */
const at4 = (base: number, i: number) => [...get(base), ...get(i), ...i32c(2), I32_SHL, I32_ADD];
const f32At = (base: number, i: number) => [...at4(base, i), F32_LOAD, ...mem()];
const i32At = (base: number, i: number) => [...at4(base, i), I32_LOAD, ...mem()];

/** push(size, hv, hi, v, j): inserts (v, j) at the heap's end and sifts it up; j ranks after every kept index. */
export function pushBody(): number[] {
  const [SIZE, HV, HI, V, J] = [0, 1, 2, 3, 4];
  const [I, P] = [5, 6];
  const locals = vec([[2, I32]]);
  const body = [
    ...get(SIZE),
    ...set(I),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(I),
    I32_EQZ,
    BR_IF,
    1,
    ...get(I),
    ...i32c(1),
    I32_SUB,
    ...i32c(1),
    I32_SHR_U,
    ...set(P),
    // the parent ranks before (v, j) unless its value is smaller: then stop
    ...f32At(HV, P),
    ...get(V),
    F32_LT,
    BR_IF,
    1,
    ...at4(HV, I),
    ...f32At(HV, P),
    F32_STORE,
    ...mem(),
    ...at4(HI, I),
    ...i32At(HI, P),
    I32_STORE,
    ...mem(),
    ...get(P),
    ...set(I),
    BR,
    0,
    END,
    END,
    ...at4(HV, I),
    ...get(V),
    F32_STORE,
    ...mem(),
    ...at4(HI, I),
    ...get(J),
    I32_STORE,
    ...mem(),
    END,
  ];
  return [...locals, ...body];
}

/** replace(k, hv, hi, v, j): puts (v, j) at the root (the worst kept) and sifts it down. */
export function replaceBody(): number[] {
  const [K, HV, HI, V, J] = [0, 1, 2, 3, 4];
  const [I, L, R, W] = [5, 6, 7, 8];
  const locals = vec([[4, I32]]);
  const body = [
    ...i32c(0),
    ...set(I),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    // l = 2i + 1; stop at a leaf
    ...get(I),
    ...i32c(1),
    I32_SHL,
    ...i32c(1),
    I32_ADD,
    TEE,
    L,
    ...get(K),
    I32_GE_U,
    BR_IF,
    1,
    ...get(L),
    ...set(W),
    ...get(L),
    ...i32c(1),
    I32_ADD,
    ...set(R),
    // w = the worse child: the smaller value, or at an equal value the larger index
    ...get(R),
    ...get(K),
    I32_LT_U,
    IF,
    VOID,
    ...f32At(HV, R),
    ...f32At(HV, L),
    F32_LT,
    ...f32At(HV, R),
    ...f32At(HV, L),
    F32_EQ,
    ...i32At(HI, R),
    ...i32At(HI, L),
    I32_GT_S,
    I32_AND,
    I32_OR,
    IF,
    VOID,
    ...get(R),
    ...set(W),
    END,
    END,
    // stop unless that child is worse than (v, j): its value smaller (an equal value has the lower index)
    ...f32At(HV, W),
    ...get(V),
    F32_GE,
    BR_IF,
    1,
    ...at4(HV, I),
    ...f32At(HV, W),
    F32_STORE,
    ...mem(),
    ...at4(HI, I),
    ...i32At(HI, W),
    I32_STORE,
    ...mem(),
    ...get(W),
    ...set(I),
    BR,
    0,
    END,
    END,
    ...at4(HV, I),
    ...get(V),
    F32_STORE,
    ...mem(),
    ...at4(HI, I),
    ...get(J),
    I32_STORE,
    ...mem(),
    END,
  ];
  return [...locals, ...body];
}

/**
 * select(F, k, pre, bias, hv, hi, thr) → 0; 1 when the row holds a NaN (the caller then
 * orders it in TypeScript); 2 when fewer than k values reach `thr`. The top k of
 * a[j] = relu(pre[j] + bias[j]) over j < F into the heap: until it is full, values ≥ thr enter
 * (thr ≤ the row's k-th largest, so nothing of the top k is skipped; −1 admits everything);
 * after that only a value strictly above the root (an equal value has a later index, so it
 * ranks after). The row is read four columns at a time, then one at a time. The selection of
 * rows the thresholded filter ({@link filterBody}) cannot serve.
 */
function selectBody(): number[] {
  const [F, K, PRE, BIAS, HV, HI, THR] = [0, 1, 2, 3, 4, 5, 6];
  const [J, SIZE, P, BP] = [7, 8, 9, 10];
  const [V, ROOT] = [11, 12];
  const [V4, ZERO] = [13, 14];
  const locals = vec([
    [4, I32],
    [2, F32],
    [2, V128],
  ]);
  const PUSH = 1;
  const REPLACE = 2;
  const root0 = [...i32c(0), ...f32AtConst(HV), ...set(ROOT)];
  /** Offers (V, column jExpr) to the heap. */
  const offer = (jExpr: number[]) => [
    ...get(SIZE),
    ...get(K),
    I32_LT_U,
    IF,
    VOID,
    // filling: values ≥ thr enter
    ...get(V),
    ...get(THR),
    F32_GE,
    IF,
    VOID,
    ...get(SIZE),
    ...get(HV),
    ...get(HI),
    ...get(V),
    ...jExpr,
    CALL,
    PUSH,
    ...get(SIZE),
    ...i32c(1),
    I32_ADD,
    TEE,
    SIZE,
    ...get(K),
    I32_GE_U,
    IF,
    VOID,
    ...root0,
    END,
    END,
    ELSE,
    // full: a value strictly above the worst kept replaces it
    ...get(V),
    ...get(ROOT),
    F32_GT,
    IF,
    VOID,
    ...get(K),
    ...get(HV),
    ...get(HI),
    ...get(V),
    ...jExpr,
    CALL,
    REPLACE,
    ...root0,
    END,
    END,
  ];
  const lane = (l: number) => [
    ...get(V4),
    ...F32X4_EXTRACT,
    l,
    ...set(V),
    ...offer([...get(J), ...i32c(l), I32_ADD]),
  ];
  const filling = [...get(SIZE), ...get(K), I32_LT_U];
  /** Four columns at P: relu'd, offered lane by lane when any may enter; then advance. */
  const step4 = () => [
    ...get(P),
    ...V128_LOAD,
    ...mem(),
    ...get(BP),
    ...V128_LOAD,
    ...mem(),
    ...F32X4_ADD,
    TEE,
    V4,
    ...[...get(V4), ...F32X4_NE, ...V128_ANY_TRUE, IF, VOID, ...i32c(1), RETURN, END],
    ...get(ZERO),
    ...get(V4),
    ...F32X4_PMAX,
    ...set(V4),
    ...filling,
    IF,
    I32,
    ...get(V4),
    ...get(THR),
    ...F32X4_SPLAT,
    ...F32X4_GE,
    ...V128_ANY_TRUE,
    ELSE,
    ...get(V4),
    ...get(ROOT),
    ...F32X4_SPLAT,
    ...F32X4_GT,
    ...V128_ANY_TRUE,
    END,
    IF,
    VOID,
    ...lane(0),
    ...lane(1),
    ...lane(2),
    ...lane(3),
    END,
    ...get(J),
    ...i32c(4),
    I32_ADD,
    ...set(J),
    ...get(P),
    ...i32c(16),
    I32_ADD,
    ...set(P),
    ...get(BP),
    ...i32c(16),
    I32_ADD,
    ...set(BP),
  ];
  const seek = [
    ...get(J),
    ...i32c(2),
    I32_SHL,
    TEE,
    P,
    ...get(BIAS),
    I32_ADD,
    ...set(BP),
    ...get(P),
    ...get(PRE),
    I32_ADD,
    ...set(P),
  ];
  const body = [
    ...get(K),
    I32_EQZ,
    IF,
    VOID,
    ...i32c(0),
    RETURN,
    END,
    0x43,
    0,
    0,
    0,
    0,
    ...F32X4_SPLAT,
    ...set(ZERO),
    ...i32c(0),
    ...set(J),
    ...i32c(0),
    ...set(SIZE),
    ...seek,
    // the rest, four at a time
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(J),
    ...i32c(4),
    I32_ADD,
    ...get(F),
    I32_GT_U,
    BR_IF,
    1,
    ...step4(),
    BR,
    0,
    END,
    END,
    // the tail, one at a time
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(J),
    ...get(F),
    I32_GE_U,
    BR_IF,
    1,
    ...f32At(PRE, J),
    ...f32At(BIAS, J),
    F32_ADD,
    ...set(V),
    ...get(V),
    ...get(V),
    F32_NE,
    IF,
    VOID,
    ...i32c(1),
    RETURN,
    END,
    ...get(V),
    0x43,
    0,
    0,
    0,
    0,
    F32_MAX,
    ...set(V),
    ...offer(get(J)),
    ...get(J),
    ...i32c(1),
    I32_ADD,
    ...set(J),
    BR,
    0,
    END,
    END,
    ...get(SIZE),
    ...get(K),
    I32_LT_U,
    IF,
    VOID,
    ...i32c(2),
    RETURN,
    END,
    ...i32c(0),
    END,
  ];
  return [...locals, ...body];
}

/** f32 at byte address (top of stack: an index i) base + 4i. */
function f32AtConst(base: number): number[] {
  return [...i32c(2), I32_SHL, ...get(base), I32_ADD, F32_LOAD, ...mem()];
}

/** The module's bytes. */
export function sparseWasmBytes(): Uint8Array {
  const seven = funcType([I32, I32, I32, I32, I32, I32, I32], []);
  const heapOp = funcType([I32, I32, I32, F32, I32], []);
  const select = funcType([I32, I32, I32, I32, I32, I32, F32], [I32]);
  const nine = funcType([I32, I32, I32, I32, I32, I32, I32, I32, I32], []);
  const eleven = funcType([I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32], []);
  const eighteen = funcType(new Array<number>(18).fill(I32), []);
  // the heap operations and selection passes, called by index
  const [PUSH, REPLACE, SIFT, ROWMAX, FILTER, KTH, FINISH] = [1, 2, 7, 4, 5, 8, 9];
  return moduleBytes(
    [seven, heapOp, select, nine, eleven, eighteen],
    [
      { type: 0, body: dotBody(), export: 'dot' },
      { type: 1, body: pushBody() },
      { type: 1, body: replaceBody() },
      { type: 2, body: selectBody(), export: 'select' },
      { type: 0, body: rowmaxBody(), export: 'rowmax' },
      { type: 3, body: filterBody(), export: 'filter' },
      { type: 3, body: segsumBody(), export: 'segsum' },
      { type: 1, body: siftBody() },
      { type: 0, body: kthBisectBody(), export: 'kth' },
      { type: 4, body: finishBody(PUSH, REPLACE, SIFT), export: 'finish' },
      { type: 5, body: selectRowsBody(ROWMAX, KTH, FILTER, FINISH), export: 'selectRows' },
    ],
  );
}

/** The loops, run in WebAssembly on copies of the operands. */
export interface SparseWasm {
  /**
   * For each destination row r < nDst: out[r] = Σ_{e ∈ [start[r], start[r+1])} vals[e] ·
   * src[srcIdx[e]] (+ bias), the entries in order (rows of d floats; `start` is nondecreasing,
   * start[nDst] entries in all). Overwrites all of `out` (nDst·d). Runs on `engine` (a kernel
   * pool: rows split over its threads) or the module's own instance. Returns false (doing
   * nothing) when the operands would not fit in memory; the caller then runs its TypeScript loop.
   */
  segsum(
    nDst: number,
    d: number,
    start: Int32Array,
    vals: Float32Array,
    srcIdx: Int32Array,
    src: Float32Array,
    bias: Float32Array | undefined,
    out: Float32Array,
    engine?: Engine,
  ): boolean;
  /**
   * The top k of relu(pre + bias) in each of B rows of F, a block of rows at a time:
   * `product(pre, r0, rows)` writes rows r0.. of pre into the array it is given (module memory,
   * so the product is never copied); each
   * row's k best go to `values` / `indices` at row·k, best first (ties to the lower index). A row
   * holding a NaN is handed to `nanRow(pre, q, row)` (q: its place in the block) instead. With a
   * kernel pool, a worker selects the second half of each block's rows (copied into the pool's
   * memory) while this thread selects the first. False (nothing done) when too large.
   */
  topk(
    B: number,
    F: number,
    k: number,
    bias: Float32Array,
    product: (pre: Float32Array, r0: number, rows: number) => void,
    values: Float32Array,
    indices: Int32Array,
    nanRow: (pre: Float32Array, q: number, row: number) => void,
    pool?: SplitEngine,
  ): boolean;
  /**
   * Drops any copy of `data` a kernel pool's memory keeps (its storage is being reused: the
   * backend calls this for every freed tensor).
   */
  forget(data: ArrayLike<number>): void;
  /**
   * out[e] = a[aIdx[e]] · b[bIdx[e]] for e = 0..n−1 (rows of d floats), on `engine` as above
   * (entries split over its threads). False when too large, as above.
   */
  dot(
    n: number,
    d: number,
    aIdx: Int32Array,
    bIdx: Int32Array,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    engine?: Engine,
  ): boolean;
}

/**
 * The k-th largest (1-based k ≤ n) of a[from .. from + n) (n = a.length − from by default) by
 * quickselect on a copy in `scratch`; NaN when those values hold a NaN.
 */
export function kthLargest(
  a: ArrayLike<number>,
  k: number,
  scratch: Float64Array,
  from = 0,
  n = a.length - from,
): number {
  for (let i = 0; i < n; i++) {
    const v = a[from + i];
    if (Number.isNaN(v)) return Number.NaN;
    scratch[i] = v;
  }
  let lo = 0;
  let hi = n - 1;
  const want = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = scratch[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (scratch[i] > pivot) i++;
      while (scratch[j] < pivot) j--;
      if (i <= j) {
        const t = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return scratch[want];
  }
  return scratch[want];
}

/**
 * Bytes of encoder product per block of rows in {@link SparseWasm.topk} (2048 rows at F = 4096).
 * A block is far larger than the L2 cache either way, and each native product call wakes the
 * fast path's thread pool: on a busy 2-core machine 8 MiB blocks measured 10–15 ms slower per
 * 4096 × 4096 product than 32 MiB ones (as fast on an idle one).
 */
const BLOCK_BYTES = 1 << 25;

/** Operands above this many bytes in all stay in TypeScript (row offsets are 32-bit in the module). */
const MAX_BYTES = 2 ** 31 - 2 ** 20;

let loaded: SparseWasm | string | undefined;

/** What a kernel pool's memory holds in its two operand slots (see `place`). */
const resident = new Map<
  Engine,
  { slotBytes: number; slots: { data: Float32Array | undefined; used: number }[]; clock: number }
>();

/** The slice of the WebAssembly JS API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

/**
 * The thresholded selection's runs for F columns and k kept: R runs of C columns (C a multiple
 * of 16, about F / 2k), or R = 0 where runs that long do not fit (F < 32k: the heap alone then).
 */
export function selectionRuns(F: number, k: number): { R: number; C: number } {
  const C = k > 0 ? Math.floor(F / (2 * k) / 16) * 16 : 0;
  return C > 0 ? { R: Math.floor(F / C), C } : { R: 0, C: 0 };
}

/**
 * Candidates kept per row by the filter: with the threshold the k-th largest of 2k run maxima,
 * about 1.4k columns of a row reach it when its values are independent; rows with more (many
 * ties at the threshold, a bias that lifts a block of features) take the heap instead.
 */
const candidateCap = (k: number) => Math.max(64, 4 * k);

/**
 * Compiles the module once per process; returns it, or why it is unavailable (no WebAssembly,
 * no SIMD, or a content-security policy that forbids compiling it). Never throws.
 */
export function loadSparseWasm(): SparseWasm | string {
  if (loaded !== undefined) return loaded;
  try {
    const WA = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    if (!WA) {
      loaded = 'WebAssembly is not available';
      return loaded;
    }
    const bytes = sparseWasmBytes();
    if (!WA.validate(bytes)) {
      loaded = 'this runtime has no WebAssembly SIMD';
      return loaded;
    }
    const ex = new WA.Instance(new WA.Module(bytes), {}).exports as {
      mem: WasmMemory;
      dot: (...args: number[]) => void;
      select: (...args: number[]) => number;
      selectRows: (...args: number[]) => void;
      segsum: (...args: number[]) => void;
    };
    const own = ownEngine(ex, MAX_BYTES);
    const layout = own.layout;
    /**
     * Lays out a call's large operands and the rest of its arrays (byte sizes) on `engine`:
     * the operands' offsets (each copied in unless a kernel pool's memory still holds it from
     * an earlier call) and the rest's. Null when they do not fit.
     */
    const place = (engine: Engine, operands: Float32Array[], rest: number[]): [number[], number[]] | null => {
      if (engine === own) {
        const at = engine.layout([...operands.map((o) => o.length * 4), ...rest]);
        if (!at) return null;
        const f = new Float32Array(engine.buffer());
        for (let q = 0; q < operands.length; q++) f.set(operands[q], at[q] / 4);
        return [at.slice(0, operands.length), at.slice(operands.length)];
      }
      // A kernel pool's memory is only ever laid out here: its first two regions (slots) keep
      // the operands of recent calls, so the next call that reads one of them (the decoder
      // read by decode and again by its gradient, dY by two gradients) skips its copy.
      let r = resident.get(engine);
      const need = Math.max(...operands.map((o) => o.byteLength));
      if (!r || need > r.slotBytes) {
        r = {
          slotBytes: Math.ceil(need / 16) * 16,
          slots: [
            { data: undefined, used: 0 },
            { data: undefined, used: 0 },
          ],
          clock: 0,
        };
        resident.set(engine, r);
      }
      const at = engine.layout([2 * r.slotBytes, ...rest]);
      if (!at) return null;
      const rr = r;
      const taken = new Set<number>();
      const slotOf = operands.map((o) => {
        const s = rr.slots.findIndex((slot, q) => !taken.has(q) && slot.data === o);
        if (s >= 0) taken.add(s);
        return s;
      });
      const f = new Float32Array(engine.buffer());
      const offsets = operands.map((o, q) => {
        let s = slotOf[q];
        if (s < 0) {
          // the least recently used slot this call does not read
          s = [0, 1].filter((x) => !taken.has(x)).sort((x, y) => rr.slots[x].used - rr.slots[y].used)[0];
          taken.add(s);
          f.set(o, (s * rr.slotBytes) / 4);
          rr.slots[s].data = o;
        }
        rr.slots[s].used = ++rr.clock;
        return s * rr.slotBytes;
      });
      return [offsets, at.slice(1)];
    };
    loaded = {
      segsum(nDst, d, start, vals, srcIdx, src, bias, out, engine = own) {
        const n = start[nDst];
        const placed = place(engine, [src], [(nDst + 1) * 4, n * 4, n * 4, d * 4, out.length * 4]);
        if (!placed) return false;
        const [[S], at] = placed;
        const f = new Float32Array(engine.buffer());
        const i = new Int32Array(engine.buffer());
        i.set(start.subarray(0, nDst + 1), at[0] / 4);
        f.set(vals.subarray(0, n), at[1] / 4);
        i.set(srcIdx.subarray(0, n), at[2] / 4);
        if (bias) f.set(bias.subarray(0, d), at[3] / 4);
        // rows split by their entries (a row's sums are computed whole by one thread)
        const bounds = splitRanges(nDst, engine.threads, (r) => start[r] + r);
        const parts = bounds.slice(1).map((r1, p) => {
          const r0 = bounds[p];
          return [r1 - r0, d, at[0] + 4 * r0, at[1], at[2], S, at[3], bias ? 1 : 0, at[4] + 4 * r0 * d];
        });
        engine.run('segsum', parts);
        out.set(f.subarray(at[4] / 4, at[4] / 4 + out.length));
        return true;
      },
      topk(B, F, k, bias, product, values, indices, nanRow, pool) {
        const { R, C } = selectionRuns(F, k);
        const cap = candidateCap(k);
        // Blocks of rows (see BLOCK_BYTES): the product never lands in a dense [B, F] tensor.
        const block = Math.max(1, Math.min(B, Math.floor(BLOCK_BYTES / (4 * F))));
        /** The selection's arrays for `rows` rows (indices as in selectRows' order below). */
        const sizes = (rows: number) => [
          rows * F * 4, // 0: the product
          F * 4, // 1: bias
          k * 4, // 2: heap values
          k * 4, // 3: heap columns
          rows * R * 4, // 4: run maxima
          rows * 4, // 5: thresholds
          rows * 4, // 6: candidate counts
          rows * cap * 4, // 7: candidate values
          rows * cap * 4, // 8: candidate columns
          rows * k * 4, // 9: selected values
          rows * k * 4, // 10: selected columns
          rows * 4, // 11: status
        ];
        const at = layout(sizes(block));
        if (!at) return false;
        // With a kernel pool, a worker takes the second half of each block's rows: they are
        // copied into the pool's memory (the native product cannot write there: it refuses
        // shared memory), and selected there while this thread selects the first half.
        const half = block - (block >> 1);
        const split = pool && R > 0 && block >= 2 ? pool : undefined;
        const pat = split?.layout(sizes(half));
        if (split && pat) resident.delete(split); // its operand slots are overwritten
        const f = new Float32Array(ex.mem.buffer);
        const i = new Int32Array(ex.mem.buffer);
        const hv = f.subarray(at[2] / 4, at[2] / 4 + k);
        const hi = i.subarray(at[3] / 4, at[3] / 4 + k);
        f.set(bias, at[1] / 4);
        if (split && pat) new Float32Array(split.buffer()).set(bias, pat[1] / 4);
        const args = (a: number[], rows: number) => [
          rows,
          F,
          R,
          C,
          k,
          cap,
          ...[0, 1, 4, 5, 6, 7, 8, 2, 3, 9, 10, 11].map((x) => a[x]),
        ];
        for (let r0 = 0; r0 < B; r0 += block) {
          const rows = Math.min(block, B - r0);
          const pre = new Float32Array(ex.mem.buffer, at[0], rows * F);
          product(pre, r0, rows);
          // rows [0, h) here, [h, rows) on the worker
          const h = split && pat && rows >= 2 ? rows >> 1 : rows;
          if (R > 0) {
            // a threshold per row, the columns that reach it, their top k, best first
            let wait: (() => void) | undefined;
            if (split && pat && h < rows) {
              new Float32Array(split.buffer()).set(pre.subarray(h * F, rows * F), pat[0] / 4);
              wait = split.begin('selectRows', [args(pat, rows - h)]);
            }
            try {
              ex.selectRows(...args(at, h));
            } finally {
              wait?.();
            }
            values.set(f.subarray(at[9] / 4, at[9] / 4 + h * k), r0 * k);
            indices.set(i.subarray(at[10] / 4, at[10] / 4 + h * k), r0 * k);
            if (h < rows && split && pat) {
              const sf = new Float32Array(split.buffer());
              const si = new Int32Array(split.buffer());
              values.set(sf.subarray(pat[9] / 4, pat[9] / 4 + (rows - h) * k), (r0 + h) * k);
              indices.set(si.subarray(pat[10] / 4, pat[10] / 4 + (rows - h) * k), (r0 + h) * k);
            }
          }
          const ownStatus = i.subarray(at[11] / 4, at[11] / 4 + h);
          const ownThr = f.subarray(at[5] / 4, at[5] / 4 + h);
          const poolStatus =
            split && pat && h < rows ? new Int32Array(split.buffer(), pat[11], rows - h) : ownStatus;
          const poolThr =
            split && pat && h < rows ? new Float32Array(split.buffer(), pat[5], rows - h) : ownThr;
          const status = { get: (q: number) => (q < h ? ownStatus[q] : poolStatus[q - h]) };
          const thr = { get: (q: number) => (q < h ? ownThr[q] : poolThr[q - h]) };
          for (let q = 0; q < rows; q++) {
            if (R > 0 && status.get(q) === 0) continue;
            const r = r0 + q;
            if (R > 0 && status.get(q) === 1) {
              nanRow(pre, q, r);
              continue;
            }
            // The heap over the whole row: what the filter cannot serve (too many candidates,
            // a threshold that is not positive, runs too short to filter with)
            const row = at[0] + q * F * 4;
            const t = R > 0 && thr.get(q) !== Number.POSITIVE_INFINITY ? thr.get(q) : -1;
            let st = ex.select(F, k, row, at[1], at[2], at[3], t);
            if (st === 2) st = ex.select(F, k, row, at[1], at[2], at[3], -1);
            if (st !== 0) {
              nanRow(pre, q, r);
              continue;
            }
            // the heap, best first: insertion sort on (value desc, index asc)
            const o = r * k;
            for (let e = 0; e < k; e++) {
              const v = hv[e];
              const x = hi[e];
              let p = o + e;
              while (p > o && (values[p - 1] < v || (values[p - 1] === v && indices[p - 1] > x))) {
                values[p] = values[p - 1];
                indices[p] = indices[p - 1];
                p--;
              }
              values[p] = v;
              indices[p] = x;
            }
          }
        }
        return true;
      },
      dot(n, d, aIdx, bIdx, a, b, out, engine = own) {
        const placed = place(engine, [a, b], [n * 4, n * 4, n * 4]);
        if (!placed) return false;
        const [[A, Bp], at] = placed;
        const f = new Float32Array(engine.buffer());
        const i = new Int32Array(engine.buffer());
        i.set(aIdx.subarray(0, n), at[0] / 4);
        i.set(bIdx.subarray(0, n), at[1] / 4);
        const bounds = splitRanges(n, engine.threads, (e) => e);
        const parts = bounds.slice(1).map((e1, p) => {
          const e0 = bounds[p];
          return [e1 - e0, d, at[0] + 4 * e0, at[1] + 4 * e0, A, Bp, at[2] + 4 * e0];
        });
        engine.run('dot', parts);
        out.set(f.subarray(at[2] / 4, at[2] / 4 + n));
        return true;
      },
      forget(data) {
        for (const r of resident.values()) {
          for (const slot of r.slots) if (slot.data === data) slot.data = undefined;
        }
      },
    };
  } catch (e) {
    loaded = `WebAssembly could not be compiled here: ${e instanceof Error ? e.message : String(e)}`;
  }
  return loaded;
}
