import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { findBackend, randomNormal, registerBackend, useBackend } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { benchTrainer, runBench } from './bench.js';

if (!findBackend('cpu')) registerBackend(createCpuBackend());
const script = fileURLToPath(new URL('../../python/numpy_topk_step.py', import.meta.url));
const numpy = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const noNumpy =
  numpy.status !== 0 ? `python3 with numpy is not available: ${numpy.stderr.trim()}` : undefined;

describe(`the bench's TopK step${noNumpy ? ` (skipped: ${noNumpy})` : ''}`, () => {
  it.skipIf(noNumpy !== undefined)(
    "the TopK trainer's steps match the numpy TopK step written the dense way: two steps from one init, losses and every parameter",
    async () => {
      await useBackend('cpu');
      const [B, d, F, k] = [48, 12, 40, 5];
      const trainer = benchTrainer(
        'topk',
        { reps: 1, batch: B, d, features: F, includeTs: false, noNumpy: false, k },
        'cpu',
        7,
      );
      const x = randomNormal([B, d], { seed: 25, backend: 'cpu' });
      const values = async (t: { data(): Promise<ArrayLike<number>> }) => Array.from(await t.data());
      const names = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;
      const init: Record<string, number[]> = {};
      for (const n of names) init[n] = await values(trainer.vars[n].value);
      const input = { shape: { B, d, F }, k, lr: trainer.settings.lr, x: await values(x), ...init };
      const r = spawnSync('python3', [script, '--check'], { input: JSON.stringify(input), encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const want = JSON.parse(r.stdout) as Record<string, number[]> & { losses: number[] };

      const losses = [(await trainer.update(x, false)).loss, (await trainer.update(x, false)).loss];
      losses.forEach((l, i) => {
        expect(Math.abs(l - want.losses[i]) / want.losses[i], `loss ${i}`).toBeLessThan(1e-5);
      });
      for (const name of names) {
        const got = await values(trainer.vars[name].value);
        const diff = Math.max(...got.map((g, i) => Math.abs(g - want[name][i])));
        expect(diff, `${name} after two steps`).toBeLessThan(1e-5);
      }
      // the steps moved every parameter (the comparison is not of two untouched inits)
      for (const name of names) {
        const moved = Math.max(...init[name].map((v, i) => Math.abs(v - want[name][i])));
        expect(moved, `${name} moved`).toBeGreaterThan(1e-3);
      }
      x.dispose();
      trainer.dispose();
    },
  );

  it.skipIf(noNumpy !== undefined)(
    'bench --json has a TopK trainingStep row for cpu with ratioToNumpy (measured in the same run)',
    async () => {
      const report = await runBench(
        { reps: 1, batch: 64, d: 16, features: 48, includeTs: false, noNumpy: false, k: 4 },
        () => {},
      );
      const row = report.trainingStep.find((t) => t.backend === 'cpu' && t.arch === 'topk');
      expect(row).toBeDefined();
      expect(row?.shape).toBe('batch 64, d 16, F 48, k 4');
      expect(row?.ratioToNumpy).toBeGreaterThan(0);
      expect(report.numpyTopkStep.some((n) => n.available)).toBe(true);
      expect(report.trainingStep.find((t) => t.backend === 'cpu' && t.arch === 'standard')).toBeDefined();
      // the small Standard step (d 144, F 576, batch 1024) beside numpy's at that size
      const small = report.trainingStep.find((t) => t.backend === 'cpu' && t.size === 'small');
      expect(small?.shape).toBe('batch 1024, d 144, F 576');
      expect(small?.ratioToNumpy).toBeGreaterThan(0);
      expect(report.smallStepShape).toEqual({ batch: 1024, d: 144, features: 576 });
      expect(report.numpySmallStep?.some((n) => n.available)).toBe(true);
      // the main sizes' Standard row comes first (what a reader of --json looks up)
      expect(report.trainingStep.find((t) => t.arch === 'standard')?.size).toBeUndefined();
    },
  );
});
