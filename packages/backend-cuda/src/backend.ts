import type { Backend, DType, HostArray, TensorValues } from '@dictlearn/core';
import { type CudaData, CudaDevice, type CudaDeviceStats, type PtxSet } from './device.js';
import { type CudaDeviceInfo, type CudaDriver, type MatmulMath, openCudaDriver } from './driver.js';
import { registerCudaKernels, rowMajorGemm } from './kernels.js';

/** Options of {@link createCudaBackend}. */
export interface CudaBackendOptions {
  /** Name to register under (default `'cuda'`). */
  name?: string;
  /** `useBackend('auto')` priority (default 300: above WebGPU and the CPU). */
  priority?: number;
  /** Device ordinal (default 0, or `DICTLEARN_CUDA_DEVICE`). */
  device?: number;
  /**
   * Precision of the dense products (every matmul and encoder product, forward and backward):
   * `'fp32'` (default; agrees with the CPU to float32 rounding), or the opt-in tensor-core modes
   * `'tf32'` (10-bit mantissa inputs) and `'bf16'` (7-bit), faster and outside the conformance
   * tolerances; {@link MatmulMath} states the error bound of each.
   */
  math?: MatmulMath;
  /** Bytes of freed device memory kept for reuse (default 4 GiB). */
  cacheLimitBytes?: number;
  /** Synchronize after every kernel so a fault names its kernel (slow; debugging). */
  syncEachLaunch?: boolean;
  /** A driver to use instead of libcuda + cuBLAS through koffi (tests inject a fake one). */
  driver?: CudaDriver | (() => CudaDriver);
  /** PTX to load instead of the package's `ptx/` folder (tests). */
  ptx?: PtxSet;
}

/** The CUDA backend, with its device once started. */
export interface CudaBackend extends Backend {
  /** The GPU after `init()`. */
  readonly deviceInfo: CudaDeviceInfo | undefined;
  /** The GPU in words after `init()`, e.g. `NVIDIA H200 (compute 9.0, PTX compute_90)` (the bench prints it). */
  readonly adapter: string | undefined;
  /** The PTX target JIT-compiled for it (e.g. `'90'`). */
  readonly ptxTarget: string | undefined;
  /** Launches, products, syncs and memory since `init()`; undefined before it. */
  readonly stats: CudaDeviceStats | undefined;
  /** The device (after `init()`): for benchmarks and tests. */
  readonly device: CudaDevice | undefined;
  /** Returns the cached (freed) device memory to the driver. */
  trimPool(): void;
  /** Restarts `stats.peakReservedBytes`. */
  resetPeak(): void;
  /**
   * cuBLAS's own speed on a row-major product op(A)[m×k]·op(B)[k×n]: seconds per SGEMM by device
   * events around `reps` calls on scratch buffers (no op dispatch, no allocation) — the figure the
   * bench shows beside the `matmul` op's.
   */
  timeGemm(m: number, n: number, k: number, transA: boolean, transB: boolean, reps?: number): number;
}

/**
 * Creates the CUDA backend: the CUDA driver API and cuBLAS through koffi, the package's own
 * kernels as PTX JIT-compiled for the GPU present, a caching allocator, and one stream every op is
 * queued on; only reading a tensor (`data()`) waits for the device. `init()` fails with the reason
 * (no NVIDIA driver, no CUDA device, cuBLAS not found), so `useBackend('auto')` falls back.
 */
export function createCudaBackend(options: CudaBackendOptions = {}): CudaBackend {
  const name = options.name ?? 'cuda';
  let device: CudaDevice | undefined;
  const gpu = () => {
    if (!device) throw new Error(`backend '${name}' is not started; await useBackend('${name}')`);
    return device;
  };
  const backend: CudaBackend = {
    name,
    priority: options.priority ?? 300,
    async init() {
      const d = options.driver;
      const driver = typeof d === 'function' ? d() : (d ?? openCudaDriver({ device: options.device }));
      if (options.math !== undefined && options.math !== 'fp32') driver.setMathMode(options.math);
      device = new CudaDevice(driver, {
        cacheLimitBytes: options.cacheLimitBytes,
        syncEachLaunch: options.syncEachLaunch,
        ptx: options.ptx,
      });
    },
    upload(values: HostArray, dtype: DType) {
      return gpu().upload(values, dtype);
    },
    async read(data, dtype): Promise<TensorValues> {
      return gpu().read(data as CudaData, dtype);
    },
    free(data) {
      device?.free(data as CudaData);
    },
    async sync() {
      gpu().sync();
    },
    get deviceInfo() {
      return device?.driver.device;
    },
    get adapter() {
      if (!device) return undefined;
      const i = device.driver.device;
      return `${i.name} (compute ${i.computeCapability.join('.')}, PTX compute_${device.target})`;
    },
    get ptxTarget() {
      return device?.target;
    },
    get stats() {
      return device?.stats;
    },
    get device() {
      return device;
    },
    trimPool() {
      device?.allocator.releaseCache();
    },
    resetPeak() {
      device?.allocator.resetPeak();
    },
    timeGemm(m, n, k, transA, transB, reps = 10) {
      const dev = gpu();
      const a = dev.alloc(m * k, 'a timing operand');
      const b = dev.alloc(k * n, 'a timing operand');
      const c = dev.alloc(m * n, 'a timing output');
      const call = rowMajorGemm(a.ptr, b.ptr, c.ptr, m, n, k, transA, transB, 1, false, false);
      try {
        dev.fill(a, 0);
        dev.fill(b, 0);
        dev.gemm(call); // warm-up: cuBLAS picks and loads its kernel
        const start = dev.driver.record();
        for (let i = 0; i < reps; i++) dev.gemm(call);
        const end = dev.driver.record();
        const ms = dev.driver.elapsedMs(start, end);
        dev.driver.destroyEvent(start);
        dev.driver.destroyEvent(end);
        return ms / 1000 / reps;
      } finally {
        for (const d of [a, b, c]) dev.free(d);
      }
    },
  };
  // Kernels belong to this instance: another backend created under the same name gets its own.
  registerCudaKernels(backend, gpu);
  return backend;
}
