import '@dictlearn/backend-cpu/register';
import { tensor, useBackend } from '@dictlearn/core';
import { mmcs } from '@dictlearn/eval';
import { beforeAll, describe, expect, it } from 'vitest';
import { firingFrequency, matchFeatures, topSamples, unitRow } from './features.js';

beforeAll(() => useBackend('cpu'));

describe('matchFeatures', () => {
  it('matches each learned row to its nearest true feature (hand-computed)', () => {
    // Truth: e0, e1 in 2-d. Learned: (3, 4) → cos 0.8 to e1 (0.6 to e0); (−1, 0) → cos 0 to e1
    // (−1 to e0); (2, 0) → cos 1 to e0; a zero row → cosine 0 to both, matched to T0.
    const truth = Float32Array.from([1, 0, 0, 1]);
    const learned = Float32Array.from([3, 4, -1, 0, 2, 0, 0, 0]);
    expect(matchFeatures(learned, truth, 2)).toEqual([
      { learned: 2, truth: 0, cos: 1 },
      { learned: 0, truth: 1, cos: expect.closeTo(0.8, 6) },
      { learned: 1, truth: 1, cos: 0 },
      { learned: 3, truth: 0, cos: 0 },
    ]);
  });

  it("gives each learned row the same best cosine as @dictlearn/eval's mmcs", async () => {
    let s = 7;
    const rand = () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return (s / 2 ** 31) * 2 - 1;
    };
    const d = 16;
    const learned = Float32Array.from({ length: 40 * d }, rand);
    const truth = Float32Array.from({ length: 24 * d }, rand);
    const a = tensor(learned, [40, d]);
    const b = tensor(truth, [24, d]);
    const ref = await mmcs(a, b);
    a.dispose();
    b.dispose();
    const ours = matchFeatures(learned, truth, d);
    for (const m of ours) expect(m.cos).toBeCloseTo(ref.maxCos[m.learned], 5);
    expect(ours.map((m) => m.learned).sort((x, y) => x - y)).toEqual([...Array(40).keys()]);
  });
});

describe('firing statistics', () => {
  // Codes [3 samples, 2 features].
  const codes = Float32Array.from([0.5, 0, 0, 2, 1.5, 3]);
  it('firingFrequency counts non-zero activations per feature', () => {
    expect(Array.from(firingFrequency(codes, 3, 2))).toEqual([2 / 3, 2 / 3]);
  });
  it('topSamples lists the largest activations of a feature, non-zero only', () => {
    expect(topSamples(codes, 3, 2, 0, 5)).toEqual([
      { sample: 2, activation: 1.5 },
      { sample: 0, activation: 0.5 },
    ]);
    expect(topSamples(codes, 3, 2, 1, 1)).toEqual([{ sample: 2, activation: 3 }]);
  });
  it('unitRow scales a row to unit norm', () => {
    expect(unitRow(Float32Array.from([9, 9, 3, 4]), 1, 2)).toEqual([0.6, 0.8]);
    expect(unitRow(Float32Array.from([0, 0]), 0, 2)).toEqual([0, 0]);
  });
});
