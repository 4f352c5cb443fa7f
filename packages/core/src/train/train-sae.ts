import { currentBackend } from '../backend.js';
import type { Dictionary } from '../dictionary.js';
import { keep, scope } from '../engine.js';
import { DictlearnError } from '../errors.js';
import { div, square } from '../ops/elementwise.js';
import { countNonFinite, mean, sum } from '../ops/reduce.js';
import type { ActivationSource } from '../source.js';
import type { Tensor } from '../tensor.js';
import { loadTrainerState, saveTrainerState } from './checkpoint.js';
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
  /** Continue from the latest checkpoint in `outDir` that every trainer has. */
  resume?: boolean;
  /** Backend (default: the current one). */
  backend?: string;
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
    this.#dim = isSource(data) ? data.dim : undefined;
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

/**
 * Trains several dictionaries on one activation stream (DL's `trainSAE`): every trainer steps
 * on the same batch, so one pass over activations feeds a whole sweep. Logs every `logEvery`
 * steps (callback and `<outDir>/log.jsonl`), writes checkpoints at `saveSteps`, resumes from
 * the latest one with `resume`, and saves each final dictionary to `<outDir>/<trainer>/`.
 * A non-finite batch or loss stops the run with the step and trainer named; checkpoints
 * already written stay as they were.
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
  const backend = options.backend ?? currentBackend().name;
  const batchSize = options.batchSize ?? 4096;
  const reader = new BatchReader(options.data, batchSize, backend);
  const logEvery = options.logEvery ?? 100;
  const started = performance.now();
  const fs = options.outDir ? await import('../io/dirs.js') : undefined;

  // The first batches: the normalisation sample (trained on afterwards, in order).
  const pending: Tensor[] = [];
  let dim = reader.dim;
  if (dim === undefined) {
    pending.push(keep(await reader.next(0)));
    dim = pending[0].shape[1];
  }
  const names = options.trainers.map((t, i) => t.name ?? `trainer_${i}`);
  if (new Set(names).size !== names.length) {
    throw new DictlearnError('trainSAE', `trainer names must be unique, got ${names.join(', ')}`);
  }
  const trainers = options.trainers.map(
    (spec, i) => new Trainer({ ...spec, name: names[i] }, dim!, steps, i, backend),
  );
  try {
    let scale = 1;
    let startStep = 0;
    let tokensBefore = 0;
    if (options.resume) {
      const found = await latestCommonCheckpoint(options.outDir!, names);
      if (found !== undefined) {
        let consumed = 0;
        for (const tr of trainers) {
          const st = await loadTrainerState(tr, checkpointDir(options.outDir!, tr.name, found));
          scale = st.scale;
          consumed = st.batchesConsumed;
        }
        startStep = found;
        // Replay the deterministic stream up to where the checkpoint left it.
        for (const t of pending.splice(0)) t.dispose();
        while (reader.consumed < consumed) {
          const skipped = await reader.next(0);
          tokensBefore += skipped.shape[0];
          skipped.dispose();
        }
      }
    }
    if (options.normalize && startStep === 0) {
      const nb = options.normalizeBatches ?? 4;
      while (pending.length < nb) pending.push(keep(await reader.next(0)));
      scale = await normalisationScale(pending, dim);
    }
    const logPath = fs && options.outDir ? fs.joinPath(options.outDir, 'log.jsonl') : undefined;
    if (fs && options.outDir) await fs.ensureDir(options.outDir);
    const lastLogs: TrainLogEntry[] = [];
    let tokens = tokensBefore;
    for (let step = startStep; step < steps; step++) {
      const raw = pending.length > 0 ? pending.shift()! : await reader.next(step);
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
            if (logPath && fs) await fs.appendText(logPath, `${JSON.stringify(entry)}\n`);
          }
        }
      } finally {
        if (x !== raw) x.dispose();
        raw.dispose();
      }
      options.onStep?.(step + 1, tokens);
      if (saveSteps.includes(step + 1)) {
        for (const tr of trainers) {
          await saveTrainerState(tr, checkpointDir(options.outDir!, tr.name, step + 1), {
            scale,
            batchesConsumed: reader.consumed - pending.length,
          });
        }
      }
    }
    for (const t of pending.splice(0)) t.dispose();
    const dictionaries = trainers.map((tr) => tr.dictionary(scale));
    if (options.outDir && fs) {
      for (let i = 0; i < trainers.length; i++) {
        await dictionaries[i].save(fs.joinPath(options.outDir, trainers[i].name));
      }
    }
    return { dictionaries, names, scale, steps, resumedFrom: startStep, lastLogs };
  } finally {
    for (const t of pending) t.dispose();
    for (const tr of trainers) tr.dispose();
  }
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

async function latestCommonCheckpoint(outDir: string, names: string[]): Promise<number | undefined> {
  const { listDir } = await import('../io/dirs.js');
  let common: Set<number> | undefined;
  for (const n of names) {
    const entries = await listDir(`${outDir.replace(/\/+$/, '')}/${n}/checkpoints`);
    const stepsHere = new Set(
      entries
        .map((e) => /^step_(\d+)$/.exec(e))
        .filter((m): m is RegExpExecArray => !!m)
        .map((m) => Number(m[1])),
    );
    common = common ? new Set([...common].filter((s) => stepsHere.has(s))) : stepsHere;
  }
  return common && common.size > 0 ? Math.max(...common) : undefined;
}
