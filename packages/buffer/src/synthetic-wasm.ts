/**
 * The synthetic source's sums in WebAssembly SIMD: each sample row is Σ_a c_a·g_{i_a} over its
 * active ground-truth features, computed exactly as the TypeScript loop does (the row starts at
 * zero; each term is added as `out += c·g` in float64 and rounded to float32), two float64 lanes
 * at a time, so the values are bit for bit those of the TypeScript path. A whole batch goes in
 * one call: its active lists and coefficients are laid out in the module's memory first, and the
 * sums stay there, where the source's noise stream adds its normals before they are copied out.
 *
 * The loop is part of buffer's one module (buffer-wasm.ts, assembled with `@dictlearn/core/wasm`).
 * Where WebAssembly SIMD is unavailable the source keeps its TypeScript loop.
 *
 * @module
 */
import {
  addTo,
  BLOCK,
  BR,
  BR_IF,
  call,
  DROP,
  ELSE,
  END,
  F32_LOAD,
  F32X4_DEMOTE_F64X2_ZERO,
  F64,
  F64_ADD,
  F64_CEIL,
  F64_CONVERT_I32_S,
  F64_DIV,
  F64_EQ,
  F64_FLOOR,
  F64_GE,
  F64_GT,
  F64_LE,
  F64_LOAD,
  F64_LT,
  F64_MUL,
  F64_PROMOTE_F32,
  F64_STORE,
  F64_SUB,
  F64X2_ADD,
  F64X2_MUL,
  F64X2_PROMOTE_LOW_F32X4,
  F64X2_SPLAT,
  F64X2_SUB,
  f64c,
  funcBody,
  get,
  I32,
  I32_ADD,
  I32_GT_U,
  I32_LOAD,
  I32_LT_U,
  I32_MUL,
  I32_SHL,
  I32_STORE,
  I32_TRUNC_F64_S,
  IF,
  i32c,
  LOOP,
  memAligned,
  set,
  shuffle32,
  V128,
  V128_LOAD,
  V128_STORE,
  V128_ZERO,
  VOID,
  whileLtU,
} from '@dictlearn/core/wasm';
import type { BufferWasm } from './buffer-wasm.js';
import { LOG_MISS_TABLE, PHI_MIN, PHI_N, PHI_STEPS, PHI_TABLE } from './normal-cdf.js';
import { CODE_TAG, FN, sampleCounter, uniformNext, uniformPositiveNext } from './wasm-layout.js';

/**
 * sums(rows, d, offs, idx, coef, g, out): for each row r, out[r] (d float32, d a multiple of 4)
 * = 0, then for a in offs[r] .. offs[r+1]: out[r] ← f32(f64(out[r]) + coef[a]·f64(g[idx[a]])).
 * offs, idx: int32; coef: float64; g: float32 rows of d; all byte addresses.
 */
export function sumsBody(): number[] {
  const [ROWS, D, OFFS, IDX, COEF, G, OUT] = [0, 1, 2, 3, 4, 5, 6];
  const [R, DB, O, A, AEND, GP, K] = [7, 8, 9, 10, 11, 12, 13];
  const [C, X, Y, LO] = [14, 15, 16, 17];
  /** promote two float32 lanes of local v (low pair, or high pair moved down) to float64 */
  const half = (v: number, high: boolean) => [
    ...get(v),
    ...(high ? [...get(v), ...shuffle32([2, 3, 2, 3])] : []),
    ...F64X2_PROMOTE_LOW_F32X4,
  ];
  /** f64(x) + c·f64(y) for one pair of lanes, demoted to two float32 in the low lanes */
  const term = (high: boolean) => [
    ...half(X, high),
    ...get(C),
    ...half(Y, high),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...F32X4_DEMOTE_F64X2_ZERO,
  ];
  const body = [
    ...get(DB),
    ...get(R),
    I32_MUL,
    ...get(OUT),
    I32_ADD,
    ...set(O),
    ...i32c(0),
    ...set(K),
    ...whileLtU(get(K), get(DB), [
      ...get(O),
      ...get(K),
      I32_ADD,
      ...V128_ZERO,
      ...V128_STORE,
      ...memAligned(4),
      ...addTo(K, 16),
    ]),
    // a runs over offs[r] .. offs[r+1]
    ...get(OFFS),
    ...get(R),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    I32_LOAD,
    ...memAligned(2),
    ...set(A),
    ...get(OFFS),
    ...get(R),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    I32_LOAD,
    ...memAligned(2, 4),
    ...set(AEND),
    ...whileLtU(get(A), get(AEND), [
      // gp = g + idx[a]·d·4; c = coef[a] in both lanes
      ...get(IDX),
      ...get(A),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      I32_LOAD,
      ...memAligned(2),
      ...get(DB),
      I32_MUL,
      ...get(G),
      I32_ADD,
      ...set(GP),
      ...get(COEF),
      ...get(A),
      ...i32c(3),
      I32_SHL,
      I32_ADD,
      F64_LOAD,
      ...memAligned(3),
      ...F64X2_SPLAT,
      ...set(C),
      ...i32c(0),
      ...set(K),
      ...whileLtU(get(K), get(DB), [
        ...get(O),
        ...get(K),
        I32_ADD,
        ...V128_LOAD,
        ...memAligned(4),
        ...set(X),
        ...get(GP),
        ...get(K),
        I32_ADD,
        ...V128_LOAD,
        ...memAligned(4),
        ...set(Y),
        ...term(false),
        ...set(LO),
        ...get(O),
        ...get(K),
        I32_ADD,
        ...get(LO),
        ...term(true),
        ...shuffle32([0, 1, 4, 5]),
        ...V128_STORE,
        ...memAligned(4),
        ...addTo(K, 16),
      ]),
      ...addTo(A, 1),
    ]),
    ...addTo(R, 1),
  ];
  const code = [
    ...get(D),
    ...i32c(2),
    I32_SHL,
    ...set(DB),
    ...i32c(0),
    ...set(R),
    ...whileLtU(get(R), get(ROWS), body),
  ];
  return funcBody(
    [
      [7, I32],
      [4, V128],
    ],
    code,
  );
}

