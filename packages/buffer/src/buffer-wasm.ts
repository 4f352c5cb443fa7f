/**
 * The buffer package's WebAssembly module, assembled with `@dictlearn/core/wasm`: Philox blocks
 * (SIMD, eight blocks at a time), the ziggurat's fast path, and the synthetic source's sums. One
 * instance holds one memory, laid out as
 *
 * | bytes | what |
 * | --- | --- |
 * | {@link ZIG_X_AT} … | the ziggurat's X[0 … 127] (float64) |
 * | {@link ZIG_K_AT} … | its integer fast-test bounds K[0 … 127] (int32) |
 * | {@link STREAM_AT} … | the state of the stream that the module reads by itself (`reset`, `next`) |
 * | {@link WORDS_AT} … | {@link WORD_COUNT} Philox words (a stream's chunk of blocks) |
 * | {@link SCRATCH_AT} … | {@link SCRATCH_FLOATS} float32: normals added to arrays outside this memory pass through here |
 * | {@link ZIG_F_AT} … | the ziggurat's F[0 … 128] = exp(−X[i]²/2) (float64) |
 * | {@link HEAP_AT} … | free for the owner (the synthetic sums' rows and batch) |
 *
 * so a stream's words and the rows its noise is added to can share it, and no word is copied.
 *
 * Besides the fast paths that `PhiloxStream` (random.ts) drives word by word, the module reads a
 * stream by itself: `reset` starts one, `next` gives its words in order (computing blocks as it
 * runs out), `normalSlow` is the ziggurat's rare path and `noise` adds whole rows of normals, each
 * row from its own stream, in one call. They compute what `PhiloxStream` computes, operation for
 * operation; the logarithms and exponentials they need are the host's own `Math.log` and
 * `Math.exp`, imported, so even those bits are the TypeScript path's.
 * Where WebAssembly SIMD is unavailable {@link bufferWasm} returns null and callers keep their
 * TypeScript loops, which compute the same values bit for bit.
 *
 * @module
 */
import {
  addTo,
  BR,
  BR_IF,
  call,
  ELSE,
  END,
  F32_DEMOTE_F64,
  F32_LOAD,
  F32_STORE,
  F64,
  F64_ADD,
  F64_CONVERT_I32_S,
  F64_CONVERT_I32_U,
  F64_DIV,
  F64_GT,
  F64_LOAD,
  F64_LT,
  F64_MUL,
  F64_NEG,
  F64_PROMOTE_F32,
  F64_SUB,
  f64c,
  funcBody,
  funcType,
  get,
  I32,
  I32_ADD,
  I32_AND,
  I32_EQ,
  I32_EQZ,
  I32_GE_U,
  I32_LOAD,
  I32_LT_U,
  I32_SHL,
  I32_SHR_U,
  I32_SUB,
  I32X4_ADD,
  I32X4_MUL,
  I32X4_SPLAT,
  I64X2_EXTMUL_HIGH_I32X4_U,
  I64X2_EXTMUL_LOW_I32X4_U,
  IF,
  i32c,
  i32x4c,
  LOOP,
  memAligned,
  moduleBytes,
  RETURN,
  set,
  shuffle32,
  UNREACHABLE,
  V128,
  V128_STORE,
  V128_XOR,
  VOID,
  type WasmMemory,
  wasmApi,
  whileLtU,
} from '@dictlearn/core/wasm';
import { erfc, normalCdf } from './normal-cdf.js';
import { codesBody, correlatedCodesBody, sumsBody } from './synthetic-wasm.js';
import {
  FN,
  HEAP_AT,
  ifThen,
  load32,
  minU,
  NOISE_TAG,
  STREAM_C0,
  STREAM_C1,
  STREAM_C2,
  STREAM_C3,
  STREAM_CHUNK,
  STREAM_END,
  STREAM_KEY_AT,
  STREAM_POS,
  sampleCounter,
  store32,
  uniformNext,
  uniformPositiveNext,
  WORD_COUNT,
  WORDS_AT,
  ZIG_F_AT,
  ZIG_K_AT,
  ZIG_X_AT,
} from './wasm-layout.js';

