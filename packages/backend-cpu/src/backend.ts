import { type Backend, DictlearnError, type DType, type HostArray, type TensorValues } from '@dictlearn/core';
import type { BlasKernels, BlasMatmul } from './fast/blas-matmul.js';
import type { FastMatmul } from './fast/ort-matmul.js';
import { type CpuArray, createContext } from './kernels/context.js';
import { registerCreate } from './kernels/create.js';
import { loadDenseWasm } from './kernels/dense-wasm.js';
import { codegenAllowed, registerElementwise } from './kernels/elementwise.js';
import { registerIndexing } from './kernels/indexing.js';
import type { KernelPool } from './kernels/kernel-pool.js';
import { registerLayout } from './kernels/layout.js';
import { registerMatmul } from './kernels/matmul.js';
import { registerOptim } from './kernels/optim.js';
import { registerReduce } from './kernels/reduce.js';
import { registerSparse } from './kernels/sparse.js';

/** Options of {@link createCpuBackend}. */
export interface CpuBackendOptions {
  /** Name to register under (default `'cpu'`). */
  name?: string;
  /**
   * Float storage. `'float64'` makes a high-precision oracle (float32 tensors are held in
   * float64): the gradient checker runs its finite differences on one. Default `'float32'`.
   */
  precision?: 'float32' | 'float64';
  /**
   * Native route for large float32 matmuls: `'ort'` (onnxruntime-node's MLAS), `'blas'` (the
   * system's OpenBLAS through koffi), `false`, or `true` (the default): OpenBLAS where it runs
   * AVX-512 kernels, else onnxruntime, else OpenBLAS with the kernels it has.
   */
  fastMatmul?: boolean | 'blas' | 'ort';
  /**
   * Threads for the fast path (default: all cores): onnxruntime's or OpenBLAS's own, or the parts
   * an OpenBLAS product is split into over the kernel pool (at most `kernelThreads`).
   */
  threads?: number;
  /**
   * OpenBLAS's kernels: `'detect'` (the default) the ones OpenBLAS picks for this CPU, whatever
   * `OPENBLAS_CORETYPE` says (e.g. AVX-512 where the environment pins Haswell); `'environment'`
   * as that variable says. Read when the library loads, once per process.
   */
  blasKernels?: BlasKernels;
  /**
   * Threads the sparse kernels' WebAssembly loops split large calls over, in Node: this one and
   * `kernelThreads − 1` workers (which never keep the process alive). On the OpenBLAS route the
   * products are split over them too, each part on one OpenBLAS thread (at small sizes that beats
   * OpenBLAS's own threads), and so are Adam, the decoder-row kernels and large elementwise ops. Results are bit for bit the same with any count, except that OpenBLAS picks its
   * kernels by size, so a split product can differ from the whole one in the last bits. Default: the environment variable `DICTLEARN_KERNEL_THREADS` when
   * set, else the number of cores (at most 4); 1 runs every loop on this thread. Browsers and
   * float64 backends use one thread.
   */
  kernelThreads?: number;
  /** Where the one-time notice goes when the fast path is unavailable (default console.warn). */
  log?: (message: string) => void;
  /**
   * Bytes of freed tensor storage kept for reuse (default 2 GiB). Reuse avoids the page faults
   * of fresh allocations, which cost more than the arithmetic on large tensors.
   */
  poolBytes?: number;
  /** `useBackend('auto')` priority (default 100, below GPU backends). */
  priority?: number;
  /**
   * Compile one specialised loop per elementwise op with `new Function` (default true). Where
   * the runtime forbids it (a content-security policy without 'unsafe-eval') the backend
   * notices once and uses closures instead, whatever this says; `false` forces the closures.
   */
  codegen?: boolean;
}

/** Which native matmul route a CPU backend uses, or why it uses none. */
export type FastPathStatus =
  | {
      /** A native route is in use. */
      active: true;
      /** Which one, e.g. `onnxruntime-node 1.30.0 (2 threads)`. */
      description: string;
    }
  | {
      /** No native route: plain TypeScript. */
      active: false;
      /** Why not. */
      reason: string;
    };

/** The CPU backend, with what it found at start-up. */
export interface CpuBackend extends Backend {
  /** The matmul fast path in use, or why there is none (filled in by `init()`). */
  readonly fastPath: FastPathStatus;
  /**
   * Whether elementwise loops are generated code (`new Function`); false where a
   * content-security policy forbids it or `codegen: false` was passed (closures then).
   */
  readonly codegen: boolean;
  /** Threads the sparse kernels run on (1 until `init()`, and where workers are off or unavailable). */
  readonly kernelThreads: number;
}

