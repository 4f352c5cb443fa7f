import { readFile } from 'node:fs/promises';
import { closestName } from '@dictlearn/core';
import { parse as parseYaml } from 'yaml';

/** One trainer of a run config. */
export interface TrainerConfig {
  /** Architecture registry name (`standard`, `april-update`, `tied`, ...). */
  architecture: string;
  /** The architecture's hyper-parameters (e.g. `{ l1Penalty: 0.1 }`). */
  config?: Record<string, unknown>;
  /** Features F (default 4·d, d the width of the data: read from the file header for file sources). */
  dictSize?: number;
  /** Name (default: architecture and hyper-parameters). */
  name?: string;
  /** Learning rate (default: the architecture's). */
  lr?: number;
  /** lr warm-up steps. */
  warmupSteps?: number;
  /** Sparsity warm-up steps. */
  sparsityWarmupSteps?: number;
  /** Resampling period (null = never). */
  resampleSteps?: number | null;
  /** lr decay start. */
  decayStart?: number;
  /** Init seed. */
  seed?: number;
  /** Model sources: the hook it trains on (default: a copy of the trainer for every hook). */
  hook?: string;
}

/** A whole `dictlearn train` run, from a config file and/or flags. */
export interface RunConfig {
  /** Activation source: `type` is a registered source (`synthetic`, `npy`, `safetensors`), the rest its options. */
  source: { type: string } & Record<string, unknown>;
  /** Trainers fed the same batches. */
  trainers: TrainerConfig[];
  /**
   * Optimisation steps; 0 (the default) means: 1000 for sources that never run out (synthetic),
   * `⌊epochs · rows / batchSize⌋` for file sources. With both `steps` and `epochs`, the run stops at
   * whichever comes first.
   */
  steps: number;
  /** Passes over a file source's rows, each reshuffled (file sources only; default: as many as `steps` needs, or 1). */
  epochs?: number;
  /** Held-out activation files the end-of-run table is scored on (same format as the training files). */
  evalData?: string[];
  /** Refuse a run whose estimated memory exceeds this many GB (default: the memory free now). */
  maxMemory?: number;
  /** Rows per batch. */
  batchSize: number;
  /** Backend (`auto`, `cpu`, ...). */
  backend: string;
  /** Output directory. */
  out?: string;
  /** Log every N steps. */
  logEvery: number;
  /** Checkpoint steps. */
  saveSteps: number[];
  /** Resume from the latest checkpoint in `out`. */
  resume: boolean;
  /** Normalise activations (REFERENCE). */
  normalize: boolean;
  /** Shuffle through an ActivationBuffer of this many rows (0 = read the source directly). */
  bufferRows: number;
  /** Batches used for the final evaluation table. */
  evalBatches: number;
}

