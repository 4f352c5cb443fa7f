/**
 * The CUDA driver API and cuBLAS through koffi (an FFI package shipped prebuilt on npm: no
 * install script, no compiler on the user's machine). Everything the backend needs goes through
 * the small {@link CudaDriver} interface, so the host side (allocator, stream order, launch
 * packing, error mapping) is tested with a fake driver object where there is no GPU.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { DictlearnError } from '@dictlearn/core';

/** A grid or block size: x, y, z. */
export type Dim3 = readonly [number, number, number];

/** An opaque driver handle (a module, a function, an event). */
export type CudaHandle = unknown;

/** The GPU a driver was opened on. */
export interface CudaDeviceInfo {
  /** Ordinal (`cuDeviceGet`). */
  readonly ordinal: number;
  /** Name, e.g. `NVIDIA H100 80GB HBM3`. */
  readonly name: string;
  /** Compute capability [major, minor]. */
  readonly computeCapability: readonly [number, number];
  /** Device memory in bytes. */
  readonly totalBytes: number;
}

/** One cuBLAS SGEMM (column-major, as cuBLAS sees it); `batch` > 1 is a strided-batched call. */
export interface GemmCall {
  /** Transpose the first operand. */
  transA: boolean;
  /** Transpose the second operand. */
  transB: boolean;
  /** Rows of op(A) and C. */
  m: number;
  /** Columns of op(B) and C. */
  n: number;
  /** Inner dimension. */
  k: number;
  /** First operand. */
  a: bigint;
  /** Its leading dimension. */
  lda: number;
  /** Elements between batches of A (0: one A for every batch). */
  strideA: number;
  /** Second operand. */
  b: bigint;
  /** Its leading dimension. */
  ldb: number;
  /** Elements between batches of B. */
  strideB: number;
  /** Output. */
  c: bigint;
  /** Its leading dimension. */
  ldc: number;
  /** Elements between batches of C. */
  strideC: number;
  /** Number of products. */
  batch: number;
}

/**
 * What the backend needs from CUDA: one context on one device, one stream every call is queued
 * on, and a cuBLAS handle bound to that stream. Device pointers are `bigint`. Failing calls throw
 * a {@link CudaError}.
 */
export interface CudaDriver {
  /** The device this driver runs on. */
  readonly device: CudaDeviceInfo;
  /** Where the driver and cuBLAS were loaded from (for logs). */
  readonly description: string;
  /** Free and total device memory in bytes (`cuMemGetInfo`). */
  memGetInfo(): {
    /** Free device memory in bytes. */
    free: number;
    /** Total device memory in bytes. */
    total: number;
  };
  /** `cuMemAlloc`. */
  memAlloc(bytes: number): bigint;
  /** `cuMemFree`. */
  memFree(ptr: bigint): void;
  /** Host → device on the stream (`cuMemcpyHtoDAsync`; pageable memory is staged before it returns). */
  memcpyHtoD(dst: bigint, src: ArrayBufferView): void;
  /** Device → host on the stream (`cuMemcpyDtoHAsync`); valid after {@link CudaDriver.synchronize}. */
  memcpyDtoH(dst: ArrayBufferView, src: bigint): void;
  /** Device → device on the stream. */
  memcpyDtoD(dst: bigint, src: bigint, bytes: number): void;
  /** Sets `count` 32-bit words to `value` on the stream (`cuMemsetD32Async`). */
  memsetD32(dst: bigint, value: number, count: number): void;
  /** JIT-compiles a PTX module for this device (`cuModuleLoadData`). */
  loadModule(ptx: string): CudaHandle;
  /** A kernel of a module (`cuModuleGetFunction`). */
  getFunction(module: CudaHandle, name: string): CudaHandle;
  /** Queues a kernel on the stream; `params` is the packed argument buffer (`CU_LAUNCH_PARAM_BUFFER_POINTER`). */
  launch(fn: CudaHandle, grid: Dim3, block: Dim3, sharedBytes: number, params: Uint8Array): void;
  /** Waits for everything queued on the stream (`cuStreamSynchronize`). */
  synchronize(): void;
  /** An event recorded on the stream now. */
  record(): CudaHandle;
  /** Milliseconds between two recorded events (waits for the second). */
  elapsedMs(start: CudaHandle, end: CudaHandle): number;
  /** Releases an event. */
  destroyEvent(event: CudaHandle): void;
  /** Queues a product (alpha 1, beta 0) on the stream, in the precision {@link CudaDriver.setMathMode} chose. */
  gemm(call: GemmCall): void;
  /** The precision of the dense products from now on (see {@link MatmulMath}; `'fp32'` until called). */
  setMathMode(mode: MatmulMath): void;
  /** Destroys the cuBLAS handle, the stream and the context. */
  destroy(): void;
}

