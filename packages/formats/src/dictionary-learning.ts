/**
 * dictionary_learning (DL, `saprmarks/dictionary_learning`): a folder with `ae.pt` (the
 * autoencoder's `state_dict()`, written with `torch.save`) and `config.json`
 * (`{ "trainer": { "dict_class", "trainer_class", "activation_dim", "dict_size", ... } }`).
 *
 * | DL class | key names (DL layout) | dictlearn architectures |
 * | --- | --- | --- |
 * | `AutoEncoder` | `bias` [d], `encoder.weight` [F, d], `encoder.bias` [F], `decoder.weight` [d, F] | standard, april-update, p-anneal, tied |
 * | `AutoEncoderTopK` | `encoder.*`, `decoder.weight`, `b_dec`, `k`, `threshold` | topk |
 * | `BatchTopKSAE` | as AutoEncoderTopK | batch-topk |
 * | `MatryoshkaBatchTopKSAE` | `W_enc` [d, F], `b_enc`, `W_dec` [F, d], `b_dec`, `k`, `threshold`, `group_sizes` | matryoshka-batch-topk |
 * | `JumpReluAutoEncoder` | `W_enc`, `b_enc`, `W_dec`, `b_dec`, `threshold` [F] | jumprelu |
 * | `GatedAutoEncoder` | `decoder_bias`, `encoder.weight`, `r_mag`, `gate_bias`, `mag_bias`, `decoder.weight` | gated, gated-anneal |
 */
import { DictlearnError } from '@dictlearn/core';
import { kindOf, type NativeParams, nativeOf, paramsOf } from './families.js';
import {
  basename,
  dirname,
  ensureDir,
  join,
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
  storedOf,
  takeIntScalar,
  takeTensor,
  transpose2d,
} from './parts.js';
import {
  readTorchStateDict,
  type TorchStateDict,
  type TorchTensorInput,
  writeTorchStateDict,
} from './torch.js';

/** The DL dictionary classes read and written. */
export const DL_CLASSES = [
  'AutoEncoder',
  'AutoEncoderTopK',
  'BatchTopKSAE',
  'MatryoshkaBatchTopKSAE',
  'JumpReluAutoEncoder',
  'GatedAutoEncoder',
] as const;

/** One of {@link DL_CLASSES}. */
export type DLClass = (typeof DL_CLASSES)[number];

/** DL's trainer class for each dictlearn architecture, and its dictionary class. */
const WRITE_CLASSES: Record<string, { dictClass: DLClass; trainerClass: string }> = {
  standard: { dictClass: 'AutoEncoder', trainerClass: 'StandardTrainer' },
  'april-update': { dictClass: 'AutoEncoder', trainerClass: 'StandardTrainerAprilUpdate' },
  'p-anneal': { dictClass: 'AutoEncoder', trainerClass: 'PAnnealTrainer' },
  tied: { dictClass: 'AutoEncoder', trainerClass: 'StandardTrainer' },
  topk: { dictClass: 'AutoEncoderTopK', trainerClass: 'TopKTrainer' },
  'batch-topk': { dictClass: 'BatchTopKSAE', trainerClass: 'BatchTopKTrainer' },
  'matryoshka-batch-topk': {
    dictClass: 'MatryoshkaBatchTopKSAE',
    trainerClass: 'MatryoshkaBatchTopKTrainer',
  },
  jumprelu: { dictClass: 'JumpReluAutoEncoder', trainerClass: 'JumpReluTrainer' },
  gated: { dictClass: 'GatedAutoEncoder', trainerClass: 'GatedSAETrainer' },
  'gated-anneal': { dictClass: 'GatedAutoEncoder', trainerClass: 'GatedAnnealTrainer' },
};

/** The dictlearn architecture of a DL dictionary class, refined by its trainer class. */
function architectureOf(dictClass: DLClass, trainerClass: unknown): string {
  for (const [arch, w] of Object.entries(WRITE_CLASSES)) {
    if (arch !== 'tied' && w.dictClass === dictClass && w.trainerClass === trainerClass) return arch;
  }
  return {
    AutoEncoder: 'standard',
    AutoEncoderTopK: 'topk',
    BatchTopKSAE: 'batch-topk',
    MatryoshkaBatchTopKSAE: 'matryoshka-batch-topk',
    JumpReluAutoEncoder: 'jumprelu',
    GatedAutoEncoder: 'gated',
  }[dictClass];
}

