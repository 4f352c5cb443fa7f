import {
  abs,
  adamUpdate,
  add,
  clipByGlobalNorm,
  div,
  mul,
  neg,
  normalizeRows,
  registerBackend,
  removeParallelComponent,
  scope,
  sparseDecode,
  sparseDot,
  sparseOuter,
  sqrt,
  square,
  sub,
  sum,
  type Tensor,
  tensor,
  topkEncode,
  transpose,
  useBackend,
} from '@dictlearn/core';
import { compareValues } from '@dictlearn/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../backend.js';
import { loadDenseWasm } from './dense-wasm.js';
import { kernelPool } from './kernel-pool.js';

// The WebAssembly SIMD loops of the dense kernels (elementwise, sums, Adam, the decoder-row
// constraint, gradient clipping) and the kernel pool's worker threads, at sizes the conformance
// fixtures do not reach: several 16 Ki-element chunks, tails that are not a multiple of four,
// rows broadcast over chunks. References are plain loops here, rounding each float32 operation
// as the TypeScript kernels do, so the SIMD loops must match them bit for bit where they claim
// to (every elementwise op, the row kernels) and within float32 rounding elsewhere.
registerBackend(createCpuBackend({ name: 'simd', fastMatmul: false, kernelThreads: 1 }));
const threaded = registerBackend(
  createCpuBackend({ name: 'simd-threads', fastMatmul: false, kernelThreads: 3 }),
);

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
const read = async (t: Tensor) => Float32Array.from(await t.data());
const f = Math.fround;

/** Rows × columns of the cases: several chunks with a tail, one row wider than a chunk, rows of 3. */
const SHAPES = [
  [9, 4099],
  [3, 20001],
  [12007, 3],
  [64, 75],
];

/** Elementwise reference: dst[i] = op(a at i, b at i) with each operand's broadcast index. */
function ref(
  n: number,
  op: (x: number, y: number) => number,
  ia: (i: number) => number,
  a: Float32Array,
  ib: (i: number) => number,
  b: Float32Array,
) {
  return Float32Array.from({ length: n }, (_, i) => f(op(a[ia(i)], b[ib(i)])));
}

