/**
 * WebAssembly SIMD loops for the dense kernels that dominate a training step after the matmuls:
 * the fused Adam update, the decoder-row constraint (normalizeRows, removeParallelComponent),
 * the common elementwise ops on same-shape or broadcast float32 operands, and sums.
 *
 * Operands stream through the module's memory in chunks small enough to stay in cache (copied
 * in, computed, copied out): copying costs a fraction of the arithmetic it replaces, since V8
 * runs a typed-array loop in JavaScript at about one element per 4 cycles and these loops four
 * at a time.
 *
 * What each loop computes is what the TypeScript kernels compute, bit for bit, except where a
 * doc says otherwise: a float32 add, subtract, multiply, divide or square root rounds once
 * either way (double arithmetic rounded to float32 gives the correctly rounded float32 result
 * for these), and the row kernels work in float64 as the TypeScript loops do. Adam is the
 * exception: it runs in float32 (as torch does), within a few ulps of the float64 arithmetic.
 * Where WebAssembly SIMD is unavailable {@link loadDenseWasm} returns why, and the kernels keep
 * their TypeScript loops.
 *
 * @module
 */

import { growTo } from './engine.js';
import {
  addTo,
  ELSE,
  END,
  F32,
  F32_DEMOTE_F64,
  F32_LOAD,
  F32_STORE,
  F32X4_ABS,
  F32X4_ADD,
  F32X4_DEMOTE_F64X2_ZERO,
  F32X4_DIV,
  F32X4_EQ,
  F32X4_GT,
  F32X4_MUL,
  F32X4_NEG,
  F32X4_SPLAT,
  F32X4_SQRT,
  F32X4_SUB,
  F64,
  F64_ADD,
  F64_MUL,
  F64_PROMOTE_F32,
  F64X2_ADD,
  F64X2_EXTRACT,
  F64X2_MUL,
  F64X2_PROMOTE_LOW_F32X4,
  F64X2_SPLAT,
  f32c,
  funcBody,
  funcType,
  get,
  I32,
  I32_ADD,
  I32_AND,
  I32_MUL,
  I32_SHL,
  I32_SHR_U,
  I32X4_SPLAT,
  IF,
  i32c,
  i32x4c,
  mem,
  moduleBytes,
  SIMD,
  set,
  tee,
  V128,
  V128_AND,
  V128_LOAD,
  V128_STORE,
  V128_ZERO,
  VOID,
  whileLtU,
} from './wasm-asm.js';

const F64_CONST = 0x44;
const F64_SUB = 0xa1;
const F64_DIV = 0xa3;
const F64_SQRT = 0x9f;
const F64X2_SUB = [SIMD, 0xf1, 0x01];
const I8X16_SHUFFLE = [SIMD, 0x0d];
/** f64.const v. */
function f64c(v: number): number[] {
  return [F64_CONST, ...new Uint8Array(new Float64Array([v]).buffer)];
}
/** The high two float32 lanes of the v128 on the stack moved to the low two (for promote_low). */
const HIGH_TO_LOW = (v: number) => [
  ...get(v),
  ...get(v),
  ...I8X16_SHUFFLE,
  8,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
  8,
  9,
  10,
  11,
  12,
  13,
  14,
  15,
];
/** The low halves of two v128 (two float32 each, from demote) joined: a0 a1 b0 b1. */
const JOIN_LOW = [...I8X16_SHUFFLE, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];

/**
 * adam(bytes, p, g, m, v, b1, b2, 1−b1, 1−b2, step, 1/√bc2, eps), in place over p, m and v:
 * m ← b1·m + (1−b1)·g, v ← b2·v + (1−b2)·g², p ← p − step·m / (√v · (1/√bc2) + eps).
 */
function adamBody(): number[] {
  const [BYTES, P, G, M, V] = [0, 1, 2, 3, 4];
  const CONSTS = [5, 6, 7, 8, 9, 10, 11]; // b1 b2 omb1 omb2 step invS eps (f32)
  const OFF = 12;
  const [B1, B2, OMB1, OMB2, STEP, INVS, EPS, GV, MV, VV] = [13, 14, 15, 16, 17, 18, 19, 20, 21, 22];
  const ld = (base: number) => [...get(base), ...get(OFF), I32_ADD, ...V128_LOAD, ...mem()];
  const st = (base: number, v: number[]) => [
    ...get(base),
    ...get(OFF),
    I32_ADD,
    ...v,
    ...V128_STORE,
    ...mem(),
  ];
  return funcBody(
    [
      [1, I32],
      [10, V128],
    ],
    [
      ...CONSTS.flatMap((c, i) => [...get(c), ...F32X4_SPLAT, ...set(B1 + i)]),
      ...i32c(0),
      ...set(OFF),
      ...whileLtU(get(OFF), get(BYTES), [
        ...ld(G),
        ...set(GV),
        // m
        ...get(B1),
        ...ld(M),
        ...F32X4_MUL,
        ...get(OMB1),
        ...get(GV),
        ...F32X4_MUL,
        ...F32X4_ADD,
        ...set(MV),
        ...st(M, get(MV)),
        // v
        ...get(B2),
        ...ld(V),
        ...F32X4_MUL,
        ...get(OMB2),
        ...get(GV),
        ...get(GV),
        ...F32X4_MUL,
        ...F32X4_MUL,
        ...F32X4_ADD,
        ...set(VV),
        ...st(V, get(VV)),
        // p
        ...st(P, [
          ...ld(P),
          ...get(STEP),
          ...get(MV),
          ...F32X4_MUL,
          ...get(VV),
          ...F32X4_SQRT,
          ...get(INVS),
          ...F32X4_MUL,
          ...get(EPS),
          ...F32X4_ADD,
          ...F32X4_DIV,
          ...F32X4_SUB,
        ]),
        ...addTo(OFF, 16),
      ]),
    ],
  );
}

/**
 * rows(kind, rows, cols, w, g, dst): per row of `cols` floats, in float64 as the TypeScript
 * kernels: kind 0 (normalizeRows) dst = w / (‖w‖ + 1e-12); kind 1 (removeParallelComponent)
 * dst = g − (g·w / (‖w‖ + 1e-12)²) w. Sums in two float64 lanes per half-vector, then the tail.
 */
