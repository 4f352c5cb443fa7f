import { DictlearnError, fmtShape } from '@dictlearn/core';

/** Element types an activation file may hold; every one is read as float32. */
export type FileDType = 'float32' | 'float16' | 'bfloat16' | 'float64';

/** Bytes per element of each {@link FileDType}. */
export const FILE_DTYPE_BYTES: Readonly<Record<FileDType, number>> = Object.freeze({
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
});

/** A parsed `.npy` header. */
export interface NpyHeader {
  /** Format version, e.g. `[1, 0]`. */
  version: [number, number];
  /** The `descr` string, e.g. `'<f4'`. */
  descr: string;
  /** The element type it maps to. */
  dtype: FileDType;
  /** Whether the data is in Fortran (column-major) order (always false once accepted). */
  fortranOrder: boolean;
  /** The array's shape. */
  shape: number[];
  /** Byte offset of the data: magic, version, length field and header. */
  dataOffset: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const DESCR: Record<string, FileDType> = { '<f4': 'float32', '<f2': 'float16', '<f8': 'float64' };

/** Headers longer than this are refused (numpy writes a few hundred bytes). */
const MAX_HEADER = 1 << 20;

/**
 * The byte offset of the data in an `.npy` file, from its first bytes (12 suffice for every
 * version): 10 + the header length for version 1.0, 12 + it for 2.0 and 3.0. Throws for a file
 * that is not `.npy`, an unsupported version, or a header length that is absurd.
 */
export function npyDataOffset(start: Uint8Array, source = '<bytes>'): number {
  checkMagic(start, source);
  const major = start[6];
  let offset: number;
  if (major === 1) offset = 10 + (start[8] | (start[9] << 8));
  else if (major === 2 || major === 3) {
    if (start.length < 12) {
      throw new DictlearnError(
        source,
        `truncated .npy preamble: ${start.length} bytes, version ${major} needs 12`,
      );
    }
    offset = 12 + new DataView(start.buffer, start.byteOffset, 12).getUint32(8, true);
  } else {
    throw new DictlearnError(
      source,
      `unsupported .npy format version ${major}.${start[7]}; expected 1.0, 2.0 or 3.0`,
    );
  }
  if (offset > MAX_HEADER) {
    throw new DictlearnError(
      source,
      `the .npy header claims ${offset} bytes, more than ${MAX_HEADER}: a corrupt file`,
    );
  }
  return offset;
}

function checkMagic(start: Uint8Array, source: string): void {
  const n = Math.min(start.length, MAGIC.length);
  for (let i = 0; i < n; i++) {
    if (start[i] !== MAGIC[i]) {
      throw new DictlearnError(source, 'not an .npy file: it does not start with the magic bytes \\x93NUMPY');
    }
  }
  if (start.length < 10) {
    throw new DictlearnError(
      source,
      `not an .npy file: only ${start.length} bytes, shorter than the 10-byte preamble`,
    );
  }
}

/**
 * Parses the header of an `.npy` file (format versions 1.0, 2.0 and 3.0) from its first bytes
 * (at least {@link npyDataOffset} of them) and checks that it holds a little-endian float32,
 * float16 or float64 array in C order with at least two axes, whose last axis is the
 * activation width. Errors name `source` and say what was expected.
 */
export function parseNpyHeader(bytes: Uint8Array, source = '<bytes>'): NpyHeader {
  const dataOffset = npyDataOffset(bytes, source);
  if (bytes.length < dataOffset) {
    throw new DictlearnError(
      source,
      `truncated .npy header: ${bytes.length} bytes given, the header ends at byte ${dataOffset}`,
    );
  }
  const major = bytes[6];
  const start = major === 1 ? 10 : 12;
  const raw = bytes.subarray(start, dataOffset);
  let text = '';
  if (major === 3) text = new TextDecoder('utf-8').decode(raw);
  else for (const b of raw) text += String.fromCharCode(b); // latin-1
  let dict: unknown;
  try {
    dict = new PyLiteral(text).parseAll();
  } catch (e) {
    throw new DictlearnError(
      source,
      `malformed .npy header ${JSON.stringify(text.trim())}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (!(dict instanceof Map))
    throw new DictlearnError(source, `the .npy header is not a dict: ${text.trim()}`);
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!dict.has(key))
      throw new DictlearnError(source, `the .npy header has no '${key}' key: ${text.trim()}`);
  }
  const descr = dict.get('descr');
  const fortran = dict.get('fortran_order');
  const shape = dict.get('shape');
  if (typeof descr !== 'string' || !(descr in DESCR)) {
    const what = typeof descr === 'string' ? `'${descr}'` : 'a structured dtype';
    throw new DictlearnError(
      source,
      `unsupported dtype ${what}; expected little-endian float32 '<f4', float16 '<f2' or float64 '<f8'`,
    );
  }
  if (typeof fortran !== 'boolean') throw new DictlearnError(source, `fortran_order must be True or False`);
  if (fortran) {
    throw new DictlearnError(
      source,
      'fortran_order is True: only C-order arrays are supported (save np.ascontiguousarray(x) instead)',
    );
  }
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
    throw new DictlearnError(source, `shape must be a tuple of non-negative integers`);
  }
  if (shape.length < 2) {
    throw new DictlearnError(
      source,
      `shape ${fmtShape(shape)} has ${shape.length} axis; expected [rows, dim] (or more axes, the last being dim)`,
    );
  }
  return {
    version: [major, bytes[7]],
    descr,
    dtype: DESCR[descr],
    fortranOrder: false,
    shape: shape as number[],
    dataOffset,
  };
}

/** A small parser for the Python literals of `.npy` headers: dicts, tuples, lists, str, int, bool, None. */
class PyLiteral {
  #i = 0;
  constructor(readonly text: string) {}

  parseAll(): unknown {
    const v = this.#value();
    this.#ws();
    if (this.#i !== this.text.length) this.#fail('unexpected text after the literal');
    return v;
  }

  #fail(message: string): never {
    throw new Error(`${message} at character ${this.#i}`);
  }

  #ws(): void {
    while (this.#i < this.text.length && /\s/.test(this.text[this.#i])) this.#i++;
  }

  #value(): unknown {
    this.#ws();
    const c = this.text[this.#i];
    if (c === '{') return this.#dict();
    if (c === '(') return this.#sequence(')');
    if (c === '[') return this.#sequence(']');
    if (c === "'" || c === '"') return this.#string();
    const word = /^(True|False|None|-?\d+L?)/.exec(this.text.slice(this.#i));
    if (!word) this.#fail(`unexpected ${c === undefined ? 'end' : `'${c}'`}`);
    this.#i += word[0].length;
    if (word[0] === 'True') return true;
    if (word[0] === 'False') return false;
    if (word[0] === 'None') return null;
    return Number(word[0].replace('L', ''));
  }

  #string(): string {
    const quote = this.text[this.#i++];
    let out = '';
    while (this.#i < this.text.length && this.text[this.#i] !== quote) {
      if (this.text[this.#i] === '\\') this.#i++;
      out += this.text[this.#i++];
    }
    if (this.text[this.#i] !== quote) this.#fail('unterminated string');
    this.#i++;
    return out;
  }

  #sequence(close: string): unknown[] {
    this.#i++;
    const items: unknown[] = [];
    for (;;) {
      this.#ws();
      if (this.text[this.#i] === close) {
        this.#i++;
        return items;
      }
      items.push(this.#value());
      this.#ws();
      if (this.text[this.#i] === ',') this.#i++;
      else if (this.text[this.#i] !== close) this.#fail(`expected ',' or '${close}'`);
    }
  }

  #dict(): Map<unknown, unknown> {
    this.#i++;
    const map = new Map<unknown, unknown>();
    for (;;) {
      this.#ws();
      if (this.text[this.#i] === '}') {
        this.#i++;
        return map;
      }
      const key = this.#value();
      this.#ws();
      if (this.text[this.#i] !== ':') this.#fail(`expected ':'`);
      this.#i++;
      map.set(key, this.#value());
      this.#ws();
      if (this.text[this.#i] === ',') this.#i++;
      else if (this.text[this.#i] !== '}') this.#fail(`expected ',' or '}'`);
    }
  }
}
