import {
  batchTopkEncode,
  getKernel,
  type Kernel,
  kernelsOf,
  mean,
  type OpName,
  registerBackend,
  registerKernel,
  scope,
  sparseDecode,
  sparseDot,
  sparseOuter,
  square,
  sub,
  sum,
  type Tensor,
  tensor,
  topkEncode,
  useBackend,
  valueAndGrad,
} from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../backend.js';
import { kthLargest, loadSparseWasm } from './sparse-wasm.js';

// The sparse kernels at sizes the conformance fixtures do not reach: rows wider than a SIMD
// vector with a tail (d = 75), many tied pre-activations, NaN rows, the batch layout. The
// float32 backend runs the WebAssembly loops; the float64 backend runs the TypeScript ones; both
// are checked against plain float64 loops here.
registerBackend(createCpuBackend({ name: 'sparse-f32', fastMatmul: false }));
registerBackend(createCpuBackend({ name: 'sparse-f64', precision: 'float64' }));

/** mulberry32, so failures reproduce. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const uniform = (n: number, next: () => number) => Float32Array.from({ length: n }, () => next() * 2 - 1);
/** Small integers as floats: products and sums are exact, so pre-activations tie often. */
const ints = (n: number, next: () => number, span = 3) =>
  Float32Array.from({ length: n }, () => Math.floor(next() * (2 * span + 1)) - span);

const read = async (t: Tensor) => Array.from(await t.data());

/** Top-k of relu(x W + b) per row, by a full sort in float64: larger first, ties to the lower index. */
function referenceTopk(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  B: number,
  d: number,
  F: number,
  k: number,
) {
  const values: number[] = [];
  const indices: number[] = [];
  for (let r = 0; r < B; r++) {
    const act = Array.from({ length: F }, (_, f) => {
      let s = 0;
      for (let c = 0; c < d; c++) s += x[r * d + c] * w[c * F + f];
      const v = Math.fround(Math.fround(s) + b[f]);
      return Number.isNaN(v) ? v : Math.max(v, 0);
    });
    const order = act
      .map((_, f) => f)
      .sort((p, q) => {
        const [a, c] = [act[p], act[q]];
        if (Number.isNaN(a) || Number.isNaN(c))
          return Number.isNaN(a) && Number.isNaN(c) ? p - q : Number.isNaN(a) ? -1 : 1;
        return c - a || p - q;
      });
    for (const f of order.slice(0, k)) {
      indices.push(f);
      values.push(act[f]);
    }
  }
  return { values, indices };
}

