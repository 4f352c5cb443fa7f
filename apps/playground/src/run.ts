/**
 * The page's training run: several settings (a sweep) trained side by side on the same batches,
 * with core's `Trainer` (what `trainSAE` drives), logging the curves the page plots.
 */

import {
  type ActivationSource,
  createArchitecture,
  type Dictionary,
  DictlearnError,
  Trainer,
  type TrainerSpec,
} from '@dictlearn/core';
import type { CurvePoint } from '@dictlearn/report/specs';

/** One setting of a sweep: an architecture config and trainer options. */
export interface RunSetting {
  /** Legend label, e.g. `l1Penalty=0.05`. */
  label: string;
  /** Registry name of the architecture. */
  architecture: string;
  /** Its config (validated by the plugin). */
  config: Record<string, unknown>;
  /** Number of features F. */
  dictSize: number;
  /** Trainer options beyond the architecture (lr, warm-ups, seed; defaults: the architecture's). */
  trainer?: Partial<Omit<TrainerSpec, 'architecture' | 'dictSize' | 'name'>>;
}

/** The metrics the page plots over steps (keys of `@dictlearn/report`'s curve specs), in order. */
export const PLOTTED_METRICS = [
  'loss',
  'mse_loss',
  'l0',
  'frac_variance_explained',
  'dead_fraction',
] as const;

/** Options of {@link runSweep}. */
export interface RunOptions {
  /** Activations; read with `batchSize`, must yield at least `steps` batches. */
  data: ActivationSource;
  /** The settings, trained on the same batches. */
  settings: RunSetting[];
  /** Optimisation steps. */
  steps: number;
  /** Rows per batch. */
  batchSize: number;
  /** Log every this many steps (and at the last step). */
  logEvery: number;
  /** A feature is dead once it has not fired for this many steps (for the dead-fraction curve). */
  deadWindow: number;
  /** Backend name. */
  backend: string;
  /** Called with the points of each logging step (every setting's). */
  onLog?: (points: CurvePoint[]) => void;
  /** Called after every step. */
  onStep?: (step: number, rows: number) => void;
  /** Stops the run after the current step (the dictionaries trained so far are returned). */
  signal?: AbortSignal;
}

/** What {@link runSweep} returns. */
export interface RunResult {
  /** One trained dictionary per setting, in order; the caller disposes them. */
  dictionaries: Dictionary[];
  /** Steps completed. */
  steps: number;
}

/**
 * The points a trainer's step logs give: loss, MSE (the architecture's `mse_loss`, when it logs
 * one), L0, FVE, and the fraction of features silent for `deadWindow` steps or more.
 */
export function curvePoints(
  trainer: string,
  step: number,
  logs: Record<string, number>,
  stepsSinceFired: Int32Array,
  deadWindow: number,
): CurvePoint[] {
  let dead = 0;
  for (const s of stepsSinceFired) if (s >= deadWindow) dead++;
  const values: Record<(typeof PLOTTED_METRICS)[number], number | undefined> = {
    loss: logs.loss,
    mse_loss: logs.mse_loss,
    l0: logs.l0,
    frac_variance_explained: logs.frac_variance_explained,
    dead_fraction: dead / stepsSinceFired.length,
  };
  return PLOTTED_METRICS.filter((m) => Number.isFinite(values[m])).map((metric) => ({
    trainer,
    step,
    metric,
    value: values[metric] as number,
  }));
}

/** Lets the page repaint between steps (a step on a fast backend never yields otherwise). */
const yieldToPage = () => new Promise<void>((r) => setTimeout(r, 0));

/** Trains every setting on the same batches and reports the curves as it goes. */
export async function runSweep(options: RunOptions): Promise<RunResult> {
  const { steps, settings, logEvery, deadWindow, backend } = options;
  if (!Number.isInteger(steps) || steps <= 0) {
    throw new DictlearnError('steps', `must be a positive integer, got ${steps}`);
  }
  if (!Number.isInteger(logEvery) || logEvery <= 0) {
    throw new DictlearnError('log every', `must be a positive integer, got ${logEvery}`);
  }
  if (settings.length === 0) throw new DictlearnError('sweep', 'no settings to train');
  const trainers: Trainer[] = [];
  const iterator = options.data.batches({ batchSize: options.batchSize, backend })[Symbol.asyncIterator]();
  try {
    for (const [i, s] of settings.entries()) {
      const architecture = createArchitecture(s.architecture, s.config, undefined, `setting '${s.label}'`);
      trainers.push(
        new Trainer(
          { ...s.trainer, architecture, dictSize: s.dictSize, name: s.label },
          options.data.dim,
          steps,
          i,
          backend,
        ),
      );
    }
    let rows = 0;
    let done = 0;
    let lastYield = performance.now();
    for (let step = 0; step < steps; step++) {
      if (options.signal?.aborted) break;
      const next = await iterator.next();
      if (next.done) {
        throw new DictlearnError(
          options.data.name,
          `the data ran out after ${step} batches; ${steps} needed`,
        );
      }
      const x = next.value;
      const withLogs = (step + 1) % logEvery === 0 || step + 1 === steps;
      const points: CurvePoint[] = [];
      try {
        for (const tr of trainers) {
          const logs = await tr.update(x, withLogs);
          if (withLogs) points.push(...curvePoints(tr.name, step + 1, logs, tr.stepsSinceFired, deadWindow));
        }
        rows += x.shape[0];
      } finally {
        x.dispose();
      }
      done = step + 1;
      if (withLogs) options.onLog?.(points);
      options.onStep?.(done, rows);
      if (performance.now() - lastYield > 30) {
        await yieldToPage();
        lastYield = performance.now();
      }
    }
    return { dictionaries: trainers.map((tr) => tr.dictionary(1)), steps: done };
  } finally {
    await iterator.return?.();
    for (const tr of trainers) tr.dispose();
  }
}
