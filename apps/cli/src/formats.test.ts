// dictlearn inspect / convert / eval on the Python libraries' formats (fixtures written by
// packages/formats/fixtures/make-fixtures.py).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from './main.js';
import { captureOutput } from './test-io.js';

const FIXTURES = fileURLToPath(new URL('../../../packages/formats/fixtures/files/', import.meta.url));
let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'dl-cli-formats-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureOutput();
  try {
    const code = await main(args);
    return { code, out: io.out.join(''), err: io.err.join('') };
  } finally {
    vi.restoreAllMocks();
  }
}

describe('dictlearn inspect', () => {
  it('reports format, architecture, sizes, dtypes and norms of a DL ae.pt', async () => {
    const r = await run(['inspect', `${FIXTURES}dl/topk`]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^format {7}dictionary_learning \(AutoEncoderTopK\)$/m);
    expect(r.out).toMatch(/^architecture topk \{"k":4,"auxkAlpha":0\.03125\}$/m);
    expect(r.out).toMatch(/^sizes {8}d = 8, F = 16 \(expansion 2\)$/m);
    expect(r.out).toMatch(/^ {2}W_enc +F32 +\[8, 16\] +\d/m);
    expect(r.out).toMatch(/^decoder rows norm min [\d.]+, mean [\d.]+, max [\d.]+$/m);
    expect(r.out).toMatch(/^note {9}AutoEncoderTopK's learned threshold \(0\.25\) is dropped/m);
  });

  it('--json gives the same report as data', async () => {
    const r = await run(['inspect', `${FIXTURES}saelens/jumprelu`, '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out);
    expect(rep).toMatchObject({
      format: 'saelens',
      formatArchitecture: 'jumprelu',
      activationDim: 8,
      dictSize: 16,
    });
    expect(rep.architecture).toEqual({
      name: 'jumprelu',
      config: expect.objectContaining({ applyBDecToInput: false }),
    });
    expect(rep.tensors.map((t: { name: string }) => t.name).sort()).toEqual([
      'W_dec',
      'W_enc',
      'b_dec',
      'b_enc',
      'log_threshold',
    ]);
  });

  it('a hostile file is one line naming the file and the global, exit 1', async () => {
    const r = await run(['inspect', `${FIXTURES}bad/hostile.pt`]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /^dictlearn inspect: .*hostile\.pt \(hostile\/data\.pkl\): pickle byte \d+: refuses global 'posix\.system'.*\n$/,
    );
    expect(r.err.split('\n').length).toBe(2);
  });
});

describe('dictlearn convert', () => {
  it('DL → SAELens → sparsify → dictlearn, each read back and checked; eval reads any format', async () => {
    const a = join(root, 'saelens');
    const b = join(root, 'sparsify');
    const c = join(root, 'own');
    let r = await run(['convert', `${FIXTURES}dl/topk`, a, '--to', 'saelens']);
    expect(r.err).toBe('');
    expect(r.out).toMatch(
      /^converted .*dl\/topk \(dictionary_learning AutoEncoderTopK, topk, d 8, F 16\) to saelens: .*sae_weights\.safetensors, .*cfg\.json$/m,
    );
    expect(r.out).toMatch(/^checked: .* reads back with the same features \(max \|Δf\| 0\)$/m);
    r = await run(['convert', a, b, '--to', 'sparsify']);
    expect(r.code).toBe(0);
    r = await run(['convert', b, c, '--to', 'dictlearn']);
    expect(r.code).toBe(0);
    r = await run(['inspect', c]);
    expect(r.out).toMatch(/^format {7}dictlearn \(topk\)$/m);
    for (const path of [`${FIXTURES}dl/topk/ae.pt`, b]) {
      r = await run([
        'eval',
        path,
        '--source',
        'synthetic',
        '--dim',
        '8',
        '--batches',
        '1',
        '--batch-size',
        '64',
        '--backend',
        'cpu',
        '--json',
      ]);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out).l0).toBeCloseTo(4, 5);
    }
  });

  it('refuses what a format cannot hold and a non-empty OUT; exports ONNX', async () => {
    let r = await run(['convert', `${FIXTURES}dl/gated`, join(root, 'x'), '--to', 'sparsify']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/architecture 'gated' cannot be written as a sparsify sparse coder/);
    r = await run(['convert', `${FIXTURES}dl/gated`, join(root, 'y'), '--to', 'onnx']);
    expect(r.err).toBe('');
    expect(r.out).toMatch(
      /^exported .*dl\/gated \(dictionary_learning, gated, d 8, F 16\) to ONNX: .*encode\.onnx, .*decode\.onnx, .*forward\.onnx$/m,
    );
    r = await run(['inspect', join(root, 'y'), '--format', 'onnx']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--format onnx: ONNX models can be written \(convert --to onnx\) but not read/);
    r = await run(['convert', `${FIXTURES}dl/gated`, `${FIXTURES}dl`, '--to', 'dl']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/already exists and is not an empty folder/);
  });
});
