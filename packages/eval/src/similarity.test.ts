// mmcs() and groundTruthRecovery() against numpy (src/fixtures/similarity.json, made by
// scripts/make-fixtures.py) and hand-computed cases, on the CPU reference backend.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { DictlearnError, memory, registerBackend, type Tensor, tensor, useBackend } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import fixture from './fixtures/similarity.json' with { type: 'json' };
import { groundTruthRecovery, mmcs } from './similarity.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu' }));
  await useBackend('cpu');
});

const live = () => memory().backends.cpu?.tensors ?? 0;
const fromFixture = (t: { shape: number[]; values: number[] }) => tensor(t.values, t.shape);

// Cosines of unit-normalised float32 rows of width 6: each is a 6-term dot product of values
// rounded to float32, so the error against numpy's float64 is a few ulps of 1 (≈ 1e-7);
// 1e-6 leaves room for other summation orders.
const TOL = 1e-6;
function expectAllClose(actual: ArrayLike<number>, expected: readonly number[], tol = TOL): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) {
      throw new Error(`element ${i}: got ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

describe('mmcs against numpy', () => {
  it('for each row of A the max cosine to a row of B, and their mean; not symmetric', async () => {
    const a = fromFixture(fixture.A);
    const b = fromFixture(fixture.B);
    const before = live();
    const ab = await mmcs(a, b);
    expect(ab.maxCos).toBeInstanceOf(Float32Array);
    expectAllClose(ab.maxCos, fixture.maxCosAB);
    expect(ab.mmcs).toBeCloseTo(fixture.mmcsAB, 6);
    const ba = await mmcs(b, a);
    // Row 4 of B is zero: cosine 0 to everything, not NaN.
    expect(ba.maxCos[4]).toBe(0);
    expectAllClose(ba.maxCos, fixture.maxCosBA);
    expect(ba.mmcs).toBeCloseTo(fixture.mmcsBA, 6);
    expect(Math.abs(ab.mmcs - ba.mmcs)).toBeGreaterThan(0.01);
    expect(live()).toBe(before);
    a.dispose();
    b.dispose();
  });

  it('gives the same answer block by block (blockRows) as in one piece', async () => {
    const a = fromFixture(fixture.A);
    const b = fromFixture(fixture.B);
    const whole = await mmcs(a, b);
    for (const blockRows of [1, 2, 4, 8, 9, 100]) {
      const blocked = await mmcs(a, b, { blockRows });
      expect(Array.from(blocked.maxCos)).toEqual(Array.from(whole.maxCos));
    }
    a.dispose();
    b.dispose();
  });
});

describe('mmcs on hand-computed cases', () => {
  it('a permuted, rescaled copy has MMCS 1; orthogonal rows 0; negated rows −1', async () => {
    const a = tensor([
      [1, 0, 0],
      [0, 2, 0],
      [0, 0, -3],
    ]);
    const permuted = tensor([
      [0, 0, -1],
      [5, 0, 0],
      [0, 0.5, 0],
    ]);
    expect((await mmcs(a, permuted)).mmcs).toBeCloseTo(1, 6);
    const orth = tensor([[0, 0, 1]]);
    const first = tensor([
      [1, 0, 0],
      [0, 1, 0],
    ]);
    expect(Array.from((await mmcs(first, orth)).maxCos)).toEqual([0, 0]);
    const neg = tensor([[-1, 0, 0]]);
    expect((await mmcs(tensor([[2, 0, 0]]), neg)).mmcs).toBeCloseTo(-1, 6);
    // 45°: cos = 1/√2.
    expect((await mmcs(tensor([[1, 1, 0]]), tensor([[0, 3, 0]]))).mmcs).toBeCloseTo(Math.SQRT1_2, 6);
  });

  it('a zero row of A matches nothing (cosine 0), and no NaN appears', async () => {
    const r = await mmcs(
      tensor([
        [0, 0],
        [1, 0],
      ]),
      tensor([[1, 0]]),
    );
    expect(Array.from(r.maxCos)).toEqual([0, 1]);
    expect(r.mmcs).toBe(0.5);
  });
});

describe('groundTruthRecovery', () => {
  it('matches numpy: MMCS with the truth as A, and the true features recovered above 0.9', async () => {
    const truth = fromFixture(fixture.A);
    const learned = fromFixture(fixture.B);
    const r = await groundTruthRecovery(learned, truth);
    expect(r.threshold).toBe(0.9);
    expect(r.recovered).toBe(fixture.recoveredAB);
    expect(r.recovered).toBeGreaterThan(0);
    expect(r.recovered).toBeLessThan(9);
    expect(r.fractionRecovered).toBe(fixture.fractionRecoveredAB);
    expect(r.mmcs).toBeCloseTo(fixture.mmcsAB, 6);
    expectAllClose(r.maxCos, fixture.maxCosAB);
    truth.dispose();
    learned.dispose();
  });

  it('the threshold is strict and adjustable', async () => {
    const truth = tensor([
      [1, 0],
      [0, 1],
    ]);
    const learned = tensor([
      [1, 0],
      [1, 1],
    ]); // cosines: 1 and 1/√2
    expect((await groundTruthRecovery(learned, truth)).recovered).toBe(1);
    expect((await groundTruthRecovery(learned, truth, 0.7)).recovered).toBe(2);
    expect((await groundTruthRecovery(learned, truth, 1)).recovered).toBe(0);
    expect((await groundTruthRecovery(learned, truth, -1)).fractionRecovered).toBe(1);
  });
});

describe('similarity rejects bad input with a clear DictlearnError', () => {
  const m = (rows: number[][]) => tensor(rows);

  async function rejects(run: () => Promise<unknown>, message: RegExp): Promise<void> {
    const before = live();
    const err = await run().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DictlearnError);
    expect((err as Error).message).toMatch(message);
    expect(live()).toBe(before);
  }

  it('different widths, wrong ranks, empty matrices, int32', async () => {
    const a = m([[1, 2, 3]]);
    const b = m([[1, 2]]);
    await rejects(
      () => mmcs(a, b),
      /mmcs: a \[1, 3\] and b \[1, 2\] have different widths; both must be \[rows, d\] with the same d/,
    );
    await rejects(
      () => groundTruthRecovery(a, b),
      /groundTruthRecovery: truth \[1, 2\] and learned \[1, 3\] have different widths/,
    );
    const v = tensor([1, 2, 3]);
    await rejects(() => mmcs(v, a), /mmcs: a has shape \[3\]; expected a non-empty matrix \[rows, d\]/);
    const empty = tensor(new Float32Array(0), [0, 3]);
    await rejects(() => mmcs(a, empty), /mmcs: b has shape \[0, 3\]; expected a non-empty matrix/);
    const ints = tensor(new Int32Array([1, 2, 3]), [1, 3]);
    await rejects(() => mmcs(ints, a), /mmcs: a is int32; expected float32/);
    await rejects(() => mmcs(a, null as unknown as Tensor), /mmcs: b must be a Tensor \[rows, d\], got null/);
    for (const t of [a, b, v, empty, ints]) t.dispose();
  });

  it('NaN or Inf in either matrix', async () => {
    const a = m([[1, Number.NaN]]);
    const b = m([[1, 0]]);
    await rejects(
      () => mmcs(a, b),
      /mmcs: a holds 1 NaN or Inf value \(first at row 0, column 1: NaN\); expected finite feature directions/,
    );
    await rejects(() => groundTruthRecovery(a, b), /groundTruthRecovery: learned holds 1 NaN or Inf value/);
    a.dispose();
    b.dispose();
  });

  it('a threshold outside [−1, 1] or not a number, and a bad blockRows', async () => {
    const a = m([[1, 0]]);
    for (const threshold of [1.5, -2, Number.NaN, '0.9' as unknown as number]) {
      await rejects(
        () => groundTruthRecovery(a, a, threshold),
        /groundTruthRecovery: threshold must be a cosine similarity in \[-1, 1\]/,
      );
    }
    for (const blockRows of [0, 2.5, -1]) {
      await rejects(() => mmcs(a, a, { blockRows }), /mmcs: options\.blockRows must be a positive integer/);
    }
    a.dispose();
  });

  it('a disposed input', async () => {
    const a = m([[1, 0]]);
    const b = m([[1, 0]]);
    b.dispose();
    await rejects(() => mmcs(a, b), /was disposed/);
    a.dispose();
  });
});
