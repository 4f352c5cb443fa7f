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
 * range a worker cannot take (still starting, gone, or failed).
 *
 * Workers are `unref`'d: they never keep the process alive, and they end with it.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DictlearnError } from '@dictlearn/core';
import { type DrawPlan, drawCodes, drawRows, listsLayout } from './synthetic-wasm.js';

/** Int32 words of a worker's control slot: sequence, done, ready, failed. */
const FLAG_WORDS = 4;
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
 * A worker's loop (CommonJS, run with `eval`): say ready, then wait for a new sequence number,
 * take the messages sent before it (sources added or dropped, a new output array), draw that
 * range, copy it out, store the number as done and wake the caller; a negative sequence ends it.
 */
const WORKER_SOURCE = `
const { workerData, parentPort, receiveMessageOnPort } = require('node:worker_threads');
const { module, flags, args, slot } = workerData;
${listsLayout.toString()}
${drawCodes.toString()}
const draw = ${drawRows.toString()};
const F = new Int32Array(flags);
const A = new Float64Array(args);
const b = slot * ${FLAG_WORDS};
const a = slot * ${ARG_WORDS};
const sources = new Map();
let out = null;
function add(id, image, plan) {
  const ex = new WebAssembly.Instance(module, { math: { log: Math.log, exp: Math.exp } }).exports;
  const mem = ex.mem;
  const reserve = (bytes) => {
    const have = mem.buffer.byteLength;
    if (bytes > have) mem.grow(Math.ceil((bytes - have) / 65536));
  };
  reserve(image.length);
  new Uint8Array(mem.buffer, 0, image.length).set(image);
  sources.set(id, { ex: { codes: ex.codes, sums: ex.sums, noise: ex.noise, reserve }, mem, plan });
}
Atomics.store(F, b + 2, 1);
let seen = 0;
for (;;) {
  Atomics.wait(F, b, seen);
  const seq = Atomics.load(F, b);
  if (seq === seen) continue;
  if (seq < 0) break;
  seen = seq;
  try {
    for (let m; (m = receiveMessageOnPort(parentPort)); ) {
      const { op, id, image, plan, buffer } = m.message;
      if (op === 'add') add(id, image, plan);
      else if (op === 'drop') sources.delete(id);
      else if (op === 'out') out = new Float32Array(buffer);
    }
    const s = sources.get(A[a]);
    const count = A[a + 2];
    draw(s.ex, s.plan, A[a + 1], count, A[a + 3]);
    out.set(new Float32Array(s.mem.buffer, s.plan.listsAt, count * s.plan.d), A[a + 4]);
    F[b + 3] = 0;
  } catch (e) {
    F[b + 3] = 1;
  }
  Atomics.store(F, b + 1, seq);
  Atomics.notify(F, b + 1);
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
   * view of its rows, copied at once). A view of the pool's shared array, valid until the next
   * call.
   */
  rows(
    id: number,
    start: number,
    count: number,
    sigma: number,
    here: (start: number, count: number) => Float32Array,
  ): Float32Array;
  /** Workers ready to take ranges now (they start asynchronously). */
  readyWorkers(): number;
  /** Ranges workers have drawn so far, and those of them drawn again here after a worker failed. */
  ranges(): { workers: number; redone: number };
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
  try {
    const nWorkers = threads - 1;
    const flags = new SharedArrayBuffer(4 * FLAG_WORDS * nWorkers);
    const args = new SharedArrayBuffer(8 * ARG_WORDS * nWorkers);
    const F = new Int32Array(flags);
    const A = new Float64Array(args);
    const workers: (Worker | undefined)[] = [];
    const seqs = new Array<number>(nWorkers).fill(0);
    const plans = new Map<number, DrawPlan>();
    let out = new Float32Array(new SharedArrayBuffer(0));
    let nextId = 1;
    const counts = { workers: 0, redone: 0 };
    let broken = false;
    for (let slot = 0; slot < nWorkers; slot++) {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, flags, args, slot } });
      w.unref();
      // A worker that fails or exits takes no more ranges (its flag says not ready).
      const gone = () => {
        workers[slot] = undefined;
        Atomics.store(F, slot * FLAG_WORDS + 2, 0);
      };
      w.on('error', gone);
      w.on('exit', gone);
      workers.push(w);
    }
    const ready = (slot: number) =>
      !broken && workers[slot] !== undefined && Atomics.load(F, slot * FLAG_WORDS + 2) === 1;
    const readyWorkers = () => {
      let n = 0;
      for (let slot = 0; slot < nWorkers; slot++) if (ready(slot)) n++;
      return n;
    };
    const post = (message: object) => {
      for (const w of workers) w?.postMessage(message);
    };
    return {
      threads,
      add(image, plan) {
        const id = nextId++;
        plans.set(id, plan);
        post({ op: 'add', id, image, plan });
        return id;
      },
      drop(id) {
        if (plans.delete(id)) post({ op: 'drop', id });
      },
      rows(id, start, count, sigma, here) {
        const plan = plans.get(id);
        if (!plan) throw new DictlearnError('SyntheticSource', `source ${id} is not in the thread pool`);
        const d = plan.d;
        const slots: number[] = [];
        for (let slot = 0; slot < nWorkers; slot++) if (ready(slot)) slots.push(slot);
        const parts = Math.max(1, Math.min(1 + slots.length, Math.floor(count / MIN_PART_ROWS)));
        if (parts === 1) return here(start, count);
        if (out.length < count * d) {
          out = new Float32Array(new SharedArrayBuffer(count * d * 4));
          post({ op: 'out', buffer: out.buffer });
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
          const seq = ++seqs[slot];
          Atomics.store(F, slot * FLAG_WORDS, seq);
          Atomics.notify(F, slot * FLAG_WORDS);
          started.push([slot, seq, p]);
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
          const b = slot * FLAG_WORDS;
          const deadline = performance.now() + WAIT_SPIN_MS;
          while (Atomics.load(F, b + 1) !== seq && performance.now() < deadline) {}
          for (let v = Atomics.load(F, b + 1); v !== seq; v = Atomics.load(F, b + 1)) {
            if (Atomics.wait(F, b + 1, v, WAIT_MS) === 'timed-out') {
              broken = true;
              throw new DictlearnError(
                'SyntheticSource',
                `a worker thread did not finish its rows in ${WAIT_MS / 1000} s (threads: 1 draws without workers)`,
              );
            }
          }
          if (F[b + 3] !== 0) redo.push(p);
        }
        counts.workers += started.length;
        counts.redone += redo.length;
        if (failure !== undefined) throw failure;
        // a range a worker failed is drawn here: its error, if any, is this thread's
        for (const p of redo) out.set(here(start + bounds[p], bounds[p + 1] - bounds[p]), bounds[p] * d);
        return out.subarray(0, count * d);
      },
      readyWorkers,
      ranges: () => ({ ...counts }),
      async whenReady() {
        const deadline = performance.now() + 10_000;
        const settled = () =>
          workers.every((w, slot) => w === undefined || Atomics.load(F, slot * FLAG_WORDS + 2) === 1);
        while (!broken && !settled() && performance.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        return readyWorkers();
      },
      close() {
        broken = true;
        for (let slot = 0; slot < nWorkers; slot++) {
          Atomics.store(F, slot * FLAG_WORDS, -1);
          Atomics.notify(F, slot * FLAG_WORDS);
        }
      },
    };
  } catch (e) {
    return `synthetic worker threads could not start: ${e instanceof Error ? e.message : String(e)}`;
  }
}