/** dictlearn config key ↔ DL trainer config key, per architecture (hyper-parameters only). */
const ANNEAL_KEYS: [string, string][] = [
  ['sparsityPenalty', 'initial_sparsity_penalty'],
  ['sparsityFunction', 'sparsity_function'],
  ['pStart', 'p_start'],
  ['pEnd', 'p_end'],
  ['annealStart', 'anneal_start'],
  ['annealEnd', 'anneal_end'],
  ['sparsityUpdates', 'n_sparsity_updates'],
  ['sparsityQueueLength', 'sparsity_queue_length'],
];
const TOPK_KEYS: [string, string][] = [
  ['k', 'k'],
  ['auxkAlpha', 'auxk_alpha'],
];
const BATCH_KEYS: [string, string][] = [
  ...TOPK_KEYS,
  ['thresholdBeta', 'threshold_beta'],
  ['thresholdStartStep', 'threshold_start_step'],
];
const CONFIG_KEYS: Record<string, [string, string][]> = {
  standard: [['l1Penalty', 'l1_penalty']],
  'april-update': [['l1Penalty', 'l1_penalty']],
  tied: [['l1Penalty', 'l1_penalty']],
  'p-anneal': ANNEAL_KEYS,
  topk: TOPK_KEYS,
  'batch-topk': BATCH_KEYS,
  'matryoshka-batch-topk': [...BATCH_KEYS, ['groups', 'group_sizes'], ['weights', 'group_weights']],
  jumprelu: [
    ['targetL0', 'target_l0'],
    ['bandwidth', 'bandwidth'],
    ['sparsityPenalty', 'sparsity_penalty'],
  ],
  gated: [['l1Penalty', 'l1_penalty']],
  'gated-anneal': ANNEAL_KEYS,
};

const isScalarish = (v: unknown) =>
  (typeof v === 'number' && Number.isFinite(v)) ||
  typeof v === 'string' ||
  (Array.isArray(v) && v.every((x) => typeof x === 'number' && Number.isFinite(x)));

/** The hyper-parameters DL's trainer config gives, in dictlearn names (others take defaults). */
function configFromTrainer(arch: string, trainer: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [ours, theirs] of CONFIG_KEYS[arch] ?? []) {
    const v = trainer[theirs];
    if (isScalarish(v)) out[ours] = v;
  }
  // DL's 'continuous' schedule updates p at every step of the annealing window.
  if (
    trainer.n_sparsity_updates === 'continuous' &&
    typeof trainer.anneal_start === 'number' &&
    typeof trainer.anneal_end === 'number'
  ) {
    out.sparsityUpdates = trainer.anneal_end - trainer.anneal_start + 1;
  }
  return out;
}

function trainerFromConfig(arch: string, config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [ours, theirs] of CONFIG_KEYS[arch] ?? [])
    if (config[ours] !== undefined) out[theirs] = config[ours];
  return out;
}

/** Which DL class a state dict is, from its keys, when there is no config.json to say. */
function inferClass(keys: Set<string>): { dictClass: DLClass; note?: string } | undefined {
  if (keys.has('decoder_bias') && keys.has('r_mag')) return { dictClass: 'GatedAutoEncoder' };
  if (keys.has('group_sizes')) return { dictClass: 'MatryoshkaBatchTopKSAE' };
  if (keys.has('W_enc') && keys.has('threshold') && !keys.has('k'))
    return { dictClass: 'JumpReluAutoEncoder' };
  if (keys.has('k') && keys.has('b_dec') && keys.has('encoder.weight')) {
    return {
      dictClass: 'AutoEncoderTopK',
      note: "no config.json says whether this is AutoEncoderTopK or BatchTopKSAE (same keys); read as AutoEncoderTopK (per-row top-k); pass dictClass 'BatchTopKSAE' (CLI: --dict-class) for the thresholded BatchTopK",
    };
  }
  if (keys.has('bias') && keys.has('encoder.weight') && keys.has('decoder.weight'))
    return { dictClass: 'AutoEncoder' };
  return undefined;
}

/** Options of {@link readDictionaryLearning}. */
export interface DictionaryLearningReadOptions {
  /** The DL class, when config.json is missing or to override it. */
  dictClass?: string;
}

