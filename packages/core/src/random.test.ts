import { describe, expect, it } from 'vitest';
import { philox4x32, philoxNormal, philoxUniform, philoxUnitRows, philoxWords } from './random.js';

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