function rowsBody(): number[] {
  const [KIND, ROWS, COLS, W, G, DST] = [0, 1, 2, 3, 4, 5];
  const [R, OFF, RB, VB, WP, GP, DP] = [6, 7, 8, 9, 10, 11, 12];
  const [SS, DOT, COEF, X] = [13, 14, 15, 16]; // f64
  const [SSV, DOTV, WV, GVV, CV, LO, HI] = [17, 18, 19, 20, 21, 22, 23]; // v128
  const promoteLow = (v: number) => [...get(v), ...F64X2_PROMOTE_LOW_F32X4];
  const promoteHigh = (v: number) => [...HIGH_TO_LOW(v), ...F64X2_PROMOTE_LOW_F32X4];
  const zero2 = [...f64c(0), ...F64X2_SPLAT];
  const lanesSum = (v: number) => [...get(v), ...F64X2_EXTRACT, 0, ...get(v), ...F64X2_EXTRACT, 1, F64_ADD];
  const vload = (p: number) => [...get(p), ...get(OFF), I32_ADD, ...V128_LOAD, ...mem()];
  const sload = (p: number) => [...get(p), ...get(OFF), I32_ADD, F32_LOAD, ...mem(), F64_PROMOTE_F32];
  // sums: ss += w², dot += g·w (dot only for kind 1)
  const sumVec = [
    ...vload(WP),
    ...set(WV),
    ...get(SSV),
    ...promoteLow(WV),
    ...promoteLow(WV),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...promoteHigh(WV),
    ...promoteHigh(WV),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...set(SSV),
    ...get(KIND),
    IF,
    VOID,
    ...vload(GP),
    ...set(GVV),
    ...get(DOTV),
    ...promoteLow(GVV),
    ...promoteLow(WV),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...promoteHigh(GVV),
    ...promoteHigh(WV),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...set(DOTV),
    END,
    ...addTo(OFF, 16),
  ];
  const sumTail = [
    ...sload(WP),
    ...set(X),
    ...get(SS),
    ...get(X),
    ...get(X),
    F64_MUL,
    F64_ADD,
    ...set(SS),
    ...get(KIND),
    IF,
    VOID,
    ...get(DOT),
    ...sload(GP),
    ...get(X),
    F64_MUL,
    F64_ADD,
    ...set(DOT),
    END,
    ...addTo(OFF, 4),
  ];
  // outputs: kind 0: w·coef; kind 1: g − coef·w (coef as set below), rounded to float32
  const outVec = [
    ...get(DP),
    ...get(OFF),
    I32_ADD,
    ...vload(WP),
    ...set(WV),
    ...get(KIND),
    IF,
    V128,
    ...vload(GP),
    ...set(GVV),
    ...promoteLow(GVV),
    ...get(CV),
    ...promoteLow(WV),
    ...F64X2_MUL,
    ...F64X2_SUB,
    ...F32X4_DEMOTE_F64X2_ZERO,
    ...set(LO),
    ...promoteHigh(GVV),
    ...get(CV),
    ...promoteHigh(WV),
    ...F64X2_MUL,
    ...F64X2_SUB,
    ...F32X4_DEMOTE_F64X2_ZERO,
    ...set(HI),
    ...get(LO),
    ...get(HI),
    ...JOIN_LOW,
    ELSE,
    ...promoteLow(WV),
    ...get(CV),
    ...F64X2_MUL,
    ...F32X4_DEMOTE_F64X2_ZERO,
    ...set(LO),
    ...promoteHigh(WV),
    ...get(CV),
    ...F64X2_MUL,
    ...F32X4_DEMOTE_F64X2_ZERO,
    ...set(HI),
    ...get(LO),
    ...get(HI),
    ...JOIN_LOW,
    END,
    ...V128_STORE,
    ...mem(),
    ...addTo(OFF, 16),
  ];
  const outTail = [
    ...get(DP),
    ...get(OFF),
    I32_ADD,
    ...get(KIND),
    IF,
    F64,
    ...sload(GP),
    ...get(COEF),
    ...sload(WP),
    F64_MUL,
    F64_SUB,
    ELSE,
    ...sload(WP),
    ...get(COEF),
    F64_MUL,
    END,
    F32_DEMOTE_F64,
    F32_STORE,
    ...mem(),
    ...addTo(OFF, 4),
  ];
  const row = [
    ...get(R),
    ...get(RB),
    I32_MUL,
    ...set(OFF), // the row's byte offset, added to each base
    ...get(W),
    ...get(OFF),
    I32_ADD,
    ...set(WP),
    ...get(G),
    ...get(OFF),
    I32_ADD,
    ...set(GP),
    ...get(DST),
    ...get(OFF),
    I32_ADD,
    ...set(DP),
    ...zero2,
    ...set(SSV),
    ...zero2,
    ...set(DOTV),
    ...i32c(0),
    ...set(OFF),
    ...whileLtU(get(OFF), get(VB), sumVec),
    ...lanesSum(SSV),
    ...set(SS),
    ...lanesSum(DOTV),
    ...set(DOT),
    ...whileLtU(get(OFF), get(RB), sumTail),
    // norm = √ss + 1e-12; kind 0: coef = 1 / norm; kind 1: coef = dot / (norm · norm)
    ...get(SS),
    F64_SQRT,
    ...f64c(1e-12),
    F64_ADD,
    ...set(X),
    ...get(KIND),
    IF,
    F64,
    ...get(DOT),
    ...get(X),
    ...get(X),
    F64_MUL,
    F64_DIV,
    ELSE,
    ...f64c(1),
    ...get(X),
    F64_DIV,
    END,
    ...tee(COEF),
    ...F64X2_SPLAT,
    ...set(CV),
    ...i32c(0),
    ...set(OFF),
    ...whileLtU(get(OFF), get(VB), outVec),
    ...whileLtU(get(OFF), get(RB), outTail),
    ...addTo(R, 1),
  ];
  return funcBody(
    [
      [7, I32],
      [4, F64],
      [7, V128],
    ],
    [
      ...get(COLS),
      ...i32c(2),
      I32_SHL,
      ...set(RB),
      ...get(COLS),
      ...i32c(-4),
      I32_AND,
      ...i32c(2),
      I32_SHL,
      ...set(VB),
      ...i32c(0),
      ...set(R),
      ...whileLtU(get(R), get(ROWS), row),
    ],
  );
}

