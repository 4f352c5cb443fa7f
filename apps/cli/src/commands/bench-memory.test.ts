// The bench's per-trainer memory figures on the CPU backend, checked against hand-computed sizes
// (float32): Standard's parameters are W_enc [d, F], b_enc [F], W_dec [F, d], b_dec [d].
import { describe, expect, it } from 'vitest';
import { runBench } from './bench.js';

describe('bench memory', () => {
  it('each training-step row reports peakBytes beside the floor params + 2×params + batch activations and features', async () => {
    const [B, d, F] = [64, 32, 48];
    const report = await runBench(
      { reps: 1, batch: B, d, features: F, includeTs: false, noNumpy: true, k: 8 },
      () => {},
    );
    for (const r of report.trainingStep) expect(r.memory).toBeDefined();
    const rows = report.trainingStep.filter(
      (r) => r.backend === 'cpu' && r.shape.startsWith(`batch ${B}, d ${d}, F ${F}`),
    );
    expect(rows.map((r) => r.arch)).toEqual(['standard', 'topk']);
    const standard = rows[0].memory!;
    const params = 4 * (2 * d * F + F + d);
    expect(standard.paramBytes).toBe(params);
    expect(standard.floorBytes).toBe(3 * params + 4 * B * (d + F));
    for (const r of rows) {
      const m = r.memory!;
      // The step holds at least the parameters, both Adam moments, the batch and the gradients.
      expect(m.peakBytes).toBeGreaterThan(4 * m.paramBytes);
      expect(m.peakToFloor).toBeCloseTo(m.peakBytes / m.floorBytes, 12);
      expect(m.devicePeakBytes).toBeUndefined(); // the CPU backend has no device counters
    }
  });
});
