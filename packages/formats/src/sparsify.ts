/**
 * EleutherAI sparsify: one folder per hookpoint holding `cfg.json` (`d_in`, `num_latents` or
 * `expansion_factor`, `k`, `activation`, `normalize_decoder`, …) and `sae.safetensors`
 * (`SparseCoder.save_to_disk`): `encoder.weight` [F, d], `encoder.bias` [F], `W_dec` [F, d],
 * `b_dec` [d], and `W_skip` [d, d] with a skip connection. Its encoder is TopK: ReLU, then the
 * k largest per row, on x − b_dec; that is dictlearn's `topk`.
 */
import { DictlearnError } from '@dictlearn/core';
import {
  type CfgFolderFormat,
  float32Notes,
  readCfgFolder,
  readCfgKeys,
  writeCfgFolder,
} from './cfg-folder.js';
import { nativeOf, paramsOf } from './families.js';
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
import type { HostTensor } from './torch.js';

/** sparsify's file names (inside a hookpoint's folder). */
export const SPARSIFY_FILES = {
  /** The config. */
  config: 'cfg.json',
  /** The weights. */
  weights: 'sae.safetensors',
} as const;

/** A sparsify hookpoint folder, for the shared cfg.json reader. */
const SPARSIFY_FOLDER: CfgFolderFormat = {
  label: 'sparsify',
  files: SPARSIFY_FILES,
  holds: 'a sparsify hookpoint folder holds cfg.json and sae.safetensors',
  runOfFolders: 'is a sparsify run with one dictionary per hookpoint',
};

/** The cfg.json keys sparsify needs (its width, `num_latents` or `expansion_factor`, is read below). */
const SPARSIFY_KEYS = { d_in: { kind: 'positive-int' }, k: { kind: 'positive-int' } } as const;

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
  const { cfg, values } = readCfgKeys(cfgRaw, cfgPath, 'sparsify', { d_in: SPARSIFY_KEYS.d_in });
  const d = values.d_in;
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
        ? d * (ef as number)
        : NaN;
  if (!Number.isInteger(F)) {
    throw new DictlearnError(
      cfgPath,
      `needs 'num_latents' or 'expansion_factor' (positive integers), got ${JSON.stringify(num)} and ${JSON.stringify(ef)}`,
    );
  }
  // Checked after the features sparsify's other keys refuse, as before (their errors say more).
  const { k } = readCfgKeys(cfg, cfgPath, 'sparsify', { k: SPARSIFY_KEYS.k }).values;
  const notes = float32Notes(tensors);
  const D = d;
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
 * Reads a sparsify sparse coder from its hookpoint folder (or its `sae.safetensors`). A folder of
 * hookpoint folders (a whole sparsify run) is refused with the hookpoints listed.
 */
export function readSparsify(path: string): Promise<ReadResult> {
  return readCfgFolder(path, SPARSIFY_FOLDER, decodeSparsify);
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
export function writeSparsify(parts: DictionaryParts, dir: string): Promise<string[]> {
  return writeCfgFolder(dir, SPARSIFY_FILES, encodeSparsify(parts, dir), { format: 'pt' });
}
