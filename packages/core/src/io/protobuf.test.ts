// The protobuf codec and the ONNX writer against bytes serialised by Google's protobuf runtime
// (through the `onnx` package: fixtures/protobuf.json, made by scripts/make-protobuf-fixture.py)
// and against hand-computed bytes.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DictlearnError } from '../errors.js';
import { encodeOnnxModel, type OnnxModelSpec, type OnnxTensorSpec } from './onnx-writer.js';
import {
  concatBytes,
  encodeBytesField,
  encodeStringField,
  encodeVarintField,
  fieldString,
  ProtoError,
  ProtoWriter,
  readFields,
  readVarint,
  repeatedVarints,
  WIRE_I32,
  WIRE_I64,
  WIRE_LEN,
  WIRE_VARINT,
} from './protobuf.js';

interface Fixture {
  varints: { value: string; hex: string }[];
  packed: { field: number; values: string[]; hex: string }[];
  models: {
    spec: Omit<OnnxModelSpec, 'initializers'> & {
      initializers?: {
        name: string;
        dims: number[];
        float32?: number[];
        int32?: number[];
        int64?: string[];
      }[];
    };
    hex: string;
  }[];
}
const fixture = JSON.parse(
  readFileSync(new URL('./fixtures/protobuf.json', import.meta.url), 'utf8'),
) as Fixture;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

describe('protobuf varints (against protobuf-serialised AttributeProto.i, field 3)', () => {
  it.each(fixture.varints)('$value', ({ value, hex: want }) => {
    const big = BigInt(value);
    // Written from a bigint always, and from a number where the number is exact.
    expect(hex(new ProtoWriter().varint(3, big).finish())).toBe(want);
    if (Number.isSafeInteger(Number(big))) expect(hex(encodeVarintField(3, Number(big)))).toBe(want);
    // Read back: 10-byte negatives come out negative; values beyond 2⁵³ round to the nearest double.
    const [f] = readFields(bytes(want));
    expect([f.no, f.wire, f.value]).toEqual([3, WIRE_VARINT, Number(big)]);
  });

  it('hand-computed: 2^31 is 5 bytes, 2^53-1 is 8, -1 is 10', () => {
    // 2^31 = bit 31 set: four 0x80 groups of zeros, then 2^(31-28) = 8.
    expect(hex(new ProtoWriter().varint(1, 2 ** 31).finish())).toBe('08' + '80808080' + '08');
    // 2^53-1: seven groups of 0x7f (49 bits) then 0x0f (4 bits).
    expect(hex(new ProtoWriter().varint(1, 2 ** 53 - 1).finish())).toBe(`08${'ff'.repeat(7)}0f`);
    // -1 as int64 is 2^64-1: nine groups of 0x7f (63 bits) then 0x01.
    expect(hex(new ProtoWriter().varint(1, -1).finish())).toBe(`08${'ff'.repeat(9)}01`);
    expect(readVarint(bytes(`${'ff'.repeat(9)}01`), 0)).toEqual([-1, 10]);
    expect(readVarint(bytes('ffffffff0f'), 0)).toEqual([2 ** 32 - 1, 5]);
  });

  it('refuses numbers it cannot write exactly, naming the field', () => {
    expect(() => new ProtoWriter().varint(4, 2 ** 53)).toThrow(/field 4: .*safe integer.*9007199254740992/);
    expect(() => new ProtoWriter().varint(4, 1.5)).toThrow(RangeError);
    expect(() => new ProtoWriter().varint(4, 2n ** 64n)).toThrow(/fit 64 bits/);
    expect(() => new ProtoWriter().varint(0, 1)).toThrow(/field number .* got 0/);
  });
});