/** The tensors of a DL class in dictlearn names, and its sizes. */
function nativeFromState(
  dictClass: DLClass,
  t: TorchStateDict['tensors'],
  source: string,
): { n: NativeParams; d: number; F: number; k?: number; groups?: number[] } {
  const shapeOf = (name: string) => {
    const s = t[name]?.shape;
    if (s?.length !== 2) {
      throw new DictlearnError(
        source,
        `${dictClass} needs a 2-d tensor '${name}' (the file has: ${Object.keys(t).join(', ')})`,
      );
    }
    return s;
  };
  const why = ` (${dictClass})`;
  switch (dictClass) {
    case 'AutoEncoder':
    case 'AutoEncoderTopK':
    case 'BatchTopKSAE': {
      const [F, d] = shapeOf('encoder.weight');
      const bDec = dictClass === 'AutoEncoder' ? 'bias' : 'b_dec';
      const n: NativeParams = {
        W_enc: transpose2d(takeTensor(t, 'encoder.weight', [F, d], source, why), F, d),
        b_enc: takeTensor(t, 'encoder.bias', [F], source, why),
        W_dec: transpose2d(takeTensor(t, 'decoder.weight', [d, F], source, why), d, F),
        b_dec: takeTensor(t, bDec, [d], source, why),
      };
      if (dictClass === 'AutoEncoder') return { n, d, F };
      n.threshold = takeTensor(t, 'threshold', [], source, why);
      return { n, d, F, k: takeIntScalar(t, 'k', source) };
    }
    case 'MatryoshkaBatchTopKSAE': {
      const [d, F] = shapeOf('W_enc');
      const g = t.group_sizes;
      if (g?.shape.length !== 1)
        throw new DictlearnError(source, `${dictClass} needs a 1-d tensor 'group_sizes'`);
      return {
        n: {
          W_enc: takeTensor(t, 'W_enc', [d, F], source, why),
          b_enc: takeTensor(t, 'b_enc', [F], source, why),
          W_dec: takeTensor(t, 'W_dec', [F, d], source, why),
          b_dec: takeTensor(t, 'b_dec', [d], source, why),
          threshold: takeTensor(t, 'threshold', [], source, why),
        },
        d,
        F,
        k: takeIntScalar(t, 'k', source),
        groups: Array.from(g.values),
      };
    }
    case 'JumpReluAutoEncoder': {
      const [d, F] = shapeOf('W_enc');
      return {
        n: {
          W_enc: takeTensor(t, 'W_enc', [d, F], source, why),
          b_enc: takeTensor(t, 'b_enc', [F], source, why),
          W_dec: takeTensor(t, 'W_dec', [F, d], source, why),
          b_dec: takeTensor(t, 'b_dec', [d], source, why),
          threshold: takeTensor(t, 'threshold', [F], source, why),
        },
        d,
        F,
      };
    }
    case 'GatedAutoEncoder': {
      const [F, d] = shapeOf('encoder.weight');
      return {
        n: {
          W_enc: transpose2d(takeTensor(t, 'encoder.weight', [F, d], source, why), F, d),
          b_gate: takeTensor(t, 'gate_bias', [F], source, why),
          r_mag: takeTensor(t, 'r_mag', [F], source, why),
          b_mag: takeTensor(t, 'mag_bias', [F], source, why),
          W_dec: transpose2d(takeTensor(t, 'decoder.weight', [d, F], source, why), d, F),
          b_dec: takeTensor(t, 'decoder_bias', [d], source, why),
        },
        d,
        F,
      };
    }
  }
}

/**
 * Maps a DL state dict (and its config.json, if any) onto a dictlearn dictionary. `files`
 * names the weights file first, then the config. Unsupported DL classes get an error naming
 * the class; a `dictlearn` block in the config (written by dictlearn) restores the exact
 * architecture and hyper-parameters.
 */
