import type { DType } from '@dictlearn/core';

// GPUBufferUsage / GPUMapMode values, spelled out so the module needs no globals in Node.
const USAGE_MAP_READ = 0x0001;
const USAGE_COPY_SRC = 0x0004;
const USAGE_COPY_DST = 0x0008;
const USAGE_STORAGE = 0x0080;
const MAP_READ = 0x0001;
/** Room for the u32 parameters of one dispatch (shapes and strides of rank ≤ 8 fit easily). */
const META_BYTES = 1024;
/** The parameter arena of one batch of dispatches (a full arena forces a submit). */
const META_ARENA_BYTES = 256 * 1024;

/** A tensor's storage on the GPU: the buffer and the element count it holds. */
export interface GpuData {
  /** The storage buffer (at least 4 bytes, a multiple of 4). */
  readonly buffer: GPUBuffer;
  /** Elements held. */
  readonly size: number;
}

/** Finds a GPU: `navigator.gpu` in browsers, the `webgpu` package (Dawn) in Node. */
export async function findGpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  if (!isNode) throw new Error('this browser has no navigator.gpu (WebGPU is off or unsupported)');
  let mod: { create(flags: string[]): GPU };
  try {
    mod = (await import('webgpu')) as unknown as { create(flags: string[]): GPU };
  } catch (e) {
    throw new Error(
      `the 'webgpu' package (Dawn for Node) is not installed: ${(e as Error).message.split('\n')[0]}`,
    );
  }
  const gpu = mod.create([]);
  const filter = await dawnNoticeFilter();
  if (filter) {
    // Dawn prints its notices on the first requestAdapter of an instance, while it enumerates
    // the physical devices; later calls reuse them and print nothing.
    const request = gpu.requestAdapter.bind(gpu);
    let first = true;
    gpu.requestAdapter = (options?: GPURequestAdapterOptions) => {
      if (!first) return request(options);
      first = false;
      return filter(() => request(options));
    };
  }
  return gpu;
}

/**
 * The two notices Dawn prints on every Vulkan adapter (lavapipe, NVIDIA, RADV): the driver offers
 * far more dynamic buffers per pipeline layout than Dawn's fixed internal maximum (16), and Dawn
 * clamps the limit and says so (`NormalizeLimits` in Dawn's Limits.cpp). No toggle turns them off
 * and no requested limit avoids them (they print while Dawn enumerates adapters, before any
 * request), and dictlearn's kernels use no dynamic buffers, so they are noise.
 */
