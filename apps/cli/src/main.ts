import '@dictlearn/backend-cpu/register';
import '@dictlearn/backend-webgpu/register';
import '@dictlearn/backend-cuda/register';
import '@dictlearn/arch-standard/register';
import '@dictlearn/arch-topk/register';
import '@dictlearn/arch-jumprelu/register';
import '@dictlearn/arch-gated/register';
import '@dictlearn/arch-lista/register';
import '@dictlearn/arch-blockdiag/register';
import '@dictlearn/buffer/register';
import '@dictlearn/source-model/register';
import { parseArgs } from 'node:util';
import { DictlearnError } from '@dictlearn/core';
import { ARCH_FLAGS, sweepConfigs, sweptKeys } from './commands/arch-flags.js';
import { formatBench, runBench } from './commands/bench.js';
import { formatMetrics, runEval } from './commands/eval.js';
import { formatEvalExtras, isBlockDiagonal, parseCodes, runEvalExtras } from './commands/eval-codes.js';
import { EXPERIMENT_USAGE, experimentCommand } from './commands/experiment-cli.js';
import { encodeCommand, featuresCommand } from './commands/features.js';
import { convertCommand, inspectCommand } from './commands/formats.js';
import { MODEL_FLAGS, modelSourceFromFlags } from './commands/model-flags.js';
import { REPORT_USAGE, reportCommand } from './commands/report.js';
import {
  catchInterrupts,
  formatSummary,
  interruptedMessage,
  type RunControl,
  RunStateError,
  runStateMessage,
  runTrain,
  TrainInterruptedError,
} from './commands/train.js';
import {
  ConfigError,
  flagNumber,
  numberList,
  type RunConfig,
  readConfigFile,
  resolveConfig,
} from './commands/train-config.js';
import { archsDemoConfig, demoConfig } from './demo.js';

const USAGE = `usage: dictlearn [command] [options]

With no command: the synthetic ground-truth demo (trains standard SAEs at several sparsity
penalties in one pass and reports how many true features each recovered).

commands:
  demo      the same demo: --seed N (data and init; default 0), --steps N (default 1000), --json
            --out DIR             write the run folder (dictionaries, log.jsonl, summary.json) for
                                  dictlearn report DIR; an existing run there is replaced
            --log-every N         log every N steps (default 100)
            --archs               one dictionary of each architecture instead (standard, topk,
                                  batch-topk, jumprelu, gated), each with its tuned settings, on
                                  one synthetic stream for 1500 steps; the same run as a config
                                  file: dictlearn train --config apps/cli/examples/archs-demo.yaml
  train     train dictionaries
            --config FILE         JSON or YAML run config (flags below override it)
            --source NAME         synthetic (default), npy, safetensors, model
            --model FILE --hook H[,H2] --text FILE [--tokenizer FILE --context-length N
            --forward-batch N --drop-bos]   a language model's activations (--source model):
                                  one trainer set per hook, folders --out DIR/<hook>/<trainer>
            --prefetch N --model-threads N   forward passes run ahead in a worker thread
                                  (default 1; 0: none) and onnxruntime's threads (default 1)
            --data FILE           activation file(s) for npy/safetensors (repeatable)
            --dim D --num-features N --mean-active K --noise S --data-seed N   synthetic data
            --arch NAME           standard (default), april-update, tied, or any registered
                                  architecture; a comma list trains each
            --l1 L  --k K  --aux-k N  --dead-tokens N  --target-l0 L  --sparsity-penalty C
            --bandwidth E  --p-end P  --aux-k-alpha A
                                  architecture hyper-parameters; each takes a comma list, and
                                  the run trains every combination for every architecture that
                                  accepts the key (a sweep)
            --set KEY=V[,V...]    any other architecture config key, as a sweep (repeatable)
            --dict-size F         features per dictionary (default 4·d; d from the file header)
            --steps N --batch-size B --lr LR --warmup-steps N --sparsity-warmup-steps N
            --epochs N            passes over npy/safetensors data, reshuffled each (seed: --data-seed);
                                  default: as many as --steps needs, or 1 without --steps
            --eval-data FILE      held-out activation file(s) the final table is scored on (repeatable)
            --max-memory GB       refuse a run estimated to need more (default: the memory free now)
            --resample-steps N    resample dead features every N steps
            --seed N              init seed
            --normalize           train on activations scaled to mean squared norm d
            --buffer-rows N       shuffle through an activation buffer of N rows
            --backend NAME        auto (default), cpu, ...
            --out DIR             write dictionaries, checkpoints and log.jsonl here
            --save-steps N,N      checkpoint after these steps;  --resume  continue from the latest
            --resume-or-start     resume if --out has a checkpoint, else start
            --restart             discard the run already in --out;  --allow-config-change  resume anyway
            --log-every N         --json  print the final table as JSON
  eval      dictlearn eval PATH --source NAME [--data FILE ...] [source flags] [--batches N] [--json]
            --model FILE --hook H --text FILE [--contexts N]: the model's activations, and
            CE-loss recovered and KL on the first N contexts (default 64) beside the metrics
            PATH: a dictlearn folder, dictionary_learning's ae.pt (or its folder), a SAELens or
            a sparsify folder;  --dict-class C  DL's class when its config.json is missing
            --codes fista|omp     also the amortisation gap: FVE of the encoder vs inference-time
                                  codes on the same decoder at equal L0 (--codes-l1 L: FISTA's λ,
                                  default matched to the encoder's L0; --codes-iterations N;
                                  --atoms K: OMP's atoms, default the encoder's L0)
            a block-diagonal dictionary also gets its L0 and dead fraction per head
  inspect   dictlearn inspect PATH [--json]: format, architecture, sizes, dtypes, norms
  convert   dictlearn convert IN OUT --to dictlearn|dl|saelens|sparsify|onnx [--force]
            (reads IN in any format, writes the folder OUT, checks it reads back the same;
            onnx: encode.onnx, decode.onnx, forward.onnx)
  features  dictlearn features PATH --model m.onnx --hook H --text FILE: an HTML page (features.html in PATH's folder,
            or --out FILE) of the most active features' top contexts, nearest vocabulary tokens
            beside a random direction's, and the same view of the raw activation dimensions
            --features N (16)  --ids I,J  --contexts N (8 per feature)  --max-contexts N
            --context-length N (128)  --nearest N (10)  --seed N  --no-neurons  --keep-bos
            --json OUT (every number on the page)  --tokenizer FILE  --backend NAME
  encode    dictlearn encode PATH --model m.onnx --hook H --prompt "text" [--top N] [--no-bos] [--json]:
            per token of the prompt, its top features and their values
${REPORT_USAGE}${EXPERIMENT_USAGE}
  bench     matmul GFLOP/s and one training step per backend, beside numpy
            --json --reps N --batch B --d D --features F --include-ts --no-numpy

--debug (anywhere): print the stack trace of an error. Errors are one line; exit code 2 for a bad
flag or config, 1 for a run that failed (bad data, unwritable --out, not enough memory).
`;

