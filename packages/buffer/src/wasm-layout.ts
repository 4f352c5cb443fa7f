/**
 * The memory layout and function indices of buffer's WebAssembly module (assembled in
 * buffer-wasm.ts), and the few instruction sequences its functions share: the module's own stream
 * state and reads of its words as uniforms. Kept apart so that the synthetic source's functions
 * (synthetic-wasm.ts) can use them without importing the module that assembles them.
 *
 * @module
 */
import {
  call,
  END,
  F64_CONVERT_I32_U,
  F64_MUL,
  f64c,
  get,
  I32_ADD,
  I32_LOAD,
  I32_LT_U,
  I32_SHR_U,
  I32_STORE,
  IF,
  i32c,
  memAligned,
  SELECT,
  set,
  VOID,
} from '@dictlearn/core/wasm';

/** Byte address of the ziggurat's X table (128 float64). */
export const ZIG_X_AT = 0;
/** Byte address of the ziggurat's K table (128 int32). */
export const ZIG_K_AT = 1024;
/**
 * Byte address of the module's own stream state, int32 fields: the next word's index in the
 * words region, the index past the last computed word, the counter (c0 of the next block, c1, c2,
 * c3), the key (k0, k1) and the blocks the next refill computes.
 */
export const STREAM_AT = 1536;
export const STREAM_POS = STREAM_AT;
export const STREAM_END = STREAM_AT + 4;
export const STREAM_C0 = STREAM_AT + 8;
export const STREAM_C1 = STREAM_AT + 12;
export const STREAM_C2 = STREAM_AT + 16;
export const STREAM_C3 = STREAM_AT + 20;
/** Byte address of the key (k0, k1) of the module's own stream. */
export const STREAM_KEY_AT = STREAM_AT + 24;
export const STREAM_CHUNK = STREAM_AT + 32;
/** Byte address of the Philox words. */
export const WORDS_AT = 2048;
/** How many Philox words the words region holds (4096 blocks). */
export const WORD_COUNT = 16384;
/** Byte address of the scratch rows for normals added to arrays outside the memory. */
export const SCRATCH_AT = WORDS_AT + 4 * WORD_COUNT;
/** Float32 capacity of the scratch rows. */
export const SCRATCH_FLOATS = 4096;
/** Byte address of the ziggurat's F table (129 float64). */
export const ZIG_F_AT = SCRATCH_AT + 4 * SCRATCH_FLOATS;
/** First byte free for the instance's owner (16-byte aligned). */
export const HEAP_AT = ZIG_F_AT + 1040;

/**
 * Indices of the module's functions (its three imports first: `Math.log`, `Math.exp` and
 * random.ts's `normalCdf`), for calls between them: the synthetic source's `codes` and
 * `correlatedCodes` (synthetic-wasm.ts) read their stream through `reset` and `next`.
 */
export const FN = {
  log: 0,
  exp: 1,
  cdf: 2,
  philox: 3,
  normals: 4,
  sums: 5,
  reset: 6,
  refill: 7,
  next: 8,
  normalSlow: 9,
  noise: 10,
  codes: 11,
  correlatedCodes: 12,
} as const;

/** Philox counter word c3 of the synthetic source's code streams (its `TAG_CODE`). */
export const CODE_TAG = 1;
/** Philox counter word c3 of the synthetic source's noise streams (its `TAG_NOISE`). */
export const NOISE_TAG = 2;

/** The int32 at a fixed byte address / a store of `value` there. */
export const load32 = (at: number) => [...i32c(0), I32_LOAD, ...memAligned(2, at)];
export const store32 = (at: number, value: number[]) => [
  ...i32c(0),
  ...value,
  I32_STORE,
  ...memAligned(2, at),
];
/** `if (cond) { then }`, no result. */
export const ifThen = (cond: number[], then: number[]) => [...cond, IF, VOID, ...then, END];
/** `min(a, b)`, unsigned (a and b are evaluated twice: plain reads only). */
export const minU = (a: number[], b: number[]) => [...a, ...b, ...a, ...b, I32_LT_U, SELECT];
/** The next word of the module's stream as a uniform in [0, 1) with 24 bits (`PhiloxStream.uniform`). */
export const uniformNext = [
  ...call(FN.next),
  ...i32c(8),
  I32_SHR_U,
  F64_CONVERT_I32_U,
  ...f64c(2 ** -24),
  F64_MUL,
];
/** The next word as a uniform in (0, 1] (`PhiloxStream.uniformPositive`). */
export const uniformPositiveNext = [
  ...call(FN.next),
  ...i32c(8),
  I32_SHR_U,
  ...i32c(1),
  I32_ADD,
  F64_CONVERT_I32_U,
  ...f64c(2 ** -24),
  F64_MUL,
];

/**
 * The counter words (c1, c2, c3) of sample n = hi·2³² + lo + r's stream `tag`, pushed for a call
 * of `reset`: c1 = lo + r (mod 2³², kept in local `c1Local`), c2 = hi + 1 where that wrapped
 * past 2³², else hi.
 */
export const sampleCounter = (lo: number, hi: number, r: number, c1Local: number, tag: number) => [
  ...get(lo),
  ...get(r),
  I32_ADD,
  ...set(c1Local),
  ...get(c1Local),
  ...get(hi),
  ...get(c1Local),
  ...get(lo),
  I32_LT_U,
  I32_ADD,
  ...i32c(tag),
];
