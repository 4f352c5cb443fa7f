/**
 * The safetensors format (https://github.com/huggingface/safetensors), read and written by hand:
 *
 * ```text
 * [8 bytes]  N, the header length, unsigned 64-bit little-endian
 * [N bytes]  a JSON object { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { str: str } },
 *            padded with spaces so that N is a multiple of 8
 * [...]      the data buffer; data_offsets are byte offsets into it, little-endian, row-major
 * ```
 *
 * The byte ranges must tile the data buffer exactly: sorted by `begin` they start at 0, each
 * begins where the previous one ends, and the last ends at the end of the file (the rules of
 * the reference Rust implementation). The pure functions here work anywhere; the file helpers
 * ({@link readSafetensors}, {@link writeSafetensorsAtomic}) load `node:fs` lazily and need Node.
 */
import { DictlearnError, fmtShape } from '../errors.js';
import { readFileBytes, writeFileAtomic } from './fs.js';

/** Element types read and written: float32/64, float16, bfloat16, int32, int64. */
export type SafetensorsDType = 'F32' | 'F64' | 'F16' | 'BF16' | 'I32' | 'I64';

/** Bytes per element of each {@link SafetensorsDType}. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = Object.freeze({
  F32: 4,
  F64: 8,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
});

/** The largest header accepted (the reference implementation's limit): 100 MB. */
export const SAFETENSORS_MAX_HEADER = 100_000_000;

/**
 * One tensor to write. `data` holds the values in row-major order, either as raw values of the
 * dtype (`Float32Array` for F32, `Float64Array` for F64, `Int32Array` for I32, `BigInt64Array`
 * for I64, `Uint16Array` of bit patterns for F16/BF16, or a `Uint8Array`/`DataView` of
 * little-endian bytes) or as numbers in any other typed array, which are converted (floats
 * rounded to nearest even; integers must be integral and in range).
 */
export interface SafetensorsInput {
  /** Element type in the file. */
  dtype: SafetensorsDType;
  /** Shape; `[]` for a scalar. */
  shape: readonly number[];
  /** Values, row-major (see above for the accepted arrays). */
  data: ArrayBufferView;
}

/** Decoded values: F32, F16 and BF16 as float32; F64 as float64; I32 (and I64 by default) as int32. */
export type SafetensorsValues = Float32Array | Float64Array | Int32Array;

/** One decoded tensor; `V` includes `BigInt64Array` when I64 is decoded with `int64: 'bigint'`. */
export interface SafetensorsTensor<V = SafetensorsValues> {
  /** Element type in the file. */
  dtype: SafetensorsDType;
  /** Shape. */
  shape: number[];
  /** Values, row-major, in their own (aligned) buffer. */
  data: V;
}

/** A decoded file: its tensors by name and its `__metadata__`. */
export interface SafetensorsFile<V = SafetensorsValues> {
  /** Tensors by name, in the header's order. */
  tensors: Record<string, SafetensorsTensor<V>>;
  /** The `__metadata__` strings (empty when absent). */
  metadata: Record<string, string>;
}

/** Options of {@link decodeSafetensors} and {@link readSafetensors}. */
export interface SafetensorsDecodeOptions {
  /**
   * How I64 tensors are returned: `'int32'` (default) as an `Int32Array`, throwing when a value
   * does not fit in int32; `'bigint'` as a `BigInt64Array`.
   */
  int64?: 'int32' | 'bigint';
}

/** A tensor's entry in the header. */
export interface SafetensorsEntry {
  /** Tensor name. */
  name: string;
  /** Element type. */
  dtype: SafetensorsDType;
  /** Shape. */
  shape: number[];
  /** Byte offset of the first element, relative to the start of the data buffer. */
  begin: number;
  /** Byte offset one past the last element, relative to the start of the data buffer. */
  end: number;
}

/** A parsed and validated header. */
export interface SafetensorsHeader {
  /** Byte offset of the data buffer in the file: 8 + the header length. */
  dataOffset: number;
  /** Tensor entries in the header's order. */
  entries: SafetensorsEntry[];
  /** The `__metadata__` strings (empty when absent). */
  metadata: Record<string, string>;
}

const DTYPES = Object.keys(SAFETENSORS_DTYPE_BYTES) as SafetensorsDType[];
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 conversions

