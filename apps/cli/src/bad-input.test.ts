import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerPlugin, type SourceFactory } from '@dictlearn/core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { COMMANDS, main } from './main.js';
import { indexedRows, writeNpy } from './test-files.js';
import { captureOutput } from './test-io.js';

afterEach(() => {
  vi.restoreAllMocks();
});

let dir: string;
/** A tiny dictionary trained at d = 16, for eval. */
let dict16: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dl-bad-'));
  const out = join(dir, 'run16');
  captureOutput();
  const code = await main([
    'train',
    '--backend',
    'cpu',
    '--dim',
    '16',
    '--num-features',
    '8',
    '--dict-size',
    '8',
    '--batch-size',
    '16',
    '--steps',
    '2',
    '--out',
    out,
    '--log-every',
    '0',
    '--json',
  ]);
  vi.restoreAllMocks();
  expect(code).toBe(0);
  dict16 = join(out, '0_standard');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * Runs the CLI and checks the rule for a refused input: the exit code, exactly one line on
 * stderr that starts with `dictlearn <command>:` and holds every expected fragment, no stack
 * trace, nothing on stdout. Returns the line.
 */
async function refused(argv: string[], code: number, ...fragments: (string | RegExp)[]): Promise<string> {
  const io = captureOutput();
  const got = await main(argv);
  vi.restoreAllMocks();
  const err = io.err.join('');
  expect(err, err).not.toMatch(/\n\s+at /);
  expect(err.endsWith('\n')).toBe(true);
  const lines = err.slice(0, -1).split('\n');
  expect(lines, err).toHaveLength(1);
  const command = argv.find((a) => !a.startsWith('-'));
  expect(lines[0].startsWith(`dictlearn ${command}: `), lines[0]).toBe(true);
  for (const f of fragments) {
    if (typeof f === 'string') expect(lines[0]).toContain(f);
    else expect(lines[0]).toMatch(f);
  }
  expect(io.out.join('')).toBe('');
  expect(got, lines[0]).toBe(code);
  return lines[0];
}

const tiny = ['--backend', 'cpu', '--dim', '8', '--num-features', '8', '--batch-size', '8', '--steps', '2'];

