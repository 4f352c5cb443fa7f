// The dense loops split over the kernel pool's threads (dense-split.ts): Adam, the decoder-row
// kernels and the elementwise ops, one range on this thread and the others on workers that reach
// the operands through koffi views of their addresses. Each element is computed by the same loop
// whichever thread runs it, so every output must equal the one-thread loops' bit for bit, at
// sizes with ragged tails, for every op and broadcast mode; column sums, split at the boundaries
// of their blocks of rows, must keep the float64 bits of their blocked order.
import { lcgValues } from '@dictlearn/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { DENSE_SPLIT_MIN_ELEMENTS, splitDense } from './dense-split.js';
import { COLUMN_BLOCK_ROWS, type DenseBinaryOp, type DenseUnaryOp, loadDenseWasm } from './dense-wasm.js';
import { kernelPool } from './kernel-pool.js';

const plain = loadDenseWasm();
const pool = kernelPool(3);
const why =
  typeof plain === 'string'
    ? `no WebAssembly SIMD: ${plain}`
    : typeof pool === 'string'
      ? `no kernel pool: ${pool}`
      : undefined;

/** Values in [−2, 2) (or (0.01, 2.01) when `positive`), with zeros, a NaN and an infinity mixed in. */
function values(n: number, seed: number, positive = false): Float32Array {
  const out = lcgValues(n, seed).map((v) => (positive ? v + 1.01 : 2 * v));
  if (!positive && n > 100) [out[7], out[50], out[n - 1]] = [0, Number.NaN, Number.POSITIVE_INFINITY];
  return out;
}

/** Whether two arrays hold the same bits (NaN equal to NaN, −0 unequal to 0). */
const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

