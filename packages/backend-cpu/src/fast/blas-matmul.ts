/**
 * The first-choice Node fast path for matrix multiplication: the system's OpenBLAS `cblas_sgemm`,
 * called synchronously through koffi (an FFI package shipped prebuilt on npm, no install script).
 * OpenBLAS is what numpy links, so this path runs the same kernels numpy's matmul does; on Debian it
 * is `apt-get install libopenblas0-pthread`. Where koffi or the library is missing, the loader says
 * why and the backend tries the next route.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { alignedBounds } from '../kernels/engine.js';
import { HANDOVER_SPIN_MS, holdUntilHere, type KernelPool, unmoving } from '../kernels/kernel-pool.js';
import type { FastMatmul } from './ort-matmul.js';

/** The OpenBLAS route: products whole, with OpenBLAS's threads, or split over a kernel pool. */
export interface BlasMatmul extends FastMatmul {
  /**
   * The same products split over the pool's threads, each part single-threaded OpenBLAS (each
   * element still one dot product over the whole k, but OpenBLAS picks kernels by size, so the last
   * bits can differ from the whole product's); undefined where the library cannot (no
   * `openblas_set_num_threads`) or the pool has one thread. At small sizes OpenBLAS's own threads cost more to start and join
   * than the pool's, which spin briefly between products.
   */
  splitOver(pool: KernelPool): FastMatmul | undefined;
  /** OpenBLAS's name of the kernels it runs (`openblas_get_corename`), e.g. `Cooperlake`; `unknown` for another CBLAS. */
  readonly core: string;
}

/** OpenBLAS's names of its AVX-512 kernels. */
const AVX512_CORES = new Set(['SkylakeX', 'Cooperlake', 'SapphireRapids']);

/** Whether OpenBLAS's kernels of that name use AVX-512. */
export function hasAvx512Kernels(core: string): boolean {
  return AVX512_CORES.has(core);
}

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

/** Shared-library names tried in order (after `DICTLEARN_BLAS`, which may name a path). */
const CANDIDATES = ['libopenblas.so.0', 'libopenblas.so', 'libopenblas.dylib', 'libopenblas.dll'];

type Sgemm = (
  order: number,
  transA: number,
  transB: number,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
) => void;

let cached: BlasMatmul | string | undefined;

/**
 * Which kernels OpenBLAS runs: `'detect'` (the default) the ones OpenBLAS picks for this CPU,
 * whatever the environment names; `'environment'` as `OPENBLAS_CORETYPE` says where it is set (some
 * machines set `OPENBLAS_CORETYPE=Haswell` for old reasons, which keeps AVX-512 kernels off).
 * OpenBLAS reads the variable once, when the library loads: the first load in a process decides.
 */
export type BlasKernels = 'environment' | 'detect';

/** Environment variables that override OpenBLAS's own choice of kernels and cache sizes. */
const KERNEL_OVERRIDES = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'];

/**
 * Loads OpenBLAS through koffi. Returns the fast path, or a string saying why it is unavailable.
 * Never throws; the result is cached (the library loads once per process, so `kernels` counts only
 * on the first call; the description names the kernels it runs).
 */
export function loadBlasMatmul(
  options: { threads?: number; kernels?: BlasKernels } = {},
): BlasMatmul | string {
  if (cached !== undefined) return cached;
  const saved = new Map<string, string>();
  if (options.kernels !== 'environment') {
    for (const name of KERNEL_OVERRIDES) {
      const v = process.env[name];
      if (v !== undefined) saved.set(name, v);
      delete process.env[name];
    }
  }
  try {
    cached = load(options);
  } finally {
    // only the library's load should see them gone
    for (const [name, v] of saved) process.env[name] = v;
  }
  return cached;
}

