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

const KNOWN = [
  'source',
  'trainers',
  'steps',
  'epochs',
  'batchSize',
  'backend',
  'out',
  'logEvery',
  'saveSteps',
  'resume',
  'normalize',
  'bufferRows',
  'evalBatches',
  'evalData',
  'maxMemory',
];

/** The fields of one trainer (`trainers[i]`). */
const TRAINER_KNOWN = [
  'architecture',
  'config',
  'dictSize',
  'name',
  'lr',
  'warmupSteps',
  'sparsityWarmupSteps',
  'resampleSteps',
  'decayStart',
  'seed',
  'hook',
];

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
  const source = c.source ?? { type: 'synthetic' };
  if (!source || typeof source !== 'object' || Array.isArray(source) || typeof source.type !== 'string') {
    throw new ConfigError(
      `'source.type' must name a source (synthetic, npy, safetensors, model), got ${show(source)}`,
    );
  }
  if (!Array.isArray(c.trainers) || c.trainers.length === 0)
    throw new ConfigError("'trainers' must list at least one trainer");
  c.trainers.forEach((t, i) => {
    if (!t || typeof t !== 'object' || Array.isArray(t))
      throw new ConfigError(
        `'trainers[${i}]' must be an object (architecture, dictSize, ...), got ${show(t)}`,
      );
    for (const k of Object.keys(t))
      if (!TRAINER_KNOWN.includes(k)) throw unknownField(`trainers[${i}].${k}`, k, TRAINER_KNOWN);
    if (typeof t.architecture !== 'string')
      throw new ConfigError(`'trainers[${i}].architecture' must be a string`);
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
    backend: typeof c.backend === 'string' ? c.backend : 'auto',
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