const SOURCE_FLAGS = {
  ...MODEL_FLAGS,
  source: { type: 'string' },
  data: { type: 'string', multiple: true },
  dim: { type: 'string' },
  'num-features': { type: 'string' },
  'mean-active': { type: 'string' },
  noise: { type: 'string' },
  'data-seed': { type: 'string' },
  'batch-size': { type: 'string' },
  backend: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

type Values = Record<string, string | boolean | string[] | undefined>;

function sourceFromFlags(values: Values, base?: RunConfig['source']): RunConfig['source'] {
  const type =
    (values.source as string | undefined) ??
    base?.type ??
    (values.model !== undefined ? 'model' : 'synthetic');
  const model = modelSourceFromFlags(values, base, type);
  if (model) return model;
  const src: RunConfig['source'] = { ...(base && base.type === type ? base : {}), type };
  const files = values.data as string[] | undefined;
  if (files) src.files = files;
  const set = (key: string, flag: string) => {
    const v = flagNumber(flag, values[flag] as string | undefined);
    if (v !== undefined) src[key] = v;
  };
  set('dim', 'dim');
  set('numFeatures', 'num-features');
  set('meanActive', 'mean-active');
  set('noise', 'noise');
  set('seed', 'data-seed');
  if (type === 'npy' || type === 'safetensors') {
    if (!src.files)
      throw new ConfigError(
        `--source ${type} needs --data FILE (one or more activation files; in a config file: source: { type: ${type}, files: [FILE, ...] })`,
      );
    const synthetic = ['num-features', 'mean-active', 'noise'].filter((f) => values[f] !== undefined);
    if (synthetic.length > 0) {
      throw new ConfigError(
        `--${synthetic[0]} describes synthetic data; --source ${type} reads its activations from --data`,
      );
    }
  } else if (files) {
    throw new ConfigError(`--data names activation files for --source npy or safetensors, not ${type}`);
  }
  return src;
}

async function trainCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...SOURCE_FLAGS,
      config: { type: 'string' },
      arch: { type: 'string' },
      ...Object.fromEntries(Object.keys(ARCH_FLAGS).map((f) => [f, { type: 'string' as const }])),
      set: { type: 'string', multiple: true },
      'dict-size': { type: 'string' },
      steps: { type: 'string' },
      lr: { type: 'string' },
      'warmup-steps': { type: 'string' },
      'sparsity-warmup-steps': { type: 'string' },
      'resample-steps': { type: 'string' },
      seed: { type: 'string' },
      normalize: { type: 'boolean' },
      'buffer-rows': { type: 'string' },
      out: { type: 'string' },
      'save-steps': { type: 'string' },
      resume: { type: 'boolean' },
      'resume-or-start': { type: 'boolean' },
      restart: { type: 'boolean' },
      'allow-config-change': { type: 'boolean' },
      'log-every': { type: 'string' },
      epochs: { type: 'string' },
      'eval-data': { type: 'string', multiple: true },
      'max-memory': { type: 'string' },
    },
    strict: true,
  });
  const base: Partial<RunConfig> = values.config ? await readConfigFile(values.config) : {};
  const cfg: Partial<RunConfig> = { ...base };
  cfg.source = sourceFromFlags(values, base.source);
  const swept = sweptKeys(values, values.set as string[] | undefined);
  if (values.arch || swept.length > 0 || values['dict-size'] || !base.trainers) {
    const archs = ((values.arch as string | undefined) ?? 'standard').split(',').map((s) => s.trim());
    // undefined: 4·d, with d known once the source is open (a file's header)
    const dictSize = flagNumber('dict-size', values['dict-size'] as string | undefined);
    cfg.trainers = sweepConfigs(archs, swept).map((t) => ({ ...t, dictSize }));
  }
  const perTrainer = {
    lr: flagNumber('lr', values.lr as string | undefined),
    warmupSteps: flagNumber('warmup-steps', values['warmup-steps'] as string | undefined),
    sparsityWarmupSteps: flagNumber(
      'sparsity-warmup-steps',
      values['sparsity-warmup-steps'] as string | undefined,
    ),
    resampleSteps: flagNumber('resample-steps', values['resample-steps'] as string | undefined),
    seed: flagNumber('seed', values.seed as string | undefined),
  };
  cfg.trainers = (cfg.trainers ?? []).map((t) => {
    const merged = { ...t };
    for (const [k, v] of Object.entries(perTrainer))
      if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
    return merged;
  });
  const pick = <K extends keyof RunConfig>(key: K, v: RunConfig[K] | undefined) => {
    if (v !== undefined) cfg[key] = v;
  };
  pick('steps', flagNumber('steps', values.steps as string | undefined));
  pick('batchSize', flagNumber('batch-size', values['batch-size'] as string | undefined));
  pick('backend', values.backend as string | undefined);
  pick('out', values.out as string | undefined);
  pick('logEvery', flagNumber('log-every', values['log-every'] as string | undefined));
  if (values['save-steps']) cfg.saveSteps = numberList('save-steps', values['save-steps'] as string);
  pick('resume', values.resume as boolean | undefined);
  pick('normalize', values.normalize as boolean | undefined);
  pick('bufferRows', flagNumber('buffer-rows', values['buffer-rows'] as string | undefined));
  pick('epochs', flagNumber('epochs', values.epochs as string | undefined));
  pick('evalData', values['eval-data'] as string[] | undefined);
  pick('maxMemory', flagNumber('max-memory', values['max-memory'] as string | undefined));
  return runAndPrint(resolveConfig(cfg), values.json as boolean, args, {
    resumeOrStart: values['resume-or-start'] as boolean | undefined,
    restart: values.restart as boolean | undefined,
    allowConfigChange: values['allow-config-change'] as boolean | undefined,
  });
}

