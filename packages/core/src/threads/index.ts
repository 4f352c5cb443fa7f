/**
 * `@dictlearn/core/threads`: worker threads that take numbered jobs through shared control words.
 * Node only (it imports `node:worker_threads`): load it where workers exist, e.g. with
 * `await import(…)` behind a Node check. backend-cpu's kernel pool and buffer's synthetic rows
 * run on it.
 *
 * Each worker has a control slot of five int32 words (the job's sequence number, the last one
 * done, ready, failed, the last one claimed) and `argWords` float64 argument words. The caller
 * writes a job's arguments, {@link JobWorkers.start}s it (the number goes up and the worker
 * wakes), does its own share meanwhile, then either {@link JobWorkers.take}s the job back, when
 * the worker has not claimed it yet, and runs it itself, or {@link JobWorkers.wait}s: a short
 * spin, then `Atomics.wait`. The worker runs {@link jobLoopSource}: it waits for a new number,
 * claims the job (or leaves it, taken back), takes the messages posted before it, runs the job,
 * records whether it threw and wakes the caller. A negative number ends it.
 *
 * Taking jobs back matters where the threads fill the cores: a worker that another thread (the
 * runtime's own, or another process) keeps off its core for a scheduler slice would otherwise
 * hold the caller for that long, every time.
 *
 * Workers are `unref`'d: they never keep the process alive, and they end with it.
 *
 * @packageDocumentation
 */
import { Worker } from 'node:worker_threads';

/** Int32 words of a worker's control slot: sequence, done, ready, failed, claimed. */
const FLAG_WORDS = 5;

/**
 * Spins until `done()` or `ms` have passed. Self-contained: the workers run its source. (A thread
 * that stopped spinning once descheduled, to leave the cores to others, then waits for the
 * scheduler at each hand-over: on a loaded machine split products took 1.4–8 ms, not 0.6.)
 */
export function spin(done: () => boolean, ms: number): void {
  const start = performance.now();
  // the clock read every 64 turns: it costs more than a look at the flag
  for (let i = 1; !done(); i++) if ((i & 63) === 0 && performance.now() - start > ms) return;
}

/**
 * A worker's loop (CommonJS, run with `eval`) around `setup`: code that defines
 * `onMessage(message)` (called with each message posted to the workers before a job) and
 * `run(a)` (runs the job whose arguments are `A[a …]`, and returns how many ms to spin for the
 * next job before sleeping, or nothing). In scope for it: `workerData` (the pool's data, plus
 * `flags`, `args`, `slot`, `argWords`), `require`, `A` (the argument words, float64) and `spin`.
 */
export function jobLoopSource(setup: string): string {
  return `
const { workerData, parentPort, receiveMessageOnPort } = require('node:worker_threads');
const F = new Int32Array(workerData.flags);
const A = new Float64Array(workerData.args);
const spin = ${spin.toString()};
${setup}
const b = workerData.slot * ${FLAG_WORDS};
const a = workerData.slot * workerData.argWords;
Atomics.store(F, b + 2, 1);
let seen = 0;
let spinMs = 0;
for (;;) {
  // a short spin first, when the last job asked for one: the next often follows within
  // microseconds, and waking a sleeping thread costs tens of them
  spin(() => Atomics.load(F, b) !== seen, spinMs);
  Atomics.wait(F, b, seen);
  const seq = Atomics.load(F, b);
  if (seq === seen) continue;
  if (seq < 0) break;
  seen = seq;
  // jobs of a slot come one at a time, so the last one was claimed as seq − 1; the caller may
  // have taken this one back (then there is nothing to do, and nothing to report)
  if (Atomics.compareExchange(F, b + 4, seq - 1, seq) !== seq - 1) continue;
  try {
    for (let m; (m = receiveMessageOnPort(parentPort)); ) onMessage(m.message);
    spinMs = run(a) || 0;
    F[b + 3] = 0;
  } catch (e) {
    F[b + 3] = 1;
  }
  Atomics.store(F, b + 1, seq);
  Atomics.notify(F, b + 1);
}
`;
}

