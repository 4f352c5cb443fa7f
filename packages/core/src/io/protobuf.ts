/**
 * The protobuf wire format, without a schema library: a reader that splits a message into its
 * fields (each a view of the original bytes) and a writer that appends fields.
 *
 * Why it lives in core: three packages read or write ONNX protobuf (backend-cpu's fast path builds
 * MatMul models for onnxruntime-node, formats exports dictionaries to ONNX, source-model reads and
 * edits language models). Imports only point down, and core is the one package all three share; the
 * codec is a few hundred lines with no dependency, like the safetensors reader next to it, so it
 * keeps core free of heavy deps.
 *
 * Reading never decodes what it is not asked to: an editor copies every field it does not touch
 * verbatim through {@link ProtoField.raw} (weights included: hundreds of megabytes are never decoded
 * or re-encoded). Writing keeps large byte strings as views and copies them once, in
 * {@link ProtoWriter.finish}.
 *
 * @module
 */
import { DictlearnError } from '../errors.js';

/** Wire type of varint fields (int32, int64, uint64, bool, enum). */
export const WIRE_VARINT = 0;
/** Wire type of 64-bit fixed-width fields (fixed64, sfixed64, double). */
export const WIRE_I64 = 1;
/** Wire type of length-delimited fields: strings, bytes, nested messages, packed repeated scalars. */
export const WIRE_LEN = 2;
/** Wire type of 32-bit fixed-width fields (fixed32, sfixed32, float). */
export const WIRE_I32 = 5;

/** One field of a message: its number, wire type, value and where it lies in the buffer. */
export interface ProtoField {
  /** Field number from the schema. */
  readonly no: number;
  /** Wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
  readonly wire: number;
  /** The whole field (key and value) as a view of the original bytes, for verbatim copies. */
  readonly raw: Uint8Array;
  /** Length-delimited value (without its length prefix); empty for the other wire types. */
  readonly bytes: Uint8Array;
  /**
   * Varint value read as a signed int64: exact up to ±2⁵³, beyond that rounded to the nearest
   * double; 10-byte varints (negative int64 in two's complement) come out negative. 0 for the other
   * wire types.
   */
  readonly value: number;
}

/**
 * Thrown for bytes that are not a well-formed protobuf message. The message names the field (number
 * and wire type) or key that is malformed, its byte offset and what was expected.
 */
export class ProtoError extends DictlearnError {
  constructor(message: string) {
    super('protobuf', message);
    this.name = 'ProtoError';
  }
}

const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();
const EMPTY: Uint8Array = new Uint8Array(0);
const WIRE_NAMES: Record<number, string> = { 0: 'varint', 1: 'fixed64', 2: 'length-delimited', 5: 'fixed32' };

/**
 * Reads the varint at `pos` of `buf`. `what` names it in the error when the bytes end first (e.g.
 * `'the key'`, `'field 3 (varint)'`). Returns the value (as in {@link ProtoField.value}) and the
 * offset after it.
 */
export function readVarint(buf: Uint8Array, pos: number, what = 'a varint'): [value: number, next: number] {
  let lo = 0;
  let shift = 0;
  let i = pos;
  // The first 4 bytes (28 bits) fit a 32-bit integer exactly: the fast path for keys and lengths.
  for (; i < buf.length && shift < 28; i++, shift += 7) {
    const b = buf[i];
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) return [lo >>> 0, i + 1];
  }
  // Longer varints are rare (large int64s, negative values): BigInt keeps all 64 bits, so a negative
  // int64 such as -1 (2⁶⁴ - 1, not representable as a double) comes out exactly.
  let big = BigInt(lo >>> 0);
  let bigShift = 28n;
  for (; i < buf.length && i < pos + 10; i++, bigShift += 7n) {
    const b = buf[i];
    big |= BigInt(b & 0x7f) << bigShift;
    if (b < 0x80) return [Number(BigInt.asIntN(64, big)), i + 1];
  }
  if (i >= pos + 10) {
    throw new ProtoError(
      `${what} at byte ${pos} is longer than 10 bytes; expected a varint of at most 64 bits`,
    );
  }
  throw new ProtoError(
    `${what} at byte ${pos} is truncated: its ${i - pos} byte(s) run past the end of the ${buf.length}-byte message`,
  );
}

