#!/usr/bin/env node
// Where a training step's time goes, op by op: runs the bench's trainer (`benchTrainer`) on a CPU
// backend with every kernel wrapped in a timer, and prints JSON — the step's median and best
// wall time, and per op (products by shape) calls per step and the median milliseconds per step.
// Kernel times include what a kernel waits for (a native thread pool waking, copies in and out of
// WebAssembly memory); the step's time beyond their sum is dispatch and bookkeeping.
// Run after `pnpm build`:
//   node apps/cli/scripts/profile-step.mjs [--arch standard|topk] [--size d,F,batch] [--steps N]
//     [--fast ort|blas|false] [--blas-kernels detect|environment]
import { parseArgs } from 'node:util';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  getKernel,
  kernelsOf,
  randomNormal,
  registerBackend,
  registerKernel,
  useBackend,
} from '@dictlearn/core';
import { benchTrainer } from '../dist/bench.js';

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'standard' },
    size: { type: 'string', default: '144,576,1024' },
    steps: { type: 'string', default: '60' },
    fast: { type: 'string' },
    'blas-kernels': { type: 'string' },
  },
});
const [d, features, batch] = values.size.split(',').map(Number);
const steps = Number(values.steps);
const backend = registerBackend(
  createCpuBackend({
    name: 'cpu-profile',
    ...(values.fast ? { fastMatmul: values.fast === 'false' ? false : values.fast } : {}),
    ...(values['blas-kernels'] ? { blasKernels: values['blas-kernels'] } : {}),
  }),
);
await useBackend('cpu-profile');

const perStep = new Map(); // op → { calls, ms: number[] (one per step), current }
let recording = false;
for (const op of kernelsOf(backend)) {
  const kernel = getKernel(op, backend);
  registerKernel(
    op,
    backend,
    (inputs, attrs, b) => {
      const t0 = performance.now();
      const out = kernel(inputs, attrs, b);
      if (!recording) return out;
      const dt = performance.now() - t0;
      const product = op === 'matmul' || op.startsWith('linearBiasRelu');
      // the encode–decode op's second product, f·W_dec, after its first
      const decoder = op === 'linearBiasReluSumDecode' ? `·${inputs[3].shape.join('×')}` : '';
      const key = product
        ? `${op} ${inputs[0].shape.join('×')}${attrs.transA ? 'ᵀ' : ''}·${inputs[1].shape.join('×')}${attrs.transB ? 'ᵀ' : ''}${decoder}`
        : op;
      const s = perStep.get(key) ?? { calls: 0, ms: [], current: 0 };
      s.calls++;
      s.current += dt;
      perStep.set(key, s);
      return out;
    },
    { replace: true },
  );
}

const trainer = benchTrainer(values.arch, { batch, d, features, reps: 1 }, 'cpu-profile');
const x = randomNormal([batch, d], { seed: 3, backend: 'cpu-profile' });
await trainer.update(x, false); // warm-up (and TopK's data-dependent init)
recording = true;
const wall = [];
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  await trainer.update(x, false);
  wall.push(performance.now() - t0);
  for (const s of perStep.values()) {
    s.ms.push(s.current);
    s.current = 0;
  }
}
const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
const ops = [...perStep]
  .map(([op, s]) => ({ op, callsPerStep: s.calls / steps, medianMs: Number(median(s.ms).toFixed(3)) }))
  .sort((a, b) => b.medianMs - a.medianMs);
console.log(
  JSON.stringify(
    {
      arch: values.arch,
      size: { d, features, batch },
      fastPath: backend.fastPath,
      steps,
      stepMedianMs: Number(median(wall).toFixed(3)),
      stepBestMs: Number(Math.min(...wall).toFixed(3)),
      kernelsMedianMs: Number(ops.reduce((a, o) => a + o.medianMs, 0).toFixed(3)),
      ops,
    },
    null,
    2,
  ),
);
x.dispose();
trainer.dispose();
