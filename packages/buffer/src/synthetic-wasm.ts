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
  F32X4_DEMOTE_F64X2_ZERO,
  F64_LOAD,
  F64X2_ADD,
  F64X2_MUL,
  F64X2_PROMOTE_LOW_F32X4,
  F64X2_SPLAT,
  funcBody,
  get,
  I32,
  I32_ADD,
  I32_LOAD,
  I32_MUL,
  I32_SHL,
  i32c,
  memAligned,
  set,
  shuffle32,
  V128,
  V128_LOAD,
  V128_STORE,
  V128_ZERO,
  whileLtU,
} from '@dictlearn/core/wasm';
import type { BufferWasm } from './buffer-wasm.js';

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

/** The batch sums of one source: its ground-truth rows laid out once, then one call per batch. */
export interface SyntheticSums {
  /**
   * The rows [rows, d] = Σ_a coef[a]·g[idx[a]] per row, a over offs[r] .. offs[r+1] (in that
   * order), bit for bit the TypeScript loop's values: a view of the instance's memory, valid
   * until the next call (or the memory's next growth).
   */
  sums(rows: number, offs: Int32Array, idx: Int32Array, coef: Float64Array): Float32Array;
}

/** Above this many bytes of memory the source keeps its TypeScript loop. */
const MAX_BYTES = 2 ** 30;

/**
 * The sums of ground-truth rows g [numFeatures, d] on instance `w` (g copied to its free memory
 * from `heapAt` on), or null where d is not a multiple of 4 or g is too large.
 */
export function syntheticSums(
  w: BufferWasm,
  heapAt: number,
  g: Float32Array,
  d: number,
): SyntheticSums | null {
  if (d % 4 !== 0 || g.byteLength > MAX_BYTES / 2) return null;
  const align = (n: number) => Math.ceil(n / 16) * 16;
  const gAt = align(heapAt);
  w.reserve(gAt + g.byteLength);
  new Float32Array(w.memory.buffer, gAt, g.length).set(g);
  const listsAt = gAt + align(g.byteLength);
  return {
    sums(rows, offs, idx, coef) {
      const n = offs[rows];
      const at = [listsAt];
      for (const b of [(rows + 1) * 4, n * 4, n * 8, rows * d * 4]) at.push(at[at.length - 1] + align(b));
      if (at[4] > MAX_BYTES) throw new RangeError('synthetic batch too large for the WebAssembly sums');
      w.reserve(at[4]);
      const buf = w.memory.buffer;
      new Int32Array(buf, at[0], rows + 1).set(offs.subarray(0, rows + 1));
      new Int32Array(buf, at[1], n).set(idx.subarray(0, n));
      new Float64Array(buf, at[2], n).set(coef.subarray(0, n));
      w.sums(rows, d, at[0], at[1], at[2], gAt, at[3]);
      return new Float32Array(buf, at[3], rows * d);
    },
  };
}
