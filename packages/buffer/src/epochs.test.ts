import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { DictlearnError, registerBackend, useBackend } from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FileSourceOptions, NpySource } from './files.js';

let tmp: string;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  tmp = await mkdtemp(join(tmpdir(), 'dictlearn-epochs-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A float32 `.npy` (format 1.0, laid out by hand from numpy's specification) whose row r holds `first + r` in every column. */
async function shard(name: string, first: number, rows: number, dim = 4): Promise<string> {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${dim}), }`;
  const header = `${dict}${' '.repeat((64 - ((11 + dict.length) % 64)) % 64)}\n`;
  const data = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) data.fill(first + r, r * dim, (r + 1) * dim);
  const bytes = new Uint8Array(10 + header.length + data.byteLength);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  bytes.set(new TextEncoder().encode(header), 10);
  bytes.set(new Uint8Array(data.buffer), 10 + header.length);
  const path = join(tmp, name);
  await writeFile(path, bytes);
  return path;
}

/** The row ids (column 0) the source yields, checking every column agrees and the batch sizes. */
async function rowIds(
  source: NpySource,
  batchSize: number,
  start?: number,
): Promise<{ ids: number[]; sizes: number[] }> {
  const ids: number[] = [];
  const sizes: number[] = [];
  for await (const t of source.batches({ batchSize, start })) {
    const v = (await t.data()) as Float32Array;
    sizes.push(t.shape[0]);
    for (let r = 0; r < t.shape[0]; r++) {
      for (let c = 1; c < source.dim; c++) expect(v[r * source.dim + c]).toBe(v[r * source.dim]);
      ids.push(v[r * source.dim]);
    }
    t.dispose();
  }
  return { ids, sizes };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('file sources: epochs and per-epoch shuffling', () => {
  // 87 rows in three shards (one empty), d = 4 (16-byte rows): stripes of 5 rows (80 bytes),
  // chunks of 4 stripes (320 bytes = 20 rows); 18 stripes, the last one 2 rows short.
  const geometry: FileSourceOptions = { stripeBytes: 80, readBytes: 320 };
  let files: string[];
  beforeAll(async () => {
    files = [await shard('a.npy', 0, 50), await shard('b.npy', 50, 0), await shard('c.npy', 50, 37)];
  });

  it('each epoch is a permutation of all rows of all shards, different every epoch, the same for the same seed', async () => {
    const source = await NpySource.open(files, { ...geometry, epochs: 3, shuffle: true, seed: 7 });
    expect(source.layout).toEqual({ stripeRows: 5, stripesPerChunk: 4, stripes: 18, chunks: 5 });
    expect(source.name).toBe('npy(3 files, 87 rows, d=4, shuffled with seed 7)');
    const { ids, sizes } = await rowIds(source, 7);
    // 261 rows: batches span epoch boundaries; only the very last batch is short
    expect(sizes).toEqual([...Array(37).fill(7), 2]);
    const epochs = [0, 1, 2].map((e) => ids.slice(87 * e, 87 * (e + 1)));
    for (const e of epochs) expect([...e].sort((a, b) => a - b)).toEqual(range(87));
    expect(epochs[0]).not.toEqual(range(87));
    expect(epochs[1]).not.toEqual(epochs[0]);
    expect(epochs[2]).not.toEqual(epochs[0]);
    expect(epochs[2]).not.toEqual(epochs[1]);
    const again = await rowIds(
      await NpySource.open(files, { ...geometry, epochs: 3, shuffle: true, seed: 7 }),
      11,
    );
    expect(again.ids).toEqual(ids);
    const other = await rowIds(
      await NpySource.open(files, { ...geometry, epochs: 1, shuffle: true, seed: 8 }),
      7,
    );
    expect(other.ids).not.toEqual(epochs[0]);
    // both draws change with the epoch: the stripe order alone (one-row stripes, one per chunk)
    // and the row order alone (one stripe, one chunk)
    const u20 = await shard('u20.npy', 0, 20);
    for (const g of [
      { stripeBytes: 16, readBytes: 16 },
      { stripeBytes: 320, readBytes: 320 },
    ]) {
      const two = (await rowIds(await NpySource.open(u20, { ...g, epochs: 2, shuffle: true }), 20)).ids;
      expect(two.slice(20), JSON.stringify(g)).not.toEqual(two.slice(0, 20));
    }
    // without shuffle: file order, every epoch
    const plain = await rowIds(await NpySource.open(files, { ...geometry, epochs: 2 }), 10);
    expect(plain.ids).toEqual([...range(87), ...range(87)]);
  });

  it('memory is bounded: each chunk of the output is whole stripes, at most readBytes of rows, mixing shards', async () => {
    const source = await NpySource.open(files, { ...geometry, epochs: 4, shuffle: true, seed: 3 });
    const { ids } = await rowIds(source, 87);
    const stripeOf = (row: number) => Math.floor(row / 5);
    const stripeRows = (s: number) => Math.min(5, 87 - 5 * s);
    let mixed = 0;
    for (let e = 0; e < 4; e++) {
      const order = ids.slice(87 * e, 87 * (e + 1));
      const chunks: number[][] = [];
      for (let i = 0; i < 87; ) {
        // a chunk ends once it holds 4 (or, at the end, fewer) stripes, each complete
        const left = new Map<number, number>();
        let k = i;
        let complete = false;
        while (k < 87 && !(complete && left.size === 4)) {
          const s = stripeOf(order[k]);
          left.set(s, (left.get(s) ?? stripeRows(s)) - 1);
          k++;
          expect(left.size).toBeLessThanOrEqual(4); // rows of a fifth stripe: more than one chunk in memory
          complete = [...left.values()].every((v) => v === 0);
        }
        expect(complete).toBe(true);
        chunks.push([...left.keys()]);
        expect(k - i).toBeLessThanOrEqual(20);
        i = k;
      }
      expect(chunks).toHaveLength(5);
      // stripes 0–9 are shard a's rows, 10–17 shard c's: a chunk draws from both
      mixed += chunks.filter((c) => c.some((s) => s < 10) && c.some((s) => s >= 10)).length;
      // rows within a chunk are shuffled, not stripe by stripe
      expect(order.slice(0, 5).every((r, i) => i === 0 || r === order[i - 1] + 1)).toBe(false);
    }
    expect(mixed).toBeGreaterThan(0);
  });

  it('start = k yields the stream after its first k rows, across chunks, the short stripe and epochs', async () => {
    for (const shuffle of [true, false]) {
      const source = await NpySource.open(files, { ...geometry, epochs: 3, shuffle, seed: 5 });
      const all = (await rowIds(source, 9)).ids;
      for (const k of [0, 1, 19, 20, 21, 44, 86, 87, 100, 173, 174, 260]) {
        expect((await rowIds(source, 9, k)).ids, `start ${k}, shuffle ${shuffle}`).toEqual(all.slice(k));
      }
      expect((await rowIds(source, 9, 261)).ids).toEqual([]);
    }
  });

  it('the stripe order is a permutation for any number of stripes, and about uniform', async () => {
    for (const n of [1, 2, 3, 4, 5, 7, 16, 17, 31, 64, 65]) {
      const source = await NpySource.open(await shard(`n${n}.npy`, 0, n), {
        stripeBytes: 16,
        readBytes: 64,
        epochs: 2,
        shuffle: true,
      });
      const { ids } = await rowIds(source, 64);
      expect(
        [...ids.slice(0, n)].sort((a, b) => a - b),
        `n = ${n}`,
      ).toEqual(range(n));
      expect(
        [...ids.slice(n)].sort((a, b) => a - b),
        `n = ${n}`,
      ).toEqual(range(n));
    }
    // where row 0 lands in epoch 0, over 400 seeds (16 positions, 25 expected each), for the
    // stripe order alone (one-row stripes, one per chunk) and the row order alone (one chunk)
    const path = await shard('u16.npy', 0, 16);
    for (const g of [
      { stripeBytes: 16, readBytes: 16 },
      { stripeBytes: 256, readBytes: 256 },
    ]) {
      const counts = new Array(16).fill(0);
      for (let seed = 0; seed < 400; seed++) {
        const source = await NpySource.open(path, { ...g, shuffle: true, seed });
        const { ids } = await rowIds(source, 16);
        counts[ids.indexOf(0)]++;
      }
      const chi2 = counts.reduce((s, c) => s + (c - 25) ** 2 / 25, 0);
      expect(chi2, `${JSON.stringify(g)}: ${counts.join(' ')}`).toBeLessThan(37.7); // χ²(15) at p = 0.001
    }
  });

  it('NaN in a shuffled read names the file, its row and column', async () => {
    const path = join(tmp, 'nan.npy');
    const good = await shard('nan.npy', 0, 30);
    expect(good).toBe(path);
    const { readFile } = await import('node:fs/promises');
    const bytes = new Uint8Array(await readFile(path));
    const offset = bytes.length - 30 * 16;
    new DataView(bytes.buffer).setFloat32(offset + (17 * 4 + 3) * 4, Number.NaN, true);
    await writeFile(path, bytes);
    const source = await NpySource.open([files[0], path], { ...geometry, shuffle: true, epochs: 1 });
    let error: unknown;
    try {
      await rowIds(source, 8);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DictlearnError);
    expect((error as Error).message).toBe(
      `${path}: row 17, column 3 holds NaN; activations must be finite numbers`,
    );
  });

  it('a file with more than two axes is read as rows of its last axis, and says so', async () => {
    const fixture = fileURLToPath(new URL('./fixtures/f64-3d.npy', import.meta.url));
    const source = await NpySource.open([fixture, fixture]);
    expect(source.rows).toBe(12);
    expect(source.notices).toEqual([
      `${fixture}: reading shape [2, 3, 4] as 6 rows of 4 (every axis but the last counts rows) (and 1 more file likewise)`,
    ]);
    expect((await NpySource.open(files)).notices).toEqual([]);
  });

  it('refuses bad shuffle options, naming them', async () => {
    await expect(NpySource.open(files, { seed: -1 })).rejects.toThrow(
      "NpySource: option 'seed' must be a non-negative integer, got -1",
    );
    await expect(NpySource.open(files, { shuffle: 'yes' as unknown as boolean })).rejects.toThrow(
      `NpySource: option 'shuffle' must be true or false, got "yes"`,
    );
    const source = await NpySource.open(files);
    await expect(rowIds(source, 4, -3)).rejects.toThrow('start must be a non-negative integer, got -3');
  });
});
