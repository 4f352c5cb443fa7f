import { describe, expect, it } from 'vitest';
import { groupSparsity } from './groups.js';

describe('groupSparsity', () => {
  it('sums firing frequencies per contiguous group and counts the never-fired features', () => {
    const density = Float64Array.from([0.5, 0, 0.25, 0.25, 0, 0, 1, 0.125]);
    const base = { deadFraction: 3 / 8, dead: 3, batches: 1, tokens: 8 };
    expect(groupSparsity({ density, ...base }, 2)).toEqual({ l0: [1, 1.125], deadFraction: [0.25, 0.5] });
    expect(groupSparsity({ density, ...base }, 4)).toEqual({
      l0: [0.5, 0.5, 0, 1.125],
      deadFraction: [0.5, 0, 1, 0],
    });
    expect(() => groupSparsity({ density, ...base }, 3)).toThrow(
      'groupSparsity: groups must be a positive integer dividing the 8 features, got 3',
    );
  });
});
