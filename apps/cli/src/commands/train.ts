import { ActivationBuffer } from '@dictlearn/buffer';
import {
  type ActivationSource,
  createArchitecture,
  type Dictionary,
  DictlearnError,
  type GroundTruthSource,
  RunStateError,
  type TrainerSpec,
  TrainInterruptedError,
  type TrainLogEntry,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import { evaluate, featureDensity, groundTruthRecovery } from '@dictlearn/eval';
import { type SummaryRow, writeDensityFile, writeSummaryFile } from '@dictlearn/report';
import { openSource, planRun, type RunPlan } from './plan.js';
import { ConfigError, type RunConfig } from './train-config.js';

/** What a run returns. */
export interface TrainSummary {
  /** Backend used. */
  backend: string;
  /** Steps and rows. */
  steps: number;
  /** Rows trained on. */
  tokens: number;
  /** Wall-clock seconds. */
  seconds: number;
  /** What the figures of the table were measured on (held-out rows, training rows, fresh samples). */
  scoredOn: string;
  /** Per trainer. */
  trainers: SummaryRow[];
  /** Model sources: tokens run through the language model by this process (every hook shares them). */
  modelTokens?: number;
  /** Model sources: tokens the language model ran per second of its forward passes. */
  modelTokensPerSecond?: number;
  /** Model sources: rows the SAE steps trained on per second of the time outside the forward passes. */
  saeTokensPerSecond?: number;
}

/** Sink for progress output. */
export interface TrainIO {
  /** Progress lines and the live bar (stderr). */
  progress(text: string, live: boolean): void;
}

/** How one invocation treats its output folder, beside the run config. */
export interface RunControl {
  /** `--resume-or-start`: resume when there is a checkpoint, else start from step 0. */
  resumeOrStart?: boolean;
  /** `--restart`: discard the run already in `--out` (checkpoints, log, run.json). */
  restart?: boolean;
  /** `--allow-config-change`: resume although the configuration differs from run.json. */
  allowConfigChange?: boolean;
  /** Stops training after the current step (Ctrl-C). */
  signal?: AbortSignal;
  /** Whether stderr is a terminal (live bar) or a pipe (periodic lines); default: stderr's. */
  tty?: boolean;
}

/** `1m05s`, `2h03m`, `42s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * Progress of a run: on a terminal, a live bar with step/total, rate, elapsed time and ETA
 * (redrawn at most every 250 ms); into a pipe or file, one line every `pipeEvery` seconds
 * (`step N/total (p%) R tok/s, elapsed E, ETA T`) and at the last step, so a log shows the run is
 * alive between log steps. Rate and ETA are measured from the first step this process took (a
 * resumed run's skipped steps do not count, nor does start-up).
 */
export class Progress {
  readonly #total: number;
  readonly #tty: boolean;
  readonly #now: () => number;
  readonly #pipeEvery: number;
  readonly #write: (text: string, live: boolean) => void;
  readonly #started: number;
  #first: { step: number; tokens: number; t: number } | undefined;
  #lastDraw = Number.NEGATIVE_INFINITY;
  #lastLine: number;

  constructor(options: {
    total: number;
    tty: boolean;
    write: (text: string, live: boolean) => void;
    now?: () => number;
    pipeEvery?: number;
  }) {
    this.#total = options.total;
    this.#tty = options.tty;
    this.#write = options.write;
    this.#now = options.now ?? (() => performance.now() / 1000);
    this.#pipeEvery = options.pipeEvery ?? 10;
    this.#started = this.#now();
    this.#lastLine = this.#started;
  }

  /**
   * Reports that `step` steps are done after `tokens` rows; `stats` is appended on a terminal;
   * `rateText` replaces the measured `N tok/s` (a model source shows the model's and the SAE's rates).
   */
  update(step: number, tokens: number, stats = '', rateText?: string): void {
    const now = this.#now();
    this.#first ??= { step, tokens, t: now };
    const last = step >= this.#total;
    const f = this.#first;
    const dt = now - f.t;
    const rate = dt > 0 && tokens > f.tokens ? (tokens - f.tokens) / dt : undefined;
    const stepsPerSec = dt > 0 && step > f.step ? (step - f.step) / dt : undefined;
    const eta = last ? 0 : stepsPerSec ? (this.#total - step) / stepsPerSec : undefined;
    rateText ??= rate === undefined ? '– tok/s' : `${rate.toFixed(0)} tok/s`;
    const timing = `elapsed ${formatDuration(now - this.#started)}, ETA ${eta === undefined ? '?' : formatDuration(eta)}`;
    if (this.#tty) {
      if (!last && now - this.#lastDraw < 0.25) return;
      this.#lastDraw = now;
      const width = 24;
      const filled = Math.round((Math.min(step, this.#total) / this.#total) * width);
      this.#write(
        `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${this.#total} ${rateText} ${timing}${stats ? ` | ${stats}` : ''}`,
        true,
      );
    } else if (last || now - this.#lastLine >= this.#pipeEvery) {
      this.#lastLine = now;
      const pct = ((100 * step) / this.#total).toFixed(1);
      this.#write(`step ${step}/${this.#total} (${pct}%) ${rateText}, ${timing}`, false);
    }
  }
}

/** Quotes an argument for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `dictlearn train <args> --resume`: the same command line, made to resume. */
export function resumeCommand(trainArgs: string[]): string {
  const kept = trainArgs.filter((a) => !/^--(resume|resume-or-start|restart)(=.*)?$/.test(a));
  return ['dictlearn', 'train', ...kept, '--resume'].map(shellQuote).join(' ');
}

/** The one line printed when Ctrl-C stopped a run: where it stopped, what was saved, how to resume. */
export function interruptedMessage(
  e: TrainInterruptedError,
  out: string | undefined,
  trainArgs?: string[],
): string {
  const head = `interrupted at step ${e.step}/${e.steps}`;
  if (e.checkpoints.length === 0) {
    return out
      ? `${head} before the first step; nothing was saved`
      : `${head}; nothing was saved (no --out to write a checkpoint into)`;
  }
  const dir =
    e.checkpoints.length === 1
      ? e.checkpoints[0]
      : e.checkpoints[0].replace(
          /\/[^/]+\/checkpoints\/(step_\d+)$/,
          `/{${e.checkpoints.map((c) => c.split('/').at(-3)).join(',')}}/checkpoints/$1`,
        );
  const resume = trainArgs ? `; resume with: ${resumeCommand(trainArgs)}` : '';
  return `${head}; checkpoint saved to ${dir}${resume}`;
}

/** What the CLI suggests for each refusal of trainSAE (in flags rather than option names). */
export function runStateMessage(e: RunStateError, out: string | undefined): string {
  const hints: Partial<Record<RunStateError['problem'], string>> = {
    'in-use': `wait for it or pass a different --out (if no run is using it, delete ${out ?? '<out>'}/.lock)`,
    'run-exists':
      'pass --resume to continue it, --restart to discard its checkpoints and log, or a different --out',
    'no-checkpoint':
      'run without --resume to start, or pass --resume-or-start to start from step 0 when there is no checkpoint',
    'config-changed':
      'resume with the same settings, or pass --allow-config-change to continue with the new ones',
    'checkpoint-ahead': e.hint.replace('ask for at least', 'pass --steps'),
    'no-usable-checkpoint': 'pass --restart to start over',
  };
  return `${e.detail}; ${hints[e.problem] ?? e.hint}`;
}

/**
 * Turns SIGINT and SIGTERM into an abort of `signal` (training stops after the current step
 * and saves a checkpoint); a second signal exits at once (the lock on --out is still removed,
 * by an exit hook). `exitCode` is 130 for SIGINT, 143 for SIGTERM. Call `dispose()` when done.
 */
export function catchInterrupts(say: (text: string) => void): {
  signal: AbortSignal;
  exitCode: () => number;
  dispose: () => void;
} {
  const ctl = new AbortController();
  let code = 130;
  const handler = (name: NodeJS.Signals) => {
    const c = name === 'SIGTERM' ? 143 : 130;
    if (ctl.signal.aborted) {
      say(`${name} again: quitting at once (the last checkpoint is kept)`);
      process.exit(c);
      return;
    }
    code = c;
    say(
      `${name}: stopping after the current step to save a checkpoint (${name === 'SIGINT' ? 'Ctrl-C' : 'send it'} again to quit at once)`,
    );
    ctl.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: ctl.signal,
    exitCode: () => code,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** A trainer as the table shows it: `standard(l1Penalty=0.1)`. */
export function describeTrainer(t: RunConfig['trainers'][number]): string {
  const cfg =
    t.config && Object.keys(t.config).length > 0
      ? `(${Object.entries(t.config)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')})`
      : '';
  return `${t.architecture}${cfg}`;
}

/** `s` as a folder name (letters, digits, `.`, `_`, `=`, `-`). */
export function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._=-]+/g, '_').replace(/^_+|_+$/g, '');
}

/**
 * Builds the source of a run from the registry (`@dictlearn/buffer/register` provides the
 * built-ins); a bad option is a ConfigError naming it.
 */
export async function makeSource(spec: RunConfig['source']): Promise<ActivationSource> {
  return openSource(spec);
}

function withoutEpochs(source: RunConfig['source']): Record<string, unknown> {
  const { epochs: _epochs, ...rest } = source;
  return rest;
}

/** Runs `dictlearn train` from a resolved config. */
export async function runTrain(cfg: RunConfig, io: TrainIO, control: RunControl = {}): Promise<TrainSummary> {
  if (cfg.source.type === 'model') {
    const { runModelTrain } = await import('./model.js');
    const summary = await runModelTrain(cfg, io, control);
    // The final table beside the run, for dictlearn report.
    if (cfg.out) await writeSummaryFile(cfg.out, summary);
    return summary;
  }
  if ((control.resumeOrStart || control.restart || control.allowConfigChange) && !cfg.out) {
    throw new ConfigError('--resume-or-start, --restart and --allow-config-change need --out');
  }
  if ((cfg.resume || control.resumeOrStart) && control.restart) {
    throw new ConfigError('--restart discards the run in --out; it cannot be combined with --resume');
  }
  // Everything that can be refused is refused before the backend starts or memory is allocated.
  const plan = await planRun(cfg);
  cfg = plan.cfg;
  const source = plan.source;
  for (const n of plan.notices) io.progress(n, false);
  const backend = await useBackend(cfg.backend, { log: (m) => io.progress(m, false) });
  const specs: TrainerSpec[] = cfg.trainers.map((t, i) => {
    const architecture = createArchitecture(t.architecture, t.config ?? {}, undefined, `trainers[${i}]`);
    return {
      architecture,
      dictSize: t.dictSize ?? 4 * source.dim,
      name: t.name ?? safeName(`${i}_${describeTrainer(t)}`),
      lr: t.lr,
      warmupSteps: t.warmupSteps,
      sparsityWarmupSteps: t.sparsityWarmupSteps,
      resampleSteps: t.resampleSteps,
      decayStart: t.decayStart,
      seed: t.seed,
    };
  });
  const data =
    cfg.bufferRows > 0
      ? new ActivationBuffer(source, {
          batchSize: cfg.batchSize,
          capacity: cfg.bufferRows,
          backend: backend.name,
        })
      : source;
  const last = new Map<string, TrainLogEntry>();
  const started = performance.now();
  const tty = control.tty ?? process.stderr.isTTY === true;
  const progress = new Progress({ total: cfg.steps, tty, write: (text, live) => io.progress(text, live) });
  const stats = () =>
    [...last.values()]
      .map(
        (e) =>
          `${e.trainer.split('_')[0]}: loss ${e.logs.loss.toFixed(3)} L0 ${e.logs.l0.toFixed(1)} FVE ${e.logs.frac_variance_explained.toFixed(3)}`,
      )
      .join(' | ');
  const result = await trainSAE({
    data,
    batchSize: cfg.batchSize,
    trainers: specs,
    steps: cfg.steps,
    normalize: cfg.normalize,
    logEvery: cfg.logEvery,
    outDir: cfg.out,
    saveSteps: cfg.saveSteps,
    resume: cfg.resume ? true : control.resumeOrStart ? 'if-present' : false,
    restart: control.restart,
    allowConfigChange: control.allowConfigChange,
    // What trainSAE cannot see in the stream itself: compared with run.json on resume. The
    // number of epochs, like --steps, only says how long to go on, so it may change.
    dataSpec: { source: withoutEpochs(cfg.source), bufferRows: cfg.bufferRows },
    signal: control.signal,
    onNotice: (m) => io.progress(m, false),
    backend: backend.name,
    onLog: (e) => {
      last.set(e.trainer, e);
      if (!tty) {
        io.progress(
          `step ${e.step} ${e.trainer}: loss ${e.logs.loss.toFixed(4)} L0 ${e.logs.l0.toFixed(2)} FVE ${e.logs.frac_variance_explained.toFixed(4)}`,
          false,
        );
      }
    },
    onStep: (step, tokens) => progress.update(step, tokens, tty ? stats() : ''),
  });
  const seconds = (performance.now() - started) / 1000;
  io.progress('', true);
  try {
    const truth =
      'groundTruth' in source ? (source as GroundTruthSource).groundTruth(backend.name) : undefined;
    const trainers: SummaryRow[] = [];
    for (let i = 0; i < result.dictionaries.length; i++) {
      const dict = result.dictionaries[i];
      trainers.push(
        await summarise(
          dict,
          plan,
          cfg,
          specs[i].name!,
          describeTrainer(cfg.trainers[i]),
          truth,
          backend.name,
          cfg.out ? `${cfg.out.replace(/\/+$/, '')}/${specs[i].name}` : undefined,
        ),
      );
      if (cfg.out) trainers[i].savedTo = `${cfg.out.replace(/\/+$/, '')}/${specs[i].name}`;
    }
    truth?.dispose();
    const tokens = result.lastLogs[0]?.tokens ?? cfg.steps * cfg.batchSize;
    const summary = {
      backend: backend.name,
      steps: result.steps,
      tokens,
      seconds,
      scoredOn: plan.scoredOn,
      trainers,
    };
    // The final table beside the run, for dictlearn report.
    if (cfg.out) await writeSummaryFile(cfg.out, summary);
    return summary;
  } finally {
    for (const d of result.dictionaries) d.dispose();
  }
}

/**
 * Evaluation batches: the held-out files of --eval-data; for a synthetic source fresh samples
 * far from the training stream; for files without --eval-data the first rows, read in order
 * (training rows, and the summary says so).
 */
function evalBatches(
  plan: RunPlan,
  cfg: RunConfig,
  backend: string,
): AsyncIterable<import('@dictlearn/core').Tensor> {
  const options = { batchSize: cfg.batchSize, backend, start: plan.evalStart };
  if (plan.evalStart === undefined) delete options.start;
  return plan.evalSource.batches(options);
}

async function summarise(
  dict: Dictionary,
  source: RunPlan,
  cfg: RunConfig,
  name: string,
  architecture: string,
  truth: import('@dictlearn/core').Tensor | undefined,
  backend: string,
  folder?: string,
): Promise<SummaryRow> {
  const m = await evaluate(dict, evalBatches(source, cfg, backend), { maxBatches: cfg.evalBatches });
  const density = await featureDensity(dict, evalBatches(source, cfg, backend), {
    maxBatches: cfg.evalBatches,
  });
  // The firing frequencies beside the dictionary: dictlearn report's density histogram.
  if (folder) await writeDensityFile(folder, density.density, density.tokens, source.scoredOn);
  const s: SummaryRow = {
    name,
    architecture,
    l0: m.l0,
    fve: m.frac_variance_explained,
    deadFraction: density.deadFraction,
  };
  if (truth) {
    const rows = dict.decoderRows();
    try {
      const r = await groundTruthRecovery(rows, truth, 0.9);
      s.mmcs = r.mmcs;
      s.recovered = r.fractionRecovered;
    } finally {
      rows.dispose();
    }
  }
  return s;
}

/** The final table. */
export function formatSummary(s: TrainSummary): string {
  const ce = s.trainers.some((t) => t.fracRecovered !== undefined);
  const head = ['trainer', 'L0', 'FVE', 'dead', 'MMCS', 'recovered', ...(ce ? ['CE rec'] : [])];
  const rows = s.trainers.map((t) => [
    t.architecture,
    t.l0.toFixed(2),
    t.fve.toFixed(4),
    `${(t.deadFraction * 100).toFixed(1)}%`,
    t.mmcs === undefined ? '–' : t.mmcs.toFixed(4),
    t.recovered === undefined ? '–' : `${(t.recovered * 100).toFixed(1)}%`,
    ...(ce ? [t.fracRecovered === undefined ? '–' : t.fracRecovered.toFixed(4)] : []),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const lines = [
    `trained ${s.trainers.length} dictionaries for ${s.steps} steps (${s.tokens} activations) on ${s.backend} in ${s.seconds.toFixed(1)} s (${(s.tokens / s.seconds).toFixed(0)} activations/s${s.modelTokensPerSecond === undefined ? '' : `; model ${s.modelTokensPerSecond.toFixed(0)} tok/s, SAE steps ${(s.saeTokensPerSecond ?? 0).toFixed(0)} tok/s`})`,
    '',
    `scored on ${s.scoredOn}`,
    fmt(head),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(fmt),
  ];
  const saved = s.trainers.filter((t) => t.savedTo);
  if (saved.length) lines.push('', ...saved.map((t) => `saved ${t.savedTo}`));
  return lines.join('\n');
}

export { DictlearnError, RunStateError, TrainInterruptedError };