/** The binary ops with a SIMD loop (f32x4 arithmetic rounds as the TypeScript loops do). */
const BINARY_OPS = { add: F32X4_ADD, sub: F32X4_SUB, mul: F32X4_MUL, div: F32X4_DIV } as const;
/** The unary ops with a SIMD loop. */
const UNARY_OPS = {
  square: (x: number[]) => [...x, ...x, ...F32X4_MUL],
  neg: (x: number[]) => [...x, ...F32X4_NEG],
  abs: (x: number[]) => [...x, ...F32X4_ABS],
  sqrt: (x: number[]) => [...x, ...F32X4_SQRT],
} as const;
/** An op the dense module runs. */
export type DenseBinaryOp = keyof typeof BINARY_OPS;
/** A unary op the dense module runs. */
export type DenseUnaryOp = keyof typeof UNARY_OPS;
/** The names of the dense module's binary and unary ops. */
export const DENSE_OPS: readonly string[] = [...Object.keys(BINARY_OPS), ...Object.keys(UNARY_OPS)];

/**
 * binop(bytes, a, aMask, b, bMask, dst): dst[off] = a[off & aMask] OP b[off & bMask] over byte
 * offsets in steps of 16: a mask of 0 reads the operand's first four lanes every time (a scalar,
 * splatted), −1 reads it in step.
 */
function binopBody(op: number[]): number[] {
  const [BYTES, A, AM, B, BM, DST] = [0, 1, 2, 3, 4, 5];
  const OFF = 6;
  const at = (base: number, mask: number) => [...get(base), ...get(OFF), ...get(mask), I32_AND, I32_ADD];
  return funcBody(
    [[1, I32]],
    [
      ...i32c(0),
      ...set(OFF),
      ...whileLtU(get(OFF), get(BYTES), [
        ...get(DST),
        ...get(OFF),
        I32_ADD,
        ...at(A, AM),
        ...V128_LOAD,
        ...mem(),
        ...at(B, BM),
        ...V128_LOAD,
        ...mem(),
        ...op,
        ...V128_STORE,
        ...mem(),
        ...addTo(OFF, 16),
      ]),
    ],
  );
}

/** unop(bytes, a, dst): dst = OP(a) over byte offsets in steps of 16. */
function unopBody(op: (x: number[]) => number[]): number[] {
  const [BYTES, A, DST] = [0, 1, 2];
  const [OFF, X] = [3, 4];
  return funcBody(
    [
      [1, I32],
      [1, V128],
    ],
    [
      ...i32c(0),
      ...set(OFF),
      ...whileLtU(get(OFF), get(BYTES), [
        ...get(A),
        ...get(OFF),
        I32_ADD,
        ...V128_LOAD,
        ...mem(),
        ...set(X),
        ...get(DST),
        ...get(OFF),
        I32_ADD,
        ...op(get(X)),
        ...V128_STORE,
        ...mem(),
        ...addTo(OFF, 16),
      ]),
    ],
  );
}

/**
 * sum(bytes, a, out): out[0..1] (float64) += the float32 values at a (their squares with
 * `squares`), in two float64 lanes per half-vector (four partial sums, added at the end by the
 * caller).
 */
function sumBody(squares: boolean, differences = false): number[] {
  const [BYTES, A, OUT] = [0, 1, 2];
  // with `differences`: a second operand B before OUT, and the lanes are fround((a − b)²)
  const [B, OUT_] = [2, 3];
  const [OFF, X, S0, S1] = differences ? [4, 5, 6, 7] : [3, 4, 5, 6];
  const out = differences ? OUT_ : OUT;
  const load = (base: number) => [...get(base), ...get(OFF), I32_ADD, ...V128_LOAD, ...mem()];
  return funcBody(
    [
      [1, I32],
      [3, V128],
    ],
    [
      ...get(out),
      ...V128_LOAD,
      ...mem(),
      ...set(S0),
      ...get(out),
      ...V128_LOAD,
      ...mem(16),
      ...set(S1),
      ...i32c(0),
      ...set(OFF),
      ...whileLtU(get(OFF), get(BYTES), [
        ...(differences
          ? [...load(A), ...load(B), ...F32X4_SUB, ...set(X), ...get(X), ...get(X), ...F32X4_MUL]
          : load(A)),
        ...set(X),
        ...get(S0),
        ...get(X),
        ...F64X2_PROMOTE_LOW_F32X4,
        ...(squares ? [...get(X), ...F64X2_PROMOTE_LOW_F32X4, ...F64X2_MUL] : []),
        ...F64X2_ADD,
        ...set(S0),
        ...get(S1),
        ...HIGH_TO_LOW(X),
        ...F64X2_PROMOTE_LOW_F32X4,
        ...(squares ? [...HIGH_TO_LOW(X), ...F64X2_PROMOTE_LOW_F32X4, ...F64X2_MUL] : []),
        ...F64X2_ADD,
        ...set(S1),
        ...addTo(OFF, 16),
      ]),
      ...get(out),
      ...get(S0),
      ...V128_STORE,
      ...mem(),
      ...get(out),
      ...get(S1),
      ...V128_STORE,
      ...mem(16),
    ],
  );
}

/**
 * colsum(rows, cols, a, acc): acc (cols float64) += each of `rows` rows of `cols` float32 at a
 * (cols a multiple of 4), row after row: the sum over the leading axis, each column in row order.
 */
function colsumBody(): number[] {
  const [ROWS, COLS, A, ACC] = [0, 1, 2, 3];
  const [R, OFF, AP, CB, X] = [4, 5, 6, 7, 8];
  /** acc + 2·off: the float64 sums of the four columns at byte offset off. */
  const accAt = [...get(ACC), ...get(OFF), ...i32c(1), I32_SHL, I32_ADD];
  return funcBody(
    [
      [4, I32],
      [1, V128],
    ],
    [
      ...get(COLS),
      ...i32c(2),
      I32_SHL,
      ...set(CB),
      ...get(A),
      ...set(AP),
      ...i32c(0),
      ...set(R),
      ...whileLtU(get(R), get(ROWS), [
        ...i32c(0),
        ...set(OFF),
        ...whileLtU(get(OFF), get(CB), [
          ...get(AP),
          ...get(OFF),
          I32_ADD,
          ...V128_LOAD,
          ...mem(),
          ...set(X),
          // acc[2·off .. 2·off + 32) holds this vector's four float64 sums
          ...accAt,
          ...accAt,
          ...V128_LOAD,
          ...mem(),
          ...get(X),
          ...F64X2_PROMOTE_LOW_F32X4,
          ...F64X2_ADD,
          ...V128_STORE,
          ...mem(),
          ...accAt,
          ...accAt,
          ...V128_LOAD,
          ...mem(16),
          ...HIGH_TO_LOW(X),
          ...F64X2_PROMOTE_LOW_F32X4,
          ...F64X2_ADD,
          ...V128_STORE,
          ...mem(16),
          ...addTo(OFF, 16),
        ]),
        ...get(AP),
        ...get(CB),
        I32_ADD,
        ...set(AP),
        ...addTo(R, 1),
      ]),
    ],
  );
}

