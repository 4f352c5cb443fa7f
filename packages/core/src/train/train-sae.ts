import { currentBackend } from '../backend.js';
import type { Dictionary } from '../dictionary.js';
import { keep, scope } from '../engine.js';
import { DictlearnError } from '../errors.js';
import type { AppendFile } from '../io/dirs.js';
import { fsErrorText, withCause } from '../io/fs.js';
import { div, square } from '../ops/elementwise.js';
import { countNonFinite, mean, sum } from '../ops/reduce.js';
import type { ActivationSource } from '../source.js';
import type { Tensor } from '../tensor.js';
import { applyTrainerState, readTrainerState, saveTrainerState, type TrainerState } from './checkpoint.js';
import { type StepLogs, Trainer, type TrainerSpec } from './trainer.js';

/** One log line: a trainer's numbers at a step. */
export interface TrainLogEntry {
  /** Trainer name. */
  trainer: string;
  /** Steps completed. */
  step: number;
  /** Activation rows seen so far. */
  tokens: number;
  /** Seconds since the start of this run. */
  elapsed: number;
  /** The trainer's numbers (loss, mse_loss, sparsity_loss, l0, frac_variance_explained, lr...). */
  logs: StepLogs;
}

/** Options of {@link trainSAE}. */
export interface TrainSAEOptions {
  /**
   * Activations: a source (read with `batchSize`) or any async iterable of [B, d] float32 tensors
   * (each is disposed after use). Resuming replays it from the start and skips what was consumed,
   * so it must be deterministic.
   */
  data: ActivationSource | AsyncIterable<Tensor>;
  /** Rows per batch when `data` is a source (default 4096). */
  batchSize?: number;
  /** The trainers, all fed the same batches. */
  trainers: TrainerSpec[];
  /** Optimisation steps. */
  steps: number;
  /**
   * Activation normalisation (REFERENCE): scale s = √(mean‖x‖²)/√d from the first
   * `normalizeBatches` batches (default 4); training runs on x / s and s is folded into the saved
   * dictionaries. Default false (as dictionary_learning).
   */
  normalize?: boolean;
  /** Batches used to estimate the normalisation scale. */
  normalizeBatches?: number;
  /** Log every N steps (default 100; 0 = never). */
  logEvery?: number;
  /** Called with each log entry. */
  onLog?: (entry: TrainLogEntry) => void;
  /** Called after every step with the step count (for progress bars). */
  onStep?: (step: number, tokens: number) => void;
  /** Where run output goes: `<outDir>/<trainer>/` (final dictionary), checkpoints, `log.jsonl`. */
  outDir?: string;
  /** Steps after which to write checkpoints (needs `outDir`). */
  saveSteps?: number[];
  /**
   * Continue from the newest checkpoint in `outDir` that every trainer has (a damaged one is
   * passed over, with a notice, for the one before). `true` refuses when there is none;
   * `'if-present'` then starts from step 0 (for jobs that are simply run again after a kill).
   * Without it, an `outDir` that already holds a run is refused unless `restart` is set.
   */
  resume?: boolean | 'if-present';
  /** Discard the run already in `outDir` (its checkpoints, `log.jsonl` and `run.json`) and start over. */
  restart?: boolean;
  /**
   * Resume even though the configuration differs from the one in `<outDir>/run.json` (see
   * {@link RUN_FILE}); the new one is recorded. `steps` may always change.
   */
  allowConfigChange?: boolean;
  /**
   * A JSON description of the data (source type and options, buffer...), stored in `run.json`
   * and compared on resume: trainSAE cannot look inside a stream to tell that it changed.
   */
  dataSpec?: unknown;
  /**
   * Stops the run after the current step: with `outDir` a checkpoint of that step is written,
   * then trainSAE rejects with a {@link TrainInterruptedError}. Checked between steps.
   */
  signal?: AbortSignal;
  /**
   * Called with one-line notices: the step resumed from, a damaged checkpoint passed over, a
   * stale lock taken over, temporaries of a killed run removed... (default: `console.warn`).
   */
  onNotice?: (message: string) => void;
  /** Backend (default: the current one). */
  backend?: string;
  /**
   * Resuming without replay, for data that is costly to produce again (a language model's forward
   * passes): `current()` says where the data stands (plain JSON), read after every batch; the value
   * of the last batch trained on goes into each checkpoint's `state.json` as `dataPosition`. On
   * resume, `resume(position)` gives the stream from there and `data` is not read at all (without
   * it, or for a checkpoint without a position, the stream is replayed from its start and the
   * consumed batches skipped). Rows a shuffling buffer held but had not yielded are not replayed.
   */
  dataPosition?: DataPosition;
}

