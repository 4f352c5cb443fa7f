import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  type ActivationSource,
  type BatchOptions,
  DictlearnError,
  memory,
  registerBackend,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ActivationBuffer, type ActivationOutput, type NestedActivationSource, takeFirst } from './buffer.js';
import { SyntheticSource } from './synthetic.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

/**
 * A finite source whose row r is [r, r + 0.25, r + 0.5, ...]: every row says where it came from.
 * `log` records the batch sizes asked for and whether the iterator was closed.
 */
class CountingSource implements ActivationSource {
  readonly name = 'counting';
  readonly log = { requested: [] as number[], closed: false, yielded: 0 };
  constructor(
    readonly rows: number,
    readonly dim = 3,
  ) {}
  async *batches(options: BatchOptions): AsyncGenerator<Tensor> {
    this.log.requested.push(options.batchSize);
    try {
      for (let start = 0; start < this.rows; start += options.batchSize) {
        const n = Math.min(options.batchSize, this.rows - start);
        const v = new Float32Array(n * this.dim);
        for (let r = 0; r < n; r++)
          for (let k = 0; k < this.dim; k++) v[r * this.dim + k] = start + r + k / 4;
        this.log.yielded += n;
        yield tensor(v, [n, this.dim], { backend: options.backend });
      }
    } finally {
      this.log.closed = true;
    }
  }
}

/** Row ids of a batch from a CountingSource, checking each row is intact. */
async function ids(t: Tensor): Promise<number[]> {
  const v = (await t.data()) as Float32Array;
  const d = t.shape[1];
  const out: number[] = [];
  for (let r = 0; r < t.shape[0]; r++) {
    const id = v[r * d];
    for (let k = 0; k < d; k++) expect(v[r * d + k]).toBe(id + k / 4);
    out.push(id);
  }
  t.dispose();
  return out;
}

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<DictlearnError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    return e as DictlearnError;
  }
  throw new Error('expected an error');
}

