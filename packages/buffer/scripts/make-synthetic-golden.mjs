#!/usr/bin/env node
// Writes src/fixtures/synthetic-golden.json: SHA-256 digests (and a few values) of SyntheticSource
// samples and sparse codes over many seeds, options and sample ranges, as the source computed
// them when the file was made. The generator's outputs are pinned bit for bit (the demo's figures
// depend on them), so synthetic-golden.test.ts checks every later version against this record.
// The file was made with the TypeScript loops (`wasm: false`, the oracle) of the source before
// its speed-ups; both paths agreed on every case (the script checks it).
// Run after `pnpm --filter @dictlearn/buffer build`: node packages/buffer/scripts/make-synthetic-golden.mjs
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SyntheticSource } from '../dist/index.js';

/** [name, options, start, count] */
const cases = [
  ['defaults, one bench batch', {}, 0, 4096],
  ['defaults, seed 1, far offset', { seed: 1 }, 1_000_000_007, 700],
  ['no noise', { noise: 0, seed: 2 }, 4096, 600],
  ['noise 1', { noise: 1, seed: 3 }, 12, 300],
  ['faint noise', { seed: 4, dim: 16, numFeatures: 32, noise: 1e-4 }, 2 ** 32 - 5, 60],
  ['loud noise, d 7', { seed: 6, dim: 7, numFeatures: 20, noise: 3.7 }, 100, 300],
  ['d 30 (not a multiple of 4)', { seed: 5, dim: 30, numFeatures: 50 }, 0, 400],
  ['d 1', { seed: 5, dim: 1, numFeatures: 9, meanActive: 2 }, 3, 200],
  ['d 258, F 700', { seed: 12, dim: 258, numFeatures: 700, meanActive: 7 }, 77, 300],
  ['correlation 0.5, rank 4', { correlation: 0.5 }, 0, 1000],
  ['correlation 0.5, rank 4, seed 13, start 2^33', { correlation: 0.5, seed: 13 }, 2 ** 33, 300],
  [
    'correlation 0.9, rank 1',
    { seed: 14, correlation: 0.9, correlationRank: 1, dim: 32, numFeatures: 96 },
    5,
    500,
  ],
  [
    'correlation 0.2, rank 7, d 31',
    { seed: 15, correlation: 0.2, correlationRank: 7, dim: 31, numFeatures: 130, meanActive: 9 },
    40,
    400,
  ],
  [
    'correlation 0.6, many active',
    { seed: 16, correlation: 0.6, dim: 24, numFeatures: 40, meanActive: 25 },
    0,
    300,
  ],
  ['large F: d 512, F 4096, k 20', { dim: 512, numFeatures: 4096, meanActive: 20 }, 0, 400],
  [
    'large F, seed 17, correlated',
    { seed: 17, dim: 64, numFeatures: 3000, meanActive: 12, correlation: 0.4 },
    999,
    200,
  ],
  [
    'product coefficients',
    { seed: 7, dim: 20, numFeatures: 40, meanActive: 12, coefficients: 'uniform-product' },
    2 ** 33,
    129,
  ],
  ['every feature fires', { seed: 2, dim: 8, numFeatures: 6, meanActive: 6 }, 9, 50],
  ['decay 1 (equal probabilities)', { seed: 18, dim: 12, numFeatures: 300, meanActive: 4, decay: 1 }, 0, 300],
  [
    'decay 0.5 (first features clipped at 1)',
    { seed: 19, dim: 16, numFeatures: 64, meanActive: 3.5, decay: 0.5 },
    0,
    300,
  ],
  ['decay 0.9, mean 50 of 64', { seed: 20, dim: 8, numFeatures: 64, meanActive: 50, decay: 0.9 }, 1, 200],
  ['few features, sparse', { seed: 21, dim: 40, numFeatures: 3, meanActive: 0.05, noise: 0 }, 0, 500],
];

function digest(typed) {
  return createHash('sha256')
    .update(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength))
    .digest('hex');
}

function record(source, start, count) {
  const x = source.sampleHost(start, count);
  const codes = source.sparseCodes(start, count);
  return {
    samples: digest(x),
    head: Array.from(x.subarray(0, 3)),
    last: x[x.length - 1],
    offsets: digest(codes.offsets),
    indices: digest(codes.indices),
    values: digest(codes.values),
    active: codes.indices.length,
  };
}

const out = [];
for (const [name, options, start, count] of cases) {
  const oracle = record(new SyntheticSource({ ...options, wasm: false }), start, count);
  const fast = record(new SyntheticSource(options), start, count);
  if (JSON.stringify(fast) !== JSON.stringify(oracle))
    throw new Error(`${name}: WebAssembly and TypeScript differ`);
  out.push({ name, options, start, count, ...oracle });
}
const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'fixtures', 'synthetic-golden.json');
writeFileSync(file, `${JSON.stringify(out, null, 1)}\n`);
console.log(`wrote ${out.length} cases to ${file}`);