/**
 * Precision of the dense products (cuBLAS), with what it costs in accuracy. The error of an
 * element of C = A·B is bounded by (2ε + K·2⁻²⁴)·Σₖ|aᵢₖ||bₖⱼ| (K the inner dimension), where ε is
 * the relative error of an input as the tensor cores read it:
 *
 * - `'fp32'` (default): SGEMM on the CUDA cores, ε = 0: float32 rounding only, as the CPU.
 * - `'tf32'`: `cublasSetMathMode(CUBLAS_TF32_TENSOR_OP_MATH)`, SGEMM on TF32 tensor cores
 *   (Ampere and later; earlier GPUs ignore it): inputs keep 10 mantissa bits, ε = 2⁻¹⁰ (one unit
 *   of the 10th bit, truncated or rounded), float32 accumulation.
 * - `'bf16'`: `cublasGemmEx` on the float32 tensors with compute type
 *   `CUBLAS_COMPUTE_32F_FAST_16BF` (cuBLAS converts the inputs to bfloat16, or TF32 where it
 *   prefers; no conversion kernel, no extra memory): 7 mantissa bits, ε = 2⁻⁷, float32 accumulation.
 */
export type MatmulMath = 'fp32' | 'tf32' | 'bf16';

/** ε of {@link MatmulMath}: the relative error of an input as the product reads it. */
export const MATMUL_INPUT_EPS: Readonly<Record<MatmulMath, number>> = {
  fp32: 0,
  tf32: 2 ** -10,
  bf16: 2 ** -7,
};

/**
 * cuBLAS enum values the backend passes, from CUDA 13.0's `cublas_api.h` (cublasOperation_t,
 * cublasMath_t, cublasComputeType_t, cublasGemmAlgo_t) and `library_types.h` (cudaDataType);
 * stable since CUDA 11.
 */
export const CUBLAS = {
  /** cublasOperation_t: no transpose. */
  OP_N: 0,
  /** cublasOperation_t: transpose. */
  OP_T: 1,
  /** cublasMath_t: the default (fp32 SGEMM). */
  DEFAULT_MATH: 0,
  /** cublasMath_t: SGEMM may use TF32 tensor cores. */
  TF32_TENSOR_OP_MATH: 3,
  /** cudaDataType: float32. */
  R_32F: 0,
  /** cublasComputeType_t: float32 accumulation, inputs down-converted to bfloat16 (or TF32). */
  COMPUTE_32F_FAST_16BF: 75,
  /** cublasGemmAlgo_t: cuBLAS's heuristic choice. */
  GEMM_DEFAULT: -1,
} as const;

/** A CUDA driver or cuBLAS call that returned an error code. */
export class CudaError extends Error {
  /** The numeric `CUresult` / `cublasStatus_t`. */
  readonly code: number;
  /** Its name, e.g. `CUDA_ERROR_OUT_OF_MEMORY`. */
  readonly codeName: string;
  /** The function that failed, e.g. `cuMemAlloc`. */
  readonly fn: string;
  constructor(fn: string, code: number, codeName: string, detail = '') {
    super(`${fn} failed: ${codeName} (${code})${detail ? `: ${detail}` : ''}`);
    this.name = 'CudaError';
    this.fn = fn;
    this.code = code;
    this.codeName = codeName;
  }
}