export {
  HEAP_AT,
  SCRATCH_AT,
  SCRATCH_FLOATS,
  STREAM_AT,
  STREAM_KEY_AT,
  WORD_COUNT,
  WORDS_AT,
  ZIG_F_AT,
  ZIG_K_AT,
  ZIG_X_AT,
} from './wasm-layout.js';

import { ZIG_F, ZIG_K, ZIG_TAIL, ZIG_X } from './ziggurat.js';

/** Philox-4x32-10's multipliers and Weyl key increments (Salmon et al., SC 2011). */
const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;

/**
 * Writes the blocks of counters [c0 + b (mod 2³²), c1, c2, c3] under key [k0, k1] for
 * b = 0 … n − 1 at byte address `out`, four words each, the same words as core's `philox4x32`.
 * Blocks are computed {@link PHILOX_BLOCKS_PER_STEP} at a time, so n rounded up to a multiple of
 * that many are written.
 */
export type PhiloxFill = (
  out: number,
  n: number,
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
) => void;

/** One instance of the module. */
export interface BufferWasm {
  /** The instance's memory; growing it (see {@link reserve}) detaches the views made before. */
  readonly memory: WasmMemory;
  /** Philox blocks (see {@link PhiloxFill}). */
  philox: PhiloxFill;
  /**
   * The ziggurat's fast path over the words at byte addresses `words … end`: for each word w
   * passing the fast test, the float32 at `out` (advancing with the words) becomes
   * f32(f64(out) + scale·((±u)·X[i])), as `PhiloxStream.addNormals` computes it. Stops at `end`
   * or at the first word that misses the test, and returns that word's address (`end` if none).
   */
  normals(words: number, end: number, out: number, scale: number): number;
  /** The synthetic source's sums (see `sumsBody` in synthetic-wasm.ts); byte addresses. */
  sums(rows: number, d: number, offs: number, idx: number, coef: number, g: number, out: number): void;
  /** Sets the key (int32 words of core's `philoxKey`) of the module's own stream. */
  setKey(k0: number, k1: number): void;
  /** Restarts the module's own stream at block 0 of counter (·, c1, c2, c3); see `resetBody`. */
  reset(c1: number, c2: number, c3: number, blocks: number): void;
  /** The module's stream's next word, as an int32. */
  next(): number;
  /** The ziggurat's rare path for word w, reading more words of the module's stream. */
  normalSlow(w: number): number;
  /**
   * Adds `scale` times normal noise to `rows` rows of d float32 at byte address `out`, row r from
   * the noise stream of sample hi·2³² + lo + r (see `noiseBody`).
   */
  noise(rows: number, lo: number, hi: number, d: number, scale: number, out: number): void;
  /** The synthetic source's independent sparse codes (see `codesBody` in synthetic-wasm.ts). */
  codes(
    rows: number,
    lo: number,
    hi: number,
    offs: number,
    idx: number,
    coef: number,
    capacity: number,
    p: number,
    starts: number,
    bounds: number,
    logMiss: number,
    blocks: number,
    numFeatures: number,
    product: number,
    chunk: number,
  ): number;
  /** The synthetic source's correlated sparse codes (see `correlatedCodesBody` in synthetic-wasm.ts). */
  correlatedCodes(
    rows: number,
    lo: number,
    hi: number,
    offs: number,
    idx: number,
    coef: number,
    capacity: number,
    loadings: number,
    thresholds: number,
    rank: number,
    numFeatures: number,
    sqrtRho: number,
    invSqrtOneMinusRho: number,
    product: number,
    chunk: number,
    m: number,
    eta: number,
    phi: number,
    logMiss: number,
  ): number;
  /** Grows the memory to at least `bytes` bytes. */
  reserve(bytes: number): void;
}

/** Blocks computed per iteration: two independent groups of four, so one's multiplies overlap the other's. */
export const PHILOX_BLOCKS_PER_STEP = 8;

/**
 * philox(out, n, c0, c1, c2, c3, k0, k1): {@link PHILOX_BLOCKS_PER_STEP} blocks per iteration,
 * as groups of four with lane b holding block b's state; after the rounds a 4×4 transpose
 * stores each block's words together, in stream order.
 */
