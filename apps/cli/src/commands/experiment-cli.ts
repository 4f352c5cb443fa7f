import { parseArgs } from 'node:util';
import {
  EXPERIMENT_DESCRIPTIONS,
  EXPERIMENTS,
  type ExperimentSize,
  formatExperiment,
  runExperiment,
  TINY_SIZE,
} from './experiment.js';
import { ConfigError, flagNumber } from './train-config.js';

/** The `experiment` lines of `dictlearn --help`. */
export const EXPERIMENT_USAGE = `  experiment NAME   a sparse-coding experiment on synthetic ground-truth data, printed as tables:
${EXPERIMENTS.map((n) => `            ${n.padEnd(10)} ${EXPERIMENT_DESCRIPTIONS[n]}`).join('\n')}
            --seed N (data and init; default 0)  --tiny (seconds, for CI)  --backend NAME  --json
            --steps N --dim D --num-features G --mean-active K --dict-size F --batch-size B
                                  override the recipe's default size (dim, num-features and
                                  dict-size multiples of 4: the heads recipe splits them in 4)`;

/** `dictlearn experiment NAME [--seed N] [--steps N] [--tiny] [--backend B] [--json]`. */
export async function experimentCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      seed: { type: 'string' },
      steps: { type: 'string' },
      dim: { type: 'string' },
      'num-features': { type: 'string' },
      'mean-active': { type: 'string' },
      'dict-size': { type: 'string' },
      'batch-size': { type: 'string' },
      tiny: { type: 'boolean', default: false },
      backend: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) {
    throw new ConfigError(`usage: dictlearn experiment NAME (one of ${EXPERIMENTS.join(', ')}) [--seed N]`);
  }
  const size: Partial<ExperimentSize> = values.tiny ? { ...TINY_SIZE } : {};
  // Each size flag overrides one field of the recipe's default (or of --tiny).
  const flags: [string, keyof ExperimentSize][] = [
    ['steps', 'steps'],
    ['dim', 'dim'],
    ['num-features', 'numFeatures'],
    ['mean-active', 'meanActive'],
    ['dict-size', 'dictSize'],
    ['batch-size', 'batchSize'],
  ];
  for (const [flag, key] of flags) {
    const v = flagNumber(flag, values[flag as keyof typeof values] as string | undefined);
    if (v !== undefined) size[key] = v;
  }
  const result = await runExperiment(positionals[0], {
    seed: flagNumber('seed', values.seed) ?? 0,
    size,
    backend: values.backend ?? 'auto',
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(
    values.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatExperiment(result)}\n`,
  );
  return 0;
}
