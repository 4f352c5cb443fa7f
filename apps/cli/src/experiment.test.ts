import '@dictlearn/backend-cpu/register';
import { describe, expect, it } from 'vitest';
import {
  EXPERIMENTS,
  formatExperiment,
  interpolate,
  runExperiment,
  TINY_SIZE,
} from './commands/experiment.js';

// Every recipe end to end at a tiny size (seconds): the tables have one row per dictionary and
// every figure is a finite number in its range. The figures themselves are checked where they
// are computed (eval's fixtures, the plugins' torch fixtures); the recipes' default-size
// results are in the CLI README.

describe.each(EXPERIMENTS)('dictlearn experiment %s --tiny', (name) => {
  it('trains, scores and prints its tables', async () => {
    const r = await runExperiment(name, { seed: 1, size: TINY_SIZE, backend: 'cpu' });
    expect(r.name).toBe(name);
    expect(r.tables.length).toBeGreaterThan(0);
    const rows = { 'l1-sweep': 6, 'dict-size': 4, encoders: 9, heads: 2 }[name];
    expect(r.tables[0].rows.length).toBe(rows);
    for (const t of r.tables) for (const row of t.rows) expect(row.length).toBe(t.columns.length);
    for (const rec of r.records) {
      for (const key of ['l0', 'fve', 'mmcs', 'recovered']) {
        if (key in rec) expect(Number.isFinite(rec[key] as number)).toBe(true);
      }
      if ('recovered' in rec) expect(rec.recovered as number).toBeGreaterThanOrEqual(0);
      if ('mmcs' in rec) expect(rec.mmcs as number).toBeLessThanOrEqual(1 + 1e-6);
    }
    const text = formatExperiment(r);
    expect(text).toContain(`experiment ${name} (seed 1)`);
    expect(text).toContain(r.tables[0].columns.join('  ').split('  ')[0]);
  });
});

describe('matched-L0 interpolation', () => {
  it('is linear in L0 between the runs that bracket it, and clamps (flagged) outside', () => {
    const runs = [
      { x: 12, y: 0.9 },
      { x: 4, y: 0.5 },
      { x: 8, y: 0.8 },
    ];
    expect(interpolate(runs, 6)).toEqual({ y: 0.65, clamped: false });
    expect(interpolate(runs, 10).y).toBeCloseTo(0.85, 12);
    expect(interpolate(runs, 2)).toEqual({ y: 0.5, clamped: true });
    expect(interpolate(runs, 12)).toEqual({ y: 0.9, clamped: false });
  });
});
