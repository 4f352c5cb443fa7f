import { createCpuBackend } from '@dictlearn/backend-cpu';
import { registerBackend, useBackend } from '@dictlearn/core';
import { afterAll, describe, expect, it } from 'vitest';
import { bufferWasm, bufferWasmModule, HEAP_AT } from './buffer-wasm.js';
import { firingBlocks, SyntheticSource, type SyntheticSourceOptions } from './synthetic.js';
import { MIN_PART_ROWS, type RowThreads, rowThreads } from './synthetic-threads.js';
import { syntheticKernels } from './synthetic-wasm.js';

// Batches split over worker threads against one thread's (the oracle: `threads: 1`, itself
// checked against the TypeScript loops in synthetic-wasm.test.ts): the same values bit for bit,
// over uneven splits, the 2³² wrap of a sample's counter, product coefficients, no noise,
// correlated codes; and the pool's fallbacks: a range a worker fails is drawn on this thread,
// sources without WebAssembly draws have no workers.
const simd = bufferWasm() !== null;
const reason = simd ? '' : ' (skipped: no WebAssembly SIMD here)';

/** '' when a and b hold the same bits (−0 ≠ +0), else where they first differ. */
function firstDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `[${i}]: ${a[i]} vs ${b[i]}`;
  return '';
}

describe(`synthetic batches over worker threads${reason}`, () => {
  const pools: RowThreads[] = [];
  afterAll(() => {
    for (const p of pools) p.close();
  });
  const cases: [string, SyntheticSourceOptions, number, number[]][] = [
    ['defaults, 3 threads', { threads: 3 }, 0, [100, 512, 1025, 4099]],
    ['defaults, 2 threads', { threads: 2 }, 12_345, [600, 2048]],
    [
      'product coefficients, many active, across 2³²',
      { seed: 4, dim: 24, numFeatures: 60, meanActive: 14, coefficients: 'uniform-product', threads: 3 },
      2 ** 32 - 700,
      [1400],
    ],
    ['no noise, d 64', { seed: 5, dim: 64, numFeatures: 300, noise: 0, threads: 2 }, 7, [777]],
    [
      'correlated, 3 threads',
      { seed: 6, dim: 32, numFeatures: 200, correlation: 0.6, threads: 3 },
      50,
      [1100],
    ],
  ];
  it.skipIf(!simd).each(cases)('%s: the rows one thread draws', async (_name, o, start, counts) => {
    const threaded = new SyntheticSource(o);
    const one = new SyntheticSource({ ...o, threads: 1 });
    expect(await threaded.startThreads()).toBe(o.threads);
    expect(await one.startThreads()).toBe(1);
    let first = start;
    for (const count of counts) {
      const a = threaded.sampleHost(first, count);
      expect(firstDifference(a, one.sampleHost(first, count))).toBe('');
      first += count;
    }
  });

  it.skipIf(!simd)('batches() starts the workers and yields one thread’s batches', async () => {
    registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
    await useBackend('cpu');
    const o = { seed: 9, dim: 32, numFeatures: 128 };
    const threaded = new SyntheticSource({ ...o, threads: 2 }).batches({
      batchSize: 2 * MIN_PART_ROWS,
      start: 3,
    });
    const one = new SyntheticSource({ ...o, threads: 1 }).batches({ batchSize: 2 * MIN_PART_ROWS, start: 3 });
    const pool = rowThreads(2, bufferWasmModule()!) as RowThreads;
    await pool.whenReady();
    const handed = () => pool.ranges().workers + pool.ranges().taken;
    const before = handed();
    for (let b = 0; b < 4; b++) {
      const x = (await threaded.next()).value!;
      const y = (await one.next()).value!;
      expect(firstDifference((await x.data()) as Float32Array, (await y.data()) as Float32Array)).toBe('');
      x.dispose();
      y.dispose();
    }
    // the pool's worker was handed a range of each batch (drawn there, or taken back)
    expect(handed() - before).toBe(4);
  });

  it.skipIf(!simd)('the pool hands ranges to workers, and draws here a range a worker failed', async () => {
    const module = bufferWasmModule()!;
    const pool = rowThreads(4, module);
    if (typeof pool === 'string') throw new Error(pool);
    pools.push(pool);
    expect(await pool.whenReady()).toBe(3);
    const w = bufferWasm()!;
    const source = new SyntheticSource({ seed: 2, dim: 16, numFeatures: 40, threads: 1 });
    const g = source.groundTruthHost();
    const kernels = syntheticKernels(w, HEAP_AT, g, 16, [11, 22], {
      p: source.featureProbabilities,
      ...firingBlocks(source.featureProbabilities),
      product: false,
      chunk: 4,
      meanActive: source.meanActive,
    })!;
    const sigma = 0.05;
    const here = (first: number, rows: number) => kernels.rows(first, rows, sigma);
    const count = 4 * MIN_PART_ROWS + 3;
    const expected = here(100, count).slice();
    const good = pool.add(kernels.image(), kernels.plan!);
    const before = pool.ranges();
    // without taking ranges back, each worker draws its own
    expect(firstDifference(pool.rows(good, 100, count, sigma, here, false), expected)).toBe('');
    expect(pool.ranges()).toEqual({ ...before, workers: before.workers + 3 });
    // other rows first, so that the shared array holds none of the expected ones
    expect(firstDifference(pool.rows(good, 9000, count, sigma, here, false), expected)).not.toBe('');
    // a plan whose lists cannot fit: every worker's range throws, and is drawn here instead
    const bad = pool.add(kernels.image(), { ...kernels.plan!, maxBytes: kernels.plan!.listsAt });
    expect(firstDifference(pool.rows(bad, 100, count, sigma, here, false), expected)).toBe('');
    expect(pool.ranges()).toEqual({ ...before, workers: before.workers + 9, redone: before.redone + 3 });
    // taking back ranges the workers have not begun: the same rows, whoever drew them
    const mid = pool.ranges();
    expect(firstDifference(pool.rows(good, 100, count, sigma, here), expected)).toBe('');
    const after = pool.ranges();
    expect(after.workers + after.taken - mid.workers - mid.taken).toBe(3);
    expect(after.redone).toBe(mid.redone);
    // too few rows to split: this thread alone
    const small = pool.ranges();
    expect(
      firstDifference(
        pool.rows(good, 100, MIN_PART_ROWS + 5, sigma, here),
        expected.subarray(0, (MIN_PART_ROWS + 5) * 16),
      ),
    ).toBe('');
    expect(pool.ranges()).toEqual(small);
    pool.drop(good);
    pool.drop(bad);
    expect(() => pool.rows(good, 0, 1000, sigma, here)).toThrow(/not in the thread pool/);
  });

  it('sources that draw on this thread alone, and a bad thread count', async () => {
    expect(await new SyntheticSource({ wasm: false, threads: 2 }).startThreads()).toBe(1);
    expect(await new SyntheticSource({ threads: 1 }).startThreads()).toBe(1);
    expect(() => new SyntheticSource({ threads: 0 })).toThrow(
      /option 'threads' must be an integer ≥ 1, got 0/,
    );
    expect(() => new SyntheticSource({ threads: 1.5 })).toThrow(/option 'threads'/);
  });
});