describe('CPU sparse kernels', () => {
  it('the WebAssembly SIMD loops load in Node (the float32 backend runs them)', () => {
    expect(typeof loadSparseWasm()).not.toBe('string');
  });

  it('kthLargest (the selection threshold) matches a sort, ties and NaN included', () => {
    const next = random(10);
    const scratch = new Float64Array(64);
    for (let trial = 0; trial < 200; trial++) {
      const a = ints(64, next, 4);
      const k = 1 + Math.floor(next() * 64);
      const sorted = Array.from(a).sort((p, q) => q - p);
      expect(kthLargest(a, k, scratch)).toBe(sorted[k - 1]);
    }
    const withNaN = Float32Array.from([1, Number.NaN, 3]);
    expect(kthLargest(withNaN, 1, scratch)).toBeNaN();
  });

  for (const name of ['sparse-f32', 'sparse-f64']) {
    describe(name, () => {
      it('topkEncode matches a full sort: wide rows, many ties, a row of zeros, k = 1, k = F', async () => {
        await useBackend(name);
        const next = random(11);
        // F = 1103 with k = 8 takes the thresholded selection (2k runs of 16 columns first)
        for (const [F, k] of [
          [300, 1],
          [300, 7],
          [300, 40],
          [300, 300],
          [1103, 8],
        ]) {
          const [B, d] = [9, 5];
          const x = ints(B * d, next);
          x.fill(0, 3 * d, 4 * d); // row 3: every pre-activation is the bias
          const w = ints(d * F, next);
          const b = ints(F, next, 1);
          const got = scope(() => {
            const r = topkEncode(tensor(x, [B, d]), tensor(w, [d, F]), tensor(b, [F]), k);
            return [r.values, r.indices];
          });
          const want = referenceTopk(x, w, b, B, d, F, k);
          expect(await read(got[1]), `indices, F = ${F}, k = ${k}`).toEqual(want.indices);
          expect(await read(got[0]), `values, F = ${F}, k = ${k}`).toEqual(want.values);
          for (const t of got) t.dispose();
        }
      });

      it('topkEncode: every path of the thresholded selection (filter, too many candidates, low threshold, NaN, ties)', async () => {
        await useBackend(name);
        const next = random(17);
        // W = identity, so each row of x is its row of pre-activations before the bias (a NaN in x
        // would spread over its row, so NaN comes in through the bias, in every row of a call).
        const [F, k] = [2048, 16];
        const eye = new Float32Array(F * F);
        for (let j = 0; j < F; j++) eye[j * F + j] = 1;
        const check = async (rows: ((j: number) => number)[], nanAt?: number) => {
          const B = rows.length;
          const x = new Float32Array(B * F);
          rows.forEach((fill, r) => {
            for (let j = 0; j < F; j++) x[r * F + j] = fill(j);
          });
          const b = new Float32Array(F);
          if (nanAt !== undefined) b[nanAt] = Number.NaN;
          const got = scope(() => {
            const r = topkEncode(tensor(x, [B, F]), tensor(eye, [F, F]), tensor(b, [F]), k);
            return [r.values, r.indices];
          });
          const want = referenceTopk(x, eye, b, B, F, F, k);
          expect(await read(got[1]), `indices, NaN at ${nanAt}`).toEqual(want.indices);
          const nan = (v: number) => (Number.isNaN(v) ? 'NaN' : v);
          expect((await read(got[0])).map(nan), `values, NaN at ${nanAt}`).toEqual(want.values.map(nan));
          for (const t of got) t.dispose();
        };
        const lifted = (j: number) => j >= 300 && j < 500;
        await check([
          () => next(), // distinct values: the filter's candidates
          () => Math.floor(next() * 64) / 64, // ties at and around the k-th largest
          () => -next(), // nothing positive: the threshold is 0, the heap serves the row
          (j) => (j % 128 === 7 ? 1 + (j % 5) : -1), // exactly k positive, one per run
          (j) => (j % 512 === 3 ? next() : -next()), // four positive: zeros fill up
          // last (a selection reading past a row's candidates must find no NaN there by chance)
          (j) => (lifted(j) ? 5 + next() * 1e-3 : next()), // 200 candidates, more than kept
        ]);
        await check([() => next()], 1234); // a NaN among the candidates
        await check([(j) => (lifted(j) ? 5 : next())], 1500); // a NaN past the candidates kept
      });

      it('topkEncode ranks NaN first (early, late and in the tail of the row); transB gives the same code', async () => {
        await useBackend(name);
        const next = random(12);
        const [B, d, F, k] = [6, 67, 1030, 8];
        const x = uniform(B * d, next);
        const w = uniform(d * F, next);
        const wt = new Float32Array(F * d);
        for (let c = 0; c < d; c++) for (let f = 0; f < F; f++) wt[f * d + c] = w[c * F + f];
        // feature 17 meets a heap still filling, 1000 a full one, 1029 the scalar tail
        for (const nanAt of [17, 1000, 1029]) {
          const b = uniform(F, next);
          b[nanAt] = Number.NaN; // every row's feature nanAt is NaN
          const [plain, trans] = scope(() => [
            topkEncode(tensor(x, [B, d]), tensor(w, [d, F]), tensor(b, [F]), k),
            topkEncode(tensor(x, [B, d]), tensor(wt, [F, d]), tensor(b, [F]), k, { transB: true }),
          ]);
          const idx = await read(plain.indices);
          for (let r = 0; r < B; r++) expect(idx[r * k]).toBe(nanAt);
          expect(await read(trans.indices)).toEqual(idx);
          const want = referenceTopk(x, w, b, B, d, F, k);
          expect(idx).toEqual(want.indices);
          const vals = await read(plain.values);
          for (let i = 0; i < vals.length; i++) {
            if (i % k === 0) expect(vals[i]).toBeNaN();
            else expect(Math.abs(vals[i] - want.values[i])).toBeLessThan(1e-4);
          }
        }
      });

      it('batchTopkEncode keeps the B·k largest of the batch, ties to the lower flat position', async () => {
        await useBackend(name);
        const next = random(13);
        const [B, d, F, k] = [7, 3, 40, 4];
        const x = ints(B * d, next);
        const w = ints(d * F, next);
        const b = ints(F, next, 1);
        const r = scope(() => batchTopkEncode(tensor(x, [B, d]), tensor(w, [d, F]), tensor(b, [F]), k));
        const all = referenceTopk(x, w, b, B, d, F, F);
        const flat: { v: number; p: number }[] = [];
        for (let row = 0; row < B; row++) {
          for (let j = 0; j < F; j++)
            flat.push({ v: all.values[row * F + j], p: row * F + all.indices[row * F + j] });
        }
        flat.sort((p, q) => q.v - p.v || p.p - q.p);
        const want = flat.slice(0, B * k);
        expect(await read(r.values)).toEqual(want.map((e) => e.v));
        expect(await read(r.indices)).toEqual(want.map((e) => e.p % F));
        expect(await read(r.rows)).toEqual(want.map((e) => Math.floor(e.p / F)));
      });

      it('sparseDecode, sparseDot and sparseOuter match float64 loops (d = 75: blocks of 16, of 4, and a tail)', async () => {
        await useBackend(name);
        const next = random(14);
        const [B, d, F, k, n] = [5, 75, 9, 4, 13];
        const values = uniform(B * k, next);
        const indices = Int32Array.from({ length: B * k }, () => Math.floor(next() * F));
        const w = uniform(F * d, next);
        const y = uniform(B * d, next);
        const bias = uniform(d, next);
        const rv = uniform(n, next);
        const ri = Int32Array.from({ length: n }, () => Math.floor(next() * F));
        const rr = Int32Array.from({ length: n }, () => Math.floor(next() * B));
        const rowOf = (e: number, rows?: Int32Array) => (rows ? rows[e] : Math.floor(e / k));
        const close = (got: number[], want: number[]) => {
          for (let i = 0; i < got.length; i++) {
            expect(Math.abs(got[i] - want[i]), `element ${i}`).toBeLessThan(2e-5 * (1 + Math.abs(want[i])));
          }
        };
        for (const [v, idx, rows] of [
          [values, indices, undefined],
          [rv, ri, rr],
        ] as const) {
          const m = v.length;
          const shape = rows ? [m] : [B, k];
          const [dec, dot, outer] = scope(() => {
            const vt = tensor(v, shape);
            const it = tensor(idx, shape, { dtype: 'int32' });
            const rt = rows ? { rows: tensor(rows, [m], { dtype: 'int32' }) } : {};
            const wt = tensor(w, [F, d]);
            const yt = tensor(y, [B, d]);
            return [
              sparseDecode(vt, it, wt, tensor(bias, [d]), { ...rt, batch: B }),
              sparseDot(yt, it, wt, rt),
              sparseOuter(vt, it, yt, F, rt),
            ];
          });
          const wantDec = Array.from({ length: B * d }, (_, q) => bias[q % d]);
          const sums = new Float64Array(B * d);
          const wantOuter = new Array(F * d).fill(0);
          const wantDot: number[] = [];
          for (let e = 0; e < m; e++) {
            const r = rowOf(e, rows);
            let s = 0;
            for (let c = 0; c < d; c++) {
              sums[r * d + c] += v[e] * w[idx[e] * d + c];
              s += y[r * d + c] * w[idx[e] * d + c];
              wantOuter[idx[e] * d + c] += v[e] * y[r * d + c];
            }
            wantDot.push(s);
          }
          close(
            await read(dec),
            wantDec.map((bq, q) => bq + sums[q]),
          );
          close(await read(dot), wantDot);
          close(await read(outer), wantOuter);
        }
      });
    });
  }

  it('sparseOuter with one to three columns (bias gradients, firing counts): float32 sums in entry order', async () => {
    await useBackend('sparse-f32');
    const next = random(18);
    const [B, F, k] = [300, 37, 6];
    for (const d of [1, 3]) {
      const values = uniform(B * k, next);
      const indices = Int32Array.from({ length: B * k }, () => Math.floor(next() * F));
      const rows = Int32Array.from({ length: B * k }, () => Math.floor(next() * B));
      const y = uniform(B * d, next);
      for (const batch of [false, true]) {
        const got = scope(() =>
          batch
            ? sparseOuter(
                tensor(values, [B * k]),
                tensor(indices, [B * k], { dtype: 'int32' }),
                tensor(y, [B, d]),
                F,
                {
                  rows: tensor(rows, [B * k], { dtype: 'int32' }),
                },
              )
            : sparseOuter(
                tensor(values, [B, k]),
                tensor(indices, [B, k], { dtype: 'int32' }),
                tensor(y, [B, d]),
                F,
              ),
        );
        const want = new Float32Array(F * d);
        for (let e = 0; e < B * k; e++) {
          const r = batch ? rows[e] : Math.floor(e / k);
          for (let c = 0; c < d; c++) {
            const o = indices[e] * d + c;
            want[o] = Math.fround(want[o] + Math.fround(values[e] * y[r * d + c]));
          }
        }
        expect(await read(got), `d = ${d}, ${batch ? 'batch' : 'per-row'} layout`).toEqual(Array.from(want));
        got.dispose();
      }
    }
  });

  it('out-of-range features and rows are refused by name', async () => {
    await useBackend('sparse-f32');
    const w = tensor(new Float32Array(12), [3, 4]);
    const v = tensor([1, 2], [1, 2]);
    expect(() => sparseDecode(v, tensor([0, 3], [1, 2], { dtype: 'int32' }), w)).toThrow(
      /sparseDecode: index 3 at position 1 is out of range \[0, 3\)/,
    );
    expect(() =>
      sparseOuter(tensor([1], [1]), tensor([0], [1], { dtype: 'int32' }), tensor([1, 2, 3, 4], [1, 4]), 3, {
        rows: tensor([1], [1], { dtype: 'int32' }),
      }),
    ).toThrow(/sparseOuter: row 1 at position 0 is out of range \[0, 1\)/);
  });

  it('two runs give the same bits (entry-order sums)', async () => {
    await useBackend('sparse-f32');
    const next = random(15);
    const [B, d, F, k] = [64, 40, 96, 8];
    const x = uniform(B * d, next);
    const w = uniform(F * d, next);
    const grads = async () =>
      scope(() => {
        const xt = tensor(x, [B, d]);
        const we = tensor(w, [F, d]);
        const be = tensor(new Float32Array(F), [F]);
        const wd = tensor(w, [F, d]);
        const { value, grads: g } = valueAndGrad(() => {
          const c = topkEncode(xt, we, be, k, { transB: true });
          return mean(sum(square(sub(xt, sparseDecode(c.values, c.indices, wd))), -1));
        }, [we, be, wd]);
        return [value, ...g.values()];
      });
    const a = await Promise.all((await grads()).map(read));
    const b = await Promise.all((await grads()).map(read));
    expect(a).toEqual(b);
  });
});