/** Where a resumable data stream stands, and how to reopen it there (see {@link TrainSAEOptions.dataPosition}). */
export interface DataPosition {
  /** The position after the batches read so far: plain JSON, saved with checkpoints. */
  current(): unknown;
  /** The stream from a position `current()` returned earlier (in an earlier process). */
  resume(position: unknown): ActivationSource | AsyncIterable<Tensor>;
}

/** The file in `outDir` that records the configuration of a run, compared on resume. */
export const RUN_FILE = 'run.json';

/** Fields of `run.json` that may differ on resume without `allowConfigChange`. */
export const CHANGEABLE_RUN_FIELDS: readonly string[] = ['steps'];

/** Why {@link RunStateError} refused to start. */
export type RunStateProblem =
  | 'in-use'
  | 'run-exists'
  | 'no-checkpoint'
  | 'config-changed'
  | 'checkpoint-ahead'
  | 'no-usable-checkpoint';

/**
 * trainSAE refused the state of `outDir`: another run holds it, it holds an earlier run, there
 * is nothing to resume, or the configuration changed. `detail` says what was found and `hint`
 * what to do in terms of trainSAE's options (the CLI replaces the hint with its flags).
 */
export class RunStateError extends DictlearnError {
  /** The kind of problem. */
  readonly problem: RunStateProblem;
  /** What was found, in one sentence. */
  readonly detail: string;
  /** What to do about it. */
  readonly hint: string;
  constructor(problem: RunStateProblem, detail: string, hint: string) {
    super('train', `${detail}; ${hint}`);
    this.name = 'RunStateError';
    this.problem = problem;
    this.detail = detail;
    this.hint = hint;
  }
}

/** trainSAE stopped because its `signal` was aborted (Ctrl-C); says where the run can resume. */
export class TrainInterruptedError extends DictlearnError {
  /** Steps completed. */
  readonly step: number;
  /** Steps the run was to take. */
  readonly steps: number;
  /** The checkpoint folders of `step`, one per trainer (empty: nothing could be saved). */
  readonly checkpoints: string[];
  constructor(step: number, steps: number, checkpoints: string[]) {
    super(
      'train',
      `interrupted at step ${step}/${steps}; ${checkpoints.length > 0 ? `checkpoint in ${checkpoints.join(', ')}` : 'nothing was saved'}`,
    );
    this.name = 'TrainInterruptedError';
    this.step = step;
    this.steps = steps;
    this.checkpoints = checkpoints;
  }
}

/** What {@link trainSAE} returns. */
export interface TrainResult {
  /** Trained dictionaries (raw-activation space), one per trainer, in order. Dispose them. */
  dictionaries: Dictionary[];
  /** The trainers' names. */
  names: string[];
  /** The normalisation scale used (1 when off). */
  scale: number;
  /** Steps completed, including those before a resume. */
  steps: number;
  /** Step the run resumed from (0 when it started fresh). */
  resumedFrom: number;
  /** Last log entry per trainer. */
  lastLogs: TrainLogEntry[];
}

function isSource(d: TrainSAEOptions['data']): d is ActivationSource {
  return typeof (d as ActivationSource).batches === 'function';
}