/** `CUresult` codes the backend treats specially. */
export const CU = {
  /** The call succeeded. */
  SUCCESS: 0,
  /** Device memory exhausted. */
  ERROR_OUT_OF_MEMORY: 2,
  /** cuInit was not called or failed. */
  ERROR_NOT_INITIALIZED: 3,
  /** No CUDA-capable device is present. */
  ERROR_NO_DEVICE: 100,
  /** The PTX failed to JIT-compile. */
  ERROR_INVALID_PTX: 218,
  /** The driver is older than the PTX ISA version. */
  ERROR_UNSUPPORTED_PTX_VERSION: 222,
  /** A kernel read or wrote an invalid address (sticky). */
  ERROR_ILLEGAL_ADDRESS: 700,
  /** Too many registers or too much shared memory for the launch. */
  ERROR_LAUNCH_OUT_OF_RESOURCES: 701,
  /** A kernel ran past the watchdog limit (sticky). */
  ERROR_LAUNCH_TIMEOUT: 702,
  /** Stack corruption or overflow in a kernel (sticky). */
  ERROR_HARDWARE_STACK_ERROR: 714,
  /** A kernel executed an illegal instruction (sticky). */
  ERROR_ILLEGAL_INSTRUCTION: 715,
  /** A kernel accessed a misaligned address (sticky). */
  ERROR_MISALIGNED_ADDRESS: 716,
  /** A kernel used an address in the wrong address space (sticky). */
  ERROR_INVALID_ADDRESS_SPACE: 717,
  /** A kernel jumped to an invalid program counter (sticky). */
  ERROR_INVALID_PC: 718,
  /** A kernel failed for another reason (sticky). */
  ERROR_LAUNCH_FAILED: 719,
} as const;

/**
 * Errors after which the context is unusable ("sticky"): every later call fails too, and only a
 * new process gets a working context (the driver has no way to reset one in place).
 */
export const STICKY_ERRORS: ReadonlySet<number> = new Set([
  CU.ERROR_ILLEGAL_ADDRESS,
  CU.ERROR_LAUNCH_TIMEOUT,
  CU.ERROR_HARDWARE_STACK_ERROR,
  CU.ERROR_ILLEGAL_INSTRUCTION,
  CU.ERROR_MISALIGNED_ADDRESS,
  CU.ERROR_INVALID_ADDRESS_SPACE,
  CU.ERROR_INVALID_PC,
  CU.ERROR_LAUNCH_FAILED,
]);

/** `cublasStatus_t` names (cuBLAS has no name function before 11.4; these are stable). */
const CUBLAS_STATUS: Record<number, string> = {
  1: 'CUBLAS_STATUS_NOT_INITIALIZED',
  3: 'CUBLAS_STATUS_ALLOC_FAILED',
  7: 'CUBLAS_STATUS_INVALID_VALUE',
  8: 'CUBLAS_STATUS_ARCH_MISMATCH',
  11: 'CUBLAS_STATUS_MAPPING_ERROR',
  13: 'CUBLAS_STATUS_EXECUTION_FAILED',
  14: 'CUBLAS_STATUS_INTERNAL_ERROR',
  15: 'CUBLAS_STATUS_NOT_SUPPORTED',
  16: 'CUBLAS_STATUS_LICENSE_ERROR',
};

/**
 * The C prototypes bound from libcuda (driver API). Versioned names (`_v2`) are the symbols
 * libcuda exports for the 64-bit-size entry points; drivers keep them for old binaries, so
 * they load on every driver from CUDA 11 to 13. Device pointers are `uint64_t` (CUdeviceptr).
 */
export const DRIVER_PROTOTYPES = {
  cuInit: 'int cuInit(unsigned int flags)',
  cuDriverGetVersion: 'int cuDriverGetVersion(_Out_ int *version)',
  cuDeviceGetCount: 'int cuDeviceGetCount(_Out_ int *count)',
  cuDeviceGet: 'int cuDeviceGet(_Out_ int *device, int ordinal)',
  cuDeviceGetName: 'int cuDeviceGetName(_Out_ uint8_t *name, int len, int device)',
  cuDeviceGetAttribute: 'int cuDeviceGetAttribute(_Out_ int *value, int attribute, int device)',
  cuDeviceTotalMem: 'int cuDeviceTotalMem_v2(_Out_ size_t *bytes, int device)',
  cuCtxCreate: 'int cuCtxCreate_v2(_Out_ void **ctx, unsigned int flags, int device)',
  cuCtxDestroy: 'int cuCtxDestroy_v2(void *ctx)',
  cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
  cuStreamCreate: 'int cuStreamCreate(_Out_ void **stream, unsigned int flags)',
  cuStreamSynchronize: 'int cuStreamSynchronize(void *stream)',
  cuStreamDestroy: 'int cuStreamDestroy_v2(void *stream)',
  cuMemGetInfo: 'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  cuMemAlloc: 'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
  cuMemFree: 'int cuMemFree_v2(uint64_t dptr)',
  cuMemcpyHtoDAsync: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)',
  cuMemcpyDtoHAsync: 'int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyDtoDAsync: 'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemsetD32Async: 'int cuMemsetD32Async(uint64_t dst, unsigned int value, size_t count, void *stream)',
  cuModuleLoadData: 'int cuModuleLoadData(_Out_ void **module, const char *image)',
  cuModuleGetFunction: 'int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)',
  cuLaunchKernel:
    'int cuLaunchKernel(void *fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int sharedBytes, void *stream, void *params, void *extra)',
  cuEventCreate: 'int cuEventCreate(_Out_ void **event, unsigned int flags)',
  cuEventRecord: 'int cuEventRecord(void *event, void *stream)',
  cuEventSynchronize: 'int cuEventSynchronize(void *event)',
  cuEventElapsedTime: 'int cuEventElapsedTime(_Out_ float *ms, void *start, void *end)',
  cuEventDestroy: 'int cuEventDestroy_v2(void *event)',
  cuGetErrorName: 'int cuGetErrorName(int error, _Out_ const char **name)',
  cuGetErrorString: 'int cuGetErrorString(int error, _Out_ const char **text)',
} as const;

