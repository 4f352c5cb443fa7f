/**
 * Worker threads that draw parts of a synthetic batch (Node only; loaded on demand by
 * `SyntheticSource`'s `batches()` and `startThreads()`).
 *
 * Every sample has its own Philox streams (its code and its noise are keyed by its index), so a
 * batch splits into ranges of rows that any thread can draw and still give the values one thread
 * gives, bit for bit. Each worker holds its own instance of buffer's module per source, made from
 * a copy of the source's memory up to its tables (the ground truth, the firing tables, the
 * stream's key, the ziggurat's), and runs the same draw (`drawRows`, from its source text). The
 * rows come back through one shared array; this thread draws the first range meanwhile, and every
 * range a worker cannot take (still starting, gone, or failed) or has not begun by the time this
 * thread is done with its own. The workers are core's job workers (`@dictlearn/core/threads`).
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { DictlearnError } from '@dictlearn/core';
import { type JobWorkers, startJobWorkers } from '@dictlearn/core/threads';
import { WASM_IMPORTS_SOURCE } from './buffer-wasm.js';
import { type DrawPlan, drawCodes, drawRows, listsLayout } from './synthetic-wasm.js';

/** Float64 words of a worker's argument slot: source id, first sample, rows, sigma, offset. */
const ARG_WORDS = 5;
/**
 * Rows a range has at least: ~2 µs a row at the defaults, so 256 rows are ~0.5 ms, against the
 * 0.1–0.2 ms it takes to wake a sleeping worker.
 */
export const MIN_PART_ROWS = 256;
/** How long this thread waits for a worker's range before it gives up on the pool. */
const WAIT_MS = 120_000;
/** How long this thread spins for a worker's range before it sleeps, in ms. */
const WAIT_SPIN_MS = 1;

/**
 * A worker's set-up (see core's `jobLoopSource`): its instances of the module, one per source
 * (made from the memory image a source's 'add' message brings), and the array rows go to; a job
 * draws a range of rows in the source's instance and copies them out.
 */
const WORKER_SETUP = `
const { module } = workerData;
${WASM_IMPORTS_SOURCE.declarations}
const imports = ${WASM_IMPORTS_SOURCE.expression};
${listsLayout.toString()}
${drawCodes.toString()}
const draw = ${drawRows.toString()};
const sources = new Map();
let out = null;
function onMessage({ op, id, image, plan, buffer }) {
  if (op === 'add') {
    const ex = new WebAssembly.Instance(module, { math: imports }).exports;
    const mem = ex.mem;
    const reserve = (bytes) => {
      const have = mem.buffer.byteLength;
      if (bytes > have) mem.grow(Math.ceil((bytes - have) / 65536));
    };
    reserve(image.length);
    new Uint8Array(mem.buffer, 0, image.length).set(image);
    const { codes, correlatedCodes, sums, noise } = ex;
    sources.set(id, { ex: { codes, correlatedCodes, sums, noise, reserve }, mem, plan });
  } else if (op === 'drop') sources.delete(id);
  else if (op === 'out') out = new Float32Array(buffer);
}
function run(a) {
  const s = sources.get(A[a]);
  const count = A[a + 2];
  draw(s.ex, s.plan, A[a + 1], count, A[a + 3]);
  out.set(new Float32Array(s.mem.buffer, s.plan.listsAt, count * s.plan.d), A[a + 4]);
}
`;

/** A pool of threads (this one and `threads − 1` workers) drawing synthetic rows. */
export interface RowThreads {
  /** Threads, this one included. */
  readonly threads: number;
  /**
   * Adds a source: a copy of its instance's memory up to `plan.listsAt` and its plan. Returns its
   * id for {@link rows}; the workers make their instances before their next range.
   */
  add(image: Uint8Array, plan: DrawPlan): number;
  /** Forgets a source (its instances go with the workers' next range). */
  drop(id: number): void;
  /**
   * Samples `start` … `start + count − 1` of source `id` (its independent codes and noise of scale
   * `sigma`), [count, d] float32: ranges of at least {@link MIN_PART_ROWS} rows go to ready
   * workers, the first and every range a worker cannot take to `here` (this thread's draw: a
   * view of its rows, copied at once), and so does every range a worker has not begun by the
   * time this thread's is done, unless `takeBack` is false. A view of the pool's shared array,
   * valid until the next call.
   */
  rows(
    id: number,
    start: number,
    count: number,
    sigma: number,
    here: (start: number, count: number) => Float32Array,
    takeBack?: boolean,
  ): Float32Array;
  /** Workers ready to take ranges now (they start asynchronously). */
  readyWorkers(): number;
  /**
   * Ranges so far: handed to workers (and drawn there, or failed), taken back before a worker
   * began them, and failed ranges drawn again here.
   */
  ranges(): { workers: number; taken: number; redone: number };
  /** Resolves, with the ready workers, once every worker is ready or gone (or after 10 s). */
  whenReady(): Promise<number>;
  /** Ends the workers; later calls draw on this thread. */
  close(): void;
}

