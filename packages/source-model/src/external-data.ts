/**
 * Models whose weights live in external data files (every model over 2 GB: a protobuf message
 * cannot exceed 2 GB, so exporters write the weights to side files such as `model.onnx.data` and
 * the model names them by `location`, `offset` and `length`). The model proto itself stays small
 * and is edited as usual; the data files are checked once here and then read in place, by
 * onnxruntime (told the model's directory) and by {@link OnnxModel.initializerValues} (a reader
 * made here), never copied.
 *
 * @module
 */
import { DictlearnError } from '@dictlearn/core';
import {
  type ExternalDataReader,
  elementBytes,
  type GraphEdit,
  type OnnxInitializer,
  type OnnxModel,
} from './onnx.js';

/** The largest protobuf message (and so the largest single-file ONNX model): 2 GiB − 1 bytes. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

/** The initializers of a graph whose data lies in external files. */
export function externalInitializers(graph: OnnxModel): OnnxInitializer[] {
  return [...graph.initializers.values()].filter((t) => t.external);
}

/** Bytes an initializer's data takes: its `length`, else elements × element width (undefined if unknown). */
function byteLength(t: OnnxInitializer): number | undefined {
  if (t.externalData?.length !== undefined) return t.externalData.length;
  const width = elementBytes(t.dataType);
  return width === undefined ? undefined : t.dims.reduce((a, b) => a * b, 1) * width;
}

/** Checks that `[offset, offset + length)` of a data file of `size` bytes holds the initializer. */
function checkRange(t: OnnxInitializer, dataFile: string, modelFile: string, size: number): void {
  const ref = t.externalData as NonNullable<OnnxInitializer['externalData']>;
  const length = byteLength(t);
  const width = elementBytes(t.dataType);
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (ref.length !== undefined && width !== undefined && ref.length !== count * width) {
    throw new DictlearnError(
      dataFile,
      `initializer '${t.name}' (named in ${modelFile}) takes ${ref.length} bytes here; expected ${count * width} for dims [${t.dims.join(', ')}]`,
    );
  }
  const end = ref.offset + (length ?? 0);
  if (ref.offset > size || end > size) {
    throw new DictlearnError(
      dataFile,
      `initializer '${t.name}' (named in ${modelFile}) lies at bytes ${ref.offset}…${end} but the file holds ${size} bytes; expected the data file the model was saved with (truncated or replaced?)`,
    );
  }
}

/** What a model's external data needs at run time: a reader for its values, and the session options. */
export interface ExternalData {
  /** Reads initializer bytes (for {@link OnnxModel.initializerValues}). */
  readonly read: ExternalDataReader;
  /** Session options that let onnxruntime find the data (merged into the caller's). */
  readonly sessionOptions: Record<string, unknown>;
  /** Locations to write into the edited model for onnxruntime (see {@link GraphEdit.externalLocations}). */
  readonly locations?: ReadonlyMap<string, string>;
}

type NodeFsSync = typeof import('node:fs');
type NodePath = typeof import('node:path');

/** `node:fs` and `node:path`, imported on use; a clear error outside Node. */
async function nodeModules(file: string): Promise<{ fs: NodeFsSync; path: NodePath }> {
  try {
    // Variable specifiers keep bundlers for the browser from following these imports.
    const fsName = 'node:fs';
    const pathName = 'node:path';
    const fs = (await import(/* @vite-ignore */ fsName)) as NodeFsSync;
    const path = (await import(/* @vite-ignore */ pathName)) as NodePath;
    return { fs, path };
  } catch (e) {
    throw new DictlearnError(
      file,
      `the model keeps its weights in external data files, which are read from the model's directory in Node only (${e instanceof Error ? e.message : String(e)}); in a browser pass their bytes as { externalData: { 'model.onnx.data': bytes } }`,
    );
  }
}

/**
 * Checks the external data files of a model loaded from `modelPath` and returns how to read them.
 * Each `location` must be a relative path inside the model's directory (as ONNX requires: a path
 * that climbs out with `..` or is absolute is refused, so a model file cannot make this read any
 * file on the machine); the file must exist and hold every initializer's byte range. Symbolic links
 * in the model's directory are followed (a Hugging Face cache stores its files as links into
 * `blobs/`). onnxruntime (≥ 1.24) refuses a data file whose real path leaves the folder it reads
 * from, so it is given the real paths: the folder that holds every data file's real path, and the
 * locations relative to it (written into the edited model; the model file itself is never changed).
 * Each failure is a `DictlearnError` naming the data file (or the model file) and the initializer.
 */
