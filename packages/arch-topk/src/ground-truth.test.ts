// Ground-truth recovery on the demo's synthetic task (REFERENCE "Synthetic data"): d = 256,
// 512 true features, ~5 active, noise 0.1; F = 1024, batch 1024. CPU-heavy (minutes), so it runs
// only when asked:
//   DICTLEARN_GROUND_TRUTH=1 pnpm vitest run packages/arch-topk/src/ground-truth.test.ts
// Settings (defaults): DICTLEARN_GT_SEEDS=0,1,2 DICTLEARN_GT_STEPS=1000 DICTLEARN_GT_K=6
// DICTLEARN_GT_LR=4e-3 DICTLEARN_GT_WARMUP=100 DICTLEARN_GT_DEAD_TOKENS=102400 DICTLEARN_GT_ARCHS=topk,batch-topk
// The init draws from the 'init' Philox domain and the data from 'data'/'groundTruth', so no
// dictionary can start on the truth whatever the seeds.

import { createCpuBackend } from '@dictlearn/backend-cpu';
import { SyntheticSource } from '@dictlearn/buffer';
import { max, registerBackend, trainSAE, useBackend } from '@dictlearn/core';
import { groundTruthRecovery } from '@dictlearn/eval';
import { expect, it } from 'vitest';
import { batchTopk, topk } from './topk.js';

const env = process.env;
const seeds = (env.DICTLEARN_GT_SEEDS ?? '0,1,2').split(',').map(Number);
const steps = Number(env.DICTLEARN_GT_STEPS ?? 1000);
const k = Number(env.DICTLEARN_GT_K ?? 6);
const lr = Number(env.DICTLEARN_GT_LR ?? 4e-3); // the plugins' default would be 2e-4/√(F/2¹⁴) = 8e-4
const warmupSteps = Number(env.DICTLEARN_GT_WARMUP ?? 100);
const archs = (env.DICTLEARN_GT_ARCHS ?? 'topk,batch-topk').split(',');
// 100 batches; the default 10M tokens is ten times this whole run, so aux-k would never act.
const deadTokens = Number(env.DICTLEARN_GT_DEAD_TOKENS ?? 102_400);

it.skipIf(!env.DICTLEARN_GROUND_TRUTH)(
  'TopK and BatchTopK recover ≥ 90% of the true features at cosine 0.9',
  async () => {
    registerBackend(createCpuBackend({ name: 'cpu' }));
    await useBackend('cpu');
    const rows: string[] = [];
    const recovered: number[] = [];
    for (const seed of seeds) {
      const source = new SyntheticSource({ dim: 256, numFeatures: 512, meanActive: 5, noise: 0.1, seed });
      const t0 = Date.now();
      const { dictionaries } = await trainSAE({
        data: source,
        batchSize: 1024,
        steps,
        logEvery: 0,
        trainers: archs.map((name) => ({
          name,
          architecture: (name === 'topk' ? topk : batchTopk)({ k, deadTokens }),
          dictSize: 1024,
          seed,
          lr,
          warmupSteps,
        })),
      });
      const truth = source.groundTruth();
      const probe = await new SyntheticSource({ dim: 256, numFeatures: 512, meanActive: 5, noise: 0.1, seed })
        .batches({ batchSize: 4096 })
        [Symbol.asyncIterator]()
        .next();
      for (const dict of dictionaries) {
        const dec = dict.decoderRows();
        const r = await groundTruthRecovery(dec, truth, 0.9);
        const f = dict.encode(probe.value);
        const alive = Array.from(await max(f, 0).data()).filter((v) => v > 0).length;
        f.dispose();
        rows.push(
          `seed ${seed} ${dict.arch.name}: recovered ${(100 * r.fractionRecovered).toFixed(1)}%, MMCS ${r.mmcs.toFixed(3)}, features alive on 4096 rows ${alive}/1024`,
        );
        recovered.push(r.fractionRecovered);
        dec.dispose();
        dict.dispose();
      }
      truth.dispose();
      rows.push(`  (${steps} steps, k ${k}, ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
      console.log(rows.slice(-3).join('\n'));
    }
    console.log(rows.join('\n'));
    for (const r of recovered) expect(r).toBeGreaterThanOrEqual(0.9);
  },
  3_600_000,
);