/** Pulls batches from the data and checks their shape and values. */
class BatchReader {
  #it: AsyncIterator<Tensor>;
  consumed = 0;
  #dim: number | undefined;
  constructor(data: TrainSAEOptions['data'], batchSize: number, backend: string) {
    const iterable = isSource(data) ? data.batches({ batchSize, backend }) : data;
    this.#it = iterable[Symbol.asyncIterator]();
    // An iterable that states its width (an ActivationBuffer) needs no batch read to learn it.
    const stated = (data as { dim?: unknown }).dim;
    this.#dim =
      isSource(data) || (Number.isSafeInteger(stated) && (stated as number) > 0)
        ? (stated as number)
        : undefined;
  }
  /** Stops the stream (an iterator's `return`), e.g. when a resume reopens it elsewhere. */
  async close(): Promise<void> {
    await this.#it.return?.();
  }
  get dim(): number | undefined {
    return this.#dim;
  }
  async next(step: number): Promise<Tensor> {
    const r = await this.#it.next();
    if (r.done) {
      throw new DictlearnError(
        'train',
        `the activation data ran out after ${this.consumed} batches (step ${step})`,
      );
    }
    const x = r.value;
    this.consumed++;
    if (x.rank !== 2 || x.dtype !== 'float32' || (this.#dim !== undefined && x.shape[1] !== this.#dim)) {
      x.dispose();
      throw new DictlearnError(
        'train',
        `batch ${this.consumed - 1} is [${x.shape}] ${x.dtype}; expected float32 [rows, ${this.#dim ?? 'd'}]`,
      );
    }
    this.#dim ??= x.shape[1];
    return x;
  }
}

/** Between steps, hand control to the event loop this often (ms), so signals and timers run. */
const YIELD_EVERY_MS = 50;

const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) =>
    typeof setImmediate === 'function' ? setImmediate(resolve) : setTimeout(resolve, 0),
  );

/**
 * Trains several dictionaries on one activation stream (DL's `trainSAE`): every trainer steps
 * on the same batch, so one pass over activations feeds a whole sweep. Logs every `logEvery`
 * steps (callback and `<outDir>/log.jsonl`), writes checkpoints at `saveSteps`, resumes from
 * the latest one with `resume`, and saves each final dictionary to `<outDir>/<trainer>/`.
 * A non-finite batch or loss stops the run with the step and trainer named; checkpoints
 * already written stay as they were.
 *
 * With `outDir`, the folder is locked (`<outDir>/.lock`) for the run, so a second run on it is
 * refused ({@link RunStateError}); temporaries of killed runs are removed; the configuration is
 * recorded in `run.json` and checked on resume; `log.jsonl` is cut back to the checkpoint's
 * step on resume. `signal` stops the run after the current step with a checkpoint
 * ({@link TrainInterruptedError}).
 */
export async function trainSAE(options: TrainSAEOptions): Promise<TrainResult> {
  const steps = options.steps;
  if (!Number.isInteger(steps) || steps < 0) {
    throw new DictlearnError('trainSAE', `'steps' must be a non-negative integer, got ${steps}`);
  }
  if (!Array.isArray(options.trainers) || options.trainers.length === 0) {
    throw new DictlearnError('trainSAE', "'trainers' must list at least one trainer");
  }
  const saveSteps = [...new Set(options.saveSteps ?? [])].sort((a, b) => a - b);
  if (saveSteps.length > 0 && !options.outDir) {
    throw new DictlearnError('trainSAE', "'saveSteps' needs 'outDir' to write checkpoints into");
  }
  if (options.resume && !options.outDir) throw new DictlearnError('trainSAE', "'resume' needs 'outDir'");
  if (options.resume && options.restart) {
    throw new DictlearnError('trainSAE', "'resume' and 'restart' exclude each other");
  }
  const names = options.trainers.map((t, i) => t.name ?? `trainer_${i}`);
  if (new Set(names).size !== names.length) {
    throw new DictlearnError('trainSAE', `trainer names must be unique, got ${names.join(', ')}`);
  }
  const notice = options.onNotice ?? ((m: string) => console.warn(`dictlearn: ${m}`));
  if (!options.outDir) return await train(options, names, notice, undefined);
  const out = options.outDir.replace(/\/+$/, '') || '/';
  const fs = await import('../io/dirs.js');
  await fs.ensureDir(out);
  const r = await fs.acquireDirLock(out);
  if (!r.ok) {
    const h = r.holder;
    throw new RunStateError(
      'in-use',
      h
        ? `'${out}' is in use by pid ${h.pid} (started ${h.started}${h.hostname ? ` on ${h.hostname}` : ''})`
        : `'${out}' is locked by ${r.path}, which cannot be read`,
      `wait for that run to end or use a different outDir (if no run is using it, delete ${r.path})`,
    );
  }
  try {
    if (r.tookOverFrom) {
      notice(
        `took over '${out}' from pid ${r.tookOverFrom.pid} (started ${r.tookOverFrom.started}), which is no longer running`,
      );
    }
    const removed = await fs.removeStaleTemporaries(out);
    if (removed.length > 0) {
      notice(
        `removed ${removed.length} temporary ${removed.length === 1 ? 'file' : 'files'} left by an interrupted run in '${out}'`,
      );
    }
    return await train(options, names, notice, { out, fs });
  } finally {
    await r.lock.release();
  }
}

