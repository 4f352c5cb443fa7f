/**
 * The synthetic source's sums in WebAssembly SIMD: each sample row is Σ_a c_a·g_{i_a} over its
 * active ground-truth features, computed exactly as the TypeScript loop does (the row starts at
 * zero; each term is added as `out += c·g` in float64 and rounded to float32), two float64 lanes
 * at a time, so the values are bit for bit those of the TypeScript path. A whole batch goes in
 * one call: its active lists and coefficients are laid out in the module's memory first.
 *
 * The module is assembled here from its bytes (a few dozen instructions; `@dictlearn/buffer`
 * depends on core alone, so it does not share backend-cpu's assembler). Where WebAssembly SIMD is
 * unavailable {@link syntheticWasm} returns null and the source keeps its TypeScript loop.
 *
 * @module
 */

const SIMD = 0xfd;
const [I32, V128, VOID] = [0x7f, 0x7b, 0x40];
const [BLOCK, LOOP, END, BR, BR_IF] = [0x02, 0x03, 0x0b, 0x0c, 0x0d];
const [GET, SET] = [0x20, 0x21];
const [I32_LOAD, F64_LOAD, I32_CONST] = [0x28, 0x2b, 0x41];
const [I32_GE_U, I32_ADD, I32_MUL, I32_SHL] = [0x4f, 0x6a, 0x6c, 0x74];
const V128_LOAD = [SIMD, 0x00];
const V128_STORE = [SIMD, 0x0b];
const I8X16_SHUFFLE = [SIMD, 0x0d];
const F64X2_SPLAT = [SIMD, 0x14];
const F32X4_DEMOTE_F64X2_ZERO = [SIMD, 0x5e];
const F64X2_PROMOTE_LOW_F32X4 = [SIMD, 0x5f];
const F64X2_ADD = [SIMD, 0xf0, 0x01];
const F64X2_MUL = [SIMD, 0xf2, 0x01];
const V128_ZERO = [SIMD, 0x0c, ...new Array<number>(16).fill(0)];

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
const i32c = (v: number) => [I32_CONST, ...uleb(v)]; // small non-negative constants only
const get = (l: number) => [GET, ...uleb(l)];
const set = (l: number) => [SET, ...uleb(l)];
const mem = (align: number, offset = 0) => [align, ...uleb(offset)];
const addTo = (l: number, step: number[]) => [...get(l), ...step, I32_ADD, ...set(l)];
/** while (a < b) body, with a and b re-evaluated each time round. */
const whileLtU = (a: number[], b: number[], body: number[]) => [
  BLOCK,
  VOID,
  LOOP,
  VOID,
  ...a,
  ...b,
  I32_GE_U,
  BR_IF,
  1,
  ...body,
  BR,
  0,
  END,
  END,
];
/** i8x16.shuffle of two v128 picking 32-bit lanes (0–3 of the first, 4–7 of the second). */
const lanes = (l: number[]) => [
  ...I8X16_SHUFFLE,
  ...l.flatMap((x) => [4 * x, 4 * x + 1, 4 * x + 2, 4 * x + 3]),
];

/**
 * sums(rows, d, offs, idx, coef, g, out): for each row r, out[r] (d float32, d a multiple of 4)
 * = 0, then for a in offs[r] .. offs[r+1]: out[r] ← f32(f64(out[r]) + coef[a]·f64(g[idx[a]])).
 * offs, idx: int32; coef: float64; g: float32 rows of d; all byte addresses.
 */
