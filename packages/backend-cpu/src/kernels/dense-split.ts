/**
 * The dense loops that need no reduction across rows (Adam, the decoder-row kernels, elementwise
 * ops) split over the kernel pool's threads (Node only; loaded by the backend's `init` where the
 * pool has workers). Each thread runs the same chunked loops ({@link denseLoops}) on its own
 * instance of the dense module, over a contiguous range of the operands: this thread on
 * subarrays, a worker on views of the same memory that it makes with koffi from their addresses.
 *
 * Every output element is computed by the same instruction sequence whichever thread runs it,
 * so the results are bit for bit those of one thread. Column sums (the fused encoder kernels,
 * `sum` along rows) are split at their blocks' boundaries (`COLUMN_BLOCK_ROWS`): each part
 * stores its blocks' sums, and this thread adds them all in order, as one thread does.
 *
 * @module
 */
import { createRequire } from 'node:module';
import {
  addBlocks,
  COLUMN_BLOCK_ROWS,
  type ColumnSums,
  DENSE_OPS,
  type DenseBinaryOp,
  type DenseUnaryOp,
  type DenseWasm,
  denseLoops,
  denseWasmModule,
} from './dense-wasm.js';
import { alignedBounds, growTo } from './engine.js';
import { HANDOVER_SPIN_MS, holdUntilHere, type KernelPool, unmoving } from './kernel-pool.js';

/** Calls below this many elements run on this thread alone: a worker's part costs a few microseconds to hand over. */
export const DENSE_SPLIT_MIN_ELEMENTS = 1 << 15;

/** The methods a worker runs, by the index its parts name them with. */
const METHODS = [
  'adam',
  'rows',
  'binary',
  'unary',
  'colsum',
  'biasReluColsum',
  'reluGradRowColsum',
  'reluMask',
  'reluGradRowMaskColsum',
] as const;
/** The methods whose last array is where their block sums go (a `ColumnSums` of `blocks`). */
const BLOCK_SUM_METHODS: readonly Method[] = [
  'colsum',
  'biasReluColsum',
  'reluGradRowColsum',
  'reluGradRowMaskColsum',
];
type Method = (typeof METHODS)[number];

/**
 * A worker's set-up (evaluated there, see `KernelPool.loadNative`): an instance of the dense
 * module with the loops of {@link denseLoops}, and the function that runs one part. A part is
 * [method, op (−1: none), array count, (address, length, bytes per element: 1, 4 or 8) per array,
 * the method's numbers]; address 0 stands for an absent array.
 */
const SETUP = `(d, require) => {
  const koffi = require(d.koffi);
  const growTo = (${growTo.toString()});
  const ex = new WebAssembly.Instance(d.module, {}).exports;
  const loops = (${denseLoops.toString()})(ex, (sizes) => growTo(sizes, d.maxBytes, ex.mem));
  return (...part) => {
    const [method, op, count] = part;
    const arrays = [];
    for (let i = 0; i < count; i++) {
      const [at, n, size] = [part[3 + 3 * i], part[4 + 3 * i], part[5 + 3 * i]];
      const Type = size === 8 ? Float64Array : size === 1 ? Uint8Array : Float32Array;
      arrays.push(at === 0 ? undefined : n === 0 ? new Type(0) : new Type(koffi.view(at, size * n)));
    }
    const rest = part.slice(3 + 3 * count);
    const name = d.methods[method];
    if (d.blockSums.includes(name)) arrays.push({ blocks: arrays.pop() });
    const ok = op < 0 ? loops[name](...arrays, ...rest) : loops[name](d.ops[op], ...arrays, ...rest);
    if (!ok) throw new Error('dense ' + name + ': the loop refused its part');
  };
}`;

/**
 * The dense loops with Adam, the row kernels and the elementwise ops split over the pool's
 * threads when a call is large enough; everything else (and small calls) as `plain` runs it.
 * Undefined where the dense module or koffi cannot be loaded here.
 */