/** The float64 at base + 8·i / the int32 at base + 4·i (+ offset bytes); i is code pushing an i32. */
const f64At = (base: number, i: number[]) => [
  ...get(base),
  ...i,
  ...i32c(3),
  I32_SHL,
  I32_ADD,
  F64_LOAD,
  ...memAligned(3),
];
const i32At = (base: number, i: number[], offset = 0) => [
  ...get(base),
  ...i,
  ...i32c(2),
  I32_SHL,
  I32_ADD,
  I32_LOAD,
  ...memAligned(2, offset),
];
/** cond ? 1 : other (other evaluated, with its draw, only when cond is false) */
const orElse = (cond: number[], other: number[]) => [...cond, IF, I32, ...i32c(1), ELSE, ...other, END];

/**
 * Locals every code-drawing function has (see {@link codeRows}): its first seven parameters are
 * rows, lo, hi, offs, idx, coef and capacity.
 */
interface CodeLocals {
  ROWS: number;
  LO0: number;
  HI0: number;
  OFFS: number;
  IDX: number;
  COEF: number;
  CAPACITY: number;
  NF: number;
  PRODUCT: number;
  CHUNK: number;
  R: number;
  LO: number;
  USED: number;
  BASE: number;
  A: number;
  /** The feature a firing test is about. */
  J: number;
}
const FIRST_PARAMS = { ROWS: 0, LO0: 1, HI0: 2, OFFS: 3, IDX: 4, COEF: 5, CAPACITY: 6 };

/** Where `fires` (an i32 on the stack) holds: idx[used++] = j. */
const fire = (l: CodeLocals) => [
  IF,
  VOID,
  ...get(l.IDX),
  ...get(l.USED),
  ...i32c(2),
  I32_SHL,
  I32_ADD,
  ...get(l.J),
  I32_STORE,
  ...memAligned(2),
  ...addTo(l.USED, 1),
  END,
];

/**
 * Geometric skips from feature j to `endJ` (exclusive): j += ⌊log u / logMiss⌋ (in float64, so a
 * huge skip leaves the block instead of wrapping), then `test` (an i32: whether j fires, with its
 * own draws) and j + 1, as the TypeScript's `for (;;)` loops.
 */
const skips = (l: CodeLocals, endJ: number, logMiss: number, jf: number, test: number[]) => [
  BLOCK,
  VOID,
  LOOP,
  VOID,
  ...get(l.J),
  F64_CONVERT_I32_S,
  ...uniformPositiveNext,
  ...call(FN.log),
  ...get(logMiss),
  F64_DIV,
  F64_FLOOR,
  F64_ADD,
  ...set(jf),
  ...get(jf),
  ...get(endJ),
  F64_CONVERT_I32_S,
  F64_GE,
  BR_IF,
  1,
  ...get(jf),
  I32_TRUNC_F64_S,
  ...set(l.J),
  ...test,
  ...fire(l),
  ...addTo(l.J, 1),
  BR,
  0,
  END,
  END,
];