async function runAndPrint(
  cfg: RunConfig,
  json: boolean,
  trainArgs?: string[],
  control: RunControl = {},
): Promise<number> {
  const tty = process.stderr.isTTY;
  const say = (text: string) => process.stderr.write(`${tty ? '\r\x1b[2K' : ''}${text}\n`);
  // Ctrl-C stops after the current step with a checkpoint; a second one quits at once.
  const interrupts = catchInterrupts(say);
  try {
    const summary = await runTrain(
      cfg,
      {
        progress(text, live) {
          if (live) {
            if (tty) process.stderr.write(`\r\x1b[2K${text.slice(0, (process.stderr.columns ?? 160) - 1)}`);
          } else say(text);
        },
      },
      { ...control, signal: interrupts.signal },
    );
    process.stdout.write(json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof TrainInterruptedError) {
      say(interruptedMessage(e, cfg.out, trainArgs));
      return interrupts.exitCode();
    }
    if (e instanceof RunStateError) {
      say(`dictlearn train: ${runStateMessage(e, cfg.out)}`);
      return 1;
    }
    throw e;
  } finally {
    interrupts.dispose();
  }
}

/**
 * `dictlearn demo [--archs] [--seed N] [--steps N] [--out DIR]`: the no-argument demo (or, with `--archs`,
 * one dictionary per architecture) with its data and init seeds set to N.
 */
