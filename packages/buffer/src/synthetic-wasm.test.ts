import { describe, expect, it } from 'vitest';
import { SyntheticSource, type SyntheticSourceOptions } from './synthetic.js';
import { syntheticWasm } from './synthetic-wasm.js';

// The WebAssembly SIMD sums of the synthetic source against its TypeScript loop (the oracle,
// `wasm: false`): the same samples bit for bit, over several seeds, widths, batch sizes and
// options (noise, correlation, product coefficients, all features firing), including a width
// that is not a multiple of 4 (which keeps the TypeScript loop).
const simd = syntheticWasm(new Float32Array(4), 4);

/** '' when a and b hold the same bits (−0 ≠ +0), else where they first differ. */
function firstDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `[${i}]: ${a[i]} vs ${b[i]}`;
  return '';
}

describe(`synthetic source sums in WebAssembly SIMD${simd ? '' : ' (skipped: no WebAssembly SIMD here)'}`, () => {
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
    },
  );
});
