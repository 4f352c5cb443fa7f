import type { NestedArray } from '../types.js';

/** Tolerances of {@link compareValues}: |a − b| ≤ atol + rtol·|b|. */
export interface Tolerance {
  /** Relative tolerance. */
  rtol: number;
  /** Absolute tolerance. */
  atol: number;
}

/**
 * Compares actual with expected values elementwise. NaN matches NaN and infinities must match
 * exactly. Returns `null` when they agree, else a message naming the first mismatches.
 */
export function compareValues(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  what = 'values',
): string | null {
  if (actual.length !== expected.length) {
    return `${what}: ${actual.length} values, expected ${expected.length}`;
  }
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const ok =
      (Number.isNaN(e) && Number.isNaN(a)) ||
      (!Number.isFinite(e) && a === e) ||
      (Number.isFinite(e) && Math.abs(a - e) <= tol.atol + tol.rtol * Math.abs(e));
    if (!ok) {
      count++;
      if (bad.length < 5) bad.push(`[${i}] got ${a}, expected ${e}`);
    }
  }
  return count === 0 ? null : `${what}: ${count} of ${expected.length} differ: ${bad.join('; ')}`;
}

/** Flattens nested arrays of numbers. */
export function flat(x: NestedArray): number[] {
  return Array.isArray(x) ? x.flatMap((v) => flat(v)) : [x];
}

/**
 * Deterministic test inputs in [−1, 1): a linear congruential sequence from `seed` (the same
 * values on every machine and in every backend's tests).
 */
export function lcgValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}
