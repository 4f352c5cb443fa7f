/**
 * The inner loops of the sparse kernels in WebAssembly SIMD (f32x4), assembled here byte by byte
 * (no toolchain, no binary blob: every instruction is spelled out below). Two functions:
 *
 * - `axpy(n, d, vals, dstIdx, srcIdx, dst, src)`: for e = 0..n−1 in order,
 *   dst[dstIdx[e]] += vals[e] · src[srcIdx[e]] over rows of d floats. Sparse decode (dst = output
 *   rows, src = dictionary rows) and the scatter-add of a dictionary gradient (dst = dictionary
 *   rows, src = activation rows) are both this loop. Entries run in index order, so the sums
 *   are the same on every run.
 * - `dot(n, d, aIdx, bIdx, A, B, out)`: out[e] = A[aIdx[e]] · B[bIdx[e]] (four lane sums,
 *   added as (l0 + l1) + (l2 + l3), then the tail): the gradient of the sparse code's values.
 *
 * Pointers are byte offsets into the module's own memory; callers copy operands in and the
 * result out ({@link SparseWasm}). Where WebAssembly is unavailable (a content-security policy
 * without 'wasm-unsafe-eval', an old runtime without SIMD) {@link loadSparseWasm} returns why,
 * and the kernels use their TypeScript loops.
 *
 * @module
 */

// --- a few opcodes (WebAssembly core spec + the fixed-width SIMD proposal, final numbering)
const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const BLOCK = 0x02;
const LOOP = 0x03;
const VOID = 0x40;
const END = 0x0b;
const BR = 0x0c;
const BR_IF = 0x0d;
const GET = 0x20;
const SET = 0x21;
const TEE = 0x22;
const I32_LOAD = 0x28;
const F32_LOAD = 0x2a;
const F32_STORE = 0x38;
const I32_CONST = 0x41;
const I32_GE_U = 0x4f;
const I32_ADD = 0x6a;
const I32_MUL = 0x6c;
const I32_AND = 0x71;
const I32_SHL = 0x74;
const F32_ADD = 0x92;
const F32_MUL = 0x94;
const SIMD = 0xfd;
const V128_LOAD = [SIMD, 0x00];
const V128_STORE = [SIMD, 0x0b];
const F32X4_SPLAT = [SIMD, 0x13];
const F32X4_EXTRACT = [SIMD, 0x1f];
const F32X4_ADD = [SIMD, 0xe4, 0x01];
const F32X4_MUL = [SIMD, 0xe6, 0x01];
const F32X4_NE = [SIMD, 0x42];
const F32X4_GT = [SIMD, 0x44];
const F32X4_GE = [SIMD, 0x46];
/**
 * f32x4.pmax(a, b) = a < b ? b : a (maxps): f32x4.max's NaN and signed-zero rules cost V8 about
 * three times as much. pmax(0, v) is relu(v) for every non-NaN v (−0 gives +0); NaN lanes are
 * found by explicit tests.
 */
const F32X4_PMAX = [SIMD, 0xeb, 0x01];
const V128_OR = [SIMD, 0x50];
const ELSE = 0x05;
const DROP = 0x1a;
const V128_ANY_TRUE = [SIMD, 0x53];
const IF = 0x04;
const RETURN = 0x0f;
const CALL = 0x10;
const I32_EQZ = 0x45;
const I32_GT_S = 0x4a;
const I32_GT_U = 0x4b;
const I32_LT_U = 0x49;
const I32_SUB = 0x6b;
const I32_OR = 0x72;
const I32_SHR_U = 0x76;
const F32_EQ = 0x5b;
const F32_NE = 0x5c;
const F32_LT = 0x5d;
const F32_GT = 0x5e;
const F32_GE = 0x60;
const F32_MAX = 0x97;
const I32_STORE = 0x36;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}
const i32c = (v: number) => [I32_CONST, ...sleb(v)];
const get = (l: number) => [GET, l];
const set = (l: number) => [SET, l];
/** memarg: alignment exponent 2 (4 bytes: every operand is a float32 array) and offset. */
const mem = (offset = 0) => [2, ...uleb(offset)];
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const name = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

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