interface OutContext {
  out: string;
  fs: typeof import('../io/dirs.js');
}

async function train(
  options: TrainSAEOptions,
  names: string[],
  notice: (m: string) => void,
  ctx: OutContext | undefined,
): Promise<TrainResult> {
  const steps = options.steps;
  const saveSteps = new Set(options.saveSteps ?? []);
  const backend = options.backend ?? currentBackend().name;
  const batchSize = options.batchSize ?? 4096;
  let reader = new BatchReader(options.data, batchSize, backend);
  const tracker = options.dataPosition;
  // Positions of the batches read but not trained on yet (in `pending`, or the one just read), and
  // the position after the last batch trained on: what a checkpoint records.
  const positions: unknown[] = [];
  let trainedPosition: unknown;
  const readBatch = async (step: number): Promise<Tensor> => {
    const t = await reader.next(step);
    if (tracker) positions.push(tracker.current());
    return t;
  };
  const logEvery = options.logEvery ?? 100;
  const started = performance.now();
  const signal = options.signal;

  // The first batches: the normalisation sample (trained on afterwards, in order).
  const pending: Tensor[] = [];
  let dim = reader.dim;
  if (dim === undefined) {
    pending.push(keep(await readBatch(0)));
    dim = pending[0].shape[1];
  }
  const trainers = options.trainers.map(
    (spec, i) => new Trainer({ ...spec, name: names[i] }, dim!, steps, i, backend),
  );
  let log: AppendFile | undefined;
  try {
    let scale = 1;
    let startStep = 0;
    let tokensBefore = 0;
    if (ctx) {
      const runConfig = describeRun(options, trainers, dim, batchSize);
      const state = await prepareOutDir(ctx, options, trainers, runConfig, notice);
      if (state) {
        for (let i = 0; i < trainers.length; i++) applyTrainerState(trainers[i], state[i], notice);
        scale = state[0].info.scale;
        startStep = state[0].info.step;
        const at = state[0].info.dataPosition;
        if (tracker && at !== undefined) {
          // Reopen the data where the checkpoint left it; nothing of the original stream is read.
          for (const t of pending.splice(0)) t.dispose();
          positions.length = 0;
          await reader.close();
          reader = new BatchReader(tracker.resume(at), batchSize, backend);
          reader.consumed = state[0].info.batchesConsumed;
          // Rows before the checkpoint, for the log's token counts: full batches (a source only
          // yields a short batch at its very end).
          tokensBefore = state[0].info.batchesConsumed * batchSize;
          trainedPosition = at;
        }
        // Replay the deterministic stream up to where the checkpoint left it; the batch already
        // read to learn the dimension is one of those replayed, so its rows count too.
        for (const t of pending.splice(0)) {
          tokensBefore += t.shape[0];
          t.dispose();
        }
        while (reader.consumed < state[0].info.batchesConsumed) {
          if (signal?.aborted) throw interrupted(startStep, steps, ctx, names);
          const skipped = await readBatch(0);
          trainedPosition = positions.shift();
          tokensBefore += skipped.shape[0];
          skipped.dispose();
        }
      }
      const logPath = ctx.fs.joinPath(ctx.out, 'log.jsonl');
      // Lines of steps after the checkpoint came from the run that was killed, and a line a
      // kill or full disk cut short is dropped (the file is rewritten atomically).
      const dropped = await ctx.fs.filterJsonLines(
        logPath,
        (e) => typeof (e as TrainLogEntry).step === 'number' && (e as TrainLogEntry).step <= startStep,
      );
      if (dropped > 0 && startStep > 0) {
        notice(`log.jsonl: dropped ${dropped} ${dropped === 1 ? 'line' : 'lines'} after step ${startStep}`);
      }
      log = await ctx.fs.AppendFile.open(logPath);
    }
    if (options.normalize && startStep === 0) {
      const nb = options.normalizeBatches ?? 4;
      while (pending.length < nb) {
        if (signal?.aborted) throw interrupted(0, steps, ctx, names);
        pending.push(keep(await readBatch(0)));
      }
      scale = await normalisationScale(pending, dim);
    }
    const saveCheckpoint = async (step: number) => {
      for (const tr of trainers) {
        const dir = checkpointDir(ctx!.out, tr.name, step);
        try {
          await saveTrainerState(tr, dir, {
            scale,
            batchesConsumed: reader.consumed - pending.length,
            ...(tracker && trainedPosition !== undefined ? { dataPosition: trainedPosition } : {}),
          });
        } catch (e) {
          throw withCause(
            new DictlearnError(
              dir,
              `could not write the checkpoint of step ${step}: ${fsErrorText(e)}; earlier checkpoints are kept`,
            ),
            e,
          );
        }
      }
    };
    const lastLogs: TrainLogEntry[] = [];
    let tokens = tokensBefore;
    let lastYield = performance.now();
    let lastSaved = startStep;
    for (let step = startStep; step < steps; step++) {
      if (performance.now() - lastYield > YIELD_EVERY_MS) {
        await yieldToEventLoop();
        lastYield = performance.now();
      }
      if (signal?.aborted) {
        if (ctx && step > lastSaved) await saveCheckpoint(step);
        throw interrupted(step, steps, ctx, names);
      }
      const raw = pending.length > 0 ? pending.shift()! : await readBatch(step);
      if (tracker) trainedPosition = positions.shift();
      const bad = scope(() => countNonFinite(raw));
      const nBad = (await bad.data())[0];
      bad.dispose();
      if (nBad > 0) {
        raw.dispose();
        throw new DictlearnError(
          'train',
          `step ${step}: the activation batch holds ${nBad} NaN/Inf values; stopping (checkpoints already written are kept)`,
        );
      }
      const x = scale === 1 ? raw : scope(() => div(raw, scale));
      tokens += raw.shape[0];
      const withLogs = logEvery > 0 && ((step + 1) % logEvery === 0 || step + 1 === steps);
      let lines = '';
      try {
        for (const tr of trainers) {
          const logs = await tr.update(x, withLogs);
          if (withLogs) {
            const entry: TrainLogEntry = {
              trainer: tr.name,
              step: step + 1,
              tokens,
              elapsed: (performance.now() - started) / 1000,
              logs,
            };
            lastLogs[trainers.indexOf(tr)] = entry;
            options.onLog?.(entry);
            lines += `${JSON.stringify(entry)}\n`;
          }
        }
      } finally {
        if (x !== raw) x.dispose();
        raw.dispose();
      }
      // One write per step, all or nothing, so the log never ends in half a line.
      if (log && lines) {
        try {
          await log.append(lines);
        } catch (e) {
          throw withCause(
            new DictlearnError(
              log.path,
              `could not log step ${step + 1}: ${fsErrorText(e)}; the log up to step ${step} and the checkpoints written are intact`,
            ),
            e,
          );
        }
      }
      options.onStep?.(step + 1, tokens);
      if (saveSteps.has(step + 1)) {
        await saveCheckpoint(step + 1);
        lastSaved = step + 1;
      }
    }
    for (const t of pending.splice(0)) t.dispose();
    const dictionaries = trainers.map((tr) => tr.dictionary(scale));
    if (ctx) {
      for (let i = 0; i < trainers.length; i++) {
        const dir = ctx.fs.joinPath(ctx.out, trainers[i].name);
        try {
          await dictionaries[i].save(dir);
        } catch (e) {
          for (const d of dictionaries) d.dispose();
          throw withCause(
            new DictlearnError(
              dir,
              `could not save the final dictionary: ${fsErrorText(e)}; the checkpoints written are intact`,
            ),
            e,
          );
        }
      }
    }
    return { dictionaries, names, scale, steps, resumedFrom: startStep, lastLogs };
  } finally {
    await log?.close();
    for (const t of pending) t.dispose();
    for (const tr of trainers) tr.dispose();
  }
}

