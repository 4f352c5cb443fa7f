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
  F32X4_DEMOTE_F64X2_ZERO,
  F64,
  F64_ADD,
  F64_CONVERT_I32_S,
  F64_DIV,
  F64_EQ,
  F64_FLOOR,
  F64_GE,
  F64_LE,
  F64_LOAD,
  F64_LT,
  F64_MUL,
  F64_STORE,
  F64X2_ADD,
  F64X2_MUL,
  F64X2_PROMOTE_LOW_F32X4,
  F64X2_SPLAT,
  f64c,
  funcBody,
  get,
  I32,
  I32_ADD,
  I32_GT_U,
  I32_LOAD,
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

/**
 * codes(rows, lo, hi, offs, idx, coef, capacity, p, starts, bounds, logMiss, blocks, numFeatures,
 * product, chunk) → rows done: the independent firing decisions and coefficients of samples
 * n = hi·2³² + lo + r, as `SyntheticSource`'s TypeScript draws them, into compressed rows
 * (offs[0] = 0, row r's features idx[offs[r] …] increasing and coef[offs[r] …]). Each sample's
 * stream (counter (·, n mod 2³², ⌊n / 2³²⌋, 1), its first refill `chunk` blocks) is read through
 * the module's `reset` and `next`; its skips take the imported `log`. p, bounds, logMiss:
 * float64 (per feature; per block); starts: int32 (blocks + 1 block starts). A row starts only
 * while numFeatures entries are left of `capacity`, so the call may return early, with fewer
 * rows.
 */
