#!/usr/bin/env node
// How a training step's wall time is spread, not just its best: runs the bench's trainer
// (`benchTrainer`) on a CPU backend for N steps after a warm-up and prints JSON with the mean,
// the quantiles and the minor page faults of the steps. The bench reports the best of a few
// steps; a long run's throughput is the mean, which on a machine whose cores our threads fill is
// also what other threads (the runtime's compiler and collector, other processes) cost us.
// Run after `pnpm build`:
//   node apps/cli/scripts/step-times.mjs [--arch standard|topk] [--size d,F,batch] [--steps N]
//     [--kernel-threads N]
import { parseArgs } from 'node:util';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { randomNormal, registerBackend, useBackend } from '@dictlearn/core';
import { benchTrainer } from '../dist/bench.js';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'standard' },
    size: { type: 'string', default: '144,576,1024' },
    steps: { type: 'string', default: '300' },
    'kernel-threads': { type: 'string' },
  },
});
const [d, features, batch] = values.size.split(',').map(Number);
const steps = Number(values.steps);
const threads = values['kernel-threads'] === undefined ? undefined : Number(values['kernel-threads']);
const backend = registerBackend(
  createCpuBackend({ name: 'cpu-steps', ...(threads ? { kernelThreads: threads, threads } : {}) }),
);
await useBackend('cpu-steps');

const trainer = benchTrainer(values.arch, { batch, d, features, reps: 1 }, 'cpu-steps');
const x = randomNormal([batch, d], { seed: 3, backend: 'cpu-steps' });
for (let i = 0; i < 20; i++) await trainer.update(x, false); // warm-up
const wall = [];
let faults = 0;
for (let i = 0; i < steps; i++) {
  const f0 = process.resourceUsage().minorPageFault;
  const t0 = performance.now();
  await trainer.update(x, false);
  wall.push(performance.now() - t0);
  faults += process.resourceUsage().minorPageFault - f0;
}
const sorted = [...wall].sort((a, b) => a - b);
const q = (p) => Number(sorted[Math.round(p * (sorted.length - 1))].toFixed(3));
console.log(
  JSON.stringify(
    {
      arch: values.arch,
      size: { d, features, batch },
      kernelThreads: backend.kernelThreads,
      steps,
      meanMs: Number((wall.reduce((a, b) => a + b, 0) / steps).toFixed(3)),
      minMs: q(0),
      p25Ms: q(0.25),
      medianMs: q(0.5),
      p75Ms: q(0.75),
      p90Ms: q(0.9),
      pageFaultsPerStep: Number((faults / steps).toFixed(1)),
    },
    null,
    2,
  ),
);
x.dispose();
trainer.dispose();
