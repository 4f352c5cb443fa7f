import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  Adam,
  findBackend,
  normalizeRows,
  randomNormal,
  registerBackend,
  useBackend,
  Variable,
} from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { runBench, type TopkParams, topkStep } from './bench.js';

if (!findBackend('cpu')) registerBackend(createCpuBackend());
const script = fileURLToPath(new URL('../../python/numpy_topk_step.py', import.meta.url));
const numpy = spawnSync('python3', ['-c', 'import numpy'], { encoding: 'utf8' });
const noNumpy =
  numpy.status !== 0 ? `python3 with numpy is not available: ${numpy.stderr.trim()}` : undefined;

describe(`the bench's TopK step${noNumpy ? ` (skipped: ${noNumpy})` : ''}`, () => {
  it.skipIf(noNumpy !== undefined)(
    'matches the numpy TopK step written the dense way: two steps from one init, losses and every parameter',
    async () => {
      await useBackend('cpu');
      const [B, d, F, k, lr] = [48, 12, 40, 5, 1e-3];
      const o = { backend: 'cpu' };
      const init = {
        W_dec: normalizeRows(randomNormal([F, d], { seed: 21, ...o })),
        W_enc: randomNormal([F, d], { seed: 22, std: 0.3, ...o }),
        b_enc: randomNormal([F], { seed: 23, std: 0.1, ...o }),
        b_dec: randomNormal([d], { seed: 24, std: 0.1, ...o }),
      };
      const x = randomNormal([B, d], { seed: 25, ...o });
      const values = async (t: { data(): Promise<ArrayLike<number>> }) => Array.from(await t.data());
      const input = {
        shape: { B, d, F },
        k,
        lr,
        x: await values(x),
        W_enc: await values(init.W_enc),
        b_enc: await values(init.b_enc),
        W_dec: await values(init.W_dec),
        b_dec: await values(init.b_dec),
      };
      const r = spawnSync('python3', [script, '--check'], { input: JSON.stringify(input), encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const want = JSON.parse(r.stdout) as Record<string, number[]> & { losses: number[] };

      const p: TopkParams = {
        W_enc: new Variable(init.W_enc, 'W_enc'),
        b_enc: new Variable(init.b_enc, 'b_enc'),
        W_dec: new Variable(init.W_dec, 'W_dec'),
        b_dec: new Variable(init.b_dec, 'b_dec'),
      };
      const adam = new Adam([p.W_enc, p.b_enc, p.W_dec, p.b_dec], { unitNormRows: [p.W_dec] });
      const losses = [await topkStep(p, adam, x, k, lr), await topkStep(p, adam, x, k, lr)];
      losses.forEach((l, i) => {
        expect(Math.abs(l - want.losses[i]) / want.losses[i], `loss ${i}`).toBeLessThan(1e-5);
      });
      for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
        const got = await values(p[name].value);
        const diff = Math.max(...got.map((g, i) => Math.abs(g - want[name][i])));
        expect(diff, `${name} after two steps`).toBeLessThan(1e-5);
      }
      // the step moved the parameters (the comparison is not of two untouched inits)
      const moved = Math.max(...input.W_enc.map((v, i) => Math.abs(v - want.W_enc[i])));
      expect(moved).toBeGreaterThan(1e-3);
      adam.dispose();
      x.dispose();
      for (const v of Object.values(p)) v.dispose();
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
    },
  );
});