describe('WebAssembly SIMD dense kernels', () => {
  it('load in Node', () => {
    expect(typeof loadDenseWasm()).not.toBe('string');
  });

  it('elementwise ops match float32 loops bit for bit: same shape, scalars, rows, several chunks and tails', async () => {
    await useBackend('simd');
    const next = random(21);
    for (const [rows, cols] of SHAPES) {
      const n = rows * cols;
      const a = uniform(n, next);
      const b = uniform(n, next).map((v) => (v === 0 ? 0.5 : v));
      const row = uniform(cols, next);
      const s = f(next() + 0.25);
      const same = (i: number) => i;
      const col = (i: number) => i % cols;
      const zero = () => 0;
      const cases: [string, (A: Tensor, B: Tensor, R: Tensor, S: number) => Tensor, Float32Array][] = [
        ['add', (A, B) => add(A, B), ref(n, (x, y) => x + y, same, a, same, b)],
        ['sub', (A, B) => sub(A, B), ref(n, (x, y) => x - y, same, a, same, b)],
        ['mul', (A, B) => mul(A, B), ref(n, (x, y) => x * y, same, a, same, b)],
        ['div', (A, B) => div(A, B), ref(n, (x, y) => x / y, same, a, same, b)],
        [
          'sub scalar',
          (A, _B, _R, S) => sub(A, S),
          ref(n, (x, y) => x - y, same, a, zero, Float32Array.of(s)),
        ],
        [
          'scalar div',
          (A, _B, _R, S) => div(S, A),
          ref(n, (x, y) => y / x, same, a, zero, Float32Array.of(s)),
        ],
        ['add row', (A, _B, R) => add(A, R), ref(n, (x, y) => x + y, same, a, col, row)],
        ['row sub', (A, _B, R) => sub(R, A), ref(n, (x, y) => y - x, same, a, col, row)],
        ['square', (A) => square(A), ref(n, (x) => x * x, same, a, same, a)],
        ['neg', (A) => neg(A), ref(n, (x) => -x, same, a, same, a)],
        ['abs', (A) => abs(A), ref(n, (x) => Math.abs(x), same, a, same, a)],
        ['sqrt', (A) => sqrt(abs(A)), ref(n, (x) => Math.sqrt(Math.abs(x)), same, a, same, a)],
      ];
      for (const [name, op, want] of cases) {
        const got = scope(() => op(tensor(a, [rows, cols]), tensor(b, [rows, cols]), tensor(row, [cols]), s));
        expect(
          compareValues(await read(got), want, { rtol: 0, atol: 0 }, `${name} [${rows}, ${cols}]`),
        ).toBeNull();
        got.dispose();
      }
    }
  });

  it('sums (whole, over rows, of squares in clipping) match float64 sums', async () => {
    await useBackend('simd');
    const next = random(22);
    for (const [rows, cols] of [...SHAPES, [1000, 64]]) {
      const a = uniform(rows * cols, next);
      const [all, over0] = scope(() => [sum(tensor(a, [rows, cols])), sum(tensor(a, [rows, cols]), 0)]);
      let total = 0;
      const cs = new Float64Array(cols);
      for (let i = 0; i < a.length; i++) {
        total += a[i];
        cs[i % cols] += a[i];
      }
      expect(compareValues(await read(all), [total], { rtol: 1e-6, atol: 1e-6 }, 'sum')).toBeNull();
      expect(compareValues(await read(over0), cs, { rtol: 1e-6, atol: 1e-6 }, 'sum over rows')).toBeNull();
    }
  });

  it('normalizeRows and removeParallelComponent match float64 row loops bit for bit', async () => {
    await useBackend('simd');
    const next = random(23);
    for (const [rows, cols] of SHAPES) {
      const w = uniform(rows * cols, next);
      const g = uniform(rows * cols, next);
      w.fill(0, 0, cols); // a zero row stays zero
      const [n, p] = scope(() => [
        normalizeRows(tensor(w, [rows, cols])),
        removeParallelComponent(tensor(w, [rows, cols]), tensor(g, [rows, cols])),
      ]);
      const wantN = new Float32Array(w.length);
      const wantP = new Float32Array(w.length);
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        let dot = 0;
        for (let j = r * cols; j < (r + 1) * cols; j++) {
          ss += w[j] * w[j];
          dot += g[j] * w[j];
        }
        const norm = Math.sqrt(ss) + 1e-12;
        for (let j = r * cols; j < (r + 1) * cols; j++) {
          wantN[j] = w[j] * (1 / norm);
          wantP[j] = g[j] - (dot / (norm * norm)) * w[j];
        }
      }
      // float64 sums in another order may differ in the last bit of a double: a float32 ulp at most
      expect(
        compareValues(await read(n), wantN, { rtol: 1.2e-7, atol: 0 }, `normalizeRows [${rows}, ${cols}]`),
      ).toBeNull();
      expect(
        compareValues(
          await read(p),
          wantP,
          { rtol: 1.2e-7, atol: 1e-12 },
          `removeParallel [${rows}, ${cols}]`,
        ),
      ).toBeNull();
    }
  });

  it('adamUpdate in float32 is within a few float32 ulps of float64 Adam', async () => {
    await useBackend('simd');
    const next = random(24);
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 7 };
    for (const [rows, cols] of SHAPES) {
      const n = rows * cols;
      const [p, g, m] = [uniform(n, next), uniform(n, next), uniform(n, next).map((x) => x * 0.1)];
      const v = uniform(n, next).map((x) => x * x * 0.01);
      const out = scope(() =>
        adamUpdate(
          tensor(p, [rows, cols]),
          tensor(g, [rows, cols]),
          tensor(m, [rows, cols]),
          tensor(v, [rows, cols]),
          h,
        ),
      );
      const [bc1, bc2] = [1 - h.beta1 ** h.step, 1 - h.beta2 ** h.step];
      const want = [new Float64Array(n), new Float64Array(n), new Float64Array(n)];
      for (let i = 0; i < n; i++) {
        want[1][i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
        want[2][i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
        want[0][i] = p[i] - ((h.lr / bc1) * want[1][i]) / (Math.sqrt(want[2][i]) / Math.sqrt(bc2) + h.eps);
      }
      const names = ['p', 'm', 'v'];
      for (let o = 0; o < 3; o++) {
        // terms may cancel (m's two; p and its update, about lr): errors are relative to the terms
        const tol = [
          { rtol: 5e-7, atol: 1e-9 },
          { rtol: 5e-7, atol: 1e-7 },
          { rtol: 5e-7, atol: 0 },
        ][o];
        expect(
          compareValues(await read(out[o]), want[o], tol, `adam ${names[o]} [${rows}, ${cols}]`),
        ).toBeNull();
      }
    }
  });

  it('2-D transposes move every value (4×4 blocks in SIMD; other shapes in TypeScript)', async () => {
    await useBackend('simd');
    const next = random(27);
    for (const [r, c] of [
      [64, 132],
      [512, 36],
      [9, 4099],
      [4, 1024],
    ]) {
      const a = uniform(r * c, next);
      const got = scope(() => transpose(tensor(a, [r, c])));
      const want = new Float32Array(r * c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) want[j * r + i] = a[i * c + j];
      expect(got.shape).toEqual([c, r]);
      expect(compareValues(await read(got), want, { rtol: 0, atol: 0 }, `transpose [${r}, ${c}]`)).toBeNull();
      got.dispose();
    }
  });

  it('clipByGlobalNorm matches its float64 definition, clipping or not', async () => {
    await useBackend('simd');
    const next = random(25);
    const parts = [uniform(4099 * 3, next), uniform(5, next), uniform(20001, next)];
    let ss = 0;
    for (const a of parts) for (const x of a) ss += x * x;
    for (const maxNorm of [Math.sqrt(ss) / 3, Math.sqrt(ss) * 2]) {
      const r = scope(() =>
        clipByGlobalNorm(
          parts.map((a) => tensor(a, [a.length])),
          maxNorm,
        ),
      );
      const norm = Math.sqrt(ss);
      const coef = Math.min(maxNorm / (norm + 1e-6), 1);
      expect(compareValues(await read(r.norm), [norm], { rtol: 1e-6, atol: 0 }, 'norm')).toBeNull();
      for (let i = 0; i < parts.length; i++) {
        const want = parts[i].map((x) => x * coef);
        expect(
          compareValues(await read(r.tensors[i]), want, { rtol: 1e-6, atol: 0 }, `tensor ${i}`),
        ).toBeNull();
      }
    }
  });
});

