import { DictlearnError } from './errors.js';
import { findPlugin, listPlugins, registerPlugin } from './registry.js';
import type { DType, HostArray, TensorValues } from './types.js';

/** A backend's own handle to the memory holding one tensor's values (a typed array, a GPU buffer...). */
export type BackendData = unknown;

/**
 * A place tensors live and kernels run: CPU, WebGPU, CUDA. A backend brings storage
 * (upload, read, free) and registers its kernels on itself with {@link registerKernel}
 * (kernels belong to the instance, not to its name); ops dispatch to it.
 * Register it with {@link registerBackend}; {@link useBackend} initialises it once.
 */
export interface Backend {
  /** The name `useBackend` takes, e.g. `'cpu'`. */
  readonly name: string;
  /** Higher wins in `useBackend('auto')` (cuda 300 > webgpu 200 > cpu 100). */
  readonly priority: number;
  /** Starts the backend; throws with the reason when it cannot run here. Called once. */
  init(): Promise<void>;
  /** Copies host values onto the backend. The array is not retained. */
  upload(values: HostArray, dtype: DType): BackendData;
  /** Reads values back to the host. */
  read(data: BackendData, dtype: DType, size: number): Promise<TensorValues>;
  /** Reads values synchronously, where the backend can (CPU). */
  readSync?(data: BackendData, dtype: DType, size: number): TensorValues;
  /** Reads float values at the backend's full precision (float64 for a high-precision CPU backend). */
  readFloat64?(data: BackendData, size: number): Float64Array;
  /** Releases the memory. Called exactly once per upload or kernel output. */
  free(data: BackendData): void;
  /** Bytes per element the backend stores for a dtype (default 4). */
  bytesPerElement?(dtype: DType): number;
  /** Waits until queued work has finished (GPU backends); optional. */
  sync?(): Promise<void>;
  /**
   * Starts recorded work without waiting for it, for backends that batch kernels before
   * submitting them (WebGPU); optional. The Trainer calls it at the end of each step, so the
   * device runs the update while the host prepares the next step.
   */
  flush?(): void;
  /**
   * Set (after `init()`) when `useBackend('auto')` should pass this backend over although it
   * started, with the reason: e.g. a WebGPU adapter that is a CPU emulation (lavapipe,
   * SwiftShader), slower than the CPU backend. Naming the backend still uses it.
   */
  readonly autoSkipReason?: string;
}

interface BackendState {
  status: 'new' | 'starting' | 'ready' | 'failed';
  promise?: Promise<void>;
  reason?: string;
}

const states = new WeakMap<Backend, BackendState>();
let current: Backend | undefined;

function stateOf(b: Backend): BackendState {
  let s = states.get(b);
  if (!s) {
    s = { status: 'new' };
    states.set(b, s);
  }
  return s;
}

/**
 * Makes a backend available to {@link useBackend} and returns it. Registering the same backend
 * twice is a no-op; a different backend under a taken name throws (and its kernels, which
 * belong to it, never touch the registered one's).
 */
export function registerBackend<B extends Backend>(backend: B): B {
  return registerPlugin('backend', backend.name, backend);
}

/**
 * Marks a backend started without calling `init()` — for backends whose start is synchronous
 * (the CPU backend), so that ops work without an `await useBackend(...)` first.
 */
export function markBackendReady(backend: Backend): void {
  stateOf(backend).status = 'ready';
}

/** The registered backend of that name, or undefined. */
export function findBackend(name: string): Backend | undefined {
  return findPlugin<Backend>('backend', name);
}

/** Registered backends, highest priority first. */
export function listBackends(): Backend[] {
  return listPlugins('backend')
    .map((n) => findBackend(n)!)
    .sort((a, b) => b.priority - a.priority);
}

/** Why a backend failed to start, if it did. */
export function backendFailure(name: string): string | undefined {
  const b = findBackend(name);
  return b ? states.get(b)?.reason : undefined;
}

/** Runs a backend's `init()` once; later calls share the first result. Throws with the recorded reason. */
export async function initBackend(backend: Backend): Promise<void> {
  const s = stateOf(backend);
  if (s.status === 'ready') return;
  if (s.status === 'failed') {
    throw new DictlearnError('useBackend', `backend '${backend.name}' cannot start: ${s.reason}`);
  }
  if (!s.promise) {
    s.status = 'starting';
    s.promise = backend.init().then(
      () => {
        s.status = 'ready';
      },
      (e: unknown) => {
        s.status = 'failed';
        s.reason = e instanceof Error ? e.message : String(e);
      },
    );
  }
  await s.promise;
  if ((s.status as BackendState['status']) !== 'ready') {
    throw new DictlearnError('useBackend', `backend '${backend.name}' cannot start: ${s.reason}`);
  }
}

/** Options of {@link useBackend}. */
export interface UseBackendOptions {
  /** Where `'auto'` reports a fallback (default `console.warn`). */
  log?: (message: string) => void;
}

/**
 * Chooses the backend new tensors are created on, starting it first.
 * `'auto'` tries the registered backends by priority (cuda > webgpu > cpu), logs which one it
 * fell back to and why; a named backend that cannot start throws with the reason.
 */
export async function useBackend(name: string, options: UseBackendOptions = {}): Promise<Backend> {
  if (name === 'auto') {
    const candidates = listBackends();
    if (candidates.length === 0) {
      throw new DictlearnError(
        'useBackend',
        "no backend is registered; install and import one, e.g. import '@dictlearn/backend-cpu/register'",
      );
    }
    const skipped: string[] = [];
    for (const b of candidates) {
      try {
        await initBackend(b);
        if (b.autoSkipReason) {
          skipped.push(`'${b.name}' passed over: ${b.autoSkipReason}`);
          continue;
        }
        current = b;
        if (skipped.length > 0) {
          (options.log ?? console.warn)(`dictlearn: using backend '${b.name}' (${skipped.join('; ')})`);
        }
        return b;
      } catch {
        skipped.push(`'${b.name}' unavailable: ${states.get(b)?.reason}`);
      }
    }
    throw new DictlearnError('useBackend', `no registered backend could start: ${skipped.join('; ')}`);
  }
  const b = findBackend(name);
  if (!b) {
    const known = listPlugins('backend');
    throw new DictlearnError(
      'useBackend',
      `no backend named '${name}' is registered (registered: ${known.length ? known.join(', ') : 'none'}); ` +
        `install @dictlearn/backend-${name} and import '@dictlearn/backend-${name}/register'`,
    );
  }
  await initBackend(b);
  current = b;
  return b;
}

/**
 * The backend new tensors go to: the one chosen with {@link useBackend}, else the
 * highest-priority backend that is already started.
 */
export function currentBackend(): Backend {
  if (current) return current;
  for (const b of listBackends()) {
    if (states.get(b)?.status === 'ready') return b;
  }
  throw new DictlearnError(
    'backend',
    "no backend is ready: import '@dictlearn/backend-cpu/register' (or another backend) and await useBackend('auto')",
  );
}

/** Resolves a backend by name for creating a tensor on it; it must be started. */
export function readyBackend(name: string | undefined, op: string): Backend {
  if (name === undefined) return currentBackend();
  const b = findBackend(name);
  if (!b) throw new DictlearnError(op, `no backend named '${name}' is registered`);
  if (states.get(b)?.status !== 'ready') {
    throw new DictlearnError(op, `backend '${name}' is not started; await useBackend('${name}') first`);
  }
  return b;
}