export async function nodeExternalData(graph: OnnxModel, modelPath: string): Promise<ExternalData> {
  const { fs, path } = await nodeModules(graph.file);
  const dir = path.resolve(path.dirname(modelPath));
  const sizes = new Map<string, number>();
  const resolved = new Map<string, string>();
  for (const t of externalInitializers(graph)) {
    const ref = t.externalData as NonNullable<OnnxInitializer['externalData']>;
    let full = resolved.get(ref.location);
    if (full === undefined) {
      full = path.resolve(dir, ref.location);
      const rel = path.relative(dir, full);
      if (path.isAbsolute(ref.location) || rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
        throw new DictlearnError(
          graph.file,
          `initializer '${t.name}' names the external data file '${ref.location}', outside the model's directory ${dir}; expected a file name relative to the model (refused: a model may not point at other files)`,
        );
      }
      resolved.set(ref.location, full);
    }
    let size = sizes.get(full);
    if (size === undefined) {
      try {
        const st = fs.statSync(full);
        if (!st.isFile()) throw new Error('not a regular file');
        size = st.size;
      } catch (e) {
        const missing = (e as { code?: string }).code === 'ENOENT';
        throw new DictlearnError(
          full,
          `${missing ? 'does not exist' : `cannot be read (${e instanceof Error ? e.message : String(e)})`}: ${graph.file} keeps initializer '${t.name}' in it; expected the external data file beside the model`,
        );
      }
      sizes.set(full, size);
    }
    checkRange(t, full, graph.file, size);
  }
  const read: ExternalDataReader = (location, offset, length) => {
    const full = resolved.get(location);
    if (full === undefined)
      throw new DictlearnError(graph.file, `no external data file '${location}' was checked`);
    const out = new Uint8Array(length);
    let fd: number | undefined;
    try {
      fd = fs.openSync(full, 'r');
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, out, done, length - done, offset + done);
        if (n === 0) throw new Error(`the file ends after ${offset + done} bytes`);
        done += n;
      }
    } catch (e) {
      throw new DictlearnError(
        full,
        `could not read ${length} bytes at offset ${offset}: ${e instanceof Error ? e.message : String(e)}`,
      );
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    return out;
  };
  // The real paths, and the deepest folder holding them all, for onnxruntime.
  const real = new Map<string, string>();
  for (const [location, full] of resolved) real.set(location, fs.realpathSync(full));
  let folder = fs.realpathSync(dir);
  const outside = (r: string) => {
    const rel = path.relative(folder, r);
    return rel.startsWith('..') || path.isAbsolute(rel);
  };
  for (const r of real.values()) {
    while (outside(r) && path.dirname(folder) !== folder) folder = path.dirname(folder);
  }
  const locations = new Map<string, string>();
  for (const [location, r] of real)
    locations.set(location, path.relative(folder, r).split(path.sep).join('/'));
  // onnxruntime's session config key kOrtSessionOptionsModelExternalInitializersFileFolderPath: the
  // folder that external data of a model created from bytes is read from.
  return {
    read,
    locations,
    sessionOptions: { extra: { session: { model_external_initializers_file_folder_path: folder } } },
  };
}

/**
 * External data given as bytes (a browser fetched the data files): `files` maps each `location`
 * the model names to the file's bytes. Checks that every initializer's file is there and holds its
 * byte range; onnxruntime receives the bytes through its `externalData` session option.
 */
export function memoryExternalData(
  graph: OnnxModel,
  files: Readonly<Record<string, Uint8Array>>,
): ExternalData {
  for (const t of externalInitializers(graph)) {
    const location = (t.externalData as NonNullable<OnnxInitializer['externalData']>).location;
    const bytes = Object.hasOwn(files, location) ? files[location] : undefined;
    if (!bytes) {
      throw new DictlearnError(
        location,
        `not among the external data files given (${Object.keys(files).join(', ') || 'none'}): ${graph.file} keeps initializer '${t.name}' in it`,
      );
    }
    checkRange(t, location, graph.file, bytes.byteLength);
  }
  const read: ExternalDataReader = (location, offset, length) =>
    files[location].slice(offset, offset + length);
  return {
    read,
    sessionOptions: { externalData: Object.entries(files).map(([path, data]) => ({ path, data })) },
  };
}

/** `base` with `extra` merged in: nested plain objects merged key by key, lists concatenated. */
export function mergeSessionOptions(
  base: Record<string, unknown>,
  extra: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    if (Array.isArray(b) && Array.isArray(v)) out[k] = [...b, ...v];
    else if (isPlainObject(b) && isPlainObject(v)) out[k] = mergeSessionOptions(b, v);
    else out[k] = v;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}
