import { describe, expect, it } from 'vitest';
import { philox4x32, philoxKey, philoxNormal, philoxUniform, philoxUnitRows, philoxWords } from './random.js';
import { PHILOX_FIXTURE, seedOfPhiloxKey } from './testing/philox-fixture.js';

// The host Philox functions against an independent numpy implementation
// (scripts/make-philox-fixture.py, itself checked against the Random123 known-answer vectors):
// raw blocks, the block/stream layout of a draw, and the uniform, normal and unit-row mappings,
// bit for bit.

describe('Philox host functions match the numpy fixture', () => {
  it('raw blocks (Random123 vectors and counters with every word in play)', () => {
    for (const b of PHILOX_FIXTURE.blocks) {
      expect(Array.from(philox4x32(b.counter, b.key)), `counter ${b.counter} key ${b.key}`).toEqual(b.words);
    }
  });

  for (const d of PHILOX_FIXTURE.draws) {
    it(`key [${d.key}] stream ${d.stream}: ${d.n} words, uniforms in [${d.uniform.low}, ${d.uniform.high}), normals`, () => {
      const seed = seedOfPhiloxKey(d.key);
      expect(philoxKey(seed)).toEqual(d.key);
      expect(Array.from(philoxWords(d.n, seed, d.stream))).toEqual(d.words);
      expect(Array.from(philoxUniform(d.n, seed, d.stream, d.uniform.low, d.uniform.high))).toEqual(
        d.uniform.values,
      );
      expect(Array.from(philoxNormal(d.n, seed, d.stream, d.normal.mean, d.normal.std))).toEqual(
        d.normal.values,
      );
    });
  }

  it('unit rows', () => {
    for (const u of PHILOX_FIXTURE.unitRows) {
      const got = philoxUnitRows(u.rows, u.cols, seedOfPhiloxKey(u.key), u.stream, u.norm);
      expect(Array.from(got), `key [${u.key}]`).toEqual(u.values);
    }
  });
});
