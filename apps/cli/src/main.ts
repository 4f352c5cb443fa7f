import '@dictlearn/backend-cpu/register';
import '@dictlearn/backend-webgpu/register';
import '@dictlearn/arch-standard/register';
import '@dictlearn/buffer/register';
import { parseArgs } from 'node:util';
import { DictlearnError } from '@dictlearn/core';
import { formatBench, runBench } from './commands/bench.js';
import { formatMetrics, runEval } from './commands/eval.js';
import { formatSummary, runTrain } from './commands/train.js';
import {
  ConfigError,
  numberList,
  type RunConfig,
  readConfigFile,
  resolveConfig,
} from './commands/train-config.js';
import { demoConfig } from './demo.js';

const USAGE = `usage: dictlearn [command] [options]

With no command: the synthetic ground-truth demo (trains standard SAEs at several sparsity
penalties in one pass and reports how many true features each recovered).

commands:
  train     train dictionaries
            --config FILE         JSON or YAML run config (flags below override it)
            --source NAME         synthetic (default), npy, safetensors
            --data FILE           activation file(s) for npy/safetensors (repeatable)
            --dim D --num-features N --mean-active K --noise S --data-seed N   synthetic data
            --arch NAME           standard (default), april-update, tied; comma list for several
            --l1 L                sparsity penalty; a comma list trains one dictionary per value
            --dict-size F         features per dictionary (default 4·d)
            --steps N --batch-size B --lr LR --warmup-steps N --sparsity-warmup-steps N
            --resample-steps N    resample dead features every N steps
            --seed N              init seed
            --normalize           train on activations scaled to mean squared norm d
            --buffer-rows N       shuffle through an activation buffer of N rows
            --backend NAME        auto (default), cpu, ...
            --out DIR             write dictionaries, checkpoints and log.jsonl here
            --save-steps N,N      checkpoint after these steps;  --resume  continue from the latest
            --log-every N         --json  print the final table as JSON
  eval      dictlearn eval DIR --source NAME [--data FILE ...] [source flags] [--batches N] [--json]
  bench     matmul GFLOP/s and one training step per backend, beside numpy
            --json --reps N --batch B --d D --features F --include-ts --no-numpy
`;

const SOURCE_FLAGS = {
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

function num(flag: string, v: string | undefined, integer = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new ConfigError(`--${flag} must be ${integer ? 'an integer' : 'a number'}, got '${v}'`);
  }
  return n;
}

function sourceFromFlags(values: Values, base?: RunConfig['source']): RunConfig['source'] {
  const type = (values.source as string | undefined) ?? base?.type ?? 'synthetic';
  const src: RunConfig['source'] = { ...(base && base.type === type ? base : {}), type };
  const files = values.data as string[] | undefined;
  if (files) src.files = files;
  const set = (key: string, flag: string, integer: boolean) => {
    const v = num(flag, values[flag] as string | undefined, integer);
    if (v !== undefined) src[key] = v;
  };
  set('dim', 'dim', true);
  set('numFeatures', 'num-features', true);
  set('meanActive', 'mean-active', false);
  set('noise', 'noise', false);
  set('seed', 'data-seed', true);
  if ((type === 'npy' || type === 'safetensors') && !src.files) {
    throw new ConfigError(`--source ${type} needs --data FILE (one or more activation files)`);
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
      l1: { type: 'string' },
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
      'log-every': { type: 'string' },
    },
    strict: true,
  });
  const base: Partial<RunConfig> = values.config ? await readConfigFile(values.config) : {};
  const cfg: Partial<RunConfig> = { ...base };
  cfg.source = sourceFromFlags(values, base.source);
  const dim = (cfg.source.dim as number | undefined) ?? 256;
  if (values.arch || values.l1 || values['dict-size'] || !base.trainers) {
    const archs = ((values.arch as string | undefined) ?? 'standard').split(',').map((s) => s.trim());
    const l1s = values.l1 ? numberList('l1', values.l1 as string) : [undefined];
    const dictSize = num('dict-size', values['dict-size'] as string | undefined, true) ?? 4 * dim;
    cfg.trainers = archs.flatMap((architecture) =>
      l1s.map((l1) => ({ architecture, dictSize, config: l1 === undefined ? {} : { l1Penalty: l1 } })),
    );
  }
  const perTrainer = {
    lr: num('lr', values.lr as string | undefined),
    warmupSteps: num('warmup-steps', values['warmup-steps'] as string | undefined, true),
    sparsityWarmupSteps: num(
      'sparsity-warmup-steps',
      values['sparsity-warmup-steps'] as string | undefined,
      true,
    ),
    resampleSteps: num('resample-steps', values['resample-steps'] as string | undefined, true),
    seed: num('seed', values.seed as string | undefined, true),
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
  pick('steps', num('steps', values.steps as string | undefined, true));
  pick('batchSize', num('batch-size', values['batch-size'] as string | undefined, true));
  pick('backend', values.backend as string | undefined);
  pick('out', values.out as string | undefined);
  pick('logEvery', num('log-every', values['log-every'] as string | undefined, true));
  if (values['save-steps']) cfg.saveSteps = numberList('save-steps', values['save-steps'] as string);
  pick('resume', values.resume as boolean | undefined);
  pick('normalize', values.normalize as boolean | undefined);
  pick('bufferRows', num('buffer-rows', values['buffer-rows'] as string | undefined, true));
  return runAndPrint(resolveConfig(cfg), values.json as boolean);
}

async function runAndPrint(cfg: RunConfig, json: boolean): Promise<number> {
  const tty = process.stderr.isTTY;
  const summary = await runTrain(cfg, {
    progress(text, live) {
      if (live) {
        if (tty) process.stderr.write(`\r\x1b[2K${text.slice(0, (process.stderr.columns ?? 160) - 1)}`);
      } else process.stderr.write(`${tty ? '\r\x1b[2K' : ''}${text}\n`);
    },
  });
  process.stdout.write(json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`);
  return 0;
}

async function evalCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...SOURCE_FLAGS, batches: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1)
    throw new ConfigError('usage: dictlearn eval DIR --source NAME [--data FILE ...]');
  const metrics = await runEval({
    checkpoint: positionals[0],
    source: sourceFromFlags(values),
    batchSize: num('batch-size', values['batch-size'] as string | undefined, true) ?? 4096,
    batches: num('batches', values.batches as string | undefined, true) ?? 8,
    backend: (values.backend as string | undefined) ?? 'auto',
  });
  process.stdout.write(values.json ? `${JSON.stringify(metrics, null, 2)}\n` : `${formatMetrics(metrics)}\n`);
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

/** Parses the command line and runs a command; returns the exit code. Errors print one clear line. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    if (command === undefined) return await runAndPrint(resolveConfig(demoConfig()), false);
    if (command === 'train') return await trainCommand(rest);
    if (command === 'eval') return await evalCommand(rest);
    if (command === 'bench') return await benchCommand(rest);
    process.stderr.write(`dictlearn: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  } catch (e) {
    if (e instanceof ConfigError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`dictlearn ${command}: ${(e as Error).message}\n`);
      return 2;
    }
    if (e instanceof DictlearnError) {
      process.stderr.write(
        `dictlearn ${command ?? ''}: ${e.message}\n`.replace('dictlearn : ', 'dictlearn: '),
      );
      return 1;
    }
    throw e;
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
