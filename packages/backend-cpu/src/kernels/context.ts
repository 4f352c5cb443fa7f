import type { Attrs, DType, Kernel, KernelOutput, KernelTensor } from '@dictlearn/core';
import { registerKernel } from '@dictlearn/core';

/** Float storage of a CPU backend: float32, or float64 for the gradient checker's backend. */
export type FloatArray = Float32Array | Float64Array;
/** Any array a CPU tensor is stored in. */
export type CpuArray = FloatArray | Int32Array;

/** What the kernels of one CPU backend instance share. */
export interface CpuContext {
  /** The backend's name (kernels are registered under it). */
  readonly name: string;
  /** Allocates zeroed storage for `size` elements of a dtype at this backend's precision. */
  alloc(dtype: DType, size: number): CpuArray;
  /** Registers a kernel for this backend. */
  kernel(op: string, fn: (inputs: KernelTensor[], attrs: Attrs) => KernelOutput | KernelOutput[]): void;
}

/** Makes the context of a CPU backend with the given name and float precision. */
export function createContext(name: string, precision: 'float32' | 'float64'): CpuContext {
  const Float = precision === 'float64' ? Float64Array : Float32Array;
  return {
    name,
    alloc: (dtype, size) => (dtype === 'int32' ? new Int32Array(size) : new Float(size)),
    kernel: (op, fn) => registerKernel(op, name, fn as Kernel),
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

/** Row-major strides of a shape. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * Strides of an input broadcast to `outShape`: 0 on the axes it is broadcast along
 * (missing leading axes or size 1), its own stride elsewhere.
 */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const own = strides(shape);
  const lead = outShape.length - shape.length;
  return outShape.map((d, i) => {
    if (i < lead) return 0;
    const sd = shape[i - lead];
    return sd === 1 && d !== 1 ? 0 : own[i - lead];
  });
}
