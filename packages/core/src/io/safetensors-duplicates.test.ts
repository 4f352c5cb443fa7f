import { describe, expect, it } from 'vitest';
import { DictlearnError } from '../errors.js';
import { parseSafetensorsHeader } from './safetensors.js';

/** A safetensors file laid out by hand (8-byte little-endian length, JSON header, data bytes). */
function file(header: string, dataBytes: number): Uint8Array {
  const text = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + text.length + dataBytes);
  new DataView(bytes.buffer).setUint32(0, text.length, true);
  bytes.set(text, 8);
  return bytes;
}

function parse(header: string, dataBytes = 8) {
  const bytes = file(header, dataBytes);
  return parseSafetensorsHeader(bytes, bytes.length, 'acts.safetensors');
}

const t = (begin: number, end: number) =>
  `{"dtype":"F32","shape":[${(end - begin) / 4}],"data_offsets":[${begin},${end}]}`;

describe('safetensors headers with duplicate keys (JSON.parse would keep the last one)', () => {
  it('a tensor named twice is refused, naming the tensor and the file', () => {
    expect(() => parse(`{"x":${t(0, 8)},"x":${t(0, 8)}}`)).toThrow(
      new DictlearnError('acts.safetensors', "header names tensor 'x' twice (duplicate key 'x')"),
    );
    // the same name spelled with an escape is the same key
    expect(() => parse(`{"x":${t(0, 8)},"\\u0078":${t(0, 8)}}`)).toThrow("tensor 'x' twice");
  });

  it('a field named twice inside a tensor, or in __metadata__, is refused', () => {
    expect(() => parse('{"x":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}')).toThrow(
      "header names field 'dtype' of tensor 'x' twice",
    );
    expect(() => parse(`{"__metadata__":{"a":"1","a":"2"},"x":${t(0, 8)}}`)).toThrow(
      "header names field 'a' of '__metadata__' twice",
    );
  });

  it('equal strings that are not keys of one object are fine', () => {
    // the same key in different objects, a value equal to a key, quotes and braces inside strings
    const h = parse(
      `{"__metadata__":{"x":"x","note":"a \\"quoted\\" {brace\\" , \\"x\\":"},"x":${t(0, 8)},"y":${t(8, 16)}}`,
      16,
    );
    expect(h.entries.map((e) => e.name)).toEqual(['x', 'y']);
    expect(h.metadata).toEqual({ x: 'x', note: 'a "quoted" {brace" , "x":' });
  });
});
