#!/usr/bin/env node
// Prints, as JSON, how long SyntheticSource takes to generate batches of 4096 samples on the host
// (the median of 20 batches after 3 warm-up ones), for a few settings, and the minor page faults
// per batch: each batch is a new array, whose pages are fresh unless a garbage collection freed
// an earlier one first; on some (virtual) machines a fault costs ~15 µs, 1024 of them 15 ms.
// Run after `pnpm build`: node packages/buffer/scripts/bench-synthetic.mjs
import { SyntheticSource } from '../dist/index.js';

const settings = [
  { name: 'default (d=256, F=512, k=5, noise 0.1)', options: {} },
  { name: 'no noise', options: { noise: 0 } },
  { name: 'correlation 0.5 (rank 4)', options: { correlation: 0.5 } },
  { name: 'd=512, F=4096, k=20', options: { dim: 512, numFeatures: 4096, meanActive: 20 } },
];
const batch = 4096;
const results = [];
for (const { name, options } of settings) {
  const source = new SyntheticSource(options);
  const times = [];
  let faults = 0;
  for (let b = 0; b < 23; b++) {
    if (b === 3) faults = process.resourceUsage().minorPageFault;
    const t0 = performance.now();
    source.sampleHost(b * batch, batch);
    if (b >= 3) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  results.push({
    setting: name,
    batch,
    msPerBatch: Number(times[times.length >> 1].toFixed(2)),
    minMs: Number(times[0].toFixed(2)),
    pageFaultsPerBatch: Math.round((process.resourceUsage().minorPageFault - faults) / 20),
  });
}
console.log(JSON.stringify({ bench: 'synthetic-source', node: process.version, results }, null, 2));