export const DAWN_LIMIT_NOTICE =
  /^Warning: maxDynamic(?:Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/;

/** Lines of `text` that are not Dawn's {@link DAWN_LIMIT_NOTICE}s (kept in order, line ends kept). */
export function withoutDawnLimitNotices(text: string): string {
  return text
    .split(/(?<=\n)/)
    .filter((line) => !DAWN_LIMIT_NOTICE.test(line.replace(/\n$/, '')))
    .join('');
}

/**
 * A wrapper that runs a synchronous call with file descriptor 2 sent to a scratch file, then
 * writes back everything it printed except Dawn's limit notices. Dawn writes them from native
 * code straight to fd 2, past `process.stderr`, so only redirecting the descriptor (libc's `dup` /
 * `dup2`, through koffi) catches them. Linux only, and only where koffi loads; elsewhere undefined
 * (the notices then print; the backend-webgpu README explains them). `DICTLEARN_DAWN_NOTICES=1`
 * keeps them.
 */
async function dawnNoticeFilter(): Promise<(<T>(run: () => T) => T) | undefined> {
  if (process.platform !== 'linux' || process.env.DICTLEARN_DAWN_NOTICES === '1') return undefined;
  try {
    const koffi = ((await import('koffi')) as unknown as { default: typeof import('koffi') }).default;
    const libc = koffi.load('libc.so.6');
    const dup = libc.func('int dup(int)') as (fd: number) => number;
    const dup2 = libc.func('int dup2(int, int)') as (from: number, to: number) => number;
    const fs = await import('node:fs');
    const { tmpdir } = await import('node:os');
    return <T>(run: () => T): T => {
      const path = `${tmpdir()}/dictlearn-dawn-${process.pid}-${Math.random().toString(36).slice(2)}`;
      const scratch = fs.openSync(path, 'w+');
      fs.unlinkSync(path); // nothing is left behind, whatever happens next
      const saved = dup(2);
      if (saved < 0 || dup2(scratch, 2) < 0) {
        if (saved >= 0) fs.closeSync(saved);
        fs.closeSync(scratch);
        return run();
      }
      try {
        return run();
      } finally {
        dup2(saved, 2);
        fs.closeSync(saved);
        const size = fs.fstatSync(scratch).size;
        const bytes = Buffer.alloc(size);
        if (size > 0) fs.readSync(scratch, bytes, 0, size, 0);
        fs.closeSync(scratch);
        const rest = withoutDawnLimitNotices(bytes.toString('utf8'));
        if (rest) fs.writeSync(2, rest);
      }
    };
  } catch {
    return undefined; // no koffi or no libc.so.6: the notices print, nothing else changes
  }
}

/** Counters of a WebGPU device (the backend's `stats()`): what the batching and the buffer pool did so far. */
export interface GpuDeviceStats {
  /** Kernels dispatched. */
  dispatches: number;
  /** `queue.submit` calls (each sends one command buffer holding many dispatches). */
  submits: number;
  /** Dispatches recorded and not yet submitted. */
  pendingDispatches: number;
  /** Bytes of live GPU buffers this device created: tensors, pooled buffers, the parameter arena. */
  allocatedBytes: number;
  /** The most `allocatedBytes` reached since the start or the last `resetPeak()`. */
  peakAllocatedBytes: number;
  /** Bytes of freed buffers kept in the pool for reuse (part of `allocatedBytes`). */
  pooledBytes: number;
  /**
   * Storage buffers handed out (tensors and kernel temporaries, new or from the pool) and their
   * bytes, since the start: what a step's temporaries cost, which the pool hides from the others.
   */
  allocations: number;
  /** Bytes of {@link allocations}. */
  allocationBytes: number;
}

/** Options of {@link GpuDevice}. */
export interface GpuDeviceOptions {
  /** Bytes of freed buffers kept for reuse (default 1 GiB). */
  poolLimitBytes?: number;
  /** Width of the subgroups kernels may use (0 = none). */
  subgroupSize?: number;
  /** Dispatches recorded before a submit is forced (default 512). */
  maxBatchedDispatches?: number;
}

/**
 * One WebGPU device with a buffer pool, a pipeline cache and a dispatch helper. Dispatches are
 * recorded into one open command encoder (one compute pass) and submitted together: at `read`,
 * `sync`, `flush` (the trainer calls it at the end of a step), an upload into a buffer that
 * recorded work still uses, a full parameter arena or `maxBatchedDispatches`. Per-submit
 * overhead (validation, a driver round trip) dominated small kernels when each dispatch was
 * submitted alone. Only `read` waits (for the copy to a mappable buffer).
 */
export class GpuDevice {
  readonly device: GPUDevice;
  readonly adapterName: string;
  readonly maxBinding: number;
  /** Bytes of freed buffers kept for reuse. */
  readonly poolLimitBytes: number;
  /** Width of the subgroups kernels may use (0 = none). */
  readonly subgroupSize: number;
  /** Dispatches recorded before a submit is forced. */
  readonly maxBatchedDispatches: number;
  #pool = new Map<number, GPUBuffer[]>();
  #pooled = 0;
  #allocated = 0;
  #peak = 0;
  #dispatches = 0;
  #submits = 0;
  #allocations = 0;
  #allocationBytes = 0;
  #pipelines = new Map<string, GPUComputePipeline>();
  #lost: string | undefined;
  // The batch being recorded: encoder, open compute pass, the buffers its commands touch (an
  // upload into one of them must wait for the submit), buffers to destroy once it is submitted.
  #enc: GPUCommandEncoder | undefined;
  #pass: GPUComputePassEncoder | undefined;
  #pending = new Set<GPUBuffer>();
  #deferredDestroy: GPUBuffer[] = [];
  #batched = 0;
  #autoFlush: ReturnType<typeof setTimeout> | undefined;
  // Parameter arena: every recorded dispatch gets its own aligned slice of one buffer, filled on
  // the host and uploaded with one writeBuffer just before the submit. Queue operations run in
  // order, so rewriting it for the next batch lands after the previous batch has read it.
  #metaAlign: number;
  #metaHost = new Uint32Array(META_ARENA_BYTES / 4);
  #metaUsed = 0;
  #meta: GPUBuffer | undefined;

  constructor(device: GPUDevice, adapterName: string, options: GpuDeviceOptions = {}) {
    this.device = device;
    this.adapterName = adapterName;
    this.maxBinding = device.limits.maxStorageBufferBindingSize;
    this.poolLimitBytes = options.poolLimitBytes ?? 1 << 30;
    this.subgroupSize = options.subgroupSize ?? 0;
    this.maxBatchedDispatches = options.maxBatchedDispatches ?? 512;
    this.#metaAlign = Math.max(4, device.limits.minStorageBufferOffsetAlignment ?? 256);
    void device.lost.then((info) => {
      this.#lost = `${info.reason}: ${info.message}`;
    });
    device.onuncapturederror = (ev) => {
      this.#lost ??= `uncaptured error: ${(ev as GPUUncapturedErrorEvent).error.message}`;
    };
  }

  /** Why the device is unusable, if it is. */
  get failure(): string | undefined {
    return this.#lost;
  }

  /** Dispatch, submit and memory counters (see {@link GpuDeviceStats}). */
  get stats(): GpuDeviceStats {
    return {
      dispatches: this.#dispatches,
      submits: this.#submits,
      pendingDispatches: this.#batched,
      allocatedBytes: this.#allocated,
      peakAllocatedBytes: this.#peak,
      pooledBytes: this.#pooled,
      allocations: this.#allocations,
      allocationBytes: this.#allocationBytes,
    };
  }

  /** Restarts `peakAllocatedBytes` from the bytes allocated now. */
  resetPeak(): void {
    this.#peak = this.#allocated;
  }

  #create(bytes: number, usage: number): GPUBuffer {
    const buffer = this.device.createBuffer({ size: bytes, usage });
    this.#allocated += bytes;
    if (this.#allocated > this.#peak) this.#peak = this.#allocated;
    return buffer;
  }

  #destroy(buffer: GPUBuffer): void {
    this.#allocated -= buffer.size;
    // A buffer that recorded commands use cannot be destroyed before they are submitted (the
    // submit would fail validation); after the submit, the implementation keeps it until done.
    if (this.#pending.has(buffer)) this.#deferredDestroy.push(buffer);
    else buffer.destroy();
  }

  /**
   * A storage buffer for `size` elements (from the pool when one fits). `idle` asks for a buffer
   * no recorded-but-unsubmitted command uses (for uploads, which would otherwise overtake them).
   */
  alloc(size: number, op: string, idle = false): GpuData {
    const bytes = Math.max(4, size * 4);
    if (bytes > this.maxBinding) {
      throw new Error(
        `${op}: a tensor of ${size} elements (${bytes} bytes) exceeds this adapter's storage-buffer limit of ${this.maxBinding} bytes`,
      );
    }
    this.#allocations++;
    this.#allocationBytes += bytes;
    const list = this.#pool.get(bytes);
    if (list && list.length > 0) {
      let at = list.length - 1;
      if (idle) while (at >= 0 && this.#pending.has(list[at])) at--;
      if (at >= 0) {
        const [reused] = list.splice(at, 1);
        this.#pooled -= bytes;
        return { buffer: reused, size };
      }
    }
    return { buffer: this.#create(bytes, USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST), size };
  }

  /** Returns a buffer to the pool (or destroys it past the pool's limit). */
  free(d: GpuData): void {
    const bytes = d.buffer.size;
    if (this.#pooled + bytes > this.poolLimitBytes) {
      this.#destroy(d.buffer);
      return;
    }
    let list = this.#pool.get(bytes);
    if (!list) {
      list = [];
      this.#pool.set(bytes, list);
    }
    list.push(d.buffer);
    this.#pooled += bytes;
  }

  /** Destroys every pooled buffer (their memory goes back to the device). */
  trimPool(): void {
    for (const list of this.#pool.values()) for (const b of list) this.#destroy(b);
    this.#pool.clear();
    this.#pooled = 0;
  }

  /** Uploads host values (converted to float32 / int32). */
  upload(values: ArrayLike<number>, dtype: DType, op = 'upload'): GpuData {
    // queue.writeBuffer runs before the batch still being recorded, so the target must be a
    // buffer that batch does not touch (not one of its freed buffers): no submit needed.
    const d = this.alloc(values.length, op, true);
    if (values.length > 0) {
      const host = dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values);
      this.device.queue.writeBuffer(d.buffer, 0, host.buffer, host.byteOffset, host.byteLength);
    }
    return d;
  }

  /** Copies values back to the host (submitting the recorded work together with the copy). */
  async read(d: GpuData, dtype: DType): Promise<Float32Array | Int32Array> {
    if (this.#lost) throw new Error(`the WebGPU device is lost (${this.#lost})`);
    const bytes = Math.max(4, d.size * 4);
    const staging = this.#create(bytes, USAGE_MAP_READ | USAGE_COPY_DST);
    const enc = this.#encoder();
    this.#endPass();
    enc.copyBufferToBuffer(d.buffer, 0, staging, 0, bytes);
    this.flush();
    await staging.mapAsync(MAP_READ);
    const copy = staging.getMappedRange().slice(0, d.size * 4);
    staging.unmap();
    this.#destroy(staging);
    return dtype === 'int32' ? new Int32Array(copy) : new Float32Array(copy);
  }

  /** A compute pipeline for WGSL source, compiled once. */
  pipeline(code: string): GPUComputePipeline {
    let p = this.#pipelines.get(code);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      this.#pipelines.set(code, p);
    }
    return p;
  }

  #encoder(): GPUCommandEncoder {
    if (!this.#enc) {
      this.#enc = this.device.createCommandEncoder();
      // Work nobody waits for still reaches the GPU once the caller yields to the event loop.
      this.#autoFlush ??= setTimeout(() => {
        this.#autoFlush = undefined;
        this.flush();
      }, 0);
      (this.#autoFlush as { unref?: () => void }).unref?.();
    }
    return this.#enc;
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = undefined;
  }

  /**
   * Records a kernel: binds `buffers` at 0.. in order, then a read-only `meta` array of u32
   * (floats are passed as their bits), and dispatches `groups` workgroups (split over y past
   * 65535). Nothing is submitted here (see the class comment for when it is).
   */
  dispatch(
    code: string,
    buffers: GPUBuffer[],
    meta: ArrayLike<number>,
    groups: number | [number, number, number],
  ): void {
    const [gx, gy, gz] = typeof groups === 'number' ? split(groups) : groups;
    if (gx === 0 || gy === 0 || gz === 0) return;
    const pipe = this.pipeline(code);
    const words = Math.max(1, meta.length);
    if (words * 4 > META_BYTES) throw new Error(`kernel parameters too long (${words} words)`);
    const slice = Math.ceil((words * 4) / this.#metaAlign) * this.#metaAlign;
    if (this.#metaUsed + slice > META_ARENA_BYTES || this.#batched >= this.maxBatchedDispatches) this.flush();
    const offset = this.#metaUsed;
    this.#metaUsed += slice;
    if (meta.length > 0) this.#metaHost.set(meta, offset / 4);
    else this.#metaHost[offset / 4] = 0;
    this.#meta ??= this.#create(META_ARENA_BYTES, USAGE_STORAGE | USAGE_COPY_DST);
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({
      binding,
      resource: { buffer },
    }));
    entries.push({ binding: buffers.length, resource: { buffer: this.#meta, offset, size: words * 4 } });
    const bind = this.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
    const enc = this.#encoder();
    this.#pass ??= enc.beginComputePass();
    this.#pass.setPipeline(pipe);
    this.#pass.setBindGroup(0, bind);
    this.#pass.dispatchWorkgroups(gx, gy, gz);
    for (const b of buffers) this.#pending.add(b);
    this.#batched++;
    this.#dispatches++;
  }

  /** Submits the recorded work without waiting for it (a no-op when nothing is recorded). */
  flush(): void {
    if (this.#autoFlush !== undefined) {
      clearTimeout(this.#autoFlush);
      this.#autoFlush = undefined;
    }
    const enc = this.#enc;
    if (!enc) return;
    this.#endPass();
    if (this.#metaUsed > 0 && this.#meta) {
      this.device.queue.writeBuffer(this.#meta, 0, this.#metaHost, 0, this.#metaUsed / 4);
    }
    this.device.queue.submit([enc.finish()]);
    this.#submits++;
    this.#enc = undefined;
    this.#metaUsed = 0;
    this.#batched = 0;
    this.#pending.clear();
    for (const b of this.#deferredDestroy) b.destroy();
    this.#deferredDestroy = [];
  }

  /** Submits the recorded work and waits until the queue is idle. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }
}

/** Workgroups for n threads of a 64-wide workgroup, split into x ≤ 65535 and y. */
export function groupsFor(n: number): number {
  return Math.ceil(n / 64);
}

function split(groups: number): [number, number, number] {
  if (groups <= 65535) return [groups, 1, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y, 1];
}

/** Bits of a float32, for passing floats through the u32 meta array. */
export function f32bits(v: number): number {
  const f = new Float32Array([v]);
  return new Uint32Array(f.buffer)[0];
}