function interrupted(
  step: number,
  steps: number,
  ctx: OutContext | undefined,
  names: string[],
): TrainInterruptedError {
  const dirs = ctx && step > 0 ? names.map((n) => checkpointDir(ctx.out, n, step)) : [];
  return new TrainInterruptedError(step, steps, dirs);
}

/** What `run.json` records: everything that shapes the trained numbers, defaults resolved. */
function describeRun(
  options: TrainSAEOptions,
  trainers: Trainer[],
  dim: number,
  batchSize: number,
): Record<string, unknown> {
  const orNull = (v: unknown) => (v === undefined ? null : v);
  return {
    format: 'dictlearn-run',
    activationDim: dim,
    batchSize: isSource(options.data) ? batchSize : null,
    steps: options.steps,
    normalize: options.normalize === true,
    normalizeBatches: options.normalize ? (options.normalizeBatches ?? 4) : null,
    data: orNull(options.dataSpec),
    trainers: trainers.map((t) => ({
      name: t.name,
      architecture: t.arch.name,
      config: orNull(t.arch.config),
      dictSize: t.sizes.dictSize,
      seed: t.settings.seed,
      lr: t.settings.lr,
      betas: t.settings.betas,
      warmupSteps: t.settings.warmupSteps,
      sparsityWarmupSteps: t.settings.sparsityWarmupSteps,
      decayStart: orNull(t.settings.decayStart),
      resampleSteps: orNull(t.settings.resampleSteps),
      clipGradNorm: orNull(t.settings.clipGradNorm),
    })),
  };
}