/** The threads asked for: the option, else `DICTLEARN_KERNEL_THREADS`, else undefined (the default). */
function requestedKernelThreads(option: number | undefined): number | undefined {
  const fromEnv = typeof process !== 'undefined' ? process.env?.DICTLEARN_KERNEL_THREADS : undefined;
  const [value, where] =
    option !== undefined
      ? [option, 'option kernelThreads']
      : fromEnv
        ? [Number(fromEnv), 'DICTLEARN_KERNEL_THREADS']
        : [];
  if (where === undefined) return undefined;
  if (!Number.isInteger(value) || (value as number) < 1) {
    throw new DictlearnError(
      'createCpuBackend',
      `${where} must be a positive integer, got ${option !== undefined ? String(option) : `'${fromEnv}'`}`,
    );
  }
  return value;
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
let noticeShown = false;

/**
 * Creates a CPU backend with its own kernels (registered on this instance: creating another
 * backend under the same name never touches them). Register it with `registerBackend` and
 * start it with `useBackend` (or import `@dictlearn/backend-cpu/register`).
 */
export function createCpuBackend(options: CpuBackendOptions = {}): CpuBackend {
  const name = options.name ?? 'cpu';
  const precision = options.precision ?? 'float32';
  const codegen = options.codegen !== false && codegenAllowed();
  let fast: FastMatmul | undefined;
  let fastPath: FastPathStatus = { active: false, reason: 'not started' };
  const askedThreads = requestedKernelThreads(options.kernelThreads);
  let kernelThreads = 1;
  let kernels: KernelPool | undefined;

  const backend: CpuBackend = {
    name,
    priority: options.priority ?? 100,
    codegen,
    get fastPath() {
      return fastPath;
    },
    get kernelThreads() {
      return kernelThreads;
    },
    async init() {
      if (isNode && precision === 'float32' && askedThreads !== 1 && !ctx.pool) {
        const { kernelPool, defaultKernelThreads } = await import('./kernels/kernel-pool.js');
        const pool = kernelPool(askedThreads ?? defaultKernelThreads());
        if (typeof pool !== 'string') {
          ctx.pool = pool;
          kernels = pool;
          kernelThreads = pool.threads;
        }
      }
      if (precision === 'float64') {
        fastPath = { active: false, reason: 'float64 precision (plain TypeScript by design)' };
        return;
      }
      if (options.fastMatmul === false) {
        fastPath = { active: false, reason: 'disabled by option fastMatmul: false' };
        return;
      }
      if (!isNode) {
        fastPath = { active: false, reason: 'not running in Node' };
        return;
      }
      // The default tries OpenBLAS first where it runs AVX-512 kernels (split over the kernel
      // pool it beat onnxruntime's MLAS at every size we measured), then onnxruntime, then
      // OpenBLAS with whatever kernels it has.
      const routes =
        options.fastMatmul === 'blas'
          ? ['blas']
          : options.fastMatmul === 'ort'
            ? ['ort']
            : ['blas-avx512', 'ort', 'blas'];
      const reasons = new Set<string>();
      let loaded: FastMatmul | undefined;
      for (const route of routes) {
        const blas = route === 'ort' ? undefined : await import('./fast/blas-matmul.js');
        const r = blas
          ? blas.loadBlasMatmul({ threads: options.threads, kernels: options.blasKernels })
          : (await import('./fast/ort-matmul.js')).loadOrtMatmul({ threads: options.threads });
        if (typeof r === 'string') reasons.add(`${blas ? 'blas' : 'ort'}: ${r}`);
        else if (route !== 'blas-avx512' || blas?.hasAvx512Kernels((r as BlasMatmul).core)) {
          loaded = r;
          break;
        }
      }
      if (!loaded) {
        const reason = [...reasons].join('; ');
        fastPath = { active: false, reason };
        if (!noticeShown) {
          noticeShown = true;
          (options.log ?? console.warn)(
            `dictlearn: backend-cpu uses plain TypeScript matmul (about 50x slower): ${reason}`,
          );
        }
        return;
      }
      // OpenBLAS products are split over the kernel pool's threads where there is one
      const split = 'splitOver' in loaded && kernels ? (loaded as BlasMatmul).splitOver(kernels) : undefined;
      fast = split ?? loaded;
      fastPath = { active: true, description: fast.description };
      // and then so are Adam, the row kernels and elementwise ops: the threads are awake for the
      // products (with onnxruntime's products, waking them for these alone costs more than it saves)
      const dense = loadDenseWasm();
      if (split && kernels && typeof dense !== 'string') {
        ctx.denseSplit = (await import('./kernels/dense-split.js')).splitDense(kernels, dense);
      }
    },
    upload(values: HostArray, dtype: DType): CpuArray {
      const copy = ctx.alloc(dtype, values.length);
      copy.set(values);
      return copy;
    },
    async read(data, dtype, size) {
      return readSync(data as CpuArray, dtype, size);
    },
    readSync: (data, dtype, size) => readSync(data as CpuArray, dtype, size),
    readFloat64(data) {
      return Float64Array.from(data as CpuArray);
    },
    free(data) {
      // The garbage collector frees memory; large arrays go back to the pool for reuse.
      ctx.recycle(data as CpuArray);
    },
    bytesPerElement: (dtype) => (dtype === 'float32' && precision === 'float64' ? 8 : 4),
  };
  const ctx = createContext(backend, precision, codegen, options.poolBytes);
  registerCreate(ctx);
  registerElementwise(ctx);
  registerReduce(ctx);
  registerLayout(ctx);
  registerIndexing(ctx);
  registerMatmul(ctx, () => fast);
  registerOptim(ctx);
  registerSparse(ctx, () => fast);
  return backend;
}

function readSync(data: CpuArray, dtype: DType, size: number): TensorValues {
  if (dtype === 'int32') return Int32Array.from(data.subarray(0, size));
  return data instanceof Float32Array ? data.slice(0, size) : Float32Array.from(data.subarray(0, size));
}
