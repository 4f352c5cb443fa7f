/**
 * EleutherAI sparsify: one folder per hookpoint holding `cfg.json` (`d_in`, `num_latents` or
 * `expansion_factor`, `k`, `activation`, `normalize_decoder`, …) and `sae.safetensors`
 * (`SparseCoder.save_to_disk`): `encoder.weight` [F, d], `encoder.bias` [F], `W_dec` [F, d],
 * `b_dec` [d], and `W_skip` [d, d] with a skip connection. Its encoder is TopK: ReLU, then the
 * k largest per row, on x − b_dec; that is dictlearn's `topk`.
 */
import { DictlearnError, decodeSafetensors, encodeSafetensors } from '@dictlearn/core';
import { nativeOf, paramsOf } from './families.js';
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
import {
  type DictionaryParts,
  dictlearnBlock,
  type ReadResult,
  readDictlearnBlock,
  type SafetensorsFormatFiles,
  storedOf,
  takeTensor,
  transpose2d,
} from './parts.js';
import { hostTensors } from './saelens.js';
import type { HostTensor } from './torch.js';

/** sparsify's file names (inside a hookpoint's folder). */
export const SPARSIFY_FILES = {
  /** The config. */
  config: 'cfg.json',
  /** The weights. */
  weights: 'sae.safetensors',
} as const;

/**
 * Maps sparsify tensors and config onto a dictlearn `topk` dictionary. `files` = [weights,
 * config]. Refuses, naming the feature: transcoders, skip connections, the `groupmax`
 * activation and the experimental n-gram / embedding skips.
 */
export function decodeSparsify(
  tensors: Record<string, HostTensor>,
  cfgRaw: unknown,
  files: string[],
): ReadResult {
  const [source, cfgPath] = files;
  if (!cfgRaw || typeof cfgRaw !== 'object' || Array.isArray(cfgRaw)) {
    throw new DictlearnError(cfgPath, 'must hold a JSON object (sparsify cfg.json)');
  }
  const cfg = cfgRaw as Record<string, unknown>;
  const d = cfg.d_in;
  if (!Number.isInteger(d) || (d as number) <= 0) {
    throw new DictlearnError(cfgPath, `field 'd_in' must be a positive integer, got ${JSON.stringify(d)}`);
  }
  const activation = cfg.activation ?? 'topk';
  if (activation !== 'topk') {
    throw new DictlearnError(
      cfgPath,
      `sparsify activation '${String(activation)}' is not supported yet (supported: topk)`,
    );
  }
  for (const [flag, what] of [
    ['transcode', 'transcoders (transcode: true)'],
    ['skip_connection', 'skip connections (skip_connection: true, W_skip)'],
    ['embed_skip', 'embedding skip connections (embed_skip: true)'],
    ['gram_lookup', 'n-gram lookup tables (gram_lookup: true)'],
  ] as const) {
    if (cfg[flag] === true) throw new DictlearnError(cfgPath, `sparsify ${what} are not supported yet`);
  }
  if (tensors.W_skip)
    throw new DictlearnError(source, "sparsify skip connections (tensor 'W_skip') are not supported yet");
  const num = cfg.num_latents;
  const ef = cfg.expansion_factor;
  const F =
    Number.isInteger(num) && (num as number) > 0
      ? (num as number)
      : Number.isInteger(ef) && (ef as number) > 0
        ? (d as number) * (ef as number)
        : NaN;
  if (!Number.isInteger(F)) {
    throw new DictlearnError(
      cfgPath,
      `needs 'num_latents' or 'expansion_factor' (positive integers), got ${JSON.stringify(num)} and ${JSON.stringify(ef)}`,
    );
  }
  const k = cfg.k;
  if (!Number.isInteger(k) || (k as number) <= 0) {
    throw new DictlearnError(cfgPath, `field 'k' must be a positive integer, got ${JSON.stringify(k)}`);
  }
  const notes: string[] = [];
  for (const t of Object.values(tensors)) {
    if (t.dtype !== 'F32') {
      notes.push(`weights stored as ${t.dtype}, converted to float32`);
      break;
    }
  }
  const D = d as number;
  const take = (name: string, shape: number[]) => takeTensor(tensors, name, shape, source, ' (sparsify)');
  const n = {
    W_enc: transpose2d(take('encoder.weight', [F, D]), F, D),
    b_enc: take('encoder.bias', [F]),
    W_dec: take('W_dec', [F, D]),
    b_dec: take('b_dec', [D]),
  };
  const block = readDictlearnBlock(cfg);
  if (block && block.architecture.name !== 'topk') {
    throw new DictlearnError(
      cfgPath,
      `the dictlearn block names architecture '${block.architecture.name}', but sparsify stores topk`,
    );
  }
  const config = block ? block.architecture.config : { k };
  if (config.k !== k)
    throw new DictlearnError(cfgPath, `k is ${k} but the dictlearn block says ${JSON.stringify(config.k)}`);
  return {
    format: 'sparsify',
    files,
    formatArchitecture: 'topk',
    stored: storedOf(tensors),
    parts: {
      architecture: 'topk',
      config,
      packageName: block?.architecture.package,
      activationDim: D,
      dictSize: F,
      params: paramsOf('topk', n, D, F, source),
      scale: block?.scale ?? 1,
      training: {},
    },
    notes,
  };
}