/**
 * The rows of a code-drawing function: for each sample n = hi·2³² + lo + r, its code stream
 * restarted (counter (·, n mod 2³², ⌊n / 2³²⌋, 1), the first refill `chunk` blocks), `decide`
 * (which fires features through {@link fire}), one coefficient per firing feature (a uniform, or
 * the product of two), and offs[r + 1]. A row starts only while numFeatures entries are left of
 * `capacity`; returns the rows done.
 */
function codeRows(l: CodeLocals, decide: number[]): number[] {
  const coefficients = whileLtU(get(l.A), get(l.USED), [
    ...get(l.COEF),
    ...get(l.A),
    ...i32c(3),
    I32_SHL,
    I32_ADD,
    ...get(l.PRODUCT),
    IF,
    F64,
    ...uniformNext,
    ...uniformNext,
    F64_MUL,
    ELSE,
    ...uniformNext,
    END,
    F64_STORE,
    ...memAligned(3),
    ...addTo(l.A, 1),
  ]);
  const row = [
    // stop before a row that might not fit
    ...get(l.USED),
    ...get(l.NF),
    I32_ADD,
    ...get(l.CAPACITY),
    I32_GT_U,
    BR_IF,
    1,
    ...sampleCounter(l.LO0, l.HI0, l.R, l.LO, CODE_TAG),
    ...get(l.CHUNK),
    ...call(FN.reset),
    ...get(l.USED),
    ...set(l.BASE),
    ...decide,
    ...get(l.BASE),
    ...set(l.A),
    ...coefficients,
    ...get(l.OFFS),
    ...get(l.R),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...get(l.USED),
    I32_STORE,
    ...memAligned(2, 4),
    ...addTo(l.R, 1),
  ];
  return [
    ...get(l.OFFS),
    ...i32c(0),
    I32_STORE,
    ...memAligned(2),
    ...i32c(0),
    ...set(l.USED),
    ...i32c(0),
    ...set(l.R),
    ...whileLtU(get(l.R), get(l.ROWS), row),
    ...get(l.R),
  ];
}

/**
 * codes(rows, lo, hi, offs, idx, coef, capacity, p, starts, bounds, logMiss, blocks, numFeatures,
 * product, chunk) → rows done: the independent firing decisions and coefficients of samples
 * n = hi·2³² + lo + r, as `SyntheticSource`'s TypeScript draws them, into compressed rows
 * (offs[0] = 0, row r's features idx[offs[r] …] increasing and coef[offs[r] …]). Each sample's
 * stream is read through the module's `reset` and `next` (see {@link codeRows}); its skips take
 * the imported `log`. p, bounds, logMiss: float64 (per feature; per block); starts: int32
 * (blocks + 1 block starts). The call may return early, with fewer rows.
 */
export function codesBody(): number[] {
  // parameters 0–6: see CodeLocals
  const [P, STARTS, BOUNDS, LOGMISS, NB, NF, PRODUCT, CHUNK] = Array.from({ length: 8 }, (_, k) => 7 + k);
  const [R, LO, USED, BASE, B, J, END_J, A] = [15, 16, 17, 18, 19, 20, 21, 22];
  const [BOUND, LM, PJ, JF] = [23, 24, 25, 26];
  const l: CodeLocals = { ...FIRST_PARAMS, NF, PRODUCT, CHUNK, R, LO, USED, BASE, A, J };
  // bound ≥ 1: one test per feature, p[j] ≥ 1 || u < p[j]
  const direct = whileLtU(get(J), get(END_J), [
    ...f64At(P, get(J)),
    ...set(PJ),
    ...orElse([...get(PJ), ...f64c(1), F64_GE], [...uniformNext, ...get(PJ), F64_LT]),
    ...fire(l),
    ...addTo(J, 1),
  ]);
  // 0 < bound < 1: geometric skips, thinned by p[j] / bound
  const thinned = [
    ...f64At(P, get(J)),
    ...set(PJ),
    ...orElse(
      [...get(PJ), ...get(BOUND), F64_EQ],
      [...uniformNext, ...get(BOUND), F64_MUL, ...get(PJ), F64_LT],
    ),
  ];
  const block = [
    ...f64At(BOUNDS, get(B)),
    ...set(BOUND),
    ...i32At(STARTS, get(B)),
    ...set(J),
    ...i32At(STARTS, get(B), 4),
    ...set(END_J),
    ...get(BOUND),
    ...f64c(1),
    F64_GE,
    IF,
    VOID,
    ...direct,
    ELSE,
    // bound 0 (probabilities that underflowed): one draw, as the TypeScript's skip takes
    ...get(BOUND),
    ...f64c(0),
    F64_LE,
    IF,
    VOID,
    ...call(FN.next),
    DROP,
    ELSE,
    ...f64At(LOGMISS, get(B)),
    ...set(LM),
    ...skips(l, END_J, LM, JF, thinned),
    END,
    END,
    ...addTo(B, 1),
  ];
  const decide = [...i32c(0), ...set(B), ...whileLtU(get(B), get(NB), block)];
  return funcBody(
    [
      [8, I32],
      [4, F64],
    ],
    codeRows(l, decide),
  );
}

