import '@dictlearn/backend-cpu/register';
import { ActivationBuffer } from '@dictlearn/buffer';
import type { Tensor } from '@dictlearn/core';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { FIXTURES, MODELS, maxAbsDiff, readNpy, reference } from './fixtures.js';
import { LanguageModel } from './model.js';
import { documentOrder, type ModelSourcePosition } from './packing.js';
import { ModelSource, type ModelSourceOptions } from './source.js';

const TOL = 1e-4;
const HELDOUT = `${FIXTURES}heldout.txt`;
const models = new Map<string, LanguageModel>();

async function model(name: string): Promise<LanguageModel> {
  let m = models.get(name);
  if (!m) {
    m = await LanguageModel.load(`${FIXTURES}${name}/model.onnx`);
    models.set(name, m);
  }
  return m;
}

afterAll(async () => {
  for (const m of models.values()) await m.release();
});

async function open(name: string, options: Partial<ModelSourceOptions>): Promise<ModelSource> {
  return ModelSource.open({
    model: await model(name),
    tokenizer: `${FIXTURES}${name}/tokenizer.json`,
    text: HELDOUT,
    hooks: reference(name).hooks[0].hook,
    contextLength: 32,
    forwardBatch: 3,
    ...options,
  });
}

/** All rows of the first `rows` rows a batch stream yields, and the batches' sizes. */
async function take(batches: AsyncIterable<Tensor>, rows: number, dim: number): Promise<Float32Array> {
  const out = new Float32Array(rows * dim);
  let n = 0;
  for await (const b of batches) {
    const data = (await b.data()) as Float32Array;
    const k = Math.min(b.shape[0], rows - n);
    out.set(data.subarray(0, k * dim), n * dim);
    n += k;
    b.dispose();
    if (n >= rows) break;
  }
  expect(n).toBe(rows);
  return out;
}