/** What {@link startJobWorkers} needs. */
export interface JobWorkersOptions {
  /** How many workers. */
  count: number;
  /** The worker's set-up (see {@link jobLoopSource}). */
  setup: string;
  /** Float64 argument words per worker. */
  argWords: number;
  /** Given to every worker as `workerData` (structured-cloned: numbers, buffers, a WebAssembly.Module…). */
  data?: Record<string, unknown>;
}

/** Workers started by {@link startJobWorkers}. */
export interface JobWorkers {
  readonly count: number;
  /** The argument words: worker `slot`'s are `args[slot · argWords …]`. */
  readonly args: Float64Array;
  /** Whether worker `slot` takes jobs now (started, not gone, the pool not closed or timed out). */
  ready(slot: number): boolean;
  /** How many workers take jobs now. */
  readyCount(): number;
  /** Starts the job whose arguments the caller wrote at worker `slot`'s words: its number, for {@link wait}. */
  start(slot: number): number;
  /**
   * Takes job `seq` of worker `slot` back where the worker has not claimed it yet: then the
   * caller runs it (and does not wait for it); false where the worker has it.
   */
  take(slot: number, seq: number): boolean;
  /**
   * Waits for job `seq` of worker `slot`, spinning `spinMs` first: `'done'`, `'failed'` (it threw)
   * or `'timed-out'` (after `timeoutMs`; no worker takes jobs after that).
   */
  wait(slot: number, seq: number, spinMs: number, timeoutMs: number): 'done' | 'failed' | 'timed-out';
  /** Posts a message to every worker still there: each takes it before its next job. */
  post(message: unknown): void;
  /** Resolves, with {@link readyCount}, once every worker is ready or gone (or after `timeoutMs`). */
  whenReady(timeoutMs?: number): Promise<number>;
  /** Ends the workers; they take no more jobs. */
  close(): void;
}

/** Starts `count` workers running {@link jobLoopSource}(`setup`). Throws where workers cannot start. */
export function startJobWorkers({ count, setup, argWords, data = {} }: JobWorkersOptions): JobWorkers {
  const flags = new SharedArrayBuffer(4 * FLAG_WORDS * count);
  const args = new SharedArrayBuffer(8 * argWords * count);
  const F = new Int32Array(flags);
  const source = jobLoopSource(setup);
  const workers: (Worker | undefined)[] = [];
  const seqs = new Array<number>(count).fill(0);
  let broken = false;
  for (let slot = 0; slot < count; slot++) {
    const w = new Worker(source, { eval: true, workerData: { ...data, flags, args, slot, argWords } });
    w.unref();
    // A worker that fails or exits takes no more jobs (its flag says not ready).
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
  const readyCount = () => {
    let n = 0;
    for (let slot = 0; slot < count; slot++) if (ready(slot)) n++;
    return n;
  };
  return {
    count,
    args: new Float64Array(args),
    ready,
    readyCount,
    start(slot) {
      const seq = ++seqs[slot];
      Atomics.store(F, slot * FLAG_WORDS, seq);
      Atomics.notify(F, slot * FLAG_WORDS);
      return seq;
    },
    take(slot, seq) {
      return Atomics.compareExchange(F, slot * FLAG_WORDS + 4, seq - 1, seq) === seq - 1;
    },
    wait(slot, seq, spinMs, timeoutMs) {
      const b = slot * FLAG_WORDS;
      spin(() => Atomics.load(F, b + 1) === seq, spinMs);
      for (let v = Atomics.load(F, b + 1); v !== seq; v = Atomics.load(F, b + 1)) {
        if (Atomics.wait(F, b + 1, v, timeoutMs) === 'timed-out') {
          broken = true;
          return 'timed-out';
        }
      }
      return F[b + 3] === 0 ? 'done' : 'failed';
    },
    post(message) {
      for (const w of workers) w?.postMessage(message);
    },
    async whenReady(timeoutMs = 10_000) {
      const deadline = performance.now() + timeoutMs;
      const settled = () =>
        workers.every((w, slot) => w === undefined || Atomics.load(F, slot * FLAG_WORDS + 2) === 1);
      while (!broken && !settled() && performance.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      return readyCount();
    },
    close() {
      broken = true;
      for (let slot = 0; slot < count; slot++) {
        Atomics.store(F, slot * FLAG_WORDS, -1);
        Atomics.notify(F, slot * FLAG_WORDS);
      }
    },
  };
}
