import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { SyntheticSource } from '@dictlearn/buffer';
import {
  initBackend,
  memory,
  registerBackend,
  Trainer,
  type TrainLogEntry,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import { compareValues } from '@dictlearn/core/testing';
import { describe, expect, it } from 'vitest';
import { createWebGPUBackend } from './backend.js';

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
const webgpu = registerBackend(createWebGPUBackend());
let skip: string | undefined;
try {
  await initBackend(webgpu);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

const spec = () => ({
  architecture: standard({ l1Penalty: 0.05 }),
  dictSize: 64,
  warmupSteps: 20,
  sparsityWarmupSteps: 50,
  seed: 11,
});

// A second trainer that resamples: a strong L1 from step 0 and a large lr kill features, and every
// 25 steps the dead ones are rebuilt (6 resamples, 45 features on both backends as measured).
// Dead-feature detection and the loss-weighted row choice must agree between backends for the
// curves to stay together; if a change of seeds makes a feature borderline (fired on one backend
// only), the counts below differ: pick another l1Penalty/seed rather than loosening the tolerance.
const resampling = () => ({
  architecture: standard({ l1Penalty: 0.5 }),
  dictSize: 64,
  lr: 1e-2,
  warmupSteps: 5,
  sparsityWarmupSteps: 0,
  resampleSteps: 25,
  seed: 11,
  name: 'resampling',
});

interface Run {
  init: Record<string, number[]>;
  losses: Record<string, number[]>;
  resampled: { times: number; features: number };
}

async function run(backend: string): Promise<Run> {
  await useBackend(backend);
  const t = new Trainer(spec(), 32, 200, 0, backend);
  const init: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(t.vars)) init[k] = Array.from(await v.value.data());
  t.dispose();
  const losses: Record<string, number[]> = { trainer_0: [], resampling: [] };
  const out = await mkdtemp(join(tmpdir(), 'dl-parity-'));
  const r = await trainSAE({
    data: new SyntheticSource({ dim: 32, numFeatures: 48, meanActive: 3, seed: 5 }),
    batchSize: 128,
    steps: 200,
    trainers: [spec(), resampling()],
    logEvery: 10,
    backend,
    outDir: out,
    saveSteps: [200],
    onLog: (e: TrainLogEntry) => losses[e.trainer].push(e.logs.loss),
  });
  for (const d of r.dictionaries) d.dispose();
  const state = await readFile(join(out, 'resampling', 'checkpoints', 'step_200', 'state.json'), 'utf8');
  await rm(out, { recursive: true, force: true });
  return { init, losses, resampled: JSON.parse(state).resampled };
}

describe.skipIf(skip !== undefined)(
  `training parity CPU vs WebGPU${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('the same seeded run, with resampling: initial parameters bit for bit, loss curves within float32 drift', async () => {
      const cpu = await run('cpu');
      const gpu = await run('webgpu');
      for (const k of Object.keys(cpu.init)) expect(gpu.init[k]).toEqual(cpu.init[k]);
      // Each step's arithmetic agrees to float32 rounding (~1e-7 relative); summation orders differ
      // (GPU tiles vs CPU loops), and 200 Adam steps let those differences grow through the
      // trajectory. Measured on lavapipe: at most 1.4e-5 relative on the loss (trainer_0; 1e-6
      // with resampling). 1e-4 is 7× that, and 7× below the smallest real kernel error we planted:
      // Adam with ε inside the square root moves trainer_0's curve by 7.5e-4 (the resampling one
      // by 8e-3) — the old tolerance of 1e-3 let that through (scripts/mutations.json).
      for (const name of ['trainer_0', 'resampling']) {
        expect(gpu.losses[name]).toHaveLength(20);
        expect(
          compareValues(gpu.losses[name], cpu.losses[name], { rtol: 1e-4, atol: 0 }, `${name} loss curve`),
        ).toBeNull();
      }
      expect(cpu.resampled.times).toBeGreaterThanOrEqual(3);
      expect(gpu.resampled).toEqual(cpu.resampled);
      // Training works at all (measured: 0.80 → 0.27 and 0.92 → 0.63 over the 200 steps).
      expect(gpu.losses.trainer_0[19]).toBeLessThan(0.5 * gpu.losses.trainer_0[0]);
      expect(gpu.losses.resampling[19]).toBeLessThan(0.8 * gpu.losses.resampling[0]);
    });

    it('live GPU tensors and bytes stay flat over many training steps', async () => {
      await useBackend('webgpu');
      const t = new Trainer(spec(), 32, 1000, 0, 'webgpu');
      const source = new SyntheticSource({ dim: 32, numFeatures: 48, seed: 2 });
      const seen: { tensors: number; bytes: number }[] = [];
      let step = 0;
      for await (const x of source.batches({ batchSize: 64, backend: 'webgpu' })) {
        await t.update(x, step % 5 === 0);
        x.dispose();
        seen.push({ ...memory().backends.webgpu });
        if (++step === 40) break;
      }
      t.dispose();
      expect(new Set(seen.slice(3).map((s) => s.tensors)).size).toBe(1);
      expect(new Set(seen.slice(3).map((s) => s.bytes)).size).toBe(1);
    });
  },
);