describe.skipIf(why !== undefined)(
  `dense loops split over worker threads${why ? ` (skipped: ${why})` : ''}`,
  () => {
    afterAll(() => {
      if (typeof pool !== 'string') pool.close();
    });

    const setup = async () => {
      if (typeof plain === 'string' || typeof pool === 'string') throw new Error('unreachable');
      const split = splitDense(pool, plain);
      if (!split) throw new Error('splitDense returned nothing');
      // the workers start asynchronously: wait until both take parts, so none runs here instead
      for (let tries = 0; tries < 100 && pool.readyWorkers() < 2; tries++)
        await new Promise((r) => setTimeout(r, 20));
      expect(pool.readyWorkers()).toBe(2);
      return { plain, split };
    };

    it('Adam: every output element as one thread computes it', async () => {
      const { plain, split } = await setup();
      for (const n of [100_003, DENSE_SPLIT_MIN_ELEMENTS + 1]) {
        const [p, g, m] = [values(n, 1), values(n, 2), values(n, 3)];
        const v = values(n, 4, true);
        const outs = () => [new Float32Array(n), new Float32Array(n), new Float32Array(n)] as const;
        const [a, b] = [outs(), outs()];
        expect(plain.adam(p, g, m, v, ...a, n, 0.9, 0.999, 1e-3, 0.3, 1e-8)).toBe(true);
        expect(split.adam(p, g, m, v, ...b, n, 0.9, 0.999, 1e-3, 0.3, 1e-8)).toBe(true);
        for (let i = 0; i < 3; i++) expect(sameBits(b[i], a[i]), `n ${n}, output ${i}`).toBe(true);
      }
    });

    it('the decoder-row kernels: normalizeRows and removeParallelComponent, whole rows per part', async () => {
      const { plain, split } = await setup();
      const [rows, cols] = [301, 150];
      const [w, g] = [values(rows * cols, 5), values(rows * cols, 6)];
      for (const grad of [undefined, g]) {
        const [a, b] = [new Float32Array(rows * cols), new Float32Array(rows * cols)];
        expect(plain.rows(w, grad, a, rows, cols)).toBe(true);
        expect(split.rows(w, grad, b, rows, cols)).toBe(true);
        expect(sameBits(b, a), grad ? 'removeParallelComponent' : 'normalizeRows').toBe(true);
      }
    });

    it('binary ops in every broadcast mode, and unary ops', async () => {
      const { plain, split } = await setup();
      const [rows, last] = [161, 250];
      const n = rows * last;
      const [a, b] = [values(n, 7), values(n, 8)];
      const [scalar, row] = [Float32Array.of(0.75), values(last, 9)];
      // mode: 0 same size, 1 b a scalar, 2 a a scalar, 3 b one row, 4 a one row
      const operands = [
        [a, b],
        [a, scalar],
        [scalar, b],
        [a, row],
        [row, b],
      ];
      for (const op of ['add', 'sub', 'mul', 'div'] as DenseBinaryOp[])
        for (let mode = 0; mode < 5; mode++) {
          const [x, y] = operands[mode];
          const [want, got] = [new Float32Array(n), new Float32Array(n)];
          expect(plain.binary(op, x, y, want, n, mode, last)).toBe(true);
          expect(split.binary(op, x, y, got, n, mode, last)).toBe(true);
          expect(sameBits(got, want), `${op}, mode ${mode}`).toBe(true);
        }
      for (const op of ['square', 'neg', 'abs', 'sqrt'] as DenseUnaryOp[]) {
        const [want, got] = [new Float32Array(n - 3), new Float32Array(n - 3)];
        expect(plain.unary(op, a, want, n - 3)).toBe(true);
        expect(split.unary(op, a, got, n - 3)).toBe(true);
        expect(sameBits(got, want), op).toBe(true);
      }
    });

    it('column sums (sum over rows, the fused encoder kernels): the float64 sums of one thread, in blocks of rows', async () => {
      const { plain, split } = await setup();
      const B = COLUMN_BLOCK_ROWS;
      // values over 2⁻²⁰ … 2²⁰, so the order of the float64 additions shows in their bits
      const spread = (n: number, seed: number) => {
        const v = values(n, seed);
        const e = lcgValues(n, seed + 100);
        for (let i = 0; i < n; i++) v[i] *= 2 ** Math.round(40 * e[i] - 20);
        return v;
      };
      // the definition: each block of B rows summed from 0 in row order, the blocks added in order
      const blocked = (a: Float32Array, rows: number, cols: number) => {
        const acc = new Float64Array(cols);
        for (let b = 0; b < rows; b += B) {
          const s = new Float64Array(cols);
          for (let r = b; r < Math.min(rows, b + B); r++)
            for (let j = 0; j < cols; j++) s[j] += a[r * cols + j];
          for (let j = 0; j < cols; j++) acc[j] += s[j];
        }
        return acc;
      };
      const same64 = (a: Float64Array, b: Float64Array) => a.every((v, i) => Object.is(v, b[i]));
      for (const [rows, cols] of [
        [1024, 576],
        [1000, 144],
        [3 * B + 5, 4096],
      ]) {
        const n = rows * cols;
        const what = `[${rows}, ${cols}]`;
        const a = spread(n, 11);
        const want = blocked(a, rows, cols);
        const got = [new Float64Array(cols), new Float64Array(cols)];
        expect(plain.colsum(a, { acc: got[0] }, rows, cols)).toBe(true);
        expect(split.colsum(a, { acc: got[1] }, rows, cols)).toBe(true);
        expect(same64(got[0], want), `colsum ${what}, one thread`).toBe(true);
        expect(same64(got[1], want), `colsum ${what}, split`).toBe(true);

        const bias = spread(cols, 12);
        const c = [spread(n, 13), spread(n, 13)];
        const sums = [new Float64Array(cols), new Float64Array(cols)];
        expect(plain.biasReluColsum(c[0], bias, { acc: sums[0] }, rows, cols)).toBe(true);
        expect(split.biasReluColsum(c[1], bias, { acc: sums[1] }, rows, cols)).toBe(true);
        expect(sameBits(c[1], c[0]), `biasReluColsum ${what}: features`).toBe(true);
        expect(same64(sums[0], blocked(c[0], rows, cols)), `biasReluColsum ${what}: sums`).toBe(true);
        expect(same64(sums[1], sums[0]), `biasReluColsum ${what}: split sums`).toBe(true);

        const [dy, row, y] = [spread(n, 14), spread(cols, 15), values(n, 16)];
        const dst = [new Float32Array(n), dy.slice()];
        const grads = [new Float64Array(cols), new Float64Array(cols)];
        expect(plain.reluGradRowColsum(dy, row, y, dst[0], { acc: grads[0] }, rows, cols)).toBe(true);
        // in place, as the backward pass runs it when dF is its own
        expect(split.reluGradRowColsum(dst[1], row, y, dst[1], { acc: grads[1] }, rows, cols)).toBe(true);
        expect(sameBits(dst[1], dst[0]), `reluGradRowColsum ${what}: dPre`).toBe(true);
        expect(same64(grads[0], blocked(dst[0], rows, cols)), `reluGradRowColsum ${what}: sums`).toBe(true);
        expect(same64(grads[1], grads[0]), `reluGradRowColsum ${what}: split sums`).toBe(true);

        // y's mask as bits, then the same dPre and sums over dF in place (one thread and split)
        const masks = [new Uint8Array(n / 4), new Uint8Array(n / 4)];
        expect(plain.reluMask(y, masks[0], n)).toBe(true);
        expect(split.reluMask(y, masks[1], n)).toBe(true);
        const bit = (m: Uint8Array, i: number) => (m[i >> 2] >> (i & 3)) & 1;
        expect(
          y.every((v, i) => bit(masks[0], i) === +(v > 0) && bit(masks[1], i) === +(v > 0)),
          `reluMask ${what}`,
        ).toBe(true);
        const over = [dy.slice(), dy.slice()];
        const masked = [new Float64Array(cols), new Float64Array(cols)];
        expect(
          plain.reluGradRowMaskColsum(over[0], row, masks[0], over[0], { acc: masked[0] }, rows, cols),
        ).toBe(true);
        expect(
          split.reluGradRowMaskColsum(over[1], row, masks[1], over[1], { acc: masked[1] }, rows, cols),
        ).toBe(true);
        for (let k = 0; k < 2; k++) {
          const how = `reluGradRowMaskColsum ${what}, ${k ? 'split' : 'one thread'}`;
          expect(sameBits(over[k], dst[0]), `${how}: dPre`).toBe(true);
          expect(same64(masked[k], grads[0]), `${how}: sums`).toBe(true);
        }
      }
    });

    it('leave small calls and other loops to one thread', async () => {
      const { plain, split } = await setup();
      expect(split.sum).toBe(plain.sum);
      const n = DENSE_SPLIT_MIN_ELEMENTS - 1;
      const [want, got] = [new Float32Array(n), new Float32Array(n)];
      plain.unary('neg', values(n, 3), want, n);
      split.unary('neg', values(n, 3), got, n);
      expect(sameBits(got, want)).toBe(true);
    });
  },
);
