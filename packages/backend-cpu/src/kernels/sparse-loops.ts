/**
 * Three WebAssembly SIMD loops of the sparse module ({@link loadSparseWasm} assembles them with
 * the others): the two passes of the thresholded top-k selection over a block of encoder rows,
 * and the segmented sum that sparse decode and the dictionary gradient share.
 *
 * - `rowmax(rows, F, R, C, pre, bias, out)`: out[q·R + c] = max(0, max over the c-th run of C
 *   columns of pre[q] + bias), C a multiple of 16 (four independent accumulators, so the maxima
 *   of successive vectors do not wait on each other). NaN columns are passed over (pmax keeps
 *   the accumulator), the filter finds them. The k-th largest of a row's R maxima is a value
 *   that at least k of its columns reach: every column of the row's top k reaches it too.
 * - `filter(rows, F, pre, bias, thr, cap, cnt, cv, ci)`: the columns j of row q whose
 *   a = pre[q, j] + bias[j] is not below thr[q] (NaN included), in column order, up to `cap`
 *   of them into cv/ci at q·cap; cnt[q] = how many there were (more than cap: the caller
 *   selects that row another way). Sixteen columns are tested per step with one branch.
 * - `segsum(nDst, d, start, vals, srcIdx, src, bias, hasBias, dst)`: for each destination row
 *   r, dst[r] = Σ_{e ∈ [start[r], start[r+1])} vals[e] · src[srcIdx[e]] (+ bias), the entries
 *   in order, thirty-two columns at a time held in eight registers: the sum of each element is
 *   the one an in-order scatter-add into zeros computes, bit for bit, without loading and
 *   storing the destination once per entry.
 *
 * @module
 */
import {
  addTo,
  BLOCK,
  BR,
  BR_IF,
  CALL,
  ELSE,
  END,
  F32,
  F32_ADD,
  F32_EQ,
  F32_GT,
  F32_LOAD,
  F32_LT,
  F32_MAX,
  F32_MUL,
  F32_NE,
  F32_REINTERPRET_I32,
  F32_STORE,
  F32X4_ADD,
  F32X4_EQ,
  F32X4_EXTRACT,
  F32X4_GT,
  F32X4_LT,
  F32X4_MUL,
  F32X4_PMAX,
  F32X4_SPLAT,
  f32c,
  funcBody,
  get,
  I32,
  I32_ADD,
  I32_AND,
  I32_EQZ,
  I32_GE_S,
  I32_GE_U,
  I32_GT_S,
  I32_LE_U,
  I32_LOAD,
  I32_LT_S,
  I32_LT_U,
  I32_MUL,
  I32_OR,
  I32_SHL,
  I32_SHR_U,
  I32_STORE,
  I32_SUB,
  I32X4_ADD,
  I32X4_ALL_TRUE,
  I32X4_EXTRACT,
  I32X4_GE_S,
  I32X4_LT_S,
  I32X4_SPLAT,
  I32X4_SUB,
  IF,
  i32c,
  i32x4c,
  LOOP,
  mem,
  SELECT,
  set,
  tee,
  uleb,
  V128,
  V128_AND,
  V128_LOAD,
  V128_OR,
  V128_STORE,
  V128_ZERO,
  VOID,
  whileLtU,
} from './wasm-asm.js';

