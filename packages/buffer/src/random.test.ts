import { philox4x32 } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { philoxWasm } from './philox-wasm.js';
import {
  belowNormalCdf,
  cdfBound,
  cdfBoundLogMiss,
  erfc,
  normalCdf,
  normalCdfUpperIndex,
  normalQuantile,
  PhiloxStream,
} from './random.js';

describe('Philox in WebAssembly', () => {
  it('computes the same blocks as core’s philox4x32', () => {
    const w = philoxWasm();
    expect(w).not.toBeNull();
    const { fill, words } = w!;
    // counters and keys spanning the whole uint32 range, c0 wrapping past 2^32
    const cases = [
      [0, 0, 0, 0, 0, 0],
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
      [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0],
      [0xfffffffe, 7, 1, 2, 123456789, 42],
    ];
    for (let i = 0; i < 200; i++) {
      cases.push(
        Array.from({ length: 6 }, (_, k) => (Math.imul(i + 1, 0x9e3779b1) ^ (k * 0x85ebca6b)) >>> 0),
      );
    }
    for (const [c0, c1, c2, c3, k0, k1] of cases) {
      fill(0, 3, c0, c1, c2, c3, k0, k1);
      for (let b = 0; b < 3; b++) {
        const want = philox4x32([(c0 + b) >>> 0, c1, c2, c3], [k0, k1]);
        expect(Array.from(words.subarray(4 * b, 4 * b + 4))).toEqual(Array.from(want));
      }
    }
  });

  it('matches the Philox-4x32-10 known-answer vector (Random123)', () => {
    const { fill, words } = philoxWasm()!;
    fill(0, 1, 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0);
    expect(Array.from(words.subarray(0, 4))).toEqual([0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
  });
});

describe('PhiloxStream', () => {
  it('reads the words of counters [k, c1, c2, c3] in order, with or without WebAssembly', () => {
    const seed = 2 ** 40 + 12345;
    const key = [seed >>> 0, Math.floor(seed / 2 ** 32)];
    const want: number[] = [];
    for (let k = 0; k < 40; k++) want.push(...philox4x32([k, 77, 3, 1], key));
    for (const wasm of [true, false]) {
      const s = new PhiloxStream(seed, { wasm });
      expect(s.usesWasm).toBe(wasm);
      for (const hint of [1, 16, 1000]) {
        s.reset(77, 3, 1, hint);
        expect(Array.from({ length: want.length }, () => s.word())).toEqual(want);
      }
    }
  });

  it('addNormals adds the same values as repeated normal() calls', () => {
    const a = new PhiloxStream(5).reset(1, 2, 3, 10);
    const b = new PhiloxStream(5, { wasm: false }).reset(1, 2, 3, 5000);
    const n = 20_000; // enough to meet the wedge and tail paths many times
    const one = Float32Array.from({ length: n }, () => 0.5 * a.normal());
    const bulk = new Float32Array(n);
    b.addNormals(bulk, 0, n, 0.5);
    expect(bulk).toEqual(one);
  });

  it('draws standard normals: moments, tails and the Kolmogorov–Smirnov distance', () => {
    const n = 1 << 20;
    const z = new Float64Array(n);
    const s = new PhiloxStream(11).reset(0, 0, 9, n);
    for (let i = 0; i < n; i++) z[i] = s.normal();
    let m1 = 0;
    let m2 = 0;
    let m4 = 0;
    let beyondR = 0;
    let beyond4 = 0;
    for (const v of z) {
      m1 += v;
      m2 += v * v;
      m4 += v ** 4;
      if (Math.abs(v) > 3.442619855899) beyondR++;
      if (Math.abs(v) > 4) beyond4++;
    }
    m1 /= n;
    m2 /= n;
    m4 /= n;
    // standard errors: mean 1/√n, E z² √(2/n), E z⁴ √(96/n); allow 5 of them
    expect(Math.abs(m1)).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(m2 - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    expect(Math.abs(m4 - 3)).toBeLessThan(5 * Math.sqrt(96 / n));
    // the ziggurat's tail (|z| > r) and beyond 4: binomial counts within 5 standard deviations
    for (const [count, x] of [
      [beyondR, 3.442619855899],
      [beyond4, 4],
    ]) {
      const p = 2 * (1 - normalCdf(x));
      expect(Math.abs(count - n * p)).toBeLessThan(5 * Math.sqrt(n * p * (1 - p)));
    }
    // KS distance against Φ: the 1% critical value is 1.63/√n
    z.sort();
    let ks = 0;
    for (let i = 0; i < n; i++) {
      const f = normalCdf(z[i]);
      ks = Math.max(ks, Math.abs(f - i / n), Math.abs(f - (i + 1) / n));
    }
    expect(ks).toBeLessThan(1.63 / Math.sqrt(n));
  });

  it('uniform draws are core’s 24-bit uniforms', () => {
    const s = new PhiloxStream(3).reset(0, 0, 1);
    const w = philox4x32([0, 0, 0, 1], [3, 0]);
    expect(s.uniform()).toBe((w[0] >>> 8) * 2 ** -24);
    expect(s.uniformPositive()).toBe(((w[1] >>> 8) + 1) * 2 ** -24);
  });
});

describe('normal distribution helpers', () => {
  it('erfc and Φ match reference values to 1.2e-7 relative', () => {
    // values from scipy.special.erfc / scipy.stats.norm.cdf
    const cases: [number, number][] = [
      [0, 1],
      [0.5, 0.4795001221869535],
      [1, 0.15729920705028513],
      [2, 0.004677734981047266],
      [3, 2.209049699858544e-5],
      [-1, 1.8427007929497148],
    ];
    for (const [x, want] of cases) expect(Math.abs(erfc(x) / want - 1)).toBeLessThan(1.2e-7);
    expect(Math.abs(normalCdf(1.96) - 0.9750021048517795)).toBeLessThan(1e-7);
    expect(Math.abs(normalCdf(-3) / 0.0013498980316301035 - 1)).toBeLessThan(2e-7);
  });

  it('Φ⁻¹ inverts Φ across the range', () => {
    expect(normalQuantile(0.5)).toBeCloseTo(0, 7);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963984540054, 6);
    expect(normalQuantile(1e-4)).toBeCloseTo(-3.719016485455709, 5);
    for (const p of [1e-6, 0.001, 0.02, 0.05, 0.3, 0.7, 0.99]) {
      expect(Math.abs(normalCdf(normalQuantile(p)) / p - 1)).toBeLessThan(1e-6);
    }
    expect(normalQuantile(0)).toBe(Number.NEGATIVE_INFINITY);
    expect(normalQuantile(1)).toBe(Number.POSITIVE_INFINITY);
  });

  it('the tabulated bracket of Φ decides v < Φ(x) exactly as Φ does', () => {
    const s = new PhiloxStream(8).reset(0, 0, 1, 1 << 16);
    for (let i = 0; i < 50_000; i++) {
      const x = (s.uniform() - 0.5) * 20; // beyond the table's [−8, 8] too
      const phi = normalCdf(x);
      // v near Φ(x) half the time, to exercise the exact fallback
      const v = i % 2 ? s.uniform() : Math.max(0, phi + (s.uniform() - 0.5) * 1e-3);
      expect(belowNormalCdf(v, x)).toBe(v < phi);
      const k = normalCdfUpperIndex(x);
      expect(cdfBound(k)).toBeGreaterThanOrEqual(phi);
      expect(cdfBound(k) - phi).toBeLessThan(0.007);
      expect(cdfBoundLogMiss(k)).toBe(Math.log1p(-cdfBound(k)));
    }
  });
});