let halfTable: Float32Array | undefined;

function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Converts IEEE half-precision bit patterns to float32 (exact: every half is a float32). */
export function float16ToFloat32(
  bits: Uint16Array,
  out: Float32Array = new Float32Array(bits.length),
): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToNumber(h);
  }
  const t = halfTable;
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]];
  return out;
}

/** Converts bfloat16 bit patterns (the top 16 bits of a float32) to float32 (exact). */
export function bfloat16ToFloat32(
  bits: Uint16Array,
  out: Float32Array = new Float32Array(bits.length),
): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i] << 16;
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** The half-precision bit pattern nearest to `v` (after rounding `v` to float32), ties to even. */
export function float32ToFloat16Bits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const q = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && q & 1) ? q + 1 : q);
  }
  const h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  return sign | (rem > 0x1000 || (rem === 0x1000 && h & 1) ? h + 1 : h);
}

/** The bfloat16 bit pattern nearest to `v` (after rounding `v` to float32), ties to even. */
export function float32ToBFloat16Bits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// header

function fail(source: string, message: string): never {
  throw new DictlearnError(source, message);
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

/**
 * Reads and checks the header length from the first 8 bytes of a file of `fileSize` bytes.
 * Throws for a file too short to hold it, an absurd length (a file that is not safetensors) and
 * a header that runs past the end of the file (a truncated file).
 */
export function safetensorsHeaderLength(first8: Uint8Array, fileSize: number, source = '<bytes>'): number {
  if (first8.byteLength < 8 || fileSize < 8) {
    fail(
      source,
      `file is ${Math.min(fileSize, first8.byteLength)} bytes, too short for the 8-byte header length: truncated or not a safetensors file`,
    );
  }
  const view = new DataView(first8.buffer, first8.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (hi !== 0 || n > SAFETENSORS_MAX_HEADER) {
    fail(
      source,
      `header length ${hi === 0 ? n : `${n.toExponential(3)}`} is larger than ${SAFETENSORS_MAX_HEADER} bytes: not a safetensors file`,
    );
  }
  if (n < 2) fail(source, `header length ${n} is too small for a JSON object: not a safetensors file`);
  if (8 + n > fileSize) {
    fail(
      source,
      `header length ${n} runs past the end of the file (${fileSize} bytes, header needs ${8 + n}): truncated file`,
    );
  }
  return n;
}

/**
 * Parses and validates a safetensors header. `bytes` holds the start of a file of `fileSize`
 * bytes, at least the 8-byte length and the JSON header; the data buffer need not be present
 * (so a reader can stream it). Every check of {@link decodeSafetensors} except the values
 * themselves happens here: dtypes, shapes against byte ranges, and the ranges tiling the data
 * buffer of `fileSize − dataOffset` bytes.
 */
export function parseSafetensorsHeader(
  bytes: Uint8Array,
  fileSize: number,
  source = '<bytes>',
): SafetensorsHeader {
  const n = safetensorsHeaderLength(bytes, fileSize, source);
  if (bytes.byteLength < 8 + n) {
    fail(source, `parseSafetensorsHeader needs the first ${8 + n} bytes, got ${bytes.byteLength}`);
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(8, 8 + n));
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(
      source,
      `header is not JSON (${e instanceof Error ? e.message : String(e)}): not a safetensors file`,
    );
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    fail(source, 'header is not a JSON object: not a safetensors file');
  }
  // JSON.parse keeps the last of two equal keys: a header naming a tensor twice would silently
  // read one of two byte ranges, so duplicates are refused (as the Rust reference does).
  const dup = duplicateJsonKey(text);
  if (dup) fail(source, `header names ${dup.where} twice (duplicate key '${dup.key}')`);
  const dataSize = fileSize - 8 - n;
  const entries: SafetensorsEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(value, source);
      continue;
    }
    entries.push(parseEntry(name, value, source, dataSize));
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev: SafetensorsEntry | undefined;
  for (const e of sorted) {
    if (e.begin < cursor && prev) {
      fail(
        source,
        `tensors '${prev.name}' (bytes [${prev.begin}, ${prev.end})) and '${e.name}' (bytes [${e.begin}, ${e.end})) overlap`,
      );
    }
    if (e.begin > cursor) {
      fail(
        source,
        `the data buffer has a hole: bytes [${cursor}, ${e.begin}) belong to no tensor (tensor '${e.name}' starts at ${e.begin})`,
      );
    }
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataSize) {
    fail(
      source,
      `the data buffer has ${dataSize} bytes but the tensors cover only ${cursor}: trailing bytes after the last tensor`,
    );
  }
  return { dataOffset: 8 + n, entries, metadata };
}