/** rowmax(rows, F, R, C, pre, bias, out). */
export function rowmaxBody(): number[] {
  const [ROWS, F, R, C, PRE, BIAS, OUT] = [0, 1, 2, 3, 4, 5, 6];
  const [Q, RUN, P, BP, STOP, O, RB] = [7, 8, 9, 10, 11, 12, 13];
  const ACC = [14, 15, 16, 17];
  const lane = (l: number) => [...get(ACC[0]), ...F32X4_EXTRACT, l];
  const step = (i: number) => [
    ...get(ACC[i]),
    ...get(P),
    ...V128_LOAD,
    ...mem(16 * i),
    ...get(BP),
    ...V128_LOAD,
    ...mem(16 * i),
    ...F32X4_ADD,
    ...F32X4_PMAX,
    ...set(ACC[i]),
  ];
  const pmax = (a: number, b: number) => [...get(a), ...get(b), ...F32X4_PMAX];
  const run = [
    ...ACC.flatMap((a) => [...V128_ZERO, ...set(a)]),
    ...get(P),
    ...get(C),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...set(STOP),
    ...whileLtU(get(P), get(STOP), [
      ...step(0),
      ...step(1),
      ...step(2),
      ...step(3),
      ...addTo(P, 64),
      ...addTo(BP, 64),
    ]),
    ...pmax(ACC[0], ACC[1]),
    ...pmax(ACC[2], ACC[3]),
    ...F32X4_PMAX,
    ...set(ACC[0]),
    ...get(O),
    ...lane(0),
    ...lane(1),
    F32_MAX,
    ...lane(2),
    ...lane(3),
    F32_MAX,
    F32_MAX,
    F32_STORE,
    ...mem(),
    ...addTo(O, 4),
    ...addTo(RUN, 1),
  ];
  const row = [
    ...get(PRE),
    ...get(Q),
    ...get(RB),
    I32_MUL,
    I32_ADD,
    ...set(P),
    ...get(BIAS),
    ...set(BP),
    ...i32c(0),
    ...set(RUN),
    ...whileLtU(get(RUN), get(R), run),
    ...addTo(Q, 1),
  ];
  return funcBody(
    [
      [7, I32],
      [4, V128],
    ],
    [
      ...get(F),
      ...i32c(2),
      I32_SHL,
      ...set(RB),
      ...get(OUT),
      ...set(O),
      ...i32c(0),
      ...set(Q),
      ...whileLtU(get(Q), get(ROWS), row),
    ],
  );
}

/** filter(rows, F, pre, bias, thr, cap, cnt, cv, ci). */
export function filterBody(): number[] {
  const [ROWS, F, PRE, BIAS, THR, CAP, CNT, CV, CI] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [Q, J, P, BP, COUNT, LIM16, LIM4, CO] = [9, 10, 11, 12, 13, 14, 15, 16];
  const [T, S] = [17, 18];
  const TV = 19;
  const V = [20, 21, 22, 23];
  /** Candidate slot address (cv or ci) + CO + 4·COUNT. */
  const slot = (base: number) => [
    ...get(base),
    ...get(CO),
    I32_ADD,
    ...get(COUNT),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
  ];
  /** s = the value on the stack; when !(s < t): store it (room permitting) at column jExpr, count it. */
  const offer = (jExpr: number[]) => [
    ...set(S),
    ...get(S),
    ...get(T),
    F32_LT,
    I32_EQZ,
    IF,
    VOID,
    ...get(COUNT),
    ...get(CAP),
    I32_LT_U,
    IF,
    VOID,
    ...slot(CV),
    ...get(S),
    F32_STORE,
    ...mem(),
    ...slot(CI),
    ...jExpr,
    I32_STORE,
    ...mem(),
    END,
    ...addTo(COUNT, 1),
    END,
  ];
  const lanes = (v: number, col: number) =>
    [0, 1, 2, 3].flatMap((l) => [
      ...get(v),
      ...F32X4_EXTRACT,
      l,
      ...offer([...get(J), ...i32c(col + l), I32_ADD]),
    ]);
  const load = (v: number, i: number) => [
    ...get(P),
    ...V128_LOAD,
    ...mem(16 * i),
    ...get(BP),
    ...V128_LOAD,
    ...mem(16 * i),
    ...F32X4_ADD,
    ...set(v),
  ];
  const below = (v: number) => [...get(v), ...get(TV), ...F32X4_LT];
  const advance = (cols: number) => [...addTo(J, cols), ...addTo(P, 4 * cols), ...addTo(BP, 4 * cols)];
  const sixteen = [
    ...[0, 1, 2, 3].flatMap((i) => load(V[i], i)),
    ...below(V[0]),
    ...below(V[1]),
    ...V128_AND,
    ...below(V[2]),
    ...below(V[3]),
    ...V128_AND,
    ...V128_AND,
    ...I32X4_ALL_TRUE,
    I32_EQZ,
    IF,
    VOID,
    ...[0, 1, 2, 3].flatMap((i) => lanes(V[i], 4 * i)),
    END,
    ...advance(16),
  ];
  const four = [
    ...load(V[0], 0),
    ...below(V[0]),
    ...I32X4_ALL_TRUE,
    I32_EQZ,
    IF,
    VOID,
    ...lanes(V[0], 0),
    END,
    ...advance(4),
  ];
  const one = [
    ...get(P),
    F32_LOAD,
    ...mem(),
    ...get(BP),
    F32_LOAD,
    ...mem(),
    F32_ADD,
    ...offer(get(J)),
    ...advance(1),
  ];
  const row = [
    ...get(THR),
    ...get(Q),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    F32_LOAD,
    ...mem(),
    ...tee(T),
    ...F32X4_SPLAT,
    ...set(TV),
    ...get(PRE),
    ...get(Q),
    ...get(F),
    I32_MUL,
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...set(P),
    ...get(BIAS),
    ...set(BP),
    ...get(Q),
    ...get(CAP),
    I32_MUL,
    ...i32c(2),
    I32_SHL,
    ...set(CO),
    ...i32c(0),
    ...set(J),
    ...i32c(0),
    ...set(COUNT),
    ...whileLtU(get(J), get(LIM16), sixteen),
    ...whileLtU(get(J), get(LIM4), four),
    ...whileLtU(get(J), get(F), one),
    ...get(CNT),
    ...get(Q),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...get(COUNT),
    I32_STORE,
    ...mem(),
    ...addTo(Q, 1),
  ];
  return funcBody(
    [
      [8, I32],
      [2, F32],
      [5, V128],
    ],
    [
      ...get(F),
      ...i32c(-16),
      I32_AND,
      ...set(LIM16),
      ...get(F),
      ...i32c(-4),
      I32_AND,
      ...set(LIM4),
      ...i32c(0),
      ...set(Q),
      ...whileLtU(get(Q), get(ROWS), row),
    ],
  );
}

