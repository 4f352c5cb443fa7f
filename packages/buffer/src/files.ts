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
  philox4x32,
  philoxKey,
  type SafetensorsDType,
  safetensorsHeaderLength,
  seedFor,
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
  /**
   * Most bytes of rows held at once (default 16 MiB): the size of a shuffle chunk, and of one
   * read. Memory is one batch plus at most twice this (a chunk, and a conversion buffer for
   * float16, bfloat16 and float64 files).
   */
  readBytes?: number;
  /**
   * Reshuffle the rows every epoch (default false: rows come in file order). The order of epoch
   * e depends only on (`seed`, e); see the shuffle guarantee on {@link NpySource} and the package README.
   */
  shuffle?: boolean;
  /** Seed of the shuffle (default 0), a non-negative safe integer; draws use the `'shuffle'` key domain. */
  seed?: number;
  /** Bytes of a stripe, the unit the shuffle permutes across files (default 64 KiB; at least one row). */
  stripeBytes?: number;
}

/** Options of a file source's `batches()`. */
export interface FileBatchOptions extends BatchOptions {
  /**
   * Position in the stream to start at (default 0): epoch ⌊start / rows⌋, then `start mod rows`
   * rows into that epoch's order, so `batches({ start: k })` yields what `batches()` yields after
   * its first k rows (without reading them).
   */
  start?: number;
}

/** How a file source cuts its rows for reading and shuffling (see the shuffle guarantee in the package README). */
export interface FileSourceLayout {
  /** Consecutive rows in one stripe, the unit whose order the shuffle permutes (the last may be shorter). */
  stripeRows: number;
  /** Stripes in one chunk, the unit read into memory and shuffled row by row. */
  stripesPerChunk: number;
  /** Number of stripes, ⌈rows / stripeRows⌉. */
  stripes: number;
  /** Number of chunks per epoch, ⌈stripes / stripesPerChunk⌉. */
  chunks: number;
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
  const { dim, epochs, readBytes, shuffle, seed, stripeBytes } = options;
  if (shuffle !== undefined && typeof shuffle !== 'boolean') {
    throw new DictlearnError(op, `option 'shuffle' must be true or false, got ${JSON.stringify(shuffle)}`);
  }
  if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0)) {
    throw new DictlearnError(op, `option 'seed' must be a non-negative integer, got ${seed}`);
  }
  if (stripeBytes !== undefined && (!Number.isSafeInteger(stripeBytes) || stripeBytes < 1)) {
    throw new DictlearnError(op, `option 'stripeBytes' must be a positive integer, got ${stripeBytes}`);
  }
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

/** Default bytes of a stripe: large enough for efficient reads, small enough to mix many per chunk. */
const STRIPE_BYTES = 64 * 1024;
/** Files kept open at once while streaming (a run over thousands of shards must not run out of descriptors). */
const OPEN_FILES = 8;
/** Feistel rounds of the stripe permutation (Luby–Rackoff needs 4 for a pseudorandom permutation). */
const FEISTEL_ROUNDS = 6;
/** Counter word 3 of the shuffle's two draws, so the stripe order and the row order never share a Philox block. */
const STRIPE_TAG = 1;
const ROW_TAG = 2;

/**
 * A keyed pseudorandom permutation of 0 … n−1 without a table: a balanced Feistel network over
 * the smallest even number of bits that covers n, its round function a Philox-4x32-10 block of
 * (value, round, epoch, tag) under the shuffle key, with cycle walking to stay below n (fewer
 * than 4 rounds of the network on average). Memory O(1), any position and its inverse in O(1).
 */
class StripePermutation {
  readonly #n: number;
  readonly #half: number;
  readonly #key: [number, number];
  readonly #epoch: number;
  readonly #counter = [0, 0, 0, STRIPE_TAG];
  readonly #out = new Uint32Array(4);

  constructor(n: number, key: [number, number], epoch: number) {
    this.#n = n;
    let bits = Math.max(1, Math.ceil(Math.log2(n)));
    if (2 ** bits < n) bits++; // guard the float log
    if (bits % 2 === 1) bits++;
    this.#half = 2 ** (bits / 2);
    this.#key = key;
    this.#epoch = epoch;
  }

  #round(r: number, x: number): number {
    const c = this.#counter;
    c[0] = x;
    c[1] = r;
    c[2] = this.#epoch >>> 0;
    philox4x32(c, this.#key, this.#out);
    return this.#out[0] % this.#half;
  }

  #encrypt(x: number): number {
    const h = this.#half;
    let l = Math.floor(x / h);
    let r = x % h;
    for (let i = 0; i < FEISTEL_ROUNDS; i++) {
      const t = (l ^ this.#round(i, r)) >>> 0;
      l = r;
      r = t;
    }
    return l * h + r;
  }