describe.each(MODELS)('%s: ModelSource end to end', (name) => {
  const ref = reference(name);
  const seq = ref.contexts[0].length;
  const count = ref.contexts.length;

  it("packs the held-out text into the script's reference contexts", async () => {
    const source = await open(name, {});
    const got: number[][] = [];
    for await (const c of source.contexts()) {
      got.push([...c.tokens]);
      if (got.length === count) break;
    }
    expect(got).toEqual(ref.contexts);
    expect(source.bos).toBe(0);
  });

  it("yields torch's rows at every hook from one forward pass per group (split)", async () => {
    const source = await open(name, { hooks: ref.hooks.map((h) => h.hook) });
    expect(() => source.batches({ batchSize: 8 })).toThrow(/split\(\)/);
    const parts = source.split();
    // Interleave the hook sources, as trainers stepping in turn would.
    const iterators = parts.map((p) => p.batches({ batchSize: 40 })[Symbol.asyncIterator]());
    const rows = parts.map((p) => ({ data: new Float32Array(count * seq * p.dim), n: 0 }));
    while (rows.some((r) => r.n < count * seq)) {
      for (let i = 0; i < parts.length; i++) {
        const r = rows[i];
        if (r.n >= count * seq) continue;
        const b = (await iterators[i].next()).value as Tensor;
        const data = (await b.data()) as Float32Array;
        const k = Math.min(b.shape[0], count * seq - r.n);
        r.data.set(data.subarray(0, k * parts[i].dim), r.n * parts[i].dim);
        r.n += k;
        b.dispose();
      }
    }
    for (const it of iterators) await it.return?.();
    ref.hooks.forEach((h, i) => {
      expect(parts[i].dim).toBe(h.dim);
      const want = readNpy(`${FIXTURES}${name}/${h.file}`).data;
      expect(maxAbsDiff(rows[i].data, want), h.hook).toBeLessThan(TOL);
    });
  });

  it('resumes from a saved position with the same next rows, whatever forwardBatch and batchSize', async () => {
    const source = await open(name, {});
    const dim = source.dim;
    const batches: Float32Array[] = [];
    const positions: ModelSourcePosition[] = [];
    for await (const b of source.batches({ batchSize: 45 })) {
      batches.push((await b.data()) as Float32Array);
      positions.push(JSON.parse(JSON.stringify(source.position)));
      b.dispose();
      if (batches.length === 6) break;
    }
    // Position 2 lies inside a context (45·3 = 135 rows = 4 contexts and 7 rows).
    expect(positions[2]).toMatchObject({ contexts: 4, row: 7 });
    const resumed = await open(name, { start: positions[2], forwardBatch: 5 });
    const next = await take(resumed.batches({ batchSize: 45 }), 3 * 45, dim);
    const want = new Float32Array(3 * 45 * dim);
    for (let i = 0; i < 3; i++) want.set(batches[3 + i], i * 45 * dim);
    expect(maxAbsDiff(next, want)).toBe(0);
    expect(resumed.position).toEqual(positions[5]);
    // The start option and batches({ start }) agree.
    const again = await open(name, {});
    const viaBatches = await take(again.batches({ batchSize: 20, start: positions[2] }), 45, dim);
    expect(maxAbsDiff(viaBatches, batches[3])).toBe(0);
  });

  it('resumes split hook sources from their own positions', async () => {
    const [h0, h1] = ref.hooks.map((h) => h.hook);
    const single = await open(name, { hooks: h1 });
    const batches: Float32Array[] = [];
    let saved: ModelSourcePosition | undefined;
    for await (const b of single.batches({ batchSize: 50 })) {
      batches.push((await b.data()) as Float32Array);
      b.dispose();
      if (batches.length === 2) saved = single.position;
      if (batches.length === 3) break;
    }
    const both = await open(name, { hooks: [h0, h1] });
    const [s0, s1] = both.split({ start: { [h1]: saved as ModelSourcePosition } });
    const first0 = await take(s0.batches({ batchSize: 50 }), 50, s0.dim);
    const next1 = await take(s1.batches({ batchSize: 50 }), 50, s1.dim);
    expect(maxAbsDiff(next1, batches[2])).toBe(0);
    const want0 = readNpy(`${FIXTURES}${name}/${ref.hooks[0].file}`).data.subarray(0, 50 * s0.dim);
    expect(maxAbsDiff(first0, want0)).toBeLessThan(TOL);
  });

  it('drops exactly the BOS rows when asked (dictionary_learning remove_bos)', async () => {
    const source = await open(name, { dropBos: true });
    const tokens = ref.contexts.flat();
    const keptIdx = tokens.flatMap((t, i) => (t === 0 ? [] : [i]));
    expect(keptIdx.length).toBeLessThan(tokens.length - count); // separators inside contexts too
    const h = ref.hooks[0];
    const all = readNpy(`${FIXTURES}${name}/${h.file}`).data;
    const want = new Float32Array(keptIdx.length * h.dim);
    keptIdx.forEach((i, r) => {
      want.set(all.subarray(i * h.dim, (i + 1) * h.dim), r * h.dim);
    });
    const got = await take(source.batches({ batchSize: 64 }), keptIdx.length, h.dim);
    expect(maxAbsDiff(got, want)).toBeLessThan(TOL);
  });

  it('drops tokens whose norm exceeds k × the median norm of their context', async () => {
    const k = 1.2;
    const source = await open(name, { outlierMultiple: k });
    const h = ref.hooks[0];
    const all = readNpy(`${FIXTURES}${name}/${h.file}`).data;
    const want: number[] = [];
    for (let c = 0; c < count; c++) {
      const norms = Array.from({ length: seq }, (_, t) => {
        const row = all.subarray((c * seq + t) * h.dim, (c * seq + t + 1) * h.dim);
        return Math.sqrt(row.reduce((s, v) => s + v * v, 0));
      });
      const median = [...norms].sort((a, b) => a - b)[(seq - 1) >> 1]; // torch.median: the lower one
      norms.forEach((n, t) => {
        if (n <= k * median) want.push(...all.subarray((c * seq + t) * h.dim, (c * seq + t + 1) * h.dim));
      });
    }
    const kept = want.length / h.dim;
    expect(kept).toBeLessThan(count * seq);
    expect(kept).toBeGreaterThan(count * seq * 0.5);
    const got = await take(source.batches({ batchSize: 50 }), kept, h.dim);
    expect(maxAbsDiff(got, want)).toBeLessThan(TOL);
  });
});

