import { DictlearnError } from '@dictlearn/core';
import type { FeatureDensity } from './density.js';

/** Sparsity of each group of features, from {@link groupSparsity}. */
export type GroupSparsity = {
  /** Per group: mean number of its features active per row (the group's L0). Sums to the L0. */
  l0: number[];
  /** Per group: fraction of its features that never fired. */
  deadFraction: number[];
};

/**
 * L0 and dead fraction of each of `groups` equal, contiguous groups of features (features
 * g·F/groups … (g+1)·F/groups − 1 form group g): the per-head figures of a block-diagonal
 * dictionary, whose head h owns exactly those features. Computed from
 * {@link featureDensity}'s result: a group's L0 is the sum of its features' firing frequencies.
 *
 * ```ts
 * const { l0, deadFraction } = groupSparsity(await featureDensity(dict, batches, { maxBatches: 4 }), 12);
 * ```
 */
export function groupSparsity(density: FeatureDensity, groups: number): GroupSparsity {
  const F = density?.density?.length;
  if (!Number.isInteger(groups) || groups < 1 || !F || F % groups !== 0) {
    throw new DictlearnError(
      'groupSparsity',
      `groups must be a positive integer dividing the ${F ?? 0} features, got ${String(groups)}`,
    );
  }
  const size = F / groups;
  const l0: number[] = [];
  const deadFraction: number[] = [];
  for (let g = 0; g < groups; g++) {
    let sum = 0;
    let dead = 0;
    for (let i = g * size; i < (g + 1) * size; i++) {
      sum += density.density[i];
      if (density.density[i] === 0) dead++;
    }
    l0.push(sum);
    deadFraction.push(dead / size);
  }
  return { l0, deadFraction };
}