export function splitDense(pool: KernelPool, plain: DenseWasm): DenseWasm | undefined {
  const module = denseWasmModule();
  if (!module || pool.threads < 2) return undefined;
  let koffi: {
    address(a: Float32Array | Float64Array | Uint8Array): bigint;
    view(at: number, bytes: number): ArrayBuffer;
  };
  let koffiPath: string;
  try {
    const require = createRequire(import.meta.url);
    koffiPath = require.resolve('koffi');
    koffi = require('koffi');
  } catch {
    return undefined;
  }
  // this thread's stand-in for a worker that cannot take its part: the same set-up, evaluated here
  const data = {
    koffi: koffiPath,
    module,
    maxBytes: 2 ** 30,
    methods: METHODS,
    blockSums: BLOCK_SUM_METHODS,
    ops: DENSE_OPS,
  };
  const here = new Function(`return (${SETUP});`)()(data, createRequire(import.meta.url)) as (
    ...part: number[]
  ) => void;
  pool.loadNative('dense', { setup: SETUP, data, here });
  type Operand = Float32Array | Float64Array | Uint8Array | undefined;
  const address = (a: Operand) => (a === undefined ? 0 : Number(koffi.address(a)));

  /**
   * Runs `method` over [0, n) of its unit (elements or rows) in pool.threads ranges: this thread
   * takes the first through `plain`, the workers the others. `slices(lo, hi)` gives the arrays
   * and numbers of a range. The arrays are referenced (their storage never moves) until every
   * part has returned: `slices` builds subarrays of the caller's arrays, which it holds. A
   * block-sum method's last array is where its blocks' sums go (see {@link columnSums}).
   */
  const split = (
    method: Method,
    op: string | undefined,
    n: number,
    align: number,
    slices: (lo: number, hi: number) => [Operand[], number[]],
  ): boolean => {
    const bounds = alignedBounds(n, pool.threads, align);
    const theirs: number[][] = [];
    const reached: Operand[][] = [];
    for (let p = 1; p + 1 < bounds.length; p++) {
      const [arrays, numbers] = slices(bounds[p], bounds[p + 1]);
      reached.push(arrays);
      theirs.push([
        METHODS.indexOf(method),
        op === undefined ? -1 : DENSE_OPS.indexOf(op),
        arrays.length,
        ...arrays.flatMap((a) => [address(a), a?.length ?? 0, a?.BYTES_PER_ELEMENT ?? 4]),
        ...numbers,
      ]);
    }
    // the next product follows on the same threads (the backend splits dense loops only when
    // it splits its products over the pool)
    const wait = pool.begin('dense', theirs, HANDOVER_SPIN_MS);
    let ok = false;
    try {
      const [arrays, numbers] = slices(bounds[0], bounds[1]);
      const f = plain[method] as (...args: unknown[]) => boolean;
      const args: unknown[] = BLOCK_SUM_METHODS.includes(method)
        ? [...arrays.slice(0, -1), { blocks: arrays[arrays.length - 1] }]
        : arrays;
      ok = op === undefined ? f(...args, ...numbers) : f(op, ...args, ...numbers);
    } finally {
      wait();
      holdUntilHere(reached);
    }
    return ok;
  };
  const big = (n: number) => n >= DENSE_SPLIT_MIN_ELEMENTS && pool.readyWorkers() > 0;
  /**
   * A column sum over `rows` rows split at block boundaries: `slices(lo, hi)` gives a range's
   * arrays (the block-sum array appended here) and numbers; each part stores its blocks' sums
   * and this thread adds them into `out` in block order, as the one-thread loop does.
   */
  const columnSums = (
    method: Method,
    rows: number,
    cols: number,
    out: ColumnSums,
    slices: (lo: number, hi: number) => [Operand[], number[]],
  ): boolean => {
    const B = COLUMN_BLOCK_ROWS;
    const blocks = out.blocks ?? new Float64Array(Math.ceil(rows / B) * cols);
    const ok = split(method, undefined, rows, B, (lo, hi) => {
      const [arrays, numbers] = slices(lo, hi);
      return [[...arrays, blocks.subarray((lo / B) * cols, Math.ceil(hi / B) * cols)], numbers];
    });
    if (ok && out.acc) addBlocks(blocks, out.acc, cols);
    return ok;
  };
  const splits = (rows: number, cols: number) =>
    big(rows * cols) && cols % 4 === 0 && rows > COLUMN_BLOCK_ROWS;
  return {
    ...plain,
    adam(p, g, m, v, p2, m2, v2, n, b1, b2, step, sqrtBc2, eps) {
      if (!big(n)) return plain.adam(p, g, m, v, p2, m2, v2, n, b1, b2, step, sqrtBc2, eps);
      return split('adam', undefined, n, 4, (lo, hi) => [
        [p, g, m, v, p2, m2, v2].map((a) => a.subarray(lo, hi)),
        [hi - lo, b1, b2, step, sqrtBc2, eps],
      ]);
    },
    rows(w, g, dst, rows, cols) {
      if (!big(rows * cols) || cols === 0) return plain.rows(w, g, dst, rows, cols);
      return split('rows', undefined, rows, 1, (lo, hi) => [
        [w, g, dst].map((a) => a?.subarray(lo * cols, hi * cols)),
        [hi - lo, cols],
      ]);
    },
    binary(op: DenseBinaryOp, a, b, dst, n, mode, last) {
      if (!big(n) || mode < 0 || mode > 4) return plain.binary(op, a, b, dst, n, mode, last);
      // a scalar (modes 1, 2) or one row (3, 4) is the same for every part; rows stay whole
      const [aStill, bStill] = [mode === 2 || mode === 4, mode === 1 || mode === 3];
      const [A, B] = [aStill ? unmoving(a) : a, bStill ? unmoving(b) : b];
      const range = (x: Float32Array, still: boolean, lo: number, hi: number) =>
        still ? x : x.subarray(lo, hi);
      return split('binary', op, n, mode >= 3 ? last : 4, (lo, hi) => [
        [range(A, aStill, lo, hi), range(B, bStill, lo, hi), dst.subarray(lo, hi)],
        [hi - lo, mode, last],
      ]);
    },
    unary(op: DenseUnaryOp, a, dst, n) {
      if (!big(n)) return plain.unary(op, a, dst, n);
      return split('unary', op, n, 4, (lo, hi) => [[a.subarray(lo, hi), dst.subarray(lo, hi)], [hi - lo]]);
    },
    colsum(a, out, rows, cols) {
      if (!splits(rows, cols)) return plain.colsum(a, out, rows, cols);
      return columnSums('colsum', rows, cols, out, (lo, hi) => [
        [a.subarray(lo * cols, hi * cols)],
        [hi - lo, cols],
      ]);
    },
    biasReluColsum(c, bias, out, rows, cols) {
      if (!splits(rows, cols)) return plain.biasReluColsum(c, bias, out, rows, cols);
      const b = unmoving(bias);
      return columnSums('biasReluColsum', rows, cols, out, (lo, hi) => [
        [c.subarray(lo * cols, hi * cols), b],
        [hi - lo, cols],
      ]);
    },
    reluGradRowColsum(dy, row, y, dst, out, rows, cols) {
      if (!splits(rows, cols)) return plain.reluGradRowColsum(dy, row, y, dst, out, rows, cols);
      const r = unmoving(row);
      return columnSums('reluGradRowColsum', rows, cols, out, (lo, hi) => [
        [
          dy.subarray(lo * cols, hi * cols),
          r,
          y.subarray(lo * cols, hi * cols),
          dst.subarray(lo * cols, hi * cols),
        ],
        [hi - lo, cols],
      ]);
    },
    reluMask(a, mask, n) {
      if (!big(n) || n % 4 !== 0) return plain.reluMask(a, mask, n);
      return split('reluMask', undefined, n, 4, (lo, hi) => [
        [a.subarray(lo, hi), mask.subarray(lo / 4, hi / 4)],
        [hi - lo],
      ]);
    },
    reluGradRowMaskColsum(dy, row, mask, dst, out, rows, cols) {
      if (!splits(rows, cols)) return plain.reluGradRowMaskColsum(dy, row, mask, dst, out, rows, cols);
      const r = unmoving(row);
      return columnSums('reluGradRowMaskColsum', rows, cols, out, (lo, hi) => [
        [
          dy.subarray(lo * cols, hi * cols),
          r,
          mask.subarray((lo * cols) / 4, (hi * cols) / 4),
          dst.subarray(lo * cols, hi * cols),
        ],
        [hi - lo, cols],
      ]);
    },
  };
}