/**
 * The first key that appears twice in one object of `text` (valid JSON), with where it is
 * (`tensor 'x'`, or `field 'dtype' of tensor 'x'`), or undefined. A single pass with an
 * explicit stack, so deep nesting cannot overflow the call stack.
 */
function duplicateJsonKey(text: string): { key: string; where: string } | undefined {
  const stack: { keys: Set<string> | null; name: string }[] = [];
  let prev = '';
  let lastKey = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top?.keys && (prev === '{' || prev === ',')) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) {
          const where =
            stack.length === 1
              ? key === '__metadata__'
                ? "'__metadata__'"
                : `tensor '${key}'`
              : `field '${key}' of ${stack.length === 2 && top.name !== '__metadata__' ? `tensor '${top.name}'` : `'${top.name}'`}`;
          return { key, where };
        }
        top.keys.add(key);
        lastKey = key;
      }
      prev = '"';
      i = j;
    } else if (ch === '{' || ch === '[') {
      stack.push({ keys: ch === '{' ? new Set() : null, name: prev === ':' ? lastKey : '' });
      prev = ch;
    } else if (ch === '}' || ch === ']') {
      stack.pop();
      prev = ch;
    } else if (ch === ',' || ch === ':') prev = ch;
    else if (!/\s/.test(ch)) prev = 'v';
  }
  return undefined;
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(source, `__metadata__ must be an object of strings, got ${JSON.stringify(value)}`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'string') {
      fail(source, `__metadata__ must map strings to strings; '${k}' is ${JSON.stringify(v)}`);
    }
    out[k] = v;
  }
  return out;
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(name: string, value: unknown, source: string, dataSize: number): SafetensorsEntry {
  const where = `tensor '${name}'`;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(source, `${where}: expected an object { dtype, shape, data_offsets }, got ${JSON.stringify(value)}`);
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(DTYPES as string[]).includes(dtype)) {
    fail(source, `${where}: unknown dtype ${JSON.stringify(dtype)}; expected one of ${DTYPES.join(', ')}`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    fail(source, `${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    fail(source, `${where}: data_offsets must be [begin, end] byte offsets, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) fail(source, `${where}: data_offsets [${begin}, ${end}] run backwards (end before begin)`);
  const d = dtype as SafetensorsDType;
  const needed = elementCount(shape) * SAFETENSORS_DTYPE_BYTES[d];
  if (needed !== end - begin) {
    fail(
      source,
      `${where}: shape ${fmtShape(shape)} of ${d} needs ${needed} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  if (end > dataSize) {
    fail(
      source,
      `${where}: data_offsets [${begin}, ${end}] run past the end of the data buffer (${dataSize} bytes): truncated file`,
    );
  }
  return { name, dtype: d, shape: [...shape], begin, end };
}

// ---------------------------------------------------------------------------------------------
// decode

/**
 * Decodes the values of one tensor from its little-endian bytes (`bytes.byteLength` must be
 * the element count times the dtype's size). F16 and BF16 become float32; I64 becomes int32
 * with a range check (or `BigInt64Array` with `int64: 'bigint'`). The result owns its buffer.
 */
export function decodeSafetensorsValues(
  dtype: SafetensorsDType,
  bytes: Uint8Array,
  options: SafetensorsDecodeOptions & { name?: string; source?: string } = {},
): SafetensorsValues | BigInt64Array {
  const size = SAFETENSORS_DTYPE_BYTES[dtype];
  const n = bytes.byteLength / size;
  const copy = () => bytes.slice().buffer; // aligned copy
  const view = () => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN) return new Float32Array(copy());
      const out = new Float32Array(n);
      const v = view();
      for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
      return out;
    }
    case 'F64': {
      if (LITTLE_ENDIAN) return new Float64Array(copy());
      const out = new Float64Array(n);
      const v = view();
      for (let i = 0; i < n; i++) out[i] = v.getFloat64(8 * i, true);
      return out;
    }
    case 'I32': {
      if (LITTLE_ENDIAN) return new Int32Array(copy());
      const out = new Int32Array(n);
      const v = view();
      for (let i = 0; i < n; i++) out[i] = v.getInt32(4 * i, true);
      return out;
    }
    case 'F16':
    case 'BF16': {
      const bits = new Uint16Array(n);
      if (LITTLE_ENDIAN) bits.set(new Uint16Array(copy()));
      else {
        const v = view();
        for (let i = 0; i < n; i++) bits[i] = v.getUint16(2 * i, true);
      }
      return dtype === 'F16' ? float16ToFloat32(bits) : bfloat16ToFloat32(bits);
    }
    case 'I64': {
      const v = view();
      if (options.int64 === 'bigint') {
        const out = new BigInt64Array(n);
        for (let i = 0; i < n; i++) out[i] = v.getBigInt64(8 * i, true);
        return out;
      }
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = v.getUint32(8 * i, true);
        const hi = v.getInt32(8 * i + 4, true);
        if (hi !== (lo >= 0x80000000 ? -1 : 0)) {
          fail(
            options.source ?? '<bytes>',
            `tensor '${options.name ?? '?'}': I64 value ${v.getBigInt64(8 * i, true)} at index ${i} does not fit in int32; decode with { int64: 'bigint' }`,
          );
        }
        out[i] = lo | 0;
      }
      return out;
    }
  }
}

/**
 * Decodes a whole safetensors file held in memory. `source` names the file in errors. Throws a
 * {@link DictlearnError} for a truncated file, a file that is not safetensors, an unknown dtype,
 * a shape that does not match its byte range, and overlapping or gapped ranges.
 */
export function decodeSafetensors(
  bytes: Uint8Array,
  source?: string,
  options?: SafetensorsDecodeOptions & { int64?: 'int32' },
): SafetensorsFile;
/** With `int64: 'bigint'`, I64 tensors come back as `BigInt64Array`. */
export function decodeSafetensors(
  bytes: Uint8Array,
  source: string,
  options: SafetensorsDecodeOptions,
): SafetensorsFile<SafetensorsValues | BigInt64Array>;
export function decodeSafetensors(
  bytes: Uint8Array,
  source = '<bytes>',
  options: SafetensorsDecodeOptions = {},
): SafetensorsFile<SafetensorsValues | BigInt64Array> {
  const header = parseSafetensorsHeader(bytes, bytes.byteLength, source);
  const tensors: Record<string, SafetensorsTensor<SafetensorsValues | BigInt64Array>> = {};
  for (const e of header.entries) {
    const start = header.dataOffset + e.begin;
    tensors[e.name] = {
      dtype: e.dtype,
      shape: e.shape,
      data: decodeSafetensorsValues(e.dtype, bytes.subarray(start, header.dataOffset + e.end), {
        ...options,
        name: e.name,
        source,
      }),
    };
  }
  return { tensors, metadata: header.metadata };
}

// ---------------------------------------------------------------------------------------------
// encode

const RAW_TYPE: Record<SafetensorsDType, string> = {
  F32: 'Float32Array',
  F64: 'Float64Array',
  F16: 'Uint16Array',
  BF16: 'Uint16Array',
  I32: 'Int32Array',
  I64: 'BigInt64Array',
};

function typeName(data: ArrayBufferView): string {
  return data.constructor?.name ?? 'ArrayBufferView';
}

function encodeValues(name: string, t: SafetensorsInput): Uint8Array {
  const op = 'encodeSafetensors';
  if (!(DTYPES as string[]).includes(t.dtype)) {
    fail(
      op,
      `tensor '${name}': unknown dtype ${JSON.stringify(t.dtype)}; expected one of ${DTYPES.join(', ')}`,
    );
  }
  if (!Array.isArray(t.shape) || !t.shape.every(isCount)) {
    fail(
      op,
      `tensor '${name}': shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`,
    );
  }
  if (!ArrayBuffer.isView(t.data)) fail(op, `tensor '${name}': data must be a typed array or DataView`);
  const n = elementCount(t.shape);
  const size = SAFETENSORS_DTYPE_BYTES[t.dtype];
  const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const type = typeName(t.data);
  const raw = t.data instanceof Uint8Array || t.data instanceof DataView || type === RAW_TYPE[t.dtype];
  if (raw) {
    if (t.data.byteLength !== n * size) {
      fail(
        op,
        `tensor '${name}': shape ${fmtShape(t.shape)} of ${t.dtype} needs ${n * size} bytes, ${type} holds ${t.data.byteLength}`,
      );
    }
    if (LITTLE_ENDIAN || t.data instanceof Uint8Array || t.data instanceof DataView) return bytesOf(t.data);
  }
  const values = t.data as unknown as ArrayLike<number | bigint>;
  if (!raw && (values.length === undefined || values.length !== n)) {
    fail(
      op,
      `tensor '${name}': shape ${fmtShape(t.shape)} needs ${n} values, ${type} holds ${values.length}`,
    );
  }
  const out = new Uint8Array(n * size);
  const v = new DataView(out.buffer);
  const num = (i: number): number => {
    const x = values[i];
    return typeof x === 'bigint' ? Number(x) : x;
  };
  const int = (i: number, lo: number, hi: number): number => {
    const x = num(i);
    if (!Number.isInteger(x) || x < lo || x > hi) {
      fail(op, `tensor '${name}': ${t.dtype} needs integers in [${lo}, ${hi}], value ${i} is ${x}`);
    }
    return x;
  };
  for (let i = 0; i < n; i++) {
    switch (t.dtype) {
      case 'F32':
        v.setFloat32(4 * i, num(i), true);
        break;
      case 'F64':
        v.setFloat64(8 * i, num(i), true);
        break;
      case 'F16':
        v.setUint16(2 * i, raw ? num(i) : float32ToFloat16Bits(num(i)), true);
        break;
      case 'BF16':
        v.setUint16(2 * i, raw ? num(i) : float32ToBFloat16Bits(num(i)), true);
        break;
      case 'I32':
        v.setInt32(4 * i, int(i, -(2 ** 31), 2 ** 31 - 1), true);
        break;
      case 'I64': {
        const x = values[i];
        v.setBigInt64(8 * i, typeof x === 'bigint' ? x : BigInt(int(i, -(2 ** 53), 2 ** 53)), true);
        break;
      }
    }
  }
  return out;
}

/**
 * Encodes tensors (in the given order, packed without gaps) and optional string metadata into
 * the bytes of a safetensors file. The header is padded with spaces to a multiple of 8 bytes,
 * so the data buffer starts 8-byte aligned.
 */
export function encodeSafetensors(
  tensors: Record<string, SafetensorsInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        fail('encodeSafetensors', `metadata must map strings to strings; '${k}' is ${JSON.stringify(v)}`);
      }
    }
    header.__metadata__ = { ...metadata };
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__')
      fail('encodeSafetensors', "'__metadata__' is reserved and cannot name a tensor");
    const bytes = encodeValues(name, t);
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, padded, true);
  view.setUint32(4, 0, true);
  out.set(json, 8);
  let at = 8 + padded;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// files (Node)

/** Reads and decodes a safetensors file (Node only). Errors name the file. */
export async function readSafetensors(
  path: string,
  options?: SafetensorsDecodeOptions & { int64?: 'int32' },
): Promise<SafetensorsFile>;
/** With `int64: 'bigint'`, I64 tensors come back as `BigInt64Array`. */
export async function readSafetensors(
  path: string,
  options: SafetensorsDecodeOptions,
): Promise<SafetensorsFile<SafetensorsValues | BigInt64Array>>;
export async function readSafetensors(
  path: string,
  options: SafetensorsDecodeOptions = {},
): Promise<SafetensorsFile<SafetensorsValues | BigInt64Array>> {
  return decodeSafetensors(await readFileBytes(path), path, options);
}

/**
 * Encodes tensors and writes them to `path` atomically (Node only): a temporary file in the same
 * directory, fsync, then rename, so `path` never holds a half-written file.
 */
export async function writeSafetensorsAtomic(
  path: string,
  tensors: Record<string, SafetensorsInput>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
