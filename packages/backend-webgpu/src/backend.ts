import type { Backend, DType, HostArray, TensorValues } from '@dictlearn/core';
import { findGpu, type GpuData, GpuDevice, type GpuDeviceStats } from './device.js';
import { registerFusedKernels } from './fused-kernels.js';
import { registerWebGPUKernels } from './kernels.js';
import { registerSparseKernels } from './sparse-kernels.js';

/** Options of {@link createWebGPUBackend}. */
export interface WebGPUBackendOptions {
  /** Name to register under (default `'webgpu'`). */
  name?: string;
  /** `useBackend('auto')` priority (default 200: above CPU, below CUDA). */
  priority?: number;
  /** A GPU object to use instead of `navigator.gpu` / the `webgpu` package. */
  gpu?: GPU;
  /** Adapter preference. */
  powerPreference?: GPUPowerPreference;
  /** Bytes of freed buffers kept for reuse (default 1 GiB). */
  poolBytes?: number;
  /** Dispatches recorded before a submit is forced (default 512; 1 submits each dispatch alone). */
  maxBatchedDispatches?: number;
  /** Use subgroup operations where the adapter has them (default true; false forces the fallback). */
  subgroups?: boolean;
}

/** Adapters that emulate a GPU on the CPU: slower than the CPU backend, so 'auto' skips them. */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software|warp/i;

/** The WebGPU backend, with the adapter it found. */
export interface WebGPUBackend extends Backend {
  /** Adapter description after `init()` (e.g. `llvmpipe (LLVM 15)` on lavapipe). */
  readonly adapter: string | undefined;
  /** The GPU object in use (kept referenced: Dawn's device dies with it). */
  readonly gpu: GPU | undefined;
  /** Subgroup width the matmul and the reductions use (0: their workgroup-memory fallbacks). */
  readonly subgroupSize: number;
  /**
   * Dispatches, submits and device memory (live tensors, the buffer pool, the parameter arena)
   * since `init()`; undefined before it.
   */
  readonly stats: GpuDeviceStats | undefined;
  /** Submits the recorded dispatches without waiting (the Trainer calls it after each step). */
  flush(): void;
  /** Restarts `stats.peakAllocatedBytes` from the bytes allocated now. */
  resetPeak(): void;
  /** Destroys the pooled (freed) buffers, returning their memory to the device. */
  trimPool(): void;
}

/**
 * Creates the WebGPU backend: WGSL kernels for every core op; work is queued without waiting and
 * only `data()` reads back. `init()` finds `navigator.gpu` (browsers) or the `webgpu` package
 * (Dawn, Node) and fails with the reason (no adapter: e.g. no Vulkan driver) so that
 * `useBackend('auto')` falls back to the CPU with a notice.
 */
export function createWebGPUBackend(options: WebGPUBackendOptions = {}): WebGPUBackend {
  const name = options.name ?? 'webgpu';
  let device: GpuDevice | undefined;
  // Dawn's Node instance must stay reachable: if the GPU object is collected, its device dies.
  let keepAlive: GPU | undefined;
  const gpu = () => {
    if (!device) throw new Error(`backend '${name}' is not started; await useBackend('${name}')`);
    return device;
  };
  const backend: WebGPUBackend = {
    name,
    priority: options.priority ?? 200,
    get adapter() {
      return device?.adapterName;
    },
    async init() {
      const g = options.gpu ?? (await findGpu());
      keepAlive = g;
      const adapter = await g.requestAdapter({ powerPreference: options.powerPreference });
      if (!adapter) {
        throw new Error(
          'no WebGPU adapter (in Node this needs a Vulkan driver, e.g. Mesa lavapipe: mesa-vulkan-drivers)',
        );
      }
      const limits = adapter.limits;
      const info = (
        adapter as GPUAdapter & {
          info?: GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
        }
      ).info;
      // Subgroups for the matmul and the reductions when the adapter has them at one fixed width
      // (a workgroup of exactly one subgroup then has a known lane layout); otherwise the
      // workgroup-memory kernels.
      const sgMin = info?.subgroupMinSize ?? 0;
      const sgMax = info?.subgroupMaxSize ?? 0;
      const subgroupSize =
        options.subgroups !== false &&
        adapter.features.has('subgroups') &&
        sgMin === sgMax &&
        sgMin >= 4 &&
        sgMin <= 64
          ? sgMin
          : 0;
      const dev = await adapter.requestDevice({
        requiredFeatures: subgroupSize ? (['subgroups'] as GPUFeatureName[]) : [],
        requiredLimits: {
          maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
          maxBufferSize: limits.maxBufferSize,
          maxStorageBuffersPerShaderStage: Math.min(limits.maxStorageBuffersPerShaderStage, 10),
          // The adapter's finest alignment: each batched dispatch's parameters take one slice.
          minStorageBufferOffsetAlignment: limits.minStorageBufferOffsetAlignment,
        },
      });
      device = new GpuDevice(
        dev,
        info ? `${info.description || info.device || info.vendor}` : 'unknown adapter',
        {
          poolLimitBytes: options.poolBytes,
          subgroupSize,
          maxBatchedDispatches: options.maxBatchedDispatches,
        },
      );
    },
    upload(values: HostArray, dtype: DType) {
      return gpu().upload(values, dtype);
    },
    read(data, dtype, _size): Promise<TensorValues> {
      return gpu().read(data as GpuData, dtype);
    },
    free(data) {
      device?.free(data as GpuData);
    },
    sync() {
      return gpu().sync();
    },
    flush() {
      device?.flush();
    },
    get stats() {
      return device?.stats;
    },
    resetPeak() {
      device?.resetPeak();
    },
    trimPool() {
      device?.trimPool();
    },
    get gpu() {
      return keepAlive;
    },
    get subgroupSize() {
      return device?.subgroupSize ?? 0;
    },
    get autoSkipReason() {
      const a = device?.adapterName;
      return a && SOFTWARE_ADAPTER.test(a) ? `the only WebGPU adapter is a CPU emulation (${a})` : undefined;
    },
  };
  // Kernels belong to this instance: another backend created under the same name gets its own.
  registerWebGPUKernels(backend, gpu);
  registerFusedKernels(backend, gpu);
  registerSparseKernels(backend, gpu);
  return backend;
}
