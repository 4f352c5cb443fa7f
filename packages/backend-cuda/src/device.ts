/**
 * The device side of the backend: the PTX modules, the caching allocator, one stream every
 * upload, kernel and product is queued on, and the mapping of CUDA errors to messages that say
 * what failed. Only `read` waits for the device.
 */
import { readFileSync } from 'node:fs';
import { DictlearnError, type DType, type HostArray, type TensorValues } from '@dictlearn/core';
import { type AllocatorStats, CachingAllocator, type DeviceBlock } from './allocator.js';
import {
  CU,
  type CudaDriver,
  CudaError,
  type CudaHandle,
  type Dim3,
  type GemmCall,
  STICKY_ERRORS,
} from './driver.js';
import { type Param, packParams } from './launch.js';

/** A tensor's memory on the device. */
export interface CudaData {
  /** Device address (0n for an empty tensor). */
  readonly ptr: bigint;
  /** Elements. */
  readonly size: number;
  /** The allocator's block. */
  readonly block: DeviceBlock;
}

/** Counters of the device: launches, products, syncs and the allocator's. */
export interface CudaDeviceStats extends AllocatorStats {
  /** Kernels launched. */
  launches: number;
  /** cuBLAS products queued. */
  gemms: number;
  /** Stream synchronizations (reads). */
  syncs: number;
  /** Tensors alive. */
  liveTensors: number;
}

/** The PTX of each kernel file for one target, read from the package's `ptx/` folder. */
export interface PtxSet {
  /** The target, e.g. `'80'` for compute_80. */
  target: string;
  /** File stem (`elementwise`) → PTX text. */
  modules: Record<string, string>;
}

interface PtxManifest {
  /** SHA-256 of the kernel sources the PTX was compiled from (a stale PTX fails a test). */
  sourceHash: string;
  targets: string[];
  files: string[];
  nvcc: string;
}

/** The `ptx/` folder of the package (next to `src/` and `dist/`). */
export const PTX_DIR = new URL('../ptx/', import.meta.url);

/** The manifest written by scripts/build-ptx.mjs. */
export function readPtxManifest(): PtxManifest {
  return JSON.parse(readFileSync(new URL('manifest.json', PTX_DIR), 'utf8')) as PtxManifest;
}

/**
 * The PTX for a GPU of compute capability major.minor: the highest target not above it (PTX
 * JITs forward onto newer GPUs, never back onto older ones).
 */
export function choosePtxTarget(targets: readonly string[], cc: readonly [number, number]): string {
  const have = cc[0] * 10 + cc[1];
  const fit = targets
    .map(Number)
    .filter((t) => t <= have)
    .sort((a, b) => b - a);
  if (fit.length === 0) {
    throw new DictlearnError(
      'cuda',
      `GPU compute capability ${cc[0]}.${cc[1]} is older than the oldest PTX target shipped (compute_${Math.min(...targets.map(Number))})`,
    );
  }
  return String(fit[0]);
}

/** Reads the shipped PTX for a compute capability. */
export function loadPtx(cc: readonly [number, number]): PtxSet {
  const manifest = readPtxManifest();
  const target = choosePtxTarget(manifest.targets, cc);
  const modules: Record<string, string> = {};
  for (const f of manifest.files) {
    const m = /^(.+)\.sm_(\d+)\.ptx$/.exec(f);
    if (m && m[2] === target) modules[m[1]] = readFileSync(new URL(f, PTX_DIR), 'utf8');
  }
  return { target, modules };
}