async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      seed: { type: 'string' },
      steps: { type: 'string' },
      archs: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      'log-every': { type: 'string' },
    },
    strict: true,
  });
  const seed = flagNumber('seed', values.seed) ?? 0;
  const cfg = values.archs ? archsDemoConfig(seed) : demoConfig(seed);
  const steps = flagNumber('steps', values.steps);
  if (steps !== undefined) cfg.steps = steps;
  if (values.out !== undefined) cfg.out = values.out;
  const logEvery = flagNumber('log-every', values['log-every']);
  if (logEvery !== undefined) cfg.logEvery = logEvery;
  // A demo is run again and again: its --out is a scratch folder, replaced each time.
  return runAndPrint(resolveConfig(cfg), values.json as boolean, undefined, {
    restart: values.out !== undefined,
  });
}

async function evalCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      ...SOURCE_FLAGS,
      batches: { type: 'string' },
      'dict-class': { type: 'string' },
      contexts: { type: 'string' },
      codes: { type: 'string' },
      'codes-l1': { type: 'string' },
      'codes-iterations': { type: 'string' },
      atoms: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1)
    throw new ConfigError('usage: dictlearn eval PATH --source NAME [--data FILE ...]');
  if (values.model !== undefined || values.source === 'model') {
    // The model's activations on text, and the CE-loss recovered beside the other metrics.
    const { runModelEval } = await import('./commands/model.js');
    const metrics = await runModelEval({
      checkpoint: positionals[0],
      dictClass: values['dict-class'] as string | undefined,
      source: sourceFromFlags({ ...values, source: 'model' }),
      batchSize: flagNumber('batch-size', values['batch-size'] as string | undefined) ?? 4096,
      batches: flagNumber('batches', values.batches as string | undefined) ?? 8,
      contexts: flagNumber('contexts', values.contexts as string | undefined) ?? 64,
      backend: (values.backend as string | undefined) ?? 'auto',
    });
    process.stdout.write(
      values.json ? `${JSON.stringify(metrics, null, 2)}\n` : `${formatMetrics(metrics)}\n`,
    );
    return 0;
  }
  if (values.contexts !== undefined) {
    throw new ConfigError('--contexts sets how many contexts the CE-loss recovered uses: it needs --model');
  }
  if (values.source === undefined) {
    throw new ConfigError(
      'name the data to evaluate on: --source npy --data FILE, --source safetensors --data FILE, or --source synthetic --dim D (with the --data-seed, --num-features ... it was trained with)',
    );
  }
  // Checked before the evaluation runs: a bad --codes is a usage error, not a late failure.
  const codes = parseCodes(values.codes as string | undefined);
  const metrics = await runEval({
    checkpoint: positionals[0],
    dictClass: values['dict-class'] as string | undefined,
    source: sourceFromFlags(values),
    batchSize: flagNumber('batch-size', values['batch-size'] as string | undefined) ?? 4096,
    batches: flagNumber('batches', values.batches as string | undefined) ?? 8,
    backend: (values.backend as string | undefined) ?? 'auto',
    notice: (text) => process.stderr.write(`${text}\n`),
  });
  const extras =
    codes || (await isBlockDiagonal(positionals[0]))
      ? await runEvalExtras({
          checkpoint: positionals[0],
          dictClass: values['dict-class'] as string | undefined,
          source: sourceFromFlags(values),
          batchSize: flagNumber('batch-size', values['batch-size'] as string | undefined) ?? 4096,
          batches: flagNumber('batches', values.batches as string | undefined) ?? 8,
          backend: (values.backend as string | undefined) ?? 'auto',
          codes,
          codesL1: flagNumber('codes-l1', values['codes-l1'] as string | undefined),
          codesIterations: flagNumber('codes-iterations', values['codes-iterations'] as string | undefined),
          atoms: flagNumber('atoms', values.atoms as string | undefined),
        })
      : {};
  const more = formatEvalExtras(extras);
  process.stdout.write(
    values.json
      ? `${JSON.stringify({ ...metrics, ...extras }, null, 2)}\n`
      : `${formatMetrics(metrics)}\n${more ? `\n${more}\n` : ''}`,
  );
  return 0;
}

