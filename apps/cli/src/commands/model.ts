/**
 * `dictlearn train --source model` and `dictlearn eval --model`: dictionaries trained on a language
 * model's activations (@dictlearn/source-model), one trainer set per hook from one forward pass, and
 * the CE-loss-recovered metrics.
 */
import { ActivationBuffer } from '@dictlearn/buffer';
import {
  createArchitecture,
  type DataPosition,
  type Dictionary,
  DictlearnError,
  type Tensor,
  type TrainerSpec,
  TrainInterruptedError,
  type TrainLogEntry,
  type TrainResult,
  tensor,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import { type EvalMetrics, evaluate, featureDensity } from '@dictlearn/eval';
import { loadDictionary } from '@dictlearn/formats';
import type { SummaryRow } from '@dictlearn/report';
import {
  type HookSource,
  type LossRecovered,
  lossRecovered,
  ModelSource,
  type ModelSourceOptions,
  type ModelSourcePosition,
  parseModelSourceOptions,
  START_POSITION,
} from '@dictlearn/source-model';
import { checkMemory, checkOutDir, openSource } from './plan.js';
import {
  describeTrainer,
  Progress,
  type RunControl,
  safeName,
  type TrainIO,
  type TrainSummary,
} from './train.js';
import { ConfigError, type RunConfig, type TrainerConfig } from './train-config.js';

/** Contexts the end-of-run table's CE-loss recovered is measured on. */
export const SUMMARY_CE_CONTEXTS = 32;

/** The hooks a model source reads, as its options name them. */
function hooksOf(spec: RunConfig['source']): string[] {
  const parsed = parseSpec(spec);
  return typeof parsed.hooks === 'string' ? [parsed.hooks] : [...parsed.hooks];
}

/** The source's options; a bad one is a ConfigError naming it (as openSource reports it). */
function parseSpec(spec: RunConfig['source']): ModelSourceOptions {
  try {
    return parseModelSourceOptions(withoutType(spec));
  } catch (e) {
    if (e instanceof DictlearnError && e.op === "source 'model'") {
      throw new ConfigError(`'source' (model): ${e.message.slice(e.op.length + 2)}`);
    }
    throw e;
  }
}

function withoutType(spec: RunConfig['source']): Record<string, unknown> {
  const { type: _t, ...rest } = spec;
  return rest;
}

/**
 * The source options that decide the rows (recorded in run.json and compared on resume): not
 * `prefetch` or `intraOpThreads`, which change only how fast they come, so a resume may change them.
 */
function dataOptions(spec: Record<string, unknown>): Record<string, unknown> {
  const { prefetch: _p, intraOpThreads: _t, ...rest } = spec;
  return rest;
}

/**
 * Which trainers train on which hook: a trainer that names `hook` trains on it; the others are
 * repeated for every hook (one trainer set per hook). Every hook needs at least one trainer.
 */
export function trainersByHook(
  trainers: readonly TrainerConfig[],
  hooks: readonly string[],
): TrainerConfig[][] {
  trainers.forEach((t, i) => {
    if (t.hook !== undefined && !hooks.includes(t.hook)) {
      throw new ConfigError(
        `'trainers[${i}].hook' is '${t.hook}', which the source does not read (its hooks: ${hooks.join(', ')})`,
      );
    }
  });
  return hooks.map((h) => {
    const mine = trainers.filter((t) => t.hook === undefined || t.hook === h);
    if (mine.length === 0)
      throw new ConfigError(`hook '${h}' has no trainer: add one with hook: ${h}, or one without a hook`);
    return mine;
  });
}

/** One hook's data stream for trainSAE, opened once every hook's start is known. */
interface HookStream extends AsyncIterable<Tensor> {
  readonly dim: number;
}

/**
 * The hooks' streams share forward passes (ModelSource.split), which begin at the earliest start;
 * each trainSAE learns its start only once it has chosen a checkpoint. So each hook registers its
 * start (from the beginning when it first reads, or a checkpoint's position through
 * `dataPosition.resume`), or that it is done without reading; once all have, the shared source
 * opens for the hooks that read. A failed hook aborts the wait for the others.
 */
class HookStreams {
  readonly #starts: (ModelSourcePosition | 'done' | undefined)[];
  readonly #sources: (HookSource | undefined)[];
  readonly #buffers: (ActivationBuffer | undefined)[] = [];
  #resolve!: () => void;
  #reject!: (e: unknown) => void;
  readonly #ready: Promise<void>;
  #opened: ModelSource | undefined;

  constructor(
    readonly hooks: readonly string[],
    readonly dims: readonly number[],
    readonly open: (hooks: string[], starts: Record<string, ModelSourcePosition>) => Promise<ModelSource>,
    readonly buffer: (source: HookSource, hook: number) => ActivationBuffer | undefined,
    readonly batchSize: number,
    readonly backend: string,
  ) {
    this.#starts = hooks.map(() => undefined);
    this.#sources = hooks.map(() => undefined);
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#ready.catch(() => {});
  }

  /** The source that ran the forward passes (for its stats), once open. */
  get source(): ModelSource | undefined {
    return this.#opened;
  }

  #register(i: number, start: ModelSourcePosition | 'done'): void {
    if (this.#starts[i] !== undefined) return;
    this.#starts[i] = start;
    if (this.#starts.some((s) => s === undefined)) return;
    const reading = this.hooks.filter((_, j) => this.#starts[j] !== 'done');
    if (reading.length === 0) {
      this.#resolve();
      return;
    }
    const starts = Object.fromEntries(
      reading.map((h) => [h, this.#starts[this.hooks.indexOf(h)] as ModelSourcePosition]),
    );
    this.open(reading, starts).then((source) => {
      this.#opened = source;
      const split = source.split({ start: starts });
      for (const s of split) this.#sources[this.hooks.indexOf(s.hook.hook)] = s;
      this.#resolve();
    }, this.#reject);
  }

  /** Hook `i` is done (its trainSAE returned or failed): it reads no more. */
  async finish(i: number): Promise<void> {
    this.#register(i, 'done');
    await this.#buffers[i]?.close();
  }

  /** Stops the waits of the others: a hook failed. */
  abort(e: unknown): void {
    this.#reject(e);
  }

  /** Where hook `i`'s data stands (START until it has read). */
  position(i: number): ModelSourcePosition {
    return (
      this.#sources[i]?.position ?? (this.#starts[i] as ModelSourcePosition | undefined) ?? START_POSITION
    );
  }

  /** Hook `i`'s batches from `start` (undefined: from the beginning, registered when first read). */
  stream(i: number, start?: ModelSourcePosition): HookStream {
    if (start) this.#register(i, start);
    let it: AsyncIterator<Tensor> | undefined;
    const self = this;
    return {
      dim: this.dims[i],
      [Symbol.asyncIterator]: () => ({
        async next() {
          if (!it) {
            self.#register(i, start ?? START_POSITION);
            await self.#ready;
            const source = self.#sources[i] as HookSource;
            const buffer = self.buffer(source, i);
            self.#buffers[i] = buffer;
            it = (buffer ?? source.batches({ batchSize: self.batchSize, backend: self.backend }))[
              Symbol.asyncIterator
            ]();
          }
          return it.next();
        },
        async return() {
          await it?.return?.();
          return { value: undefined, done: true as const };
        },
      }),
    };
  }
}

/** The step count of a run without `steps`: every full batch of rows of `epochs` passes over the text. */
async function stepsOfPasses(
  source: ModelSource,
  spec: Record<string, unknown>,
  epochs: number,
  batchSize: number,
): Promise<number> {
  if (spec.outlierMultiple !== undefined) {
    throw new ConfigError(
      "with 'outlierMultiple' the rows a pass gives are known only after running the model: give --steps",
    );
  }
  let rows = 0;
  for await (const c of source.contexts()) {
    if (spec.dropBos) {
      const bos = source.tokenizer.bos;
      for (let t = 0; t < c.tokens.length; t++) if (bos === undefined ? t > 0 : c.tokens[t] !== bos) rows++;
    } else rows += c.tokens.length;
  }
  const steps = Math.floor((epochs * rows) / batchSize);
  if (steps === 0) {
    throw new ConfigError(
      `--batch-size ${batchSize} is more than the ${epochs * rows} rows of ${epochs} pass${epochs === 1 ? '' : 'es'} over the text; lower --batch-size or raise --epochs`,
    );
  }
  return steps;
}

/** Folder of a hook's run inside `--out` (one per hook, like sparsify's one folder per hookpoint). */
export function hookDir(out: string, hook: string): string {
  return `${out.replace(/\/+$/, '')}/${safeName(hook)}`;
}

/**
 * `dictlearn train --source model`: opens the model source, gives each hook its trainers (see
 * {@link trainersByHook}), and runs one trainSAE per hook side by side on the hooks' shares of the
 * same forward passes, each through its own ActivationBuffer, writing into `<out>/<hook>/`. Each
 * checkpoint holds its hook's text position, so a resume continues the text where it stopped (the
 * rows the buffer held are not replayed). Progress shows the model's and the SAE steps' tokens/s.
 */
export async function runModelTrain(
  cfg: RunConfig,
  io: TrainIO,
  control: RunControl = {},
): Promise<TrainSummary> {
  if ((control.resumeOrStart || control.restart || control.allowConfigChange) && !cfg.out) {
    throw new ConfigError('--resume-or-start, --restart and --allow-config-change need --out');
  }
  if ((cfg.resume || control.resumeOrStart) && control.restart) {
    throw new ConfigError('--restart discards the run in --out; it cannot be combined with --resume');
  }
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
  const spec = withoutType(cfg.source);
  if (spec.start !== undefined) {
    throw new ConfigError("'source.start' is set by a resume from a checkpoint; leave it out of the config");
  }
  const hooks = hooksOf(cfg.source);
  const byHook = trainersByHook(cfg.trainers, hooks);
  if (cfg.epochs !== undefined && spec.epochs !== undefined && spec.epochs !== cfg.epochs) {
    throw new ConfigError(`'epochs' is ${cfg.epochs} but 'source.epochs' is ${spec.epochs}; give it once`);
  }
  const epochsAsked = (cfg.epochs ?? spec.epochs) as number | undefined;
  // With --steps alone the text repeats as long as the steps need; otherwise one pass (or the epochs asked).
  const epochs = epochsAsked ?? (cfg.steps > 0 ? Number.POSITIVE_INFINITY : 1);
  const probe = (await openSource({ ...cfg.source, epochs })) as ModelSource;
  if (!(probe instanceof ModelSource))
    throw new DictlearnError('--source model', 'the model source factory gave another source');
  const notices: string[] = [];
  let steps = cfg.steps;
  if (steps === 0) {
    steps = await stepsOfPasses(probe, spec, epochs, cfg.batchSize);
    notices.push(
      `${epochs} pass${epochs === 1 ? '' : 'es'} over the text = ${steps} steps of ${cfg.batchSize} rows per hook`,
    );
  }
  const dims = hooks.map((h) => probe.dims.get(h) as number);
  const { freemem } = await import('node:os');
  const limit = cfg.maxMemory !== undefined ? cfg.maxMemory * 1e9 : freemem();
  const capacity = cfg.bufferRows > 0 ? cfg.bufferRows : undefined;
  hooks.forEach((h, i) => {
    const sizes = byHook[i].map((t) => t.dictSize ?? 4 * dims[i]);
    checkMemory(
      { ...cfg, bufferRows: capacity ?? 2 ** 26 / dims[i] },
      { name: h, dim: dims[i], batches: () => [] } as never,
      sizes,
      limit,
    );
  });
  for (const n of notices) io.progress(n, false);
  const backend = await useBackend(cfg.backend, { log: (m) => io.progress(m, false) });
  const onDevice = backend.name !== 'cpu';
  const options = parseSpec(cfg.source);
  const streams = new HookStreams(
    hooks,
    dims,
    (reading, starts) =>
      ModelSource.open({
        ...options,
        model: probe.model,
        tokenizer: probe.tokenizer,
        hooks: reading,
        epochs,
        // Each hook's own start goes to split(); the source's own start is unused.
        start: Object.values(starts).reduce((a, b) => (b.contexts < a.contexts ? b : a)),
      }),
    (source) =>
      new ActivationBuffer(source, {
        batchSize: cfg.batchSize,
        capacity: capacity !== undefined ? Math.max(capacity, cfg.batchSize) : undefined,
        backend: backend.name,
        sourceBackend: onDevice ? 'cpu' : undefined,
        onDevice,
      }),
    cfg.batchSize,
    backend.name,
  );

  const started = performance.now();
  const tty = control.tty ?? process.stderr.isTTY === true;
  const progress = new Progress({ total: steps, tty, write: (text, live) => io.progress(text, live) });
  const done = hooks.map(() => 0);
  const rows = hooks.map(() => 0);
  const last = new Map<string, TrainLogEntry>();
  const rates = () => {
    const stats = streams.source?.stats;
    const wall = (performance.now() - started) / 1000;
    const model = stats && stats.forwardSeconds > 0 ? stats.tokens / stats.forwardSeconds : undefined;
    // The SAE steps' time is the time not spent waiting for the model (with prefetch the model
    // runs during the steps, so this is not wall time minus the forward passes).
    const saeSeconds = wall - (stats?.waitSeconds ?? 0);
    const trained = rows.reduce((a, b) => a + b, 0);
    const sae = saeSeconds > 0 ? trained / saeSeconds : undefined;
    const overall = wall > 0 && trained > 0 ? trained / wall : undefined;
    const k = (v: number | undefined) => (v === undefined ? '–' : `${v.toFixed(0)}`);
    return {
      model,
      sae,
      overall,
      text: `model ${k(model)} tok/s, SAE ${k(sae)} tok/s, overall ${k(overall)} tok/s`,
    };
  };
  const stats = () =>
    [...last.entries()]
      .map(
        ([k, e]) =>
          `${k.split('_')[0]}: L0 ${e.logs.l0.toFixed(1)} FVE ${e.logs.frac_variance_explained.toFixed(3)}`,
      )
      .join(' | ');
  const names = byHook.map((ts) => ts.map((t, i) => t.name ?? safeName(`${i}_${describeTrainer(t)}`)));
  const runs = hooks.map(async (hook, i): Promise<TrainResult> => {
    const specs: TrainerSpec[] = byHook[i].map((t, j) => ({
      architecture: createArchitecture(t.architecture, t.config ?? {}, undefined, `trainers[${j}]`),
      dictSize: t.dictSize ?? 4 * dims[i],
      name: names[i][j],
      lr: t.lr,
      warmupSteps: t.warmupSteps,
      sparsityWarmupSteps: t.sparsityWarmupSteps,
      resampleSteps: t.resampleSteps,
      decayStart: t.decayStart,
      seed: t.seed,
    }));
    const tracker: DataPosition = {
      current: () => streams.position(i),
      resume: (p) => streams.stream(i, p as ModelSourcePosition),
    };
    try {
      return await trainSAE({
        data: streams.stream(i),
        dataPosition: tracker,
        batchSize: cfg.batchSize,
        trainers: specs,
        steps,
        normalize: cfg.normalize,
        logEvery: cfg.logEvery,
        outDir: cfg.out ? hookDir(cfg.out, hook) : undefined,
        saveSteps: cfg.saveSteps,
        resume: cfg.resume ? true : control.resumeOrStart ? 'if-present' : false,
        restart: control.restart,
        allowConfigChange: control.allowConfigChange,
        dataSpec: {
          source: { ...dataOptions(spec), epochs: epochsAsked ?? null },
          hook,
          bufferRows: cfg.bufferRows,
        },
        signal: control.signal,
        onNotice: (m) => io.progress(`${hook}: ${m}`, false),
        backend: backend.name,
        onLog: (e) => {
          last.set(`${hook} ${e.trainer}`, e);
          if (!tty) {
            io.progress(
              `step ${e.step} ${hook} ${e.trainer}: loss ${e.logs.loss.toFixed(4)} L0 ${e.logs.l0.toFixed(2)} FVE ${e.logs.frac_variance_explained.toFixed(4)} (${rates().text})`,
              false,
            );
          }
        },
        onStep: (step, tokens) => {
          done[i] = step;
          rows[i] = tokens;
          progress.update(
            Math.min(...done),
            rows.reduce((a, b) => a + b, 0),
            tty ? stats() : '',
            rates().text,
          );
        },
      });
    } catch (e) {
      streams.abort(e);
      throw e;
    } finally {
      await streams.finish(i);
    }
  });
  const settled = await Promise.allSettled(runs);
  const seconds = (performance.now() - started) / 1000;
  io.progress('', true);
  const failed = settled
    .filter((s): s is PromiseRejectedResult => s.status === 'rejected')
    .map((s) => s.reason);
  const results = settled.map((s) => (s.status === 'fulfilled' ? s.value : undefined));
  try {
    if (failed.length > 0) {
      const interrupts = failed.filter((e) => e instanceof TrainInterruptedError) as TrainInterruptedError[];
      if (interrupts.length === failed.length) {
        throw new TrainInterruptedError(
          Math.min(...interrupts.map((e) => e.step)),
          steps,
          interrupts.flatMap((e) => e.checkpoints),
        );
      }
      // The first real failure (an interrupt of the others is its consequence).
      throw failed.find((e) => !(e instanceof TrainInterruptedError)) ?? failed[0];
    }
    const final = rates();
    const trainers: SummaryRow[] = [];
    for (let i = 0; i < hooks.length; i++) {
      const r = results[i] as TrainResult;
      const summaries = await summariseHook(probe, options, hooks[i], cfg, r.dictionaries, backend.name);
      summaries.forEach((s, j) => {
        s.name = names[i][j];
        s.architecture = `${hooks.length > 1 ? `${hooks[i]} ` : ''}${describeTrainer(byHook[i][j])}`;
        if (cfg.out) s.savedTo = `${hookDir(cfg.out, hooks[i])}/${names[i][j]}`;
        trainers.push(s);
      });
    }
    const tokens = rows.reduce((a, b) => a + b, 0);
    return {
      backend: backend.name,
      steps: Math.min(...results.map((r) => (r as TrainResult).steps)),
      tokens,
      seconds,
      scoredOn: cfg.evalData
        ? `held-out text (--eval-data: ${cfg.evalData.join(', ')}); CE-loss recovered on its first ${SUMMARY_CE_CONTEXTS} contexts`
        : `the first rows of the text, which the run trained on (pass --eval-data FILE for held-out text); CE-loss recovered on its first ${SUMMARY_CE_CONTEXTS} contexts`,
      trainers,
      modelTokens: streams.source?.stats.tokens ?? 0,
      modelTokensPerSecond: final.model,
      saeTokensPerSecond: final.sae,
    };
  } finally {
    for (const r of results) for (const d of r?.dictionaries ?? []) d.dispose();
    await streams.source?.release();
    await probe.release();
  }
}

/**
 * The table's figures for a hook's dictionaries: the REFERENCE metrics on `evalBatches` batches of
 * the evaluation text (held-out `evalData`, else the training text from its start; the same rows for
 * every dictionary) and the CE-loss recovered on its first {@link SUMMARY_CE_CONTEXTS} contexts.
 */
async function summariseHook(
  probe: ModelSource,
  options: ModelSourceOptions,
  hook: string,
  cfg: RunConfig,
  dicts: readonly Dictionary[],
  backend: string,
): Promise<SummaryRow[]> {
  const source = await ModelSource.open({
    ...options,
    model: probe.model,
    tokenizer: probe.tokenizer,
    hooks: [hook],
    text: cfg.evalData ?? options.text,
    epochs: 1,
    shuffle: false,
    start: undefined,
  });
  // Read the evaluation rows once; every dictionary is scored on the same host copies.
  const host: Float32Array[] = [];
  for await (const x of source.batches({ batchSize: cfg.batchSize, backend: 'cpu' })) {
    host.push((await x.data()) as Float32Array);
    x.dispose();
    if (host.length === cfg.evalBatches) break;
  }
  const d = source.dim;
  const out: SummaryRow[] = [];
  for (const dict of dicts) {
    const batches = host.map((h) => tensor(h, [h.length / d, d], { backend }));
    try {
      const m = await evaluate(dict, batches, { disposeBatches: false });
      const density = await featureDensity(dict, batches, { disposeBatches: false });
      const ce = await lossRecovered(source.model, hook, dict, source.contexts(), {
        maxContexts: SUMMARY_CE_CONTEXTS,
        backend,
        keepSessions: true,
      });
      out.push({
        name: '',
        architecture: '',
        l0: m.l0,
        fve: m.frac_variance_explained,
        deadFraction: density.deadFraction,
        fracRecovered: ce.frac_recovered,
      });
    } finally {
      for (const b of batches) b.dispose();
    }
  }
  return out;
}

/** Options of {@link runModelEval}. */
export interface ModelEvalOptions {
  /** The dictionary (any format @dictlearn/formats reads). */
  checkpoint: string;
  /** dictionary_learning's class, when its config.json is missing. */
  dictClass?: string;
  /** The `model` source (one hook). */
  source: RunConfig['source'];
  /** Rows per batch of the reconstruction metrics. */
  batchSize: number;
  /** Batches of the reconstruction metrics. */
  batches: number;
  /** Contexts the CE-loss recovered is measured on. */
  contexts: number;
  /** Backend. */
  backend: string;
}

/**
 * `dictlearn eval PATH --model m.onnx --hook H --text FILE`: the REFERENCE metrics on the hook's rows
 * of the text (`batches` × `batchSize` rows from its start) and, beside them, the CE-loss recovered
 * and KL on its first `contexts` contexts.
 */
export async function runModelEval(o: ModelEvalOptions): Promise<EvalMetrics & LossRecovered> {
  const hooks = hooksOf(o.source);
  if (hooks.length !== 1) {
    throw new ConfigError(`--hook names ${hooks.length} hooks; a dictionary is evaluated on one (its own)`);
  }
  const backend = await useBackend(o.backend);
  const { dictionary: dict } = await loadDictionary(o.checkpoint, {
    backend: backend.name,
    dictClass: o.dictClass,
  });
  const source = (await openSource({ ...o.source, epochs: 1 })) as ModelSource;
  try {
    if (source.dim !== dict.activationDim) {
      throw new DictlearnError(
        `--hook ${hooks[0]}`,
        `the model's values are ${source.dim} wide but the dictionary at ${o.checkpoint} expects ${dict.activationDim}; was it trained on another hook?`,
      );
    }
    const metrics = await evaluate(dict, source.batches({ batchSize: o.batchSize, backend: backend.name }), {
      maxBatches: o.batches,
    });
    const ce = await lossRecovered(source.model, hooks[0], dict, source.contexts(), {
      maxContexts: o.contexts,
      backend: backend.name,
    });
    return { ...metrics, ...ce };
  } finally {
    dict.dispose();
    await source.release();
  }
}