function axpyBody(): number[] {
  // params: n, d, vals, dstIdx, srcIdx, dst, src
  const [VALS, DST_IDX, SRC_IDX, DST, SRC] = [2, 3, 4, 5, 6];
  // locals: e, rowBytes, vecBytes, dp, sp, off (i32); s (f32); sv (v128)
  const [E, RB, VB, DP, SP, OFF, S, SV] = [7, 8, 9, 10, 11, 12, 13, 14];
  const locals = vec([
    [6, I32],
    [1, F32],
    [1, V128],
  ]);
  const code = [
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
    ...forEntries(E, [
      // s = vals[e]; sv = splat(s)
      ...get(VALS),
      ...get(E),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      F32_LOAD,
      ...mem(),
      TEE,
      S,
      ...F32X4_SPLAT,
      ...set(SV),
      ...rowAddress(DST_IDX, DST, E, RB),
      ...set(DP),
      ...rowAddress(SRC_IDX, SRC, E, RB),
      ...set(SP),
      ...i32c(0),
      ...set(OFF),
      // four lanes at a time: dst[off] = dst[off] + sv * src[off]
      ...forOffsets(OFF, VB, 16, [
        ...get(DP),
        ...get(OFF),
        I32_ADD,
        ...get(DP),
        ...get(OFF),
        I32_ADD,
        ...V128_LOAD,
        ...mem(),
        ...get(SV),
        ...get(SP),
        ...get(OFF),
        I32_ADD,
        ...V128_LOAD,
        ...mem(),
        ...F32X4_MUL,
        ...F32X4_ADD,
        ...V128_STORE,
        ...mem(),
      ]),
      // the tail, one float at a time
      ...forOffsets(OFF, RB, 4, [
        ...get(DP),
        ...get(OFF),
        I32_ADD,
        ...get(DP),
        ...get(OFF),
        I32_ADD,
        F32_LOAD,
        ...mem(),
        ...get(S),
        ...get(SP),
        ...get(OFF),
        I32_ADD,
        F32_LOAD,
        ...mem(),
        F32_MUL,
        F32_ADD,
        F32_STORE,
        ...mem(),
      ]),
    ]),
    END,
  ];
  return [...locals, ...code];
}