async function benchCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      json: { type: 'boolean', default: false },
      reps: { type: 'string', default: '5' },
      batch: { type: 'string', default: '4096' },
      d: { type: 'string', default: '512' },
      features: { type: 'string', default: '4096' },
      'include-ts': { type: 'boolean', default: false },
      'no-numpy': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const int = (name: string) => {
    const v = Number(values[name as keyof typeof values]);
    if (!Number.isInteger(v) || v <= 0) {
      throw new ConfigError(
        `--${name} must be a positive integer, got '${values[name as keyof typeof values]}'`,
      );
    }
    return v;
  };
  const opts = {
    reps: int('reps'),
    batch: int('batch'),
    d: int('d'),
    features: int('features'),
    includeTs: values['include-ts'] as boolean,
    noNumpy: values['no-numpy'] as boolean,
  };
  const json = values.json as boolean;
  const report = await runBench(opts, (line) => {
    if (!json) process.stderr.write(`${line}\n`);
  });
  process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : `${formatBench(report)}\n`);
  return 0;
}

/** The message of an error on one line (a YAML excerpt or a nested cause may hold newlines). */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * Prints an error as one line, `dictlearn <command>: <message>`, and returns the exit code: 2
 * for a bad flag or config (ConfigError, parseArgs), 1 for a refusal of the data or the run
 * (DictlearnError) and for anything unexpected (which says how to see the stack). With
 * `--debug` the stack follows the line.
 */
function reportError(command: string | undefined, e: unknown, debug: boolean): number {
  const head = command ? `dictlearn ${command}` : 'dictlearn';
  const err = e instanceof Error ? e : new Error(String(e));
  const usage = e instanceof ConfigError || (e as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS');
  const known = usage || e instanceof DictlearnError;
  const hint = known || debug ? '' : ' (run with --debug for the stack)';
  const what = known ? err.message : `${err.name}: ${err.message}`;
  process.stderr.write(`${head}: ${oneLine(what)}${hint}\n`);
  if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
  return usage ? 2 : 1;
}

const write = (s: string) => process.stdout.write(s);

/** The commands, in the order `dictlearn --help` and the unknown-command line list them. */
export const COMMANDS = {
  demo: demoCommand,
  train: trainCommand,
  eval: evalCommand,
  inspect: (args: string[]) => inspectCommand(args, write),
  convert: (args: string[]) => convertCommand(args, write),
  features: featuresCommand,
  encode: encodeCommand,
  report: (args: string[]) => reportCommand(args, write),
  experiment: experimentCommand,
  bench: benchCommand,
} satisfies Record<string, (args: string[]) => Promise<number>>;

/** A command's name. */
export type CommandName = keyof typeof COMMANDS;

/** Parses the command line and runs a command; returns the exit code. Errors print one clear line. */
export async function main(argv: string[]): Promise<number> {
  // --debug is accepted anywhere before a `--` terminator
  const end = argv.indexOf('--');
  const head = end < 0 ? argv : argv.slice(0, end);
  const debug = head.includes('--debug');
  if (debug) argv = [...head.filter((a) => a !== '--debug'), ...(end < 0 ? [] : argv.slice(end))];
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    if (command === undefined) return await runAndPrint(resolveConfig(demoConfig()), false);
    // Own keys only: `dictlearn toString` is an unknown command, not Object.prototype's.
    if (Object.hasOwn(COMMANDS, command)) return await COMMANDS[command as CommandName](rest);
    process.stderr.write(
      `dictlearn: unknown command '${command}' (commands: ${Object.keys(COMMANDS).join(', ')}; dictlearn --help for the options)\n`,
    );
    return 2;
  } catch (e) {
    return reportError(command, e, debug);
  }
}

const isEntry = process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '');
if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`dictlearn: ${(e as Error).stack ?? e}\n`);
      process.exitCode = 1;
    },
  );
}