/** The kernel names a PTX module defines (its `.entry` directives). */
export function ptxEntries(ptx: string): string[] {
  return [...ptx.matchAll(/\.entry\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(/g)].map((m) => m[1]);
}

/** Options of {@link CudaDevice}. */
export interface CudaDeviceOptions {
  /** Bytes of freed blocks kept for reuse (default 4 GiB). */
  cacheLimitBytes?: number;
  /**
   * Synchronize after every launch, so that a kernel fault names the kernel that caused it
   * (slow; for debugging, like CUDA_LAUNCH_BLOCKING=1). Default false.
   */
  syncEachLaunch?: boolean;
  /** PTX to load instead of the package's (tests). */
  ptx?: PtxSet;
}

/** One context, one stream, the modules and the allocator. */
export class CudaDevice {
  /** The caching allocator every tensor's memory comes from. */
  readonly allocator: CachingAllocator;
  private readonly functions = new Map<string, CudaHandle>();
  private readonly moduleOf = new Map<string, string>();
  private readonly modules = new Map<string, CudaHandle>();
  private readonly ptx: PtxSet;
  private readonly syncEachLaunch: boolean;
  /** Why the context is unusable, once a sticky error was seen. */
  private fault: string | undefined;
  /** The last kernel queued: the suspect when a fault surfaces at a later sync. */
  private lastKernel = '(none)';
  private counters = { launches: 0, gemms: 0, syncs: 0, liveTensors: 0 };

  /** Loads nothing yet: modules are JIT-compiled on their first launch. */
  constructor(
    /** The driver every call goes through. */
    readonly driver: CudaDriver,
    options: CudaDeviceOptions = {},
  ) {
    this.allocator = new CachingAllocator(driver, { cacheLimitBytes: options.cacheLimitBytes });
    this.ptx = options.ptx ?? loadPtx(driver.device.computeCapability);
    this.syncEachLaunch = options.syncEachLaunch ?? false;
    for (const [stem, text] of Object.entries(this.ptx.modules)) {
      for (const name of ptxEntries(text)) this.moduleOf.set(name, stem);
    }
  }

  /** The PTX target in use. */
  get target(): string {
    return this.ptx.target;
  }

  /** Counters (a snapshot). */
  get stats(): CudaDeviceStats {
    return { ...this.allocator.stats, ...this.counters };
  }

  /** Runs a driver call, turning CUDA errors into messages that say what failed. */
  private guard<T>(what: string, kernel: string | undefined, fn: () => T): T {
    if (this.fault) throw new DictlearnError('cuda', this.fault);
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof CudaError)) throw e;
      if (STICKY_ERRORS.has(e.code)) {
        const where = kernel
          ? `kernel fault in ${kernel}`
          : `kernel fault (reported by ${e.fn}; the last kernel queued was ${this.lastKernel}; ` +
            'set syncEachLaunch to find the one that faulted)';
        this.fault = `${where}: ${e.codeName}: the context is unusable; restart the process`;
        throw new DictlearnError('cuda', this.fault);
      }
      if (e.code === CU.ERROR_INVALID_PTX || e.code === CU.ERROR_UNSUPPORTED_PTX_VERSION) {
        throw new DictlearnError(
          'cuda',
          `the driver cannot JIT the shipped PTX (compute_${this.ptx.target}) for ${what}: ${e.codeName}; ` +
            'the NVIDIA driver is older than the CUDA toolkit that compiled it (update the driver)',
        );
      }
      throw new DictlearnError('cuda', `${what}: ${e.message}`);
    }
  }

  private fn(name: string): CudaHandle {
    let f = this.functions.get(name);
    if (f) return f;
    const stem = this.moduleOf.get(name);
    if (!stem)
      throw new DictlearnError(
        'cuda',
        `no kernel named '${name}' in the shipped PTX (compute_${this.ptx.target})`,
      );
    let mod = this.modules.get(stem);
    if (!mod) {
      mod = this.guard(`loading ${stem}.ptx`, undefined, () =>
        this.driver.loadModule(this.ptx.modules[stem]),
      );
      this.modules.set(stem, mod);
    }
    f = this.guard(`looking up ${name}`, undefined, () => this.driver.getFunction(mod, name));
    this.functions.set(name, f);
    return f;
  }

  /** Memory for `size` elements of 4 bytes. */
  alloc(size: number, what = 'a tensor'): CudaData {
    if (this.fault) throw new DictlearnError('cuda', this.fault);
    const block = this.allocator.alloc(size * 4, what);
    this.counters.liveTensors++;
    return { ptr: block.ptr, size, block };
  }

  /** Returns a tensor's memory to the cache (nothing once the context is lost). */
  free(data: CudaData): void {
    this.counters.liveTensors--;
    if (this.fault) return;
    this.allocator.release(data.block);
  }

  /** Copies host values into new device memory (queued; the host array may be reused at once). */
  upload(values: HostArray, dtype: DType, what = 'an upload'): CudaData {
    const host =
      dtype === 'int32'
        ? values instanceof Int32Array
          ? values
          : Int32Array.from(values)
        : values instanceof Float32Array
          ? values
          : Float32Array.from(values);
    const d = this.alloc(host.length, what);
    if (host.length > 0) this.guard(what, undefined, () => this.driver.memcpyHtoD(d.ptr, host));
    return d;
  }

  /** Reads values back: queues the copy and waits for the stream (the only place the host waits). */
  read(data: CudaData, dtype: DType): TensorValues {
    const out = dtype === 'int32' ? new Int32Array(data.size) : new Float32Array(data.size);
    if (data.size > 0) this.guard('reading a tensor', undefined, () => this.driver.memcpyDtoH(out, data.ptr));
    this.sync();
    return out;
  }

  /** Waits until everything queued has run. */
  sync(): void {
    this.counters.syncs++;
    this.guard('synchronizing the stream', undefined, () => this.driver.synchronize());
  }

  /** Queues kernel `name` with `params` on the stream. */
  launch(name: string, grid: { grid: Dim3; block: Dim3 }, params: readonly Param[], sharedBytes = 0): void {
    const f = this.fn(name);
    const packed = packParams(params);
    this.lastKernel = name;
    this.counters.launches++;
    this.guard(`launching ${name}`, name, () =>
      this.driver.launch(f, grid.grid, grid.block, sharedBytes, packed),
    );
    if (this.syncEachLaunch) this.guard(`running ${name}`, name, () => this.driver.synchronize());
  }

  /** Sets `count` words to the bit pattern `bits`. */
  fill(data: CudaData, bits: number, count = data.size): void {
    if (count > 0)
      this.guard('filling a tensor', undefined, () => this.driver.memsetD32(data.ptr, bits, count));
  }

  /** Copies `count` words between device tensors. */
  copy(dst: CudaData, src: CudaData, count = src.size): void {
    if (count > 0)
      this.guard('copying a tensor', undefined, () => this.driver.memcpyDtoD(dst.ptr, src.ptr, count * 4));
  }

  /** Queues a cuBLAS SGEMM. */
  gemm(call: GemmCall): void {
    this.lastKernel = 'cublasSgemm';
    this.counters.gemms++;
    this.guard('cublasSgemm', 'cublasSgemm', () => this.driver.gemm(call));
  }

  /** Releases the cached blocks and the driver's context. */
  destroy(): void {
    if (!this.fault) this.allocator.releaseCache();
    this.driver.destroy();
  }
}