/** Features per block of the correlated draws (`SyntheticSource`'s too). */
export const CORRELATED_BLOCK = 8;
/** Above this bound a block's features are tested one by one (cheaper than geometric skips). */
export const DIRECT_BOUND = 0.25;

/**
 * correlatedCodes(rows, lo, hi, offs, idx, coef, capacity, loadings, thresholds, rank,
 * numFeatures, √ρ, 1/√(1−ρ), product, chunk, m, eta, phi, logMiss) → rows done: the Gaussian
 * copula's firing decisions and coefficients, as `SyntheticSource`'s TypeScript draws them (see
 * its `#drawCorrelated`), into compressed rows as {@link codesBody} does. Per sample: η ~
 * N(0, I_rank) from the stream (the ziggurat through `normalSlow`, which takes the fast path
 * first); per block of 8 features, aᵢ = (tᵢ − √ρ·(Lη)ᵢ)/√(1−ρ) (into m, float64), the bound of
 * the block's largest Φ(aᵢ) from Φ's table, then one uniform per feature (bound ≥ 1/4) or
 * geometric skips thinned against the bound; a decision v < Φ(a) is settled by the table, and by
 * the imported `cdf` between two tabulated values. loadings: float32 [rank, numFeatures];
 * thresholds, m (numFeatures), eta (rank), phi (1025), logMiss (1026): float64.
 */