function philoxBody(): number[] {
  const [OUT, N, C0, C1, C2, C3, K0, K1] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [LIMIT, R, Y0, Y1] = [8, 9, 10, 11];
  const GROUPS = PHILOX_BLOCKS_PER_STEP / 4;
  /** A group's v128 locals: its state x0…x3 and temporaries. */
  const groupLocals = (g: number) => {
    const [X0, X1, X2, X3, LO, HI, T0, T1] = Array.from({ length: 8 }, (_, k) => 12 + 8 * g + k);
    return { X0, X1, X2, X3, LO, HI, T0, T1 };
  };
  const splat = (l: number) => [...get(l), ...I32X4_SPLAT];
  const m0 = i32x4c([PHILOX_M0, PHILOX_M0, PHILOX_M0, PHILOX_M0]);
  const m1 = i32x4c([PHILOX_M1, PHILOX_M1, PHILOX_M1, PHILOX_M1]);
  /** The high 32 bits of each lane's 64-bit product x·m: the odd halves of the two extmuls. */
  const mulHigh = (x: number, m: number[]) => [
    ...get(x),
    ...m,
    ...I64X2_EXTMUL_LOW_I32X4_U,
    ...get(x),
    ...m,
    ...I64X2_EXTMUL_HIGH_I32X4_U,
    ...shuffle32([1, 3, 5, 7]),
  ];
  const mulLow = (x: number, m: number[]) => [...get(x), ...m, ...I32X4_MUL];
  const xor3 = (a: number[], b: number[], c: number[]) => [...a, ...b, ...V128_XOR, ...c, ...V128_XOR];
  const store = (offset: number, value: number[]) => [
    ...get(OUT),
    ...value,
    ...V128_STORE,
    ...memAligned(4, offset),
  ];
  const round: number[] = [];
  const start: number[] = [];
  const stores: number[] = [];
  for (let g = 0; g < GROUPS; g++) {
    const { X0, X1, X2, X3, LO, HI, T0, T1 } = groupLocals(g);
    round.push(
      ...mulLow(X0, m0),
      ...set(LO),
      ...mulHigh(X0, m0),
      ...set(HI),
      // x0 ← hi(M1·x2) ^ x1 ^ k0; x1 ← lo(M1·x2); x2 ← hi(M0·x0) ^ x3 ^ k1; x3 ← lo(M0·x0)
      ...xor3(mulHigh(X2, m1), get(X1), splat(Y0)),
      ...set(X0),
      ...mulLow(X2, m1),
      ...set(X1),
      ...xor3(get(HI), get(X3), splat(Y1)),
      ...set(X2),
      ...get(LO),
      ...set(X3),
    );
    start.push(
      ...splat(C0),
      ...i32x4c([4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3]),
      ...I32X4_ADD,
      ...set(X0),
      ...splat(C1),
      ...set(X1),
      ...splat(C2),
      ...set(X2),
      ...splat(C3),
      ...set(X3),
    );
    // lanes (x0, x1, x2, x3) of blocks 0, 1 and then 2, 3 interleaved, then joined per block
    const at = 64 * g;
    for (const [half, pairs] of [
      [0, [0, 4, 1, 5]],
      [32, [2, 6, 3, 7]],
    ] as const) {
      stores.push(
        ...get(X0),
        ...get(X1),
        ...shuffle32([...pairs]),
        ...set(T0),
        ...get(X2),
        ...get(X3),
        ...shuffle32([...pairs]),
        ...set(T1),
        ...store(at + half, [...get(T0), ...get(T1), ...shuffle32([0, 1, 4, 5])]),
        ...store(at + half + 16, [...get(T0), ...get(T1), ...shuffle32([2, 3, 6, 7])]),
      );
    }
  }
  const step = [
    ...start,
    ...get(K0),
    ...set(Y0),
    ...get(K1),
    ...set(Y1),
    ...i32c(10),
    ...set(R),
    LOOP,
    VOID,
    ...round,
    ...addTo(Y0, PHILOX_W0 | 0),
    ...addTo(Y1, PHILOX_W1 | 0),
    ...get(R),
    ...i32c(1),
    I32_SUB,
    ...set(R),
    ...get(R),
    BR_IF,
    0,
    END, // of the rounds loop
    ...stores,
    ...addTo(C0, PHILOX_BLOCKS_PER_STEP),
    ...addTo(OUT, 16 * PHILOX_BLOCKS_PER_STEP),
  ];
  const code = [
    ...get(OUT),
    ...get(N),
    ...i32c(4),
    I32_SHL,
    I32_ADD,
    ...set(LIMIT),
    ...whileLtU(get(OUT), get(LIMIT), step),
  ];
  return funcBody(
    [
      [4, I32],
      [8 * GROUPS, V128],
    ],
    code,
  );
}