/** Leaf values of a JSON value by path (`trainers[0].lr`). */
function flatten(value: unknown, path: string, into: Map<string, unknown>): Map<string, unknown> {
  if (Array.isArray(value)) {
    into.set(path ? `${path}.length` : 'length', value.length);
    for (const [i, v] of value.entries()) flatten(v, `${path}[${i}]`, into);
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) flatten(v, path ? `${path}.${k}` : k, into);
  } else into.set(path, value);
  return into;
}

/** One field that differs between two run configurations. */
export interface RunConfigChange {
  /** Path of the field in `run.json` (`trainers[0].lr`, `data.source.seed`). */
  field: string;
  /** The recorded value (undefined: absent). */
  before: unknown;
  /** The new value (undefined: absent). */
  after: unknown;
}

/** Fields whose values differ between two run descriptions (as `run.json` holds them). */
export function diffRunConfig(before: unknown, after: unknown): RunConfigChange[] {
  const a = flatten(before, '', new Map());
  const b = flatten(after, '', new Map());
  const out: RunConfigChange[] = [];
  for (const field of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(field);
    const y = b.get(field);
    if (JSON.stringify(x) !== JSON.stringify(y)) out.push({ field, before: x, after: y });
  }
  return out;
}

function describeChanges(changes: RunConfigChange[]): string {
  const show = (v: unknown) => (v === undefined ? '(absent)' : JSON.stringify(v));
  const listed = changes.slice(0, 4).map((c) => `${c.field} was ${show(c.before)}, now ${show(c.after)}`);
  if (changes.length > 4) listed.push(`and ${changes.length - 4} more`);
  return listed.join('; ');
}

