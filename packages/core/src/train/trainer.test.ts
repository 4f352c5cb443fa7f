import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from '../backend.js';
import { tensor } from '../ops/create.js';
import { lrMultiplier, sparsityScale } from '../schedule.js';
import { DEAD_LOG_STEPS, Trainer, weightedSampleWithoutReplacement } from './trainer.js';

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
  it('rebuilds the first n dead features from inputs (DL resample_neurons): decoder row x/‖x‖, encoder x·0.2·alive norm, b_enc 0, moments zeroed', async () => {
    const arch = standard({ l1Penalty: 0.01 });
    const F = 8;
    const tr = new Trainer(
      {
        architecture: arch,
        dictSize: F,
        lr: 1e-3,
        warmupSteps: 0,
        sparsityWarmupSteps: 0,
        resampleSteps: 2,
        seed: 5,
      },
      4,
      10,
    );
    // Features 4–7 can never fire (huge negative encoder bias): 4 dead, more than the 3 rows, so
    // only 4, 5, 6 are rebuilt. Their encoder columns are 100× the alive ones, so a mean that
    // counted any dead feature as alive (7 included) would be far off.
    tr.vars.b_enc.assign(tensor([0.5, 0.5, 0.5, 0.5, -1000, -1000, -1000, -1000]));
    const enc0 = (await tr.vars.W_enc.value.array()) as number[][];
    tr.vars.W_enc.assign(tensor(enc0.map((r) => r.map((v, j) => (j >= 4 ? 100 * v : v)))));
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
    expect(tr.resampled).toEqual({ times: 1, features: 3 });
    const wDec = (await tr.vars.W_dec.value.array()) as number[][];
    const wEnc = (await tr.vars.W_enc.value.array()) as number[][];
    const bEnc = Array.from(await tr.vars.b_enc.value.data());
    const col = (w: number[][], j: number) => w.map((r) => r[j]);
    // The alive columns are untouched by the resample, so they hold the values it saw (after
    // step 2's update); their mean norm, by hand in float64:
    const aliveNorm = [0, 1, 2, 3].map((j) => Math.hypot(...col(wEnc, j))).reduce((a, b) => a + b) / 4;
    const used = new Set<number>();
    for (const j of [4, 5, 6]) {
      expect(bEnc[j] === 0).toBe(true); // ±0: the old bias times a 0 mask
      // decoder row is one of the inputs, normalised
      const match = rows.findIndex((r) => {
        const n = Math.hypot(...r);
        return r.every((v, i) => Math.abs(v / n - wDec[j][i]) < 1e-6);
      });
      expect(match).toBeGreaterThanOrEqual(0);
      used.add(match);
      // encoder direction is the same input times 0.2 · mean alive encoder norm
      const e = col(wEnc, j);
      for (let i = 0; i < 4; i++) expect(e[i]).toBeCloseTo(rows[match][i] * 0.2 * aliveNorm, 6);
    }
    expect(used.size).toBe(3); // sampled without replacement
    // Feature 7 is dead but beyond n = 3 rows: untouched (no gradient ever reached it).
    expect(col(wEnc, 7)).toEqual(col(wEncBefore, 7));
    expect(bEnc[7]).toBe(-1000);
    const st = tr.optimizer.state();
    const m = (await st.m.W_dec.array()) as number[][];
    expect(m[4]).toEqual([0, 0, 0, 0]);
    const mEnc = (await st.m.W_enc.array()) as number[][];
    expect(col(mEnc, 6)).toEqual([0, 0, 0, 0]);
    expect(Array.from(await st.v.b_enc.data())[5]).toBe(0);
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

describe('logged dead fraction', () => {
  it(`counts the features silent for the last ${DEAD_LOG_STEPS} steps, from the step they cross it`, async () => {
    const tr = new Trainer(
      { architecture: standard({ l1Penalty: 0.01 }), dictSize: 8, lr: 1e-4, warmupSteps: 0, seed: 3 },
      4,
      DEAD_LOG_STEPS + 10,
    );
    // Features 5–7 can never fire (a huge negative encoder bias); 0–4 fire on every row (a large
    // positive bias that a small lr cannot undo), so exactly 3 of 8 go dead at step DEAD_LOG_STEPS.
    tr.vars.b_enc.assign(tensor([50, 50, 50, 50, 50, -1000, -1000, -1000]));
    const x = tensor([
      [1, 2, 0.5, 1],
      [2, 0.1, 1, 1],
    ]);
    const logged: number[] = [];
    for (let s = 0; s < DEAD_LOG_STEPS + 2; s++)
      logged.push((await tr.update(x, true)).dead_fraction as number);
    x.dispose();
    // After update s the silent features have been silent for s + 1 steps.
    expect(logged[0]).toBe(0);
    expect(logged[DEAD_LOG_STEPS - 2]).toBe(0);
    expect(logged[DEAD_LOG_STEPS - 1]).toBe(3 / 8);
    expect(logged[DEAD_LOG_STEPS + 1]).toBe(3 / 8);
  });
});