/** The C prototypes bound from cuBLAS (the `_v2` API every cuBLAS since 4.0 exports). */
export const CUBLAS_PROTOTYPES = {
  cublasCreate: 'int cublasCreate_v2(_Out_ void **handle)',
  cublasDestroy: 'int cublasDestroy_v2(void *handle)',
  cublasSetStream: 'int cublasSetStream_v2(void *handle, void *stream)',
  cublasSetMathMode: 'int cublasSetMathMode(void *handle, int mode)',
  cublasSgemm:
    'int cublasSgemm_v2(void *handle, int transa, int transb, int m, int n, int k, const float *alpha, uint64_t A, int lda, uint64_t B, int ldb, const float *beta, uint64_t C, int ldc)',
  cublasSgemmStridedBatched:
    'int cublasSgemmStridedBatched(void *handle, int transa, int transb, int m, int n, int k, const float *alpha, uint64_t A, int lda, int64_t strideA, uint64_t B, int ldb, int64_t strideB, const float *beta, uint64_t C, int ldc, int64_t strideC, int batch)',
  // alpha and beta are `const void *` in C: float32 scalars for the 32F compute types.
  cublasGemmEx:
    'int cublasGemmEx(void *handle, int transa, int transb, int m, int n, int k, const float *alpha, uint64_t A, int Atype, int lda, uint64_t B, int Btype, int ldb, const float *beta, uint64_t C, int Ctype, int ldc, int computeType, int algo)',
  cublasGemmStridedBatchedEx:
    'int cublasGemmStridedBatchedEx(void *handle, int transa, int transb, int m, int n, int k, const float *alpha, uint64_t A, int Atype, int lda, int64_t strideA, uint64_t B, int Btype, int ldb, int64_t strideB, const float *beta, uint64_t C, int Ctype, int ldc, int64_t strideC, int batch, int computeType, int algo)',
} as const;

/** The bound cuBLAS functions the products call (koffi functions; tests pass recording ones). */
export type CublasFunctions = Record<
  | 'cublasSetMathMode'
  | 'cublasSgemm'
  | 'cublasSgemmStridedBatched'
  | 'cublasGemmEx'
  | 'cublasGemmStridedBatchedEx',
  (...args: unknown[]) => number
>;

/**
 * The products through cuBLAS on one handle: SGEMM (`'fp32'`, `'tf32'` after the math mode is
 * set) or GemmEx with CUBLAS_COMPUTE_32F_FAST_16BF (`'bf16'`), single or strided-batched. `check`
 * throws on a non-zero cublasStatus_t.
 */