export function decodeDictionaryLearning(
  state: TorchStateDict,
  config: unknown,
  files: string[],
  options: DictionaryLearningReadOptions = {},
): ReadResult {
  const [source, configPath = source] = files;
  const notes: string[] = [];
  const trainer = ((config as { trainer?: unknown } | undefined)?.trainer ?? {}) as Record<string, unknown>;
  if (config !== undefined && (typeof trainer !== 'object' || trainer === null)) {
    throw new DictlearnError(configPath, "field 'trainer' must be an object");
  }
  let dictClass = options.dictClass ?? trainer.dict_class;
  if (dictClass === undefined) {
    const inferred = inferClass(new Set(Object.keys(state.tensors)));
    if (!inferred) {
      throw new DictlearnError(
        source,
        `cannot tell which dictionary_learning class this state dict is (keys: ${Object.keys(state.tensors).join(', ')}); put DL's config.json beside it`,
      );
    }
    dictClass = inferred.dictClass;
    if (inferred.note) notes.push(inferred.note);
  }
  if (typeof dictClass !== 'string' || !(DL_CLASSES as readonly string[]).includes(dictClass)) {
    throw new DictlearnError(
      options.dictClass ? 'dictClass' : configPath,
      `dictionary_learning class '${String(dictClass)}' is not supported yet (supported: ${DL_CLASSES.join(', ')})`,
    );
  }
  const cls = dictClass as DLClass;
  const { n, d, F, k, groups } = nativeFromState(cls, state.tensors, source);
  for (const [field, value] of [
    ['activation_dim', d],
    ['dict_size', F],
  ] as const) {
    if (trainer[field] !== undefined && trainer[field] !== value) {
      throw new DictlearnError(
        configPath,
        `field 'trainer.${field}' is ${JSON.stringify(trainer[field])} but ${source} holds ${value}`,
      );
    }
  }
  if (state.ignored.length) notes.push(`ignored non-tensor entries: ${state.ignored.join(', ')}`);
  const block = readDictlearnBlock(config);
  let architecture = architectureOf(cls, trainer.trainer_class);
  let archConfig = configFromTrainer(architecture, trainer);
  let packageName: string | undefined;
  let scale = 1;
  if (block) {
    if (WRITE_CLASSES[block.architecture.name]?.dictClass !== cls) {
      throw new DictlearnError(
        configPath,
        `the dictlearn block names architecture '${block.architecture.name}', which is not stored as ${cls}`,
      );
    }
    architecture = block.architecture.name;
    archConfig = block.architecture.config;
    packageName = block.architecture.package;
    scale = block.scale;
  } else {
    if (k !== undefined && kindOf(architecture) !== 'relu') archConfig.k = k;
    if (groups) archConfig.groups = groups;
    if (cls === 'JumpReluAutoEncoder') archConfig.applyBDecToInput = false;
    if (cls === 'AutoEncoderTopK' && n.threshold && n.threshold[0] >= 0) {
      notes.push(
        `AutoEncoderTopK's learned threshold (${n.threshold[0]}) is dropped: DL encodes with per-row top-k by default, as dictlearn's topk does`,
      );
    }
  }
  if (k !== undefined && archConfig.k !== undefined && archConfig.k !== k) {
    throw new DictlearnError(
      configPath,
      `k is ${JSON.stringify(archConfig.k)} in the config but ${k} in ${source}`,
    );
  }
  return {
    format: 'dictionary_learning',
    files,
    formatArchitecture: cls,
    stored: storedOf(state.tensors),
    parts: {
      architecture,
      config: archConfig,
      packageName,
      activationDim: d,
      dictSize: F,
      params: paramsOf(architecture, n, d, F, source),
      scale,
      training: {},
    },
    notes,
  };
}

/** Where `path` (an `ae.pt` file or a folder holding one) keeps its weights and config. */
async function locate(path: string): Promise<{ weights: string; config?: string }> {
  const kind = await pathKind(path);
  if (kind === 'none') throw new DictlearnError(path, 'no such file or directory');
  const weights = kind === 'dir' ? join(path, 'ae.pt') : path;
  if ((await pathKind(weights)) !== 'file') throw new DictlearnError(path, 'no ae.pt in this folder');
  const config = join(dirname(weights), 'config.json');
  return { weights, config: (await pathKind(config)) === 'file' ? config : undefined };
}

/**
 * Reads a DL dictionary: `path` is `ae.pt` or its folder; `config.json` beside it is read when
 * present. The pickle inside `ae.pt` runs under the restricted unpickler (nothing executes).
 */
export async function readDictionaryLearning(
  path: string,
  options: DictionaryLearningReadOptions = {},
): Promise<ReadResult> {
  const { weights, config } = await locate(path);
  const state = readTorchStateDict(await readFileBytes(weights), weights);
  const cfg = config ? await readJson(config) : undefined;
  return decodeDictionaryLearning(state, cfg, config ? [weights, config] : [weights], options);
}

/** What DL writes: the state dict saved as `ae.pt` and the `config.json`. */
export interface DictionaryLearningFiles {
  /** The state dict, in the class's `state_dict()` order. */
  state: Record<string, TorchTensorInput>;
  /** `config.json`: `{ trainer: {...}, dictlearn: {...} }`. */
  config: Record<string, unknown>;
}