/** segsum(nDst, d, start, vals, srcIdx, src, bias, hasBias, dst). */
export function segsumBody(): number[] {
  const [NDST, D, START, VALS, SRC_IDX, SRC, BIAS, HAS_BIAS, DST] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const [R, E0, E1, E, RB, OFF, DP, SP, T32, T4] = [9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
  const SC = 19;
  const SV = 20;
  const ACC = [21, 22, 23, 24, 25, 26, 27, 28];
  const at4 = (base: number, i: number) => [...get(base), ...get(i), ...i32c(2), I32_SHL, I32_ADD];
  /** SP = src + srcIdx[e]·rowBytes + off. */
  const srcRow = [
    ...get(SRC),
    ...at4(SRC_IDX, E),
    I32_LOAD,
    ...mem(),
    ...get(RB),
    I32_MUL,
    I32_ADD,
    ...get(OFF),
    I32_ADD,
    ...set(SP),
  ];
  const val = [...at4(VALS, E), F32_LOAD, ...mem()];
  /** The entries of the row against `acc` registers of four columns at SP + 16i. */
  const entries = (accs: number[]) => [
    ...get(E0),
    ...set(E),
    ...whileLtU(get(E), get(E1), [
      ...val,
      ...F32X4_SPLAT,
      ...set(SV),
      ...srcRow,
      ...accs.flatMap((a, i) => [
        ...get(a),
        ...get(SV),
        ...get(SP),
        ...V128_LOAD,
        ...mem(16 * i),
        ...F32X4_MUL,
        ...F32X4_ADD,
        ...set(a),
      ]),
      ...addTo(E, 1),
    ]),
  ];
  /** Zero the accumulators, sum the entries, add the bias where there is one, store. */
  const tile = (accs: number[]) => [
    ...accs.flatMap((a) => [...V128_ZERO, ...set(a)]),
    ...entries(accs),
    ...get(HAS_BIAS),
    IF,
    VOID,
    ...accs.flatMap((a, i) => [
      ...get(a),
      ...get(BIAS),
      ...get(OFF),
      I32_ADD,
      ...V128_LOAD,
      ...mem(16 * i),
      ...F32X4_ADD,
      ...set(a),
    ]),
    END,
    ...accs.flatMap((a, i) => [...get(DP), ...get(OFF), I32_ADD, ...get(a), ...V128_STORE, ...mem(16 * i)]),
  ];
  const scalar = [
    ...f32c(0),
    ...set(SC),
    ...get(E0),
    ...set(E),
    ...whileLtU(get(E), get(E1), [
      ...get(SC),
      ...val,
      ...srcRow,
      ...get(SP),
      F32_LOAD,
      ...mem(),
      F32_MUL,
      F32_ADD,
      ...set(SC),
      ...addTo(E, 1),
    ]),
    ...get(HAS_BIAS),
    IF,
    VOID,
    ...get(SC),
    ...get(BIAS),
    ...get(OFF),
    I32_ADD,
    F32_LOAD,
    ...mem(),
    F32_ADD,
    ...set(SC),
    END,
    ...get(DP),
    ...get(OFF),
    I32_ADD,
    ...get(SC),
    F32_STORE,
    ...mem(),
  ];
  /** For each destination row r: its entries E0..E1 and DP = dst + r·rowBytes, then `body`. */
  const eachRow = (body: number[]) => [
    ...i32c(0),
    ...set(R),
    ...whileLtU(get(R), get(NDST), [
      ...at4(START, R),
      I32_LOAD,
      ...mem(),
      ...set(E0),
      ...at4(START, R),
      I32_LOAD,
      ...mem(4),
      ...set(E1),
      ...get(DST),
      ...get(R),
      ...get(RB),
      I32_MUL,
      I32_ADD,
      ...set(DP),
      ...body,
      ...addTo(R, 1),
    ]),
  ];
  // Row by row: the row's entries' source rows stay in cache across its column tiles. (Column
  // blocks outermost, to keep a block of every source row in cache instead, measured slower.)
  const blocks = eachRow([
    ...i32c(0),
    ...set(OFF),
    ...whileLtU(get(OFF), get(T32), [...tile(ACC), ...addTo(OFF, 128)]),
    ...whileLtU(get(OFF), get(T4), [...tile([ACC[0]]), ...addTo(OFF, 16)]),
    ...whileLtU(get(OFF), get(RB), [...scalar, ...addTo(OFF, 4)]),
  ]);
  return funcBody(
    [
      [10, I32],
      [1, F32],
      [9, V128],
    ],
    [
      ...get(D),
      ...i32c(2),
      I32_SHL,
      ...set(RB),
      ...get(D),
      ...i32c(-32),
      I32_AND,
      ...i32c(2),
      I32_SHL,
      ...set(T32),
      ...get(D),
      ...i32c(-4),
      I32_AND,
      ...i32c(2),
      I32_SHL,
      ...set(T4),
      ...blocks,
    ],
  );
}

// --- the per-row heaps of the selection: hv (f32) and hi (i32) hold a min-heap on rank (the root
// the worst kept: the smallest value, at an equal value the larger column).

const at4 = (base: number, i: number) => [...get(base), ...get(i), ...i32c(2), I32_SHL, I32_ADD];
const f32At = (base: number, i: number) => [...at4(base, i), F32_LOAD, ...mem()];
const i32At = (base: number, i: number) => [...at4(base, i), I32_LOAD, ...mem()];

/**
 * sift(size, hv, hi, v, j): puts (v, j) at the root of the heap's first `size` entries and
 * sifts it down, comparing values and then columns (any j, unlike `replace`, whose j ranks after
 * every kept column): heapsort's step.
 */
export function siftBody(): number[] {
  const [SIZE, HV, HI, V, J] = [0, 1, 2, 3, 4];
  const [I, L, R, W] = [5, 6, 7, 8];
  /** Entry a ranks after (is worse than) entry b. */
  const worse = (a: number[], ai: number[], b: number[], bi: number[]) => [
    ...a,
    ...b,
    F32_LT,
    ...a,
    ...b,
    F32_EQ,
    ...ai,
    ...bi,
    I32_GT_S,
    I32_AND,
    I32_OR,
  ];
  return funcBody(
    [[4, I32]],
    [
      ...i32c(0),
      ...set(I),
      BLOCK,
      VOID,
      LOOP,
      VOID,
      ...get(I),
      ...i32c(1),
      I32_SHL,
      ...i32c(1),
      I32_ADD,
      ...tee(L),
      ...get(SIZE),
      I32_GE_U,
      BR_IF,
      1,
      ...get(L),
      ...set(W),
      ...get(L),
      ...i32c(1),
      I32_ADD,
      ...tee(R),
      ...get(SIZE),
      I32_LT_U,
      IF,
      VOID,
      ...worse(f32At(HV, R), i32At(HI, R), f32At(HV, L), i32At(HI, L)),
      IF,
      VOID,
      ...get(R),
      ...set(W),
      END,
      END,
      // stop unless the worse child ranks after (v, j)
      ...worse(f32At(HV, W), i32At(HI, W), get(V), get(J)),
      I32_EQZ,
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
    ],
  );
}

/** Candidates up to which finish ranks them all (O(c²) in SIMD) rather than keeping a heap. */
const RANK_MAX = 64;

/**
 * finish(rows, k, cap, cnt, cv, ci, hv, hi, outV, outI, status): row q's top k from its
 * candidates (a size-k heap over them in column order: a later candidate enters only when
 * strictly above the root, so ties keep the lower column), then heapsort into outV/outI at q·k,
 * best first. status[q] = 0 done, 1 a candidate is NaN, 2 fewer than k or more than `cap`
 * candidates (the caller selects those rows another way).
 */
export function finishBody(push: number, replace: number, sift: number): number[] {
  const [ROWS, K, CAP, CNT, CV, CI, HV, HI, OV, OI, STATUS] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const [Q, E, C, SIZE, ST, CB, OB, N] = [11, 12, 13, 14, 15, 16, 17, 18];
  const V = 19;
  const cand = (base: number) => [...get(base), ...get(CB), I32_ADD, ...get(E), ...i32c(2), I32_SHL, I32_ADD];
  const heapAt = (base: number, n: number) => [...get(base), ...get(n), ...i32c(2), I32_SHL, I32_ADD];
  const out = (base: number) => [...get(base), ...get(OB), I32_ADD, ...get(N), ...i32c(2), I32_SHL, I32_ADD];
  const select = [
    ...i32c(0),
    ...set(SIZE),
    ...i32c(0),
    ...set(E),
    ...whileLtU(get(E), get(C), [
      ...cand(CV),
      F32_LOAD,
      ...mem(),
      ...tee(V),
      ...get(V),
      F32_NE,
      IF,
      VOID,
      ...i32c(1),
      ...set(ST),
      ...get(C),
      ...set(E), // ends the loop
      ELSE,
      ...get(SIZE),
      ...get(K),
      I32_LT_U,
      IF,
      VOID,
      ...get(SIZE),
      ...get(HV),
      ...get(HI),
      ...get(V),
      ...cand(CI),
      I32_LOAD,
      ...mem(),
      CALL,
      ...uleb(push),
      ...addTo(SIZE, 1),
      ELSE,
      ...get(V),
      ...get(HV),
      F32_LOAD,
      ...mem(),
      F32_GT,
      IF,
      VOID,
      ...get(K),
      ...get(HV),
      ...get(HI),
      ...get(V),
      ...cand(CI),
      I32_LOAD,
      ...mem(),
      CALL,
      ...uleb(replace),
      END,
      END,
      ...addTo(E, 1),
      END,
    ]),
  ];
  // pop the worst k times into the output from its end
  const heapsort = [
    ...get(K),
    ...set(N),
    ...whileLtU(i32c(0), get(N), [
      ...get(N),
      ...i32c(1),
      I32_SUB,
      ...set(N),
      ...out(OV),
      ...get(HV),
      F32_LOAD,
      ...mem(),
      F32_STORE,
      ...mem(),
      ...out(OI),
      ...get(HI),
      I32_LOAD,
      ...mem(),
      I32_STORE,
      ...mem(),
      ...get(N),
      ...get(HV),
      ...get(HI),
      ...heapAt(HV, N),
      F32_LOAD,
      ...mem(),
      ...heapAt(HI, N),
      I32_LOAD,
      ...mem(),
      CALL,
      ...uleb(sift),
    ]),
  ];
  // Up to RANK_MAX candidates: each one's rank (how many rank before it: larger, or equal at a
  // lower column, i.e. earlier in the list) counted four at a time; those ranked below k go to
  // their place. No heap, and no branch on the data but the placement.
  const [I, JP, R, JV, IV, CV4, X, V4S, ACC] = [20, 21, 22, 23, 24, 25, 26, 27, 28];
  const rankLane = (l: number) => [...get(ACC), ...I32X4_EXTRACT, l];
  const rank = [
    // a NaN among the candidates: the caller orders the row
    ...i32c(0),
    ...set(E),
    ...whileLtU(get(E), get(C), [
      ...cand(CV),
      F32_LOAD,
      ...mem(),
      ...tee(V),
      ...get(V),
      F32_NE,
      IF,
      VOID,
      ...i32c(1),
      ...set(ST),
      END,
      ...addTo(E, 1),
    ]),
    ...get(ST),
    I32_EQZ,
    IF,
    VOID,
    ...get(C),
    ...I32X4_SPLAT,
    ...set(CV4),
    ...i32c(0),
    ...set(I),
    ...whileLtU(get(I), get(C), [
      ...get(CV),
      ...get(CB),
      I32_ADD,
      ...get(I),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      F32_LOAD,
      ...mem(),
      ...tee(V),
      ...F32X4_SPLAT,
      ...set(V4S),
      ...get(I),
      ...I32X4_SPLAT,
      ...set(IV),
      ...V128_ZERO,
      ...set(ACC),
      ...i32x4c([0, 1, 2, 3]),
      ...set(JV),
      ...get(CV),
      ...get(CB),
      I32_ADD,
      ...set(JP),
      ...i32c(0),
      ...set(E),
      ...whileLtU(get(E), get(C), [
        ...get(JP),
        ...V128_LOAD,
        ...mem(),
        ...tee(X),
        ...get(V4S),
        ...F32X4_GT,
        ...get(X),
        ...get(V4S),
        ...F32X4_EQ,
        ...get(JV),
        ...get(IV),
        ...I32X4_LT_S,
        ...V128_AND,
        ...V128_OR,
        ...get(JV),
        ...get(CV4),
        ...I32X4_LT_S,
        ...V128_AND,
        ...set(X),
        ...get(ACC),
        ...get(X),
        ...I32X4_SUB,
        ...set(ACC),
        ...get(JV),
        ...i32x4c([4, 4, 4, 4]),
        ...I32X4_ADD,
        ...set(JV),
        ...addTo(JP, 16),
        ...addTo(E, 4),
      ]),
      ...rankLane(0),
      ...rankLane(1),
      I32_ADD,
      ...rankLane(2),
      ...rankLane(3),
      I32_ADD,
      I32_ADD,
      ...tee(R),
      ...get(K),
      I32_LT_U,
      IF,
      VOID,
      ...get(OV),
      ...get(OB),
      I32_ADD,
      ...get(R),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      ...get(V),
      F32_STORE,
      ...mem(),
      ...get(OI),
      ...get(OB),
      I32_ADD,
      ...get(R),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      ...get(CI),
      ...get(CB),
      I32_ADD,
      ...get(I),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      I32_LOAD,
      ...mem(),
      I32_STORE,
      ...mem(),
      END,
      ...addTo(I, 1),
    ]),
    END,
  ];
  return funcBody(
    [
      [8, I32],
      [1, F32],
      [3, I32],
      [3, V128],
      [2, V128],
      [1, V128],
    ],
    [
      ...i32c(0),
      ...set(Q),
      ...whileLtU(get(Q), get(ROWS), [
        ...at4(CNT, Q),
        I32_LOAD,
        ...mem(),
        ...set(C),
        ...get(Q),
        ...get(CAP),
        I32_MUL,
        ...i32c(2),
        I32_SHL,
        ...set(CB),
        ...get(Q),
        ...get(K),
        I32_MUL,
        ...i32c(2),
        I32_SHL,
        ...set(OB),
        ...i32c(0),
        ...set(ST),
        ...get(C),
        ...get(K),
        I32_LT_S,
        ...get(C),
        ...get(CAP),
        I32_GT_S,
        I32_OR,
        IF,
        VOID,
        ...i32c(2),
        ...set(ST),
        ELSE,
        ...get(C),
        ...i32c(RANK_MAX),
        I32_LE_U,
        IF,
        VOID,
        ...rank,
        ELSE,
        ...select,
        ...get(ST),
        I32_EQZ,
        IF,
        VOID,
        ...heapsort,
        END,
        END,
        END,
        ...at4(STATUS, Q),
        ...get(ST),
        I32_STORE,
        ...mem(),
        ...addTo(Q, 1),
      ]),
    ],
  );
}

/**
 * selectRows(n, F, R, C, k, cap, pre, bias, maxima, thr, cnt, cv, ci, hv, hi, outV, outI,
 * status): the whole thresholded selection of n rows (rowmax, kth, filter, finish, the functions
 * at the given indices), one call per block of rows and thread.
 */
export function selectRowsBody(rowmax: number, kth: number, filter: number, finish: number): number[] {
  const [N, F, R, C, K, CAP, PRE, BIAS, MAX, THR, CNT, CV, CI, HV, HI, OV, OI, STATUS] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
  ];
  const call = (fn: number, args: number[]) => [...args.flatMap((a) => get(a)), CALL, ...uleb(fn)];
  return funcBody(
    [],
    [
      ...call(rowmax, [N, F, R, C, PRE, BIAS, MAX]),
      ...call(kth, [N, R, K, MAX, HV, HI, THR]),
      ...call(filter, [N, F, PRE, BIAS, THR, CAP, CNT, CV, CI]),
      ...call(finish, [N, K, CAP, CNT, CV, CI, HV, HI, OV, OI, STATUS]),
    ],
  );
}