describe('every bad input gets one line and exit code 1 or 2', () => {
  it('a config nested 100 000 levels deep (JSON and YAML) is refused, not a stack overflow', async () => {
    const json = join(dir, 'deep.json');
    await writeFile(json, `{"steps": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    await refused(['train', '--config', json], 2, json, 'nests more than 32 levels deep (line 1)');
    const yaml = join(dir, 'deep.yaml');
    await writeFile(yaml, `steps: ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`);
    await refused(['train', '--config', yaml], 2, yaml, 'nests too deeply');
    // deep but parseable: the depth is bounded after parsing too, naming the field
    const yaml2 = join(dir, 'deep2.yaml');
    await writeFile(yaml2, `source: ${'{a: '.repeat(40)}1${'}'.repeat(40)}\n`);
    await refused(['train', '--config', yaml2], 2, "'source.a.a.a", 'nests more than 32 levels deep');
  });

  it('--dict-size out of bounds, or too large for one array, names the flag', async () => {
    await refused(
      ['train', ...tiny, '--dict-size', '1000000000000'],
      2,
      "--dict-size must be an integer from 1 to 2147483648, got '1000000000000'",
    );
    // 10⁸ features × d 256 cannot exist as one JavaScript array
    await refused(
      ['train', '--backend', 'cpu', '--steps', '1', '--dict-size', '100000000'],
      2,
      '--dict-size 100000000 × d 256',
      'lower --dict-size to at most 16777216',
    );
    await refused(['train', ...tiny, '--batch-size', '0'], 2, '--batch-size must be an integer from 1');
    // the synthetic ground truth is checked before the source draws it
    await refused(
      ['train', '--backend', 'cpu', '--dim', '65537', '--num-features', '65536', '--dict-size', '4'],
      2,
      '--num-features 65536 × --dim 65537 = 4295032832 ground-truth values in one array',
    );
    await refused(['train', ...tiny, '--lr=-1'], 2, "--lr must be a number > 0 and ≤ 1000, got '-1'");
    await refused(['train', ...tiny, '--l1', '0.1,x'], 2, '--l1 must be a number or a comma-separated list');
  });

  it('memory is estimated before anything is allocated: a run that does not fit is refused', async () => {
    // ~1.8 GB: 65536 features × d 64, batch 1024, against a 0.5 GB limit
    const line = await refused(
      [
        'train',
        '--backend',
        'cpu',
        '--dim',
        '64',
        '--dict-size',
        '65536',
        '--batch-size',
        '1024',
        '--steps',
        '1',
        '--max-memory',
        '0.5',
      ],
      1,
      '--dict-size: the run needs about',
      'more than the 0.50 GB allowed by --max-memory',
    );
    const estimate = Number(/about ([\d.]+) GB/.exec(line)![1]);
    // 16·(2·65536·64 + 65536 + 64) + 20·1024·65536 + 16·1024·64 + 8·64·64 + 150e6 bytes
    expect(estimate).toBeCloseTo(
      (16 * (2 * 65536 * 64 + 65536 + 64) + 20 * 1024 * 65536 + 16 * 1024 * 64 + 8 * 64 * 64 + 150e6) / 1e9,
      2,
    );
    // without --max-memory the limit is the memory free now: 4·2²² × 1024 parameters need ~275 GB
    await refused(
      [
        'train',
        '--backend',
        'cpu',
        '--dim',
        '1024',
        '--dict-size',
        '4194304',
        '--batch-size',
        '1',
        '--steps',
        '1',
      ],
      1,
      'of memory free now',
      '--max-memory GB',
    );
  });

  it('--out under /proc is refused at once, not a hang', async () => {
    const t0 = performance.now();
    await refused(
      ['train', ...tiny, '--out', '/proc/dictlearn-test/run'],
      1,
      '--out /proc/dictlearn-test/run',
      '/proc is a virtual file system',
    );
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('a read-only --out is refused before training, naming the path', async () => {
    // root ignores permission bits: there, /sys (which refuses new files to everyone) stands in
    let out = '/sys';
    if (process.getuid?.() !== 0) {
      out = join(dir, 'readonly');
      await mkdir(out, { mode: 0o555 });
    }
    await refused(['train', ...tiny, '--out', out], 1, `--out ${out}: cannot write into`);
    // a file where a directory is expected
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    await refused(['train', ...tiny, '--out', join(file, 'run')], 1, `${file} is a file, not a directory`);
  });

  it('eval: a width mismatch names both widths and the file', async () => {
    const npy = join(dir, 'd8.npy');
    await writeNpy(npy, indexedRows(32, 8), [32, 8]);
    await refused(
      ['eval', dict16, '--backend', 'cpu', '--source', 'npy', '--data', npy],
      1,
      `${npy}: the data has width 8 but the dictionary at ${dict16} expects 16`,
    );
    await refused(
      ['eval', dict16, '--backend', 'cpu', '--source', 'synthetic', '--dim', '12'],
      1,
      'the data has width 12',
      'expects 16 (set --dim)',
    );
  });

  it('eval without --source says which flags name the data', async () => {
    await refused(
      ['eval', dict16],
      2,
      'name the data to evaluate on: --source npy --data FILE',
      '--source synthetic --dim D',
    );
  });

  it('a safetensors header with a duplicate key names the key and the file', async () => {
    // laid out by hand (8-byte length, JSON header, data): the encoder cannot write a duplicate
    const entry = '{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]}';
    const header = new TextEncoder().encode(`{"acts":${entry},"acts":${entry}}`);
    const bytes = new Uint8Array(8 + header.length + 128);
    new DataView(bytes.buffer).setUint32(0, header.length, true);
    bytes.set(header, 8);
    bytes.set(new Uint8Array(indexedRows(4, 8).buffer), 8 + header.length);
    const file = join(dir, 'dup.safetensors');
    await writeFile(file, bytes);
    await refused(
      ['train', '--backend', 'cpu', '--source', 'safetensors', '--data', file],
      1,
      `${file}: header names tensor 'acts' twice (duplicate key 'acts')`,
    );
  });

  it('flags of another source are refused, naming the flag', async () => {
    const npy = join(dir, 'flags.npy');
    await writeNpy(npy, indexedRows(32, 8), [32, 8]);
    await refused(
      ['train', '--source', 'npy', '--data', npy, '--num-features', '8'],
      2,
      '--num-features describes synthetic data; --source npy reads its activations from --data',
    );
    await refused(
      ['train', '--data', npy],
      2,
      '--data names activation files for --source npy or safetensors, not synthetic',
    );
  });

  it('unknown fields are refused at every level, with a suggestion', async () => {
    const cfg = join(dir, 'typo.json');
    await writeFile(cfg, JSON.stringify({ trainers: [{ architecture: 'standard', learningRate: 0.001 }] }));
    await refused(
      ['train', ...tiny, '--config', cfg],
      2,
      "unknown field 'trainers[0].learningRate' (did you mean 'lr'?)",
      'known: architecture',
    );
    await writeFile(cfg, JSON.stringify({ stpes: 3 }));
    await refused(['train', ...tiny, '--config', cfg], 2, "unknown field 'stpes' (did you mean 'steps'?)");
    const npy = join(dir, 'src.npy');
    await writeNpy(npy, indexedRows(32, 8), [32, 8]);
    await writeFile(cfg, JSON.stringify({ source: { type: 'npy', files: [npy], shufle: false } }));
    await refused(
      ['train', '--backend', 'cpu', '--config', cfg],
      2,
      "'source' (npy): unknown option 'shufle' (did you mean 'shuffle'?)",
    );
    await writeFile(cfg, JSON.stringify({ trainers: [{ architecture: 'standard', config: { l1: 0.1 } }] }));
    await refused(
      ['train', ...tiny, '--config', cfg],
      2,
      "'trainers[0].config' (standard): unknown field 'l1'",
    );
  });

  it('NaN in a file names the file, the row and the column', async () => {
    const v = indexedRows(40, 8);
    v[13 * 8 + 5] = Number.NaN;
    const npy = join(dir, 'nan.npy');
    await writeNpy(npy, v, [40, 8]);
    const io = captureOutput();
    const code = await main([
      'train',
      '--backend',
      'cpu',
      '--source',
      'npy',
      '--data',
      npy,
      '--batch-size',
      '8',
    ]);
    vi.restoreAllMocks();
    expect(code).toBe(1);
    const lines = io.err.join('').trimEnd().split('\n');
    expect(lines.filter((l) => l.startsWith('dictlearn train:'))).toEqual([
      `dictlearn train: ${npy}: row 13, column 5 holds NaN; activations must be finite numbers`,
    ]);
    expect(io.err.join('')).not.toMatch(/\n\s+at /);
    // a 3-D file names the row's index too
    const v3 = indexedRows(12, 8);
    v3[7 * 8 + 2] = Number.POSITIVE_INFINITY;
    const npy3 = join(dir, 'inf3d.npy');
    await writeNpy(npy3, v3, [3, 4, 8]);
    const io2 = captureOutput();
    expect(
      await main(['train', '--backend', 'cpu', '--source', 'npy', '--data', npy3, '--batch-size', '4']),
    ).toBe(1);
    vi.restoreAllMocks();
    expect(io2.err.join('')).toContain(
      `dictlearn train: ${npy3}: row 7 (index [1, 3] of shape [3, 4, 8]), column 2 holds Infinity`,
    );
  });

  it('no error message suggests a command that does not exist', async () => {
    const fake = join(dir, 'saelens');
    await mkdir(fake);
    const config = JSON.parse(await readFile(join(dict16, 'config.json'), 'utf8'));
    await writeFile(join(fake, 'config.json'), JSON.stringify({ ...config, format: 'saelens' }));
    const line = await refused(
      ['eval', fake, '--backend', 'cpu', '--source', 'synthetic', '--dim', '16'],
      1,
      "field 'format' must be 'dictlearn'",
    );
    expect(line).not.toContain('convert');
  });

  it('an unexpected error is one line that says how to see the stack; --debug (anywhere) prints it', async () => {
    const factory: SourceFactory = {
      name: 'explode',
      description: 'throws a RangeError (tests only)',
      create() {
        throw new RangeError('Invalid typed array length: 8000000000000');
      },
    };
    registerPlugin('source', 'explode', factory);
    await refused(
      ['train', '--backend', 'cpu', '--source', 'explode'],
      1,
      'dictlearn train: RangeError: Invalid typed array length: 8000000000000 (run with --debug for the stack)',
    );
    const io = captureOutput();
    expect(await main(['train', '--source', 'explode', '--debug', '--backend', 'cpu'])).toBe(1);
    vi.restoreAllMocks();
    const err = io.err.join('');
    expect(err.split('\n')[0]).toBe('dictlearn train: RangeError: Invalid typed array length: 8000000000000');
    expect(err).toMatch(/\n\s+at /);
  });

  it('--help lists every command', async () => {
    const io = captureOutput();
    expect(await main(['--help'])).toBe(0);
    vi.restoreAllMocks();
    for (const name of Object.keys(COMMANDS)) expect(io.out.join('')).toMatch(new RegExp(`\\n  ${name} `));
  });

  it('an unknown command is one line; so is a name of an object property (toString)', async () => {
    const io = captureOutput();
    expect(await main(['toString'])).toBe(2);
    expect(io.err).toHaveLength(1);
    io.err.length = 0;
    expect(await main(['frobnicate'])).toBe(2);
    vi.restoreAllMocks();
    expect(io.err).toEqual([
      `dictlearn: unknown command 'frobnicate' (commands: ${Object.keys(COMMANDS).join(', ')}; dictlearn --help for the options)\n`,
    ]);
  });
});
