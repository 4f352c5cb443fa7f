/**
 * The buffer package's WebAssembly module, assembled with `@dictlearn/core/wasm`: Philox blocks
 * (SIMD, eight blocks at a time), the ziggurat's fast path, and the synthetic source's sums. One
 * instance holds one memory, laid out as
 *
 * | bytes | what |
 * | --- | --- |
 * | {@link ZIG_X_AT} … | the ziggurat's X[0 … 127] (float64) |
 * | {@link ZIG_K_AT} … | its integer fast-test bounds K[0 … 127] (int32) |
 * | {@link WORDS_AT} … | {@link WORD_COUNT} Philox words (a stream's chunk of blocks) |
 * | {@link SCRATCH_AT} … | {@link SCRATCH_FLOATS} float32: normals added to arrays outside this memory pass through here |
 * | {@link HEAP_AT} … | free for the owner (the synthetic sums' rows and batch) |
 *
 * so a stream's words and the rows its noise is added to can share it, and no word is copied.
 * Where WebAssembly SIMD is unavailable {@link bufferWasm} returns null and callers keep their
 * TypeScript loops, which compute the same values bit for bit.
 *
 * @module
 */
import {
  addTo,
  BR_IF,
  END,
  F32_DEMOTE_F64,
  F32_LOAD,
  F32_STORE,
  F64,
  F64_ADD,
  F64_CONVERT_I32_S,
  F64_CONVERT_I32_U,
  F64_LOAD,
  F64_MUL,
  F64_PROMOTE_F32,
  f64c,
  funcBody,
  funcType,
  get,
  I32,
  I32_ADD,
  I32_AND,
  I32_GE_U,
  I32_LOAD,
  I32_SHL,
  I32_SHR_U,
  I32_SUB,
  I32X4_ADD,
  I32X4_MUL,
  I32X4_SPLAT,
  I64X2_EXTMUL_HIGH_I32X4_U,
  I64X2_EXTMUL_LOW_I32X4_U,
  i32c,
  i32x4c,
  LOOP,
  memAligned,
  moduleBytes,
  set,
  shuffle32,
  V128,
  V128_STORE,
  V128_XOR,
  VOID,
  type WasmMemory,
  wasmApi,
  whileLtU,
} from '@dictlearn/core/wasm';
import { sumsBody } from './synthetic-wasm.js';
import { ZIG_K, ZIG_X } from './ziggurat.js';

/** Byte address of the ziggurat's X table (128 float64). */
export const ZIG_X_AT = 0;
/** Byte address of the ziggurat's K table (128 int32). */
export const ZIG_K_AT = 1024;
/** Byte address of the Philox words. */
export const WORDS_AT = 2048;
/** How many Philox words the words region holds (4096 blocks). */
export const WORD_COUNT = 16384;
/** Byte address of the scratch rows for normals added to arrays outside the memory. */
export const SCRATCH_AT = WORDS_AT + 4 * WORD_COUNT;
/** Float32 capacity of the scratch rows. */
export const SCRATCH_FLOATS = 4096;
/** First byte free for the instance's owner (16-byte aligned). */
export const HEAP_AT = SCRATCH_AT + 4 * SCRATCH_FLOATS;

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
      ...get(W),
      ...i32c(127),
      I32_AND,
      ...set(I),
      ...get(W),
      ...i32c(8),
      I32_SHR_U,
      ...set(M),
      // a miss leaves the loop (depth 1: the enclosing block) with P at the word
      ...get(M),
      ...get(I),
      ...i32c(2),
      I32_SHL,
      I32_LOAD,
      ...memAligned(2, ZIG_K_AT),
      I32_GE_U,
      BR_IF,
      1,
      ...get(OUT),
      ...get(OUT),
      F32_LOAD,
      ...memAligned(2),
      F64_PROMOTE_F32,
      ...get(SCALE),
      // sign = 1 − ((w >>> 6) & 2)
      ...i32c(1),
      ...get(W),
      ...i32c(6),
      I32_SHR_U,
      ...i32c(2),
      I32_AND,
      I32_SUB,
      F64_CONVERT_I32_S,
      // u = m·2⁻²⁴ (exact)
      ...get(M),
      F64_CONVERT_I32_U,
      ...f64c(2 ** -24),
      F64_MUL,
      F64_MUL,
      ...get(I),
      ...i32c(3),
      I32_SHL,
      F64_LOAD,
      ...memAligned(3, ZIG_X_AT),
      F64_MUL,
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

/** The module: memory `mem`, and `philox`, `normals`, `sums`. */
export function bufferWasmBytes(): Uint8Array {
  const ints = (n: number) => new Array<number>(n).fill(I32);
  return moduleBytes(
    [funcType(ints(8), []), funcType([I32, I32, I32, F64], [I32]), funcType(ints(7), [])],
    [
      { type: 0, body: philoxBody(), export: 'philox' },
      { type: 1, body: normalsBody(), export: 'normals' },
      { type: 2, body: sumsBody(), export: 'sums' },
    ],
  );
}

let compiled: object | null | undefined;

/**
 * A new instance with its own memory (the tables written, the words region and scratch in
 * place), or null where WebAssembly SIMD is unavailable (no WebAssembly, no SIMD, or a policy
 * that forbids compiling).
 */
export function bufferWasm(): BufferWasm | null {
  const api = wasmApi();
  if (compiled === undefined) {
    try {
      const bytes = bufferWasmBytes();
      compiled = api?.validate(bytes) ? new api.Module(bytes) : null;
    } catch {
      compiled = null;
    }
  }
  if (!compiled || !api) return null;
  const ex = new api.Instance(compiled, {}).exports as {
    mem: WasmMemory;
    philox: PhiloxFill;
    normals: BufferWasm['normals'];
    sums: BufferWasm['sums'];
  };
  const memory = ex.mem;
  const reserve = (bytes: number) => {
    const have = memory.buffer.byteLength;
    if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
  };
  reserve(HEAP_AT);
  new Float64Array(memory.buffer, ZIG_X_AT, 128).set(ZIG_X.subarray(0, 128));
  new Int32Array(memory.buffer, ZIG_K_AT, 128).set(ZIG_K);
  return { memory, philox: ex.philox, normals: ex.normals, sums: ex.sums, reserve };
}