  #decrypt(y: number): number {
    const h = this.#half;
    let l = Math.floor(y / h);
    let r = y % h;
    for (let i = FEISTEL_ROUNDS - 1; i >= 0; i--) {
      const t = (r ^ this.#round(i, l)) >>> 0;
      r = l;
      l = t;
    }
    return l * h + r;
  }

  /** The stripe at position `p` of the order. */
  at(p: number): number {
    if (this.#n <= 1) return p;
    let y = this.#encrypt(p);
    while (y >= this.#n) y = this.#encrypt(y);
    return y;
  }

  /** The position of stripe `k` in the order (the inverse of {@link at}). */
  positionOf(k: number): number {
    if (this.#n <= 1) return k;
    let x = this.#decrypt(k);
    while (x >= this.#n) x = this.#decrypt(x);
    return x;
  }
}

/** A uniform Fisher–Yates permutation of 0 … m−1 from the Philox blocks (b, chunk, epoch, ROW_TAG). */
function shuffledRows(m: number, key: [number, number], epoch: number, chunk: number): Uint32Array {
  const perm = new Uint32Array(m);
  for (let i = 0; i < m; i++) perm[i] = i;
  const counter = [0, chunk >>> 0, epoch >>> 0, ROW_TAG];
  const block = new Uint32Array(4);
  let b = 0;
  for (let i = m - 1; i > 0; i -= 2) {
    counter[0] = b++;
    philox4x32(counter, key, block);
    // 53-bit uniforms from word pairs: the modulo bias of 32 bits would be up to m/2³²
    const u1 = ((block[0] >>> 5) * 67108864 + (block[1] >>> 6)) / 9007199254740992;
    const j1 = Math.floor(u1 * (i + 1));
    const t1 = perm[i];
    perm[i] = perm[j1];
    perm[j1] = t1;
    if (i - 1 > 0) {
      const u2 = ((block[2] >>> 5) * 67108864 + (block[3] >>> 6)) / 9007199254740992;
      const j2 = Math.floor(u2 * i);
      const t2 = perm[i - 1];
      perm[i - 1] = perm[j2];
      perm[j2] = t2;
    }
  }
  return perm;
}

/** The first non-finite value of `v` (x − x is NaN exactly for NaN and ±Infinity), or −1. */
function firstNonFinite(v: Float32Array): number {
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x - x !== 0) return i;
  }
  return -1;
}

/**
 * Reads global row ranges of a list of files (the files' rows concatenated) into float32,
 * converting on the fly and refusing non-finite values with the file, row and column named.
 * Keeps up to {@link OPEN_FILES} handles open.
 */
class RowReader {
  readonly #files: readonly ActivationFile[];
  readonly #starts: number[];
  readonly #dim: number;
  readonly #readBytes: number;
  readonly #fs: Fs;
  readonly #open = new Map<number, FileHandle>();
  #raw: Uint8Array | undefined;

  constructor(files: readonly ActivationFile[], dim: number, readBytes: number, fs: Fs) {
    this.#files = files;
    this.#dim = dim;
    this.#readBytes = readBytes;
    this.#fs = fs;
    this.#starts = [0];
    for (const f of files) this.#starts.push(this.#starts[this.#starts.length - 1] + f.rows);
  }

  async #handle(i: number): Promise<FileHandle> {
    const open = this.#open.get(i);
    if (open) {
      this.#open.delete(i); // re-insert: the map's order is the least recently used first
      this.#open.set(i, open);
      return open;
    }
    if (this.#open.size >= OPEN_FILES) {
      const [oldest, h] = this.#open.entries().next().value as [number, FileHandle];
      this.#open.delete(oldest);
      await h.close();
    }
    const path = this.#files[i].path;
    let h: FileHandle;
    try {
      h = await this.#fs.open(path, 'r');
    } catch (e) {
      throw new DictlearnError(path, `cannot open the file: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.#open.set(i, h);
    return h;
  }

  /** The file holding global row `g` (binary search over the files' first rows). */
  #fileOf(g: number): number {
    let lo = 0;
    let hi = this.#files.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid] <= g) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Reads global rows [g, g + count) into `target` from row `at` on. */
  async read(g: number, count: number, target: Float32Array, at: number): Promise<void> {
    const d = this.#dim;
    while (count > 0) {
      const fi = this.#fileOf(g);
      const file = this.#files[fi];
      const local = g - this.#starts[fi];
      if (local >= file.rows) {
        g = this.#starts[fi + 1]; // an empty file: nothing to read
        continue;
      }
      const take = Math.min(count, file.rows - local);
      const handle = await this.#handle(fi);
      const bytesPer = FILE_DTYPE_BYTES[file.dtype];
      const rowBytes = d * bytesPer;
      if (file.dtype === 'float32' && LITTLE_ENDIAN) {
        const view = new Uint8Array(target.buffer, target.byteOffset + at * d * 4, take * rowBytes);
        await readFully(handle, view, file.dataOffset + local * rowBytes, file.path);
      } else {
        const pieceRows = Math.max(1, Math.floor(this.#readBytes / rowBytes));
        for (let done = 0; done < take; ) {
          const n = Math.min(pieceRows, take - done);
          const need = n * rowBytes;
          if (!this.#raw || this.#raw.byteLength < need) {
            this.#raw = new Uint8Array(Math.min(pieceRows, take) * rowBytes);
          }
          const raw = this.#raw.subarray(0, need);
          await readFully(handle, raw, file.dataOffset + (local + done) * rowBytes, file.path);
          convert(file.dtype, raw, target.subarray((at + done) * d, (at + done + n) * d));
          done += n;
        }
      }
      const bad = firstNonFinite(target.subarray(at * d, (at + take) * d));
      if (bad >= 0) {
        const row = local + Math.floor(bad / d);
        const value = target[at * d + bad];
        throw new DictlearnError(
          file.path,
          `row ${row}${rowIndex(file.shape, row)}, column ${bad % d} holds ${value}; activations must be finite numbers`,
        );
      }
      g += take;
      at += take;
      count -= take;
    }
  }

  async close(): Promise<void> {
    const handles = [...this.#open.values()];
    this.#open.clear();
    for (const h of handles) await h.close();
  }
}

/** ` (index [i, j] of shape [a, b, d])` for a row of a file with more than two axes, else ''. */
function rowIndex(shape: readonly number[], row: number): string {
  if (shape.length <= 2) return '';
  const idx: number[] = [];
  let r = row;
  for (let a = shape.length - 2; a >= 0; a--) {
    idx.unshift(r % shape[a]);
    r = Math.floor(r / shape[a]);
  }
  return ` (index ${fmtShape(idx)} of shape ${fmtShape(shape)})`;
}

/** What the user should be told about files with more than two axes (read as rows of their last axis). */
function flattenNotices(files: readonly ActivationFile[], dim: number): string[] {
  const deep = files.filter((f) => f.shape.length > 2);
  if (deep.length === 0) return [];
  const f = deep[0];
  const more =
    deep.length > 1 ? ` (and ${deep.length - 1} more file${deep.length > 2 ? 's' : ''} likewise)` : '';
  return [
    `${f.path}: reading shape ${fmtShape(f.shape)} as ${f.rows} rows of ${dim} (every axis but the last counts rows)${more}`,
  ];
}

/**
 * Base of the file sources: streams the rows of a list of files as [batchSize, dim] float32
 * batches (a batch may span files and epochs; the very last one may be smaller), converting
 * float16, bfloat16 and float64 on the fly, and refusing NaN/±Infinity with the file, row and
 * column named.
 *
 * Rows are cut into stripes of `stripeRows` consecutive rows (about `stripeBytes`, 64 KiB) and
 * stripes are grouped into chunks of at most `readBytes` (16 MiB) of float32 rows, the unit held
 * in memory. Without `shuffle` the rows come in file order. With `shuffle`, epoch e visits the
 * stripes in the order of a keyed pseudorandom permutation of all stripes of all files (a
 * Feistel network over Philox, key from (`seed`, `'shuffle'`), tweaked by e), reads them a chunk
 * at a time, and yields each chunk's rows in a uniformly random order (Fisher–Yates over Philox).
 *
 * Guarantee: every epoch yields every row exactly once; the order depends only on (seed, epoch),
 * so it is reproducible and replayable (`start`), and differs between epochs. Rows of one stripe
 * stay in one chunk, so the shuffle is a full permutation of the stripes but not of the rows:
 * two rows closer than a stripe always land within a chunk of each other. Memory: one batch, one
 * chunk, one conversion buffer.
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
  /** Whether each epoch is reshuffled. */
  readonly shuffle: boolean;
  /** Seed of the shuffle. */
  readonly seed: number;
  /** How rows are cut into stripes and chunks. */
  readonly layout: FileSourceLayout;
  /**
   * Things the user should know about how the files are read (one line each), e.g. that a
   * `[8, 128, 512]` array is read as 1024 rows of 512. The CLI prints them.
   */
  readonly notices: readonly string[];
  readonly #readBytes: number;
  readonly #key: [number, number];

  protected constructor(kind: string, files: ActivationFile[], dim: number, options: FileSourceOptions) {
    this.files = files;
    this.dim = dim;
    this.rows = files.reduce((s, f) => s + f.rows, 0);
    this.epochs = options.epochs ?? 1;
    this.shuffle = options.shuffle === true;
    this.seed = options.seed ?? 0;
    this.#readBytes = options.readBytes ?? 16 * 2 ** 20;
    this.#key = philoxKey(seedFor('shuffle', this.seed));
    const rowBytes = 4 * dim;
    const chunkRows = Math.max(1, Math.floor(this.#readBytes / rowBytes));
    const stripeRows = Math.max(
      1,
      Math.min(chunkRows, Math.floor((options.stripeBytes ?? STRIPE_BYTES) / rowBytes)),
    );
    const stripes = Math.ceil(this.rows / stripeRows);
    const stripesPerChunk = Math.max(1, Math.floor(chunkRows / stripeRows));
    this.layout = Object.freeze({
      stripeRows,
      stripesPerChunk,
      stripes,
      chunks: Math.ceil(stripes / stripesPerChunk),
    });
    this.notices = Object.freeze(flattenNotices(files, dim));
    const shuffled = this.shuffle ? `, shuffled with seed ${this.seed}` : '';
    this.name = `${kind}(${files.length} file${files.length === 1 ? '' : 's'}, ${this.rows} rows, d=${dim}${shuffled})`;
  }

  /** Rows of epoch order before chunk `j` (the only short stripe, the last, may sit in any chunk). */
  #rowsBefore(j: number, lastStripePosition: number): number {
    const { stripeRows: s, stripesPerChunk: c, stripes } = this.layout;
    const short = stripes * s - this.rows;
    return j * c * s - (short > 0 && lastStripePosition < j * c ? short : 0);
  }

  /** Yields [batchSize, dim] batches until every epoch is read (from position `start`). */
  async *batches(options: FileBatchOptions): AsyncGenerator<Tensor> {
    const batchSize = options?.batchSize;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new DictlearnError(this.name, `batchSize must be a positive integer, got ${batchSize}`);
    }
    const start = options.start ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new DictlearnError(this.name, `start must be a non-negative integer, got ${start}`);
    }
    const n = this.rows;
    if (n === 0) return;
    const fs = await nodeFs(this.name);
    const d = this.dim;
    const { stripeRows: s, stripesPerChunk: c, stripes, chunks } = this.layout;
    const reader = new RowReader(this.files, d, this.#readBytes, fs);
    const chunk = new Float32Array(Math.min(c * s, n) * d);
    let out = new Float32Array(batchSize * d);
    let filled = 0;
    let skip = start % n;
    try {
      for (let epoch = Math.floor(start / n); epoch < this.epochs; epoch++) {
        const order = this.shuffle ? new StripePermutation(stripes, this.#key, epoch) : undefined;
        const lastAt = order ? order.positionOf(stripes - 1) : stripes - 1;
        // the chunk holding position `skip` of this epoch's order
        let j = Math.min(chunks - 1, Math.floor(skip / (c * s)));
        while (j > 0 && this.#rowsBefore(j, lastAt) > skip) j--;
        while (j + 1 < chunks && this.#rowsBefore(j + 1, lastAt) <= skip) j++;
        let offset = skip - this.#rowsBefore(j, lastAt);
        skip = 0;
        for (; j < chunks; j++) {
          let m = 0;
          const last = Math.min((j + 1) * c, stripes);
          if (!order) {
            m = Math.min(last * s, n) - j * c * s;
            await reader.read(j * c * s, m, chunk, 0);
          } else {
            for (let p = j * c; p < last; p++) {
              const k = order.at(p);
              const rows = Math.min(s, n - k * s);
              await reader.read(k * s, rows, chunk, m);
              m += rows;
            }
          }
          const perm = order ? shuffledRows(m, this.#key, epoch, j) : undefined;
          for (let r = offset; r < m; ) {
            if (perm) {
              const src = perm[r++];
              out.set(chunk.subarray(src * d, (src + 1) * d), filled * d);
              filled++;
            } else {
              const take = Math.min(m - r, batchSize - filled);
              out.set(chunk.subarray(r * d, (r + take) * d), filled * d);
              filled += take;
              r += take;
            }
            if (filled === batchSize) {
              yield tensor(out, [batchSize, d], { backend: options.backend });
              out = new Float32Array(batchSize * d);
              filled = 0;
            }
          }
          offset = 0;
        }
      }
      if (filled > 0) yield tensor(out.subarray(0, filled * d), [filled, d], { backend: options.backend });
    } finally {
      await reader.close();
    }
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
 * float16 or float64, C order, shape [rows, d] or more axes with d last (read as rows of the
 * last axis; `notices` says so). Open with {@link NpySource.open}; the headers of all files are
 * read and checked up front (magic, version, dtype, order, a size that holds the data, the same
 * d everywhere), then `batches()` streams the rows, in file order or reshuffled every epoch
 * (`shuffle`, `seed`; see the base class for the guarantee).
 *
 * ```ts
 * const source = await NpySource.open(['acts-0.npy', 'acts-1.npy'], { epochs: 4, shuffle: true, seed: 1 });
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
