import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { DictlearnError, encodeSafetensors, registerBackend, type Tensor, useBackend } from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActivationBuffer } from './buffer.js';
import { NpySource, SafetensorsSource } from './files.js';
import { parseNpyHeader } from './npy.js';

const dir = fileURLToPath(new URL('./fixtures/', import.meta.url));
const fx = (name: string) => join(dir, name);
const expected = JSON.parse(await readFile(fx('expected.json'), 'utf8')) as Record<
  string,
  { shape: number[]; values: number[] }
>;
let tmp: string;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  tmp = await mkdtemp(join(tmpdir(), 'dictlearn-files-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** All batches of a source: their row counts and their values, concatenated. */
async function readAll(
  source: { batches(o: { batchSize: number }): AsyncIterable<Tensor> },
  batchSize: number,
) {
  const sizes: number[] = [];
  const values: number[] = [];
  for await (const t of source.batches({ batchSize })) {
    sizes.push(t.shape[0]);
    values.push(...((await t.data()) as Float32Array));
    t.dispose();
  }
  return { sizes, values };
}

async function rejection(p: Promise<unknown>): Promise<DictlearnError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    return e as DictlearnError;
  }
  throw new Error('expected an error');
}

describe('NpySource: numpy-written files', () => {
  for (const name of ['f32.npy', 'f16.npy', 'f64-3d.npy', 'v2.npy', 'v3.npy']) {
    it(`reads ${name} to numpy's values`, async () => {
      const want = expected[name];
      const source = await NpySource.open(fx(name));
      const rows = want.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      expect(source.dim).toBe(want.shape.at(-1));
      expect(source.rows).toBe(rows);
      expect(source.files[0].shape).toEqual(want.shape);
      const { sizes, values } = await readAll(source, 1000);
      expect(sizes).toEqual([rows]);
      expect(values).toEqual(want.values);
    });
  }

  it('streams several files as one sequence, batches spanning file boundaries', async () => {
    const files = ['f32.npy', 'empty.npy', 'v2.npy', 'f16.npy', 'v3.npy'].map(fx);
    const source = await NpySource.open(files, { readBytes: 20 }); // one 16-byte row per read
    expect(source.rows).toBe(5 + 0 + 2 + 3 + 1);
    expect(source.name).toBe('npy(5 files, 11 rows, d=4)');
    const { sizes, values } = await readAll(source, 3);
    expect(sizes).toEqual([3, 3, 3, 2]);
    const want = ['f32.npy', 'v2.npy', 'f16.npy', 'v3.npy'].flatMap((n) => expected[n].values);
    expect(values).toEqual(want);
  });

  it('repeats the files for several epochs', async () => {
    const source = await NpySource.open(fx('v2.npy'), { epochs: 3 });
    const { sizes, values } = await readAll(source, 4);
    expect(sizes).toEqual([4, 2]);
    expect(values).toEqual([
      ...expected['v2.npy'].values,
      ...expected['v2.npy'].values,
      ...expected['v2.npy'].values,
    ]);
  });

  it('expands a directory into its .npy files, in name order', async () => {
    const d = join(tmp, 'shards');
    await mkdir(d);
    await copyFile(fx('v2.npy'), join(d, 'b.npy'));
    await copyFile(fx('f32.npy'), join(d, 'a.npy'));
    await writeFile(join(d, 'notes.txt'), 'not a shard');
    const source = await NpySource.open(d);
    expect(source.files.map((f) => f.path)).toEqual([join(d, 'a.npy'), join(d, 'b.npy')]);
    const { values } = await readAll(source, 100);
    expect(values).toEqual([...expected['f32.npy'].values, ...expected['v2.npy'].values]);
  });

  it('feeds an ActivationBuffer that yields every row once', async () => {
    const source = await NpySource.open([fx('f32.npy'), fx('f64-3d.npy'), fx('f16.npy')]);
    const buffer = new ActivationBuffer(source, { capacity: 6, batchSize: 3, sourceBatchSize: 4 });
    const rows: string[] = [];
    for await (const t of buffer) {
      const v = (await t.data()) as Float32Array;
      for (let r = 0; r < t.shape[0]; r++) rows.push(Array.from(v.subarray(r * 4, r * 4 + 4)).join(','));
      t.dispose();
    }
    const want: string[] = [];
    for (const n of ['f32.npy', 'f64-3d.npy', 'f16.npy']) {
      const v = expected[n].values;
      for (let r = 0; r < v.length / 4; r++) want.push(v.slice(r * 4, r * 4 + 4).join(','));
    }
    expect(rows.sort()).toEqual(want.sort());
  });
});