export function correlatedCodesBody(): number[] {
  // parameters 0–6: see CodeLocals
  const [L, T, RANK, NF, SR, INV, PRODUCT, CHUNK, M, ETA, PHI, LOGMISS] = Array.from(
    { length: 12 },
    (_, k) => 7 + k,
  );
  const [R, LO, USED, BASE, B, J, END_J, A, K, AT, I] = Array.from({ length: 11 }, (_, k) => 19 + k);
  const [E0, LI, AV, TOP, BOUND, LM, JF, KF, V, X] = Array.from({ length: 10 }, (_, k) => 30 + k);
  const [LI2, SR2, INV2, E02] = [40, 41, 42, 43];
  const l: CodeLocals = { ...FIRST_PARAMS, NF, PRODUCT, CHUNK, R, LO, USED, BASE, A, J };
  const phiAt = (k: number[]) => f64At(PHI, k);
  /** (x − PHI_MIN)·PHI_STEPS, of local x */
  const scaled = (x: number) => [...get(x), ...f64c(PHI_MIN), F64_SUB, ...f64c(PHI_STEPS), F64_MUL];
  const byCdf = [...get(V), ...get(X), ...call(FN.cdf), F64_LT];
  /** whether v < Φ(x) (locals), `belowNormalCdf`: the table first, Φ itself between two entries */
  const below = [
    ...scaled(X),
    F64_FLOOR,
    ...set(KF),
    ...get(KF),
    ...f64c(0),
    F64_LT,
    IF,
    I32,
    ...get(V),
    ...phiAt(i32c(0)),
    F64_GE,
    IF,
    I32,
    ...i32c(0),
    ELSE,
    ...byCdf,
    END,
    ELSE,
    ...get(KF),
    ...f64c(PHI_N),
    F64_GE,
    IF,
    I32,
    ...orElse([...get(V), ...phiAt(i32c(PHI_N)), F64_LT], byCdf),
    ELSE,
    ...get(KF),
    I32_TRUNC_F64_S,
    ...set(K),
    ...orElse(
      [...get(V), ...phiAt(get(K)), F64_LT],
      [
        ...get(V),
        ...phiAt([...get(K), ...i32c(1), I32_ADD]),
        F64_GE,
        IF,
        I32,
        ...i32c(0),
        ELSE,
        ...byCdf,
        END,
      ],
    ),
    END,
    END,
  ];
  // η: rank normals
  const eta = [
    ...i32c(0),
    ...set(K),
    ...whileLtU(get(K), get(RANK), [
      ...get(ETA),
      ...get(K),
      ...i32c(3),
      I32_SHL,
      I32_ADD,
      ...call(FN.next),
      ...call(FN.normalSlow),
      F64_STORE,
      ...memAligned(3),
      ...addTo(K, 1),
    ]),
    ...f64At(ETA, i32c(0)),
    ...set(E0),
    ...get(E0),
    ...F64X2_SPLAT,
    ...set(E02),
  ];
  // aᵢ for i in the block, into m: two features at a time in float64 lanes (each lane's
  // operations are the scalar ones, in the same order), then one more where the block is odd
  /**
   * aᵢ of feature i (local I) and, in float64 lanes, i + 1 too, into m: li = L[i]·η₀ + L[F + i]·η₁
   * + … in that order, then a = (t[i] − √ρ·li)·(1/√(1−ρ)). Each lane's operations are the scalar
   * ones, in the same order.
   */
  const argument = (lanes: 1 | 2) => {
    const two = lanes === 2;
    const [li, e0, sr, inv] = two ? [LI2, E02, SR2, INV2] : [LI, E0, SR, INV];
    const [mul, add, sub] = two ? [F64X2_MUL, F64X2_ADD, F64X2_SUB] : [[F64_MUL], [F64_ADD], [F64_SUB]];
    const loadL = (at: number) => [
      ...get(L),
      ...get(at),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      ...(two
        ? [...V128_LOAD, ...memAligned(2), ...F64X2_PROMOTE_LOW_F32X4]
        : [F32_LOAD, ...memAligned(2), F64_PROMOTE_F32]),
    ];
    const at8 = (base: number) => [...get(base), ...get(I), ...i32c(3), I32_SHL, I32_ADD];
    return [
      ...loadL(I),
      ...get(e0),
      ...mul,
      ...set(li),
      ...i32c(1),
      ...set(K),
      ...get(NF),
      ...get(I),
      I32_ADD,
      ...set(AT),
      ...whileLtU(get(K), get(RANK), [
        ...get(li),
        ...loadL(AT),
        ...f64At(ETA, get(K)),
        ...(two ? F64X2_SPLAT : []),
        ...mul,
        ...add,
        ...set(li),
        ...addTo(K, 1),
        ...get(AT),
        ...get(NF),
        I32_ADD,
        ...set(AT),
      ]),
      ...at8(M),
      ...at8(T),
      ...(two ? [...V128_LOAD, ...memAligned(3)] : [F64_LOAD, ...memAligned(3)]),
      ...get(sr),
      ...get(li),
      ...mul,
      ...sub,
      ...get(inv),
      ...mul,
      ...(two ? V128_STORE : [F64_STORE]),
      ...memAligned(3),
    ];
  };
  // two features at a time, then one more where the block is odd
  const pairs = whileLtU([...get(I), ...i32c(1), I32_ADD], get(END_J), [...argument(2), ...addTo(I, 2)]);
  const single = [...get(I), ...get(END_J), I32_LT_U, IF, VOID, ...argument(1), END];
  // top = the block's largest a, taken in order as the TypeScript's `if (a > top) top = a`
  const top = [
    ...f64c(Number.NEGATIVE_INFINITY),
    ...set(TOP),
    ...get(B),
    ...set(I),
    ...whileLtU(get(I), get(END_J), [
      ...f64At(M, get(I)),
      ...set(AV),
      ...get(AV),
      ...get(TOP),
      F64_GT,
      IF,
      VOID,
      ...get(AV),
      ...set(TOP),
      END,
      ...addTo(I, 1),
    ]),
  ];
  const args = [...get(B), ...set(I), ...pairs, ...single, ...top];
  // k = ⌈(top − PHI_MIN)·PHI_STEPS⌉ within 0 … PHI_N + 1; bound = Φ's entry k (1 past the table)
  const bound = [
    ...scaled(TOP),
    F64_CEIL,
    ...set(KF),
    ...get(KF),
    ...f64c(0),
    F64_LE,
    IF,
    I32,
    ...i32c(0),
    ELSE,
    ...get(KF),
    ...f64c(PHI_N),
    F64_GT,
    IF,
    I32,
    ...i32c(PHI_N + 1),
    ELSE,
    ...get(KF),
    I32_TRUNC_F64_S,
    END,
    END,
    ...set(K),
    ...get(K),
    ...i32c(PHI_N),
    I32_GT_U,
    IF,
    F64,
    ...f64c(1),
    ELSE,
    ...phiAt(get(K)),
    END,
    ...set(BOUND),
  ];
  const test = (u: number[]) => [...u, ...set(V), ...f64At(M, get(J)), ...set(X), ...below];
  const block = [
    ...get(B),
    ...i32c(CORRELATED_BLOCK),
    I32_ADD,
    ...set(END_J),
    ...get(END_J),
    ...get(NF),
    I32_GT_U,
    IF,
    VOID,
    ...get(NF),
    ...set(END_J),
    END,
    ...args,
    ...bound,
    ...get(B),
    ...set(J),
    ...get(BOUND),
    ...f64c(DIRECT_BOUND),
    F64_GE,
    IF,
    VOID,
    ...whileLtU(get(J), get(END_J), [...test(uniformNext), ...fire(l), ...addTo(J, 1)]),
    ELSE,
    ...f64At(LOGMISS, get(K)),
    ...set(LM),
    ...skips(l, END_J, LM, JF, test([...uniformNext, ...get(BOUND), F64_MUL])),
    END,
    ...get(END_J),
    ...set(B),
  ];
  const decide = [...eta, ...i32c(0), ...set(B), ...whileLtU(get(B), get(NF), block)];
  const splats = [...get(SR), ...F64X2_SPLAT, ...set(SR2), ...get(INV), ...F64X2_SPLAT, ...set(INV2)];
  return funcBody(
    [
      [11, I32],
      [10, F64],
      [4, V128],
    ],
    [...splats, ...codeRows(l, decide)],
  );
}

