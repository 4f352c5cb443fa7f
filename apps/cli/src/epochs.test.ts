import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from './main.js';
import { writeNpy } from './test-files.js';
import { captureOutput } from './test-io.js';

afterEach(() => {
  vi.restoreAllMocks();
});

let dir: string;
let train: string;
let held: string;

/** Deterministic activations: `rows` × 8 values from a small LCG (no two rows alike). */
function activations(rows: number, seed: number): Float32Array {
  const v = new Float32Array(rows * 8);
  let x = seed;
  for (let i = 0; i < v.length; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    v[i] = x / 2147483648 - 0.5;
  }
  return v;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dl-epochs-'));
  train = join(dir, 'train.npy');
  held = join(dir, 'held.npy');
  // the training rows as a 3-D [batch, seq, d] array: read as 100 rows of 8, with a notice
  await writeNpy(train, activations(100, 1), [4, 25, 8]);
  await writeNpy(held, activations(64, 2), [64, 8]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const base = () => [
  'train',
  '--backend',
  'cpu',
  '--source',
  'npy',
  '--data',
  train,
  '--batch-size',
  '16',
  '--log-every',
  '0',
];

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureOutput();
  const code = await main(argv);
  vi.restoreAllMocks();
  return { code, out: io.out.join(''), err: io.err.join('') };
}

describe('dictlearn train on files: --epochs, steps, held-out scoring', () => {
  it('--epochs N trains ⌊N·rows/batch⌋ steps over reshuffled passes and says what it does', async () => {
    const r = await run([...base(), '--epochs', '3', '--json']);
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out);
    // 3 × 100 rows = 300 = 18 batches of 16 + 12 rows that no step uses
    expect(s.steps).toBe(18);
    expect(s.tokens).toBe(18 * 16);
    expect(r.err).toContain(`${train}: reading shape [4, 25, 8] as 100 rows of 8`);
    expect(r.err).toContain(
      '3 epochs over 100 rows = 18 steps of 16, reshuffled every epoch (seed 0); the last 12 rows are not trained on (a step takes a full batch)',
    );
  });

  it('without --steps or --epochs: one pass; with --steps only: as many passes as the steps need', async () => {
    const one = await run([...base(), '--json']);
    expect(one.code, one.err).toBe(0);
    expect(JSON.parse(one.out).steps).toBe(6);
    // 20 steps × 16 = 320 rows = 3.2 passes: before, the data ran out after 6 batches
    const many = await run([...base(), '--steps', '20', '--json']);
    expect(many.code, many.err).toBe(0);
    expect(JSON.parse(many.out).steps).toBe(20);
    expect(many.err).toContain('20 steps × 16 rows = 3.20 epochs over the 100 rows, reshuffled every epoch');
    // both: whichever ends first
    expect(JSON.parse((await run([...base(), '--steps', '5', '--epochs', '2', '--json'])).out).steps).toBe(5);
    expect(JSON.parse((await run([...base(), '--steps', '50', '--epochs', '2', '--json'])).out).steps).toBe(
      12,
    );
    const tooBig = await run([...base(), '--batch-size', '128']);
    expect(tooBig.code).toBe(2);
    expect(tooBig.err).toContain('--batch-size 128 is more than the 100 rows of 1 epoch');
  });

  it('the dictionary size of a file source defaults to 4·d, d from the file header', async () => {
    const out = join(dir, 'default-size');
    const r = await run([...base(), '--steps', '2', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const config = JSON.parse(await readFile(join(out, '0_standard', 'config.json'), 'utf8'));
    expect(config.activationDim).toBe(8);
    expect(config.dictSize).toBe(32);
  });

  it('the table is scored on --eval-data when given, and says it was scored on training rows when not', async () => {
    const out = join(dir, 'held');
    const r = await run([...base(), '--epochs', '2', '--eval-data', held, '--out', out, '--json']);
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out);
    expect(s.scoredOn).toMatch(/^held-out rows \(--eval-data: npy\(1 file, 64 rows, d=8\)\)/);
    // the same figures as `dictlearn eval` on the held-out file (4 batches of 16 = its 64 rows)
    const dict = s.trainers[0].savedTo;
    const onHeld = await run([
      'eval',
      dict,
      '--backend',
      'cpu',
      '--source',
      'npy',
      '--data',
      held,
      '--batch-size',
      '16',
      '--batches',
      '4',
      '--json',
    ]);
    expect(onHeld.code, onHeld.err).toBe(0);
    const m = JSON.parse(onHeld.out);
    expect(s.trainers[0].fve).toBeCloseTo(m.frac_variance_explained, 6);
    expect(s.trainers[0].l0).toBeCloseTo(m.l0, 6);
    const onTrain = JSON.parse(
      (
        await run([
          'eval',
          dict,
          '--backend',
          'cpu',
          '--source',
          'npy',
          '--data',
          train,
          '--batch-size',
          '16',
          '--batches',
          '4',
          '--json',
        ])
      ).out,
    );
    expect(onTrain.frac_variance_explained).not.toBeCloseTo(m.frac_variance_explained, 6);

    // without --eval-data: the first training rows, and the table says so
    const out2 = join(dir, 'no-held');
    const plain = await run([...base(), '--epochs', '2', '--out', out2]);
    expect(plain.code, plain.err).toBe(0);
    expect(plain.out).toContain(
      'scored on training rows: the first rows of the data, which the run trained on (pass --eval-data FILE for held-out rows)',
    );
    const json = await run([...base(), '--epochs', '2', '--out', join(dir, 'no-held-json'), '--json']);
    const s2 = JSON.parse(json.out);
    const m2 = JSON.parse(
      (
        await run([
          'eval',
          s2.trainers[0].savedTo,
          '--backend',
          'cpu',
          '--source',
          'npy',
          '--data',
          train,
          '--batch-size',
          '16',
          '--batches',
          '4',
          '--json',
        ])
      ).out,
    );
    expect(s2.trainers[0].fve).toBeCloseTo(m2.frac_variance_explained, 6);
    // --eval-data of another width is refused, naming the file
    const wrong = join(dir, 'wrong.npy');
    await writeNpy(wrong, new Float32Array(32 * 4), [32, 4]);
    const bad = await run([...base(), '--eval-data', wrong]);
    expect(bad.code).toBe(1);
    expect(bad.err).toBe(
      `dictlearn train: ${wrong}: --eval-data has width 4, the training data 8; held-out rows must come from the same layer\n`,
    );
  });

  it('resuming inside the second epoch replays the same shuffled batches: the same dictionary as one run', async () => {
    const out = join(dir, 'resume');
    const args = [...base(), '--epochs', '3', '--save-steps', '8', '--out', out, '--json'];
    const first = await run(args);
    expect(first.code, first.err).toBe(0);
    const path = join(out, '0_standard', 'sae.safetensors');
    const whole = await readFile(path);
    await rm(path);
    // step 8 = row 128: 28 rows into the second, differently shuffled, epoch
    const resumed = await run([...args, '--resume']);
    expect(resumed.code, resumed.err).toBe(0);
    expect(JSON.parse(resumed.out).steps).toBe(18);
    expect(Buffer.compare(await readFile(path), whole)).toBe(0);
  });
});