describe('NpySource: bad files', () => {
  it('not an npy file', async () => {
    expect((await rejection(NpySource.open(fx('not-npy.npy')))).message).toBe(
      `${fx('not-npy.npy')}: not an .npy file: it does not start with the magic bytes \\x93NUMPY`,
    );
  });

  it('truncated data', async () => {
    const e = await rejection(NpySource.open(fx('truncated.npy')));
    expect(e.op).toBe(fx('truncated.npy'));
    expect(e.message).toBe(
      `${fx('truncated.npy')}: truncated .npy file: shape [5, 4] float32 needs 80 data bytes after the 128-byte header, the file holds 70`,
    );
  });

  it('a file truncated while being read', async () => {
    const path = join(tmp, 'shrinks.npy');
    await copyFile(fx('f32.npy'), path);
    const source = await NpySource.open(path);
    await writeFile(path, (await readFile(fx('f32.npy'))).subarray(0, 150));
    const it = source.batches({ batchSize: 5 });
    expect((await rejection(it.next())).message).toBe(
      `${path}: the file ended at byte 150, 58 bytes short (was it truncated while being read?)`,
    );
  });

  it('fortran order', async () => {
    expect((await rejection(NpySource.open(fx('fortran.npy')))).message).toBe(
      `${fx('fortran.npy')}: fortran_order is True: only C-order arrays are supported (save np.ascontiguousarray(x) instead)`,
    );
  });

  it('unsupported dtypes: int32 and big-endian float32', async () => {
    expect((await rejection(NpySource.open(fx('int32.npy')))).message).toBe(
      `${fx('int32.npy')}: unsupported dtype '<i4'; expected little-endian float32 '<f4', float16 '<f2' or float64 '<f8'`,
    );
    expect((await rejection(NpySource.open(fx('big-endian.npy')))).message).toMatch(
      /unsupported dtype '>f4'/,
    );
  });

  it('inconsistent widths across files, naming the file and the expected width', async () => {
    expect((await rejection(NpySource.open([fx('f32.npy'), fx('d8.npy')]))).message).toBe(
      `${fx('d8.npy')}: shape [2, 8] has last axis 8, expected 4 (the width of ${fx('f32.npy')})`,
    );
    expect((await rejection(NpySource.open(fx('f32.npy'), { dim: 5 }))).message).toBe(
      `${fx('f32.npy')}: shape [5, 4] has last axis 4, expected 5 (the 'dim' option)`,
    );
  });

  it('a 1-D array, a missing file, no paths, bad options', async () => {
    expect((await rejection(NpySource.open(fx('1d.npy')))).message).toBe(
      `${fx('1d.npy')}: shape [4] has 1 axis; expected [rows, dim] (or more axes, the last being dim)`,
    );
    expect((await rejection(NpySource.open(fx('missing.npy')))).message).toMatch(
      /missing\.npy: cannot open the file: ENOENT/,
    );
    expect((await rejection(NpySource.open([]))).message).toBe('NpySource: expected one or more file paths');
    expect((await rejection(NpySource.open(fx('f32.npy'), { epochs: 0 }))).message).toBe(
      "NpySource: option 'epochs' must be a positive integer or Infinity, got 0",
    );
  });

  it('an unsupported format version', async () => {
    const bytes = new Uint8Array(await readFile(fx('f32.npy')));
    bytes[6] = 4;
    const path = join(tmp, 'v4.npy');
    await writeFile(path, bytes);
    expect((await rejection(NpySource.open(path))).message).toBe(
      `${path}: unsupported .npy format version 4.0; expected 1.0, 2.0 or 3.0`,
    );
  });
});

