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
import type { FastMatmul } from './ort-matmul.js';

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

let cached: FastMatmul | string | undefined;

/**
 * Which kernels OpenBLAS runs: `'environment'` (the default) as `OPENBLAS_CORETYPE` says where it
 * is set, `'detect'` the ones OpenBLAS picks for this CPU, whatever the environment names (some
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
): FastMatmul | string {
  if (cached !== undefined) return cached;
  const saved = new Map<string, string>();
  if (options.kernels === 'detect') {
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

function load(options: { threads?: number }): FastMatmul | string {
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
  let threads = options.threads ?? availableParallelism();
  let core = 'unknown';
  try {
    sgemm = lib.func(
      'void cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *, int, float, _Inout_ float *, int)',
    ) as unknown as Sgemm;
    try {
      const setThreads = lib.func('void openblas_set_num_threads(int)');
      const getThreads = lib.func('int openblas_get_num_threads()');
      const coreName = lib.func('const char *openblas_get_corename()');
      setThreads(threads);
      threads = getThreads() as number;
      core = coreName() as string;
    } catch {
      // Not OpenBLAS (another CBLAS named by DICTLEARN_BLAS): threads as the library decides.
    }
  } catch (e) {
    return `${chosen} has no cblas_sgemm: ${(e as Error).message.split('\n')[0]}`;
  }
  return {
    description: `OpenBLAS cblas_sgemm via koffi (${chosen}, ${core} kernels, ${threads} threads)`,
    matmul(a, b, batch, m, n, k, transA, transB, out) {
      const c = out ?? new Float32Array(batch * m * n);
      if (a.length !== batch * m * k || b.length !== batch * k * n || c.length !== batch * m * n) {
        throw new RangeError(
          `blas matmul: lengths a=${a.length} b=${b.length} c=${c.length} do not fit batch=${batch} m=${m} n=${n} k=${k}`,
        );
      }
      if (c.length === 0) return c;
      if (k === 0) return c.fill(0);
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
    },
  };
}
