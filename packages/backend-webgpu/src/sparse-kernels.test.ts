// The sparse-code kernels at sizes the conformance fixtures do not reach. sparseOuter (the
// decoder gradient): entries over many chunks of the list building, features hit by every row or
// by none, repeated and out-of-range features, out-of-range rows. sparseDecode and sparseDot:
// d a multiple of 4 (vec4 loads) and not. Both layouts (k per row, explicit rows); against
// float64 sums computed here. And the top-k selection (topk, topkEncode's second half) on rows
// read as vec4s and as scalars, with NaN, ±∞ and ties, against a sort done here.
import {
  initBackend,
  registerBackend,
  sparseDecode,
  sparseDot,
  sparseOuter,
  tensor,
  topk,
} from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { createWebGPUBackend } from './backend.js';
import { OUTER_CHUNK } from './sparse-kernels.js';
import { values } from './test-backends.js';

const gpu = registerBackend(createWebGPUBackend({ name: 'webgpu-sparse' }));
let skip: string | undefined;
try {
  await initBackend(gpu);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

interface Layout {
  B: number;
  d: number;
  F: number;
  /** Entries per row (per-row layout), or undefined for explicit rows. */
  k?: number;
  /** Entries (explicit rows). */
  n?: number;
}

async function outerCase({ B, d, F, k, n: nRows }: Layout): Promise<string | null> {
  const n = k !== undefined ? B * k : (nRows as number);
  const v = values(n, 11 + n);
  const u = values(n, 12 + F);
  // Features: feature 0 in every row (a list as long as the batch), feature F − 1 never, the rest
  // spread; a few out of range (skipped) and, in the explicit layout, repeats and bad rows.
  const idx = Int32Array.from(u, (x, e) =>
    e % (k ?? 7) === 0 ? 0 : 1 + Math.floor(((x + 1) / 2) * (F - 2)),
  );
  idx[3 % n] = F; // out of range
  idx[(5 * n) >> 3] = -1;
  const rows =
    k === undefined
      ? Int32Array.from(values(n, 13), (x, e) =>
          e === n - 2 ? B : e === n - 3 ? -1 : Math.floor(((x + 1) / 2) * B),
        )
      : undefined;
  const y = values(B * d, 14 + d);
  const want = new Float64Array(F * d);
  const abs = new Float64Array(F * d);
  for (let e = 0; e < n; e++) {
    const f = idx[e];
    const r = rows ? rows[e] : Math.floor(e / (k as number));
    if (f < 0 || f >= F || r < 0 || r >= B) continue;
    for (let c = 0; c < d; c++) {
      want[f * d + c] += v[e] * y[r * d + c];
      abs[f * d + c] += Math.abs(v[e] * y[r * d + c]);
    }
  }
  const backend = 'webgpu-sparse';
  const vt = tensor(v, k !== undefined ? [B, k] : [n], { backend });
  const it = tensor(idx, k !== undefined ? [B, k] : [n], { backend, dtype: 'int32' });
  const yt = tensor(y, [B, d], { backend });
  const rt = rows ? tensor(rows, [n], { backend, dtype: 'int32' }) : undefined;
  const out = sparseOuter(vt, it, yt, F, { rows: rt });
  const got = await out.data();
  for (const t of [vt, it, yt, rt, out]) t?.dispose();
  // float32 sums in entry order: within 2·(entries)·ε·Σ|vᵢyᵢ| of the exact sum.
  for (let i = 0; i < want.length; i++) {
    const bound = 1e-7 + 2 * B * 2 ** -24 * abs[i];
    if (!(Math.abs(got[i] - want[i]) <= bound))
      return `B ${B} d ${d} F ${F} ${k !== undefined ? `k ${k}` : `n ${n}`}: O[${Math.floor(i / d)}, ${i % d}] = ${got[i]}, want ${want[i]} ± ${bound}`;
  }
  return null;
}

describe.skipIf(skip !== undefined)(`WebGPU sparse-code kernels${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('sparseOuter, per-row layout: one chunk and many, vec4 columns (1 or 4 per thread) and scalar ones', async () => {
    const bad: string[] = [];
    for (const c of [
      { B: 3, d: 4, F: 6, k: 2 },
      { B: 70, d: 12, F: 40, k: 5 }, // 350 entries: 3 chunks
      { B: 200, d: 7, F: 33, k: 3 }, // scalar columns
      { B: 64, d: 16, F: 300, k: 8 }, // 4 vec4 columns per thread
      { B: 50, d: 40, F: 40, k: 4 }, // 10 vec4 columns: 1 per thread
      { B: 50, d: 32, F: 45, k: 6 }, // 8 vec4 columns: 4 per thread, 2 apart
    ]) {
      const r = await outerCase(c);
      if (r) bad.push(r);
    }
    expect(bad).toEqual([]);
  });

  it('sparseOuter, explicit rows (batch top-k): repeated features, rows out of range, entries over chunk edges', async () => {
    const bad: string[] = [];
    for (const c of [
      { B: 9, d: 8, F: 10, n: 20 },
      { B: 50, d: 20, F: 25, n: 3 * OUTER_CHUNK + 1 },
      { B: 40, d: 5, F: 64, n: 2 * OUTER_CHUNK },
    ]) {
      const r = await outerCase(c);
      if (r) bad.push(r);
    }
    expect(bad).toEqual([]);
  });

  it('sparseDecode and sparseDot: vec4 and scalar columns, both layouts, bias or none', async () => {
    const bad: string[] = [];
    const backend = 'webgpu-sparse';
    for (const { B, d, F, k, n: nRows } of [
      { B: 37, d: 12, F: 20, k: 3 },
      { B: 37, d: 13, F: 20, k: 3 },
      { B: 10, d: 8, F: 9, n: 25 },
      { B: 10, d: 6, F: 9, n: 25 },
    ]) {
      const n = k !== undefined ? B * k : (nRows as number);
      const v = values(n, 21 + n);
      const idx = Int32Array.from(values(n, 22 + d), (x) => Math.floor(((x + 1) / 2) * F));
      idx[1] = F; // out of range: adds nothing
      const rows =
        k === undefined ? Int32Array.from(values(n, 23), (x) => Math.floor(((x + 1) / 2) * B)) : undefined;
      const w = values(F * d, 24 + F);
      const bias = values(d, 25);
      const y = values(B * d, 26 + B);
      const rowOf = (e: number) => (rows ? rows[e] : Math.floor(e / (k as number)));
      // Host sums in float64 with |term| totals for the float32 bounds.
      const dec = new Float64Array(B * d).map((_, i) => bias[i % d]);
      const decAbs = new Float64Array(B * d).map((_, i) => Math.abs(bias[i % d]));
      const dot = new Float64Array(n);
      const dotAbs = new Float64Array(n);
      for (let e = 0; e < n; e++) {
        const f = idx[e];
        if (f < 0 || f >= F) continue;
        const r = rowOf(e);
        for (let c = 0; c < d; c++) {
          dec[r * d + c] += v[e] * w[f * d + c];
          decAbs[r * d + c] += Math.abs(v[e] * w[f * d + c]);
          dot[e] += y[r * d + c] * w[f * d + c];
          dotAbs[e] += Math.abs(y[r * d + c] * w[f * d + c]);
        }
      }
      const shape = k !== undefined ? [B, k] : [n];
      const vt = tensor(v, shape, { backend });
      const it = tensor(idx, shape, { backend, dtype: 'int32' });
      const wt = tensor(w, [F, d], { backend });
      const bt = tensor(bias, [d], { backend });
      const yt = tensor(y, [B, d], { backend });
      const rt = rows ? tensor(rows, [n], { backend, dtype: 'int32' }) : undefined;
      const decoded = sparseDecode(vt, it, wt, bt, rows ? { rows: rt, batch: B } : {});
      const dotted = sparseDot(yt, it, wt, { rows: rt });
      const [gotDec, gotDot] = [await decoded.data(), await dotted.data()];
      for (const t of [vt, it, wt, bt, yt, rt, decoded, dotted]) t?.dispose();
      const name = `B ${B} d ${d} F ${F} ${k !== undefined ? `k ${k}` : `n ${n}`}`;
      const worst = (
        got: ArrayLike<number>,
        want: Float64Array,
        abs: Float64Array,
        terms: number,
        what: string,
      ) => {
        for (let i = 0; i < want.length; i++)
          if (!(Math.abs(got[i] - want[i]) <= 1e-7 + 2 * terms * 2 ** -24 * abs[i]))
            return `${name} ${what}[${i}] = ${got[i]}, want ${want[i]}`;
        return null;
      };
      const r =
        worst(gotDec, dec, decAbs, n + 1, 'sparseDecode') ?? worst(gotDot, dot, dotAbs, d, 'sparseDot');
      if (r) bad.push(r);
    }
    expect(bad).toEqual([]);
  });

  it('topk over rows of 12 (vec4 loads) and 13 (scalar): NaN first, ties to the lower index, ±∞', async () => {
    const bad: string[] = [];
    for (const n of [12, 13, 64])
      for (const k of [1, 5, n]) {
        const rows = 6;
        // Few distinct values: many ties; then NaN, +∞ and −∞ in some rows.
        const v = Float32Array.from(values(rows * n, n + k), (x) => Math.round(x * 3));
        v[2] = Number.NaN;
        v[n + 5] = Number.NaN;
        v[n + 1] = Number.NaN;
        v[2 * n + 3] = Number.POSITIVE_INFINITY;
        v[3 * n] = Number.NEGATIVE_INFINITY;
        const x = tensor(v, [rows, n], { backend: 'webgpu-sparse' });
        const r = topk(x, k);
        const [vals, idx] = [await r.values.data(), await r.indices.data()];
        for (const t of [x, r.values, r.indices]) t.dispose();
        for (let row = 0; row < rows; row++) {
          const key = (j: number) =>
            Number.isNaN(v[row * n + j]) ? Number.POSITIVE_INFINITY : v[row * n + j];
          const nan = (j: number) => Number.isNaN(v[row * n + j]);
          const order = Array.from({ length: n }, (_, j) => j).sort(
            (p, q) => +nan(q) - +nan(p) || (key(q) > key(p) ? 1 : key(q) < key(p) ? -1 : 0) || p - q,
          );
          const want = order.slice(0, k);
          const got = Array.from(idx.slice(row * k, row * k + k));
          if (want.join() !== got.join()) bad.push(`n ${n} k ${k} row ${row}: indices ${got}, want ${want}`);
          const gotV = Array.from(vals.slice(row * k, row * k + k));
          if (!want.every((j, i) => Object.is(gotV[i], v[row * n + j])))
            bad.push(`n ${n} k ${k} row ${row}: values ${gotV}`);
        }
      }
    expect(bad).toEqual([]);
  });
});