function sumsBody(): number[] {
  const [ROWS, D, OFFS, IDX, COEF, G, OUT] = [0, 1, 2, 3, 4, 5, 6];
  const [R, DB, O, A, AEND, GP, K] = [7, 8, 9, 10, 11, 12, 13];
  const [C, X, Y, LO] = [14, 15, 16, 17];
  /** promote two float32 lanes of local v (low pair, or high pair moved down) to float64 */
  const half = (v: number, high: boolean) => [
    ...get(v),
    ...(high ? [...get(v), ...lanes([2, 3, 2, 3])] : []),
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
      ...mem(4),
      ...addTo(K, i32c(16)),
    ]),
    // a runs over offs[r] .. offs[r+1]
    ...get(OFFS),
    ...get(R),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    I32_LOAD,
    ...mem(2),
    ...set(A),
    ...get(OFFS),
    ...get(R),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    I32_LOAD,
    ...mem(2, 4),
    ...set(AEND),
    ...whileLtU(get(A), get(AEND), [
      // gp = g + idx[a]·d·4; c = coef[a] in both lanes
      ...get(IDX),
      ...get(A),
      ...i32c(2),
      I32_SHL,
      I32_ADD,
      I32_LOAD,
      ...mem(2),
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
      ...mem(3),
      ...F64X2_SPLAT,
      ...set(C),
      ...i32c(0),
      ...set(K),
      ...whileLtU(get(K), get(DB), [
        ...get(O),
        ...get(K),
        I32_ADD,
        ...V128_LOAD,
        ...mem(4),
        ...set(X),
        ...get(GP),
        ...get(K),
        I32_ADD,
        ...V128_LOAD,
        ...mem(4),
        ...set(Y),
        ...term(false),
        ...set(LO),
        ...get(O),
        ...get(K),
        I32_ADD,
        ...get(LO),
        ...term(true),
        ...lanes([0, 1, 4, 5]),
        ...V128_STORE,
        ...mem(4),
        ...addTo(K, i32c(16)),
      ]),
      ...addTo(A, i32c(1)),
    ]),
    ...addTo(R, i32c(1)),
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
  const locals = [
    [7, I32],
    [4, V128],
  ];
  return [...uleb(locals.length), ...locals.flatMap(([n, t]) => [...uleb(n), t]), ...code, END];
}

/** The module: memory `mem` (exported, growable) and `sums`. */
function moduleBytes(): Uint8Array {
  const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
  const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
  const name = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
  const body = sumsBody();
  return Uint8Array.from([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec([[0x60, ...vec([I32, I32, I32, I32, I32, I32, I32].map((t) => [t])), 0]])),
    ...section(3, vec([[0]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(
      7,
      vec([
        [...name('mem'), 0x02, 0],
        [...name('sums'), 0x00, 0],
      ]),
    ),
    ...section(10, vec([[...uleb(body.length), ...body]])),
  ]);
}

/** The slice of the WebAssembly JS API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

/** The batch sums of one source: its ground-truth rows laid out once, then one call per batch. */
export interface SyntheticSums {
  /**
   * out [rows, d] = Σ_a coef[a]·g[idx[a]] per row, a over offs[r] .. offs[r+1] (in that order),
   * bit for bit the TypeScript loop's values.
   */
  sums(rows: number, offs: Int32Array, idx: Int32Array, coef: Float64Array, out: Float32Array): void;
}

/** Above this many bytes of memory the source keeps its TypeScript loop. */
const MAX_BYTES = 2 ** 30;

let compiled: object | null | undefined;

/**
 * A module instance holding the ground-truth rows g [numFeatures, d] (d a multiple of 4), or null
 * where WebAssembly SIMD is unavailable or d is not a multiple of 4.
 */
export function syntheticWasm(g: Float32Array, d: number): SyntheticSums | null {
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (d % 4 !== 0 || g.byteLength > MAX_BYTES / 2) return null;
  if (compiled === undefined) {
    try {
      const bytes = moduleBytes();
      compiled = api?.validate(bytes) ? new api.Module(bytes) : null;
    } catch {
      compiled = null;
    }
  }
  if (!compiled || !api) return null;
  const ex = new api.Instance(compiled, {}).exports as { mem: WasmMemory; sums: (...a: number[]) => void };
  const reserve = (bytes: number) => {
    const have = ex.mem.buffer.byteLength;
    if (bytes > have) ex.mem.grow(Math.ceil((bytes - have) / 65536));
  };
  const align = (n: number) => Math.ceil(n / 16) * 16;
  reserve(g.byteLength);
  new Float32Array(ex.mem.buffer, 0, g.length).set(g);
  const gBytes = align(g.byteLength);
  return {
    sums(rows, offs, idx, coef, out) {
      const n = offs[rows];
      const at = [gBytes];
      for (const b of [(rows + 1) * 4, n * 4, n * 8, rows * d * 4]) at.push(at[at.length - 1] + align(b));
      if (at[4] > MAX_BYTES) throw new RangeError('synthetic batch too large for the WebAssembly sums');
      reserve(at[4]);
      const buf = ex.mem.buffer;
      new Int32Array(buf, at[0], rows + 1).set(offs.subarray(0, rows + 1));
      new Int32Array(buf, at[1], n).set(idx.subarray(0, n));
      new Float64Array(buf, at[2], n).set(coef.subarray(0, n));
      ex.sums(rows, d, at[0], at[1], at[2], 0, at[3]);
      out.set(new Float32Array(buf, at[3], rows * d));
    },
  };
}