export function cublasProducts(
  b: CublasFunctions,
  handle: unknown,
  check: (fn: string, status: number) => void,
): Pick<CudaDriver, 'gemm' | 'setMathMode'> {
  const one = new Float32Array([1]);
  const zero = new Float32Array([0]);
  let math: MatmulMath = 'fp32';
  return {
    gemm(g) {
      const ta = g.transA ? CUBLAS.OP_T : CUBLAS.OP_N;
      const tb = g.transB ? CUBLAS.OP_T : CUBLAS.OP_N;
      const F = CUBLAS.R_32F;
      if (math === 'bf16') {
        const compute = CUBLAS.COMPUTE_32F_FAST_16BF;
        const algo = CUBLAS.GEMM_DEFAULT;
        if (g.batch === 1) {
          check(
            'cublasGemmEx',
            b.cublasGemmEx(
              handle,
              ta,
              tb,
              g.m,
              g.n,
              g.k,
              one,
              g.a,
              F,
              g.lda,
              g.b,
              F,
              g.ldb,
              zero,
              g.c,
              F,
              g.ldc,
              compute,
              algo,
            ),
          );
        } else {
          check(
            'cublasGemmStridedBatchedEx',
            b.cublasGemmStridedBatchedEx(
              handle,
              ta,
              tb,
              g.m,
              g.n,
              g.k,
              one,
              g.a,
              F,
              g.lda,
              g.strideA,
              g.b,
              F,
              g.ldb,
              g.strideB,
              zero,
              g.c,
              F,
              g.ldc,
              g.strideC,
              g.batch,
              compute,
              algo,
            ),
          );
        }
      } else if (g.batch === 1) {
        check(
          'cublasSgemm',
          b.cublasSgemm(handle, ta, tb, g.m, g.n, g.k, one, g.a, g.lda, g.b, g.ldb, zero, g.c, g.ldc),
        );
      } else {
        check(
          'cublasSgemmStridedBatched',
          b.cublasSgemmStridedBatched(
            handle,
            ta,
            tb,
            g.m,
            g.n,
            g.k,
            one,
            g.a,
            g.lda,
            g.strideA,
            g.b,
            g.ldb,
            g.strideB,
            zero,
            g.c,
            g.ldc,
            g.strideC,
            g.batch,
          ),
        );
      }
    },
    setMathMode(mode) {
      if (!(mode in MATMUL_INPUT_EPS)) {
        throw new DictlearnError('cuda', `unknown math mode '${mode}' (expected 'fp32', 'tf32' or 'bf16')`);
      }
      // bf16 goes through GemmEx's compute type; SGEMM's math mode stays the default for it.
      check(
        'cublasSetMathMode',
        b.cublasSetMathMode(handle, mode === 'tf32' ? CUBLAS.TF32_TENSOR_OP_MATH : CUBLAS.DEFAULT_MATH),
      );
      math = mode;
    },
  };
}

/** Library names tried for the driver: only the soname the driver package installs. */
export const DRIVER_LIBRARIES = [
  'libcuda.so.1',
  '/usr/lib/x86_64-linux-gnu/libcuda.so.1',
  '/usr/lib64/libcuda.so.1',
  '/usr/lib/wsl/lib/libcuda.so.1',
];

/** cuBLAS sonames, newest first (CUDA 13, 12, 11), then the toolkit's directories. */
export function cublasCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const names = ['libcublas.so.13', 'libcublas.so.12', 'libcublas.so.11', 'libcublas.so'];
  const out: string[] = [];
  if (env.DICTLEARN_CUBLAS) out.push(env.DICTLEARN_CUBLAS);
  out.push(...names);
  const dirs = [env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda']
    .filter((d): d is string => !!d)
    .map((d) => join(d, 'lib64'));
  try {
    for (const d of readdirSync('/usr/local')
      .filter((n) => n.startsWith('cuda-'))
      .sort()
      .reverse()) {
      dirs.push(join('/usr/local', d, 'lib64'));
    }
  } catch {}
  for (const d of dirs) for (const n of names) if (existsSync(join(d, n))) out.push(join(d, n));
  return [...new Set(out)];
}

const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
const CU_LAUNCH_PARAM_END = 0n;
const CU_LAUNCH_PARAM_BUFFER_POINTER = 1n;
const CU_LAUNCH_PARAM_BUFFER_SIZE = 2n;

type Fn = (...args: unknown[]) => number;
type Koffi = typeof import('koffi');

/** Options of {@link openCudaDriver}. */
export interface OpenDriverOptions {
  /** Device ordinal (default 0, or `DICTLEARN_CUDA_DEVICE`). */
  device?: number;
  /** Library paths to try for libcuda (default {@link DRIVER_LIBRARIES}). */
  driverLibraries?: string[];
  /** Library paths to try for cuBLAS (default {@link cublasCandidates}). */
  cublasLibraries?: string[];
}