/**
 * transpose(r, c, src, dst): dst [c, r] = srcᵀ for src [r, c], r and c multiples of 4, in 4×4
 * blocks transposed in registers (two rounds of shuffles); a column block of src is swept down
 * all its rows, so the cache lines it reads serve the next three column blocks too.
 */
function transposeBody(): number[] {
  const [R, C, SRC, DST] = [0, 1, 2, 3];
  const [R4, C4, J, I, P, Q] = [4, 5, 6, 7, 8, 9];
  const [A, B, Cc, D, T0, T1, T2, T3] = [10, 11, 12, 13, 14, 15, 16, 17];
  /** i8x16.shuffle picking four 32-bit lanes (0–3 of the first operand, 4–7 of the second). */
  const pick = (x: number, y: number, lanes: number[]) => [
    ...get(x),
    ...get(y),
    ...I8X16_SHUFFLE,
    ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]),
  ];
  const load = (v: number, row: number) => [
    ...get(P),
    ...(row ? [...get(C4), ...i32c(row), I32_MUL, I32_ADD] : []),
    ...V128_LOAD,
    ...mem(),
    ...set(v),
  ];
  const store = (row: number, value: number[]) => [
    ...get(Q),
    ...(row ? [...get(R4), ...i32c(row), I32_MUL, I32_ADD] : []),
    ...value,
    ...V128_STORE,
    ...mem(),
  ];
  return funcBody(
    [
      [6, I32],
      [8, V128],
    ],
    [
      ...get(R),
      ...i32c(2),
      I32_SHL,
      ...set(R4),
      ...get(C),
      ...i32c(2),
      I32_SHL,
      ...set(C4),
      ...i32c(0),
      ...set(J),
      ...whileLtU(get(J), get(C), [
        ...get(SRC),
        ...get(J),
        ...i32c(2),
        I32_SHL,
        I32_ADD,
        ...set(P),
        ...get(DST),
        ...get(J),
        ...get(R4),
        I32_MUL,
        I32_ADD,
        ...set(Q),
        ...i32c(0),
        ...set(I),
        ...whileLtU(get(I), get(R), [
          ...load(A, 0),
          ...load(B, 1),
          ...load(Cc, 2),
          ...load(D, 3),
          ...pick(A, B, [0, 4, 1, 5]),
          ...set(T0),
          ...pick(A, B, [2, 6, 3, 7]),
          ...set(T1),
          ...pick(Cc, D, [0, 4, 1, 5]),
          ...set(T2),
          ...pick(Cc, D, [2, 6, 3, 7]),
          ...set(T3),
          ...store(0, pick(T0, T2, [0, 1, 4, 5])),
          ...store(1, pick(T0, T2, [2, 3, 6, 7])),
          ...store(2, pick(T1, T3, [0, 1, 4, 5])),
          ...store(3, pick(T1, T3, [2, 3, 6, 7])),
          ...get(P),
          ...get(C4),
          ...i32c(2),
          I32_SHL,
          I32_ADD,
          ...set(P),
          ...addTo(Q, 16),
          ...addTo(I, 4),
        ]),
        ...addTo(J, 4),
      ]),
    ],
  );
}

/** v128.andnot: a & ~b. */
const V128_ANDNOT = [SIMD, 0x4f];

/** acc[2·col .. 2·col + 32) (four float64 column sums) += the four float32 lanes of local x. */
function addToColumnSums(acc: number, colBytes: number, x: number): number[] {
  const at = [...get(acc), ...get(colBytes), ...i32c(1), I32_SHL, I32_ADD];
  return [
    ...at,
    ...at,
    ...V128_LOAD,
    ...mem(),
    ...get(x),
    ...F64X2_PROMOTE_LOW_F32X4,
    ...F64X2_ADD,
    ...V128_STORE,
    ...mem(),
    ...at,
    ...at,
    ...V128_LOAD,
    ...mem(16),
    ...HIGH_TO_LOW(x),
    ...F64X2_PROMOTE_LOW_F32X4,
    ...F64X2_ADD,
    ...V128_STORE,
    ...mem(16),
  ];
}

/**
 * biasReluColsum(rows, cols, a, bias, acc), in place over `rows` rows of `cols` float32 at a
 * (cols a multiple of 4): a ← relu(a + bias) as the TypeScript epilogue computes it (v·[v > 0],
 * so a negative v gives −0 and NaN stays NaN; −∞ gives 0), and acc (cols float64) += each
 * result row, row after row (the column sums of {@link colsumBody}, in the same order).
 */
function biasReluColsumBody(): number[] {
  const [ROWS, COLS, A, BIAS, ACC] = [0, 1, 2, 3, 4];
  const [R, OFF, P, CB, X, ONE, NEG_INF] = [5, 6, 7, 8, 9, 10, 11];
  return funcBody(
    [
      [4, I32],
      [3, V128],
    ],
    [
      ...get(COLS),
      ...i32c(2),
      I32_SHL,
      ...set(CB),
      ...f32c(1),
      ...F32X4_SPLAT,
      ...set(ONE),
      ...f32c(Number.NEGATIVE_INFINITY),
      ...F32X4_SPLAT,
      ...set(NEG_INF),
      ...get(A),
      ...set(P),
      ...i32c(0),
      ...set(R),
      ...whileLtU(get(R), get(ROWS), [
        ...i32c(0),
        ...set(OFF),
        ...whileLtU(get(OFF), get(CB), [
          ...get(P),
          ...V128_LOAD,
          ...mem(),
          ...get(BIAS),
          ...get(OFF),
          I32_ADD,
          ...V128_LOAD,
          ...mem(),
          ...F32X4_ADD,
          ...set(X),
          // x · [x > 0], then 0 where x is −∞ (−∞ · 0 would be NaN)
          ...get(X),
          ...get(X),
          ...V128_ZERO,
          ...F32X4_GT,
          ...get(ONE),
          ...V128_AND,
          ...F32X4_MUL,
          ...get(X),
          ...get(NEG_INF),
          ...F32X4_EQ,
          ...V128_ANDNOT,
          ...set(X),
          ...get(P),
          ...get(X),
          ...V128_STORE,
          ...mem(),
          ...addToColumnSums(ACC, OFF, X),
          ...addTo(P, 16),
          ...addTo(OFF, 16),
        ]),
        ...addTo(R, 1),
      ]),
    ],
  );
}

