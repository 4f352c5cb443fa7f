/**
 * SAELens: a folder with `cfg.json` and `sae_weights.safetensors` (`SAE.save_model`, loaded with
 * `SAE.load_from_disk`). Tensors in SAELens layout, which is dictlearn's: `W_enc` [d, F],
 * `b_enc` [F], `W_dec` [F, d], `b_dec` [d]; JumpReLU adds `threshold` [F] (training checkpoints
 * may hold `log_threshold`); gated has `b_gate`, `r_mag`, `b_mag` instead of `b_enc`.
 *
 * | SAELens `architecture` | dictlearn architectures |
 * | --- | --- |
 * | `standard` (`activation_fn_str` `relu`) | standard, april-update, p-anneal, tied |
 * | `topk` (or `standard` with `activation_fn_str` `topk`) | topk |
 * | `jumprelu` | jumprelu; batch-topk and matryoshka-batch-topk are written as it (SAELens saves its own BatchTopK SAEs as JumpReLU, the threshold repeated per feature) |
 * | `gated` | gated, gated-anneal |
 */
import { DictlearnError } from '@dictlearn/core';
import {
  type CfgFolderFormat,
  float32Notes,
  readCfgFolder,
  readCfgKeys,
  writeCfgFolder,
} from './cfg-folder.js';
import { foldBDecIntoBias, kindOf, type NativeParams, nativeOf, paramsOf } from './families.js';
import {
  type DictionaryParts,
  dictlearnBlock,
  type ReadResult,
  readDictlearnBlock,
  type SafetensorsFormatFiles,
  storedOf,
  takeTensor,
} from './parts.js';
import type { HostTensor } from './torch.js';

/** SAELens' file names. */
export const SAELENS_FILES = {
  /** The config. */
  config: 'cfg.json',
  /** The weights. */
  weights: 'sae_weights.safetensors',
} as const;

/** The SAELens architectures read. */
export const SAELENS_ARCHITECTURES = ['standard', 'topk', 'jumprelu', 'gated'] as const;

export { hostTensors } from './cfg-folder.js';

/** A SAELens folder, for the shared cfg.json reader. */
const SAELENS_FOLDER: CfgFolderFormat = {
  label: 'SAELens',
  files: SAELENS_FILES,
  holds: 'a SAELens folder holds cfg.json and sae_weights.safetensors',
};

/** The cfg.json keys every SAELens SAE needs, and their kinds. */
const SAELENS_KEYS = {
  d_in: { kind: 'positive-int' },
  d_sae: { kind: 'positive-int' },
  apply_b_dec_to_input: { kind: 'boolean', default: true },
} as const;

/**
 * Maps SAELens tensors and config onto a dictlearn dictionary. `files` = [weights, config].
 * Refuses what dictlearn cannot reproduce: run-time activation normalisation
 * (`constant_norm_rescale`, `layer_norm`), a fine-tuning scaling factor, other activation
 * functions and architectures (named in the error).
 */