describe('parseNpyHeader', () => {
  const encode = (header: string, major = 1) => {
    const text = new TextEncoder().encode(header);
    const pre = major === 1 ? 10 : 12;
    const out = new Uint8Array(pre + text.length);
    out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
    const v = new DataView(out.buffer);
    if (major === 1) v.setUint16(8, text.length, true);
    else v.setUint32(8, text.length, true);
    out.set(text, pre);
    return out;
  };

  it('reads the dict whatever the key order, spacing, Python 2 longs or trailing commas', () => {
    const text = "{ 'shape' : (3L, 7L, ), 'fortran_order':False,'descr':'<f2',}  \n";
    const h = parseNpyHeader(encode(text));
    expect(h).toEqual({
      version: [1, 0],
      descr: '<f2',
      dtype: 'float16',
      fortranOrder: false,
      shape: [3, 7],
      dataOffset: 10 + text.length,
    });
    expect(
      parseNpyHeader(encode("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 4), }", 2)).shape,
    ).toEqual([2, 3, 4]);
  });

  it('refuses malformed and incomplete headers', () => {
    expect(() => parseNpyHeader(encode("{'descr': '<f4', 'shape': (2, 3)"), 'h.npy')).toThrow(
      /^h\.npy: malformed \.npy header .*: expected ',' or '}' at character 32$/,
    );
    expect(() => parseNpyHeader(encode("{'descr': '<f4', 'shape': (2, 3)}"), 'h.npy')).toThrow(
      "h.npy: the .npy header has no 'fortran_order' key",
    );
    expect(() =>
      parseNpyHeader(encode("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3)}"), 'h.npy'),
    ).toThrow("h.npy: unsupported dtype a structured dtype; expected little-endian float32 '<f4'");
    expect(() =>
      parseNpyHeader(
        encode("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}").subarray(0, 30),
        'h.npy',
      ),
    ).toThrow('h.npy: truncated .npy header: 30 bytes given, the header ends at byte 67');
    expect(() => parseNpyHeader(new Uint8Array([0x93, 0x4e, 0x55]), 'h.npy')).toThrow(
      'h.npy: not an .npy file: only 3 bytes, shorter than the 10-byte preamble',
    );
  });
});

describe('SafetensorsSource', () => {
  it('reads the only tensor of a file (F32) and a BF16 one', async () => {
    const a = await SafetensorsSource.open(fx('acts.safetensors'));
    expect(a.keys).toEqual(['acts']);
    expect((await readAll(a, 4)).values).toEqual(expected['acts.safetensors'].values);
    const b = await SafetensorsSource.open(fx('acts-bf16.safetensors'));
    expect((await readAll(b, 10)).values).toEqual(expected['acts-bf16.safetensors'].values);
  });

  it('picks a tensor by key (F16, 3-D, after another tensor in the file)', async () => {
    const s = await SafetensorsSource.open(fx('multi.safetensors'), { key: 'resid' });
    expect(s.rows).toBe(4);
    const { sizes, values } = await readAll(s, 3);
    expect(sizes).toEqual([3, 1]);
    expect(values).toEqual(expected['multi.safetensors'].values);
  });

  it('streams several files; widths must agree', async () => {
    const s = await SafetensorsSource.open([fx('acts.safetensors'), fx('acts-bf16.safetensors')]);
    expect((await readAll(s, 5)).values).toEqual([
      ...expected['acts.safetensors'].values,
      ...expected['acts-bf16.safetensors'].values,
    ]);
    const wide = join(tmp, 'wide.safetensors');
    await writeFile(
      wide,
      encodeSafetensors({ x: { dtype: 'F32', shape: [2, 3], data: new Float32Array(6) } }),
    );
    expect((await rejection(SafetensorsSource.open([fx('acts.safetensors'), wide]))).message).toBe(
      `${wide}: shape [2, 3] has last axis 3, expected 4 (the width of ${fx('acts.safetensors')})`,
    );
  });

  it('clear errors: several tensors, a missing key, an integer tensor, a truncated file, a foreign file', async () => {
    const multi = fx('multi.safetensors');
    expect((await rejection(SafetensorsSource.open(multi))).message).toBe(
      `${multi}: the file holds 2 tensors ('ids', 'resid'); pass the 'key' option to choose one`,
    );
    expect((await rejection(SafetensorsSource.open(multi, { key: 'acts' }))).message).toBe(
      `${multi}: no tensor 'acts'; the file holds 'ids', 'resid'`,
    );
    expect((await rejection(SafetensorsSource.open(multi, { key: 'ids' }))).message).toBe(
      `${multi}: tensor 'ids' is I32; expected float activations (F32, F16, BF16 or F64)`,
    );
    const cut = join(tmp, 'cut.safetensors');
    await writeFile(cut, (await readFile(fx('acts.safetensors'))).subarray(0, 150));
    expect((await rejection(SafetensorsSource.open(cut))).message).toBe(
      `${cut}: tensor 'acts': data_offsets [0, 96] run past the end of the data buffer (78 bytes): truncated file`,
    );
    expect((await rejection(SafetensorsSource.open(fx('f32.npy')))).message).toMatch(
      /not a safetensors file$/,
    );
  });
});
