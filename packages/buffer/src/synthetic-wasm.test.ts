import { philoxKey, seedFor } from '@dictlearn/core';
import { wasmApi } from '@dictlearn/core/wasm';
import { describe, expect, it } from 'vitest';
import { bufferWasm, bufferWasmBytes, HEAP_AT } from './buffer-wasm.js';
import { PhiloxStream } from './random.js';
import { firingBlocks, SyntheticSource, type SyntheticSourceOptions } from './synthetic.js';
import { syntheticKernels } from './synthetic-wasm.js';
import { ZIG_TAIL } from './ziggurat.js';

// The synthetic source in WebAssembly (its Philox blocks, firing decisions, sums and noise, the
// ziggurat's rare path included) against its TypeScript loops (the oracle, `wasm: false`): the
// same samples and sparse codes bit for bit, over several seeds, widths, batch sizes and options
// (noise levels, correlated codes, product coefficients, all features firing, probabilities that
// underflow), including widths that are not a multiple of 4 (their sums stay in TypeScript; the
// noise's fast path still runs in WebAssembly, through its scratch rows). Then the module's own
// stream, noise rows and early-returning code lists, one by one.
const simd = bufferWasm() !== null;

/** '' when a and b hold the same bits (−0 ≠ +0), else where they first differ. */
function firstDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `[${i}]: ${a[i]} vs ${b[i]}`;
  return '';
}

it('the module validates in Node, which has WebAssembly SIMD (else every case below would skip)', () => {
  expect(typeof process.versions.node).toBe('string');
  expect(wasmApi()?.validate(bufferWasmBytes())).toBe(true);
  expect(simd).toBe(true);
});

