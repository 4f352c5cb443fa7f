#!/usr/bin/env node
// Prints, as JSON, how long SyntheticSource takes to generate batches of 4096 samples (the median
// of 20 batches after 3 warm-up ones), for a few settings, two ways:
// - `tensor`: `sample()` onto the CPU backend, as `batches()` feeds a trainer (the rows go from
//   the WebAssembly memory into the backend's pooled array; no host array of their own);
// - `host`: `sampleHost()`, a new Float32Array per batch, and its minor page faults: its pages are
//   fresh unless a garbage collection freed an earlier array first, and on some (virtual)
//   machines a fault costs ~15 µs, 1024 of them 15 ms, so this figure swings with the collector.
// Each setting runs on this thread alone (`threads: 1`), then with the default threads (worker
// threads drawing ranges of each batch).
// Run after `pnpm build`: node packages/buffer/scripts/bench-synthetic.mjs
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { registerBackend, useBackend } from '@dictlearn/core';
import { SyntheticSource } from '../dist/index.js';

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
await useBackend('cpu');

const settings = [
  { name: 'default (d=256, F=512, k=5, noise 0.1)', options: {} },
  { name: 'no noise', options: { noise: 0 } },
  { name: 'correlation 0.5 (rank 4)', options: { correlation: 0.5 } },
  { name: 'd=512, F=4096, k=20', options: { dim: 512, numFeatures: 4096, meanActive: 20 } },
];
const batch = 4096;

/** Median and minimum ms of `run(b)` over batches 3 … 22, and the page faults per batch. */
function measure(run) {
  const times = [];
  let faults = 0;
  for (let b = 0; b < 23; b++) {
    if (b === 3) faults = process.resourceUsage().minorPageFault;
    const t0 = performance.now();
    run(b);
    if (b >= 3) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return {
    ms: Number(times[times.length >> 1].toFixed(2)),
    minMs: Number(times[0].toFixed(2)),
    pageFaults: Math.round((process.resourceUsage().minorPageFault - faults) / 20),
  };
}

const results = [];
for (const { name, options } of settings)
  for (const threads of [1, undefined]) {
    const source = new SyntheticSource({ ...options, threads });
    const used = await source.startThreads();
    const tensor = measure((b) => source.sample(b * batch, batch, 'cpu').dispose());
    const host = measure((b) => source.sampleHost(b * batch, batch));
    results.push({
      setting: name,
      threads: used,
      batch,
      msPerBatch: tensor.ms,
      minMs: tensor.minMs,
      hostMsPerBatch: host.ms,
      hostMinMs: host.minMs,
      hostPageFaultsPerBatch: host.pageFaults,
    });
  }
console.log(JSON.stringify({ bench: 'synthetic-source', node: process.version, results }, null, 2));
