import type { DType } from '@dictlearn/core';

// GPUBufferUsage / GPUMapMode values, spelled out so the module needs no globals in Node.
const USAGE_MAP_READ = 0x0001;
const USAGE_COPY_SRC = 0x0004;
const USAGE_COPY_DST = 0x0008;
const USAGE_STORAGE = 0x0080;
const MAP_READ = 0x0001;
/** Room for the u32 parameters of one dispatch (shapes and strides of rank ≤ 8 fit easily). */
const META_BYTES = 1024;

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
  return mod.create([]);
}

/**
 * One WebGPU device with a buffer pool, a pipeline cache and a dispatch helper. Work is queued
 * without waiting; only `read` waits (for the copy to a mappable buffer).
 */
export class GpuDevice {
  readonly device: GPUDevice;
  readonly adapterName: string;
  readonly maxBinding: number;
  #pool = new Map<number, GPUBuffer[]>();
  #pooled = 0;
  #pipelines = new Map<string, GPUComputePipeline>();
  #lost: string | undefined;
  #meta: GPUBuffer | undefined;

  constructor(
    device: GPUDevice,
    adapterName: string,
    readonly poolLimitBytes = 1 << 30,
    /** Width of the subgroups kernels may use (0 = none). */
    readonly subgroupSize = 0,
  ) {
    this.device = device;
    this.adapterName = adapterName;
    this.maxBinding = device.limits.maxStorageBufferBindingSize;
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

  /** A storage buffer for `size` elements (from the pool when one fits). */
  alloc(size: number, op: string): GpuData {
    const bytes = Math.max(4, size * 4);
    if (bytes > this.maxBinding) {
      throw new Error(
        `${op}: a tensor of ${size} elements (${bytes} bytes) exceeds this adapter's storage-buffer limit of ${this.maxBinding} bytes`,
      );
    }
    const list = this.#pool.get(bytes);
    const reused = list?.pop();
    if (reused) {
      this.#pooled -= bytes;
      return { buffer: reused, size };
    }
    const buffer = this.device.createBuffer({
      size: bytes,
      usage: USAGE_STORAGE | USAGE_COPY_SRC | USAGE_COPY_DST,
    });
    return { buffer, size };
  }

  /** Returns a buffer to the pool (or destroys it past the pool's limit). */
  free(d: GpuData): void {
    const bytes = d.buffer.size;
    if (this.#pooled + bytes > this.poolLimitBytes) {
      d.buffer.destroy();
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

  /** Uploads host values (converted to float32 / int32). */
  upload(values: ArrayLike<number>, dtype: DType, op = 'upload'): GpuData {
    const d = this.alloc(values.length, op);
    if (values.length > 0) {
      const host = dtype === 'int32' ? Int32Array.from(values) : Float32Array.from(values);
      this.device.queue.writeBuffer(d.buffer, 0, host.buffer, host.byteOffset, host.byteLength);
    }
    return d;
  }

  /** Copies values back to the host. */
  async read(d: GpuData, dtype: DType): Promise<Float32Array | Int32Array> {
    if (this.#lost) throw new Error(`the WebGPU device is lost (${this.#lost})`);
    const bytes = Math.max(4, d.size * 4);
    const staging = this.device.createBuffer({ size: bytes, usage: USAGE_MAP_READ | USAGE_COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(d.buffer, 0, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ);
    const copy = staging.getMappedRange().slice(0, d.size * 4);
    staging.unmap();
    staging.destroy();
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

  /**
   * Runs a kernel: binds `buffers` at 0.. in order, then a read-only `meta` array of u32 (floats
   * are passed as their bits), and dispatches `groups` workgroups (split over y past 65535).
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
    const metaHost = Uint32Array.from(meta.length > 0 ? meta : [0]);
    // One parameter buffer, rewritten per dispatch: queue operations run in order, so a write
    // lands after every earlier submitted dispatch has read the previous contents.
    if (metaHost.byteLength > META_BYTES)
      throw new Error(`kernel parameters too long (${metaHost.length} words)`);
    this.#meta ??= this.device.createBuffer({ size: META_BYTES, usage: USAGE_STORAGE | USAGE_COPY_DST });
    const metaBuf = this.#meta;
    this.device.queue.writeBuffer(metaBuf, 0, metaHost);
    const entries = [...buffers, metaBuf].map((buffer, binding) => ({ binding, resource: { buffer } }));
    const bind = this.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(gx, gy, gz);
    pass.end();
    this.device.queue.submit([enc.finish()]);
  }

  /** Waits for queued work. */
  async sync(): Promise<void> {
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
