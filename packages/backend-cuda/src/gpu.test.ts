// Tests that need an NVIDIA GPU: the core conformance suite against the CPU oracle, training
// parity with the CPU (Standard and TopK), live tensors flat over training, device Philox bit for
// bit. Where the driver or a GPU is missing they report themselves skipped with the reason.
import { standard } from '@dictlearn/arch-standard';
import { topk } from '@dictlearn/arch-topk';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { SyntheticSource } from '@dictlearn/buffer';
import {
  initBackend,
  memory,
  ops,
  registerBackend,
  Trainer,
  type TrainLogEntry,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import { compareValues, conformanceSuite } from '@dictlearn/core/testing';
import { describe, expect, it } from 'vitest';
import { createCudaBackend } from './backend.js';

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
const cuda = registerBackend(createCudaBackend());
let skip: string | undefined;
try {
  await initBackend(cuda);
} catch (e) {
  skip = (e as Error).message.replace(/^useBackend: /, '');
}
const why = skip ? ` (skipped: ${skip})` : '';

conformanceSuite({ backend: 'cuda', reference: 'cpu', gradientBackend: 'cpu64', skip });

const specs = () => [
  {
    architecture: standard({ l1Penalty: 0.05 }),
    dictSize: 64,
    warmupSteps: 20,
    sparsityWarmupSteps: 50,
    seed: 11,
  },
  { architecture: topk({ k: 8 }), dictSize: 64, warmupSteps: 20, seed: 12, name: 'topk' },
];

async function run(backend: string) {
  await useBackend(backend);
  const t = new Trainer(specs()[0], 32, 200, 0, backend);
  const init: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(t.vars)) init[k] = Array.from(await v.value.data());
  t.dispose();
  const losses: Record<string, number[]> = { trainer_0: [], topk: [] };
  const r = await trainSAE({
    data: new SyntheticSource({ dim: 32, numFeatures: 48, meanActive: 3, seed: 5 }),
    batchSize: 128,
    steps: 200,
    trainers: specs(),
    logEvery: 10,
    backend,
    onLog: (e: TrainLogEntry) => losses[e.trainer].push(e.logs.loss),
  });
  for (const d of r.dictionaries) d.dispose();
  return { init, losses };
}

describe.skipIf(skip !== undefined)(`CUDA on a GPU${why}`, () => {
  it('training parity with the CPU, Standard and TopK: initial parameters bit for bit, loss curves within float32 drift', async () => {
    const cpu = await run('cpu');
    const gpu = await run('cuda');
    for (const k of Object.keys(cpu.init)) expect(gpu.init[k]).toEqual(cpu.init[k]);
    // The WebGPU parity test's tolerance (measured drift 1.4e-5 over 200 Adam steps there).
    for (const name of ['trainer_0', 'topk']) {
      expect(gpu.losses[name]).toHaveLength(20);
      expect(
        compareValues(gpu.losses[name], cpu.losses[name], { rtol: 1e-4, atol: 0 }, `${name} loss curve`),
      ).toBeNull();
    }
    expect(gpu.losses.trainer_0[19]).toBeLessThan(0.5 * gpu.losses.trainer_0[0]);
  });

  it('live GPU tensors and bytes stay flat over many training steps', async () => {
    await useBackend('cuda');
    const t = new Trainer(specs()[0], 32, 1000, 0, 'cuda');
    const source = new SyntheticSource({ dim: 32, numFeatures: 48, seed: 2 });
    const seen: { tensors: number; bytes: number }[] = [];
    let step = 0;
    for await (const x of source.batches({ batchSize: 64, backend: 'cuda' })) {
      await t.update(x, step % 5 === 0);
      x.dispose();
      seen.push({ ...memory().backends.cuda });
      if (++step === 40) break;
    }
    t.dispose();
    expect(new Set(seen.slice(3).map((s) => s.tensors)).size).toBe(1);
    expect(new Set(seen.slice(3).map((s) => s.bytes)).size).toBe(1);
  });

  it('device Philox uniforms equal the host stream bit for bit (large draw, many blocks)', async () => {
    for (const [seed, stream, low, high] of [
      [0, 0, 0, 1],
      [123456789, 7, -0.1, 0.3],
    ] as const) {
      const g = ops.randomUniform([1000, 37], { seed, stream, low, high, backend: 'cuda' });
      const c = ops.randomUniform([1000, 37], { seed, stream, low, high, backend: 'cpu' });
      expect(Array.from(await g.data())).toEqual(Array.from(await c.data()));
      g.dispose();
      c.dispose();
    }
  });
});
