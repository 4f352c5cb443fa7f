import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from '../backend.js';
import { tensor } from '../ops/create.js';
import { lrMultiplier, sparsityScale } from '../schedule.js';
import { Trainer, weightedSampleWithoutReplacement } from './trainer.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

describe('schedules (DL LambdaLR semantics)', () => {
  const o = { steps: 100, warmupSteps: 10, sparsityWarmupSteps: 20, decayStart: 80, resampleSteps: 50 };
  it('warm-up from 0, restart after each resample, linear decay to 0', () => {
    expect(lrMultiplier(0, o)).toBe(0);
    expect(lrMultiplier(5, o)).toBe(0.5);
    expect(lrMultiplier(30, o)).toBe(1);
    expect(lrMultiplier(50, o)).toBe(0); // warm-up restarts at the resample
    expect(lrMultiplier(55, o)).toBe(0.5);
    expect(lrMultiplier(90, o)).toBeCloseTo(0.5, 12); // (100 − 90) / (100 − 80)
    expect(sparsityScale(5, o)).toBe(0.25);
    expect(sparsityScale(40, o)).toBe(1);
  });
});

describe('resampling (REFERENCE)', () => {
  it('rebuilds dead features from inputs: decoder row x/‖x‖, encoder x·0.2·alive norm, b_enc 0, moments zeroed', async () => {
    const arch = standard({ l1Penalty: 0.01 });
    const tr = new Trainer(
      {
        architecture: arch,
        dictSize: 6,
        lr: 1e-3,
        warmupSteps: 0,
        sparsityWarmupSteps: 0,
        resampleSteps: 2,
        seed: 5,
      },
      4,
      10,
    );
    // Features 4 and 5 can never fire: huge negative encoder bias.
    tr.vars.b_enc.assign(tensor([0.5, 0.5, 0.5, 0.5, -1000, -1000]));
    const rows = [
      [1, 2, 0.5, 1],
      [2, 0.1, 1, 1],
      [0.3, 1, 2, 0.2],
    ];
    const x = tensor(rows);
    await tr.update(x, false); // step 0: silent for 1 step, not > R/2
    await tr.update(x, false); // step 1: no check (1 % 2 ≠ 0)
    const wEncBefore = (await tr.vars.W_enc.value.array()) as number[][];
    expect(tr.resampled.times).toBe(0);
    // Step 2 updates, then resamples with the parameters after that update.
    await tr.update(x, false);
    expect(tr.resampled.times).toBe(1);
    const dead = [4, 5];
    expect(tr.resampled.features).toBe(2);
    const wDec = (await tr.vars.W_dec.value.array()) as number[][];
    const wEnc = (await tr.vars.W_enc.value.array()) as number[][];
    const bEnc = Array.from(await tr.vars.b_enc.value.data());
    const used = new Set<number>();
    for (const j of dead) {
      expect(bEnc[j] === 0).toBe(true); // ±0: the old bias times a 0 mask
      // decoder row is one of the inputs, normalised
      const match = rows.findIndex((r) => {
        const n = Math.hypot(...r);
        return r.every((v, i) => Math.abs(v / n - wDec[j][i]) < 1e-6);
      });
      expect(match).toBeGreaterThanOrEqual(0);
      used.add(match);
      // encoder direction is the same input times 0.2 · mean alive encoder norm
      const ratio = wEnc.map((row) => row[j]).map((v, i) => v / rows[match][i]);
      for (const r of ratio) expect(r).toBeCloseTo(ratio[0], 5);
      expect(ratio[0]).toBeGreaterThan(0);
    }
    expect(used.size).toBe(2); // sampled without replacement
    // alive norm: mean column norm of W_enc over alive features, measured after step 2's update;
    // close to the norm before it since lr is small.
    const aliveNorm =
      [0, 1, 2, 3].map((j) => Math.hypot(...wEncBefore.map((r) => r[j]))).reduce((a, b) => a + b) / 4;
    const ratio4 = wEnc[0][4] / rows[[...used][0]][0];
    expect(ratio4 / 0.2).toBeGreaterThan(aliveNorm * 0.95);
    expect(ratio4 / 0.2).toBeLessThan(aliveNorm * 1.05);
    const st = tr.optimizer.state();
    const m = (await st.m.W_dec.array()) as number[][];
    expect(m[4]).toEqual([0, 0, 0, 0]);
    const mEnc = (await st.m.W_enc.array()) as number[][];
    expect(mEnc.map((r) => r[5])).toEqual([0, 0, 0, 0]);
    expect(Array.from(await st.v.b_enc.data())[4]).toBe(0);
    expect(m[0].some((v) => v !== 0)).toBe(true); // alive features keep their moments
    tr.dispose();
  });

  it('weighted sampling without replacement follows the weights and never picks zero weight', () => {
    expect(Array.from(weightedSampleWithoutReplacement([0, 0, 3, 0], 1, 1, 0))).toEqual([2]);
    const counts = [0, 0, 0];
    for (let s = 0; s < 3000; s++) counts[weightedSampleWithoutReplacement([1, 2, 7], 1, 9, s)[0]]++;
    // expected 300 / 600 / 2100; binomial sd ≤ 25
    expect(Math.abs(counts[0] - 300)).toBeLessThan(100);
    expect(Math.abs(counts[2] - 2100)).toBeLessThan(100);
    expect(new Set(weightedSampleWithoutReplacement([1, 1, 1, 1], 4, 2, 3)).size).toBe(4);
  });
});
