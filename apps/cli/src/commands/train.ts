import { ActivationBuffer } from '@dictlearn/buffer';
import {
  type ActivationSource,
  createArchitecture,
  type Dictionary,
  DictlearnError,
  findPlugin,
  type GroundTruthSource,
  listPlugins,
  type SourceFactory,
  type TrainerSpec,
  type TrainLogEntry,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import { evaluate, featureDensity, groundTruthRecovery } from '@dictlearn/eval';
import { ConfigError, type RunConfig } from './train-config.js';

/** Final figures of one trainer. */
export interface TrainerSummary {
  /** Trainer name. */
  name: string;
  /** Architecture and hyper-parameters. */
  architecture: string;
  /** Mean non-zero features per row. */
  l0: number;
  /** Fraction of variance explained. */
  fve: number;
  /** Fraction of features that never fired on the evaluation batches. */
  deadFraction: number;
  /** Mean max cosine of the true features to the learned ones (synthetic sources). */
  mmcs?: number;
  /** Fraction of true features with a learned decoder row at cosine > 0.9 (synthetic sources). */
  recovered?: number;
  /** Where the dictionary was saved. */
  savedTo?: string;
}

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
  /** Per trainer. */
  trainers: TrainerSummary[];
}

/** Sink for progress output. */
export interface TrainIO {
  /** Progress lines and the live bar (stderr). */
  progress(text: string, live: boolean): void;
}

function describeTrainer(t: RunConfig['trainers'][number]): string {
  const cfg =
    t.config && Object.keys(t.config).length > 0
      ? `(${Object.entries(t.config)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ')})`
      : '';
  return `${t.architecture}${cfg}`;
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._=-]+/g, '_').replace(/^_+|_+$/g, '');
}

/** Builds the source of a run from the registry (`@dictlearn/buffer/register` provides the built-ins). */
export async function makeSource(spec: RunConfig['source']): Promise<ActivationSource> {
  const factory = findPlugin<SourceFactory>('source', spec.type);
  if (!factory) {
    throw new ConfigError(
      `unknown source '${spec.type}' (registered: ${listPlugins('source').join(', ') || 'none'})`,
    );
  }
  const { type: _type, ...options } = spec;
  return await factory.create(options);
}

/** Runs `dictlearn train` from a resolved config. */
export async function runTrain(cfg: RunConfig, io: TrainIO): Promise<TrainSummary> {
  const backend = await useBackend(cfg.backend, { log: (m) => io.progress(m, false) });
  const source = await makeSource(cfg.source);
  const specs: TrainerSpec[] = cfg.trainers.map((t, i) => {
    const architecture = createArchitecture(t.architecture, t.config ?? {}, undefined, `trainers[${i}]`);
    return {
      architecture,
      dictSize: t.dictSize,
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
  let lastDraw = 0;
  const draw = (step: number, tokens: number, force = false) => {
    const now = performance.now();
    if (!force && now - lastDraw < 250) return;
    lastDraw = now;
    const secs = (now - started) / 1000;
    const width = 24;
    const filled = Math.round((step / cfg.steps) * width);
    const stats = [...last.values()]
      .map(
        (e) =>
          `${e.trainer.split('_')[0]}: loss ${e.logs.loss.toFixed(3)} L0 ${e.logs.l0.toFixed(1)} FVE ${e.logs.frac_variance_explained.toFixed(3)}`,
      )
      .join(' | ');
    io.progress(
      `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${cfg.steps} ${(tokens / Math.max(secs, 1e-9)).toFixed(0)} tok/s ${stats}`,
      true,
    );
  };
  const result = await trainSAE({
    data,
    batchSize: cfg.batchSize,
    trainers: specs,
    steps: cfg.steps,
    normalize: cfg.normalize,
    logEvery: cfg.logEvery,
    outDir: cfg.out,
    saveSteps: cfg.saveSteps,
    resume: cfg.resume,
    backend: backend.name,
    onLog: (e) => {
      last.set(e.trainer, e);
      if (!process.stderr.isTTY) {
        io.progress(
          `step ${e.step} ${e.trainer}: loss ${e.logs.loss.toFixed(4)} L0 ${e.logs.l0.toFixed(2)} FVE ${e.logs.frac_variance_explained.toFixed(4)}`,
          false,
        );
      }
    },
    onStep: (step, tokens) => draw(step, tokens, step === cfg.steps),
  });
  const seconds = (performance.now() - started) / 1000;
  io.progress('', true);
  try {
    const truth =
      'groundTruth' in source ? (source as GroundTruthSource).groundTruth(backend.name) : undefined;
    const trainers: TrainerSummary[] = [];
    for (let i = 0; i < result.dictionaries.length; i++) {
      const dict = result.dictionaries[i];
      trainers.push(
        await summarise(
          dict,
          source,
          cfg,
          specs[i].name!,
          describeTrainer(cfg.trainers[i]),
          truth,
          backend.name,
        ),
      );
      if (cfg.out) trainers[i].savedTo = `${cfg.out.replace(/\/+$/, '')}/${specs[i].name}`;
    }
    truth?.dispose();
    const tokens = result.lastLogs[0]?.tokens ?? cfg.steps * cfg.batchSize;
    return { backend: backend.name, steps: result.steps, tokens, seconds, trainers };
  } finally {
    for (const d of result.dictionaries) d.dispose();
  }
}

/** Evaluation batches: fresh ones far from the training stream where the source can seek. */
function evalBatches(
  source: ActivationSource,
  cfg: RunConfig,
  backend: string,
): AsyncIterable<import('@dictlearn/core').Tensor> {
  const options = { batchSize: cfg.batchSize, backend, start: 1_000_000_000 };
  return source.batches(options);
}

async function summarise(
  dict: Dictionary,
  source: ActivationSource,
  cfg: RunConfig,
  name: string,
  architecture: string,
  truth: import('@dictlearn/core').Tensor | undefined,
  backend: string,
): Promise<TrainerSummary> {
  const m = await evaluate(dict, evalBatches(source, cfg, backend), { maxBatches: cfg.evalBatches });
  const density = await featureDensity(dict, evalBatches(source, cfg, backend), {
    maxBatches: cfg.evalBatches,
  });
  const s: TrainerSummary = {
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
  const head = ['trainer', 'L0', 'FVE', 'dead', 'MMCS', 'recovered'];
  const rows = s.trainers.map((t) => [
    t.architecture,
    t.l0.toFixed(2),
    t.fve.toFixed(4),
    `${(t.deadFraction * 100).toFixed(1)}%`,
    t.mmcs === undefined ? '–' : t.mmcs.toFixed(4),
    t.recovered === undefined ? '–' : `${(t.recovered * 100).toFixed(1)}%`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const lines = [
    `trained ${s.trainers.length} dictionaries for ${s.steps} steps (${s.tokens} activations) on ${s.backend} in ${s.seconds.toFixed(1)} s (${(s.tokens / s.seconds).toFixed(0)} activations/s)`,
    '',
    fmt(head),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(fmt),
  ];
  const saved = s.trainers.filter((t) => t.savedTo);
  if (saved.length) lines.push('', ...saved.map((t) => `saved ${t.savedTo}`));
  return lines.join('\n');
}

export { DictlearnError };