/**
 * Checks what `outDir` holds against what was asked (resume, restart, configuration), cleans it
 * accordingly, records the configuration, and returns the checkpoint to resume from (one state
 * per trainer), or undefined to start at step 0.
 */
async function prepareOutDir(
  ctx: OutContext,
  options: TrainSAEOptions,
  trainers: Trainer[],
  runConfig: Record<string, unknown>,
  notice: (m: string) => void,
): Promise<TrainerState[] | undefined> {
  const { out, fs } = ctx;
  const names = trainers.map((t) => t.name);
  const runPath = fs.joinPath(out, RUN_FILE);
  const logPath = fs.joinPath(out, 'log.jsonl');
  let recorded: { value?: Record<string, unknown>; error?: string } | undefined;
  if (await fs.pathExists(runPath)) {
    try {
      recorded = { value: JSON.parse(await fs.readTextFile(runPath)) };
    } catch (e) {
      recorded = { error: (e as Error).message };
    }
  }
  const perTrainer = await Promise.all(names.map((n) => checkpointSteps(fs, out, n)));
  const common = perTrainer.reduce((acc, s) => acc.filter((x) => s.includes(x))).sort((a, b) => b - a);
  let chosen: TrainerState[] | undefined;

  if (!options.resume) {
    const held = [
      ...(perTrainer.some((s) => s.length > 0)
        ? [`checkpoints up to step ${Math.max(...perTrainer.flat())}`]
        : []),
      ...(recorded ? [RUN_FILE] : []),
      ...((await fs.pathExists(logPath)) ? ['log.jsonl'] : []),
    ];
    if (held.length > 0) {
      if (!options.restart) {
        throw new RunStateError(
          'run-exists',
          `'${out}' holds an earlier run (${held.join(', ')})`,
          "resume it ('resume'), discard it ('restart') or use a different outDir",
        );
      }
      const old = (recorded?.value?.trainers as { name?: unknown }[] | undefined) ?? [];
      const all = new Set([...names, ...old.map((t) => t.name).filter((n) => typeof n === 'string')]);
      for (const n of all) await fs.removePath(fs.joinPath(out, n as string, 'checkpoints'));
      await fs.removePath(logPath);
      await fs.removePath(runPath);
      notice(`restart: removed the earlier run's ${held.join(', ')} from '${out}'`);
    }
  } else if (common.length === 0) {
    const some = names.filter((_, i) => perTrainer[i].length > 0);
    const where = `${out}/<trainer>/checkpoints/step_<N> for ${names.join(', ')}`;
    const detail =
      some.length > 0
        ? `no checkpoint step that every trainer has in '${out}' (only ${some.join(', ')} ${some.length === 1 ? 'has' : 'have'} any; looked for ${where})`
        : `no checkpoint to resume from in '${out}' (looked for ${where})`;
    if (options.resume !== 'if-present') {
      throw new RunStateError(
        'no-checkpoint',
        detail,
        "start without 'resume', or pass resume: 'if-present' to start when there is none",
      );
    }
    notice(`no checkpoint in '${out}' yet; starting from step 0`);
  } else {
    if (recorded) {
      const changes = recorded.error
        ? [{ field: RUN_FILE, before: `unreadable (${recorded.error})`, after: 'this configuration' }]
        : diffRunConfig(recorded.value, runConfig);
      const blocking = changes.filter((c) => !CHANGEABLE_RUN_FIELDS.includes(c.field));
      if (blocking.length > 0 && !options.allowConfigChange) {
        throw new RunStateError(
          'config-changed',
          `the configuration differs from the run in '${runPath}': ${describeChanges(blocking)}`,
          "resume with the same configuration, or pass 'allowConfigChange' to continue with the new values",
        );
      }
      if (changes.length > 0) {
        notice(
          `resuming with a changed configuration${blocking.length > 0 ? ' (allowed)' : ''}: ${describeChanges(changes)}`,
        );
      }
    } else {
      notice(`'${runPath}' is missing (a run from an older version?); the configuration cannot be checked`);
    }
    const problems: string[] = [];
    for (const step of common) {
      try {
        const states: TrainerState[] = [];
        for (const tr of trainers) {
          const st = await readTrainerState(tr, checkpointDir(out, tr.name, step));
          if (st.info.step !== step) {
            throw new DictlearnError(
              fs.joinPath(st.dir, 'state.json'),
              `records step ${st.info.step}, the folder is step_${step}`,
            );
          }
          const first = states[0]?.info;
          if (
            first &&
            (first.batchesConsumed !== st.info.batchesConsumed ||
              first.scale !== st.info.scale ||
              JSON.stringify(first.dataPosition) !== JSON.stringify(st.info.dataPosition))
          ) {
            throw new DictlearnError(
              fs.joinPath(st.dir, 'state.json'),
              `data position or scale differs from trainer '${trainers[0].name}' at the same step`,
            );
          }
          states.push(st);
        }
        chosen = states;
        break;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        problems.push(`step_${step}: ${msg}`);
        const next = common[common.indexOf(step) + 1];
        notice(
          `checkpoint step_${step} is damaged (${msg}); ${next === undefined ? 'no older checkpoint to fall back to' : `falling back to step_${next}`}`,
        );
      }
    }
    if (!chosen) {
      throw new RunStateError(
        'no-usable-checkpoint',
        `no usable checkpoint in '${out}': ${problems.join('; ')}`,
        "start over with 'restart'",
      );
    }
    const step = chosen[0].info.step;
    if (step > options.steps) {
      throw new RunStateError(
        'checkpoint-ahead',
        `the checkpoint is at step ${step}, beyond 'steps' ${options.steps}`,
        `ask for at least ${step} steps`,
      );
    }
    notice(
      `resuming from step ${step} (checkpoint ${names.length === 1 ? chosen[0].dir : `${out}/{${names.join(',')}}/checkpoints/step_${step}`})`,
    );
  }
  await fs.ensureDir(out);
  const { writeFileAtomic } = await import('../io/fs.js');
  await writeFileAtomic(runPath, `${JSON.stringify(runConfig, null, 2)}\n`);
  return chosen;
}

