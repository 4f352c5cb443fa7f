/**
 * Everything `dictlearn train` checks before it allocates or trains: the output folder can be
 * written, the source opens, the dictionary sizes (4·d by default, d from the data), the number
 * of steps and epochs, the set the final table is scored on, and whether the run fits in memory.
 */
import {
  type ActivationSource,
  createArchitecture,
  DictlearnError,
  ensureDir,
  findPlugin,
  listPlugins,
  type SourceFactory,
} from '@dictlearn/core';
import { ConfigError, type RunConfig } from './train-config.js';

/** Source types that read files: they run out, take `epochs`, and are reshuffled per epoch. */
export const FILE_SOURCES: readonly string[] = ['npy', 'safetensors'];

/** The most elements one JavaScript typed array holds (2³²): a bigger tensor cannot exist. */
export const MAX_ARRAY_ELEMENTS = 2 ** 32;

/** Builds a source from the registry (`@dictlearn/buffer/register` provides the built-ins). */
export async function openSource(spec: RunConfig['source']): Promise<ActivationSource> {
  const factory = findPlugin<SourceFactory>('source', spec.type);
  if (!factory) {
    throw new ConfigError(
      `unknown source '${spec.type}' (registered: ${listPlugins('source').join(', ') || 'none'})`,
    );
  }
  const { type: _type, ...options } = spec;
  try {
    return await factory.create(options);
  } catch (e) {
    // A bad option is a config error (exit 2); a bad file stays a data error (exit 1).
    if (e instanceof DictlearnError && e.op === `source '${spec.type}'`) {
      throw new ConfigError(`'source' (${spec.type}): ${e.message.slice(e.op.length + 2)}`);
    }
    throw e;
  }
}

/** What {@link planRun} settled. */
export interface RunPlan {
  /** The config with steps and dictionary sizes filled in. */
  cfg: RunConfig;
  /** The training source. */
  source: ActivationSource;
  /** What the final table is scored on, and from which position. */
  evalSource: ActivationSource;
  /** `start` for the evaluation batches (sources that can seek). */
  evalStart?: number;
  /** Says what the final table was scored on, for the summary. */
  scoredOn: string;
  /** One-line notes for the user (how files are read, how many epochs that makes). */
  notices: string[];
}

interface FileLike extends ActivationSource {
  rows: number;
  notices?: readonly string[];
}

function isFileLike(s: ActivationSource): s is FileLike {
  return typeof (s as { rows?: unknown }).rows === 'number';
}

const GB = 1e9;

/** `12.3 GB`. */
function gb(bytes: number): string {
  return `${(bytes / GB).toFixed(bytes < 10 * GB ? 2 : 1)} GB`;
}

/**
 * Bytes a run allocates, estimated (measured on the CPU backend within ~5%): per trainer the
 * parameters 2·F·d + F + d with their gradient and two Adam moments (16 bytes each); for the
 * trainer with the largest F, about five float32 copies of the [batch, F] activations alive in a
 * step (pre-activations, codes, their gradients, the evaluation's); a few copies of the batch;
 * the source's own memory; and ~150 MB for the runtime.
 */
export function estimateRunBytes(o: {
  dim: number;
  batchSize: number;
  dictSizes: number[];
  sourceBytes: number;
}): number {
  const d = o.dim;
  const params = o.dictSizes.reduce((s, f) => s + 16 * (2 * f * d + f + d), 0);
  const acts = 20 * o.batchSize * Math.max(...o.dictSizes);
  return params + acts + 16 * o.batchSize * d + o.sourceBytes + 150e6;
}

/** Memory the source holds: the synthetic ground truth, a file reader's chunk, the shuffle buffer. */
function sourceBytes(cfg: RunConfig, source: ActivationSource): number {
  const d = source.dim;
  let bytes = isFileLike(source) ? 2 * 16 * 2 ** 20 : 0;
  const features = (source as { numFeatures?: unknown }).numFeatures;
  if (typeof features === 'number') bytes += 8 * features * d;
  if (cfg.bufferRows > 0) bytes += 4 * cfg.bufferRows * d;
  return bytes;
}

/**
 * Refuses, before anything is allocated, a run whose tensors cannot exist (an array over 2³²
 * elements: a config error) or whose estimated memory exceeds `limit` bytes.
 */