const I32X4_EQ = [SIMD, 0x37];
const I32X4_BITMASK = [SIMD, 0xa4, 0x01];
const I32_LOAD8_U = 0x2d;
const I32_STORE8 = 0x3a;
/** memarg of a one-byte load or store: alignment 2⁰, offset 0. */
const BYTE = [0, 0];

/**
 * reluGradRowColsum(rows, cols, dy, row, y, dst, acc) over `rows` rows of `cols` float32 (cols
 * a multiple of 4): dst = (dy + row)·[y > 0] (the float32 sum, then the mask as a product, as
 * the add and reluGrad kernels compute it one after the other), and acc (cols float64) += each
 * row of dst, row after row. `fromBits`: y is instead the mask bits of {@link reluMaskBody} (one
 * byte per four elements), for a y whose memory is reused; the same arithmetic, the same values.
 */
function reluGradRowColsumBody(fromBits = false): number[] {
  const [ROWS, COLS, DY, ROW, Y, DST, ACC] = [0, 1, 2, 3, 4, 5, 6];
  const [R, OFF, P, CB, X, ONE, BITS] = [7, 8, 9, 10, 11, 12, 13];
  // [y > 0] as all-ones lanes: from y, or from the group's mask byte spread over the lanes
  const mask = fromBits
    ? [
        ...get(Y),
        ...get(P),
        ...i32c(4),
        I32_SHR_U,
        I32_ADD,
        I32_LOAD8_U,
        ...BYTE,
        ...I32X4_SPLAT,
        ...get(BITS),
        ...V128_AND,
        ...get(BITS),
        ...I32X4_EQ,
      ]
    : [...get(Y), ...get(P), I32_ADD, ...V128_LOAD, ...mem(), ...V128_ZERO, ...F32X4_GT];
  return funcBody(
    [
      [4, I32],
      [3, V128],
    ],
    [
      ...get(COLS),
      ...i32c(2),
      I32_SHL,
      ...set(CB),
      ...f32c(1),
      ...F32X4_SPLAT,
      ...set(ONE),
      ...i32x4c([1, 2, 4, 8]),
      ...set(BITS),
      ...i32c(0),
      ...set(P),
      ...i32c(0),
      ...set(R),
      ...whileLtU(get(R), get(ROWS), [
        ...i32c(0),
        ...set(OFF),
        ...whileLtU(get(OFF), get(CB), [
          ...get(DY),
          ...get(P),
          I32_ADD,
          ...V128_LOAD,
          ...mem(),
          ...get(ROW),
          ...get(OFF),
          I32_ADD,
          ...V128_LOAD,
          ...mem(),
          ...F32X4_ADD,
          ...mask,
          ...get(ONE),
          ...V128_AND,
          ...F32X4_MUL,
          ...set(X),
          ...get(DST),
          ...get(P),
          I32_ADD,
          ...get(X),
          ...V128_STORE,
          ...mem(),
          ...addToColumnSums(ACC, OFF, X),
          ...addTo(P, 16),
          ...addTo(OFF, 16),
        ]),
        ...addTo(R, 1),
      ]),
    ],
  );
}

/**
 * reluMask(n, a, mask) over n groups of four float32 at a: mask byte i holds [a > 0] of group i,
 * lane l in bit l (a NaN gives 0, as the ReLU's gradient mask [y > 0] reads it).
 */
function reluMaskBody(): number[] {
  const [N, A, MASK] = [0, 1, 2];
  const [P, END_] = [3, 4];
  return funcBody(
    [[2, I32]],
    [
      ...get(N),
      ...i32c(4),
      I32_SHL,
      ...set(END_),
      ...i32c(0),
      ...set(P),
      ...whileLtU(get(P), get(END_), [
        ...get(MASK),
        ...get(P),
        ...i32c(4),
        I32_SHR_U,
        I32_ADD,
        ...get(A),
        ...get(P),
        I32_ADD,
        ...V128_LOAD,
        ...mem(),
        ...V128_ZERO,
        ...F32X4_GT,
        ...I32X4_BITMASK,
        I32_STORE8,
        ...BYTE,
        ...addTo(P, 16),
      ]),
    ],
  );
}

/**
 * The module's bytes: adam, rows, one binop per binary op, one unop per unary op, sum, sumsq, sumsqdiff,
 * colsum, transpose, biasReluColsum, reluGradRowColsum, reluMask, reluGradRowMaskColsum.
 */
export function denseWasmBytes(): Uint8Array {
  const binNames = Object.keys(BINARY_OPS) as DenseBinaryOp[];
  const unNames = Object.keys(UNARY_OPS) as DenseUnaryOp[];
  return moduleBytes(
    [
      funcType([I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32], []),
      funcType([I32, I32, I32, I32, I32, I32], []),
      funcType([I32, I32, I32], []),
      funcType([I32, I32, I32, I32], []),
      funcType([I32, I32, I32, I32, I32], []),
      funcType([I32, I32, I32, I32, I32, I32, I32], []),
    ],
    [
      { type: 0, body: adamBody(), export: 'adam' },
      { type: 1, body: rowsBody(), export: 'rows' },
      ...binNames.map((n) => ({ type: 1, body: binopBody(BINARY_OPS[n]), export: `b_${n}` })),
      ...unNames.map((n) => ({ type: 2, body: unopBody(UNARY_OPS[n]), export: `u_${n}` })),
      { type: 2, body: sumBody(false), export: 'sum' },
      { type: 2, body: sumBody(true), export: 'sumsq' },
      { type: 3, body: sumBody(false, true), export: 'sumsqdiff' },
      { type: 3, body: colsumBody(), export: 'colsum' },
      { type: 3, body: transposeBody(), export: 'transpose' },
      { type: 4, body: biasReluColsumBody(), export: 'biasReluColsum' },
      { type: 5, body: reluGradRowColsumBody(), export: 'reluGradRowColsum' },
      { type: 2, body: reluMaskBody(), export: 'reluMask' },
      { type: 5, body: reluGradRowColsumBody(true), export: 'reluGradRowMaskColsum' },
    ],
  );
}

/** Operands above this many bytes in all stay in TypeScript. */
const MAX_BYTES = 2 ** 30;

