import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';

/** One trainer of a run config. */
export interface TrainerConfig {
  /** Architecture registry name (`standard`, `april-update`, `tied`, ...). */
  architecture: string;
  /** The architecture's hyper-parameters (e.g. `{ l1Penalty: 0.1 }`). */
  config?: Record<string, unknown>;
  /** Features F. */
  dictSize: number;
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
}

/** A whole `dictlearn train` run, from a config file and/or flags. */
export interface RunConfig {
  /** Activation source: `type` is a registered source (`synthetic`, `npy`, `safetensors`), the rest its options. */
  source: { type: string } & Record<string, unknown>;
  /** Trainers fed the same batches. */
  trainers: TrainerConfig[];
  /** Optimisation steps. */
  steps: number;
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
  let value: unknown;
  try {
    value = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError(
      `config file '${path}' is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`,
    );
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`config file '${path}' must hold an object (source, trainers, steps, ...)`);
  }
  return value as Partial<RunConfig>;
}

const KNOWN = new Set([
  'source',
  'trainers',
  'steps',
  'batchSize',
  'backend',
  'out',
  'logEvery',
  'saveSteps',
  'resume',
  'normalize',
  'bufferRows',
  'evalBatches',
]);

/** Fills defaults and checks every field; errors name the field and what was expected. */
export function resolveConfig(c: Partial<RunConfig>): RunConfig {
  for (const k of Object.keys(c))
    if (!KNOWN.has(k)) throw new ConfigError(`unknown config field '${k}' (known: ${[...KNOWN].join(', ')})`);
  const int = (name: string, v: unknown, min: number): number => {
    if (!Number.isInteger(v) || (v as number) < min)
      throw new ConfigError(`'${name}' must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const source = c.source ?? { type: 'synthetic' };
  if (typeof source !== 'object' || typeof source.type !== 'string') {
    throw new ConfigError(
      `'source.type' must name a source (synthetic, npy, safetensors), got ${JSON.stringify(source)}`,
    );
  }
  if (!Array.isArray(c.trainers) || c.trainers.length === 0)
    throw new ConfigError("'trainers' must list at least one trainer");
  c.trainers.forEach((t, i) => {
    if (!t || typeof t.architecture !== 'string')
      throw new ConfigError(`'trainers[${i}].architecture' must be a string`);
    int(`trainers[${i}].dictSize`, t.dictSize, 1);
  });
  const saveSteps = c.saveSteps ?? [];
  if (!Array.isArray(saveSteps)) throw new ConfigError("'saveSteps' must be a list of step numbers");
  for (const [i, s] of saveSteps.entries()) int(`saveSteps[${i}]`, s, 1);
  if ((saveSteps.length > 0 || c.resume) && !c.out)
    throw new ConfigError("checkpoints ('saveSteps', 'resume') need 'out'");
  return {
    source: source as RunConfig['source'],
    trainers: c.trainers,
    steps: int('steps', c.steps ?? 1000, 1),
    batchSize: int('batchSize', c.batchSize ?? 4096, 1),
    backend: typeof c.backend === 'string' ? c.backend : 'auto',
    out: c.out,
    logEvery: int('logEvery', c.logEvery ?? 100, 0),
    saveSteps,
    resume: c.resume === true,
    normalize: c.normalize === true,
    bufferRows: int('bufferRows', c.bufferRows ?? 0, 0),
    evalBatches: int('evalBatches', c.evalBatches ?? 4, 1),
  };
}

/** Parses a comma-separated list of numbers (`0.1,0.03`), naming the flag on error. */
export function numberList(flag: string, text: string): number[] {
  const out = text.split(',').map((s) => Number(s.trim()));
  if (out.length === 0 || out.some((v) => !Number.isFinite(v))) {
    throw new ConfigError(`--${flag} must be a number or a comma-separated list of numbers, got '${text}'`);
  }
  return out;
}