/**
 * The ziggurat's fast test of word w, up to the comparison: i = w & 127 and m = w >>> 8 into
 * their locals, then m and K[i] on the stack (fast when m < K[i], unsigned).
 */
const zigguratTest = (w: number, i: number, m: number) => [
  ...get(w),
  ...i32c(127),
  I32_AND,
  ...set(i),
  ...get(w),
  ...i32c(8),
  I32_SHR_U,
  ...set(m),
  ...get(m),
  ...get(i),
  ...i32c(2),
  I32_SHL,
  I32_LOAD,
  ...memAligned(2, ZIG_K_AT),
];

/** The sign of word w's normal, from bit 7 without a branch: 1 − ((w >>> 6) & 2), as float64. */
const zigguratSign = (w: number) => [
  ...i32c(1),
  ...get(w),
  ...i32c(6),
  I32_SHR_U,
  ...i32c(2),
  I32_AND,
  I32_SUB,
  F64_CONVERT_I32_S,
];
/** u = m·2⁻²⁴ (exact), of local m = w >>> 8. */
const zigguratU = (m: number) => [...get(m), F64_CONVERT_I32_U, ...f64c(2 ** -24), F64_MUL];
/** The ziggurat's X[i], of local i. */
const zigguratX = (i: number) => [...get(i), ...i32c(3), I32_SHL, F64_LOAD, ...memAligned(3, ZIG_X_AT)];

/**
 * The ziggurat's fast-path value of word w (locals: w, m = w >>> 8, i = w & 127):
 * (1 − ((w >>> 6) & 2))·(m·2⁻²⁴)·X[i], the sign from bit 7 and u = m·2⁻²⁴ exact, in
 * `PhiloxStream.normal`'s order.
 */
const zigguratValue = (w: number, m: number, i: number) => [
  ...zigguratSign(w),
  ...zigguratU(m),
  F64_MUL,
  ...zigguratX(i),
  F64_MUL,
];

/**
 * normals(words, end, out, scale) → address of the first word missing the fast test, or end.
 * Per word w: i = w & 127, m = w >>> 8; fast when m < K[i]; then
 * out ← f32(f64(out) + scale·((1 − ((w >>> 6) & 2))·(m·2⁻²⁴)·X[i])), the TypeScript's
 * operations in its order (float64, one rounding to float32 at the store).
 */
function normalsBody(): number[] {
  const [P, LIMIT, OUT, SCALE] = [0, 1, 2, 3];
  const [W, I, M] = [4, 5, 6];
  const code = [
    ...whileLtU(get(P), get(LIMIT), [
      ...get(P),
      I32_LOAD,
      ...memAligned(2),
      ...set(W),
      // a miss leaves the loop (depth 1: the enclosing block) with P at the word
      ...zigguratTest(W, I, M),
      I32_GE_U,
      BR_IF,
      1,
      ...get(OUT),
      ...get(OUT),
      F32_LOAD,
      ...memAligned(2),
      F64_PROMOTE_F32,
      ...get(SCALE),
      ...zigguratValue(W, M, I),
      F64_MUL,
      F64_ADD,
      F32_DEMOTE_F64,
      F32_STORE,
      ...memAligned(2),
      ...addTo(P, 4),
      ...addTo(OUT, 4),
    ]),
    ...get(P),
  ];
  return funcBody([[3, I32]], code);
}

/**
 * reset(c1, c2, c3, blocks): the module's stream restarts at block 0 of counter (·, c1, c2, c3),
 * its first refill computing `blocks` blocks (rounded up to whole steps, at most the words
 * region), as `PhiloxStream.reset`; the key stays.
 */