export function codesBody(): number[] {
  const [ROWS, LO0, HI0, OFFS, IDX, COEF, CAPACITY, P, STARTS, BOUNDS, LOGMISS, NB, NF, PRODUCT, CHUNK] =
    Array.from({ length: 15 }, (_, k) => k);
  const [R, LO, USED, BASE, B, J, END_J, A] = [15, 16, 17, 18, 19, 20, 21, 22];
  const [BOUND, LM, PJ, JF] = [23, 24, 25, 26];
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
  /** where `fires` (an i32 on the stack) holds: idx[used++] = j */
  const fire = [
    IF,
    VOID,
    ...get(IDX),
    ...get(USED),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...get(J),
    I32_STORE,
    ...memAligned(2),
    ...addTo(USED, 1),
    END,
  ];
  /** cond ? 1 : other (other evaluated, with its draw, only when cond is false) */
  const orElse = (cond: number[], other: number[]) => [...cond, IF, I32, ...i32c(1), ELSE, ...other, END];
  // bound ≥ 1: one test per feature, p[j] ≥ 1 || u < p[j]
  const direct = whileLtU(get(J), get(END_J), [
    ...f64At(P, get(J)),
    ...set(PJ),
    ...orElse([...get(PJ), ...f64c(1), F64_GE], [...uniformNext, ...get(PJ), F64_LT]),
    ...fire,
    ...addTo(J, 1),
  ]);
  // 0 < bound < 1: geometric skips, j += ⌊log u / log(1 − bound)⌋, thinned by p[j] / bound
  const skips = [
    ...f64At(LOGMISS, get(B)),
    ...set(LM),
    BLOCK,
    VOID,
    LOOP,
    VOID,
    ...get(J),
    F64_CONVERT_I32_S,
    ...uniformPositiveNext,
    ...call(FN.log),
    ...get(LM),
    F64_DIV,
    F64_FLOOR,
    F64_ADD,
    ...set(JF),
    ...get(JF),
    ...get(END_J),
    F64_CONVERT_I32_S,
    F64_GE,
    BR_IF,
    1,
    ...get(JF),
    I32_TRUNC_F64_S,
    ...set(J),
    ...f64At(P, get(J)),
    ...set(PJ),
    ...orElse(
      [...get(PJ), ...get(BOUND), F64_EQ],
      [...uniformNext, ...get(BOUND), F64_MUL, ...get(PJ), F64_LT],
    ),
    ...fire,
    ...addTo(J, 1),
    BR,
    0,
    END,
    END,
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
    ...skips,
    END,
    END,
    ...addTo(B, 1),
  ];
  const coefficients = whileLtU(get(A), get(USED), [
    ...get(COEF),
    ...get(A),
    ...i32c(3),
    I32_SHL,
    I32_ADD,
    ...get(PRODUCT),
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
    ...addTo(A, 1),
  ]);
  const row = [
    // stop before a row that might not fit
    ...get(USED),
    ...get(NF),
    I32_ADD,
    ...get(CAPACITY),
    I32_GT_U,
    BR_IF,
    1,
    ...sampleCounter(LO0, HI0, R, LO, CODE_TAG),
    ...get(CHUNK),
    ...call(FN.reset),
    ...get(USED),
    ...set(BASE),
    ...i32c(0),
    ...set(B),
    ...whileLtU(get(B), get(NB), block),
    ...get(BASE),
    ...set(A),
    ...coefficients,
    ...get(OFFS),
    ...get(R),
    ...i32c(2),
    I32_SHL,
    I32_ADD,
    ...get(USED),
    I32_STORE,
    ...memAligned(2, 4),
    ...addTo(R, 1),
  ];
  const code = [
    ...get(OFFS),
    ...i32c(0),
    I32_STORE,
    ...memAligned(2),
    ...i32c(0),
    ...set(USED),
    ...i32c(0),
    ...set(R),
    ...whileLtU(get(R), get(ROWS), row),
    ...get(R),
  ];
  return funcBody(
    [
      [8, I32],
      [4, F64],
    ],
    code,
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
  /** The firing tables (see {@link FiringTables}): p, block starts, bounds, log-misses. */
  pAt: number;
  startsAt: number;
  boundsAt: number;
  logMissAt: number;
  blocks: number;
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
 * The independent codes of up to `rows` samples from `start`, into lists after `rowBytes` bytes
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
  const done = ex.codes(
    rows,
    start >>> 0,
    Math.floor(start / 2 ** 32),
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
 * Samples `start` … `start + count − 1` with independent codes drawn here, plus noise of scale
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

/** A source's samples in WebAssembly: its tables laid out once, then a few calls per batch. */
export interface SyntheticKernels {
  /**
   * Samples start … start + count − 1 ([count, d] float32): the sums of the given code lists, or
   * (without them) of codes drawn here from the firing tables, plus noise of scale `sigma` (none
   * when 0), bit for bit the TypeScript loop's values. A view of the module's memory, valid until
   * the next call: copy it (a tensor's upload does) before drawing again.
   */
  rows(start: number, count: number, sigma: number, lists?: CodeLists): Float32Array;
  /** The independent codes of samples start … start + count − 1, drawn here. */
  codes(start: number, count: number): CodeLists;
  /**
   * Where the tables lie, for another instance given {@link image} (undefined without firing
   * tables: correlated sources draw their codes in TypeScript).
   */
  readonly plan: DrawPlan | undefined;
  /** A copy of the memory up to `plan.listsAt`: the tables, the stream's key, the ziggurat's. */
  image(): Uint8Array;
}

/**
 * The kernels of a source with ground-truth rows g [numFeatures, d] and data stream key `key`
 * on instance `w` (g and the firing tables copied to its free memory from `heapAt` on), or null
 * where d is not a multiple of 4 or g is too large. Without `firing` (correlated sources) only
 * `rows` with lists works. The lists of a call hold `entriesPerRow` entries per row (twice the
 * mean by default) and a row's worth more; a batch that needs more is drawn in several calls.
 */
export function syntheticKernels(
  w: BufferWasm,
  heapAt: number,
  g: Float32Array,
  d: number,
  key: [number, number],
  firing: FiringTables | undefined,
  entriesPerRow: (f: FiringTables) => number = (f) => 2 * f.meanActive,
): SyntheticKernels | null {
  if (d % 4 !== 0 || g.byteLength > MAX_BYTES / 2) return null;
  const numFeatures = g.length / d;
  const gAt = align(heapAt);
  const tables = firing ? [firing.p, firing.blockStart, firing.blockBound, firing.blockLogMiss] : [];
  const tableAt = [gAt + align(g.byteLength)];
  for (const t of tables) tableAt.push(tableAt[tableAt.length - 1] + align(t.byteLength));
  const listsAt = tableAt[tableAt.length - 1];
  w.reserve(listsAt);
  new Float32Array(w.memory.buffer, gAt, g.length).set(g);
  for (let k = 0; k < tables.length; k++) {
    const t = tables[k];
    const view =
      t instanceof Int32Array
        ? new Int32Array(w.memory.buffer, tableAt[k], t.length)
        : new Float64Array(w.memory.buffer, tableAt[k], t.length);
    view.set(t);
  }
  w.setKey(key[0], key[1]);
  const plan: DrawPlan = {
    d,
    numFeatures,
    gAt,
    pAt: tableAt[0],
    startsAt: tableAt[1] ?? 0,
    boundsAt: tableAt[2] ?? 0,
    logMissAt: tableAt[3] ?? 0,
    blocks: firing?.blockBound.length ?? 0,
    product: firing?.product ? 1 : 0,
    chunk: firing?.chunk ?? 0,
    entriesPerRow: firing ? entriesPerRow(firing) : 0,
    listsAt,
    maxBytes: MAX_BYTES,
  };
  return {
    plan: firing ? plan : undefined,
    image: () => new Uint8Array(w.memory.buffer, 0, listsAt).slice(),
    rows(start, count, sigma, lists) {
      if (lists) {
        const n = lists.offs[count];
        const [offs, idx, coef] = listsLayout(w, plan, count, n, count * d * 4);
        const buf = w.memory.buffer;
        new Int32Array(buf, offs, count + 1).set(lists.offs.subarray(0, count + 1));
        new Int32Array(buf, idx, n).set(lists.idx.subarray(0, n));
        new Float64Array(buf, coef, n).set(lists.coef.subarray(0, n));
        w.sums(count, d, offs, idx, coef, gAt, listsAt);
        if (sigma > 0) w.noise(count, start >>> 0, Math.floor(start / 2 ** 32), d, sigma, listsAt);
      } else {
        if (!firing) throw new RangeError('these kernels draw no codes (correlated source): pass the lists');
        drawRows(w, plan, start, count, sigma);
      }
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