/** The problem with a config, naming the field. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Reads a JSON or YAML run config (by extension; YAML is a superset of JSON anyway). */
export async function readConfigFile(path: string): Promise<Partial<RunConfig>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `cannot read config file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const json = path.endsWith('.json');
  // JSON nesting is bounded before parsing (a cheap scan); YAML is bounded after, and a parser
  // that runs out of stack on the way is reported as too deep, not as a crash.
  if (json) {
    const deep = jsonDepthBeyond(text, MAX_CONFIG_DEPTH);
    if (deep !== undefined) {
      throw new ConfigError(
        `config file '${path}' nests more than ${MAX_CONFIG_DEPTH} levels deep (line ${deep}); a run config needs at most 4`,
      );
    }
  }
  let value: unknown;
  try {
    value = json ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    const message = (e as Error).message ?? String(e);
    if (e instanceof RangeError || /Maximum call stack/.test(message)) {
      throw new ConfigError(
        `config file '${path}' nests too deeply to read (more than ${MAX_CONFIG_DEPTH} levels); a run config needs at most 4`,
      );
    }
    throw new ConfigError(
      `config file '${path}' is not valid ${json ? 'JSON' : 'YAML'}: ${message.split('\n')[0]}`,
    );
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`config file '${path}' must hold an object (source, trainers, steps, ...)`);
  }
  const deep = pathBeyondDepth(value, MAX_CONFIG_DEPTH);
  if (deep !== undefined) {
    throw new ConfigError(
      `config file '${path}': '${deep}' nests more than ${MAX_CONFIG_DEPTH} levels deep; a run config needs at most 4`,
    );
  }
  // `source: npy` (a string) means `{ type: npy }`: the command line merges this object with its
  // flags before resolveConfig sees it, and a string there used to fall back to synthetic data.
  const config = value as Record<string, unknown>;
  if (config.source !== undefined) config.source = normalizeSource(config.source, `${path}: source`);
  return value as Partial<RunConfig>;
}

/** Deepest nesting a config file may have (a run config needs 4: trainers[0].config.x). */
export const MAX_CONFIG_DEPTH = 32;

/** The line where JSON `text` first nests deeper than `max` brackets (outside strings), or undefined. */
function jsonDepthBeyond(text: string, max: number): number | undefined {
  let depth = 0;
  let line = 1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) line++;
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) return line;
    } else if (c === 125 || c === 93) depth--;
  }
  return undefined;
}

/** The path (`a.b[0]...`, cut short) of a value nested deeper than `max` levels, or undefined. Iterative. */
function pathBeyondDepth(root: unknown, max: number): string | undefined {
  const stack: { v: unknown; path: string; depth: number }[] = [{ v: root, path: '', depth: 0 }];
  const seen = new Set<unknown>(); // YAML anchors may share (or cycle through) objects
  while (stack.length > 0) {
    const { v, path, depth } = stack.pop()!;
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    if (depth >= max) return path.length > 60 ? `${path.slice(0, 60)}…` : path;
    seen.add(v);
    for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
      const step = Array.isArray(v) ? `[${k}]` : path ? `.${k}` : k;
      stack.push({ v: child, path: path.length > 80 ? path : path + step, depth: depth + 1 });
    }
  }
  return undefined;
}

/** A value for an error message: JSON, cut to 60 characters (never throws, whatever it holds). */
export function show(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v) ?? String(v);
  } catch {
    text = Array.isArray(v) ? 'an array' : typeof v;
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Names people bring from other trainers (dictionary_learning, SAELens), by their normalised form. */
const ALIASES: Record<string, string> = {
  learningrate: 'lr',
  dictionarysize: 'dictSize',
  expansionfactor: 'dictSize',
  dsae: 'dictSize',
  l1coefficient: 'config',
  warmup: 'warmupSteps',
  sparsitywarmup: 'sparsityWarmupSteps',
  resampleevery: 'resampleSteps',
  totalsteps: 'steps',
  trainingsteps: 'steps',
  batch: 'batchSize',
  device: 'backend',
  outdir: 'out',
  savedir: 'out',
};

function unknownField(field: string, key: string, known: readonly string[]): ConfigError {
  const near = closestName(key, known, ALIASES);
  return new ConfigError(
    `unknown field '${field}'${near ? ` (did you mean '${near}'?)` : ''} (known: ${known.join(', ')})`,
  );
}

/** The range of each numeric setting: the flag, the config field, integer or not, and bounds. */
interface Bound {
  /** Config field name (in messages about config files). */
  field: string;
  integer: boolean;
  min: number;
  max: number;
  /** The minimum itself is excluded (a positive number). */
  minExclusive?: boolean;
}

/**
 * Bounds of the numeric flags. They refuse nonsense early with the flag named (a dictionary of
 * 10¹² features); whether a sane-looking run fits in memory is checked separately, from an estimate.
 */
export const FLAG_BOUNDS: Readonly<Record<string, Bound>> = {
  dim: { field: 'source.dim', integer: true, min: 1, max: 2 ** 20 },
  'num-features': { field: 'source.numFeatures', integer: true, min: 1, max: 2 ** 26 },
  'mean-active': { field: 'source.meanActive', integer: false, min: 0, max: 2 ** 26, minExclusive: true },
  noise: { field: 'source.noise', integer: false, min: 0, max: 1e6 },
  'data-seed': { field: 'source.seed', integer: true, min: 0, max: Number.MAX_SAFE_INTEGER },
  'dict-size': { field: 'dictSize', integer: true, min: 1, max: 2 ** 31 },
  steps: { field: 'steps', integer: true, min: 1, max: 1e12 },
  epochs: { field: 'epochs', integer: true, min: 1, max: 1e9 },
  'batch-size': { field: 'batchSize', integer: true, min: 1, max: 2 ** 24 },
  lr: { field: 'lr', integer: false, min: 0, max: 1e3, minExclusive: true },
  l1: { field: 'config.l1Penalty', integer: false, min: 0, max: 1e6 },
  k: { field: 'config.k', integer: true, min: 1, max: 2 ** 31 },
  'aux-k': { field: 'config.auxK', integer: true, min: 1, max: 2 ** 31 },
  'aux-k-alpha': { field: 'config.auxkAlpha', integer: false, min: 0, max: 1e6 },
  'dead-tokens': { field: 'config.deadTokens', integer: true, min: 1, max: Number.MAX_SAFE_INTEGER },
  'target-l0': { field: 'config.targetL0', integer: false, min: 0, max: 2 ** 31, minExclusive: true },
  'sparsity-penalty': { field: 'config.sparsityPenalty', integer: false, min: 0, max: 1e6 },
  bandwidth: { field: 'config.bandwidth', integer: false, min: 0, max: 1e6, minExclusive: true },
  'p-end': { field: 'config.pEnd', integer: false, min: 0, max: 1, minExclusive: true },
  'warmup-steps': { field: 'warmupSteps', integer: true, min: 0, max: 1e12 },
  'sparsity-warmup-steps': { field: 'sparsityWarmupSteps', integer: true, min: 0, max: 1e12 },
  'resample-steps': { field: 'resampleSteps', integer: true, min: 1, max: 1e12 },
  seed: { field: 'seed', integer: true, min: 0, max: Number.MAX_SAFE_INTEGER },
  'buffer-rows': { field: 'bufferRows', integer: true, min: 0, max: 2 ** 31 },
  'log-every': { field: 'logEvery', integer: true, min: 0, max: 1e12 },
  'save-steps': { field: 'saveSteps', integer: true, min: 1, max: 1e12 },
  'max-memory': { field: 'maxMemory', integer: false, min: 0, max: 1e6, minExclusive: true },
  batches: { field: 'batches', integer: true, min: 1, max: 1e9 },
  contexts: { field: 'contexts', integer: true, min: 1, max: 1e9 },
};

function describeBound(b: Bound): string {
  const kind = b.integer ? 'an integer' : 'a number';
  if (b.minExclusive) return `${kind} > ${b.min} and ≤ ${b.max}`;
  return `${kind} from ${b.min} to ${b.max}`;
}

function inBound(v: unknown, b: Bound): v is number {
  return (
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (!b.integer || Number.isSafeInteger(v)) &&
    (b.minExclusive ? v > b.min : v >= b.min) &&
    v <= b.max
  );
}

/** Parses the value of a numeric flag within its bounds ({@link FLAG_BOUNDS}); the error names the flag. */
export function flagNumber(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const b = FLAG_BOUNDS[flag];
  const v = text.trim() === '' ? Number.NaN : Number(text);
  if (!b) {
    if (!Number.isFinite(v)) throw new ConfigError(`--${flag} must be a number, got '${text}'`);
    return v;
  }
  if (!inBound(v, b)) throw new ConfigError(`--${flag} must be ${describeBound(b)}, got '${text}'`);
  return v;
}

/** Checks a config field against the bounds of its flag; the error names the field. */
function fieldNumber(name: string, v: unknown, flag: string): number {
  const b = FLAG_BOUNDS[flag];
  if (!inBound(v, b)) throw new ConfigError(`'${name}' must be ${describeBound(b)}, got ${show(v)}`);
  return v;
}

/**
 * One field of a run config: the single description of it that validation reads (`kind`, and the
 * bounds of `flag`) and the generated reference (`apps/docs/guides/config-reference.md`) prints.
 */
export interface ConfigField {
  /** The key in the config file. */
  key: string;
  /** What validation accepts (the numeric bounds come from `flag`'s entry in {@link FLAG_BOUNDS}). */
  kind: 'integer' | 'number' | 'boolean' | 'string' | 'paths' | 'integers' | 'object' | 'trainers' | 'source';
  /** The default, as the reference prints it (undefined: required or none). */
  default?: string;
  /** The command-line flag that sets (or overrides) it. */
  flag?: string;
  /** One sentence for the reference. */
  description: string;
}

/** The top-level fields of a run config, in the reference's order. */
export const RUN_FIELDS: readonly ConfigField[] = [
  {
    key: 'source',
    kind: 'source',
    default: '{ type: synthetic }',
    flag: 'source',
    description:
      "Where activations come from: `{ type, ...options }` (below), or just the type's name, `source: npy` meaning `{ type: npy }`.",
  },
  {
    key: 'trainers',
    kind: 'trainers',
    flag: 'arch',
    description:
      'The dictionaries trained on the same batches (required; the flags build one per architecture and swept value).',
  },
  {
    key: 'steps',
    kind: 'integer',
    default: '0',
    flag: 'steps',
    description:
      'Optimisation steps; 0 means 1000 for a synthetic source, one pass (or `epochs` passes) for file and model sources.',
  },
  {
    key: 'epochs',
    kind: 'integer',
    flag: 'epochs',
    description:
      "Passes over a file source's rows, each reshuffled; with `steps` too, the run stops at whichever comes first.",
  },
  {
    key: 'batchSize',
    kind: 'integer',
    default: '4096',
    flag: 'batch-size',
    description: 'Rows per training batch.',
  },
  {
    key: 'backend',
    kind: 'string',
    default: 'auto',
    flag: 'backend',
    description: 'Backend name: `auto` (cuda > webgpu > cpu), `cpu`, `webgpu`, `cuda`.',
  },
  {
    key: 'out',
    kind: 'string',
    flag: 'out',
    description:
      'Output folder: the dictionaries, `checkpoints/`, `log.jsonl`, `run.json` (without it nothing is saved).',
  },
  {
    key: 'logEvery',
    kind: 'integer',
    default: '100',
    flag: 'log-every',
    description: 'Log every N steps (0: never).',
  },
  {
    key: 'saveSteps',
    kind: 'integers',
    default: '[]',
    flag: 'save-steps',
    description: 'Steps after which a checkpoint is written (needs `out`).',
  },
  {
    key: 'resume',
    kind: 'boolean',
    default: 'false',
    flag: 'resume',
    description: 'Continue from the newest checkpoint in `out`.',
  },
  {
    key: 'normalize',
    kind: 'boolean',
    default: 'false',
    flag: 'normalize',
    description:
      'Train on activations scaled to mean squared norm d, the scale folded back into the saved dictionary.',
  },
  {
    key: 'bufferRows',
    kind: 'integer',
    default: '0',
    flag: 'buffer-rows',
    description:
      'Shuffle through an ActivationBuffer of this many rows (0: read the source directly; model sources default to 256 MiB of rows).',
  },
  {
    key: 'evalBatches',
    kind: 'integer',
    default: '4',
    description: 'Batches the end-of-run table is scored on.',
  },
  {
    key: 'evalData',
    kind: 'paths',
    flag: 'eval-data',
    description:
      'Held-out activation files (same format and width as the training files) the end-of-run table is scored on.',
  },
  {
    key: 'maxMemory',
    kind: 'number',
    flag: 'max-memory',
    description: 'Refuse a run whose estimated memory exceeds this many GB (default: the memory free now).',
  },
];

/** The fields of one trainer (`trainers[i]`), in the reference's order. */
export const TRAINER_FIELDS: readonly ConfigField[] = [
  {
    key: 'architecture',
    kind: 'string',
    flag: 'arch',
    description:
      'A registered architecture: `standard`, `april-update`, `tied`, `p-anneal`, `topk`, `batch-topk`, `matryoshka`, `jumprelu`, `gated`, `gated-anneal`, `lista`, `blockdiag` (required).',
  },
  {
    key: 'config',
    kind: 'object',
    default: '{}',
    flag: 'set',
    description:
      "The architecture's hyper-parameters (e.g. `{ l1Penalty: 0.1 }`, `{ k: 32 }`); unknown keys are refused by the architecture.",
  },
  {
    key: 'dictSize',
    kind: 'integer',
    default: '4·d',
    flag: 'dict-size',
    description: "Features F (d is the data's width, read from the file header for file sources).",
  },
  {
    key: 'name',
    kind: 'string',
    flag: undefined,
    description:
      "Folder name of this trainer's output (letters, digits, `. _ = -`; default: architecture and hyper-parameters).",
  },
  { key: 'lr', kind: 'number', default: "the architecture's", flag: 'lr', description: 'Learning rate.' },
  {
    key: 'warmupSteps',
    kind: 'integer',
    default: "the architecture's",
    flag: 'warmup-steps',
    description: 'Linear learning-rate warm-up steps.',
  },
  {
    key: 'sparsityWarmupSteps',
    kind: 'integer',
    default: "the architecture's",
    flag: 'sparsity-warmup-steps',
    description: 'Steps over which the sparsity penalty ramps from 0 to its full weight.',
  },
  {
    key: 'resampleSteps',
    kind: 'integer',
    default: 'null (never)',
    flag: 'resample-steps',
    description: 'Resample dead features every N steps (`null`: never).',
  },
  {
    key: 'decayStart',
    kind: 'integer',
    flag: undefined,
    description: 'Step from which the learning rate decays linearly to 0 at the last step.',
  },
  {
    key: 'seed',
    kind: 'integer',
    default: '0',
    flag: 'seed',
    description: 'Seed of the initial dictionary.',
  },
  {
    key: 'hook',
    kind: 'string',
    flag: undefined,
    description:
      'Model sources: the hook this trainer trains on (default: a copy of the trainer for every hook).',
  },
];

/** One option of a source type (validated by the source's factory; a test checks the two list the same keys). */
export interface SourceOption {
  /** The key in `source: { ... }`. */
  key: string;
  /** Its type, as the reference prints it. */
  type: string;
  /** The default, as the reference prints it (undefined: required or none). */
  default?: string;
  /** The flag that sets it. */
  flag?: string;
  /** One sentence for the reference. */
  description: string;
}

/** Options shared by the `npy` and `safetensors` sources. */
const FILE_OPTIONS: SourceOption[] = [
  {
    key: 'files',
    type: 'paths',
    flag: 'data',
    description: 'Activation files or folders of them, `[rows, d]` (more axes: rows of the last); required.',
  },
  {
    key: 'dim',
    type: 'integer',
    default: "the first file's",
    description: 'Expected width d; every file must have it.',
  },
  {
    key: 'epochs',
    type: 'integer or Infinity',
    default: '1',
    description: 'Passes over the files (the run-level `epochs` sets it).',
  },
  {
    key: 'shuffle',
    type: 'boolean',
    default: 'true (in `train`)',
    description: 'Reshuffle the rows every epoch, across files; `false` reads in file order.',
  },
  { key: 'seed', type: 'integer', default: '0', flag: 'data-seed', description: 'Seed of the shuffle.' },
  {
    key: 'readBytes',
    type: 'integer',
    default: '16 MiB',
    description: 'Bytes held at once: one shuffle chunk and one read.',
  },
  {
    key: 'stripeBytes',
    type: 'integer',
    default: '64 KiB',
    description: 'The unit the shuffle permutes across files.',
  },
];

/** The options of each source type, in the reference's order. */
export const SOURCE_OPTIONS: Readonly<Record<string, readonly SourceOption[]>> = {
  synthetic: [
    { key: 'dim', type: 'integer', default: '256', flag: 'dim', description: 'Width d of the activations.' },
    {
      key: 'numFeatures',
      type: 'integer',
      default: '512',
      flag: 'num-features',
      description: 'Number of true (ground-truth) features.',
    },
    {
      key: 'meanActive',
      type: 'number',
      default: '5',
      flag: 'mean-active',
      description: 'Mean number of active features per sample.',
    },
    {
      key: 'decay',
      type: 'number',
      default: '0.99',
      description: 'Firing probabilities decay geometrically by this factor from feature to feature.',
    },
    {
      key: 'noise',
      type: 'number',
      default: '0.1',
      flag: 'noise',
      description: 'Standard deviation of the Gaussian noise added to each sample.',
    },
    {
      key: 'correlation',
      type: 'number',
      default: '0',
      description: "Strength of the correlation between features' firing.",
    },
    {
      key: 'correlationRank',
      type: 'integer',
      default: '4',
      description: 'Number of random factors that shape the correlation between features.',
    },
    {
      key: 'coefficients',
      type: '`uniform` or `uniform-product`',
      default: 'uniform',
      description: "How the active features' coefficients are drawn.",
    },
    {
      key: 'seed',
      type: 'integer',
      default: '0',
      flag: 'data-seed',
      description: 'Seed of the features and the samples.',
    },
    {
      key: 'threads',
      type: 'integer',
      default: 'the cores, at most 4',
      description: 'Threads that draw a batch (Node). The samples do not depend on it.',
    },
  ],
  npy: FILE_OPTIONS,
  safetensors: [
    ...FILE_OPTIONS,
    {
      key: 'key',
      type: 'string',
      default: 'the only tensor',
      description: 'Name of the tensor to read in each file.',
    },
  ],
  model: [
    {
      key: 'model',
      type: 'path',
      flag: 'model',
      description: 'An ONNX export of a causal language model (required).',
    },
    {
      key: 'hooks',
      type: 'strings',
      flag: 'hook',
      description:
        'Module paths whose outputs are the activations, e.g. `gpt_neox.layers.1` (required; `hook` is accepted too).',
    },
    {
      key: 'text',
      type: 'paths',
      flag: 'text',
      description: 'Text files (plain text or JSONL) to run through the model (required).',
    },
    {
      key: 'tokenizer',
      type: 'path',
      default: 'tokenizer.json beside the model',
      flag: 'tokenizer',
      description: 'The tokenizer file.',
    },
    {
      key: 'format',
      type: '`text` or `jsonl`',
      default: 'by extension',
      description: 'How the text files are read.',
    },
    {
      key: 'textField',
      type: 'string',
      default: 'text',
      description: 'The field of each JSONL record that holds the text.',
    },
    {
      key: 'contextLength',
      type: 'integer',
      default: '128',
      flag: 'context-length',
      description: 'Tokens per context.',
    },
    {
      key: 'forwardBatch',
      type: 'integer',
      default: '512',
      flag: 'forward-batch',
      description: 'Contexts per forward pass.',
    },
    {
      key: 'prependBos',
      type: 'boolean',
      default: 'true when the tokenizer has BOS',
      description: 'Start each context with the BOS token.',
    },
    {
      key: 'dropBos',
      type: 'boolean',
      default: 'false',
      flag: 'drop-bos',
      description: 'Leave BOS positions out of the activations.',
    },
    {
      key: 'outlierMultiple',
      type: 'number',
      description:
        'Drop tokens whose activation norm exceeds this multiple of the median norm (default: keep all).',
    },
    { key: 'shuffle', type: 'boolean', default: 'false', description: 'Permute the documents every epoch.' },
    { key: 'seed', type: 'integer', default: '0', flag: 'data-seed', description: 'Seed of the shuffle.' },
    {
      key: 'epochs',
      type: 'integer or Infinity',
      default: '1',
      flag: 'epochs',
      description: 'Passes over the text.',
    },
    {
      key: 'start',
      type: 'object',
      description: 'A saved position in the text (written into checkpoints; set by `--resume`).',
    },
    { key: 'prefetch', type: 'integer', description: 'Forward passes run ahead of training.' },
    { key: 'intraOpThreads', type: 'integer', description: "onnxruntime's threads per operator." },
  ],
};

const KNOWN = RUN_FIELDS.map((f) => f.key);

/** The fields of one trainer (`trainers[i]`). */
const TRAINER_KNOWN = TRAINER_FIELDS.map((f) => f.key);

/**
 * `source` as a config file may write it: an object with `type`, or only the type's name
 * (`source: npy` is `{ type: npy }`, whose missing `files` is then refused by name, never
 * replaced by synthetic data).
 */
export function normalizeSource(source: unknown, where = 'source'): RunConfig['source'] {
  if (typeof source === 'string' && source !== '') return { type: source };
  if (
    !source ||
    typeof source !== 'object' ||
    Array.isArray(source) ||
    typeof (source as { type?: unknown }).type !== 'string' ||
    (source as { type: string }).type === ''
  ) {
    throw new ConfigError(
      `'${where}' must name a source (synthetic, npy, safetensors, model) or be { type: NAME, ...options }, got ${show(source)}`,
    );
  }
  return source as RunConfig['source'];
}

/** Checks the value of a boolean, string, list or number field against its descriptor's kind. */
function checkKind(where: string, field: ConfigField, v: unknown): void {
  const bad = (what: string) => new ConfigError(`'${where}' must be ${what}, got ${show(v)}`);
  switch (field.kind) {
    case 'boolean':
      if (typeof v !== 'boolean') throw bad('true or false');
      return;
    case 'string':
      if (typeof v !== 'string' || v === '') throw bad('a non-empty string');
      return;
    case 'object':
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('an object');
      return;
    case 'integer':
    case 'number':
      if (field.flag && FLAG_BOUNDS[field.flag]) fieldNumber(where, v, field.flag);
      else if (
        typeof v !== 'number' ||
        !Number.isFinite(v) ||
        (field.kind === 'integer' && !Number.isSafeInteger(v))
      )
        throw bad(field.kind === 'integer' ? 'an integer' : 'a number');
      return;
    default:
      return; // lists, trainers and source: checked where they are read
  }
}

/** Trainer fields checked against the bounds of a flag. */
const TRAINER_NUMBERS: [keyof TrainerConfig, string][] = [
  ['dictSize', 'dict-size'],
  ['lr', 'lr'],
  ['warmupSteps', 'warmup-steps'],
  ['sparsityWarmupSteps', 'sparsity-warmup-steps'],
  ['decayStart', 'steps'],
  ['seed', 'seed'],
];

/** Fills defaults and checks every field; errors name the field and what was expected. */
export function resolveConfig(c: Partial<RunConfig>): RunConfig {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) {
    throw new ConfigError(`a run config must be an object, got ${show(c)}`);
  }
  for (const k of Object.keys(c)) if (!KNOWN.includes(k)) throw unknownField(k, k, KNOWN);
  const int = (name: string, v: unknown, min: number): number => {
    if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > 1e12)
      throw new ConfigError(`'${name}' must be an integer from ${min} to 1000000000000, got ${show(v)}`);
    return v as number;
  };
  for (const f of RUN_FIELDS) {
    const v = (c as Record<string, unknown>)[f.key];
    if (v !== undefined && !(f.key === 'steps' && v === 0)) checkKind(f.key, f, v);
  }
  const source = normalizeSource(c.source ?? { type: 'synthetic' });
  if (!Array.isArray(c.trainers) || c.trainers.length === 0)
    throw new ConfigError("'trainers' must list at least one trainer");
  c.trainers.forEach((t, i) => {
    if (!t || typeof t !== 'object' || Array.isArray(t))
      throw new ConfigError(
        `'trainers[${i}]' must be an object (architecture, dictSize, ...), got ${show(t)}`,
      );
    for (const k of Object.keys(t))
      if (!TRAINER_KNOWN.includes(k)) throw unknownField(`trainers[${i}].${k}`, k, TRAINER_KNOWN);
    if (typeof t.architecture !== 'string' || t.architecture === '')
      throw new ConfigError(
        `'trainers[${i}].architecture' must name an architecture (standard, topk, ...), got ${show(t.architecture)}`,
      );
    for (const f of TRAINER_FIELDS) {
      const v = (t as unknown as Record<string, unknown>)[f.key];
      if (v !== undefined && !(f.key === 'resampleSteps' && v === null) && f.key !== 'name')
        checkKind(`trainers[${i}].${f.key}`, f, v);
    }
    if (
      t.config !== undefined &&
      (t.config === null || typeof t.config !== 'object' || Array.isArray(t.config))
    )
      throw new ConfigError(
        `'trainers[${i}].config' must be an object of hyper-parameters, got ${show(t.config)}`,
      );
    if (t.hook !== undefined && (typeof t.hook !== 'string' || t.hook === ''))
      throw new ConfigError(
        `'trainers[${i}].hook' must be a hook name (e.g. gpt_neox.layers.1), got ${show(t.hook)}`,
      );
    if (t.hook !== undefined && source.type !== 'model')
      throw new ConfigError(
        `'trainers[${i}].hook' names a hook of a model source; the source is ${source.type}`,
      );
    if (t.name !== undefined && (typeof t.name !== 'string' || !/^[A-Za-z0-9._=-]+$/.test(t.name)))
      throw new ConfigError(
        `'trainers[${i}].name' must be letters, digits and . _ = - (a folder name), got ${show(t.name)}`,
      );
    for (const [field, flag] of TRAINER_NUMBERS) {
      if (t[field] !== undefined) fieldNumber(`trainers[${i}].${field}`, t[field], flag);
    }
    if (t.resampleSteps !== undefined && t.resampleSteps !== null)
      fieldNumber(`trainers[${i}].resampleSteps`, t.resampleSteps, 'resample-steps');
  });
  const saveSteps = c.saveSteps ?? [];
  if (!Array.isArray(saveSteps)) throw new ConfigError("'saveSteps' must be a list of step numbers");
  for (const [i, s] of saveSteps.entries()) int(`saveSteps[${i}]`, s, 1);
  if ((saveSteps.length > 0 || c.resume) && !c.out)
    throw new ConfigError("checkpoints ('saveSteps', 'resume') need 'out'");
  if (c.out !== undefined && (typeof c.out !== 'string' || c.out === ''))
    throw new ConfigError(`'out' must be a directory path, got ${show(c.out)}`);
  if (c.epochs !== undefined) fieldNumber('epochs', c.epochs, 'epochs');
  if (c.maxMemory !== undefined) fieldNumber('maxMemory', c.maxMemory, 'max-memory');
  if (
    c.evalData !== undefined &&
    (!Array.isArray(c.evalData) ||
      c.evalData.length === 0 ||
      !c.evalData.every((p) => typeof p === 'string' && p))
  ) {
    throw new ConfigError(`'evalData' must be a list of activation files, got ${show(c.evalData)}`);
  }
  return {
    source: source as RunConfig['source'],
    trainers: c.trainers,
    steps: c.steps === undefined || c.steps === 0 ? 0 : fieldNumber('steps', c.steps, 'steps'),
    epochs: c.epochs,
    evalData: c.evalData,
    maxMemory: c.maxMemory,
    batchSize: fieldNumber('batchSize', c.batchSize ?? 4096, 'batch-size'),
    backend: c.backend ?? 'auto',
    out: c.out,
    logEvery: int('logEvery', c.logEvery ?? 100, 0),
    saveSteps,
    resume: c.resume === true,
    normalize: c.normalize === true,
    bufferRows: fieldNumber('bufferRows', c.bufferRows ?? 0, 'buffer-rows'),
    evalBatches: int('evalBatches', c.evalBatches ?? 4, 1),
  };
}

/** Parses a comma-separated list of numbers (`0.1,0.03`), naming the flag on error. */
export function numberList(flag: string, text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const out = parts.map((s) => (s === '' ? Number.NaN : Number(s)));
  const b = FLAG_BOUNDS[flag];
  if (out.length === 0 || out.some((v) => (b ? !inBound(v, b) : !Number.isFinite(v)))) {
    const each = b ? `, each ${describeBound(b)}` : '';
    throw new ConfigError(
      `--${flag} must be a number or a comma-separated list of numbers${each}, got '${text}'`,
    );
  }
  return out;
}