/** The fields of the message in `buf` (a whole buffer or a nested message's bytes), in order. */
export function readFields(buf: Uint8Array): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [key, afterKey] = readVarint(buf, pos, 'the field key');
    if (key < 0) throw new ProtoError(`the field key at byte ${start} is negative (${key})`);
    const no = Math.floor(key / 8);
    const wire = key % 8;
    if (no < 1) throw new ProtoError(`field number 0 at byte ${start}; field numbers start at 1`);
    const name = `field ${no} (${WIRE_NAMES[wire] ?? `wire type ${wire}`})`;
    pos = afterKey;
    let bytes: Uint8Array = EMPTY;
    let value = 0;
    const fixed = (width: number) => {
      if (pos + width > buf.length) {
        throw new ProtoError(
          `${name} at byte ${start} is truncated: it needs ${width} bytes, the message has ${buf.length - pos} left`,
        );
      }
      pos += width;
    };
    switch (wire) {
      case WIRE_VARINT:
        [value, pos] = readVarint(buf, pos, name);
        break;
      case WIRE_I64:
        fixed(8);
        break;
      case WIRE_I32:
        fixed(4);
        break;
      case WIRE_LEN: {
        const [len, afterLen] = readVarint(buf, pos, `the length of ${name}`);
        if (len < 0 || afterLen + len > buf.length) {
          throw new ProtoError(
            `${name} at byte ${start} is truncated: it declares ${len} bytes, the message has ${buf.length - afterLen} left`,
          );
        }
        bytes = buf.subarray(afterLen, afterLen + len);
        pos = afterLen + len;
        break;
      }
      default:
        throw new ProtoError(
          `${name} at byte ${start} has an unsupported wire type; expected 0 (varint), 1 (fixed64), 2 (length-delimited) or 5 (fixed32)`,
        );
    }
    out.push({ no, wire, raw: buf.subarray(start, pos), bytes, value });
  }
  return out;
}

/** A length-delimited field as UTF-8 text. */
export function fieldString(f: ProtoField): string {
  return utf8Decoder.decode(f.bytes);
}

/** Values of a repeated varint field, packed (one length-delimited field) or not (one field each). */
export function repeatedVarints(fields: readonly ProtoField[], no: number): number[] {
  const out: number[] = [];
  for (const f of fields) {
    if (f.no !== no) continue;
    if (f.wire === WIRE_VARINT) out.push(f.value);
    else if (f.wire === WIRE_LEN) {
      let pos = 0;
      while (pos < f.bytes.length) {
        const [v, next] = readVarint(f.bytes, pos, `value ${out.length} of packed field ${no}`);
        out.push(v);
        pos = next;
      }
    }
  }
  return out;
}

/** Little-endian platforms can hand typed arrays' bytes to the wire as they are. */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * The bytes of a typed array in little-endian order (protobuf's fixed-width and ONNX's `raw_data`
 * order): a view on little-endian platforms, a copy elsewhere.
 */
export function littleEndianBytes(
  data: Float32Array | Float64Array | Int32Array | BigInt64Array,
): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) {
    if (data instanceof Float32Array) view.setFloat32(4 * i, data[i], true);
    else if (data instanceof Float64Array) view.setFloat64(8 * i, data[i], true);
    else if (data instanceof Int32Array) view.setInt32(4 * i, data[i], true);
    else view.setBigInt64(8 * i, data[i], true);
  }
  return out;
}

/**
 * Appends protobuf fields. Small fields go into a scratch array; byte strings and nested messages
 * are kept as views (or as the nested writer's parts) and copied once, in {@link finish}, so a
 * model with large initializers is not copied byte by byte.
 *
 * Integers are checked, not truncated: a non-integer, an unsafe integer (beyond 2⁵³, pass a
 * `bigint`) or a field number outside 1…2²⁹-1 throws a `RangeError` naming the field.
 */