/** Sparse codes in compressed rows (float64 coefficients, as drawn). */
export interface CodeLists {
  offs: Int32Array;
  idx: Int32Array;
  coef: Float64Array;
}

/** Above this many bytes of memory the source keeps its TypeScript loop. */
const MAX_BYTES = 2 ** 30;
const align = (n: number) => Math.ceil(n / 16) * 16;

/**
 * Where a source's tables lie in its instance's memory and how a batch is drawn there: plain
 * numbers (byte addresses), so a worker thread given a copy of the memory up to `listsAt` draws
 * the same rows with the same plan (synthetic-threads.ts).
 */
export interface DrawPlan {
  /** Width of a sample (a multiple of 4). */
  d: number;
  numFeatures: number;
  /** The ground-truth rows, [numFeatures, d] float32. */
  gAt: number;
  /**
   * Independent codes' firing tables (see {@link FiringTables}): p, block starts, bounds,
   * log-misses; correlated codes' (see {@link CorrelatedTables}): the loadings, the thresholds,
   * Φ's table and its log-misses, and room for m and η.
   */
  pAt: number;
  startsAt: number;
  boundsAt: number;
  logMissAt: number;
  blocks: number;
  /** 1 where the codes are correlated (then the fields below are used, not the four above). */
  correlated: number;
  loadingsAt: number;
  thresholdsAt: number;
  phiAt: number;
  phiLogMissAt: number;
  mAt: number;
  etaAt: number;
  rank: number;
  /** √ρ and 1/√(1 − ρ). */
  sqrtRho: number;
  invSqrtOneMinusRho: number;
  /** 1 where a coefficient is the product of two uniforms. */
  product: number;
  /** Blocks of a code stream's first refill. */
  chunk: number;
  /** List entries a call's codes hold per row (and a row's worth more). */
  entriesPerRow: number;
  /** First free byte after the tables: a batch's rows go here, its code lists after them. */
  listsAt: number;
  /** The most bytes the memory may grow to. */
  maxBytes: number;
}

/** The instance's functions the draw below calls (on whichever thread holds the instance). */
export interface DrawExports {
  codes: BufferWasm['codes'];
  correlatedCodes: BufferWasm['correlatedCodes'];
  sums: BufferWasm['sums'];
  noise: BufferWasm['noise'];
  reserve(bytes: number): void;
}

// The three functions below run on worker threads too, from their source text: they may use
// their arguments, each other and the language's globals, nothing else of this module.

/**
 * Byte addresses of offs, idx and coef of the code lists of `rows` rows with `capacity` entries,
 * placed after `rowBytes` bytes of rows at `plan.listsAt` (the memory grown to hold them).
 */
export function listsLayout(
  ex: DrawExports,
  plan: DrawPlan,
  rows: number,
  capacity: number,
  rowBytes: number,
): number[] {
  const at = [plan.listsAt + Math.ceil(rowBytes / 16) * 16];
  for (const b of [(rows + 1) * 4, capacity * 4, capacity * 8])
    at.push(at[at.length - 1] + Math.ceil(b / 16) * 16);
  if (at[3] > plan.maxBytes) throw new RangeError('synthetic batch too large for the WebAssembly kernels');
  ex.reserve(at[3]);
  return at;
}

/**
 * The codes (independent or correlated, as the plan says) of up to `rows` samples from `start`, into lists after `rowBytes` bytes
 * of rows: [offs, idx, coef, rows done] (a call does as many rows as its lists hold, at least one).
 */
