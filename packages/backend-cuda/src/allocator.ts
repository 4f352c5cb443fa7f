/**
 * The caching allocator: freed blocks are kept by size class and handed out again, so training
 * (the same shapes every step) stops calling cuMemAlloc / cuMemFree after its first step — both
 * are slow and cuMemFree synchronizes the device. Reuse is safe without events because the
 * backend has one stream: a block freed after kernel A was queued is only written by kernels
 * queued after A.
 */
import { DictlearnError } from '@dictlearn/core';
import { CU, type CudaDriver, CudaError } from './driver.js';

/** A block of device memory. */
export interface DeviceBlock {
  /** Device address. */
  readonly ptr: bigint;
  /** Bytes of the block (its size class; at least what was asked). */
  readonly bytes: number;
}

/** Counters of the allocator. */
export interface AllocatorStats {
  /** Bytes in blocks handed out and not yet freed. */
  liveBytes: number;
  /** Bytes in freed blocks kept for reuse. */
  cachedBytes: number;
  /** Highest `liveBytes + cachedBytes` since the last reset (what the device holds for us). */
  peakReservedBytes: number;
  /** cuMemAlloc calls. */
  deviceAllocs: number;
  /** cuMemFree calls. */
  deviceFrees: number;
  /** Allocations served from the cache. */
  reuses: number;
  /** Times an out-of-memory error emptied the cache and retried. */
  oomRetries: number;
}

/** Options of {@link CachingAllocator}. */
export interface AllocatorOptions {
  /** Most bytes kept in the cache; frees past it go back to the device (default 4 GiB). */
  cacheLimitBytes?: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * The size class of a request: 512-byte steps up to 1 MiB (small tensors: biases, per-row stats),
 * then 2 MiB steps (weights, activations; the waste is under 2 MiB per block, ≤ 0.2% of a 1 GiB one).
 */
export function sizeClass(bytes: number): number {
  if (bytes <= 0) return 0;
  if (bytes <= MiB) return Math.ceil(bytes / 512) * 512;
  return Math.ceil(bytes / (2 * MiB)) * 2 * MiB;
}

/** A size-class cache in front of cuMemAlloc / cuMemFree. */
export class CachingAllocator {
  private readonly free = new Map<number, bigint[]>();
  private readonly limit: number;
  /** Counters, updated in place. */
  readonly stats: AllocatorStats = {
    liveBytes: 0,
    cachedBytes: 0,
    peakReservedBytes: 0,
    deviceAllocs: 0,
    deviceFrees: 0,
    reuses: 0,
    oomRetries: 0,
  };

  /** An allocator in front of `driver`. */
  constructor(
    private readonly driver: CudaDriver,
    options: AllocatorOptions = {},
  ) {
    this.limit = options.cacheLimitBytes ?? 4 * 1024 * MiB;
  }

  /** A block of at least `bytes` bytes (a zero-byte request gets the null block, no device call). */
  alloc(bytes: number, what = 'a tensor'): DeviceBlock {
    const cls = sizeClass(bytes);
    if (cls === 0) return { ptr: 0n, bytes: 0 };
    const cached = this.free.get(cls);
    if (cached && cached.length > 0) {
      const ptr = cached.pop()!;
      this.stats.cachedBytes -= cls;
      this.stats.liveBytes += cls;
      this.stats.reuses++;
      return { ptr, bytes: cls };
    }
    let ptr: bigint;
    try {
      ptr = this.driver.memAlloc(cls);
    } catch (e) {
      if (!(e instanceof CudaError) || e.code !== CU.ERROR_OUT_OF_MEMORY) throw e;
      // Out of memory: give the cached blocks back to the device and try once more.
      this.stats.oomRetries++;
      this.releaseCache();
      try {
        ptr = this.driver.memAlloc(cls);
      } catch (e2) {
        if (!(e2 instanceof CudaError) || e2.code !== CU.ERROR_OUT_OF_MEMORY) throw e2;
        const { free, total } = this.driver.memGetInfo();
        throw new DictlearnError(
          'cuda',
          `out of memory allocating ${bytes} bytes for ${what} (free ${free} of ${total} bytes on the device; ` +
            `${this.stats.liveBytes} bytes held by live tensors): use a smaller batch or dictionary, or dispose tensors`,
        );
      }
    }
    this.stats.deviceAllocs++;
    this.stats.liveBytes += cls;
    this.stats.peakReservedBytes = Math.max(
      this.stats.peakReservedBytes,
      this.stats.liveBytes + this.stats.cachedBytes,
    );
    return { ptr, bytes: cls };
  }

  /** Returns a block: into the cache, or to the device when the cache is full. */
  release(block: DeviceBlock): void {
    if (block.bytes === 0) return;
    this.stats.liveBytes -= block.bytes;
    if (this.stats.cachedBytes + block.bytes > this.limit) {
      this.driver.memFree(block.ptr);
      this.stats.deviceFrees++;
      return;
    }
    let list = this.free.get(block.bytes);
    if (!list) {
      list = [];
      this.free.set(block.bytes, list);
    }
    list.push(block.ptr);
    this.stats.cachedBytes += block.bytes;
  }

  /** Frees every cached block on the device. */
  releaseCache(): void {
    for (const list of this.free.values()) {
      for (const ptr of list) {
        this.driver.memFree(ptr);
        this.stats.deviceFrees++;
      }
    }
    this.free.clear();
    this.stats.cachedBytes = 0;
  }

  /** Restarts `peakReservedBytes` from what is reserved now. */
  resetPeak(): void {
    this.stats.peakReservedBytes = this.stats.liveBytes + this.stats.cachedBytes;
  }
}