function resetBody(): number[] {
  const [C1, C2, C3, BLOCKS] = [0, 1, 2, 3];
  const step = PHILOX_BLOCKS_PER_STEP;
  return funcBody(
    [],
    [
      ...store32(STREAM_C0, i32c(0)),
      ...store32(STREAM_C1, get(C1)),
      ...store32(STREAM_C2, get(C2)),
      ...store32(STREAM_C3, get(C3)),
      ...store32(STREAM_POS, i32c(0)),
      ...store32(STREAM_END, i32c(0)),
      ...get(BLOCKS),
      ...i32c(step - 1),
      I32_ADD,
      ...i32c(-step),
      I32_AND,
      ...set(BLOCKS),
      ...store32(STREAM_CHUNK, minU(get(BLOCKS), i32c(MAX_BLOCKS))),
    ],
  );
}

/** Most blocks one refill computes: the words region's. */
const MAX_BLOCKS = WORD_COUNT / 4;

/**
 * refill(): computes the stream's next chunk of blocks into the words region (from its index 0)
 * and doubles the chunk for the next refill, as `PhiloxStream`'s refill (the chunk sizes never
 * change the words).
 */
function refillBody(): number[] {
  const N = 0;
  return funcBody(
    [[1, I32]],
    [
      ...load32(STREAM_CHUNK),
      ...set(N),
      ...i32c(WORDS_AT),
      ...get(N),
      ...load32(STREAM_C0),
      ...load32(STREAM_C1),
      ...load32(STREAM_C2),
      ...load32(STREAM_C3),
      ...load32(STREAM_KEY_AT),
      ...load32(STREAM_KEY_AT + 4),
      ...call(FN.philox),
      ...store32(STREAM_C0, [...load32(STREAM_C0), ...get(N), I32_ADD]),
      ...store32(STREAM_POS, i32c(0)),
      ...store32(STREAM_END, [...get(N), ...i32c(2), I32_SHL]),
      ...store32(STREAM_CHUNK, minU([...get(N), ...i32c(1), I32_SHL], i32c(MAX_BLOCKS))),
    ],
  );
}

/** next() → the stream's next word (int32), refilling first when none is left. */
function nextBody(): number[] {
  const P = 0;
  return funcBody(
    [[1, I32]],
    [
      ...load32(STREAM_POS),
      ...set(P),
      ...ifThen([...get(P), ...load32(STREAM_END), I32_EQ], [...call(FN.refill), ...i32c(0), ...set(P)]),
      ...store32(STREAM_POS, [...get(P), ...i32c(1), I32_ADD]),
      ...get(P),
      ...i32c(2),
      I32_SHL,
      I32_LOAD,
      ...memAligned(2, WORDS_AT),
    ],
  );
}

/**
 * normalSlow(w) → the normal value of a word w that missed the ziggurat's fast test, reading more
 * words with `next`: `PhiloxStream`'s normalSlow, the same operations in the same order (tail by
 * Marsaglia's method with the imported `log`, wedge test with the imported `exp`, else a new word).
 */
function normalSlowBody(): number[] {
  const W = 0;
  const [I, M] = [1, 2];
  const [U, X, SIGN, A, B] = [3, 4, 5, 6, 7];
  const fOf = (i: number[], plus: number) => [
    ...i,
    ...i32c(3),
    I32_SHL,
    F64_LOAD,
    ...memAligned(3, ZIG_F_AT + 8 * plus),
  ];
  const tail = [
    LOOP,
    VOID,
    // a = −log(u₁) / r; b = −log(u₂); done when 2b > a²
    ...uniformPositiveNext,
    ...call(FN.log),
    F64_NEG,
    ...f64c(ZIG_TAIL),
    F64_DIV,
    ...set(A),
    ...uniformPositiveNext,
    ...call(FN.log),
    F64_NEG,
    ...set(B),
    ...ifThen(
      [...get(B), ...get(B), F64_ADD, ...get(A), ...get(A), F64_MUL, F64_GT],
      [...get(SIGN), ...f64c(ZIG_TAIL), ...get(A), F64_ADD, F64_MUL, RETURN],
    ),
    BR,
    0,
    END,
  ];
  const code = [
    LOOP,
    VOID,
    // inside the layer's rectangle (a retry's new word may land there): the fast path's value
    ...ifThen([...zigguratTest(W, I, M), I32_LT_U], [...zigguratValue(W, M, I), RETURN]),
    ...zigguratU(M),
    ...set(U),
    ...get(U),
    ...zigguratX(I),
    F64_MUL,
    ...set(X),
    ...zigguratSign(W),
    ...set(SIGN),
    ...ifThen([...get(I), I32_EQZ], tail),
    // the wedge: y = F[i] + u'·(F[i+1] − F[i]) below exp(−x²/2)
    ...fOf(get(I), 0),
    ...uniformNext,
    ...fOf(get(I), 1),
    ...fOf(get(I), 0),
    F64_SUB,
    F64_MUL,
    F64_ADD,
    ...f64c(-0.5),
    ...get(X),
    F64_MUL,
    ...get(X),
    F64_MUL,
    ...call(FN.exp),
    F64_LT,
    ...ifThen([], [...get(SIGN), ...get(X), F64_MUL, RETURN]),
    ...call(FN.next),
    ...set(W),
    BR,
    0,
    END,
    UNREACHABLE,
  ];
  return funcBody(
    [
      [2, I32],
      [5, F64],
    ],
    code,
  );
}

