/**
 * Worker threads for the sparse kernels' WebAssembly loops (Node only; loaded on demand by the
 * backend's `init`). One module, compiled once, is instantiated on this thread and on each
 * worker over one shared memory; a kernel copies its operands in once and {@link Engine.run}
 * hands each worker its part (rows of the output) through a shared control block: the worker
 * waits on it with `Atomics.wait`, runs its part, and signals back. This thread runs part 0
 * meanwhile, and every part a worker cannot take (still starting, or gone).
 *
 * Which thread computes a part never changes its values: every output element is computed by
 * the same loop over the same entries in the same order, so results are bit for bit those of
 * one thread. Workers are `unref`'d: they never keep the process alive, and they end with it.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { DictlearnError } from '@dictlearn/core';
import { type JobWorkers, startJobWorkers } from '@dictlearn/core/threads';
import { growTo, type SplitEngine } from './engine.js';
import {
  filterBody,
  finishBody,
  kthBisectBody,
  rowmaxBody,
  segsumBody,
  selectRowsBody,
  siftBody,
} from './sparse-loops.js';
import { dotBody, pushBody, replaceBody } from './sparse-wasm.js';
import { F32, funcType, I32, moduleBytes } from './wasm-asm.js';

/** The shared memory's limit: 2 GiB (the most a 32-bit offset reaches). */
const MAX_PAGES = 32768;
const MAX_BYTES = MAX_PAGES * 65536;
/** The exported loops, by the index the control block names them with. */
const FUNCTIONS = ['segsum', 'dot', 'selectRows'];
/** Float64 words of a worker's argument slot: function index, count, arguments. */
const ARG_WORDS = 48;
/** How long this thread waits for a worker's part before it gives up on the pool. */
const WAIT_MS = 120_000;
/**
 * How long a worker spins for its next part, after a part whose caller asks for it, before it
 * sleeps; in ms. A training step's split products come less than that apart at small sizes, and
 * waking a sleeping worker cost 0.15–0.2 ms per product (measured on a 2-core VM: a 0.5 ms product
 * took 0.6–0.75 ms after 3 ms idle). Callers whose next heavy work runs on other threads
 * (onnxruntime's) ask for none: a spinning worker would take a core from them.
 */
export const HANDOVER_SPIN_MS = 2;
/** How long this thread spins for a worker's part to finish before it sleeps, in ms. */
const WAIT_SPIN_MS = 2;

/** The module the pool runs: segsum, dot and the top-k selection of the sparse kernels. */
function poolBytes(): Uint8Array {
  const ints = (n: number) => funcType(new Array<number>(n).fill(I32), []);
  const heapOp = funcType([I32, I32, I32, F32, I32], []);
  const [PUSH, REPLACE, SIFT, ROWMAX, KTH, FILTER, FINISH] = [2, 3, 4, 5, 6, 7, 8];
  return moduleBytes(
    [ints(7), ints(9), heapOp, ints(11), ints(18)],
    [
      { type: 1, body: segsumBody(), export: 'segsum' },
      { type: 0, body: dotBody(), export: 'dot' },
      { type: 2, body: pushBody() },
      { type: 2, body: replaceBody() },
      { type: 2, body: siftBody() },
      { type: 0, body: rowmaxBody() },
      { type: 0, body: kthBisectBody() },
      { type: 1, body: filterBody() },
      { type: 3, body: finishBody(PUSH, REPLACE, SIFT) },
      { type: 4, body: selectRowsBody(ROWMAX, KTH, FILTER, FINISH), export: 'selectRows' },
    ],
    MAX_PAGES,
  );
}

/**
 * A worker's set-up (see core's `jobLoopSource`): the module instantiated over the shared
 * memory; a job is a function index, its argument count, its arguments and, in the last word,
 * how long to spin for the next job. Native functions are announced by message before their
 * first call: each brings the source of its set-up, (data, require) => the function.
 */
const WORKER_SETUP = `
const { module, memory, functions } = workerData;
const ex = new WebAssembly.Instance(module, { env: { mem: memory } }).exports;
const natives = [];
function onMessage({ index, setup, data }) {
  natives[index] = (0, eval)('(' + setup + ')')(data, require);
}
function run(a) {
  const list = [];
  for (let i = 0; i < A[a + 1]; i++) list.push(A[a + 2 + i]);
  const i = A[a];
  (i < functions.length ? ex[functions[i]] : natives[i])(...list);
  return A[a + ${ARG_WORDS - 1}];
}
`;
/**
 * A function for the workers to call by name (see {@link KernelPool.loadNative}): a C function
 * loaded with koffi, or a loop over operands the workers reach by address.
 */
export interface NativeFunction {
  /**
   * JavaScript source of `(data, require) => fn`, evaluated once in each worker (CommonJS
   * `require`); `fn` takes the parts' numbers.
   */
  setup: string;
  /** What the set-up gets (structured-cloned to each worker: numbers, strings, a WebAssembly.Module…). */
  data: unknown;
  /** The same function on this thread, which runs the parts no worker takes. */
  here: (...args: number[]) => void;
}

/**
 * The array, or a copy of it where V8 may keep it on its heap (typed arrays of up to 64 bytes),
 * where a collection can move it while a worker reads it by address: the storage of an
 * ArrayBuffer made on its own never moves.
 */
export function unmoving(x: Float32Array): Float32Array {
  if (x.byteLength > 64) return x;
  const copy = new Float32Array(new ArrayBuffer(x.byteLength));
  copy.set(x);
  return copy;
}

