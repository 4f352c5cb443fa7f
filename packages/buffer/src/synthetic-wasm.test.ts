import { describe, expect, it } from 'vitest';
import { bufferWasm } from './buffer-wasm.js';
import { SyntheticSource, type SyntheticSourceOptions } from './synthetic.js';

// The synthetic source in WebAssembly SIMD (its Philox blocks, sums and the noise's ziggurat fast
// path) against its TypeScript loops (the oracle, `wasm: false`): the same samples bit for bit,
// over several seeds, widths, batch sizes and options (noise levels, correlation, product
// coefficients, all features firing), including widths that are not a multiple of 4 (their sums
// stay in TypeScript; the noise still runs in WebAssembly, through its scratch rows).
const simd = bufferWasm() !== null;

/** '' when a and b hold the same bits (−0 ≠ +0), else where they first differ. */
function firstDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `[${i}]: ${a[i]} vs ${b[i]}`;
  return '';
}

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