export function checkMemory(
  cfg: RunConfig,
  source: ActivationSource,
  dictSizes: number[],
  limit: number,
): void {
  const d = source.dim;
  const B = cfg.batchSize;
  const F = Math.max(...dictSizes);
  if (F * d > MAX_ARRAY_ELEMENTS) {
    throw new ConfigError(
      `--dict-size ${F} × d ${d} = ${F * d} weights in one array, more than the ${MAX_ARRAY_ELEMENTS} a JavaScript array holds; lower --dict-size to at most ${Math.floor(MAX_ARRAY_ELEMENTS / d)}`,
    );
  }
  if (B * F > MAX_ARRAY_ELEMENTS) {
    throw new ConfigError(
      `--batch-size ${B} × --dict-size ${F} = ${B * F} activations in one array, more than the ${MAX_ARRAY_ELEMENTS} a JavaScript array holds; lower --batch-size to at most ${Math.floor(MAX_ARRAY_ELEMENTS / F)}`,
    );
  }
  const need = estimateRunBytes({ dim: d, batchSize: B, dictSizes, sourceBytes: sourceBytes(cfg, source) });
  if (need > limit) {
    const n = dictSizes.length;
    throw new DictlearnError(
      '--dict-size',
      `the run needs about ${gb(need)} (${n} ${n === 1 ? 'dictionary' : 'dictionaries'} of up to ${F} features × d ${d}, batch ${B}), more than the ${gb(limit)} ${cfg.maxMemory === undefined ? 'of memory free now' : 'allowed by --max-memory'}; lower --dict-size or --batch-size, train fewer dictionaries at once${cfg.maxMemory === undefined ? ', or raise the limit with --max-memory GB' : ''}`,
    );
  }
}

/**
 * The synthetic source draws its [numFeatures, d] ground truth when it is created: checked
 * from its options (defaults d = 256, 512 features) before that happens.
 */
function checkSyntheticMemory(spec: RunConfig['source'], limit: number): void {
  const d = Number(spec.dim ?? 256);
  const n = Number(spec.numFeatures ?? 512);
  if (!Number.isFinite(d * n)) return; // the source refuses the option itself
  if (n * d > MAX_ARRAY_ELEMENTS) {
    throw new ConfigError(
      `--num-features ${n} × --dim ${d} = ${n * d} ground-truth values in one array, more than the ${MAX_ARRAY_ELEMENTS} a JavaScript array holds`,
    );
  }
  const need = 8 * n * d + 150e6;
  if (need > limit) {
    throw new DictlearnError(
      '--num-features',
      `the synthetic ground truth (${n} features × d ${d}) needs about ${gb(need)}, more than the ${gb(limit)} available; lower --num-features or --dim`,
    );
  }
}

/**
 * Creates `out` (and its parents; core's `ensureDir` makes them one level at a time, so a path
 * under /proc fails at once instead of looping) and writes and removes a probe file in it, so
 * an unwritable folder is refused before training rather than after it.
 */
export async function checkOutDir(out: string): Promise<void> {
  const fs = await import('node:fs/promises');
  const { resolve, join } = await import('node:path');
  const abs = resolve(out);
  const op = `--out ${out}`;
  const virtual = /^\/(proc|sys)(\/|$)/.test(abs)
    ? ` (${abs.split('/')[1] === 'proc' ? '/proc' : '/sys'} is a virtual file system)`
    : '';
  try {
    await ensureDir(abs);
  } catch (e) {
    throw new DictlearnError(op, `${(e as Error).message.replace(`${abs}: `, '')}; choose a writable folder`);
  }
  const probe = join(abs, `.dictlearn-write-test-${process.pid}`);
  try {
    await fs.writeFile(probe, 'dictlearn checks that --out is writable\n');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DictlearnError(
      op,
      `cannot write into ${abs} (${code ?? (e as Error).message})${virtual}; choose a writable folder`,
    );
  }
  await fs.rm(probe, { force: true });
}

/**
 * The checks and decisions before a run: `--out` is writable, the architectures accept their
 * configs, the source opens (file sources get `epochs` and per-epoch shuffling), dictionary
 * sizes default to 4·d, steps follow from `steps`/`epochs`, the evaluation set is chosen, and the
 * memory estimate fits.
 */