/**
 * noise(rows, lo, hi, d, scale, out): for each row r, the stream of sample n = hi·2³² + lo + r
 * (counter (·, n mod 2³², ⌊n / 2³²⌋, 2)) adds `scale` times its first normals to the d float32
 * at out + 4·d·r: `PhiloxStream.reset` then `addNormals`, each value f32(f64(x) + scale·z). The
 * fast path is `normals`' test and arithmetic, inline; a word that misses it goes to
 * `normalSlow`, which may read (and refill) words, after which the loop reads on from there.
 */
function noiseBody(): number[] {
  const [ROWS, LO0, HI0, D, SCALE, OUT] = [0, 1, 2, 3, 4, 5];
  const [R, LO, POS, END_W, W, I, M, AT, O_END] = [6, 7, 8, 9, 10, 11, 12, 13, 14];
  const Z = 15;
  const addToOut = (z: number[]) => [
    ...get(AT),
    ...get(AT),
    F32_LOAD,
    ...memAligned(2),
    F64_PROMOTE_F32,
    ...get(SCALE),
    ...z,
    F64_MUL,
    F64_ADD,
    F32_DEMOTE_F64,
    F32_STORE,
    ...memAligned(2),
  ];
  const slow = [
    ...store32(STREAM_POS, get(POS)),
    ...get(W),
    ...call(FN.normalSlow),
    ...set(Z),
    ...load32(STREAM_POS),
    ...set(POS),
    ...load32(STREAM_END),
    ...set(END_W),
  ];
  const word = [
    ...ifThen(
      [...get(POS), ...get(END_W), I32_EQ],
      [...call(FN.refill), ...i32c(0), ...set(POS), ...load32(STREAM_END), ...set(END_W)],
    ),
    ...get(POS),
    ...i32c(2),
    I32_SHL,
    I32_LOAD,
    ...memAligned(2, WORDS_AT),
    ...set(W),
    ...addTo(POS, 1),
    ...zigguratTest(W, I, M),
    I32_LT_U,
    IF,
    VOID,
    ...addToOut(zigguratValue(W, M, I)),
    ELSE,
    // the slow path computes z first (it moves the stream), then adds it as the fast path does
    ...slow,
    ...addToOut(get(Z)),
    END,
    ...addTo(AT, 4),
  ];
  const row = [
    ...sampleCounter(LO0, HI0, R, LO, NOISE_TAG),
    // the first chunk as PhiloxStream.reset(…, d + 8) sizes it: ⌈(d + 8) / 4⌉ + 1 blocks
    ...get(D),
    ...i32c(11),
    I32_ADD,
    ...i32c(2),
    I32_SHR_U,
    ...i32c(1),
    I32_ADD,
    ...call(FN.reset),
    ...i32c(0),
    ...set(POS),
    ...i32c(0),
    ...set(END_W),
    ...get(AT),
    ...get(D),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...set(O_END),
    ...whileLtU(get(AT), get(O_END), word),
    ...store32(STREAM_POS, get(POS)),
    ...addTo(R, 1),
  ];
  return funcBody(
    [
      [9, I32],
      [1, F64],
    ],
    [...get(OUT), ...set(AT), ...i32c(0), ...set(R), ...whileLtU(get(R), get(ROWS), row)],
  );
}