/** What the last {@link holdUntilHere} kept (until the next call replaces it). */
export let held: unknown;
/**
 * Keeps `objects` reachable up to this call (put it after the wait for the parts that read them):
 * an array whose only use was its address could otherwise be collected, and its storage freed,
 * while a worker still reads it. They stay reachable until the next call.
 */
export function holdUntilHere(objects: unknown): void {
  held = objects;
}

/** The kernel pool: an engine over a shared memory, with `threads − 1` workers. */
export interface KernelPool extends SplitEngine {
  /**
   * Makes a function callable by name in `run` and `begin`, on this thread and the workers (which
   * set it up before their next part). Parts that address memory outside the pool's (a C
   * function's pointers, views made with koffi) need the caller to keep that memory alive and
   * unmoved until the call returns.
   */
  loadNative(name: string, fn: NativeFunction): void;
  /** Workers ready to take parts now (they start asynchronously; until then this thread runs every part). */
  readyWorkers(): number;
  /** Ends the workers; later calls run on this thread. */
  close(): void;
}

const pools = new Map<number, KernelPool | string>();

/** The default thread count: the cores, at most 4 (the sparse loops gain little beyond). */
export function defaultKernelThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** The slice of the WebAssembly JS API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  Memory: new (d: {
    initial: number;
    maximum: number;
    shared: boolean;
  }) => {
    readonly buffer: ArrayBufferLike;
    grow(pages: number): number;
  };
}

/**
 * The process's pool of `threads` threads (this one and threads − 1 workers), made on first
 * use and shared by every backend asking for that many; or why there is none (fewer than two
 * threads, no shared WebAssembly memory, workers refused). Never throws.
 */
export function kernelPool(threads: number): KernelPool | string {
  let pool = pools.get(threads);
  if (pool === undefined) {
    pool = createPool(threads);
    pools.set(threads, pool);
  }
  return pool;
}

function createPool(threads: number): KernelPool | string {
  if (!Number.isInteger(threads) || threads < 2) return 'one thread';
  try {
    const WA = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    if (!WA || typeof SharedArrayBuffer === 'undefined') return 'no shared WebAssembly memory here';
    const bytes = poolBytes();
    if (!WA.validate(bytes)) return 'this runtime has no WebAssembly SIMD or threads';
    const module = new WA.Module(bytes);
    const memory = new WA.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    const ex = new WA.Instance(module, { env: { mem: memory } }).exports as Record<
      string,
      (...args: number[]) => void
    >;
    const nWorkers = threads - 1;
    const workers: JobWorkers = startJobWorkers({
      count: nWorkers,
      setup: WORKER_SETUP,
      argWords: ARG_WORDS,
      data: { module, memory, functions: FUNCTIONS },
    });
    const A = workers.args;
    const natives = new Map<string, { index: number; here: (...args: number[]) => void }>();
    /** The function `fn` on this thread: a native one's stand-in, or the module's export. */
    const onThisThread = (fn: string) => natives.get(fn)?.here ?? ex[fn];
    const begin = (fn: string, parts: number[][], spinMs = 0): (() => void) => {
      const index = natives.get(fn)?.index ?? FUNCTIONS.indexOf(fn);
      const started: [slot: number, seq: number, part: number][] = [];
      const here: number[][] = [];
      for (let p = 0; p < parts.length; p++) {
        const slot = p;
        if (parts[p].length > ARG_WORDS - 3) {
          // a caller's mistake, never the data's: were it run here instead, it would only be slow
          throw new DictlearnError(
            'backend-cpu',
            `a part of '${fn}' has ${parts[p].length} numbers; a worker's slot holds ${ARG_WORDS - 3}`,
          );
        }
        if (slot >= nWorkers || !workers.ready(slot)) {
          here.push(parts[p]);
          continue;
        }
        const a = slot * ARG_WORDS;
        A[a] = index;
        A[a + 1] = parts[p].length;
        A.set(parts[p], a + 2);
        A[a + ARG_WORDS - 1] = spinMs;
        started.push([slot, workers.start(slot), p]);
      }
      return () => {
        const f = onThisThread(fn);
        for (const p of here) f(...p);
        // Wait for every part before reporting a failure: a part still running would write
        // into memory the next call lays out.
        let failed = false;
        for (const [slot, seq, p] of started) {
          // a part its worker has not begun (kept off its core, or still waking) is run here
          if (workers.take(slot, seq)) {
            try {
              f(...parts[p]);
            } catch {
              failed = true;
            }
            continue;
          }
          const status = workers.wait(slot, seq, WAIT_SPIN_MS, WAIT_MS);
          if (status === 'timed-out') {
            throw new DictlearnError(
              'backend-cpu',
              `a kernel worker did not finish its part of '${fn}' in ${WAIT_MS / 1000} s (kernelThreads: 1 runs without workers)`,
            );
          }
          if (status === 'failed') failed = true;
        }
        if (failed) throw new DictlearnError('backend-cpu', `a kernel worker failed its part of '${fn}'`);
      };
    };
    return {
      threads,
      loadNative(name, { setup, data, here }) {
        if (natives.has(name) || FUNCTIONS.includes(name)) return;
        const index = FUNCTIONS.length + natives.size;
        natives.set(name, { index, here });
        workers.post({ index, setup, data });
      },
      buffer: () => memory.buffer,
      layout: (sizes) => growTo(sizes, MAX_BYTES, memory),
      run(fn, parts, spinMs) {
        const wait = begin(fn, parts.slice(1), spinMs);
        try {
          onThisThread(fn)(...parts[0]);
        } finally {
          wait();
        }
      },
      begin,
      readyWorkers: () => workers.readyCount(),
      close: () => workers.close(),
    };
  } catch (e) {
    return `kernel worker threads could not start: ${e instanceof Error ? e.message : String(e)}`;
  }
}