export async function planRun(cfg: RunConfig): Promise<RunPlan> {
  if (cfg.out) await checkOutDir(cfg.out);
  cfg.trainers.forEach((t, i) => {
    try {
      createArchitecture(t.architecture, t.config ?? {}, undefined, `trainers[${i}]`);
    } catch (e) {
      if (e instanceof DictlearnError && !e.op.startsWith('trainers[')) {
        throw new ConfigError(
          `'trainers[${i}].config' (${t.architecture}): ${e.message.slice(e.op.length + 2)}`,
        );
      }
      throw e;
    }
  });
  const notices: string[] = [];
  const isFile = FILE_SOURCES.includes(cfg.source.type);
  const sourceEpochs = cfg.source.epochs;
  if (cfg.epochs !== undefined && sourceEpochs !== undefined && sourceEpochs !== cfg.epochs) {
    throw new ConfigError(`'epochs' is ${cfg.epochs} but 'source.epochs' is ${sourceEpochs}; give it once`);
  }
  const epochsAsked = cfg.epochs ?? (sourceEpochs as number | undefined);
  if (!isFile && epochsAsked !== undefined) {
    throw new ConfigError(
      `--epochs applies to file sources (npy, safetensors); a ${cfg.source.type} source does not run out: use --steps`,
    );
  }
  if (!isFile && cfg.evalData) {
    throw new ConfigError(
      `--eval-data holds activation files for a file source (npy, safetensors); the ${cfg.source.type} source is scored on fresh samples`,
    );
  }
  let spec = cfg.source;
  if (isFile) {
    // Only --steps: repeat (reshuffled) as long as the steps need; otherwise the epochs asked, or one.
    const epochs = epochsAsked ?? (cfg.steps > 0 ? Number.POSITIVE_INFINITY : 1);
    spec = { shuffle: true, ...cfg.source, epochs };
  }
  const { freemem } = await import('node:os');
  const limit = cfg.maxMemory !== undefined ? cfg.maxMemory * GB : freemem();
  if (cfg.source.type === 'synthetic') checkSyntheticMemory(cfg.source, limit);
  const source = await openSource(spec);
  for (const n of (source as { notices?: readonly string[] }).notices ?? []) notices.push(n);

  let steps = cfg.steps;
  if (isFileLike(source) && isFile) {
    const rows = source.rows;
    const B = cfg.batchSize;
    const epochs = epochsAsked;
    const shuffled =
      spec.shuffle === false
        ? ''
        : `, reshuffled every epoch (seed ${(spec.seed as number | undefined) ?? 0})`;
    if (epochs === undefined && steps > 0) {
      notices.push(
        `${steps} steps × ${B} rows = ${((steps * B) / Math.max(rows, 1)).toFixed(2)} epochs over the ${rows} rows${shuffled}`,
      );
    } else {
      const e = epochs ?? 1;
      const full = Math.floor((e * rows) / B);
      if (full === 0) {
        throw new ConfigError(
          `--batch-size ${B} is more than the ${e * rows} rows of ${e} epoch${e === 1 ? '' : 's'} over ${source.name}; lower --batch-size or raise --epochs`,
        );
      }
      const leftover = e * rows - full * B;
      const cut = steps > 0 && steps < full;
      if (!cut) steps = full;
      notices.push(
        cut
          ? `${steps} steps × ${B} rows stop before the ${e} epoch${e === 1 ? '' : 's'} asked end (${full} steps)${shuffled}`
          : `${e} epoch${e === 1 ? '' : 's'} over ${rows} rows = ${steps} steps of ${B}${shuffled}${leftover > 0 ? `; the last ${leftover} rows are not trained on (a step takes a full batch)` : ''}`,
      );
    }
  } else if (steps === 0) steps = 1000;

  const dictSizes = cfg.trainers.map((t) => t.dictSize ?? 4 * source.dim);
  checkMemory(cfg, source, dictSizes, limit);

  let evalSource: ActivationSource = source;
  let evalStart: number | undefined = 1_000_000_000;
  let scoredOn = 'fresh samples, far from the ones trained on';
  if (isFile && cfg.evalData) {
    const key = cfg.source.key === undefined ? {} : { key: cfg.source.key };
    evalSource = await openSource({ type: cfg.source.type, files: cfg.evalData, ...key });
    if (evalSource.dim !== source.dim) {
      throw new DictlearnError(
        cfg.evalData[0],
        `--eval-data has width ${evalSource.dim}, the training data ${source.dim}; held-out rows must come from the same layer`,
      );
    }
    evalStart = undefined;
    scoredOn = `held-out rows (--eval-data: ${evalSource.name})`;
  } else if (isFile) {
    const { epochs: _e, shuffle: _s, ...rest } = cfg.source;
    evalSource = await openSource({ ...rest, epochs: 1, shuffle: false });
    evalStart = undefined;
    scoredOn =
      'training rows: the first rows of the data, which the run trained on (pass --eval-data FILE for held-out rows)';
  }
  const trainers = cfg.trainers.map((t, i) => ({ ...t, dictSize: dictSizes[i] }));
  // cfg.source stays as the user gave it: the epochs and shuffle added above are not settings of
  // the run to compare on --resume (a stream of more epochs starts with the same batches).
  return { cfg: { ...cfg, trainers, steps }, source, evalSource, evalStart, scoredOn, notices };
}