describe('the TopK step never builds a dense [B, F] tensor', () => {
  // Every kernel of the backend is wrapped to record the sizes of what it returns; B·F is a size
  // nothing else in the step has. The encoder product stays inside topkEncode's kernel.
  it('forward and backward of topkEncode → sparseDecode → MSE touch k of F features per row', async () => {
    const be = registerBackend(createCpuBackend({ name: 'sparse-spy', fastMatmul: false }));
    await useBackend('sparse-spy');
    const sizes: { op: string; size: number }[] = [];
    for (const op of kernelsOf(be) as OpName[]) {
      const own = getKernel(op, be) as Kernel;
      registerKernel(
        op,
        be,
        ((inputs, attrs, backend) => {
          const r = own(inputs, attrs, backend);
          for (const o of Array.isArray(r) ? r : [r])
            sizes.push({ op, size: o.shape.reduce((p, q) => p * q, 1) });
          return r;
        }) as Kernel<typeof op>,
        { replace: true },
      );
    }
    const next = random(16);
    const [B, d, F, k] = [24, 10, 37, 3];
    scope(() => {
      const x = tensor(uniform(B * d, next), [B, d]);
      const we = tensor(uniform(F * d, next), [F, d]);
      const be2 = tensor(uniform(F, next), [F]);
      const wd = tensor(uniform(F * d, next), [F, d]);
      const bd = tensor(uniform(d, next), [d]);
      const { grads } = valueAndGrad(() => {
        const c = topkEncode(x, we, be2, k, { transB: true });
        return mean(sum(square(sub(x, sparseDecode(c.values, c.indices, wd, bd))), -1));
      }, [we, be2, wd, bd]);
      expect(grads.size).toBe(4);
    });
    expect(sizes.some((s) => s.op === 'topkEncode')).toBe(true);
    expect(sizes.filter((s) => s.size >= B * F)).toEqual([]);
  });
});
