import { readFileSync } from 'node:fs';
import '@dictlearn/backend-cpu/register';
import { DictlearnError, useBackend } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ArraySource, parseNpy } from './upload.js';

const fixture = (name: string) =>
  new Uint8Array(readFileSync(new URL(`./fixtures/${name}`, import.meta.url)));
// What make_fixtures.py wrote: x[i, j] = (4i + j)/8 − 1, exact in every dtype.
const expected = Array.from({ length: 12 }, (_, k) => k / 8 - 1);

beforeAll(() => useBackend('cpu'));

describe('parseNpy (uploaded activations)', () => {
  it.each(['small_f32.npy', 'small_f16.npy', 'small_f64.npy', 'rows3d_f32.npy'])(
    'reads %s written by numpy',
    (name) => {
      const a = parseNpy(fixture(name), name);
      expect([a.rows, a.dim]).toEqual([3, 4]);
      expect(Array.from(a.data)).toEqual(expected);
    },
  );

  it('refuses what it cannot read, naming the file and what was expected', () => {
    const bad = (bytes: Uint8Array, name: string, pattern: RegExp) => {
      let caught: unknown;
      try {
        parseNpy(bytes, name);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(DictlearnError);
      expect((caught as Error).message).toMatch(new RegExp(`^${name}: .*${pattern.source}`));
    };
    bad(fixture('small_i32.npy'), 'small_i32.npy', /unsupported dtype '<i4'.*float32/);
    bad(fixture('fortran_f32.npy'), 'fortran_f32.npy', /fortran_order is True/);
    const full = fixture('small_f32.npy');
    bad(
      full.subarray(0, full.length - 4),
      'cut.npy',
      /truncated: shape \[3, 4\] of float32 needs 48 data bytes, the file has 44/,
    );
    bad(new TextEncoder().encode('a,b\n1,2\n'), 'data.csv', /not an \.npy file/);
    const nan = full.slice();
    new DataView(nan.buffer).setFloat32(nan.length - 4 * 7, Number.NaN, true);
    bad(nan, 'nan.npy', /value at row 1, column 1 is NaN/);
  });
});

describe('ArraySource', () => {
  it('yields consecutive rows and wraps around', async () => {
    const src = new ArraySource(parseNpy(fixture('small_f32.npy'), 'x.npy'));
    expect(src.dim).toBe(4);
    const it = src.batches({ batchSize: 2 })[Symbol.asyncIterator]();
    const rows: number[][] = [];
    for (let b = 0; b < 3; b++) {
      const t = (await it.next()).value!;
      expect(t.shape).toEqual([2, 4]);
      const v = Array.from(await t.data()) as number[];
      t.dispose();
      rows.push(v.slice(0, 4), v.slice(4));
    }
    // Rows 0 1 | 2 0 | 1 2: row r is expected[4r … 4r + 3].
    const row = (r: number) => expected.slice(4 * r, 4 * r + 4);
    expect(rows).toEqual([row(0), row(1), row(2), row(0), row(1), row(2)]);
  });
});
