/**
 * File sources: activations saved as `.npy` arrays or safetensors tensors, streamed in chunks.
 * Node only: `node:fs/promises` is imported lazily, inside the functions, so this module can be
 * reached from the browser-safe main entry without loading it.
 */
import {
  type ActivationSource,
  type BatchOptions,
  bfloat16ToFloat32,
  DictlearnError,
  float16ToFloat32,
  fmtShape,
  parseSafetensorsHeader,
  type SafetensorsDType,
  safetensorsHeaderLength,
  type Tensor,
  tensor,
} from '@dictlearn/core';
import { FILE_DTYPE_BYTES, type FileDType, npyDataOffset, parseNpyHeader } from './npy.js';

type Fs = typeof import('node:fs/promises');
type FileHandle = Awaited<ReturnType<Fs['open']>>;

async function nodeFs(op: string): Promise<Fs> {
  try {
    return await import('node:fs/promises');
  } catch (e) {
    throw new DictlearnError(op, `file sources need Node.js (${e instanceof Error ? e.message : String(e)})`);
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** One file of activations: where its rows are and how they are stored. */
export interface ActivationFile {
  /** Path as given (or found in a directory). */
  path: string;
  /** Element type on disk (read as float32). */
  dtype: FileDType;
  /** Shape of the stored array; rows are all axes but the last. */
  shape: number[];
  /** Number of rows (the product of all axes but the last). */
  rows: number;
  /** Byte offset of the first row. */
  dataOffset: number;
}

/** Options shared by {@link NpySource} and {@link SafetensorsSource}. */
export interface FileSourceOptions {
  /** Expected width d; every file's last axis must equal it (default: the first file's). */
  dim?: number;
  /** Passes over the files (default 1; `Infinity` repeats them forever). */
  epochs?: number;
  /** Most bytes read from disk at once (default 16 MiB); memory is one batch plus this. */
  readBytes?: number;
}

/** Options of {@link SafetensorsSource}. */
export interface SafetensorsSourceOptions extends FileSourceOptions {
  /** Name of the tensor that holds the activations (default: the file's only tensor). */
  key?: string;
}

function rowsOf(shape: readonly number[]): number {
  let n = 1;
  for (let i = 0; i < shape.length - 1; i++) n *= shape[i];
  return n;
}

async function readFully(
  handle: FileHandle,
  into: Uint8Array,
  position: number,
  path: string,
): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) {
      throw new DictlearnError(
        path,
        `the file ended at byte ${position + done}, ${into.byteLength - done} bytes short (was it truncated while being read?)`,
      );
    }
    done += bytesRead;
  }
}

async function readPrefix(
  handle: FileHandle,
  size: number,
  length: number,
  path: string,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(Math.min(size, length));
  await readFully(handle, bytes, 0, path);
  return bytes;
}