/**
 * Rows per block of a column sum. Column sums run down blocks of this many rows: each block's
 * float64 sums start from 0 and take its rows in order, and the blocks' sums are added to the
 * total in order. The order is fixed by the shape alone, so the rows can be split over threads
 * at block boundaries with the bits of one thread (dense-split.ts).
 */
export const COLUMN_BLOCK_ROWS = 64;

/**
 * Where a column-sum loop puts its sums: `{ acc }` adds each block's into acc (cols float64) in
 * order; `{ blocks }` stores block k's at blocks[k·cols …] (a part of a split, whose caller adds
 * them all in order).
 */
export type ColumnSums =
  | { acc: Float64Array; blocks?: undefined }
  | { blocks: Float64Array; acc?: undefined };

/** acc[j] += blocks[k·cols + j], block after block: the total of a split column sum. */
export function addBlocks(blocks: Float64Array, acc: Float64Array, cols: number): void {
  for (let o = 0; o < blocks.length; o += cols) for (let j = 0; j < cols; j++) acc[j] += blocks[o + j];
}

/** The dense loops, run in WebAssembly on chunks of the operands. Each returns false (doing nothing) where it does not apply. */
export interface DenseWasm {
  /**
   * Adam over n parameters into p2, m2, v2 (float32 arithmetic):
   * m2 = b1·m + (1−b1)·g, v2 = b2·v + (1−b2)·g², p2 = p − step·m2 / (√v2 · (1/√bc2) + eps).
   */
  adam(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    p2: Float32Array,
    m2: Float32Array,
    v2: Float32Array,
    n: number,
    b1: number,
    b2: number,
    step: number,
    sqrtBc2: number,
    eps: number,
  ): boolean;
  /** normalizeRows (g undefined) or removeParallelComponent over rows of `cols`, into dst. */
  rows(w: Float32Array, g: Float32Array | undefined, dst: Float32Array, rows: number, cols: number): boolean;
  /**
   * dst = a OP b over n elements with the elementwise kernels' modes: 0 same size, 1 b scalar,
   * 2 a scalar, 3 b one row of `last`, 4 a one row (other modes: false).
   */
  binary(
    op: DenseBinaryOp,
    a: Float32Array,
    b: Float32Array,
    dst: Float32Array,
    n: number,
    mode: number,
    last: number,
  ): boolean;
  /** dst = OP(a) over n elements. */
  unary(op: DenseUnaryOp, a: Float32Array, dst: Float32Array, n: number): boolean;
  /** The sum of a[0..n) (of their squares with `squares`) in float64 (four partial sums, then the tail). */
  sum(a: Float32Array, n: number, squares?: boolean): number | undefined;
  /**
   * Σ (a − b)² over n elements, each difference and square rounded to float32 (what sum of
   * square of sub computes), summed in float64 in {@link sum}'s order.
   */
  sumSquaredDifference(a: Float32Array, b: Float32Array, n: number): number | undefined;
  /**
   * Column sums of a [rows, cols] (float64, in {@link COLUMN_BLOCK_ROWS}-row blocks, see
   * {@link ColumnSums}); false unless cols is a multiple of 4.
   */
  colsum(a: Float32Array, sums: ColumnSums, rows: number, cols: number): boolean;
  /** dst [c, r] = aᵀ for a [r, c]; false unless r and c are multiples of 4. */
  transpose(a: Float32Array, r: number, c: number, dst: Float32Array): boolean;
  /**
   * In place over c [rows, cols]: c ← relu(c + bias) (the linearBiasRelu epilogue), and the
   * column sums of the result ({@link ColumnSums}); false unless cols is a multiple of 4.
   */
  biasReluColsum(c: Float32Array, bias: Float32Array, sums: ColumnSums, rows: number, cols: number): boolean;
  /**
   * dst = (dy + row)·[y > 0] over [rows, cols] (row broadcast down the rows), and the column
   * sums of dst ({@link ColumnSums}); false unless cols is a multiple of 4.
   */
  reluGradRowColsum(
    dy: Float32Array,
    row: Float32Array,
    y: Float32Array,
    dst: Float32Array,
    sums: ColumnSums,
    rows: number,
    cols: number,
  ): boolean;
  /**
   * mask[i] = the bits [a > 0] of a[4i … 4i+3] (lane l in bit l) for the first n elements of a;
   * false unless n is a multiple of 4.
   */
  reluMask(a: Float32Array, mask: Uint8Array, n: number): boolean;
  /**
   * {@link reluGradRowColsum} with [y > 0] read from {@link reluMask}'s bits of y (for a y whose
   * memory is reused, dst and dy often the same array); false unless cols is a multiple of 4.
   */
  reluGradRowMaskColsum(
    dy: Float32Array,
    row: Float32Array,
    mask: Uint8Array,
    dst: Float32Array,
    sums: ColumnSums,
    rows: number,
    cols: number,
  ): boolean;
}

/** Whether a dense op is one the module runs. */
export const isDenseBinary = (op: string): op is DenseBinaryOp => op in BINARY_OPS;
/** Whether a unary op is one the module runs. */
export const isDenseUnary = (op: string): op is DenseUnaryOp => op in UNARY_OPS;

/** The slice of the WebAssembly JS API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

let loaded: DenseWasm | string | undefined;
let compiled: object | undefined;

/**
 * Compiles the module once per process; returns it, or why it is unavailable (no WebAssembly,
 * no SIMD, or a content-security policy that forbids compiling it). Never throws.
 */
export function loadDenseWasm(): DenseWasm | string {
  if (loaded !== undefined) return loaded;
  try {
    const WA = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    if (!WA) {
      loaded = 'WebAssembly is not available';
      return loaded;
    }
    const bytes = denseWasmBytes();
    if (!WA.validate(bytes)) {
      loaded = 'this runtime has no WebAssembly SIMD';
      return loaded;
    }
    compiled = new WA.Module(bytes);
    const ex = new WA.Instance(compiled, {}).exports as Record<string, (...args: number[]) => void> & {
      mem: WasmMemory;
    };
    loaded = denseLoops(ex, (sizes) => growTo(sizes, MAX_BYTES, ex.mem));
  } catch (e) {
    loaded = `WebAssembly could not be compiled here: ${e instanceof Error ? e.message : String(e)}`;
  }
  return loaded;
}

/** A dense module instance's exports, as {@link denseLoops} drives them. */
export interface DenseExports {
  /** The module's own memory. */
  mem: WasmMemory;
  [fn: string]: ((...args: number[]) => void) | WasmMemory;
}