describe('ModelSource text handling and order', () => {
  it('reads JSONL and plain text into the same contexts', async () => {
    const a = await open('gpt2', { text: `${FIXTURES}corpus.txt` });
    const b = await open('gpt2', { text: `${FIXTURES}corpus.jsonl` });
    expect(a.documents).toBe(800);
    expect(b.documents).toBe(200);
    const first = async (s: ModelSource) => {
      const out: number[][] = [];
      for await (const c of s.contexts()) {
        out.push([...c.tokens]);
        if (out.length === 40) break;
      }
      return out;
    };
    expect(await first(b)).toEqual(await first(a));
  });

  it('shuffles documents by seed, the same seed giving the same order', () => {
    const p = documentOrder(50, 3, 0);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect([...documentOrder(50, 3, 0)]).toEqual([...p]);
    expect([...documentOrder(50, 4, 0)]).not.toEqual([...p]);
    expect([...documentOrder(50, 3, 1)]).not.toEqual([...p]);
  });

  it('repeats the documents for epochs, in a new order each epoch when shuffled', async () => {
    const collect = async (s: ModelSource) => {
      const out: number[][] = [];
      for await (const c of s.contexts()) out.push([...c.tokens]);
      return out;
    };
    const once = await collect(await open('gpt2', {}));
    const twice = await collect(await open('gpt2', { epochs: 2 }));
    expect(twice.length).toBeGreaterThanOrEqual(2 * once.length);
    expect(twice.length).toBeLessThanOrEqual(2 * once.length + 1);
    const s1 = await collect(await open('gpt2', { shuffle: true, seed: 1 }));
    const s1again = await collect(await open('gpt2', { shuffle: true, seed: 1 }));
    const s2 = await collect(await open('gpt2', { shuffle: true, seed: 2 }));
    expect(s1again).toEqual(s1);
    expect(s2).not.toEqual(s1);
    expect(s1[0]).not.toEqual(once[0]);
  });

  it('feeds an ActivationBuffer', async () => {
    const source = await open('gpt-neox', { hooks: 'gpt_neox.layers.1' });
    const buffer = new ActivationBuffer(source, { capacity: 256, batchSize: 64, sourceBatchSize: 100 });
    const x = await buffer.next();
    expect(x.shape).toEqual([64, 64]);
    x.dispose();
    await buffer.close();
  });
});

