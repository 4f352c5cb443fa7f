import type { Backend, BackendData } from './backend.js';
import { DictlearnError, fmtShape } from './errors.js';
import { sizeOf } from './shape.js';
import type { DType, NestedArray, Shape, TensorValues } from './types.js';

/**
 * Backend memory shared by one or more tensors (a reshape shares its input's storage).
 * Freed when the last tensor using it is disposed.
 * @internal
 */
export class Storage {
  refs = 0;
  constructor(
    readonly backend: Backend,
    readonly data: BackendData,
    readonly bytes: number,
  ) {
    const stats = statsOf(backend.name);
    stats.bytes += bytes;
    if (stats.bytes > stats.peakBytes) stats.peakBytes = stats.bytes;
    totalBytes += bytes;
    if (totalBytes > totalPeak) totalPeak = totalBytes;
  }
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) {
      statsOf(this.backend.name).bytes -= this.bytes;
      totalBytes -= this.bytes;
      this.backend.free(this.data);
    }
  }
}

interface BackendStats {
  tensors: number;
  bytes: number;
  peakBytes: number;
}
const stats = new Map<string, BackendStats>();
// All backends together: the peak of the sum is not the sum of the per-backend peaks.
let totalBytes = 0;
let totalPeak = 0;
function statsOf(name: string): BackendStats {
  let s = stats.get(name);
  if (!s) {
    s = { tensors: 0, bytes: 0, peakBytes: 0 };
    stats.set(name, s);
  }
  return s;
}

/** Live tensors and bytes on one backend. */
export interface BackendMemory {
  /** Live tensors. */
  tensors: number;
  /** Bytes they hold. */
  bytes: number;
  /**
   * The most bytes live tensors held at once since the start or the last
   * {@link resetPeakMemory}: storage created inside ops and freed before they return
   * (a kernel's private scratch) is not counted; a backend may report those itself.
   */
  peakBytes: number;
}

/** Live tensors and the bytes they hold, per backend and in total. */
export interface MemoryInfo {
  /** Live (not disposed) tensors on all backends. */
  tensors: number;
  /** Bytes held by live tensors on all backends (shared storage counted once). */
  bytes: number;
  /** The most `bytes` reached at once on all backends together (see {@link resetPeakMemory}). */
  peakBytes: number;
  /** The same figures per backend name. */
  backends: Record<string, BackendMemory>;
}

/** Counts live tensors and bytes per backend: the leak test's measure. */
export function memory(): MemoryInfo {
  const backends: MemoryInfo['backends'] = {};
  let tensors = 0;
  let bytes = 0;
  for (const [name, s] of stats) {
    backends[name] = { ...s };
    tensors += s.tensors;
    bytes += s.bytes;
  }
  return { tensors, bytes, peakBytes: totalPeak, backends };
}

/**
 * Restarts the peak counters of {@link memory} from the bytes live now: of one backend, or of
 * every backend and the total when no name is given. Measure a stretch of work (e.g. training
 * steps) as `resetPeakMemory(); ...; memory().backends[name].peakBytes`.
 */
export function resetPeakMemory(backend?: string): void {
  for (const [name, s] of stats) if (backend === undefined || name === backend) s.peakBytes = s.bytes;
  if (backend === undefined) totalPeak = totalBytes;
}

let nextId = 1;

/** Hook the engine installs so that new tensors are tracked by the active scope. @internal */
export const tracking: { onCreate: (t: Tensor) => void } = { onCreate: () => {} };

/**
 * An immutable handle to values on one backend. Create tensors with {@link tensor}, `zeros`,
 * `randomNormal`..., combine them with ops, read them with `await t.data()`, and free them with
 * `dispose()` or by creating them inside `scope()`.
 */
export class Tensor {
  /** Unique id, for debugging. */
  readonly id: number;
  /** Size of each axis; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  /** @internal */
  readonly storage: Storage;
  #disposed = false;
  /** @internal set while an autograd tape still needs this tensor. */
  tapeHeld = false;
  /** @internal set by `keep()`: no scope disposes it. */
  kept = false;

  /** @internal use {@link tensor} or an op. */
  constructor(storage: Storage, shape: Shape, dtype: DType) {
    this.id = nextId++;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = sizeOf(shape);
    this.storage = storage;
    storage.retain();
    statsOf(storage.backend.name).tensors++;
    tracking.onCreate(this);
  }

  /** The id the next tensor will get (tensor ids increase monotonically). @internal */
  static nextId(): number {
    return nextId;
  }

  /** Name of the backend holding the values. */
  get backend(): string {
    return this.storage.backend.name;
  }

  /** Number of axes. */
  get rank(): number {
    return this.shape.length;
  }

  /** Whether `dispose()` has been called. */
  get isDisposed(): boolean {
    return this.#disposed;
  }

  /** Throws a clear error when the tensor was disposed; `op` names who wanted it. */
  assertAlive(op: string): void {
    if (this.#disposed) {
      throw new DictlearnError(
        op,
        `tensor #${this.id} ${fmtShape(this.shape)} ${this.dtype} was disposed; keep it (scope return value or keep()) to use it later`,
      );
    }
  }

  /** Reads the values to the host (a copy; the tensor stays usable). */
  async data(): Promise<TensorValues> {
    this.assertAlive('data');
    return this.storage.backend.read(this.storage.data, this.dtype, this.size);
  }

  /** Reads the values synchronously; only backends that hold values on the host (CPU) allow it. */
  dataSync(): TensorValues {
    this.assertAlive('dataSync');
    const b = this.storage.backend;
    if (!b.readSync) {
      throw new DictlearnError(
        'dataSync',
        `backend '${b.name}' cannot read synchronously; use await t.data()`,
      );
    }
    return b.readSync(this.storage.data, this.dtype, this.size);
  }

  /** Reads the values as nested arrays. */
  async array(): Promise<NestedArray> {
    return nest(await this.data(), this.shape);
  }

  /** Frees the tensor. Disposing twice is harmless. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    statsOf(this.storage.backend.name).tensors--;
    this.storage.release();
  }

  /** A short description, e.g. `Tensor#3 [4, 3] float32 on cpu`. */
  toString(): string {
    return `Tensor#${this.id} ${fmtShape(this.shape)} ${this.dtype} on ${this.backend}`;
  }
}

/** Turns flat row-major values into nested arrays of the given shape. */
export function nest(values: ArrayLike<number>, shape: Shape): NestedArray {
  if (shape.length === 0) return values[0];
  const build = (offset: number, axis: number): NestedArray[] => {
    const n = shape[axis];
    const stride = sizeOf(shape.slice(axis + 1));
    const out: NestedArray[] = [];
    for (let i = 0; i < n; i++) {
      out.push(axis === shape.length - 1 ? values[offset + i] : build(offset + i * stride, axis + 1));
    }
    return out;
  };
  return build(0, 0);
}
