import { parseArgs } from 'node:util';
import { formatBench, runBench } from './commands/bench.js';

const USAGE = `usage: dictlearn <command> [options]

commands:
  bench     matmul GFLOP/s of the SAE products on every backend, beside numpy
            --json            print the report as JSON
            --reps N          timed repetitions per product (default 5; best is kept)
            --batch B --d D --features F   SAE sizes (default 4096, 512, 4096)
            --include-ts      also time the plain-TypeScript CPU path (quarter size)
            --no-numpy        skip the numpy comparison
`;

/** Parses the command line and runs a command; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command !== 'bench') {
    process.stderr.write(`dictlearn: unknown command '${command}'\n\n${USAGE}`);
    return 2;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: rest,
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
    }));
  } catch (e) {
    process.stderr.write(`dictlearn bench: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const int = (name: string) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v <= 0)
      throw new Error(`--${name} must be a positive integer, got '${values[name]}'`);
    return v;
  };
  let opts: Parameters<typeof runBench>[0];
  try {
    opts = {
      reps: int('reps'),
      batch: int('batch'),
      d: int('d'),
      features: int('features'),
      includeTs: values['include-ts'] as boolean,
      noNumpy: values['no-numpy'] as boolean,
    };
  } catch (e) {
    process.stderr.write(`dictlearn bench: ${(e as Error).message}\n`);
    return 2;
  }
  const json = values.json as boolean;
  const report = await runBench(opts, (line) => {
    if (!json) process.stderr.write(`${line}\n`);
  });
  process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : `${formatBench(report)}\n`);
  return 0;
}

const isEntry = process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '');
if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`dictlearn: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