/** The default thread count: the cores, at most 4 (a batch of 4096 rows is ~9 ms on one). */
export function defaultSyntheticThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

const pools = new Map<number, RowThreads | string>();

/**
 * The process's pool of `threads` threads, made on first use and shared by every source asking
 * for that many; or why there is none (fewer than two threads, no shared memory, workers
 * refused). Never throws.
 */
export function rowThreads(threads: number, module: object): RowThreads | string {
  let pool = pools.get(threads);
  if (pool === undefined) {
    pool = createPool(threads, module);
    pools.set(threads, pool);
  }
  return pool;
}

function createPool(threads: number, module: object): RowThreads | string {
  if (!Number.isInteger(threads) || threads < 2) return 'one thread';
  if (typeof SharedArrayBuffer === 'undefined') return 'no SharedArrayBuffer here';
  let workers: JobWorkers;
  try {
    workers = startJobWorkers({
      count: threads - 1,
      setup: WORKER_SETUP,
      argWords: ARG_WORDS,
      data: { module },
    });
  } catch (e) {
    return `synthetic worker threads could not start: ${e instanceof Error ? e.message : String(e)}`;
  }
  const A = workers.args;
  const plans = new Map<number, DrawPlan>();
  let out = new Float32Array(new SharedArrayBuffer(0));
  let nextId = 1;
  const counts = { workers: 0, taken: 0, redone: 0 };
  return {
    threads,
    add(image, plan) {
      const id = nextId++;
      plans.set(id, plan);
      workers.post({ op: 'add', id, image, plan });
      return id;
    },
    drop(id) {
      if (plans.delete(id)) workers.post({ op: 'drop', id });
    },
    rows(id, start, count, sigma, here, takeBack = true) {
      const plan = plans.get(id);
      if (!plan) throw new DictlearnError('SyntheticSource', `source ${id} is not in the thread pool`);
      const d = plan.d;
      const slots: number[] = [];
      for (let slot = 0; slot < workers.count; slot++) if (workers.ready(slot)) slots.push(slot);
      const parts = Math.max(1, Math.min(1 + slots.length, Math.floor(count / MIN_PART_ROWS)));
      if (parts === 1) return here(start, count);
      if (out.length < count * d) {
        out = new Float32Array(new SharedArrayBuffer(count * d * 4));
        workers.post({ op: 'out', buffer: out.buffer });
      }
      // ranges [first, first + rows): the first `count % parts` one row longer
      const bounds = [0];
      for (let p = 0; p < parts; p++)
        bounds.push(bounds[p] + Math.floor(count / parts) + (p < count % parts ? 1 : 0));
      const started: [slot: number, seq: number, part: number][] = [];
      for (let p = 1; p < parts; p++) {
        const slot = slots[p - 1];
        const a = slot * ARG_WORDS;
        A[a] = id;
        A[a + 1] = start + bounds[p];
        A[a + 2] = bounds[p + 1] - bounds[p];
        A[a + 3] = sigma;
        A[a + 4] = bounds[p] * d;
        started.push([slot, workers.start(slot), p]);
      }
      // every range is waited for, even after a failure here: a range still running would
      // write into the array the next call hands out
      let failure: unknown;
      try {
        out.set(here(start, bounds[1]), 0);
      } catch (e) {
        failure = e ?? new Error(String(e));
      }
      const redo: number[] = [];
      for (const [slot, seq, p] of started) {
        // a range its worker has not begun (kept off its core, or still waking) is drawn here
        if (takeBack && failure === undefined && workers.take(slot, seq)) {
          counts.taken++;
          redo.push(p);
          continue;
        }
        counts.workers++;
        const status = workers.wait(slot, seq, WAIT_SPIN_MS, WAIT_MS);
        if (status === 'timed-out') {
          throw new DictlearnError(
            'SyntheticSource',
            `a worker thread did not finish its rows in ${WAIT_MS / 1000} s (threads: 1 draws without workers)`,
          );
        }
        if (status === 'failed') {
          counts.redone++;
          redo.push(p);
        }
      }
      if (failure !== undefined) throw failure;
      // a range taken back or failed is drawn here: its error, if any, is this thread's
      for (const p of redo) out.set(here(start + bounds[p], bounds[p + 1] - bounds[p]), bounds[p] * d);
      return out.subarray(0, count * d);
    },
    readyWorkers: () => workers.readyCount(),
    ranges: () => ({ ...counts }),
    whenReady: () => workers.whenReady(),
    close: () => workers.close(),
  };
}