describe('kernel worker threads', () => {
  afterAll(() => {
    const p = kernelPool(3);
    if (typeof p !== 'string') p.close();
  });

  it('start where asked (kernelThreads: 3), and the option is checked', async () => {
    await useBackend('simd-threads');
    expect(threaded.kernelThreads).toBe(3);
    expect(() => createCpuBackend({ kernelThreads: 0 })).toThrow(
      /createCpuBackend: option kernelThreads must be a positive integer, got 0/,
    );
  });

  it("keep an operand in the pool's memory between calls only while its tensor lives", async () => {
    await useBackend('simd-threads');
    const next = random(28);
    const [B, d, F, k] = [512, 64, 256, 8];
    const idx = tensor(
      Int32Array.from({ length: B * k }, () => Math.floor(next() * F)),
      [B, k],
      { dtype: 'int32' },
    );
    const vals = tensor(uniform(B * k, next), [B, k]);
    const decodeWith = async (w: Float32Array) => {
      const wt = tensor(w, [F, d]);
      // decode, then its gradient reads the same W: the second call finds W resident
      const [dec, dot] = scope(() => [
        sparseDecode(vals, idx, wt),
        sparseDot(tensor(uniform(B * d, next), [B, d]), idx, wt),
      ]);
      const out = [await read(dec), await read(dot)];
      dec.dispose();
      dot.dispose();
      wt.dispose(); // its storage goes back to the pool: the next W [F, d] reuses it
      return { out, w };
    };
    const first = await decodeWith(uniform(F * d, next));
    const second = await decodeWith(uniform(F * d, next));
    // the second decode used the second W (not a stale copy of the first), row 0 checked by hand
    const want = new Float32Array(d);
    const v = await read(vals);
    const ix = await read(idx);
    for (let e = 0; e < k; e++)
      for (let c = 0; c < d; c++)
        want[c] = Math.fround(want[c] + Math.fround(v[e] * second.w[ix[e] * d + c]));
    expect(Array.from(second.out[0].subarray(0, d))).toEqual(Array.from(want));
    expect(Array.from(second.out[0].subarray(0, d))).not.toEqual(Array.from(first.out[0].subarray(0, d)));
    idx.dispose();
    vals.dispose();
  });

  it('give the sparse kernels the bits of one thread (rows split over three threads), the top-k selection included', async () => {
    const next = random(26);
    const [B, d, F, k, n] = [600, 67, 301, 9, 5000];
    const values = uniform(B * k, next);
    const indices = Int32Array.from({ length: B * k }, () => Math.floor(next() * F));
    const w = uniform(F * d, next);
    const y = uniform(B * d, next);
    const bias = uniform(d, next);
    const rv = uniform(n, next);
    const ri = Int32Array.from({ length: n }, () => Math.floor(next() * F));
    const rr = Int32Array.from({ length: n }, () => Math.floor(next() * B));
    const [E, Fe, kk] = [301, 2048, 16];
    const xe = uniform(E * 8, next);
    const we = uniform(8 * Fe, next);
    const ints = Float32Array.from({ length: 8 * Fe }, () => Math.floor(next() * 5) - 2);
    const nanBias = uniform(Fe, next);
    nanBias[1000] = Number.NaN;
    const selections = () =>
      [
        [we, new Float32Array(Fe)],
        [ints, new Float32Array(Fe)],
        [we, nanBias],
      ].flatMap(([w2, b2]) => {
        const c = topkEncode(tensor(xe, [E, 8]), tensor(w2, [8, Fe]), tensor(b2, [Fe]), kk);
        return [c.values, c.indices];
      });
    // the workers start asynchronously: wait until they take parts
    const pool = kernelPool(3);
    if (typeof pool === 'string') throw new Error(pool);
    const run = async (backend: string) => {
      await useBackend(backend);
      const outs = scope(() => {
        const it = tensor(indices, [B, k], { dtype: 'int32' });
        const vt = tensor(values, [B, k]);
        const wt = tensor(w, [F, d]);
        const yt = tensor(y, [B, d]);
        const rows = { rows: tensor(rr, [n], { dtype: 'int32' }) };
        const rit = tensor(ri, [n], { dtype: 'int32' });
        const rvt = tensor(rv, [n]);
        return [
          sparseDecode(vt, it, wt, tensor(bias, [d])),
          sparseDot(yt, it, wt),
          sparseOuter(vt, it, yt, F),
          sparseDecode(rvt, rit, wt, undefined, { ...rows, batch: B }),
          sparseDot(yt, rit, wt, rows),
          sparseOuter(rvt, rit, yt, F, rows),
          // the top-k selection, the second half of each block's rows on a worker: distinct
          // values, integer ties (rows past the candidates kept), a NaN feature in every row
          ...selections(),
        ];
      });
      return Promise.all(outs.map(read));
    };
    const one = await run('simd');
    let three = await run('simd-threads');
    for (let tries = 0; tries < 50 && pool.readyWorkers() < 2; tries++) {
      await new Promise((r) => setTimeout(r, 20));
      three = await run('simd-threads');
    }
    expect(pool.readyWorkers()).toBe(2);
    for (let i = 0; i < three.length; i++)
      expect(Array.from(three[i]), `output ${i}`).toEqual(Array.from(one[i]));
  });
});