/**
 * `path`'s weights and config: a hookpoint folder or its `sae.safetensors`. A folder of
 * hookpoint folders (a whole sparsify run) is refused with the hookpoints listed.
 */
async function locate(path: string): Promise<{ weights: string; config: string }> {
  const kind = await pathKind(path);
  if (kind === 'none') throw new DictlearnError(path, 'no such file or directory');
  const dir = kind === 'dir' ? path : dirname(path);
  const config = join(dir, SPARSIFY_FILES.config);
  if (kind === 'dir' && (await pathKind(config)) !== 'file') {
    const hooks: string[] = [];
    for (const name of await listDirectory(dir)) {
      if ((await pathKind(join(join(dir, name), SPARSIFY_FILES.config))) === 'file') hooks.push(name);
    }
    if (hooks.length) {
      throw new DictlearnError(
        path,
        `is a sparsify run with one dictionary per hookpoint; name one: ${hooks.map((h) => join(path, h)).join(', ')}`,
      );
    }
  }
  const weights = kind === 'dir' ? join(dir, SPARSIFY_FILES.weights) : path;
  for (const f of [weights, config])
    if ((await pathKind(f)) !== 'file')
      throw new DictlearnError(f, 'missing (a sparsify hookpoint folder holds cfg.json and sae.safetensors)');
  return { weights, config };
}

/** Reads a sparsify sparse coder from its hookpoint folder (or its `sae.safetensors`). */
export async function readSparsify(path: string): Promise<ReadResult> {
  const { weights, config } = await locate(path);
  const file = decodeSafetensors(await readFileBytes(weights), weights);
  return decodeSparsify(hostTensors(file.tensors), await readJson(config), [weights, config]);
}

/** The `cfg.json` and tensors sparsify would save for a `topk` dictionary. */
export function encodeSparsify(parts: DictionaryParts, where = 'sparsify'): SafetensorsFormatFiles {
  if (parts.architecture !== 'topk') {
    throw new DictlearnError(
      where,
      `architecture '${parts.architecture}' cannot be written as a sparsify sparse coder (sparsify's encoder is per-row TopK: only topk)`,
    );
  }
  const { activationDim: d, dictSize: F } = parts;
  const n = nativeOf(parts, where);
  const tensors = {
    'encoder.weight': { dtype: 'F32' as const, shape: [F, d], data: transpose2d(n.W_enc, d, F) },
    'encoder.bias': { dtype: 'F32' as const, shape: [F], data: n.b_enc! },
    W_dec: { dtype: 'F32' as const, shape: [F, d], data: n.W_dec },
    b_dec: { dtype: 'F32' as const, shape: [d], data: n.b_dec },
  };
  const config = {
    activation: 'topk',
    expansion_factor: Math.max(1, Math.round(F / d)),
    normalize_decoder: true,
    num_latents: F,
    k: parts.config.k,
    multi_topk: false,
    skip_connection: false,
    transcode: false,
    d_in: d,
    dictlearn: dictlearnBlock(parts),
  };
  return { config, tensors };
}

/**
 * Writes a `topk` dictionary as sparsify does, into the hookpoint folder `dir`: `cfg.json` and
 * `sae.safetensors` (with safetensors' `{"format": "pt"}` metadata, as `save_model` writes).
 */
export async function writeSparsify(parts: DictionaryParts, dir: string): Promise<string[]> {
  const { config, tensors } = encodeSparsify(parts, dir);
  await ensureDir(dir);
  const weights = join(dir, SPARSIFY_FILES.weights);
  await writeFileAtomic(weights, encodeSafetensors(tensors, { format: 'pt' }));
  const cfg = join(dir, SPARSIFY_FILES.config);
  await writeJson(cfg, config);
  return [weights, cfg];
}