export function decodeSaeLens(
  tensors: Record<string, HostTensor>,
  cfgRaw: unknown,
  files: string[],
): ReadResult {
  const [source, cfgPath] = files;
  const { cfg, values } = readCfgKeys(cfgRaw, cfgPath, 'SAELens', SAELENS_KEYS);
  const notes: string[] = [];
  const { d_in: d, d_sae: F, apply_b_dec_to_input: applyBDec } = values;
  let architecture = cfg.architecture ?? 'standard';
  const fnKwargs = (cfg.activation_fn_kwargs ?? {}) as Record<string, unknown>;
  const fn = cfg.activation_fn_str ?? cfg.activation_fn ?? 'relu';
  if (architecture === 'standard' && fn === 'topk') architecture = 'topk';
  else if (architecture === 'standard' && fn !== 'relu') {
    throw new DictlearnError(
      cfgPath,
      `SAELens activation function '${String(fn)}' is not supported yet (supported: relu, topk)`,
    );
  }
  if (
    typeof architecture !== 'string' ||
    !(SAELENS_ARCHITECTURES as readonly string[]).includes(architecture)
  ) {
    throw new DictlearnError(
      cfgPath,
      `SAELens architecture '${String(architecture)}' is not supported yet (supported: ${SAELENS_ARCHITECTURES.join(', ')})`,
    );
  }
  const norm = cfg.normalize_activations ?? 'none';
  if (norm === 'expected_average_only_in') {
    notes.push(
      "normalize_activations is 'expected_average_only_in': like SAELens' load_from_disk, no scaling factor is applied (SAELens folds one only for the releases it knows)",
    );
  } else if (norm !== 'none' && norm !== null) {
    throw new DictlearnError(
      cfgPath,
      `normalize_activations '${String(norm)}' (normalisation at run time) is not supported yet: dictlearn dictionaries work on raw activations`,
    );
  }
  if (cfg.finetuning_scaling_factor === true) {
    throw new DictlearnError(cfgPath, 'finetuning_scaling_factor is not supported yet');
  }
  if (cfg.reshape_activations === 'hook_z' || cfg.hook_z_reshaping_mode === true) {
    notes.push('a hook_z SAE: it encodes the heads flattened into one vector of d_in');
  }
  notes.push(...float32Notes(tensors));
  const take = (name: string, shape: number[]) =>
    takeTensor(tensors, name, shape, source, ` (SAELens ${architecture})`);
  const n: NativeParams = {
    W_enc: take('W_enc', [d, F]),
    W_dec: take('W_dec', [F, d]),
    b_dec: take('b_dec', [d]),
  };
  if (architecture === 'gated') {
    n.b_gate = take('b_gate', [F]);
    n.r_mag = take('r_mag', [F]);
    n.b_mag = take('b_mag', [F]);
  } else n.b_enc = take('b_enc', [F]);
  if (architecture === 'jumprelu') {
    if (tensors.threshold) n.threshold = take('threshold', [F]);
    else if (tensors.log_threshold) n.threshold = take('log_threshold', [F]).map((v) => Math.exp(v));
    else take('threshold', [F]);
  }
  // dictlearn subtracts b_dec before encoding; an SAE that does not is the same function with
  // b_dec·W folded into its encoder biases (JumpReLU keeps the switch as a config option).
  if (!applyBDec && architecture !== 'jumprelu') {
    if (architecture === 'gated') {
      const mag = n.W_enc.map((w, i) => w * Math.exp(n.r_mag![i % F]));
      n.b_gate = foldBDecIntoBias(n.b_gate!, n.b_dec, n.W_enc, d, F);
      n.b_mag = foldBDecIntoBias(n.b_mag!, n.b_dec, mag, d, F);
    } else n.b_enc = foldBDecIntoBias(n.b_enc!, n.b_dec, n.W_enc, d, F);
    notes.push(
      'apply_b_dec_to_input is false: b_dec·W_enc folded into the encoder bias (dictlearn subtracts b_dec before encoding)',
    );
  }
  const block = readDictlearnBlock(cfg);
  let arch: string = architecture === 'jumprelu' ? 'jumprelu' : architecture;
  let config: Record<string, unknown> = {};
  let packageName: string | undefined;
  let scale = 1;
  if (architecture === 'topk') {
    const k = cfg.k ?? fnKwargs.k;
    if (!Number.isInteger(k) || (k as number) <= 0) {
      throw new DictlearnError(cfgPath, `a topk SAE needs a positive integer 'k', got ${JSON.stringify(k)}`);
    }
    config.k = k;
  }
  if (architecture === 'jumprelu') config.applyBDecToInput = applyBDec;
  if (block) {
    const want = writeArchitecture(block.architecture.name);
    if (want !== architecture) {
      throw new DictlearnError(
        cfgPath,
        `the dictlearn block names architecture '${block.architecture.name}', which is not stored as SAELens '${architecture}'`,
      );
    }
    arch = block.architecture.name;
    config = block.architecture.config;
    packageName = block.architecture.package;
    scale = block.scale;
  }
  return {
    format: 'saelens',
    files,
    formatArchitecture: architecture,
    stored: storedOf(tensors),
    parts: {
      architecture: arch,
      config,
      packageName,
      activationDim: d,
      dictSize: F,
      params: paramsOf(arch, n, d, F, source),
      scale,
      training: {},
    },
    notes,
  };
}