function loadFirst(
  koffi: Koffi,
  names: string[],
): { lib: ReturnType<Koffi['load']>; name: string } | string[] {
  const failures: string[] = [];
  for (const name of names) {
    try {
      return { lib: koffi.load(name), name };
    } catch (e) {
      failures.push(`${name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return failures;
}

/**
 * Opens the driver on one device: loads libcuda and cuBLAS, creates a context, a stream and a
 * cuBLAS handle on it. Throws a DictlearnError naming what is missing: no NVIDIA driver
 * (libcuda.so.1 not found), no CUDA device, cuBLAS not found.
 */
export function openCudaDriver(options: OpenDriverOptions = {}): CudaDriver {
  const require = createRequire(import.meta.url);
  let koffi: Koffi;
  try {
    koffi = require('koffi');
  } catch (e) {
    throw new DictlearnError('cuda', `koffi is not installed (${(e as Error).message.split('\n')[0]})`);
  }
  const drv = loadFirst(koffi, options.driverLibraries ?? DRIVER_LIBRARIES);
  if (Array.isArray(drv)) {
    throw new DictlearnError(
      'cuda',
      `no NVIDIA driver: libcuda.so.1 not found (install the NVIDIA driver; tried ${drv.join('; ')})`,
    );
  }
  const d = Object.fromEntries(
    Object.entries(DRIVER_PROTOTYPES).map(([k, proto]) => [k, drv.lib.func(proto) as unknown as Fn]),
  ) as Record<keyof typeof DRIVER_PROTOTYPES, Fn>;

  const errorName = (code: number): string => {
    const out: unknown[] = [null];
    return d.cuGetErrorName(code, out) === 0 && typeof out[0] === 'string' ? out[0] : `CUDA error ${code}`;
  };
  const errorText = (code: number): string => {
    const out: unknown[] = [null];
    return d.cuGetErrorString(code, out) === 0 && typeof out[0] === 'string' ? out[0] : '';
  };
  const check = (fn: string, code: number) => {
    if (code !== 0) throw new CudaError(fn, code, errorName(code), errorText(code));
  };

  const init = d.cuInit(0);
  if (init === CU.ERROR_NO_DEVICE)
    throw new DictlearnError('cuda', 'no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE)');
  if (init !== 0) {
    throw new DictlearnError(
      'cuda',
      `the NVIDIA driver did not start: cuInit returned ${errorName(init)} (${errorText(init)})`,
    );
  }
  const count: number[] = [0];
  check('cuDeviceGetCount', d.cuDeviceGetCount(count));
  const ordinal = options.device ?? Number(process.env.DICTLEARN_CUDA_DEVICE ?? 0);
  if (count[0] === 0)
    throw new DictlearnError('cuda', 'no CUDA device (the driver loaded but reports 0 devices)');
  if (!(ordinal >= 0 && ordinal < count[0])) {
    throw new DictlearnError(
      'cuda',
      `no CUDA device ${ordinal}: this machine has ${count[0]} (0 … ${count[0] - 1})`,
    );
  }
  const dev: number[] = [0];
  check('cuDeviceGet', d.cuDeviceGet(dev, ordinal));
  const nameBuf = Buffer.alloc(256);
  check('cuDeviceGetName', d.cuDeviceGetName(nameBuf, 256, dev[0]));
  const major: number[] = [0];
  const minor: number[] = [0];
  check(
    'cuDeviceGetAttribute',
    d.cuDeviceGetAttribute(major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev[0]),
  );
  check(
    'cuDeviceGetAttribute',
    d.cuDeviceGetAttribute(minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev[0]),
  );
  const total: unknown[] = [0];
  check('cuDeviceTotalMem', d.cuDeviceTotalMem(total, dev[0]));

  const blas = loadFirst(koffi, options.cublasLibraries ?? cublasCandidates());
  if (Array.isArray(blas)) {
    throw new DictlearnError(
      'cuda',
      `cuBLAS not found: install the CUDA toolkit's libcublas (e.g. apt-get install libcublas-12-x, or pip's nvidia-cublas) or set DICTLEARN_CUBLAS to its path; tried ${blas.join('; ')}`,
    );
  }
  const b = Object.fromEntries(
    Object.entries(CUBLAS_PROTOTYPES).map(([k, proto]) => [k, blas.lib.func(proto) as unknown as Fn]),
  ) as Record<keyof typeof CUBLAS_PROTOTYPES, Fn>;
  const checkBlas = (fn: string, code: number) => {
    if (code !== 0) throw new CudaError(fn, code, CUBLAS_STATUS[code] ?? `cuBLAS status ${code}`);
  };

  const ctxOut: unknown[] = [null];
  check('cuCtxCreate', d.cuCtxCreate(ctxOut, 0, dev[0]));
  const ctx = ctxOut[0];
  const streamOut: unknown[] = [null];
  check('cuStreamCreate', d.cuStreamCreate(streamOut, 0));
  const stream = streamOut[0];
  const handleOut: unknown[] = [null];
  checkBlas('cublasCreate', b.cublasCreate(handleOut));
  const handle = handleOut[0];
  checkBlas('cublasSetStream', b.cublasSetStream(handle, stream));

  const products = cublasProducts(b, handle, checkBlas);
  const sizeWord = new BigUint64Array(1);
  const extra = new BigUint64Array(5);
  const device: CudaDeviceInfo = {
    ordinal,
    name: nameBuf.toString('utf8', 0, Math.max(0, nameBuf.indexOf(0))),
    computeCapability: [major[0], minor[0]],
    totalBytes: Number(total[0]),
  };
  return {
    device,
    description: `${drv.name} + ${blas.name}`,
    memGetInfo() {
      const free: unknown[] = [0];
      const tot: unknown[] = [0];
      check('cuMemGetInfo', d.cuMemGetInfo(free, tot));
      return { free: Number(free[0]), total: Number(tot[0]) };
    },
    memAlloc(bytes) {
      const out: unknown[] = [0];
      check('cuMemAlloc', d.cuMemAlloc(out, bytes));
      return BigInt(out[0] as number | bigint);
    },
    memFree(ptr) {
      check('cuMemFree', d.cuMemFree(ptr));
    },
    memcpyHtoD(dst, src) {
      check('cuMemcpyHtoDAsync', d.cuMemcpyHtoDAsync(dst, src, src.byteLength, stream));
    },
    memcpyDtoH(dst, src) {
      check('cuMemcpyDtoHAsync', d.cuMemcpyDtoHAsync(dst, src, dst.byteLength, stream));
    },
    memcpyDtoD(dst, src, bytes) {
      check('cuMemcpyDtoDAsync', d.cuMemcpyDtoDAsync(dst, src, bytes, stream));
    },
    memsetD32(dst, value, count) {
      check('cuMemsetD32Async', d.cuMemsetD32Async(dst, value >>> 0, count, stream));
    },
    loadModule(ptx) {
      const out: unknown[] = [null];
      check('cuModuleLoadData', d.cuModuleLoadData(out, ptx));
      return out[0];
    },
    getFunction(module, name) {
      const out: unknown[] = [null];
      check(`cuModuleGetFunction(${name})`, d.cuModuleGetFunction(out, module, name));
      return out[0];
    },
    launch(fn, grid, block, sharedBytes, params) {
      // The packed-buffer form of cuLaunchKernel's `extra`: {BUFFER_POINTER, &buf, BUFFER_SIZE, &size, END}.
      sizeWord[0] = BigInt(params.byteLength);
      extra[0] = CU_LAUNCH_PARAM_BUFFER_POINTER;
      extra[1] = koffi.address(params);
      extra[2] = CU_LAUNCH_PARAM_BUFFER_SIZE;
      extra[3] = koffi.address(sizeWord);
      extra[4] = CU_LAUNCH_PARAM_END;
      check(
        'cuLaunchKernel',
        d.cuLaunchKernel(
          fn,
          grid[0],
          grid[1],
          grid[2],
          block[0],
          block[1],
          block[2],
          sharedBytes,
          stream,
          null,
          extra,
        ),
      );
    },
    synchronize() {
      check('cuStreamSynchronize', d.cuStreamSynchronize(stream));
    },
    record() {
      const out: unknown[] = [null];
      check('cuEventCreate', d.cuEventCreate(out, 0));
      check('cuEventRecord', d.cuEventRecord(out[0], stream));
      return out[0];
    },
    elapsedMs(start, end) {
      check('cuEventSynchronize', d.cuEventSynchronize(end));
      const ms: number[] = [0];
      check('cuEventElapsedTime', d.cuEventElapsedTime(ms, start, end));
      return ms[0];
    },
    destroyEvent(event) {
      check('cuEventDestroy', d.cuEventDestroy(event));
    },
    gemm: products.gemm,
    setMathMode: products.setMathMode,
    destroy() {
      b.cublasDestroy(handle);
      d.cuStreamDestroy(stream);
      d.cuCtxDestroy(ctx);
    },
  };
}
