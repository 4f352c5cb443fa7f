import { philoxKey } from '../random.js';
import fixture from './fixtures/philox.json' with { type: 'json' };

/**
 * Philox-4x32-10 values from an implementation independent of dictlearn's
 * (`scripts/make-philox-fixture.py`, numpy), so random ops are checked against something other
 * than the host functions every backend calls.
 */
export interface PhiloxFixture {
  /** Raw blocks: counter and key → four words (the Random123 vectors first). */
  blocks: { counter: number[]; key: [number, number]; words: number[] }[];
  /** Draws of n values of stream `stream` under `key`: words, uniforms and normals. */
  draws: {
    key: [number, number];
    stream: number;
    n: number;
    words: number[];
    uniform: { low: number; high: number; values: number[] };
    normal: { mean: number; std: number; values: number[] };
  }[];
  /** Unit-row draws (`randomUnitRows`). */
  unitRows: {
    key: [number, number];
    stream: number;
    rows: number;
    cols: number;
    norm: number;
    values: number[];
  }[];
}

/** The fixture (`fixtures/philox.json`). */
export const PHILOX_FIXTURE = fixture as unknown as PhiloxFixture;

/**
 * The plain seed whose Philox key is `key` (the fixture is keyed by raw keys; how seeds map to
 * keys is random.ts's business). Checked through `philoxKey`, so a change of that mapping shows
 * as one clear failure rather than as wrong random values.
 */
export function seedOfPhiloxKey(key: readonly number[]): number {
  const seed = key[0] + key[1] * 2 ** 32;
  const got = philoxKey(seed);
  if (got[0] !== key[0] || got[1] !== key[1]) {
    throw new Error(
      `philox.json: key [${key}] is not the key of plain seed ${seed} (philoxKey gives [${got}]); ` +
        'pick fixture keys that plain seeds reach and rerun scripts/make-philox-fixture.py',
    );
  }
  return seed;
}