/** REFERENCE: s = √(mean‖x‖²) / √d over the sample. */
async function normalisationScale(batches: Tensor[], dim: number): Promise<number> {
  let total = 0;
  let rows = 0;
  for (const b of batches) {
    const s = scope(() => sum(mean(sum(square(b), -1), 0, false)));
    total += (await s.data())[0] * b.shape[0];
    rows += b.shape[0];
    s.dispose();
  }
  const scale = Math.sqrt(total / rows) / Math.sqrt(dim);
  if (!(scale > 0 && Number.isFinite(scale))) {
    throw new DictlearnError(
      'train',
      `cannot normalise: the mean squared norm of the sample is ${total / rows}`,
    );
  }
  return scale;
}

/** `<outDir>/<trainer>/checkpoints/step_<N>`. */
export function checkpointDir(outDir: string, trainer: string, step: number): string {
  return `${outDir.replace(/\/+$/, '')}/${trainer}/checkpoints/step_${step}`;
}

/** The steps of a trainer's checkpoint folders (`step_<N>`), in no particular order. */
async function checkpointSteps(
  fs: typeof import('../io/dirs.js'),
  out: string,
  name: string,
): Promise<number[]> {
  const entries = await fs.listDir(`${out}/${name}/checkpoints`);
  return entries
    .map((e) => /^step_(\d+)$/.exec(e))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => Number(m[1]));
}