describe(`synthetic source in WebAssembly SIMD${simd ? '' : ' (skipped: no WebAssembly SIMD here)'}`, () => {
  const cases: [string, SyntheticSourceOptions, number, number][] = [
    ['defaults', {}, 0, 517],
    ['seed 3, d 64, no noise', { seed: 3, dim: 64, numFeatures: 200, noise: 0 }, 1000, 64],
    ['seed 11, correlated', { seed: 11, dim: 32, numFeatures: 96, correlation: 0.6 }, 5, 300],
    [
      'product coefficients, many active',
      { seed: 7, dim: 20, numFeatures: 40, meanActive: 12, coefficients: 'uniform-product' },
      2 ** 33,
      129,
    ],
    ['every feature fires', { seed: 2, dim: 8, numFeatures: 6, meanActive: 6 }, 9, 50],
    ['d not a multiple of 4', { seed: 5, dim: 30, numFeatures: 50 }, 0, 40],
    ['d 7, loud noise', { seed: 6, dim: 7, numFeatures: 20, noise: 3.7 }, 100, 300],
    ['loud noise, correlated', { seed: 8, dim: 48, numFeatures: 64, noise: 2.5, correlation: 0.3 }, 0, 200],
    ['faint noise', { seed: 9, dim: 16, numFeatures: 32, noise: 1e-4 }, 2 ** 32 - 5, 60],
    ['d 256, noise 1', { seed: 10, noise: 1 }, 4096, 100],
    ['probabilities that underflow to 0', { seed: 12, dim: 12, numFeatures: 1500, decay: 0.5 }, 77, 90],
    ['decay 1, many features', { seed: 13, dim: 16, numFeatures: 3000, decay: 1, meanActive: 9 }, 0, 64],
    // correlated codes: thresholds +∞ (features that always fire) and −∞ (probabilities that
    // underflow), rank 1 with ρ near 1, a last block of fewer than 8 features
    [
      'correlated, features that always fire',
      { seed: 14, dim: 8, numFeatures: 12, meanActive: 10, correlation: 0.5 },
      3,
      200,
    ],
    [
      'correlated, probabilities that underflow',
      { seed: 15, dim: 12, numFeatures: 1500, decay: 0.5, correlation: 0.3 },
      77,
      90,
    ],
    [
      'correlated, rank 1, ρ 0.95, product coefficients',
      {
        seed: 16,
        dim: 16,
        numFeatures: 100,
        correlation: 0.95,
        correlationRank: 1,
        coefficients: 'uniform-product',
      },
      2 ** 32 - 30,
      80,
    ],
    [
      'correlated, rank 7, 3001 features, decay 1',
      { seed: 17, dim: 16, numFeatures: 3001, decay: 1, meanActive: 9, correlation: 0.2, correlationRank: 7 },
      0,
      40,
    ],
  ];
  it.skipIf(!simd).each(cases)(
    '%s: the same samples as the TypeScript loop, bit for bit',
    (_name, o, start, count) => {
      const fast = new SyntheticSource(o);
      const ts = new SyntheticSource({ ...o, wasm: false });
      const a = fast.sampleHost(start, count);
      const b = ts.sampleHost(start, count);
      expect(a.length).toBe(b.length);
      expect(firstDifference(a, b)).toBe('');
      // batch boundaries do not matter either
      const split = Float32Array.from([
        ...fast.sampleHost(start, 7),
        ...fast.sampleHost(start + 7, count - 7),
      ]);
      expect(firstDifference(split, b)).toBe('');
      expect(fast.sampleHost(start, 0).length).toBe(0);
      const codes = fast.sparseCodes(start, count);
      const oracle = ts.sparseCodes(start, count);
      expect(codes.offsets).toEqual(oracle.offsets);
      expect(codes.indices).toEqual(oracle.indices);
      expect(firstDifference(codes.values, oracle.values)).toBe('');
      expect(fast.sparseCodes(start, 0).offsets).toEqual(new Int32Array(1));
    },
  );

  it.skipIf(!simd)(
    "the module's own stream reads PhiloxStream's words, across refills and the 2³² wrap",
    () => {
      const w = bufferWasm()!;
      const seed = seedFor('data', 4);
      const [k0, k1] = philoxKey(seed);
      w.setKey(k0, k1);
      const ts = new PhiloxStream(seed, { wasm: false });
      for (const [c1, c2, c3, blocks] of [
        [0, 0, 1, 1],
        [2 ** 32 - 1, 7, 2, 3],
        [123456, 0, 2, 72],
      ]) {
        w.reset(c1, c2, c3, blocks);
        ts.reset(c1, c2, c3);
        // 5000 words: several refills, the chunk doubling up to the words region's size
        for (let k = 0; k < 5000; k++) expect(w.next()).toBe(ts.word() | 0);
      }
    },
  );

  it.skipIf(!simd)(
    "noise rows: PhiloxStream's normals, tail and wedge included, added to what is there",
    () => {
      const w = bufferWasm()!;
      const seed = seedFor('data', 9);
      const [k0, k1] = philoxKey(seed);
      w.setKey(k0, k1);
      const [rows, d, scale] = [150, 333, 0.37];
      const lo = 2 ** 32 - 70; // rows past 70 belong to hi + 1
      const hi = 5;
      const start = new Float32Array(rows * d).map((_, k) => (k % 3 === 0 ? 0 : Math.sin(k)));
      const at = HEAP_AT;
      w.reserve(at + start.byteLength);
      new Float32Array(w.memory.buffer, at, start.length).set(start);
      w.noise(rows, lo, hi, d, scale, at);
      const got = new Float32Array(w.memory.buffer, at, start.length).slice();
      const expected = start.slice();
      const ts = new PhiloxStream(seed, { wasm: false });
      let tails = 0;
      for (let r = 0; r < rows; r++) {
        const n = hi * 2 ** 32 + lo + r;
        ts.reset(n >>> 0, Math.floor(n / 2 ** 32), 2, d + 8);
        ts.addNormals(expected, r * d, d, scale);
        for (let k = 0; k < d; k += 3) if (Math.abs(expected[r * d + k]) > ZIG_TAIL * scale) tails++;
      }
      expect(firstDifference(got, expected)).toBe('');
      // 50k normals on zeros: about 0.05% beyond the ziggurat's base strip, each from its tail
      expect(tails).toBeGreaterThan(5);
    },
  );

  it.skipIf(!simd)(
    'code lists too small for a batch: drawn in several calls, the same codes and samples',
    () => {
      const o: SyntheticSourceOptions = {
        seed: 21,
        dim: 8,
        numFeatures: 40,
        meanActive: 6,
        coefficients: 'uniform-product',
      };
      const source = new SyntheticSource({ ...o, wasm: false });
      const blocks = firingBlocks(source.featureProbabilities);
      const firing = {
        p: source.featureProbabilities,
        ...blocks,
        product: true,
        chunk: 1,
        meanActive: source.meanActive,
      };
      const key = philoxKey(seedFor('data', 21));
      // no slack: each call's lists hold one row's worth (numFeatures + 16), so about 3 rows a call
      const k = syntheticKernels(bufferWasm()!, HEAP_AT, source.groundTruthHost(), 8, key, firing, () => 0)!;
      const [start, count] = [2 ** 32 - 20, 50];
      const codes = k.codes(start, count);
      const oracle = source.sparseCodes(start, count);
      expect(codes.offs).toEqual(oracle.offsets);
      expect(codes.idx).toEqual(oracle.indices);
      expect(Float32Array.from(codes.coef)).toEqual(oracle.values);
      const sigma = source.noise / Math.sqrt(8);
      expect(firstDifference(k.rows(start, count, sigma).slice(), source.sampleHost(start, count))).toBe('');
    },
  );
});
