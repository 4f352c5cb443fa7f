/**
 * Activations uploaded as an `.npy` file: parsed in memory with `@dictlearn/buffer`'s header
 * reader (the file sources themselves read from disk, which a page cannot) and served as an
 * activation source that cycles through the rows.
 */

import { FILE_DTYPE_BYTES, parseNpyHeader } from '@dictlearn/buffer';
import {
  type ActivationSource,
  type BatchOptions,
  bfloat16ToFloat32,
  DictlearnError,
  float16ToFloat32,
  fmtShape,
  type Tensor,
  tensor,
} from '@dictlearn/core';

/** An uploaded array: rows × dim float32, row-major. */
export interface UploadedArray {
  /** The file name, for messages. */
  name: string;
  /** Rows (the product of every axis but the last). */
  rows: number;
  /** Width d (the last axis). */
  dim: number;
  /** The values, converted to float32. */
  data: Float32Array;
}

/** Largest upload the page accepts (it holds the whole array in memory). */
export const MAX_UPLOAD_BYTES = 256 * 1024 * 1024;

/**
 * Parses an `.npy` file's bytes: a float32, float16 or float64 array in C order, rows × d (more
 * axes are flattened into rows). Throws a `DictlearnError` naming the file and what was wrong:
 * not `.npy`, an unsupported dtype, a truncated data section, NaN/Inf values.
 */
export function parseNpy(bytes: Uint8Array, name: string): UploadedArray {
  if (bytes.length > MAX_UPLOAD_BYTES) {
    throw new DictlearnError(
      name,
      `${bytes.length} bytes is more than the page holds (${MAX_UPLOAD_BYTES}); upload a sample of the rows`,
    );
  }
  const header = parseNpyHeader(bytes, name);
  const dim = header.shape[header.shape.length - 1];
  const rows = header.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  if (dim === 0 || rows === 0) {
    throw new DictlearnError(
      name,
      `shape ${fmtShape(header.shape)} holds no activations; expected [rows, dim] with both > 0`,
    );
  }
  const width = FILE_DTYPE_BYTES[header.dtype];
  const need = rows * dim * width;
  const have = bytes.length - header.dataOffset;
  if (have < need) {
    throw new DictlearnError(
      name,
      `truncated: shape ${fmtShape(header.shape)} of ${header.dtype} needs ${need} data bytes, the file has ${have}`,
    );
  }
  // Copy the data section so the typed-array views are aligned whatever the header length.
  const raw = bytes.slice(header.dataOffset, header.dataOffset + need).buffer;
  let data: Float32Array;
  if (header.dtype === 'float32') data = new Float32Array(raw);
  else if (header.dtype === 'float64') data = Float32Array.from(new Float64Array(raw));
  else if (header.dtype === 'float16') data = float16ToFloat32(new Uint16Array(raw));
  else data = bfloat16ToFloat32(new Uint16Array(raw));
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new DictlearnError(
      name,
      `value at row ${Math.floor(bad / dim)}, column ${bad % dim} is ${data[bad]}; activations must be finite`,
    );
  }
  return { name, rows, dim, data };
}

/** An in-memory array as an activation source: batches of consecutive rows, wrapping around forever. */
export class ArraySource implements ActivationSource {
  /** Description for logs. */
  readonly name: string;
  /** Width d. */
  readonly dim: number;
  readonly #array: UploadedArray;

  /** Serves `array`'s rows. */
  constructor(array: UploadedArray) {
    this.#array = array;
    this.dim = array.dim;
    this.name = `${array.name} (${array.rows}×${array.dim})`;
  }

  /** Rows `start` … `start + count − 1` (mod the row count) on the host. */
  rowsHost(start: number, count: number): Float32Array {
    const { rows, dim, data } = this.#array;
    const out = new Float32Array(count * dim);
    for (let i = 0; i < count; i++) {
      const r = (start + i) % rows;
      out.set(data.subarray(r * dim, (r + 1) * dim), i * dim);
    }
    return out;
  }

  /** Yields [batchSize, dim] batches of consecutive rows, forever (wrapping around). */
  async *batches(options: BatchOptions): AsyncGenerator<Tensor> {
    const batchSize = options.batchSize;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new DictlearnError(this.name, `batchSize must be a positive integer, got ${batchSize}`);
    }
    for (let next = 0; ; next = (next + batchSize) % this.#array.rows) {
      yield tensor(this.rowsHost(next, batchSize), [batchSize, this.dim], { backend: options.backend });
    }
  }
}