/** The SAELens architecture a dictlearn architecture is written as. */
function writeArchitecture(arch: string): string | undefined {
  const kind = kindOf(arch);
  if (kind === 'relu') return 'standard';
  if (kind === 'topk') return 'topk';
  if (kind === 'threshold') return 'jumprelu';
  if (kind === 'gated') return 'gated';
  return undefined;
}

/** Reads a SAELens SAE from its folder (or its `sae_weights.safetensors`). */
export function readSaeLens(path: string): Promise<ReadResult> {
  return readCfgFolder(path, SAELENS_FOLDER, decodeSaeLens);
}

/** The `cfg.json` and tensors SAELens would save for a dictionary. */
export function encodeSaeLens(parts: DictionaryParts, where = 'saelens'): SafetensorsFormatFiles {
  const architecture = writeArchitecture(parts.architecture);
  if (!architecture) {
    throw new DictlearnError(
      where,
      `architecture '${parts.architecture}' cannot be written as a SAELens SAE yet`,
    );
  }
  const { activationDim: d, dictSize: F } = parts;
  const n = nativeOf(parts, where, true);
  const tensors: Record<string, Float32Array> = { W_enc: n.W_enc, W_dec: n.W_dec, b_dec: n.b_dec };
  const shapes: Record<string, number[]> = { W_enc: [d, F], W_dec: [F, d], b_dec: [d] };
  if (architecture === 'gated') {
    Object.assign(tensors, { b_gate: n.b_gate!, r_mag: n.r_mag!, b_mag: n.b_mag! });
    Object.assign(shapes, { b_gate: [F], r_mag: [F], b_mag: [F] });
  } else {
    tensors.b_enc = n.b_enc!;
    shapes.b_enc = [F];
  }
  if (architecture === 'jumprelu') {
    tensors.threshold = n.threshold!;
    shapes.threshold = [F];
  }
  const applyBDec = parts.architecture === 'jumprelu' ? parts.config.applyBDecToInput === true : true;
  const meta = {
    model_name: null,
    hook_name: null,
    model_class_name: null,
    hook_layer: null,
    hook_head_index: null,
    model_from_pretrained_kwargs: null,
    prepend_bos: null,
    exclude_special_tokens: null,
    neuronpedia_id: null,
    context_size: null,
    seqpos_slice: null,
    dataset_path: null,
  };
  // SAELens 6 reads `meta`; SAELens 5 reads the same fields flat and `activation_fn_str`. Both
  // drop keys they do not know, so one file serves both (and carries the dictlearn block).
  const config: Record<string, unknown> = {
    architecture,
    d_in: d,
    d_sae: F,
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: applyBDec,
    normalize_activations: 'none',
    reshape_activations: 'none',
    ...(architecture === 'topk' ? { k: parts.config.k } : {}),
    meta,
    activation_fn_str: architecture === 'topk' ? 'topk' : 'relu',
    activation_fn_kwargs: architecture === 'topk' ? { k: parts.config.k } : {},
    finetuning_scaling_factor: false,
    ...Object.fromEntries(
      Object.entries(meta).filter(([k]) => k !== 'model_class_name' && k !== 'exclude_special_tokens'),
    ),
    dataset_trust_remote_code: false,
    sae_lens_training_version: null,
    dictlearn: dictlearnBlock(parts),
  };
  return {
    config,
    tensors: Object.fromEntries(
      Object.entries(tensors).map(([k, v]) => [k, { dtype: 'F32' as const, shape: shapes[k], data: v }]),
    ),
  };
}

/** Writes a dictionary as SAELens does: `dir/cfg.json` and `dir/sae_weights.safetensors`, atomically. */
export function writeSaeLens(parts: DictionaryParts, dir: string): Promise<string[]> {
  return writeCfgFolder(dir, SAELENS_FILES, encodeSaeLens(parts, dir));
}
