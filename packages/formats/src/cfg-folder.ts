/**
 * The shared reader of SAELens and sparsify folders: a `cfg.json` beside a safetensors file. The
 * two formats differ only in their file names, their keys and what they refuse; this module finds
 * the files, reads them, and checks the `cfg.json` keys a format names in its key map.
 *
 * @module
 */
import { DictlearnError, decodeSafetensors, encodeSafetensors } from '@dictlearn/core';
import {
  dirname,
  ensureDir,
  join,
  listDirectory,
  pathKind,
  readFileBytes,
  readJson,
  writeFileAtomic,
  writeJson,
} from './files.js';
import type { ReadResult, SafetensorsFormatFiles } from './parts.js';
import type { HostTensor } from './torch.js';

/** The files of a folder format. */
export interface CfgFolderFiles {
  /** The config's name (`cfg.json`). */
  readonly config: string;
  /** The weights' name. */
  readonly weights: string;
}

/** What a folder format is called in errors, and its files. */
export interface CfgFolderFormat {
  /** The format's name in messages (`SAELens`, `sparsify`). */
  readonly label: string;
  /** Its file names. */
  readonly files: CfgFolderFiles;
  /** What the folder holds, for the error about a missing file. */
  readonly holds: string;
  /** A folder of such folders is one run (sparsify's one folder per hookpoint): refuse it listing them. */
  readonly runOfFolders?: string;
}

/** One key of `cfg.json` a format reads: its kind and, when optional, its default. */
export type CfgKey =
  | { readonly kind: 'positive-int'; readonly optional?: boolean }
  | { readonly kind: 'boolean'; readonly default: boolean };

/** The values a key map reads: a number per integer key (undefined when optional and absent), a boolean per boolean key. */
export type CfgValues<M extends Record<string, CfgKey>> = {
  [K in keyof M]: M[K] extends { kind: 'boolean' }
    ? boolean
    : M[K] extends { optional: true }
      ? number | undefined
      : number;
};

/** `path`'s weights and config: a folder of `format`, or its weights file. Missing files are named. */
export async function locateCfgFolder(
  path: string,
  format: CfgFolderFormat,
): Promise<{ weights: string; config: string }> {
  const kind = await pathKind(path);
  if (kind === 'none') throw new DictlearnError(path, 'no such file or directory');
  const dir = kind === 'dir' ? path : dirname(path);
  const config = join(dir, format.files.config);
  if (format.runOfFolders && kind === 'dir' && (await pathKind(config)) !== 'file') {
    const inner: string[] = [];
    for (const name of await listDirectory(dir)) {
      if ((await pathKind(join(join(dir, name), format.files.config))) === 'file') inner.push(name);
    }
    if (inner.length) {
      throw new DictlearnError(
        path,
        `${format.runOfFolders}; name one: ${inner.map((h) => join(path, h)).join(', ')}`,
      );
    }
  }
  const weights = kind === 'dir' ? join(dir, format.files.weights) : path;
  for (const f of [weights, config])
    if ((await pathKind(f)) !== 'file') throw new DictlearnError(f, `missing (${format.holds})`);
  return { weights, config };
}

/** Safetensors tensors as {@link HostTensor}s (float types as float32, ints as int32). */
export function hostTensors(
  tensors: Record<string, { dtype: string; shape: number[]; data: unknown }>,
): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const [k, t] of Object.entries(tensors)) {
    out[k] = {
      dtype: t.dtype as HostTensor['dtype'],
      shape: t.shape,
      values: t.data as HostTensor['values'],
    };
  }
  return out;
}

/**
 * Reads a folder of `format` (or its weights file) and hands the tensors and parsed `cfg.json` to
 * the format's `decode`, with `files` = [weights, config].
 */
export async function readCfgFolder(
  path: string,
  format: CfgFolderFormat,
  decode: (tensors: Record<string, HostTensor>, cfg: unknown, files: string[]) => ReadResult,
): Promise<ReadResult> {
  const { weights, config } = await locateCfgFolder(path, format);
  const file = decodeSafetensors(await readFileBytes(weights), weights);
  return decode(hostTensors(file.tensors), await readJson(config), [weights, config]);
}

/**
 * `cfg.json`'s object and the keys of `keys` checked: each wrong or missing key is a
 * `DictlearnError` naming the file, the key and the value found.
 */
export function readCfgKeys<M extends Record<string, CfgKey>>(
  raw: unknown,
  cfgPath: string,
  label: string,
  keys: M,
): { cfg: Record<string, unknown>; values: CfgValues<M> } {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DictlearnError(cfgPath, `must hold a JSON object (${label} cfg.json)`);
  }
  const cfg = raw as Record<string, unknown>;
  const values: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(keys)) {
    const v = cfg[key];
    if (spec.kind === 'boolean') {
      const b = v ?? spec.default;
      if (typeof b !== 'boolean')
        throw new DictlearnError(cfgPath, `field '${key}' must be true or false, got ${JSON.stringify(v)}`);
      values[key] = b;
    } else if (v === undefined && spec.optional) {
      values[key] = undefined;
    } else {
      if (!Number.isInteger(v) || (v as number) <= 0)
        throw new DictlearnError(
          cfgPath,
          `field '${key}' must be a positive integer, got ${JSON.stringify(v)}`,
        );
      values[key] = v;
    }
  }
  return { cfg, values: values as CfgValues<M> };
}

/**
 * Writes a folder of a format: the weights (with safetensors `metadata` when given), then
 * `cfg.json`, each atomically. Returns [weights, config].
 */
export async function writeCfgFolder(
  dir: string,
  files: CfgFolderFiles,
  { config, tensors }: SafetensorsFormatFiles,
  metadata?: Record<string, string>,
): Promise<string[]> {
  await ensureDir(dir);
  const weights = join(dir, files.weights);
  await writeFileAtomic(weights, encodeSafetensors(tensors, metadata));
  const cfg = join(dir, files.config);
  await writeJson(cfg, config);
  return [weights, cfg];
}

/** The note a reader adds when the weights are not float32 (they are converted). */
export function float32Notes(tensors: Record<string, HostTensor>): string[] {
  const other = Object.values(tensors).find((t) => t.dtype !== 'F32');
  return other ? [`weights stored as ${other.dtype}, converted to float32`] : [];
}