describe('ActivationBuffer', () => {
  it('yields every row of a finite source exactly once, then stops', async () => {
    const source = new CountingSource(1000);
    const buffer = new ActivationBuffer(source, {
      capacity: 256,
      batchSize: 64,
      sourceBatchSize: 100,
      seed: 1,
    });
    const seen: number[] = [];
    const sizes: number[] = [];
    for await (const batch of buffer) {
      sizes.push(batch.shape[0]);
      seen.push(...(await ids(batch)));
    }
    expect(seen.length).toBe(1000);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(sizes.slice(0, -1).every((s) => s === 64)).toBe(true);
    expect(sizes.at(-1)).toBe(1000 % 64);
    expect(source.log.requested).toEqual([100]);
    expect(buffer.stats).toMatchObject({ held: 0, rowsRead: 1000, rowsYielded: 1000, exhausted: true });
    expect(await buffer.tryNext()).toBeUndefined();
    expect((await errorOf(buffer.next())).message).toBe(
      "ActivationBuffer: source 'counting' is exhausted: all 1000 rows were yielded",
    );
  });

  it('refills when at most half full, up to capacity (DL semantics)', async () => {
    const buffer = new ActivationBuffer(new CountingSource(10_000), {
      capacity: 256,
      batchSize: 64,
      sourceBatchSize: 50,
    });
    const trace: [number, number][] = [];
    for (let b = 0; b < 6; b++) {
      (await buffer.next()).dispose();
      trace.push([buffer.stats.held, buffer.stats.refills]);
    }
    // fill to 256, take 64 → 192; 192 > 128: take → 128; 128 ≤ 128: refill to 256, take → 192 ...
    expect(trace).toEqual([
      [192, 1],
      [128, 1],
      [192, 2],
      [128, 2],
      [192, 3],
      [128, 3],
    ]);
    // rows read: 256 + 128 + 128, in source batches of 50 (the rest of a batch waits)
    expect(buffer.stats.rowsRead).toBe(550);
  });

  it('samples uniformly without replacement from what it holds', async () => {
    // the first batch comes from the first `capacity` rows; over many seeds each row is picked
    // with probability batchSize / capacity = 1/4
    const picks = new Float64Array(256);
    const seeds = 400;
    for (let seed = 0; seed < seeds; seed++) {
      const buffer = new ActivationBuffer(new CountingSource(10_000), { capacity: 256, batchSize: 64, seed });
      const batch = await ids(await buffer.next());
      expect(new Set(batch).size).toBe(64);
      for (const id of batch) {
        expect(id).toBeLessThan(256);
        picks[id]++;
      }
      await buffer.close();
    }
    // Binomial(400, 1/4): mean 100, sd 8.66; the extreme of 256 rows stays within 5 sd
    for (const c of picks) expect(Math.abs(c - 100)).toBeLessThan(5 * 8.66);
    // and the batch is shuffled, not a block of consecutive rows
    const buffer = new ActivationBuffer(new CountingSource(10_000), { capacity: 256, batchSize: 64 });
    const first = await ids(await buffer.next());
    expect(first).not.toEqual([...first].sort((a, b) => a - b));
  });

  it('is reproducible given the seed', async () => {
    const run = async (seed: number) => {
      const buffer = new ActivationBuffer(new CountingSource(2000), { capacity: 300, batchSize: 100, seed });
      const out: number[][] = [];
      for await (const b of buffer) out.push(await ids(b));
      return out;
    };
    const a = await run(7);
    expect(await run(7)).toEqual(a);
    expect(await run(8)).not.toEqual(a);
  });

  it('keeps the first tensor of tuple outputs (recursively) and disposes the rest', async () => {
    const before = memory().tensors;
    const nested: NestedActivationSource = {
      name: 'nested',
      dim: 2,
      async *batches(): AsyncGenerator<ActivationOutput> {
        for (let b = 0; b < 3; b++) {
          const hidden = tensor([b, b, b + 0.5, b + 0.5], [2, 2]);
          yield [[hidden, tensor([9])], tensor([1, 2, 3])];
        }
      },
    };
    const buffer = new ActivationBuffer(nested, { capacity: 6, batchSize: 6 });
    const batch = await buffer.next();
    const rows = (await batch.array()) as number[][];
    expect(rows.map((r) => r[0]).sort()).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
    batch.dispose();
    expect(await buffer.tryNext()).toBeUndefined();
    expect(memory().tensors).toBe(before);
  });

  it('flattens [batch, seq, d] outputs to rows', async () => {
    const source: ActivationSource = {
      name: 'seq',
      dim: 2,
      async *batches() {
        yield tensor(
          Float32Array.from({ length: 12 }, (_, i) => i),
          [2, 3, 2],
        );
      },
    };
    const buffer = new ActivationBuffer(source, { capacity: 8, batchSize: 6 });
    const rows = (await (await buffer.next()).array()) as number[][];
    expect(rows.map((r) => r[0]).sort((a, b) => a - b)).toEqual([0, 2, 4, 6, 8, 10]);
  });

  it('leaving a for-await loop closes the buffer and the source', async () => {
    const source = new CountingSource(1_000_000);
    const buffer = new ActivationBuffer(source, { capacity: 1000, batchSize: 10 });
    for await (const batch of buffer) {
      batch.dispose();
      break;
    }
    expect(source.log.closed).toBe(true);
    expect((await errorOf(buffer.next())).message).toBe('ActivationBuffer: the buffer was closed');
    expect(source.log.yielded).toBeLessThanOrEqual(1000 + 1000); // memory stayed bounded
  });

  it('serialises concurrent next() calls', async () => {
    const buffer = new ActivationBuffer(new CountingSource(500), { capacity: 100, batchSize: 10 });
    const batches = await Promise.all(Array.from({ length: 50 }, () => buffer.next()));
    const all = (await Promise.all(batches.map(ids))).flat();
    expect(new Set(all).size).toBe(500);
  });

  it('creates batches on the requested backend', async () => {
    registerBackend(createCpuBackend({ name: 'cpu-b', fastMatmul: false }));
    const buffer = new ActivationBuffer(new CountingSource(20), {
      capacity: 20,
      batchSize: 5,
      backend: 'cpu-b',
    });
    // not started yet: a clear error, and no rows are lost
    expect((await errorOf(buffer.next())).message).toMatch(/backend 'cpu-b' is not started/);
    expect(buffer.stats.held).toBe(20);
    await useBackend('cpu-b');
    await useBackend('cpu');
    const got: number[] = [];
    for await (const t of buffer) {
      expect(t.backend).toBe('cpu-b');
      got.push(...(await ids(t)));
    }
    expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('feeds synthetic data: every yielded row is one of the source’s samples', async () => {
    const source = new SyntheticSource({ dim: 16, numFeatures: 64, seed: 3 });
    const buffer = new ActivationBuffer(source, {
      capacity: 512,
      batchSize: 128,
      sourceBatchSize: 256,
      seed: 2,
    });
    const samples = source.sampleHost(0, 1024);
    const key = (v: Float32Array, r: number) => Array.from(v.subarray(r * 16, (r + 1) * 16)).join(',');
    const index = new Map<string, number>();
    for (let r = 0; r < 1024; r++) index.set(key(samples, r), r);
    const used = new Set<number>();
    for (let b = 0; b < 6; b++) {
      const t = await buffer.next();
      const v = (await t.data()) as Float32Array;
      for (let r = 0; r < 128; r++) {
        const id = index.get(key(v, r));
        expect(id).toBeDefined();
        expect(used.has(id!)).toBe(false);
        used.add(id!);
      }
      t.dispose();
    }
    await buffer.close();
  });
});

describe('ActivationBuffer: bad input', () => {
  it('a batch wider or narrower than the source’s dim', async () => {
    const liar: ActivationSource = {
      name: 'liar',
      dim: 3,
      async *batches() {
        yield tensor(new Float32Array(20), [4, 5]);
      },
    };
    const before = memory().tensors;
    expect((await errorOf(new ActivationBuffer(liar, { capacity: 8, batchSize: 4 }).next())).message).toBe(
      "ActivationBuffer: source 'liar' yielded a batch of shape [4, 5]; expected [rows, 3] (the source's dim)",
    );
    expect(memory().tensors).toBe(before);
  });

  it('an int32 batch', async () => {
    const ints: ActivationSource = {
      name: 'ints',
      dim: 2,
      async *batches() {
        yield tensor(new Int32Array(4), [2, 2]);
      },
    };
    expect((await errorOf(new ActivationBuffer(ints, { capacity: 8, batchSize: 4 }).next())).message).toBe(
      "ActivationBuffer: source 'ints' yielded a int32 batch; expected float32 activations",
    );
  });

  it('options', async () => {
    const s = new CountingSource(10);
    expect((await errorOf(() => new ActivationBuffer(s, { capacity: 10, batchSize: 11 }))).message).toBe(
      'ActivationBuffer: batchSize 11 is larger than capacity 10; a batch must fit in the reservoir',
    );
    expect((await errorOf(() => new ActivationBuffer(s, { batchSize: 0 }))).message).toBe(
      "ActivationBuffer: option 'batchSize' must be a positive integer, got 0",
    );
    expect((await errorOf(() => new ActivationBuffer(s, { capacity: 1.5 }))).message).toBe(
      "ActivationBuffer: option 'capacity' must be a positive integer, got 1.5",
    );
    expect((await errorOf(() => new ActivationBuffer(s, { seed: -2 }))).message).toBe(
      "ActivationBuffer: option 'seed' must be a non-negative safe integer, got -2",
    );
    expect(
      (await errorOf(() => new ActivationBuffer({ name: 'x', dim: 0, batches: s.batches }))).message,
    ).toBe("ActivationBuffer: source 'x' has dim 0; expected a positive integer");
    expect((await errorOf(() => new ActivationBuffer({} as ActivationSource))).message).toBe(
      'ActivationBuffer: source must be an ActivationSource (with a batches() method)',
    );
  });

  it('default capacity: 256 MiB of rows, at least 4 batches', () => {
    expect(new ActivationBuffer(new CountingSource(1, 256)).capacity).toBe(262_144);
    expect(new ActivationBuffer(new CountingSource(1, 256), { batchSize: 100_000 }).capacity).toBe(400_000);
  });
});

describe('takeFirst', () => {
  it('returns a tensor, or the first element of nested tuples', () => {
    const a = tensor([1]);
    const b = tensor([2]);
    expect(takeFirst(a)).toBe(a);
    expect(takeFirst([a, b])).toBe(a);
    expect(takeFirst([[[a], b]])).toBe(a);
    a.dispose();
    b.dispose();
  });

  it('refuses empty tuples and non-tensors', () => {
    expect(() => takeFirst([])).toThrow(
      'takeFirst: the output at depth 0 is an empty tuple; expected a tensor first',
    );
    expect(() => takeFirst([[]])).toThrow(
      'takeFirst: the output at depth 1 is an empty tuple; expected a tensor first',
    );
    expect(() => takeFirst([new Float32Array(2)] as unknown as ActivationOutput)).toThrow(
      'takeFirst: expected a tensor or a tuple whose first element is one, got Float32Array',
    );
  });
});
