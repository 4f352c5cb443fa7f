/**
 * Just enough protobuf to read an ONNX model and write an edited copy without a schema library.
 *
 * Reading splits a message into its fields, each kept as a view of the original bytes, so an editor
 * can copy every field it does not touch verbatim (weights included: hundreds of megabytes are never
 * decoded or re-encoded). Writing concatenates fields: raw views, or new fields encoded here.
 *
 * @module
 */

/** Protobuf wire types. */
export const WIRE_VARINT = 0;
/** 64-bit fixed-width field. */
export const WIRE_I64 = 1;
/** Length-delimited field: strings, bytes, nested messages, packed repeated scalars. */
export const WIRE_LEN = 2;
/** 32-bit fixed-width field. */
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
  /** Varint value (int64 values beyond 2⁵³ lose precision; negative ones come out negative). */
  readonly value: number;
}

/** Thrown for bytes that are not a well-formed protobuf message. */
export class ProtoError extends Error {}

const utf8 = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();
const EMPTY: Uint8Array = new Uint8Array(0);

function readVarint(buf: Uint8Array, pos: number): [value: number, next: number] {
  let lo = 0;
  let shift = 0;
  let i = pos;
  // The first 4 bytes (28 bits) fit a 32-bit integer exactly.
  for (; i < buf.length && shift < 28; i++, shift += 7) {
    const b = buf[i];
    lo |= (b & 0x7f) << shift;
    if (b < 0x80) return [lo >>> 0, i + 1];
  }
  // Longer varints: continue in floating point, which is exact up to 2⁵³.
  let value = lo >>> 0;
  let scale = 2 ** 28;
  for (; i < buf.length && i < pos + 10; i++, scale *= 128) {
    const b = buf[i];
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      // A 10-byte varint is a negative int64 in two's complement.
      if (i - pos === 9 || value >= 2 ** 63) value -= 2 ** 64;
      return [value, i + 1];
    }
  }
  throw new ProtoError(`a varint at byte ${pos} runs past the end of its message`);
}

/** The fields of the message in `buf` (a whole buffer or a nested message's bytes), in order. */
export function readFields(buf: Uint8Array): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [key, afterKey] = readVarint(buf, pos);
    const no = Math.floor(key / 8);
    const wire = key % 8;
    if (no < 1) throw new ProtoError(`field number 0 at byte ${start}`);
    pos = afterKey;
    let bytes: Uint8Array = EMPTY;
    let value = 0;
    switch (wire) {
      case WIRE_VARINT:
        [value, pos] = readVarint(buf, pos);
        break;
      case WIRE_I64:
        pos += 8;
        break;
      case WIRE_I32:
        pos += 4;
        break;
      case WIRE_LEN: {
        const [len, afterLen] = readVarint(buf, pos);
        if (len < 0 || afterLen + len > buf.length) {
          throw new ProtoError(`a field of ${len} bytes at byte ${start} runs past the end of its message`);
        }
        bytes = buf.subarray(afterLen, afterLen + len);
        pos = afterLen + len;
        break;
      }
      default:
        throw new ProtoError(`unsupported wire type ${wire} at byte ${start}`);
    }
    if (pos > buf.length) throw new ProtoError(`a field at byte ${start} runs past the end of its message`);
    out.push({ no, wire, raw: buf.subarray(start, pos), bytes, value });
  }
  return out;
}

/** A length-delimited field as UTF-8 text. */
export function fieldString(f: ProtoField): string {
  return utf8.decode(f.bytes);
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
        const [v, next] = readVarint(f.bytes, pos);
        out.push(v);
        pos = next;
      }
    }
  }
  return out;
}

function varintBytes(value: number): number[] {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`protobuf varint must be a non-negative safe integer, got ${value}`);
  }
  const out: number[] = [];
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

/** A varint field, encoded. */
export function encodeVarintField(no: number, value: number): Uint8Array {
  return Uint8Array.from([...varintBytes(no * 8 + WIRE_VARINT), ...varintBytes(value)]);
}

/** A length-delimited field (bytes or a nested message), encoded. */
export function encodeBytesField(no: number, value: Uint8Array): Uint8Array {
  const head = [...varintBytes(no * 8 + WIRE_LEN), ...varintBytes(value.length)];
  const out = new Uint8Array(head.length + value.length);
  out.set(head, 0);
  out.set(value, head.length);
  return out;
}

/** A string field, encoded as UTF-8. */
export function encodeStringField(no: number, value: string): Uint8Array {
  return encodeBytesField(no, utf8Encoder.encode(value));
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