describe('ModelSource prefetch (forward passes run ahead of the reader)', () => {
  const name = 'gpt-neox';
  const hook = 'gpt_neox.layers.1';

  /** The first `count` batches of `batchSize` rows, with the position after each. */
  async function read(source: ModelSource, batchSize: number, count: number) {
    const data: Float32Array[] = [];
    const positions: ModelSourcePosition[] = [];
    for await (const b of source.batches({ batchSize })) {
      data.push((await b.data()) as Float32Array);
      positions.push(source.position);
      b.dispose();
      if (data.length === count) break;
    }
    return { data, positions };
  }

  it('gives the same rows and positions at depth 0, 1 and 3, on the main thread and in the worker thread', async () => {
    // Depth 0 on the main thread is the behaviour before prefetch: the reference.
    const base = await read(await open(name, { hooks: hook, prefetch: 0 }), 45, 12);
    // Its first 128 rows (4 contexts of 32, forward passes of 3) are torch's.
    const first = new Float32Array(3 * 45 * 64);
    base.data.slice(0, 3).forEach((d, i) => {
      first.set(d, i * 45 * 64);
    });
    const torch = readNpy(`${FIXTURES}${name}/${hook}.npy`).data;
    expect(torch.length).toBe(128 * 64);
    expect(maxAbsDiff(first.subarray(0, 128 * 64), torch)).toBeLessThan(TOL);
    for (const depth of [1, 3]) {
      const main = await read(await open(name, { hooks: hook, prefetch: depth }), 45, 12);
      // A model path (no runtime given) runs onnxruntime-node in a worker thread.
      const worker = await open(name, {
        hooks: hook,
        prefetch: depth,
        model: `${FIXTURES}${name}/model.onnx`,
      });
      const inWorker = await read(worker, 45, 12);
      await worker.release();
      for (const got of [main, inWorker]) {
        expect(got.positions).toEqual(base.positions);
        got.data.forEach((d, i) => {
          expect(maxAbsDiff(d, base.data[i]), `depth ${depth} batch ${i}`).toBe(0);
        });
      }
    }
  });

  it('keeps at most `prefetch` passes ahead, and a pass run ahead does not move the saved position', async () => {
    const m = await model(name);
    const forward = vi.spyOn(m, 'forward');
    const source = await open(name, { hooks: hook, prefetch: 2 });
    const probes = forward.mock.calls.length;
    const it = source.batches({ batchSize: 10 })[Symbol.asyncIterator]();
    (await it.next()).value.dispose();
    // The pass being read and two behind it; no more.
    expect(forward.mock.calls.length - probes).toBe(3);
    (await it.next()).value.dispose();
    expect(forward.mock.calls.length - probes).toBe(3);
    // 20 rows read of the first pass (3 contexts of 32): the position says so, not the passes ahead.
    expect(source.position).toMatchObject({ contexts: 0, row: 20 });
    const saved = source.position;
    await it.return?.();
    // Stopping waits for the passes that were running: every one started has finished.
    expect(source.stats.forwardPasses).toBe(3);
    forward.mockRestore();
    // A resume from that position continues with the rows an uninterrupted reader gets next.
    const whole = await read(await open(name, { hooks: hook, prefetch: 0 }), 10, 4);
    const resumed = await read(await open(name, { hooks: hook, start: saved }), 10, 2);
    expect(maxAbsDiff(resumed.data[0], whole.data[2])).toBe(0);
    expect(maxAbsDiff(resumed.data[1], whole.data[3])).toBe(0);
  });

  it('split readers that all stop close the shared passes: none is left running', async () => {
    const m = await model(name);
    const source = await open(name, { hooks: ['gpt_neox.layers.0', hook], prefetch: 2 });
    const forward = m.forward;
    let started = 0;
    let settled = 0;
    const spy = vi.spyOn(m, 'forward').mockImplementation((...a) => {
      started++;
      return forward.apply(m, a).finally(() => {
        settled++;
      });
    });
    try {
      const its = source.split().map((p) => p.batches({ batchSize: 10 })[Symbol.asyncIterator]());
      for (const it of its) ((await it.next()).value as Tensor).dispose();
      expect(started).toBe(3);
      for (const it of its) await it.return?.();
      expect(settled).toBe(started);
    } finally {
      spy.mockRestore();
    }
  });

  it('an error in a pass run ahead reaches the reader, with its message, only when the reader gets to it', async () => {
    const m = await model(name);
    const real = m.forward.bind(m);
    const source = await open(name, { hooks: hook, prefetch: 1, forwardBatch: 3 });
    let calls = 0;
    const forward = vi.spyOn(m, 'forward').mockImplementation(async (...args) => {
      // The second pass fails (after a real run, as onnxruntime would report it).
      if (++calls === 2) {
        await real(...args);
        throw new Error('onnxruntime: planted failure of pass 2');
      }
      return real(...args);
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const it = source.batches({ batchSize: 32 })[Symbol.asyncIterator]();
      // The first pass's 3 contexts of 32 rows all arrive although pass 2 has already failed.
      for (let i = 0; i < 3; i++) (await it.next()).value.dispose();
      await new Promise((r) => setTimeout(r, 20));
      await expect(it.next()).rejects.toThrow('onnxruntime: planted failure of pass 2');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      forward.mockRestore();
    }
  });

  it('refuses a negative or fractional prefetch, naming the option', async () => {
    await expect(open(name, { hooks: hook, prefetch: -1 })).rejects.toThrow(
      /option 'prefetch' must be a non-negative integer/,
    );
    await expect(open(name, { hooks: hook, prefetch: 1.5 })).rejects.toThrow(/option 'prefetch'/);
    await expect(open(name, { hooks: hook, intraOpThreads: 0 })).rejects.toThrow(/option 'intraOpThreads'/);
  });
});