/**
 * The chunked loops over a dense module instance: operands copied into its memory a chunk at a
 * time (laid out by `layout`, which grows the memory, or says null when they cannot fit),
 * computed, copied out. Self-contained (no reference outside its body): the kernel pool's workers
 * run the same source on their own instances (`dense-split.ts`).
 */
export function denseLoops(exports: DenseExports, layout: (sizes: number[]) => number[] | null): DenseWasm {
  // Floats per operand per chunk: 64 KiB, so a chunk's operands stay in the L2 cache.
  const CHUNK = 16384;
  const ex = exports as Record<string, (...args: number[]) => void> & { mem: WasmMemory };
  const vecBytes = (len: number) => Math.ceil(len / 4) * 16;
  // Column sums (COLUMN_BLOCK_ROWS: this body also runs in workers, where no outside name
  // reaches): blocks of BLOCK rows, each block's module sums zeroed first, then added into
  // out.acc or stored in out.blocks; `run(r, nr)` adds rows r … r+nr−1 into the module's sums.
  const BLOCK = 64;
  // rows per chunk: a power of two, so chunks tile the blocks, of at most CHUNK floats (or one row)
  const chunkRows = (cols: number) => {
    let per = BLOCK;
    while (per > 1 && per * cols > CHUNK) per >>= 1;
    return per;
  };
  const byBlocks = (
    rows: number,
    cols: number,
    per: number,
    sums: Float64Array,
    out: ColumnSums,
    run: (r: number, nr: number) => void,
  ) => {
    for (let b = 0, k = 0; b < rows; b += BLOCK, k++) {
      sums.fill(0);
      const end = Math.min(rows, b + BLOCK);
      for (let r = b; r < end; r += per) run(r, Math.min(per, end - r));
      if (out.blocks) out.blocks.set(sums, k * cols);
      else for (let j = 0; j < cols; j++) out.acc[j] += sums[j];
    }
  };
  // sum of a (of its squares with `squares`, of fround((a − b)²) with b): four float64 lane
  // sums over the whole vectors, then the tail in order
  const sumOf = (a: Float32Array, b: Float32Array | undefined, n: number, squares: boolean) => {
    const c = Math.min(n, CHUNK);
    const at = layout([32, c * 4, b ? c * 4 : 0]);
    if (!at) return undefined;
    const f = new Float32Array(ex.mem.buffer);
    const acc = new Float64Array(ex.mem.buffer, at[0], 4);
    acc.fill(0);
    const whole = n - (n % 4);
    for (let o = 0; o < whole; o += CHUNK) {
      const len = Math.min(CHUNK, whole - o);
      f.set(a.subarray(o, o + len), at[1] / 4);
      if (b) {
        f.set(b.subarray(o, o + len), at[2] / 4);
        ex.sumsqdiff(len * 4, at[1], at[2], at[0]);
      } else ex[squares ? 'sumsq' : 'sum'](len * 4, at[1], at[0]);
    }
    let s = acc[0] + acc[2] + (acc[1] + acc[3]);
    for (let i = whole; i < n; i++) {
      if (!b) s += squares ? a[i] * a[i] : a[i];
      else {
        const d = Math.fround(a[i] - b[i]);
        s += Math.fround(d * d);
      }
    }
    return s;
  };
  // reluGradRowColsum, with y as float32 or as reluMask's bits (one byte per four elements)
  const reluGrad = (
    dy: Float32Array,
    row: Float32Array,
    y: Float32Array | Uint8Array,
    dst: Float32Array,
    out: ColumnSums,
    rows: number,
    cols: number,
  ) => {
    if (cols % 4 !== 0 || cols === 0) return false;
    const bits = y instanceof Uint8Array;
    const per = chunkRows(cols);
    const chunk = Math.min(rows, per) * cols * 4;
    const at = layout([cols * 8, cols * 4, chunk, bits ? chunk / 16 : chunk, chunk]);
    if (!at) return false;
    const f = new Float32Array(ex.mem.buffer);
    const bytes = new Uint8Array(ex.mem.buffer);
    const sums = new Float64Array(ex.mem.buffer, at[0], cols);
    f.set(row.subarray(0, cols), at[1] / 4);
    const [DY, D] = [at[2] / 4, at[4] / 4];
    byBlocks(rows, cols, per, sums, out, (r, nr) => {
      const [o, len] = [r * cols, nr * cols];
      f.set(dy.subarray(o, o + len), DY);
      if (bits) bytes.set(y.subarray(o / 4, (o + len) / 4), at[3]);
      else f.set(y.subarray(o, o + len), at[3] / 4);
      ex[bits ? 'reluGradRowMaskColsum' : 'reluGradRowColsum'](nr, cols, at[2], at[1], at[3], at[4], at[0]);
      dst.set(f.subarray(D, D + len), o);
    });
    return true;
  };
  return {
    adam(p, g, m, v, p2, m2, v2, n, b1, b2, step, sqrtBc2, eps) {
      const c = Math.min(n, CHUNK);
      const at = layout([c * 4, c * 4, c * 4, c * 4]);
      if (!at) return false;
      const f = new Float32Array(ex.mem.buffer);
      const [P, G, M, V] = at.map((a) => a / 4);
      for (let o = 0; o < n; o += CHUNK) {
        const len = Math.min(CHUNK, n - o);
        f.set(p.subarray(o, o + len), P);
        f.set(g.subarray(o, o + len), G);
        f.set(m.subarray(o, o + len), M);
        f.set(v.subarray(o, o + len), V);
        ex.adam(vecBytes(len), at[0], at[1], at[2], at[3], b1, b2, 1 - b1, 1 - b2, step, 1 / sqrtBc2, eps);
        p2.set(f.subarray(P, P + len), o);
        m2.set(f.subarray(M, M + len), o);
        v2.set(f.subarray(V, V + len), o);
      }
      return true;
    },
    rows(w, g, dst, rows, cols) {
      const per = Math.max(1, Math.floor(CHUNK / cols));
      const c = Math.min(rows, per) * cols;
      const at = layout([c * 4, c * 4, c * 4]);
      if (!at || cols === 0) return false;
      const f = new Float32Array(ex.mem.buffer);
      for (let r = 0; r < rows; r += per) {
        const nr = Math.min(per, rows - r);
        const [o, len] = [r * cols, nr * cols];
        f.set(w.subarray(o, o + len), at[0] / 4);
        if (g) f.set(g.subarray(o, o + len), at[1] / 4);
        ex.rows(g ? 1 : 0, nr, cols, at[0], at[1], at[2]);
        dst.set(f.subarray(at[2] / 4, at[2] / 4 + len), o);
      }
      return true;
    },
    binary(op, a, b, dst, n, mode, last) {
      if (mode < 0 || mode > 4 || n === 0) return false;
      // rows modes: chunks of whole rows, the row repeated once to fill a chunk
      const rowMode = mode === 3 || mode === 4;
      const chunk = rowMode ? Math.max(1, Math.floor(CHUNK / last)) * last : Math.min(n, CHUNK);
      const at = layout([chunk * 4, chunk * 4, chunk * 4]);
      if (!at) return false;
      const f = new Float32Array(ex.mem.buffer);
      const [A, B, D] = at.map((x) => x / 4);
      // the stationary operand (scalar or row), laid out once
      const still = mode === 1 || mode === 3 ? b : mode === 2 || mode === 4 ? a : undefined;
      const stillAt = mode === 1 || mode === 3 ? B : A;
      if (still) {
        if (mode <= 2) f.fill(still[0], stillAt, stillAt + 4);
        else for (let o = 0; o < chunk; o += last) f.set(still.subarray(0, last), stillAt + o);
      }
      const aMask = mode === 2 ? 0 : -1;
      const bMask = mode === 1 ? 0 : -1;
      const fn = ex[`b_${op}`];
      for (let o = 0; o < n; o += chunk) {
        const len = Math.min(chunk, n - o);
        if (still !== a) f.set(a.subarray(o, o + len), A);
        if (still !== b) f.set(b.subarray(o, o + len), B);
        fn(vecBytes(len), at[0], aMask, at[1], bMask, at[2]);
        dst.set(f.subarray(D, D + len), o);
      }
      return true;
    },
    unary(op, a, dst, n) {
      const c = Math.min(n, CHUNK);
      const at = layout([c * 4, c * 4]);
      if (!at || n === 0) return false;
      const f = new Float32Array(ex.mem.buffer);
      const fn = ex[`u_${op}`];
      for (let o = 0; o < n; o += CHUNK) {
        const len = Math.min(CHUNK, n - o);
        f.set(a.subarray(o, o + len), at[0] / 4);
        fn(vecBytes(len), at[0], at[1]);
        dst.set(f.subarray(at[1] / 4, at[1] / 4 + len), o);
      }
      return true;
    },
    sum(a, n, squares = false) {
      return sumOf(a, undefined, n, squares);
    },
    sumSquaredDifference(a, b, n) {
      return sumOf(a, b, n, false);
    },
    colsum(a, out, rows, cols) {
      if (cols % 4 !== 0 || cols === 0) return false;
      const per = chunkRows(cols);
      const at = layout([cols * 8, Math.min(rows, per) * cols * 4]);
      if (!at) return false;
      const f = new Float32Array(ex.mem.buffer);
      // the module keeps four float64 sums per vector of four columns: lanes 0, 1, then 2, 3
      const sums = new Float64Array(ex.mem.buffer, at[0], cols);
      byBlocks(rows, cols, per, sums, out, (r, nr) => {
        f.set(a.subarray(r * cols, (r + nr) * cols), at[1] / 4);
        ex.colsum(nr, cols, at[1], at[0]);
      });
      return true;
    },
    transpose(a, r, c, dst) {
      if (r % 4 !== 0 || c % 4 !== 0 || r * c === 0) return false;
      const at = layout([r * c * 4, r * c * 4]);
      if (!at) return false;
      const f = new Float32Array(ex.mem.buffer);
      f.set(a.subarray(0, r * c), at[0] / 4);
      ex.transpose(r, c, at[0], at[1]);
      dst.set(f.subarray(at[1] / 4, at[1] / 4 + r * c));
      return true;
    },
    biasReluColsum(c, bias, out, rows, cols) {
      if (cols % 4 !== 0 || cols === 0) return false;
      const per = chunkRows(cols);
      const at = layout([cols * 8, cols * 4, Math.min(rows, per) * cols * 4]);
      if (!at) return false;
      const f = new Float32Array(ex.mem.buffer);
      const sums = new Float64Array(ex.mem.buffer, at[0], cols);
      f.set(bias.subarray(0, cols), at[1] / 4);
      const C = at[2] / 4;
      byBlocks(rows, cols, per, sums, out, (r, nr) => {
        f.set(c.subarray(r * cols, (r + nr) * cols), C);
        ex.biasReluColsum(nr, cols, at[2], at[1], at[0]);
        c.set(f.subarray(C, C + nr * cols), r * cols);
      });
      return true;
    },
    reluGradRowColsum(dy, row, y, dst, out, rows, cols) {
      return reluGrad(dy, row, y, dst, out, rows, cols);
    },
    reluMask(a, mask, n) {
      if (n % 4 !== 0) return false;
      const c = Math.min(n, CHUNK);
      const at = layout([c * 4, c / 4]);
      if (!at) return false;
      const f = new Float32Array(ex.mem.buffer);
      const bytes = new Uint8Array(ex.mem.buffer);
      for (let o = 0; o < n; o += c) {
        const len = Math.min(c, n - o);
        f.set(a.subarray(o, o + len), at[0] / 4);
        ex.reluMask(len / 4, at[0], at[1]);
        mask.set(bytes.subarray(at[1], at[1] + len / 4), o / 4);
      }
      return true;
    },
    reluGradRowMaskColsum(dy, row, mask, dst, out, rows, cols) {
      return reluGrad(dy, row, mask, dst, out, rows, cols);
    },
  };
}

/** The compiled module (a `WebAssembly.Module`, which workers can instantiate) once {@link loadDenseWasm} has loaded it. */
export function denseWasmModule(): object | undefined {
  return typeof loadDenseWasm() === 'string' ? undefined : compiled;
}

/** Below this many elements a kernel's TypeScript loop costs less than the trip through the module. */
export const DENSE_MIN_ELEMENTS = 2048;

/**
 * The dense module when every array is float32 storage (the float64 oracle and int32 tensors
 * keep the TypeScript loops) and the module loads here; otherwise undefined.
 */
export function denseFor(...arrays: ArrayLike<number>[]): DenseWasm | undefined {
  for (const a of arrays) if (!(a instanceof Float32Array)) return undefined;
  const d = loadDenseWasm();
  return typeof d === 'string' ? undefined : d;
}