function load(options: { threads?: number }): BlasMatmul | string {
  const require = createRequire(import.meta.url);
  let koffi: typeof import('koffi');
  try {
    koffi = require('koffi');
  } catch (e) {
    return `koffi is not installed (${(e as Error).message.split('\n')[0]})`;
  }
  const names = process.env.DICTLEARN_BLAS ? [process.env.DICTLEARN_BLAS] : CANDIDATES;
  let lib: ReturnType<typeof koffi.load> | undefined;
  let chosen = '';
  const failures: string[] = [];
  for (const name of names) {
    try {
      lib = koffi.load(name);
      chosen = name;
      break;
    } catch (e) {
      failures.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  if (!lib) {
    return `OpenBLAS not found (install libopenblas0-pthread, or set DICTLEARN_BLAS to the library's path); tried ${failures.join('; ')}`;
  }
  let sgemm: Sgemm;
  let sgemmAt: SgemmAt;
  let setThreads: ((n: number) => void) | undefined;
  let threads = options.threads ?? availableParallelism();
  let core = 'unknown';
  try {
    sgemm = lib.func(
      'void cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *, int, float, _Inout_ float *, int)',
    ) as unknown as Sgemm;
    sgemmAt = lib.func(SGEMM_AT) as unknown as SgemmAt;
    try {
      const set = lib.func('void openblas_set_num_threads(int)') as unknown as (n: number) => void;
      const getThreads = lib.func('int openblas_get_num_threads()');
      const coreName = lib.func('const char *openblas_get_corename()');
      set(threads);
      threads = getThreads() as number;
      core = coreName() as string;
      setThreads = set;
    } catch {
      // Not OpenBLAS (another CBLAS named by DICTLEARN_BLAS): threads as the library decides,
      // and products are never split (a part must run on one thread).
    }
  } catch (e) {
    return `${chosen} has no cblas_sgemm: ${(e as Error).message.split('\n')[0]}`;
  }
  const checkLengths = (
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
  ) => {
    if (a.length !== batch * m * k || b.length !== batch * k * n || c.length !== batch * m * n) {
      throw new RangeError(
        `blas matmul: lengths a=${a.length} b=${b.length} c=${c.length} do not fit batch=${batch} m=${m} n=${n} k=${k}`,
      );
    }
  };
  // OpenBLAS's own thread count, set back before each product it runs whole after a split one
  let openblasThreads = threads;
  const useThreads = (n: number) => {
    if (n !== openblasThreads) setThreads?.(n);
    openblasThreads = n;
  };
  const whole = (
    ...[a, b, batch, m, n, k, transA, transB, out, onThreads = threads]: [
      ...Parameters<FastMatmul['matmul']>,
      number?,
    ]
  ): Float32Array => {
    const c = out ?? new Float32Array(batch * m * n);
    checkLengths(a, b, c, batch, m, n, k);
    if (c.length === 0) return c;
    if (k === 0) return c.fill(0);
    useThreads(onThreads);
    const lda = transA ? m : k;
    const ldb = transB ? k : n;
    const ta = transA ? CBLAS_TRANS : CBLAS_NO_TRANS;
    const tb = transB ? CBLAS_TRANS : CBLAS_NO_TRANS;
    for (let q = 0; q < batch; q++) {
      const aq = batch === 1 ? a : a.subarray(q * m * k, (q + 1) * m * k);
      const bq = batch === 1 ? b : b.subarray(q * k * n, (q + 1) * k * n);
      const cq = batch === 1 ? c : c.subarray(q * m * n, (q + 1) * m * n);
      sgemm(CBLAS_ROW_MAJOR, ta, tb, m, n, k, 1, aq, lda, bq, ldb, 0, cq, n);
    }
    return c;
  };
  const description = `OpenBLAS cblas_sgemm via koffi (${chosen}, ${core} kernels, ${threads} threads)`;
  return {
    description,
    core,
    matmul: (...args) => whole(...args),
    splitOver(pool) {
      // as many parts as the fast path's threads (the `threads` option), at most the pool's
      const parts = Math.min(pool.threads, threads);
      if (!setThreads || parts < 2) return undefined;
      const address = (t: Float32Array) => Number(koffi.address(t));
      pool.loadNative('sgemm', {
        setup: '(d, require) => require(d.koffi).load(d.library).func(d.signature)',
        data: { koffi: require.resolve('koffi'), library: chosen, signature: SGEMM_AT },
        here: sgemmAt,
      });
      return {
        description: `OpenBLAS cblas_sgemm via koffi (${chosen}, ${core} kernels, products split over ${parts} threads)`,
        matmul(a, b, batch, m, n, k, transA, transB, out) {
          // small products on this thread alone: OpenBLAS's own threads would spin on after them
          if (m * n * k < SPLIT_MIN_WORK || Math.max(m, n) < 2 * SPLIT_ALIGN) {
            return whole(a, b, batch, m, n, k, transA, transB, out, 1);
          }
          const c = out ?? new Float32Array(batch * m * n);
          checkLengths(a, b, c, batch, m, n, k);
          if (k === 0) return c.fill(0);
          useThreads(1);
          const [A, B] = [unmoving(a), unmoving(b)];
          const [pa, pb, pc] = [address(A), address(B), address(c)];
          const split = splitProduct(m, n, parts);
          for (let q = 0; q < batch; q++) {
            const ranges = split.map((r) =>
              sgemmPart(
                r,
                pa + 4 * q * m * k,
                pb + 4 * q * k * n,
                pc + 4 * q * m * n,
                m,
                n,
                k,
                transA,
                transB,
              ),
            );
            pool.run('sgemm', ranges, HANDOVER_SPIN_MS);
          }
          // the operands stay reachable (their storage in place) until every part has returned
          holdUntilHere([A, B]);
          return c;
        },
      };
    },
  };
}

/** cblas_sgemm with its matrices as addresses, as the pool's workers call it. */
const SGEMM_AT =
  'void cblas_sgemm(int, int, int, int, int, int, float, uintptr_t, int, uintptr_t, int, float, uintptr_t, int)';
type SgemmAt = (...args: number[]) => void;

/** Products below this many multiply-adds run whole on this thread: waking a worker costs more. */
const SPLIT_MIN_WORK = 1 << 20;
/** Part boundaries fall on multiples of this many rows or columns (OpenBLAS's AVX-512 tile width). */
const SPLIT_ALIGN = 16;

/** One part of a split product: rows [from, to) of C when `rows`, else columns [from, to). */
export interface ProductPart {
  rows: boolean;
  from: number;
  to: number;
}

/**
 * Splits C = op(A)·op(B) [m, n] into at most `parts` parts of about equal size along its longer
 * side, boundaries on multiples of {@link SPLIT_ALIGN}. Every part sums over the whole k; OpenBLAS
 * picks its kernels by size, though, so a part may round differently from the whole product.
 */
export function splitProduct(m: number, n: number, parts: number): ProductPart[] {
  const rows = m >= n;
  const bounds = alignedBounds(rows ? m : n, parts, SPLIT_ALIGN);
  return bounds.slice(1).map((to, i) => ({ rows, from: bounds[i], to }));
}

/** The cblas_sgemm arguments of one part, row-major, with A, B and C given as addresses. */
function sgemmPart(
  r: ProductPart,
  a: number,
  b: number,
  c: number,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
): number[] {
  const lda = transA ? m : k;
  const ldb = transB ? k : n;
  const ta = transA ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const tb = transB ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const span = r.to - r.from;
  if (r.rows) {
    // rows of op(A): A stored [m, k] (row i at i·k) or, transposed, [k, m] (column i at i)
    const aAt = a + 4 * (transA ? r.from : r.from * k);
    return [CBLAS_ROW_MAJOR, ta, tb, span, n, k, 1, aAt, lda, b, ldb, 0, c + 4 * r.from * n, n];
  }
  // columns of op(B): B stored [k, n] (column j at j) or, transposed, [n, k] (row j at j·k)
  const bAt = b + 4 * (transB ? r.from * k : r.from);
  return [CBLAS_ROW_MAJOR, ta, tb, m, span, k, 1, a, lda, bAt, ldb, 0, c + 4 * r.from, n];
}
