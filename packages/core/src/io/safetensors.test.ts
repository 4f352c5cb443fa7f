import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DictlearnError } from '../errors.js';
import { writeFileAtomic } from './fs.js';
import {
  decodeSafetensors,
  encodeSafetensors,
  float16ToFloat32,
  float32ToBFloat16Bits,
  float32ToFloat16Bits,
  parseSafetensorsHeader,
  readSafetensors,
  writeSafetensorsAtomic,
} from './safetensors.js';

const fixturePath = new URL('./fixtures/sample.safetensors', import.meta.url);
// JSON.parse keeps -0 (a JSON import would not)
const expected = JSON.parse(
  readFileSync(new URL('./fixtures/sample.expected.json', import.meta.url), 'utf8'),
) as {
  file_bytes: number;
  metadata: Record<string, string>;
  half_bits: number[];
  tensors: Record<
    'weights' | 'ids' | 'half' | 'brain',
    { dtype: string; shape: number[]; values: number[]; bits?: number[] }
  >;
};

/** Builds a file from a header object (not padded unless asked) and a data buffer. */
function build(header: unknown, data: Uint8Array | number = 0, raw?: string): Uint8Array {
  const json = new TextEncoder().encode(raw ?? JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

function errorOf(fn: () => unknown): DictlearnError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    return e as DictlearnError;
  }
  throw new Error('expected an error');
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dictlearn-st-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('decodeSafetensors: the numpy-written fixture', () => {
  it('decodes every tensor to the values numpy wrote', async () => {
    const bytes = new Uint8Array(await readFile(fixturePath));
    expect(bytes.length).toBe(expected.file_bytes);
    const file = decodeSafetensors(bytes, 'sample.safetensors');
    expect(file.metadata).toEqual(expected.metadata);
    expect(Object.keys(file.tensors)).toEqual(['weights', 'ids', 'half', 'brain']);
    for (const [name, want] of Object.entries(expected.tensors)) {
      const got = file.tensors[name];
      expect(got.dtype, name).toBe(want.dtype);
      expect(got.shape, name).toEqual(want.shape);
      expect(Array.from(got.data as ArrayLike<number>), name).toEqual(want.values);
    }
    expect(file.tensors.weights.data).toBeInstanceOf(Float32Array);
    expect(Object.is(file.tensors.weights.data[4], -0)).toBe(true);
    expect(file.tensors.ids.data).toBeInstanceOf(Int32Array);
    expect(file.tensors.half.data).toBeInstanceOf(Float32Array);
    expect(file.tensors.brain.data).toBeInstanceOf(Float32Array);
  });

  it('encodes the same tensors to the very same bytes', async () => {
    const bytes = new Uint8Array(await readFile(fixturePath));
    const t = expected.tensors;
    const encoded = encodeSafetensors(
      {
        weights: { dtype: 'F32', shape: t.weights.shape, data: Float32Array.from(t.weights.values) },
        ids: { dtype: 'I32', shape: t.ids.shape, data: Int32Array.from(t.ids.values) },
        half: { dtype: 'F16', shape: t.half.shape, data: Uint16Array.from(expected.half_bits) },
        brain: { dtype: 'BF16', shape: t.brain.shape, data: Uint16Array.from(t.brain.bits!) },
      },
      expected.metadata,
    );
    expect(Buffer.from(encoded).equals(Buffer.from(bytes))).toBe(true);
  });

  it('readSafetensors reads the file from disk', async () => {
    const file = await readSafetensors(fixturePath.pathname);
    expect(Array.from(file.tensors.ids.data as Int32Array)).toEqual(expected.tensors.ids.values);
  });
});

describe('float16 / bfloat16 conversions', () => {
  it('round float32 to the bit patterns numpy computed (nearest even)', () => {
    expect(expected.tensors.half.values.map(float32ToFloat16Bits)).toEqual(expected.half_bits);
    expect([3.140625, -1e-3].map(float32ToBFloat16Bits)).toEqual(expected.tensors.brain.bits);
  });

  it('handle hand-checked edge cases', () => {
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0 = 0x3c00)
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // rounds up to infinity
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(float32ToFloat16Bits(Number.NaN) & 0x7e00).toBe(0x7e00);
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0); // exactly half the smallest subnormal: to even
    expect(float32ToFloat16Bits(1.5 * 2 ** -25)).toBe(1);
    expect(float32ToFloat16Bits(-(2 ** -20))).toBe(0x8010);
    expect(float32ToBFloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie to even
    expect(float32ToBFloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float16ToFloat32(all);
    for (let h = 0; h < 65536; h++) {
      if (!Number.isNaN(back[h])) expect(float32ToFloat16Bits(back[h])).toBe(h);
    }
  });
});

describe('encodeSafetensors / decodeSafetensors round trip', () => {
  it('keeps every dtype, shape and the metadata; the header is padded to 8 bytes', () => {
    const f64 = Float64Array.from([Math.PI, -1e300, 5e-324]);
    const bytes = encodeSafetensors(
      {
        a: { dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
        b: { dtype: 'F64', shape: [3], data: f64 },
        c: { dtype: 'I32', shape: [], data: Int32Array.from([-7]) },
        d: { dtype: 'I64', shape: [2], data: Int32Array.from([-3, 2 ** 31 - 1]) },
        e: { dtype: 'F16', shape: [2], data: Float32Array.from([0.1, -2]) },
        f: { dtype: 'BF16', shape: [1, 2], data: Float32Array.from([0.1, 300]) },
        empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
      },
      { arch: 'topk', k: '32' },
    );
    const n = new DataView(bytes.buffer).getUint32(0, true);
    expect(n % 8).toBe(0);
    const file = decodeSafetensors(bytes);
    expect(file.metadata).toEqual({ arch: 'topk', k: '32' });
    expect(Array.from(file.tensors.a.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(file.tensors.b.data).toEqual(f64);
    expect(file.tensors.c.shape).toEqual([]);
    expect(Array.from(file.tensors.c.data as Int32Array)).toEqual([-7]);
    expect(file.tensors.d.data).toBeInstanceOf(Int32Array);
    expect(Array.from(file.tensors.d.data as Int32Array)).toEqual([-3, 2 ** 31 - 1]);
    // 0.1 in half is 0x2e66 = 0.0999755859375; in bfloat16 0x3dcd = 0.10009765625
    expect(Array.from(file.tensors.e.data as Float32Array)).toEqual([0.0999755859375, -2]);
    expect(Array.from(file.tensors.f.data as Float32Array)).toEqual([0.10009765625, 300]);
    expect(file.tensors.empty.shape).toEqual([0, 4]);
    expect(file.tensors.empty.data.length).toBe(0);
  });

  it('decodes I64 as BigInt64Array on request and refuses int64 values outside int32 by default', () => {
    const bytes = encodeSafetensors({
      big: { dtype: 'I64', shape: [2], data: BigInt64Array.from([5n, -(2n ** 40n)]) },
    });
    expect(
      Array.from(decodeSafetensors(bytes, 'x', { int64: 'bigint' }).tensors.big.data as BigInt64Array),
    ).toEqual([5n, -(2n ** 40n)]);
    expect(errorOf(() => decodeSafetensors(bytes, 'x')).message).toBe(
      "x: tensor 'big': I64 value -1099511627776 at index 1 does not fit in int32; decode with { int64: 'bigint' }",
    );
  });

  it('returns aligned copies that do not alias the input bytes', () => {
    const inner = encodeSafetensors({ a: { dtype: 'F32', shape: [1], data: Float32Array.from([2]) } });
    // place the file at an odd offset of a larger buffer
    const host = new Uint8Array(inner.length + 3);
    host.set(inner, 3);
    const file = decodeSafetensors(host.subarray(3));
    expect(file.tensors.a.data[0]).toBe(2);
    host.fill(0);
    expect(file.tensors.a.data[0]).toBe(2);
  });

  it('refuses bad input to the encoder, naming the tensor', () => {
    expect(
      errorOf(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }))
        .message,
    ).toBe("encodeSafetensors: tensor 'w': shape [2, 2] of F32 needs 16 bytes, Float32Array holds 12");
    expect(
      errorOf(() => encodeSafetensors({ w: { dtype: 'F32', shape: [2], data: new Float64Array(3) } }))
        .message,
    ).toBe("encodeSafetensors: tensor 'w': shape [2] needs 2 values, Float64Array holds 3");
    expect(
      errorOf(() => encodeSafetensors({ w: { dtype: 'U8' as 'F32', shape: [1], data: new Float32Array(1) } }))
        .message,
    ).toBe(
      'encodeSafetensors: tensor \'w\': unknown dtype "U8"; expected one of F32, F64, F16, BF16, I32, I64',
    );
    expect(
      errorOf(() => encodeSafetensors({ i: { dtype: 'I32', shape: [1], data: Float32Array.from([1.5]) } }))
        .message,
    ).toBe("encodeSafetensors: tensor 'i': I32 needs integers in [-2147483648, 2147483647], value 0 is 1.5");
  });
});

describe('decodeSafetensors: bad files', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('a file shorter than the 8-byte length is truncated', () => {
    expect(errorOf(() => decodeSafetensors(new Uint8Array(5), 'short.safetensors')).message).toBe(
      'short.safetensors: file is 5 bytes, too short for the 8-byte header length: truncated or not a safetensors file',
    );
  });

  it('an absurd header length means a foreign file', () => {
    const npy = new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0x76, 0, 0x7b, 0x27]);
    const e = errorOf(() => decodeSafetensors(npy, 'acts.npy'));
    expect(e.op).toBe('acts.npy');
    expect(e.message).toMatch(
      /^acts\.npy: header length .* is larger than 100000000 bytes: not a safetensors file$/,
    );
    const big = new Uint8Array(16);
    new DataView(big.buffer).setUint32(0, 200_000_000, true);
    expect(errorOf(() => decodeSafetensors(big, 'f')).message).toBe(
      'f: header length 200000000 is larger than 100000000 bytes: not a safetensors file',
    );
  });

  it('a header running past the end of the file is truncated', () => {
    const bytes = build(ok, 8).subarray(0, 20);
    expect(errorOf(() => decodeSafetensors(bytes, 'cut.safetensors')).message).toBe(
      `cut.safetensors: header length ${JSON.stringify(ok).length} runs past the end of the file (20 bytes, header needs ${8 + JSON.stringify(ok).length}): truncated file`,
    );
  });

  it('a header that is not JSON, or not an object, means a foreign file', () => {
    expect(errorOf(() => decodeSafetensors(build(null, 0, '{"a": nope}'), 'f')).message).toMatch(
      /^f: header is not JSON \(.*\): not a safetensors file$/,
    );
    expect(errorOf(() => decodeSafetensors(build([1, 2]), 'f')).message).toBe(
      'f: header is not a JSON object: not a safetensors file',
    );
  });

  it('an unknown dtype', () => {
    const h = { a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } };
    expect(errorOf(() => decodeSafetensors(build(h, 2), 'f')).message).toBe(
      `f: tensor 'a': unknown dtype "F8_E4M3"; expected one of F32, F64, F16, BF16, I32, I64`,
    );
  });

  it('a shape that does not match the byte range', () => {
    const h = { a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } };
    expect(errorOf(() => decodeSafetensors(build(h, 20), 'f')).message).toBe(
      "f: tensor 'a': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20",
    );
  });

  it('data offsets beyond the buffer mean a truncated file', async () => {
    const bytes = new Uint8Array(await readFile(fixturePath));
    expect(errorOf(() => decodeSafetensors(bytes.subarray(0, bytes.length - 2), 'sample')).message).toBe(
      "sample: tensor 'brain': data_offsets [46, 50] run past the end of the data buffer (48 bytes): truncated file",
    );
  });

  it('overlapping, backwards, gapped and short ranges', () => {
    const overlap = {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    };
    expect(errorOf(() => decodeSafetensors(build(overlap, 12), 'f')).message).toBe(
      "f: tensors 'a' (bytes [0, 8)) and 'b' (bytes [4, 12)) overlap",
    );
    const backwards = { a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } };
    expect(errorOf(() => decodeSafetensors(build(backwards, 8), 'f')).message).toBe(
      "f: tensor 'a': data_offsets [8, 0] run backwards (end before begin)",
    );
    const hole = {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
    };
    expect(errorOf(() => decodeSafetensors(build(hole, 12), 'f')).message).toBe(
      "f: the data buffer has a hole: bytes [4, 8) belong to no tensor (tensor 'b' starts at 8)",
    );
    expect(errorOf(() => decodeSafetensors(build(ok, 12), 'f')).message).toBe(
      'f: the data buffer has 12 bytes but the tensors cover only 8: trailing bytes after the last tensor',
    );
    // out of header order but tiling the buffer is fine
    const swapped = {
      b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    };
    expect(Object.keys(decodeSafetensors(build(swapped, 8)).tensors)).toEqual(['b', 'a']);
  });

  it('malformed entries and metadata', () => {
    expect(
      errorOf(() => decodeSafetensors(build({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }), 'f'))
        .message,
    ).toBe("f: tensor 'a': shape must be an array of non-negative integers, got [-1]");
    expect(
      errorOf(() => decodeSafetensors(build({ a: { dtype: 'F32', shape: [1], data_offsets: [0] } }), 'f'))
        .message,
    ).toBe("f: tensor 'a': data_offsets must be [begin, end] byte offsets, got [0]");
    expect(errorOf(() => decodeSafetensors(build({ __metadata__: { step: 3 } }), 'f')).message).toBe(
      "f: __metadata__ must map strings to strings; 'step' is 3",
    );
  });

  it('parseSafetensorsHeader validates a header without the data present', () => {
    const bytes = build(ok, 8);
    const header = parseSafetensorsHeader(
      bytes.subarray(0, 8 + JSON.stringify(ok).length),
      bytes.length,
      'f',
    );
    expect(header.dataOffset).toBe(8 + JSON.stringify(ok).length);
    expect(header.entries).toEqual([{ name: 'a', dtype: 'F32', shape: [2], begin: 0, end: 8 }]);
  });

  it('readSafetensors names the file in its errors', async () => {
    const path = join(dir, 'truncated.safetensors');
    const bytes = new Uint8Array(await readFile(fixturePath));
    await writeFile(path, bytes.subarray(0, 100));
    const e = await readSafetensors(path).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DictlearnError);
    expect((e as DictlearnError).op).toBe(path);
    expect((e as DictlearnError).message).toContain('truncated file');
    const missing = await readSafetensors(join(dir, 'nope.safetensors')).catch((x: unknown) => x);
    expect((missing as DictlearnError).message).toMatch(/nope\.safetensors: could not read the file: ENOENT/);
  });
});