/** Expands directories into their files with `extension`, sorted by name. */
async function expandPaths(
  paths: string | readonly string[],
  extension: string,
  op: string,
): Promise<string[]> {
  const list = typeof paths === 'string' ? [paths] : [...(paths ?? [])];
  if (list.length === 0 || !list.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new DictlearnError(op, 'expected one or more file paths');
  }
  const fs = await nodeFs(op);
  const out: string[] = [];
  for (const p of list) {
    let stat: Awaited<ReturnType<Fs['stat']>>;
    try {
      stat = await fs.stat(p);
    } catch (e) {
      throw new DictlearnError(p, `cannot open the file: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (stat.isDirectory()) {
      const names = (await fs.readdir(p)).filter((n) => n.endsWith(extension)).sort();
      if (names.length === 0) throw new DictlearnError(p, `the directory holds no ${extension} files`);
      const sep = p.endsWith('/') ? '' : '/';
      for (const n of names) out.push(`${p}${sep}${n}`);
    } else out.push(p);
  }
  return out;
}

function checkOptions(op: string, options: FileSourceOptions): void {
  const { dim, epochs, readBytes } = options;
  if (dim !== undefined && (!Number.isSafeInteger(dim) || dim < 1)) {
    throw new DictlearnError(op, `option 'dim' must be a positive integer, got ${dim}`);
  }
  if (
    epochs !== undefined &&
    !(epochs === Number.POSITIVE_INFINITY || (Number.isSafeInteger(epochs) && epochs >= 1))
  ) {
    throw new DictlearnError(op, `option 'epochs' must be a positive integer or Infinity, got ${epochs}`);
  }
  if (readBytes !== undefined && (!Number.isSafeInteger(readBytes) || readBytes < 1)) {
    throw new DictlearnError(op, `option 'readBytes' must be a positive integer, got ${readBytes}`);
  }
}

/** Checks the widths of all files against the first file's (or the `dim` option). */
function commonDim(files: ActivationFile[], expected: number | undefined): number {
  const first = files[0];
  const dim = expected ?? first.shape[first.shape.length - 1];
  for (const f of files) {
    const d = f.shape[f.shape.length - 1];
    if (d !== dim) {
      const why = expected !== undefined ? "the 'dim' option" : `the width of ${first.path}`;
      throw new DictlearnError(
        f.path,
        `shape ${fmtShape(f.shape)} has last axis ${d}, expected ${dim} (${why})`,
      );
    }
    if (d === 0) throw new DictlearnError(f.path, `shape ${fmtShape(f.shape)} has an empty last axis`);
  }
  return dim;
}

/**
 * Base of the file sources: streams the rows of a list of files, in order, as [batchSize, dim]
 * float32 batches (a batch may span two files; the last one may be smaller), converting
 * float16, bfloat16 and float64 on the fly. Memory holds one batch and one read.
 */
abstract class FileSource implements ActivationSource {
  /** A short description, e.g. `npy(3 files, 120000 rows, d=512)`. */
  readonly name: string;
  /** Width d of each row. */
  readonly dim: number;
  /** Rows in one pass over the files. */
  readonly rows: number;
  /** The files, in reading order. */
  readonly files: readonly ActivationFile[];
  /** Passes over the files. */
  readonly epochs: number;
  readonly #readBytes: number;

  protected constructor(kind: string, files: ActivationFile[], dim: number, options: FileSourceOptions) {
    this.files = files;
    this.dim = dim;
    this.rows = files.reduce((s, f) => s + f.rows, 0);
    this.epochs = options.epochs ?? 1;
    this.#readBytes = options.readBytes ?? 16 * 2 ** 20;
    this.name = `${kind}(${files.length} file${files.length === 1 ? '' : 's'}, ${this.rows} rows, d=${dim})`;
  }

  /** Yields [batchSize, dim] batches of consecutive rows until every epoch is read. */
  async *batches(options: BatchOptions): AsyncGenerator<Tensor> {
    const batchSize = options?.batchSize;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new DictlearnError(this.name, `batchSize must be a positive integer, got ${batchSize}`);
    }
    const fs = await nodeFs(this.name);
    const d = this.dim;
    let out = new Float32Array(batchSize * d);
    let filled = 0;
    for (let epoch = 0; epoch < this.epochs; epoch++) {
      if (this.rows === 0) return;
      for (const file of this.files) {
        if (file.rows === 0) continue;
        const bytesPer = FILE_DTYPE_BYTES[file.dtype];
        const rowBytes = d * bytesPer;
        const maxRows = Math.max(1, Math.floor(this.#readBytes / rowBytes));
        let handle: FileHandle;
        try {
          handle = await fs.open(file.path, 'r');
        } catch (e) {
          throw new DictlearnError(
            file.path,
            `cannot open the file: ${e instanceof Error ? e.message : String(e)}`,
          );
        }
        try {
          let row = 0;
          while (row < file.rows) {
            const take = Math.min(batchSize - filled, file.rows - row, maxRows);
            const position = file.dataOffset + row * rowBytes;
            const target = out.subarray(filled * d, (filled + take) * d);
            if (file.dtype === 'float32' && LITTLE_ENDIAN) {
              await readFully(
                handle,
                new Uint8Array(out.buffer, target.byteOffset, take * rowBytes),
                position,
                file.path,
              );
            } else {
              const raw = new Uint8Array(take * rowBytes);
              await readFully(handle, raw, position, file.path);
              convert(file.dtype, raw, target);
            }
            filled += take;
            row += take;
            if (filled === batchSize) {
              yield tensor(out, [batchSize, d], { backend: options.backend });
              out = new Float32Array(batchSize * d);
              filled = 0;
            }
          }
        } finally {
          await handle.close();
        }
      }
    }
    if (filled > 0) yield tensor(out.subarray(0, filled * d), [filled, d], { backend: options.backend });
  }
}

/** Little-endian `raw` bytes of `dtype` into float32 `target`. */
function convert(dtype: FileDType, raw: Uint8Array, target: Float32Array): void {
  const n = target.length;
  if (!LITTLE_ENDIAN) {
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i++) {
      if (dtype === 'float32') target[i] = v.getFloat32(4 * i, true);
      else if (dtype === 'float64') target[i] = v.getFloat64(8 * i, true);
      else {
        const bits = new Uint16Array([v.getUint16(2 * i, true)]);
        target[i] = (dtype === 'float16' ? float16ToFloat32(bits) : bfloat16ToFloat32(bits))[0];
      }
    }
    return;
  }
  // raw is a fresh, aligned buffer
  if (dtype === 'float32') target.set(new Float32Array(raw.buffer, raw.byteOffset, n));
  else if (dtype === 'float64') target.set(new Float64Array(raw.buffer, raw.byteOffset, n));
  else if (dtype === 'float16') float16ToFloat32(new Uint16Array(raw.buffer, raw.byteOffset, n), target);
  else bfloat16ToFloat32(new Uint16Array(raw.buffer, raw.byteOffset, n), target);
}

/**
 * Activations stored in `.npy` files (numpy's format, versions 1.0–3.0): little-endian float32,
 * float16 or float64, C order, shape [rows, d] or more axes with d last (flattened to rows).
 * Open with {@link NpySource.open}; the headers of all files are read and checked up front
 * (magic, version, dtype, order, a size that holds the data, the same d everywhere), then
 * `batches()` streams the rows.
 *
 * ```ts
 * const source = await NpySource.open(['acts-0.npy', 'acts-1.npy']);
 * const buffer = new ActivationBuffer(source, { batchSize: 4096 });
 * ```
 */
export class NpySource extends FileSource {
  private constructor(files: ActivationFile[], dim: number, options: FileSourceOptions) {
    super('npy', files, dim, options);
  }

  /** Reads and checks the headers of `paths` (files, or directories of `.npy` files). */
  static async open(paths: string | readonly string[], options: FileSourceOptions = {}): Promise<NpySource> {
    checkOptions('NpySource', options);
    const fs = await nodeFs('NpySource');
    const files: ActivationFile[] = [];
    for (const path of await expandPaths(paths, '.npy', 'NpySource')) {
      const handle = await fs.open(path, 'r');
      try {
        const { size } = await handle.stat();
        const preamble = await readPrefix(handle, size, 12, path);
        const header = parseNpyHeader(
          await readPrefix(handle, size, npyDataOffset(preamble, path), path),
          path,
        );
        const rows = rowsOf(header.shape);
        const need = rows * header.shape[header.shape.length - 1] * FILE_DTYPE_BYTES[header.dtype];
        if (size < header.dataOffset + need) {
          throw new DictlearnError(
            path,
            `truncated .npy file: shape ${fmtShape(header.shape)} ${header.dtype} needs ${need} data bytes after the ${header.dataOffset}-byte header, the file holds ${Math.max(0, size - header.dataOffset)}`,
          );
        }
        files.push({ path, dtype: header.dtype, shape: header.shape, rows, dataOffset: header.dataOffset });
      } finally {
        await handle.close();
      }
    }
    return new NpySource(files, commonDim(files, options.dim), options);
  }
}

const SAFETENSORS_DTYPES: Partial<Record<SafetensorsDType, FileDType>> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  F64: 'float64',
};

/**
 * Activations stored in safetensors files, one activation tensor per file (F32, F16, BF16 or
 * F64; shape [rows, d] or more axes with d last). The tensor is the one named by `key`, or the
 * file's only tensor. Open with {@link SafetensorsSource.open}: headers are read and checked
 * up front (with core's safetensors parser), then `batches()` streams the tensor's bytes.
 */
export class SafetensorsSource extends FileSource {
  /** The tensor name read in each file. */
  readonly keys: readonly string[];

  private constructor(
    files: ActivationFile[],
    keys: string[],
    dim: number,
    options: SafetensorsSourceOptions,
  ) {
    super('safetensors', files, dim, options);
    this.keys = keys;
  }

  /** Reads and checks the headers of `paths` (files, or directories of `.safetensors` files). */
  static async open(
    paths: string | readonly string[],
    options: SafetensorsSourceOptions = {},
  ): Promise<SafetensorsSource> {
    checkOptions('SafetensorsSource', options);
    if (options.key !== undefined && (typeof options.key !== 'string' || options.key === '')) {
      throw new DictlearnError(
        'SafetensorsSource',
        `option 'key' must be a tensor name, got ${JSON.stringify(options.key)}`,
      );
    }
    const fs = await nodeFs('SafetensorsSource');
    const files: ActivationFile[] = [];
    const keys: string[] = [];
    for (const path of await expandPaths(paths, '.safetensors', 'SafetensorsSource')) {
      const handle = await fs.open(path, 'r');
      try {
        const { size } = await handle.stat();
        const n = safetensorsHeaderLength(await readPrefix(handle, size, 8, path), size, path);
        const header = parseSafetensorsHeader(await readPrefix(handle, size, 8 + n, path), size, path);
        const names = header.entries.map((e) => e.name);
        let entry = header.entries[0];
        if (options.key !== undefined) {
          const found = header.entries.find((e) => e.name === options.key);
          if (!found) {
            throw new DictlearnError(
              path,
              `no tensor '${options.key}'; the file holds ${names.length ? names.map((k) => `'${k}'`).join(', ') : 'no tensors'}`,
            );
          }
          entry = found;
        } else if (header.entries.length !== 1) {
          throw new DictlearnError(
            path,
            `the file holds ${header.entries.length} tensors (${names.map((k) => `'${k}'`).join(', ')}); pass the 'key' option to choose one`,
          );
        }
        const dtype = SAFETENSORS_DTYPES[entry.dtype];
        if (!dtype) {
          throw new DictlearnError(
            path,
            `tensor '${entry.name}' is ${entry.dtype}; expected float activations (F32, F16, BF16 or F64)`,
          );
        }
        if (entry.shape.length < 2) {
          throw new DictlearnError(
            path,
            `tensor '${entry.name}' has shape ${fmtShape(entry.shape)}; expected [rows, dim] (or more axes, the last being dim)`,
          );
        }
        files.push({
          path,
          dtype,
          shape: entry.shape,
          rows: rowsOf(entry.shape),
          dataOffset: header.dataOffset + entry.begin,
        });
        keys.push(entry.name);
      } finally {
        await handle.close();
      }
    }
    return new SafetensorsSource(files, keys, commonDim(files, options.dim), options);
  }
}