function dotBody(): number[] {
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
function pushBody(): number[] {
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
function replaceBody(): number[] {
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
 * select(F, k, pre, bias, hv, hi, thr, runs, chunk, maxima) → 0; 1 when the row holds a NaN
 * (the caller then orders it in TypeScript); 2 when fewer than k values reach `thr`. The top k
 * of a[j] = relu(pre[j] + bias[j]) over j < F into the heap: until it is full, values ≥ thr
 * enter (thr ≤ the row's k-th largest, so nothing of the top k is skipped; −1 admits
 * everything); after that only a value strictly above the root (an equal value has a later
 * index, so it ranks after). The first runs·chunk columns come in runs of `chunk` whose maxima
 * {@link chunkmaxBody} wrote (and found no NaN in): a run whose maximum cannot enter is skipped
 * whole. The rest of the row is read four columns at a time, then one at a time.
 */
function selectBody(): number[] {
  const [F, K, PRE, BIAS, HV, HI, THR, RUNS, CHUNK, MAX] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const [J, SIZE, C, STOP, P, BP] = [10, 11, 12, 13, 14, 15];
  const [V, ROOT, M] = [16, 17, 18];
  const [V4, ZERO] = [19, 20];
  const locals = vec([
    [6, I32],
    [3, F32],
    [2, V128],
  ]);
  const PUSH = 2;
  const REPLACE = 3;
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
  const step4 = (nanCheck: boolean) => [
    ...get(P),
    ...V128_LOAD,
    ...mem(),
    ...get(BP),
    ...V128_LOAD,
    ...mem(),
    ...F32X4_ADD,
    TEE,
    V4,
    ...(nanCheck ? [...get(V4), ...F32X4_NE, ...V128_ANY_TRUE, IF, VOID, ...i32c(1), RETURN, END] : [DROP]),
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
    ...i32c(0),
    ...set(C),
    ...seek,
    // the runs: skip one whose maximum cannot enter
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(C),
    ...get(RUNS),
    I32_GE_U,
    BR_IF,
    1,
    ...get(MAX),
    ...get(C),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    F32_LOAD,
    ...mem(),
    ...set(M),
    ...get(J),
    ...get(CHUNK),
    I32_ADD,
    ...set(STOP),
    ...filling,
    IF,
    I32,
    ...get(M),
    ...get(THR),
    F32_GE,
    ELSE,
    ...get(M),
    ...get(ROOT),
    F32_GT,
    END,
    IF,
    VOID,
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(J),
    ...get(STOP),
    I32_GE_U,
    BR_IF,
    1,
    ...step4(false),
    BR,
    0,
    END,
    END,
    ELSE,
    ...get(STOP),
    ...set(J),
    ...seek,
    END,
    ...get(C),
    ...i32c(1),
    I32_ADD,
    ...set(C),
    BR,
    0,
    END,
    END,
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
    ...step4(true),
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

/**
 * chunkmax(n, chunk, pre, bias, out) → NaN seen: out[c] = max(0, max over the c-th run of `chunk` columns of
 * pre + bias), for c < n (chunk a multiple of 16: four vectors per step, pointers advanced, no
 * index arithmetic in the loop). The k-th largest of these maxima is a value that at least k
 * columns reach: a safe threshold for {@link selectBody}. Returns 1 when any of those columns is
 * NaN (pmax would have skipped it), else 0.
 */
function chunkmaxBody(): number[] {
  const [N, CHUNK, PRE, BIAS, OUT] = [0, 1, 2, 3, 4];
  const [C, P, BP, STOP, ACC, M, V, NAN] = [5, 6, 7, 8, 9, 10, 11, 12];
  const locals = vec([
    [4, I32],
    [1, V128],
    [1, F32],
    [2, V128],
  ]);
  const lane = (l: number) => [...get(ACC), ...F32X4_EXTRACT, l];
  const vecAt = (o: number) => [
    ...get(P),
    ...V128_LOAD,
    ...mem(o),
    ...get(BP),
    ...V128_LOAD,
    ...mem(o),
    ...F32X4_ADD,
    TEE,
    V,
    ...get(V),
    ...F32X4_NE,
    ...get(NAN),
    ...V128_OR,
    ...set(NAN),
    ...get(ACC),
    ...get(V),
    ...F32X4_PMAX,
    ...set(ACC),
  ];
  const body = [
    0x43,
    0,
    0,
    0,
    0,
    ...F32X4_SPLAT,
    ...set(NAN),
    ...i32c(0),
    ...set(C),
    ...get(PRE),
    ...set(P),
    ...get(BIAS),
    ...set(BP),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(C),
    ...get(N),
    I32_GE_U,
    BR_IF,
    1,
    0x43,
    0,
    0,
    0,
    0,
    ...F32X4_SPLAT,
    ...set(ACC),
    ...get(P),
    ...get(CHUNK),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...set(STOP),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(P),
    ...get(STOP),
    I32_GE_U,
    BR_IF,
    1,
    ...vecAt(0),
    ...vecAt(16),
    ...vecAt(32),
    ...vecAt(48),
    ...get(P),
    ...i32c(64),
    I32_ADD,
    ...set(P),
    ...get(BP),
    ...i32c(64),
    I32_ADD,
    ...set(BP),
    BR,
    0,
    END,
    END,
    ...lane(0),
    ...lane(1),
    F32_MAX,
    ...lane(2),
    ...lane(3),
    F32_MAX,
    F32_MAX,
    ...set(M),
    ...at4(OUT, C),
    ...get(M),
    F32_STORE,
    ...mem(),
    ...get(C),
    ...i32c(1),
    I32_ADD,
    ...set(C),
    BR,
    0,
    END,
    END,
    ...get(NAN),
    ...V128_ANY_TRUE,
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
  const sevenI32 = [0x60, ...vec([[I32], [I32], [I32], [I32], [I32], [I32], [I32]]), 0];
  const heapOp = [0x60, ...vec([[I32], [I32], [I32], [F32], [I32]]), 0];
  const select = [
    0x60,
    ...vec([[I32], [I32], [I32], [I32], [I32], [I32], [F32], [I32], [I32], [I32]]),
    ...vec([[I32]]),
  ];
  const fiveI32 = [0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), ...vec([[I32]])];
  const funcs = [axpyBody(), dotBody(), pushBody(), replaceBody(), selectBody(), chunkmaxBody()];
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec([sevenI32, heapOp, select, fiveI32])),
    ...section(3, vec([[0], [0], [1], [1], [2], [3]])),
    ...section(5, vec([[0x00, 1]])), // one memory, min 1 page, no max
    ...section(
      7,
      vec([
        [...name('mem'), 0x02, 0],
        [...name('axpy'), 0x00, 0],
        [...name('dot'), 0x00, 1],
        [...name('select'), 0x00, 4],
        [...name('chunkmax'), 0x00, 5],
      ]),
    ),
    ...section(10, vec(funcs.map((f) => [...uleb(f.length), ...f]))),
  ];
  return Uint8Array.from(bytes);
}

/** The two loops, run in WebAssembly on copies of the operands. */
export interface SparseWasm {
  /**
   * out = 0, then out[dstIdx[e]] += vals[e] · src[srcIdx[e]] for e = 0..n−1 (rows of d floats).
   * Overwrites all of `out`. Returns false (doing nothing) when the operands would not fit in
   * the module's memory; the caller then runs its TypeScript loop.
   */
  scatter(
    n: number,
    d: number,
    vals: Float32Array,
    dstIdx: Int32Array,
    srcIdx: Int32Array,
    src: Float32Array,
    out: Float32Array,
  ): boolean;
  /**
   * The top k of relu(pre + bias) in each of B rows of F, a block of rows at a time:
   * `product(pre, r0, rows)` writes rows r0.. of pre into the array it is given (module memory,
   * so the product is never copied, and small enough to be in cache for the selection); each
   * row's k best go to `values` / `indices` at row·k, best first (ties to the lower index). A row
   * holding a NaN is handed to `nanRow(pre, q, row)` (q: its place in the block) instead. False
   * (nothing done) when too large.
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
  ): boolean;
  /** out[e] = a[aIdx[e]] · b[bIdx[e]] for e = 0..n−1 (rows of d floats). False when too large, as above. */
  dot(
    n: number,
    d: number,
    aIdx: Int32Array,
    bIdx: Int32Array,
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
  ): boolean;
}

/** The k-th largest of a (1-based k ≤ a.length) by quickselect on a copy; NaN when a holds a NaN. */
export function kthLargest(a: ArrayLike<number>, k: number, scratch: Float64Array): number {
  const n = a.length;
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(a[i])) return Number.NaN;
    scratch[i] = a[i];
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

/** Bytes of encoder product per block of rows in {@link SparseWasm.topk} (512 rows at F = 4096: measured best). */
const BLOCK_BYTES = 1 << 23;

/** Operands above this many bytes in all stay in TypeScript (row offsets are 32-bit in the module). */
const MAX_BYTES = 2 ** 31 - 2 ** 20;

let loaded: SparseWasm | string | undefined;

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
      axpy: (...args: number[]) => void;
      dot: (...args: number[]) => void;
      select: (...args: number[]) => number;
      chunkmax: (...args: number[]) => number;
    };
    // Lays out byte sizes 16-aligned from 0; grows the memory to fit; null when too large.
    const layout = (sizes: number[]): number[] | null => {
      const at: number[] = [];
      let p = 0;
      for (const s of sizes) {
        at.push(p);
        p += Math.ceil(s / 16) * 16;
      }
      if (p > MAX_BYTES) return null;
      const have = ex.mem.buffer.byteLength;
      if (p > have) ex.mem.grow(Math.ceil((p - have) / 65536));
      return at;
    };
    loaded = {
      scatter(n, d, vals, dstIdx, srcIdx, src, out) {
        const at = layout([n * 4, n * 4, n * 4, src.length * 4, out.length * 4]);
        if (!at) return false;
        const f = new Float32Array(ex.mem.buffer);
        const i = new Int32Array(ex.mem.buffer);
        f.set(vals.subarray(0, n), at[0] / 4);
        i.set(dstIdx.subarray(0, n), at[1] / 4);
        i.set(srcIdx.subarray(0, n), at[2] / 4);
        f.set(src, at[3] / 4);
        f.fill(0, at[4] / 4, at[4] / 4 + out.length);
        ex.axpy(n, d, at[0], at[1], at[2], at[4], at[3]);
        out.set(f.subarray(at[4] / 4, at[4] / 4 + out.length));
        return true;
      },
      topk(B, F, k, bias, product, values, indices, nanRow) {
        // A threshold per row: the k-th largest of the maxima of 2k runs of columns (a multiple
        // of 16 each), which at least k columns reach.
        const chunk = Math.floor(F / (32 * k)) * 16;
        const runs = chunk > 0 ? 2 * k : 0;
        // Blocks of rows small enough to stay in cache between the product and the selection.
        const block = Math.max(1, Math.min(B, Math.floor(BLOCK_BYTES / (4 * F))));
        const at = layout([block * F * 4, F * 4, k * 4, k * 4, runs * 4]);
        if (!at) return false;
        const f = new Float32Array(ex.mem.buffer);
        const hi = new Int32Array(ex.mem.buffer, at[3], k);
        const hv = f.subarray(at[2] / 4, at[2] / 4 + k);
        f.set(bias, at[1] / 4);
        const maxima = f.subarray(at[4] / 4, at[4] / 4 + runs);
        const scratch = new Float64Array(runs);
        for (let r0 = 0; r0 < B; r0 += block) {
          const rows = Math.min(block, B - r0);
          const pre = new Float32Array(ex.mem.buffer, at[0], rows * F);
          product(pre, r0, rows);
          for (let q = 0; q < rows; q++) {
            const r = r0 + q;
            const row = at[0] + q * F * 4;
            let thr = -1;
            let status = 0;
            if (runs > 0) {
              status = ex.chunkmax(runs, chunk, row, at[1], at[4]); // 1: a NaN
              thr = kthLargest(maxima, k, scratch);
            }
            if (status === 0) status = ex.select(F, k, row, at[1], at[2], at[3], thr, runs, chunk, at[4]);
            if (status === 2) status = ex.select(F, k, row, at[1], at[2], at[3], -1, 0, 0, 0);
            if (status !== 0) {
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
      dot(n, d, aIdx, bIdx, a, b, out) {
        const at = layout([n * 4, n * 4, a.length * 4, b.length * 4, n * 4]);
        if (!at) return false;
        const f = new Float32Array(ex.mem.buffer);
        const i = new Int32Array(ex.mem.buffer);
        i.set(aIdx.subarray(0, n), at[0] / 4);
        i.set(bIdx.subarray(0, n), at[1] / 4);
        f.set(a, at[2] / 4);
        f.set(b, at[3] / 4);
        ex.dot(n, d, at[0], at[1], at[2], at[3], at[4]);
        out.set(f.subarray(at[4] / 4, at[4] / 4 + n));
        return true;
      },
    };
  } catch (e) {
    loaded = `WebAssembly could not be compiled here: ${e instanceof Error ? e.message : String(e)}`;
  }
  return loaded;
}