describe('protobuf fields', () => {
  it('packed repeated varints, written and read (against protobuf TensorProto.int64_data)', () => {
    for (const { field, values, hex: want } of fixture.packed) {
      const w = new ProtoWriter().packedVarints(
        field,
        values.map((v) => BigInt(v)),
      );
      expect(hex(w.finish())).toBe(want);
      expect(repeatedVarints(readFields(bytes(want)), field)).toEqual(values.map(Number));
    }
    // Unpacked: one field per value, read the same way (and mixed with packed, as parsers must accept).
    const mixed = concatBytes([encodeVarintField(8, 5), encodeVarintField(9, 1), bytes('4202 0607')]);
    expect(repeatedVarints(readFields(mixed), 8)).toEqual([5, 6, 7]);
  });

  it('round-trips every wire type, with views of the original bytes', () => {
    const big = new Uint8Array(1000).map((_, i) => i % 251);
    const inner = new ProtoWriter().string(1, 'héllo').varint(2, -3);
    const msg = new ProtoWriter()
      .varint(1, 150)
      .float(2, 0.1)
      .double(3, -2.5)
      .bytes(4, big)
      .message(5, inner)
      .message(6, encodeStringField(1, 'x'))
      .raw(encodeVarintField(7, 1))
      .finish();
    const fields = readFields(msg);
    expect(fields.map((f) => [f.no, f.wire])).toEqual([
      [1, WIRE_VARINT],
      [2, WIRE_I32],
      [3, WIRE_I64],
      [4, WIRE_LEN],
      [5, WIRE_LEN],
      [6, WIRE_LEN],
      [7, WIRE_VARINT],
    ]);
    expect(fields[0].value).toBe(150);
    // 150 = 0x96 0x01 (the protobuf documentation's example).
    expect(hex(fields[0].raw)).toBe('089601');
    expect(new DataView(fields[1].raw.buffer, fields[1].raw.byteOffset + 1).getFloat32(0, true)).toBe(
      Math.fround(0.1),
    );
    expect(new DataView(fields[2].raw.buffer, fields[2].raw.byteOffset + 1).getFloat64(0, true)).toBe(-2.5);
    expect(fields[3].bytes).toEqual(big);
    expect(fields[3].bytes.buffer).toBe(msg.buffer); // a view, not a copy
    const [s, n] = readFields(fields[4].bytes);
    expect([fieldString(s), n.value]).toEqual(['héllo', -3]);
    expect(fieldString(readFields(fields[5].bytes)[0])).toBe('x');
    // Copying every field's raw view rebuilds the message exactly.
    expect(concatBytes(fields.map((f) => f.raw))).toEqual(msg);
    expect(encodeBytesField(4, big)).toEqual(fields[3].raw);
  });

  it('names what was truncated', () => {
    const err = (h: string) => {
      try {
        readFields(bytes(h));
      } catch (e) {
        expect(e).toBeInstanceOf(ProtoError);
        expect(e).toBeInstanceOf(DictlearnError);
        return (e as Error).message;
      }
      throw new Error(`${h} parsed`);
    };
    // field 1 varint whose value has a continuation bit and no next byte
    expect(err('0896')).toMatch(/^protobuf: field 1 \(varint\) at byte 1 is truncated/);
    // field 2 length-delimited declaring 5 bytes with 2 present
    expect(err('0a0161 1205 6162')).toMatch(
      /field 2 \(length-delimited\) at byte 3 is truncated: it declares 5 bytes, the message has 2 left/,
    );
    // fixed32 with 3 bytes, fixed64 with 7
    expect(err('15 000000')).toMatch(/field 2 \(fixed32\) at byte 0 is truncated: it needs 4 bytes.* 3 left/);
    expect(err('19 00000000000000')).toMatch(/field 3 \(fixed64\) at byte 0 is truncated: it needs 8 bytes/);
    // a key cut short, and a length cut short
    expect(err('0801 80')).toMatch(/the field key at byte 2 is truncated/);
    expect(err('0a 80')).toMatch(/the length of field 1 \(length-delimited\) at byte 1 is truncated/);
    // not truncation, but as clearly named
    expect(err('0b')).toMatch(/field 1 \(wire type 3\) at byte 0 has an unsupported wire type/);
    expect(err('00')).toMatch(/field number 0 at byte 0/);
    expect(err(`08${'ff'.repeat(10)}01`)).toMatch(/longer than 10 bytes/);
    expect(() => repeatedVarints(readFields(bytes('4202 0680')), 8)).toThrow(
      /value 1 of packed field 8 at byte 1 is truncated/,
    );
  });
});

function tensorSpec(
  t: NonNullable<Fixture['models'][number]['spec']['initializers']>[number],
): OnnxTensorSpec {
  const data = t.float32
    ? Float32Array.from(t.float32)
    : t.int32
      ? Int32Array.from(t.int32)
      : BigInt64Array.from((t.int64 ?? []).map((v) => BigInt(v)));
  return { name: t.name, dims: t.dims, data };
}

describe('encodeOnnxModel', () => {
  it.each(fixture.models.map((m) => [m.spec.graphName, m] as const))(
    '%s: the bytes onnx.helper serialises',
    (_, { spec, hex: want }) => {
      const model: OnnxModelSpec = { ...spec, initializers: spec.initializers?.map(tensorSpec) };
      expect(hex(encodeOnnxModel(model))).toBe(want);
    },
  );

  it('refuses negative versions and dims, and initializers that do not fill their dims', () => {
    const base: OnnxModelSpec = {
      irVersion: 8,
      opsets: [],
      graphName: 'g',
      nodes: [],
      inputs: [],
      outputs: [],
    };
    expect(() => encodeOnnxModel({ ...base, opsets: [{ domain: 'ai.x', version: -1 }] })).toThrow(
      /opset_import\[0\] \('ai\.x'\) version must be a non-negative integer, got -1/,
    );
    expect(() => encodeOnnxModel({ ...base, inputs: [{ name: 'x', elemType: 1, dims: [-2] }] })).toThrow(
      RangeError,
    );
    const w: OnnxTensorSpec = { name: 'W', dims: [2, 3], data: new Float32Array(5) };
    expect(() => encodeOnnxModel({ ...base, initializers: [w] })).toThrow(
      /'W': dims \[2, 3\] hold 6 values, got 5/,
    );
  });
});
