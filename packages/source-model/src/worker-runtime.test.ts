// onnxruntime-node in a worker thread: the same values and errors as on the main thread, and the
// main thread free while a pass runs.
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES, maxAbsDiff } from './fixtures.js';
import { LanguageModel } from './model.js';
import { workerRunSeconds, workerRuntime } from './worker-runtime.js';

const MODEL = `${FIXTURES}gpt-neox/model.onnx`;
const HOOK = 'gpt_neox.layers.1';
const loaded: LanguageModel[] = [];

afterAll(async () => {
  for (const m of loaded) await m.release();
});

async function both(): Promise<[LanguageModel, LanguageModel]> {
  const main = await LanguageModel.load(MODEL);
  const worker = await LanguageModel.load(MODEL, { runtime: workerRuntime() });
  loaded.push(main, worker);
  return [main, worker];
}

function tokens(n: number, seq: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n * seq }, (_, i) => (i * 7919) % vocab);
}

describe('workerRuntime', () => {
  it("gives the main thread's hook values and logits, and leaves the main thread free during a pass", async () => {
    const [main, worker] = await both();
    const vocab = main.vocabSize ?? 100;
    const t = tokens(32, 128, vocab);
    const hooks = [main.resolve(HOOK)];
    const a = await main.forward(t, 32, 128, hooks, { logits: true });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t0 = performance.now();
    const b = await worker.forward(t, 32, 128, [worker.resolve(HOOK)], { logits: true });
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(maxAbsDiff(b.hooks.get(HOOK)?.data as Float32Array, a.hooks.get(HOOK)?.data as Float32Array)).toBe(
      0,
    );
    expect(maxAbsDiff(b.logits as Float32Array, a.logits as Float32Array)).toBe(0);
    // The worker timed the run itself; outputs of the main thread's runtime carry no such time.
    const seconds = workerRunSeconds(b.hooks.get(HOOK)?.data as Float32Array) as number;
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(ms / 1000);
    expect(workerRunSeconds(a.hooks.get(HOOK)?.data as Float32Array)).toBeUndefined();
    // A 1 ms timer kept firing through the pass (on the main thread it fires at most once).
    expect(ticks).toBeGreaterThan(Math.min(10, ms / 20));
  });

  it("passes onnxruntime's error message through, and serves runs again after an error and after release", async () => {
    const [main, worker] = await both();
    const vocab = main.vocabSize ?? 100;
    const bad = Int32Array.of(0, vocab + 5);
    const hooks = [main.resolve(HOOK)];
    const mainError = await main.forward(bad, 1, 2, hooks).then(
      () => 'no error',
      (e: Error) => e.message,
    );
    expect(mainError).toMatch(/onnxruntime failed to run the model/);
    await expect(worker.forward(bad, 1, 2, hooks)).rejects.toThrow(mainError);
    // The worker still serves runs after an error.
    const ok = await worker.forward(Int32Array.of(0, 1), 1, 2, hooks);
    expect(ok.hooks.get(HOOK)?.data.length).toBe(2 * 64);
    await worker.release();
    const again = await worker.forward(Int32Array.of(0, 1), 1, 2, hooks);
    expect(again.hooks.get(HOOK)?.data.length).toBe(2 * 64);
  });
});