export function drawCodes(
  ex: DrawExports,
  plan: DrawPlan,
  start: number,
  rows: number,
  rowBytes: number,
): number[] {
  const capacity = Math.ceil(plan.entriesPerRow * rows) + plan.numFeatures + 16;
  const at = listsLayout(ex, plan, rows, capacity, rowBytes);
  const [lo, hi] = [start >>> 0, Math.floor(start / 2 ** 32)];
  const done = plan.correlated
    ? ex.correlatedCodes(
        rows,
        lo,
        hi,
        at[0],
        at[1],
        at[2],
        capacity,
        plan.loadingsAt,
        plan.thresholdsAt,
        plan.rank,
        plan.numFeatures,
        plan.sqrtRho,
        plan.invSqrtOneMinusRho,
        plan.product,
        plan.chunk,
        plan.mAt,
        plan.etaAt,
        plan.phiAt,
        plan.phiLogMissAt,
      )
    : ex.codes(
        rows,
        lo,
        hi,
        at[0],
        at[1],
        at[2],
        capacity,
        plan.pAt,
        plan.startsAt,
        plan.boundsAt,
        plan.logMissAt,
        plan.blocks,
        plan.numFeatures,
        plan.product,
        plan.chunk,
      );
  // a row always fits (the lists hold numFeatures more entries than the estimate): no row is a bug
  if (done < 1) throw new RangeError(`synthetic codes: no row fit in ${capacity} list entries`);
  return [at[0], at[1], at[2], done];
}

/**
 * Samples `start` … `start + count − 1` with codes drawn here, plus noise of scale
 * `sigma` (none when 0), as [count, d] float32 rows at `plan.listsAt`.
 */
export function drawRows(ex: DrawExports, plan: DrawPlan, start: number, count: number, sigma: number): void {
  const d = plan.d;
  for (let done = 0; done < count; ) {
    const [offs, idx, coef, rows] = drawCodes(ex, plan, start + done, count - done, count * d * 4);
    const rowsAt = plan.listsAt + done * d * 4;
    ex.sums(rows, d, offs, idx, coef, plan.gAt, rowsAt);
    const first = start + done;
    if (sigma > 0) ex.noise(rows, first >>> 0, Math.floor(first / 2 ** 32), d, sigma, rowsAt);
    done += rows;
  }
}

/** The independent firing tables of a source, as `SyntheticSource` keeps them. */
export interface FiringTables {
  /** pᵢ per feature. */
  p: Float64Array;
  /** First feature of each block, then numFeatures (`firingBlocks` in synthetic.ts). */
  blockStart: Int32Array;
  /** Each block's largest probability. */
  blockBound: Float64Array;
  /** log(1 − bound) per block. */
  blockLogMiss: Float64Array;
  /** Whether a coefficient is the product of two uniforms. */
  product: boolean;
  /** Blocks of a code stream's first refill (a speed hint). */
  chunk: number;
  /** Expected active features per sample (sizes the lists). */
  meanActive: number;
}

/** The Gaussian copula's tables of a correlated source, as `SyntheticSource` keeps them. */
export interface CorrelatedTables {
  /** The loadings L, transposed: [rank, numFeatures]. */
  loadings: Float32Array;
  /** tᵢ = Φ⁻¹(pᵢ) per feature. */
  thresholds: Float64Array;
  rank: number;
  /** ρ in (0, 1). */
  correlation: number;
  product: boolean;
  chunk: number;
  meanActive: number;
}

/** A source's samples in WebAssembly: its tables laid out once, then a few calls per batch. */
export interface SyntheticKernels {
  /**
   * Samples start … start + count − 1 ([count, d] float32): the sums of codes drawn here from
   * the tables, plus noise of scale `sigma` (none when 0), bit for bit the TypeScript loop's
   * values. A view of the module's memory, valid until the next call: copy it (a tensor's upload
   * does) before drawing again.
   */
  rows(start: number, count: number, sigma: number): Float32Array;
  /** The codes of samples start … start + count − 1, drawn here. */
  codes(start: number, count: number): CodeLists;
  /** Where the tables lie, for another instance given {@link image}. */
  readonly plan: DrawPlan;
  /** A copy of the memory up to `plan.listsAt`: the tables, the stream's key, the ziggurat's. */
  image(): Uint8Array;
}

/**
 * The kernels of a source with ground-truth rows g [numFeatures, d], data stream key `key` and
 * firing tables `firing` (independent or correlated) on instance `w` (g and the tables copied
 * to its free memory from `heapAt` on), or null where d is not a multiple of 4 or g is too
 * large. The lists of a call hold `entriesPerRow` entries per row (twice the mean by default)
 * and a row's worth more; a batch that needs more is drawn in several calls.
 */
