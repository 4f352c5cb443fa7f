// OpenBLAS products split over the kernel pool's threads (BlasMatmul.splitOver): each part is
// single-threaded cblas_sgemm on a block of C's rows or columns, one part on this thread and the
// others on the workers, which call the library through koffi with the operands' addresses.
// Every part is a dot product over the whole k: checked against a float64 loop at odd sizes, and
// bit for bit against the whole product at a training step's sizes. (Not bit for bit at every
// size: OpenBLAS picks kernels by size, e.g. its direct path for small NN products, so a part
// may run other kernels than the whole.)
import { lcgValues as values } from '@dictlearn/core/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { kernelPool } from '../kernels/kernel-pool.js';
import { loadBlasMatmul, splitProduct } from './blas-matmul.js';

describe('splitProduct', () => {
  it('cuts the longer side into aligned parts that cover it once', () => {
    expect(splitProduct(1024, 576, 2)).toEqual([
      { rows: true, from: 0, to: 512 },
      { rows: true, from: 512, to: 1024 },
    ]);
    expect(splitProduct(144, 576, 2)).toEqual([
      { rows: false, from: 0, to: 288 },
      { rows: false, from: 288, to: 576 },
    ]);
    // 1000 rows in 3: boundaries on multiples of 16, the last part takes the rest
    expect(splitProduct(1000, 10, 3)).toEqual([
      { rows: true, from: 0, to: 336 },
      { rows: true, from: 336, to: 672 },
      { rows: true, from: 672, to: 1000 },
    ]);
    // too short to split in 4 aligned parts: as many as fit
    expect(splitProduct(40, 8, 4)).toEqual([
      { rows: true, from: 0, to: 16 },
      { rows: true, from: 16, to: 40 },
    ]);
    expect(splitProduct(20, 8, 4)).toEqual([{ rows: true, from: 0, to: 20 }]);
  });
});

const blas = loadBlasMatmul({ threads: 3 });
const pool = kernelPool(3);
const why =
  typeof blas === 'string'
    ? `OpenBLAS unavailable: ${blas}`
    : typeof pool === 'string'
      ? `no kernel pool: ${pool}`
      : undefined;

/** C = op(A)·op(B) in float64 for one batch entry. */
function reference(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  ta: boolean,
  tb: boolean,
) {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++)
        s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  return c;
}

describe.skipIf(why !== undefined)(
  `OpenBLAS products split over worker threads${why ? ` (skipped: ${why})` : ''}`,
  () => {
    afterAll(() => {
      if (typeof pool !== 'string') pool.close();
    });

    it('compute every part: rows or columns, every transpose, odd sizes, batched (against float64)', async () => {
      if (typeof blas === 'string' || typeof pool === 'string') throw new Error('unreachable');
      const split = blas.splitOver(pool);
      expect(split?.description).toMatch(/products split over 3 threads/);
      // the workers start asynchronously: wait until both take parts, so none runs here instead
      for (let tries = 0; tries < 100 && pool.readyWorkers() < 2; tries++)
        await new Promise((r) => setTimeout(r, 20));
      expect(pool.readyWorkers()).toBe(2);
      const cases: [number, number, number, number][] = [
        [1, 257, 100, 70], // rows (m ≥ n), not a multiple of 16
        [1, 60, 301, 90], // columns
        [2, 129, 130, 65], // batched
      ];
      let seed = 1;
      for (const [batch, m, n, k] of cases)
        for (const ta of [false, true])
          for (const tb of [false, true]) {
            const label = `batch ${batch}, m ${m}, n ${n}, k ${k}${ta ? ', Aᵀ' : ''}${tb ? ', Bᵀ' : ''}`;
            const a = values(batch * m * k, seed++);
            const b = values(batch * k * n, seed++);
            // a stale output must be overwritten everywhere
            const parts = split!.matmul(
              a,
              b,
              batch,
              m,
              n,
              k,
              ta,
              tb,
              new Float32Array(batch * m * n).fill(Number.NaN),
            );
            for (let q = 0; q < batch; q++) {
              const ref = reference(
                a.subarray(q * m * k, (q + 1) * m * k),
                b.subarray(q * k * n, (q + 1) * k * n),
                m,
                n,
                k,
                ta,
                tb,
              );
              let worst = 0;
              for (let i = 0; i < m * n; i++) {
                const err = Math.abs(parts[q * m * n + i] - ref[i]);
                worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : Math.max(worst, err);
              }
              expect(worst, label).toBeLessThan(1e-4);
            }
          }
    });

    it("equal the whole product bit for bit at the bench's small step (d 144, F 576, batch 1024)", () => {
      if (typeof blas === 'string' || typeof pool === 'string') throw new Error('unreachable');
      const split = blas.splitOver(pool)!;
      const [B, d, F] = [1024, 144, 576];
      // the step's five products: x·W_enc, f·W_dec, fᵀ·dx̂, dx̂·W_decᵀ, xᵀ·dPre
      const cases: [number, number, number, boolean, boolean][] = [
        [B, F, d, false, false],
        [B, d, F, false, false],
        [F, d, B, true, false],
        [B, F, d, false, true],
        [d, F, B, true, false],
      ];
      for (const [m, n, k, ta, tb] of cases) {
        const a = values(m * k, m + k);
        const b = values(k * n, n + k);
        const label = `m ${m}, n ${n}, k ${k}${ta ? ', Aᵀ' : ''}${tb ? ', Bᵀ' : ''}`;
        const whole = blas.matmul(a, b, 1, m, n, k, ta, tb);
        expect(
          split.matmul(a, b, 1, m, n, k, ta, tb).every((v, i) => Object.is(v, whole[i])),
          label,
        ).toBe(true);
      }
    });

    it('run small products whole, and check lengths', () => {
      if (typeof blas === 'string' || typeof pool === 'string') throw new Error('unreachable');
      const split = blas.splitOver(pool)!;
      const a = values(8 * 4, 7);
      const b = values(4 * 3, 8);
      expect(Array.from(split.matmul(a, b, 1, 8, 3, 4, false, false))).toEqual(
        Array.from(blas.matmul(a, b, 1, 8, 3, 4, false, false)),
      );
      expect(() =>
        split.matmul(values(300 * 70, 1), values(70 * 100, 2), 1, 300, 100, 71, false, false),
      ).toThrow(/blas matmul: lengths a=21000 b=7000 c=30000 do not fit batch=1 m=300 n=100 k=71/);
    });
  },
);
