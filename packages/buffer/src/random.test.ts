import { philox4x32 } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { bufferWasm, HEAP_AT, SCRATCH_AT, WORDS_AT } from './buffer-wasm.js';
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
import { ZIG_K, ZIG_R, ZIG_X } from './ziggurat.js';

/** The instance's Philox fill, reading back its words region. */
function wasmPhilox() {
  const w = bufferWasm();
  if (!w) return null;
  const words = () => new Uint32Array(w.memory.buffer, WORDS_AT, 4 * 4096);
  const fill = (n: number, ...counterKey: number[]) => {
    const [c0, c1, c2, c3, k0, k1] = counterKey;
    w.philox(WORDS_AT, n, c0, c1, c2, c3, k0, k1);
  };
  return { fill, words };
}
const simd = bufferWasm() !== null;

describe.skipIf(!simd)(
  `Philox in WebAssembly SIMD${simd ? '' : ' (skipped: no WebAssembly SIMD here)'}`,
  () => {
    it('computes the same blocks as core’s philox4x32', () => {
      const { fill, words } = wasmPhilox()!;
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
      // block counts around the four lanes computed at a time
      for (const [at, [c0, c1, c2, c3, k0, k1]] of cases.entries()) {
        const n = 1 + (at % 9);
        fill(n, c0, c1, c2, c3, k0, k1);
        for (let b = 0; b < n; b++) {
          const want = philox4x32([(c0 + b) >>> 0, c1, c2, c3], [k0, k1]);
          expect(Array.from(words().subarray(4 * b, 4 * b + 4))).toEqual(Array.from(want));
        }
      }
    });

    it('matches the Philox-4x32-10 known-answer vector (Random123)', () => {
      const { fill, words } = wasmPhilox()!;
      fill(1, 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0);
      expect(Array.from(words().subarray(0, 4))).toEqual([0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
    });
  },
);

describe('PhiloxStream', () => {
  it('reads the words of counters [k, c1, c2, c3] in order, with or without WebAssembly', () => {
    const seed = 2 ** 40 + 12345;
    const key = [seed >>> 0, Math.floor(seed / 2 ** 32)];
    const want: number[] = [];
    for (let k = 0; k < 40; k++) want.push(...philox4x32([k, 77, 3, 1], key));
    for (const wasm of [true, false]) {
      const s = new PhiloxStream(seed, { wasm });
      expect(s.usesWasm).toBe(wasm && simd);
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

/** '' when a and b hold the same float32 bits, else where they first differ. */
function firstBitDifference(a: Float32Array, b: Float32Array): string {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return `[${i}]: ${a[i]} vs ${b[i]}`;
  return '';
}

/** Rows to add normals to: values of many magnitudes and both signs (their rounding matters). */
function startingRows(n: number, seed: number): Float32Array {
  const s = new PhiloxStream(seed, { wasm: false }).reset(0, 0, 7, n);
  return Float32Array.from({ length: n }, () => (s.uniform() - 0.5) * 2 ** (s.uniform() * 12 - 6));
}

describe.skipIf(!simd)(
  `the normals' fast path in WebAssembly${simd ? '' : ' (skipped: no WebAssembly SIMD here)'}`,
  () => {
    // The TypeScript stream (wasm: false) is the oracle: every case must give the same float32
    // bits. Sizes cross the stream's chunks (hints 1 and 16 refill often, mid-row) and the
    // scratch rows (4096 floats); scales include ones whose products round.
    const cases: [number, number, number, number, number][] = []; // seed, c1, n, hint, scale
    for (const [k, n] of [1, 3, 255, 256, 257, 1000, 4097, 20_000].entries()) {
      for (const hint of [1, 16, n + 8])
        cases.push([k * 7919 + hint, k, n, hint, [0.1, 1, 0.0625, 3.3][k % 4]]);
    }

    it('adds the same values as the TypeScript loop, bit for bit, to arrays outside its memory', () => {
      for (const [seed, c1, n, hint, scale] of cases) {
        const want = startingRows(n + 5, seed);
        const got = want.slice();
        const ts = new PhiloxStream(seed, { wasm: false }).reset(c1, 2, 3, hint);
        const wa = new PhiloxStream(seed).reset(c1, 2, 3, hint);
        expect(wa.usesWasm).toBe(true);
        // two calls per stream, at an offset: the second starts where the first left the stream
        const first = n >> 1;
        ts.addNormals(want, 2, first, scale);
        ts.addNormals(want, 2 + first, n - first, scale);
        wa.addNormals(got, 2, first, scale);
        wa.addNormals(got, 2 + first, n - first, scale);
        expect(firstBitDifference(got, want), `seed ${seed}, n ${n}, hint ${hint}`).toBe('');
        // and the stream goes on at the same word
        expect(wa.word()).toBe(ts.word());
      }
    });

    it('adds them in place to rows in its own memory (shared with the synthetic sums)', () => {
      for (const [seed, c1, n, hint, scale] of cases) {
        const w = bufferWasm()!;
        w.reserve(HEAP_AT + 4 * n);
        const rows = new Float32Array(w.memory.buffer, HEAP_AT, n);
        const want = startingRows(n, seed);
        rows.set(want);
        new PhiloxStream(seed, { wasm: false }).reset(c1, 5, 6, hint).addNormals(want, 0, n, scale);
        new PhiloxStream(seed, { instance: w }).reset(c1, 5, 6, hint).addNormals(rows, 0, n, scale);
        expect(firstBitDifference(rows, want), `seed ${seed}, n ${n}, hint ${hint}`).toBe('');
      }
    });

    it("goes on after the instance's owner grows its memory (reset, then the new memory's words)", () => {
      const w = bufferWasm()!;
      const stream = new PhiloxStream(17, { instance: w }).reset(7, 1, 2, 4);
      const ts = new PhiloxStream(17, { wasm: false }).reset(7, 1, 2, 4);
      for (let k = 0; k < 100; k++) expect(stream.word()).toBe(ts.word());
      // growing detaches every view of the old memory, the stream's words view among them
      const before = w.memory.buffer;
      w.reserve(before.byteLength + 4 * 65536);
      expect(w.memory.buffer).not.toBe(before);
      stream.reset(9, 1, 2, 4);
      ts.reset(9, 1, 2, 4);
      for (let k = 0; k < 5000; k++) expect(stream.word()).toBe(ts.word());
    });

    it('meets the tail (layer 0) and the wedges in these cases, which JavaScript completes', () => {
      // the words the first test's streams start with, classified by the fast test
      let tail = 0;
      let wedge = 0;
      for (const [seed, c1, n] of cases) {
        const s = new PhiloxStream(seed, { wasm: false }).reset(c1, 2, 3, n);
        for (let k = 0; k < n; k++) {
          const w = s.word();
          if ((w >>> 8) * 2 ** -24 >= ZIG_R[w & 127]) {
            if ((w & 127) === 0) tail++;
            else wedge++;
          }
        }
      }
      expect(tail).toBeGreaterThan(5);
      expect(wedge).toBeGreaterThan(200);
    });

    it('takes exactly the words below each layer’s bound, with the sign of bit 7', () => {
      // crafted words: layer i, sign bit, and m = K[i] − 1 (the largest fast one) or K[i]; the top
      // layer (K = 0: X[128] = 0) has no fast words
      const w = bufferWasm()!;
      const scale = 0.3;
      const fast: number[] = [];
      for (let i = 0; i < 127; i++)
        for (const sign of [0, 1]) fast.push(((ZIG_K[i] - 1) << 8) | (sign << 7) | i);
      expect(ZIG_K[127]).toBe(0);
      const words = new Int32Array(w.memory.buffer, WORDS_AT, fast.length);
      words.set(fast);
      const rows = new Float32Array(w.memory.buffer, SCRATCH_AT, fast.length);
      const start = startingRows(fast.length, 4);
      rows.set(start);
      const end = WORDS_AT + 4 * fast.length;
      expect(w.normals(WORDS_AT, end, SCRATCH_AT, scale)).toBe(end);
      for (const [k, word] of fast.entries()) {
        const i = word & 127;
        const u = (word >>> 8) * 2 ** -24;
        const sign = (word >>> 7) & 1 ? -1 : 1;
        expect(rows[k], `layer ${i}`).toBe(Math.fround(start[k] + scale * (sign * u * ZIG_X[i])));
      }
      // m = K[i]: the loop stops at the word, leaving its row alone
      for (let i = 0; i < 128; i++) {
        words[0] = (ZIG_K[i] << 8) | i;
        rows[0] = 1.5;
        expect(w.normals(WORDS_AT, WORDS_AT + 4, SCRATCH_AT, scale), `layer ${i}`).toBe(WORDS_AT);
        expect(rows[0]).toBe(1.5);
      }
    });

    it('the integer fast test K[i] agrees with u < R[i] at and around every bound', () => {
      for (let i = 0; i < 128; i++) {
        for (const m of [ZIG_K[i] - 2, ZIG_K[i] - 1, ZIG_K[i], ZIG_K[i] + 1]) {
          if (m < 0 || m >= 2 ** 24) continue;
          expect(m < ZIG_K[i], `layer ${i}, m ${m}`).toBe(m * 2 ** -24 < ZIG_R[i]);
        }
      }
    });
  },
);

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