/** Halvings of the threshold search: the bracket ends within 2⁻¹² (relative) of the k-th largest. */
const BISECTIONS = 20;

/**
 * kthBisect(rows, R, k, maxima, _hv, _hi, thr): thr[q] = a value at least k of row q's R run
 * maxima reach, within 2⁻¹² of the k-th largest (from below): a bisection on the maxima's bit
 * patterns (non-negative floats order as their bits), each step counting the maxima at or above
 * the midpoint four at a time, without a data-dependent branch. +∞ where that value is 0 (the
 * row takes the heap over all its columns). The heap arguments are unused (kth's signature).
 */
export function kthBisectBody(): number[] {
  const [ROWS, R, K, MAX, , , THR] = [0, 1, 2, 3, 4, 5, 6];
  const [Q, P, IT, LO, HI, MID, CNT, J, V4] = [7, 8, 9, 10, 11, 12, 13, 14, 15];
  const [ACC, MIDV] = [16, 17];
  const lane = (l: number) => [...get(ACC), ...I32X4_EXTRACT, l];
  const step = [
    ...get(LO),
    ...get(HI),
    I32_ADD,
    ...i32c(1),
    I32_SHR_U,
    ...tee(MID),
    ...I32X4_SPLAT,
    ...set(MIDV),
    ...V128_ZERO,
    ...set(ACC),
    ...i32c(0),
    ...set(J),
    ...whileLtU(get(J), get(V4), [
      ...get(ACC),
      ...get(P),
      ...get(J),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      ...V128_LOAD,
      ...mem(),
      ...get(MIDV),
      ...I32X4_GE_S,
      ...I32X4_SUB,
      ...set(ACC),
      ...addTo(J, 4),
    ]),
    ...lane(0),
    ...lane(1),
    I32_ADD,
    ...lane(2),
    ...lane(3),
    I32_ADD,
    I32_ADD,
    ...set(CNT),
    ...whileLtU(get(J), get(R), [
      ...get(CNT),
      ...get(P),
      ...get(J),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      I32_LOAD,
      ...mem(),
      ...get(MID),
      I32_GE_S,
      I32_ADD,
      ...set(CNT),
      ...addTo(J, 1),
    ]),
    // count ≥ k: the answer is at or above mid; else below
    ...get(MID),
    ...get(LO),
    ...get(CNT),
    ...get(K),
    I32_GE_S,
    SELECT,
    ...get(HI),
    ...get(MID),
    ...get(CNT),
    ...get(K),
    I32_GE_S,
    SELECT,
    ...set(HI),
    ...set(LO),
    ...addTo(IT, 1),
  ];
  return funcBody(
    [
      [9, I32],
      [2, V128],
    ],
    [
      ...get(R),
      ...i32c(-4),
      I32_AND,
      ...set(V4),
      ...get(MAX),
      ...set(P),
      ...i32c(0),
      ...set(Q),
      ...whileLtU(get(Q), get(ROWS), [
        ...i32c(0),
        ...set(LO),
        ...i32c(0x7f800001),
        ...set(HI),
        ...i32c(0),
        ...set(IT),
        ...whileLtU(get(IT), i32c(BISECTIONS), step),
        ...at4(THR, Q),
        ...get(LO),
        F32_REINTERPRET_I32,
        ...f32c(Number.POSITIVE_INFINITY),
        ...get(LO),
        SELECT,
        F32_STORE,
        ...mem(),
        ...get(P),
        ...get(R),
        ...i32c(2),
        I32_SHL,
        I32_ADD,
        ...set(P),
        ...addTo(Q, 1),
      ]),
    ],
  );
}
