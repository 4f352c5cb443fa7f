import type { Backend, DType, KernelOutput, KernelTensor, OpAttrs, OpName } from '@dictlearn/core';
import { registerKernel } from '@dictlearn/core';
import { type DenseWasm, denseFor } from './dense-wasm.js';
import type { SplitEngine } from './engine.js';

/** Float storage of a CPU backend: float32, or float64 for the gradient checker's backend. */
export type FloatArray = Float32Array | Float64Array;
/** Any array a CPU tensor is stored in. */
export type CpuArray = FloatArray | Int32Array;

/** What the kernels of one CPU backend instance share. */
export interface CpuContext {
  /** The backend's name. */
  readonly name: string;
  /**
   * Whether elementwise loops are generated with `new Function` (fast, monomorphic loops);
   * false under a content-security policy without 'unsafe-eval', or when the backend was
   * created with `codegen: false`: then closures compute the same values.
   */
  readonly codegen: boolean;
  /**
   * Storage for `size` elements of a dtype at this backend's precision: zeroed, or (with
   * `zero: false`, for kernels that write every element) left with whatever a recycled array held.
   */
  alloc(dtype: DType, size: number, zero?: boolean): CpuArray;
  /** Takes back the storage of a freed tensor for reuse. */
  recycle(data: CpuArray): void;
  /** Calls `fn` with the storage of every freed tensor (caches keyed on storage drop it). */
  onRecycle(fn: (data: CpuArray) => void): void;
  /** Bytes held for reuse. */
  pooledBytes(): number;
  /**
   * The worker-thread pool large sparse-kernel calls are split over (set by the backend's
   * `init` in Node, with `kernelThreads` > 1), or undefined: this thread only.
   */
  pool: SplitEngine | undefined;
  /**
   * The dense WebAssembly loops when every array is float32 storage (else undefined: the
   * TypeScript loops run): split over the pool's threads where `denseSplit` is set.
   */
  dense(...arrays: ArrayLike<number>[]): DenseWasm | undefined;
  /** The dense loops split over the kernel pool (set by the backend's `init` in Node), or undefined. */
  denseSplit: DenseWasm | undefined;
  /** Registers a kernel on this backend instance. */
  kernel<Op extends OpName>(
    op: Op,
    fn: (inputs: KernelTensor[], attrs: OpAttrs[Op]) => KernelOutput | KernelOutput[],
  ): void;
}

/** Arrays smaller than this are not pooled: allocating them is cheap. */
const POOL_MIN_BYTES = 1 << 16;

/**
 * Makes the context of a CPU backend instance with the given float precision; its kernels are
 * registered on that instance (never under a name another instance could share).
 *
 * Large arrays of freed tensors are kept for reuse (up to `poolLimitBytes`): a fresh 64 MiB
 * typed array is zero pages that fault in on first write, which costs more than the
 * 4096×4096 product written into it. Reused arrays are already resident.
 */
export function createContext(
  backend: Backend,
  precision: 'float32' | 'float64',
  codegen: boolean,
  poolLimitBytes = 2 * 2 ** 30,
): CpuContext {
  const Float = precision === 'float64' ? Float64Array : Float32Array;
  const pool = new Map<string, CpuArray[]>();
  let pooled = 0;
  const keyOf = (isInt: boolean, size: number) => `${isInt ? 'i' : 'f'}${size}`;
  const watchers: ((data: CpuArray) => void)[] = [];
  return {
    name: backend.name,
    codegen,
    alloc(dtype, size, zero = true) {
      const list = pool.get(keyOf(dtype === 'int32', size));
      const reused = list?.pop();
      if (reused) {
        pooled -= reused.byteLength;
        return zero ? reused.fill(0) : reused;
      }
      return dtype === 'int32' ? new Int32Array(size) : new Float(size);
    },
    recycle(data) {
      for (const w of watchers) w(data);
      if (data.byteLength < POOL_MIN_BYTES || pooled + data.byteLength > poolLimitBytes) return;
      if (data.byteOffset !== 0 || data.length * data.BYTES_PER_ELEMENT !== data.buffer.byteLength) return;
      const key = keyOf(data instanceof Int32Array, data.length);
      let list = pool.get(key);
      if (!list) {
        list = [];
        pool.set(key, list);
      }
      list.push(data);
      pooled += data.byteLength;
    },
    pooledBytes: () => pooled,
    onRecycle: (fn) => {
      watchers.push(fn);
    },
    pool: undefined,
    denseSplit: undefined,
    dense(...arrays) {
      const plain = denseFor(...arrays);
      return plain && (this.denseSplit ?? plain);
    },
    kernel: (op, fn) => registerKernel(op, backend, fn),
  };
}

/** The stored array of a kernel input. */
export function arr(t: KernelTensor): CpuArray {
  return t.data as CpuArray;
}

/** An output descriptor. */
export function out(data: CpuArray, shape: readonly number[], dtype: DType): KernelOutput {
  return { data, shape, dtype };
}