export function syntheticKernels(
  w: BufferWasm,
  heapAt: number,
  g: Float32Array,
  d: number,
  key: [number, number],
  firing: FiringTables | CorrelatedTables,
  entriesPerRow: (f: { meanActive: number }) => number = (f) => 2 * f.meanActive,
): SyntheticKernels | null {
  if (d % 4 !== 0 || g.byteLength > MAX_BYTES / 2) return null;
  const numFeatures = g.length / d;
  const gAt = align(heapAt);
  const correlated = 'loadings' in firing;
  // correlated: L, t, Φ's table and its log-misses, then m and η (scratch, zeros)
  const tables = correlated
    ? [
        firing.loadings,
        firing.thresholds,
        PHI_TABLE,
        LOG_MISS_TABLE,
        new Float64Array(numFeatures),
        new Float64Array(firing.rank),
      ]
    : [firing.p, firing.blockStart, firing.blockBound, firing.blockLogMiss];
  const tableAt = [gAt + align(g.byteLength)];
  for (const t of tables) tableAt.push(tableAt[tableAt.length - 1] + align(t.byteLength));
  const listsAt = tableAt[tableAt.length - 1];
  if (listsAt > MAX_BYTES / 2) return null;
  w.reserve(listsAt);
  new Float32Array(w.memory.buffer, gAt, g.length).set(g);
  for (let k = 0; k < tables.length; k++) {
    const t = tables[k];
    const View = t.constructor as Float32ArrayConstructor | Float64ArrayConstructor | Int32ArrayConstructor;
    new View(w.memory.buffer, tableAt[k], t.length).set(t as never);
  }
  w.setKey(key[0], key[1]);
  const none = { pAt: 0, startsAt: 0, boundsAt: 0, logMissAt: 0, blocks: 0 };
  const noCorrelation = {
    loadingsAt: 0,
    thresholdsAt: 0,
    phiAt: 0,
    phiLogMissAt: 0,
    mAt: 0,
    etaAt: 0,
    rank: 0,
    sqrtRho: 0,
    invSqrtOneMinusRho: 0,
  };
  const plan: DrawPlan = {
    d,
    numFeatures,
    gAt,
    ...(correlated
      ? {
          ...none,
          correlated: 1,
          loadingsAt: tableAt[0],
          thresholdsAt: tableAt[1],
          phiAt: tableAt[2],
          phiLogMissAt: tableAt[3],
          mAt: tableAt[4],
          etaAt: tableAt[5],
          rank: firing.rank,
          // as `#drawCorrelated` computes them
          sqrtRho: Math.sqrt(firing.correlation),
          invSqrtOneMinusRho: 1 / Math.sqrt(1 - firing.correlation),
        }
      : {
          ...noCorrelation,
          correlated: 0,
          pAt: tableAt[0],
          startsAt: tableAt[1],
          boundsAt: tableAt[2],
          logMissAt: tableAt[3],
          blocks: firing.blockBound.length,
        }),
    product: firing.product ? 1 : 0,
    chunk: firing.chunk,
    entriesPerRow: entriesPerRow(firing),
    listsAt,
    maxBytes: MAX_BYTES,
  };
  return {
    plan,
    image: () => new Uint8Array(w.memory.buffer, 0, listsAt).slice(),
    rows(start, count, sigma) {
      drawRows(w, plan, start, count, sigma);
      return new Float32Array(w.memory.buffer, listsAt, count * d);
    },
    codes(start, count) {
      const offs = new Int32Array(count + 1);
      const parts: { idx: Int32Array; coef: Float64Array }[] = [];
      let total = 0;
      for (let done = 0; done < count; ) {
        const [offsAt, idxAt, coefAt, rows] = drawCodes(w, plan, start + done, count - done, 0);
        const buf = w.memory.buffer;
        const rowOffs = new Int32Array(buf, offsAt, rows + 1);
        for (let r = 1; r <= rows; r++) offs[done + r] = total + rowOffs[r];
        const n = rowOffs[rows];
        parts.push({
          idx: new Int32Array(buf, idxAt, n).slice(),
          coef: new Float64Array(buf, coefAt, n).slice(),
        });
        total += n;
        done += rows;
      }
      const idx = new Int32Array(total);
      const coef = new Float64Array(total);
      let at = 0;
      for (const part of parts) {
        idx.set(part.idx, at);
        coef.set(part.coef, at);
        at += part.idx.length;
      }
      return { offs, idx, coef };
    },
  };
}