/**
 * The module: memory `mem`, and `philox`, `normals`, `sums`, `reset`, `next`, `normalSlow`,
 * `noise`, `codes`, `correlatedCodes`; it imports `math.log`, `math.exp` and `math.cdf` (the
 * host's `Math.log`, `Math.exp` and normal-cdf.ts's `normalCdf`: see {@link wasmImports}).
 */
export function bufferWasmBytes(): Uint8Array {
  const ints = (n: number) => new Array<number>(n).fill(I32);
  const types = [
    funcType(ints(8), []),
    funcType([I32, I32, I32, F64], [I32]),
    funcType(ints(7), []),
    funcType([F64], [F64]),
    funcType(ints(4), []),
    funcType([], []),
    funcType([], [I32]),
    funcType([I32], [F64]),
    funcType([I32, I32, I32, I32, F64, I32], []),
    funcType(ints(15), [I32]),
    funcType([...ints(11), F64, F64, ...ints(6)], [I32]),
  ];
  // in FN's order: the imports, then the module's functions
  return moduleBytes(
    types,
    [
      { type: 0, body: philoxBody(), export: 'philox' },
      { type: 1, body: normalsBody(), export: 'normals' },
      { type: 2, body: sumsBody(), export: 'sums' },
      { type: 4, body: resetBody(), export: 'reset' },
      { type: 5, body: refillBody() },
      { type: 6, body: nextBody(), export: 'next' },
      { type: 7, body: normalSlowBody(), export: 'normalSlow' },
      { type: 8, body: noiseBody(), export: 'noise' },
      { type: 9, body: codesBody(), export: 'codes' },
      { type: 10, body: correlatedCodesBody(), export: 'correlatedCodes' },
    ],
    undefined,
    [
      { module: 'math', name: 'log', type: 3 },
      { module: 'math', name: 'exp', type: 3 },
      { module: 'math', name: 'cdf', type: 3 },
    ],
  );
}

/** What the module imports: the host's own functions, so its values are theirs, bit for bit. */
export function wasmImports(): Record<string, (x: number) => number> {
  return { log: Math.log, exp: Math.exp, cdf: normalCdf };
}

/**
 * {@link wasmImports} as source text, for worker threads (which instantiate the module too): an
 * expression, after the declarations it needs.
 */
export const WASM_IMPORTS_SOURCE = {
  declarations: `${erfc.toString()}\n${normalCdf.toString()}`,
  expression: `{ log: Math.log, exp: Math.exp, cdf: ${normalCdf.name} }`,
};

let compiled: object | null | undefined;

/**
 * The compiled module (compiled once), or null where WebAssembly SIMD is unavailable. Worker
 * threads get it by message and make instances of their own.
 */
export function bufferWasmModule(): object | null {
  if (compiled === undefined) {
    try {
      const api = wasmApi();
      const bytes = bufferWasmBytes();
      compiled = api?.validate(bytes) ? new api.Module(bytes) : null;
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/**
 * A new instance with its own memory (the tables written, the words region and scratch in
 * place), or null where WebAssembly SIMD is unavailable (no WebAssembly, no SIMD, or a policy
 * that forbids compiling).
 */
export function bufferWasm(): BufferWasm | null {
  const api = wasmApi();
  const compiled = bufferWasmModule();
  if (!compiled || !api) return null;
  const ex = new api.Instance(compiled, { math: wasmImports() }).exports as Omit<
    BufferWasm,
    'memory' | 'reserve' | 'setKey'
  > & { mem: WasmMemory };
  const memory = ex.mem;
  const reserve = (bytes: number) => {
    const have = memory.buffer.byteLength;
    if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
  };
  reserve(HEAP_AT);
  new Float64Array(memory.buffer, ZIG_X_AT, 128).set(ZIG_X.subarray(0, 128));
  new Int32Array(memory.buffer, ZIG_K_AT, 128).set(ZIG_K);
  new Float64Array(memory.buffer, ZIG_F_AT, 129).set(ZIG_F);
  const { philox, normals, sums, reset, next, normalSlow, noise, codes, correlatedCodes } = ex;
  const setKey = (k0: number, k1: number) => new Int32Array(memory.buffer, STREAM_KEY_AT, 2).set([k0, k1]);
  return {
    memory,
    philox,
    normals,
    sums,
    reset,
    next,
    normalSlow,
    noise,
    codes,
    correlatedCodes,
    setKey,
    reserve,
  };
}