describe('writeSafetensorsAtomic / writeFileAtomic', () => {
  it('writes the file, replaces an old one, and leaves no temporary file behind', async () => {
    const path = join(dir, 'sae.safetensors');
    await writeSafetensorsAtomic(path, { w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
    await writeSafetensorsAtomic(
      path,
      { w: { dtype: 'F32', shape: [1], data: Float32Array.from([3]) } },
      { v: '2' },
    );
    const file = await readSafetensors(path);
    expect(Array.from(file.tensors.w.data as Float32Array)).toEqual([3]);
    expect(file.metadata).toEqual({ v: '2' });
    expect((await readdir(dir)).filter((f) => f.startsWith('sae.safetensors'))).toEqual(['sae.safetensors']);
  });

  it('a failed encode leaves the old file untouched', async () => {
    const path = join(dir, 'keep.safetensors');
    await writeSafetensorsAtomic(path, { w: { dtype: 'F32', shape: [1], data: Float32Array.from([7]) } });
    await expect(
      writeSafetensorsAtomic(path, { w: { dtype: 'F32', shape: [5], data: Float32Array.from([1]) } }),
    ).rejects.toThrow(/needs 20 bytes/);
    expect(Array.from((await readSafetensors(path)).tensors.w.data as Float32Array)).toEqual([7]);
  });

  it('a failed write names the path and leaves nothing under it', async () => {
    const path = join(dir, 'no-such-dir', 'x.bin');
    const e = await writeFileAtomic(path, 'hello').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DictlearnError);
    expect((e as DictlearnError).message).toMatch(
      /no-such-dir\/x\.bin: could not write the file atomically: ENOENT/,
    );
  });

  it('writes text and bytes', async () => {
    const path = join(dir, 'config.json');
    await writeFileAtomic(path, '{"a":1}');
    expect(await readFile(path, 'utf8')).toBe('{"a":1}');
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect(Array.from(await readFile(path))).toEqual([1, 2, 3]);
  });
});