/** The `ae.pt` state dict and `config.json` DL would write for a dictionary. */
export function encodeDictionaryLearning(
  parts: DictionaryParts,
  where = 'dictionary_learning',
): DictionaryLearningFiles {
  const w = WRITE_CLASSES[parts.architecture];
  if (!w) {
    throw new DictlearnError(
      where,
      `architecture '${parts.architecture}' cannot be written as a dictionary_learning file yet (supported: ${Object.keys(WRITE_CLASSES).join(', ')})`,
    );
  }
  if (parts.architecture === 'jumprelu' && parts.config.applyBDecToInput === true) {
    throw new DictlearnError(
      where,
      "architecture 'jumprelu' with applyBDecToInput cannot be written as dictionary_learning's JumpReluAutoEncoder: its state dict cannot say that b_dec is subtracted before encoding (SAELens can)",
    );
  }
  const { activationDim: d, dictSize: F } = parts;
  const n = nativeOf(parts, where);
  const f32 = (shape: number[], values: Float32Array): TorchTensorInput => ({ dtype: 'F32', shape, values });
  const k = (): TorchTensorInput => ({ dtype: 'I32', shape: [], values: [Number(parts.config.k)] });
  let state: Record<string, TorchTensorInput>;
  // Key order follows each DL class's registration order, as its state_dict() lists them.
  switch (w.dictClass) {
    case 'AutoEncoder':
      state = {
        bias: f32([d], n.b_dec),
        'encoder.weight': f32([F, d], transpose2d(n.W_enc, d, F)),
        'encoder.bias': f32([F], n.b_enc!),
        'decoder.weight': f32([d, F], transpose2d(n.W_dec, F, d)),
      };
      break;
    case 'AutoEncoderTopK':
    case 'BatchTopKSAE':
      state = {
        b_dec: f32([d], n.b_dec),
        k: k(),
        threshold: f32([], n.threshold ?? Float32Array.of(-1)),
        'decoder.weight': f32([d, F], transpose2d(n.W_dec, F, d)),
        'encoder.weight': f32([F, d], transpose2d(n.W_enc, d, F)),
        'encoder.bias': f32([F], n.b_enc!),
      };
      break;
    case 'MatryoshkaBatchTopKSAE':
      state = {
        W_enc: f32([d, F], n.W_enc),
        b_enc: f32([F], n.b_enc!),
        W_dec: f32([F, d], n.W_dec),
        b_dec: f32([d], n.b_dec),
        k: k(),
        threshold: f32([], n.threshold!),
        group_sizes: {
          dtype: 'I64',
          shape: [(parts.config.groups as number[]).length],
          values: parts.config.groups as number[],
        },
      };
      break;
    case 'JumpReluAutoEncoder':
      state = {
        W_enc: f32([d, F], n.W_enc),
        b_enc: f32([F], n.b_enc!),
        W_dec: f32([F, d], n.W_dec),
        b_dec: f32([d], n.b_dec),
        threshold: f32([F], n.threshold!),
      };
      break;
    case 'GatedAutoEncoder':
      state = {
        decoder_bias: f32([d], n.b_dec),
        r_mag: f32([F], n.r_mag!),
        gate_bias: f32([F], n.b_gate!),
        mag_bias: f32([F], n.b_mag!),
        'encoder.weight': f32([F, d], transpose2d(n.W_enc, d, F)),
        'decoder.weight': f32([d, F], transpose2d(n.W_dec, F, d)),
      };
      break;
  }
  const trainer = {
    trainer_class: w.trainerClass,
    dict_class: w.dictClass,
    ...trainerFromConfig(parts.architecture, parts.config),
    activation_dim: d,
    dict_size: F,
    layer: null,
    lm_name: null,
    wandb_name: w.trainerClass,
    submodule_name: null,
  };
  return { state, config: { trainer, dictlearn: dictlearnBlock(parts) } };
}

/**
 * Writes a dictionary as DL does: `dir/ae.pt` (torch zip, loadable with
 * `torch.load(path, weights_only=True)` and the class's `load_state_dict`) and `dir/config.json`.
 * Both atomically. Returns the files written.
 */
export async function writeDictionaryLearning(parts: DictionaryParts, dir: string): Promise<string[]> {
  const { state, config } = encodeDictionaryLearning(parts, dir);
  await ensureDir(dir);
  const weights = join(dir, 'ae.pt');
  await writeFileAtomic(weights, writeTorchStateDict(state, basename(weights).replace(/\.[^.]*$/, '')));
  const cfg = join(dir, 'config.json');
  await writeJson(cfg, config, 4);
  return [weights, cfg];
}