export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private pending: number[] = [];
  private size = 0;

  /** Bytes written so far. */
  get length(): number {
    return this.size + this.pending.length;
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.parts.push(Uint8Array.from(this.pending));
    this.size += this.pending.length;
    this.pending = [];
  }

  private append(bytes: Uint8Array): void {
    // Short strings are cheaper to merge into the scratch array than to keep as separate parts.
    if (bytes.length <= 64) {
      for (const b of bytes) this.pending.push(b);
      return;
    }
    this.flush();
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  private rawVarint(value: number | bigint, field: number): void {
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) {
        throw new RangeError(
          `protobuf field ${field}: a varint must be a safe integer (or a bigint), got ${value}`,
        );
      }
      if (value >= 0) {
        // Division instead of >>> because values may exceed 32 bits.
        while (value >= 0x80) {
          this.pending.push((value % 0x80) | 0x80);
          value = Math.floor(value / 0x80);
        }
        this.pending.push(value);
        return;
      }
    }
    // Negative int32/int64 are sign-extended to 64 bits: always 10 bytes on the wire.
    if (typeof value === 'bigint' && (value < -(2n ** 63n) || value >= 2n ** 64n)) {
      throw new RangeError(`protobuf field ${field}: a varint must fit 64 bits, got ${value}`);
    }
    let x = BigInt.asUintN(64, BigInt(value));
    while (x >= 0x80n) {
      this.pending.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.pending.push(Number(x));
  }

  private key(field: number, wire: number): void {
    if (!Number.isInteger(field) || field < 1 || field >= 2 ** 29) {
      throw new RangeError(`protobuf field number must be an integer in 1…2²⁹-1, got ${field}`);
    }
    this.rawVarint(field * 8 + wire, field);
  }

  /** A varint field: int32, int64, uint64, bool (0/1) or enum; negative values take 10 bytes. */
  varint(field: number, value: number | bigint): this {
    this.key(field, WIRE_VARINT);
    this.rawVarint(value, field);
    return this;
  }

  /** A packed repeated varint field (one length-delimited field holding every value). */
  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const inner = new ProtoWriter();
    for (const v of values) inner.rawVarint(v, field);
    return this.message(field, inner);
  }

  /** A 32-bit IEEE float (fixed32 wire type, little-endian). */
  float(field: number, value: number): this {
    this.key(field, WIRE_I32);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    for (const b of bytes) this.pending.push(b);
    return this;
  }

  /** A 64-bit IEEE double (fixed64 wire type, little-endian). */
  double(field: number, value: number): this {
    this.key(field, WIRE_I64);
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setFloat64(0, value, true);
    for (const b of bytes) this.pending.push(b);
    return this;
  }

  /** A length-delimited byte string (kept as a view until {@link finish}). */
  bytes(field: number, value: Uint8Array): this {
    this.key(field, WIRE_LEN);
    this.rawVarint(value.length, field);
    this.append(value);
    return this;
  }

  /** A UTF-8 string. */
  string(field: number, value: string): this {
    return this.bytes(field, utf8Encoder.encode(value));
  }

  /** A nested message: another writer (its parts are shared, not copied) or its encoded bytes. */
  message(field: number, value: ProtoWriter | Uint8Array): this {
    if (value instanceof Uint8Array) return this.bytes(field, value);
    value.flush();
    this.key(field, WIRE_LEN);
    this.rawVarint(value.size, field);
    for (const p of value.parts) this.append(p);
    return this;
  }

  /** Already-encoded fields (e.g. {@link ProtoField.raw} of a field copied verbatim). */
  raw(encoded: Uint8Array): this {
    this.append(encoded);
    return this;
  }

  /** The message written so far, as one new buffer. */
  finish(): Uint8Array {
    this.flush();
    return concatBytes(this.parts);
  }
}

/** A varint field, encoded (negative values as 10-byte two's complement int64). */
export function encodeVarintField(no: number, value: number | bigint): Uint8Array {
  return new ProtoWriter().varint(no, value).finish();
}

/** A length-delimited field (bytes or a nested message), encoded. */
export function encodeBytesField(no: number, value: Uint8Array): Uint8Array {
  return new ProtoWriter().bytes(no, value).finish();
}

/** A string field, encoded as UTF-8. */
export function encodeStringField(no: number, value: string): Uint8Array {
  return new ProtoWriter().string(no, value).finish();
}

/** Concatenates encoded fields (or raw field views) into one message. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
