/**
 * onnxruntime-node in a worker thread, behind the {@link OrtModule} interface.
 *
 * onnxruntime-node's `session.run` returns a promise but runs the graph synchronously on the
 * calling thread (its backend defers the native call with `setImmediate`), so a forward pass
 * started "ahead" on the main thread still blocks the SAE steps. This runtime creates the sessions
 * in a worker thread instead: `run` posts the feeds there and the main thread keeps stepping while
 * the model runs.
 *
 * @module
 */
import { DictlearnError } from '@dictlearn/core';
import { loadNodeRuntime, type OrtModule, type OrtSession, type OrtTensor } from './runtime.js';

/** The worker's side, a CommonJS script (eval'd, so no separate file has to be found or bundled). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const ort = require(workerData.ortPath);
const sessions = new Map();
parentPort.on('message', async (m) => {
  try {
    let value = null;
    const transfer = new Set();
    if (m.op === 'create') {
      const s = await ort.InferenceSession.create(m.bytes, m.options);
      sessions.set(m.id, s);
      value = { inputNames: s.inputNames, outputNames: s.outputNames };
    } else if (m.op === 'run') {
      const s = sessions.get(m.session);
      if (!s) throw new Error('the session was released');
      const feeds = {};
      for (const [k, t] of Object.entries(m.feeds)) feeds[k] = new ort.Tensor(t.type, t.data, t.dims);
      const t0 = performance.now();
      const out = await s.run(feeds, m.fetches);
      value = { seconds: (performance.now() - t0) / 1000, outputs: {} };
      for (const [k, t] of Object.entries(out)) {
        value.outputs[k] = { type: t.type, dims: t.dims, data: t.data };
        if (t.data && t.data.buffer instanceof ArrayBuffer) transfer.add(t.data.buffer);
      }
    } else if (m.op === 'release') {
      const s = sessions.get(m.session);
      sessions.delete(m.session);
      if (s) await s.release();
    }
    try {
      parentPort.postMessage({ id: m.id, value }, [...transfer]);
    } catch {
      // A buffer that cannot be transferred (native memory) is copied instead.
      parentPort.postMessage({ id: m.id, value });
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: e && e.message ? e.message : String(e) });
  }
});
`;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Seconds the worker spent on the run that made an output, by the output's buffer. */
const RUN_SECONDS = new WeakMap<ArrayBufferLike, number>();

/**
 * The seconds the worker thread spent running the graph for the run that returned `output` (an
 * output's values, as {@link workerRuntime}'s `run` gave them), or undefined for another array.
 * Timed in the worker, so it excludes queueing and the main thread's delay in seeing the result.
 */
export function workerRunSeconds(output: ArrayBufferView): number | undefined {
  return RUN_SECONDS.get(output.buffer);
}

/** A tensor handed to the worker (plain data; the worker builds the onnxruntime tensor). */
class PlainTensor implements OrtTensor {
  constructor(
    readonly type: string,
    readonly data: unknown,
    readonly dims: readonly number[],
  ) {}
}

type WorkerLike = {
  postMessage(m: unknown, transfer?: readonly ArrayBuffer[]): void;
  on(event: string, f: (v: never) => void): void;
  ref(): void;
  unref(): void;
  terminate(): Promise<number>;
};

/**
 * An {@link OrtModule} whose sessions live in one Node worker thread running onnxruntime-node
 * (pass it as `runtime` to `LanguageModel.load` or `ModelSource.open`). Runs are queued in order in
 * that thread; errors come back with onnxruntime's message. The thread holds the process open only
 * while a call is pending, and ends when its last session is released (a later session starts a
 * new one). Node only.
 */
export function workerRuntime(): OrtModule {
  let worker: Promise<WorkerLike> | undefined;
  let nextId = 0;
  let sessions = 0;
  const pending = new Map<number, Pending>();

  const failAll = (e: unknown): void => {
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };

  const spawn = async (): Promise<WorkerLike> => {
    await loadNodeRuntime(); // the usual clear error when onnxruntime-node is missing
    // Variable specifiers keep browser bundlers from following these Node-only imports.
    const threads = 'node:worker_threads';
    const moduleName = 'node:module';
    const { Worker } = (await import(/* @vite-ignore */ threads)) as typeof import('node:worker_threads');
    const { createRequire } = (await import(/* @vite-ignore */ moduleName)) as typeof import('node:module');
    // Resolved here, where the main thread's import of onnxruntime-node resolves (pnpm keeps it
    // beside this package, not where the process started).
    const ortPath = createRequire(import.meta.url).resolve('onnxruntime-node');
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { ortPath } }) as unknown as WorkerLike;
    w.unref();
    w.on('message', (m: { id: number; value?: unknown; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (pending.size === 0) w.unref();
      if (!p) return;
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.value);
    });
    w.on('error', (e: unknown) => {
      worker = undefined;
      failAll(e);
    });
    w.on('exit', (code: number) => {
      worker = undefined;
      failAll(new Error(`the onnxruntime worker thread exited (code ${code})`));
    });
    return w;
  };

  // The id is taken before any await, so calls reach the worker in the order they were made.
  const call = async (message: Record<string, unknown>, id = nextId++): Promise<unknown> => {
    worker ??= spawn().catch((e: unknown) => {
      worker = undefined;
      throw e;
    });
    const w = await worker;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      // Referenced while a call waits, so a run in flight is not cut short by the process exiting.
      w.ref();
      w.postMessage({ ...message, id });
    });
  };

  const release = async (id: number): Promise<void> => {
    // A worker that already ended took its sessions with it.
    if (worker) await call({ op: 'release', session: id });
    sessions--;
    if (sessions === 0 && pending.size === 0 && worker) {
      const w = await worker;
      worker = undefined;
      await w.terminate();
    }
  };

  return {
    InferenceSession: {
      async create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> {
        if (!(model instanceof Uint8Array)) {
          throw new DictlearnError('workerRuntime', 'InferenceSession.create expects the model bytes');
        }
        const id = nextId++; // the create call's id names the session in the worker
        sessions++;
        let names: { inputNames: string[]; outputNames: string[] };
        try {
          names = (await call({ op: 'create', bytes: model, options: options ?? {} }, id)) as typeof names;
        } catch (e) {
          sessions--;
          throw e;
        }
        let released = false;
        return {
          inputNames: names.inputNames,
          outputNames: names.outputNames,
          async run(feeds: Record<string, OrtTensor>, fetches?: readonly string[]) {
            if (released) throw new Error('the session was released');
            const plain: Record<string, { type: string; data: unknown; dims: readonly number[] }> = {};
            for (const [k, t] of Object.entries(feeds))
              plain[k] = { type: t.type, data: t.data, dims: t.dims };
            const { outputs, seconds } = (await call({
              op: 'run',
              session: id,
              feeds: plain,
              fetches: fetches ? [...fetches] : undefined,
            })) as {
              outputs: Record<string, { type: string; data: unknown; dims: number[] }>;
              seconds: number;
            };
            const result: Record<string, OrtTensor> = {};
            for (const [k, t] of Object.entries(outputs)) {
              if (ArrayBuffer.isView(t.data)) RUN_SECONDS.set(t.data.buffer, seconds);
              result[k] = new PlainTensor(t.type, t.data, t.dims);
            }
            return result;
          },
          async release() {
            if (released) return;
            released = true;
            await release(id);
          },
        };
      },
    },
    Tensor: PlainTensor as unknown as OrtModule['Tensor'],
  };
}
