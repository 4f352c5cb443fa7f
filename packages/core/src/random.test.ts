import { describe, expect, it } from 'vitest';
import {
  philox4x32,
  philoxKey,
  philoxNormal,
  philoxUniform,
  philoxUnitRows,
  philoxWords,
  RANDOM_PURPOSE_TAGS,
  type RandomPurpose,
  seedFor,
} from './random.js';

describe('Philox-4x32-10', () => {
  // Known-answer vectors from Random123's kat_vectors (philox4x32_10).
  it('matches the Random123 known-answer vectors', () => {
    expect(Array.from(philox4x32([0, 0, 0, 0], [0, 0]))).toEqual([
      0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8,
    ]);
    expect(
      Array.from(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])),
    ).toEqual([0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    expect(
      Array.from(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    ).toEqual([0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
  });

  it('lays the stream out block by block: element 4b+j is word j of block b', () => {
    const words = philoxWords(10, 5, 2);
    expect(Array.from(words.subarray(4, 8))).toEqual(Array.from(philox4x32([1, 0, 2, 0], [5, 0])));
    expect(Array.from(philoxWords(3, 2 ** 32 + 9))).toEqual(
      Array.from(philox4x32([0, 0, 0, 0], [9, 1])).slice(0, 3),
    );
  });

  it('uniform values are (word >>> 8) · 2⁻²⁴, a prefix of a longer draw', () => {
    const w = philoxWords(6, 11);
    const u = philoxUniform(6, 11);
    for (let i = 0; i < 6; i++) expect(u[i]).toBe((w[i] >>> 8) / 2 ** 24);
    expect(Array.from(philoxUniform(4, 11))).toEqual(Array.from(u.subarray(0, 4)));
  });

  it('normal values follow Box–Muller on word pairs and have mean ≈ 0, std ≈ 1', () => {
    const w = philoxWords(2, 3);
    const u1 = ((w[0] >>> 8) + 1) / 2 ** 24;
    const u2 = (w[1] >>> 8) / 2 ** 24;
    const z = philoxNormal(2, 3);
    expect(z[0]).toBe(Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)));
    expect(z[1]).toBe(Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.sin(2 * Math.PI * u2)));
    const many = philoxNormal(100_000, 1);
    const mean = many.reduce((a, b) => a + b, 0) / many.length;
    const std = Math.sqrt(many.reduce((a, b) => a + (b - mean) ** 2, 0) / many.length);
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(std - 1)).toBeLessThan(0.01);
  });

  it('unit rows: normals of the stream scaled to the requested norm, rounded once', () => {
    const rows = philoxUnitRows(3, 5, 4, 1, 0.1);
    const z = philoxNormal(15, 4, 1);
    for (let r = 0; r < 3; r++) {
      const row = Array.from(rows.subarray(r * 5, r * 5 + 5));
      expect(Math.hypot(...row)).toBeCloseTo(0.1, 7);
      const n = Math.hypot(...Array.from(z.subarray(r * 5, r * 5 + 5)));
      expect(row[2]).toBe(Math.fround((z[r * 5 + 2] * 0.1) / n));
    }
  });

  it('rejects seeds that are not non-negative safe integers', () => {
    expect(() => philoxUniform(1, -1)).toThrow(/seed must be a non-negative safe integer, got -1/);
    expect(() => philoxUniform(1, 1.5)).toThrow(/got 1.5/);
  });
});

describe('purpose key domains', () => {
  const purposes = Object.keys(RANDOM_PURPOSE_TAGS) as RandomPurpose[];

  it("the 'user' domain is the plain seed (the Random123 layout); others set the tag above bit 53", () => {
    expect(philoxKey(5)).toEqual([5, 0]);
    expect(philoxKey(seedFor('user', 2 ** 32 + 9))).toEqual([9, 1]);
    // tag t lands at bit 21 of the high word: 2^21·t, hand-computed
    expect(philoxKey(seedFor('init', 0))).toEqual([0, 0x200000]);
    expect(philoxKey(seedFor('groundTruth', 2 ** 52 + 3))).toEqual([3, 3 * 0x200000 + 2 ** 20]);
    expect(philoxKey(seedFor('test', 2 ** 53 - 1))).toEqual([0xffffffff, (7 * 0x200000 + 2 ** 21 - 1) >>> 0]);
    expect(Array.from(philoxWords(4, seedFor('data', 7), 3))).toEqual(
      Array.from(philox4x32([0, 0, 3, 0], [7, 2 * 0x200000])),
    );
  });

  it('(seed, purpose) → key is injective: no two purposes share a key, whatever the seeds', () => {
    const seeds = [0, 1, 2, 7, 2 ** 21, 2 ** 32, 2 ** 32 + 1, 2 ** 52, 2 ** 53 - 1];
    const keys = new Map<string, string>();
    for (const p of purposes) {
      for (const s of seeds) {
        const k = philoxKey(seedFor(p, s)).join(',');
        expect(keys.get(k), `${p}/${s} collides`).toBeUndefined();
        keys.set(k, `${p}/${s}`);
      }
    }
    expect(keys.size).toBe(purposes.length * seeds.length);
  });

  it('equal seeds for different purposes give unrelated normals (|corr| small), not the same numbers', () => {
    const n = 4096;
    for (const s of [0, 1, 42]) {
      const a = philoxNormal(n, seedFor('init', s));
      for (const p of purposes.filter((q) => q !== 'init')) {
        const b = philoxNormal(n, seedFor(p, s));
        let dot = 0;
        let same = 0;
        for (let i = 0; i < n; i++) {
          dot += a[i] * b[i];
          if (a[i] === b[i]) same++;
        }
        expect(Math.abs(dot / n), `${p} vs init, seed ${s}`).toBeLessThan(0.08); // 5σ of 1/√n
        expect(same).toBeLessThan(3);
      }
    }
  });

  it('refuses unknown purposes and bad seeds, naming them', () => {
    expect(() => seedFor('weights' as RandomPurpose, 1)).toThrow("unknown purpose 'weights'");
    expect(() => seedFor('init', -1)).toThrow('seed must be a non-negative safe integer, got -1');
    expect(() => philoxKey({ seed: 1.5, purpose: 'init' })).toThrow('got 1.5');
  });
});
