// `dictlearn train --source model` and `dictlearn eval --model` on the tiny test models of
// @dictlearn/source-model (a GPT-NeoX of 3 layers, d 64; fixtures made by its make-test-models.py).
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Dictionary } from '@dictlearn/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from './main.js';
import { captureOutput } from './test-io.js';

afterEach(() => {
  vi.restoreAllMocks();
});

const FIX = fileURLToPath(new URL('../../../packages/source-model/fixtures/', import.meta.url));
const NEOX = `${FIX}gpt-neox/model.onnx`;
const model = [
  '--model',
  NEOX,
  '--text',
  `${FIX}corpus.txt`,
  '--context-length',
  '32',
  '--forward-batch',
  '16',
];

interface Summary {
  steps: number;
  tokens: number;
  modelTokens: number;
  modelTokensPerSecond: number;
  saeTokensPerSecond: number;
  trainers: { architecture: string; l0: number; fve: number; fracRecovered: number; savedTo: string }[];
}

// A buffer of one batch: each batch is the next 256 rows of the text, so an interrupted and
// resumed run trains on exactly the rows of an uninterrupted one.
const ONE_BATCH_BUFFER = [
  ...model,
  '--hook',
  'gpt_neox.layers.1',
  '--l1',
  '0.05',
  '--dict-size',
  '128',
  '--warmup-steps',
  '2',
  '--batch-size',
  '256',
  '--buffer-rows',
  '256',
  '--seed',
  '3',
];

async function train(args: string[]): Promise<{ code: number; summary?: Summary; err: string }> {
  const io = captureOutput();
  const code = await main(['train', '--source', 'model', ...args, '--json']);
  vi.restoreAllMocks();
  const out = io.out.join('');
  return { code, summary: code === 0 ? (JSON.parse(out) as Summary) : undefined, err: io.err.join('') };
}

async function params(dir: string): Promise<Float32Array[]> {
  const d = await Dictionary.load(dir);
  const out: Float32Array[] = [];
  for (const t of Object.values(d.params)) out.push((await t.data()) as Float32Array);
  d.dispose();
  return out;
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, i) => {
    for (let j = 0; j < x.length; j++) m = Math.max(m, Math.abs(x[j] - b[i][j]));
  });
  return m;
}

describe('dictlearn train --source model', () => {
  it("trains a standard and a TopK dictionary on the NeoX's layer-1 residual stream, with checkpoints and CE-loss recovered", async () => {
    const out = await mkdtemp(join(tmpdir(), 'dl-model-'));
    const r = await train([
      ...model,
      '--hook',
      'gpt_neox.layers.1',
      '--arch',
      'standard,topk',
      '--k',
      '8',
      '--lr',
      '0.003',
      '--warmup-steps',
      '5',
      '--sparsity-warmup-steps',
      '10',
      '--steps',
      '40',
      '--batch-size',
      '256',
      '--buffer-rows',
      '2048',
      '--eval-data',
      `${FIX}heldout.txt`,
      '--out',
      out,
      '--save-steps',
      '20',
    ]);
    expect(r.code, r.err).toBe(0);
    const s = r.summary as Summary;
    expect(s.steps).toBe(40);
    expect(s.tokens).toBe(40 * 256);
    expect(s.trainers.map((t) => t.architecture)).toEqual(['standard', 'topk(k=8)']);
    const [std, topk] = s.trainers;
    expect(topk.l0).toBeLessThanOrEqual(8 + 1e-9);
    for (const t of s.trainers) {
      expect(t.savedTo).toBe(`${out}/gpt_neox.layers.1/${t.savedTo.split('/').pop()}`);
      expect(t.fve).toBeGreaterThan(0.5);
      // Training helps the model keep its loss: better than zero-ablating the residual stream.
      expect(t.fracRecovered).toBeGreaterThan(0.3);
      expect(t.fracRecovered).toBeLessThanOrEqual(1.05);
    }
    expect(std.fracRecovered).not.toBe(topk.fracRecovered);
    expect(s.modelTokensPerSecond).toBeGreaterThan(0);
    expect(s.saeTokensPerSecond).toBeGreaterThan(0);
    // The checkpoint records where the text stood: 20 steps × 256 rows, plus what the buffer read ahead.
    const state = JSON.parse(
      await readFile(
        join(
          out,
          'gpt_neox.layers.1',
          s.trainers[0].savedTo.split('/').pop() as string,
          'checkpoints',
          'step_20',
          'state.json',
        ),
        'utf8',
      ),
    );
    expect(state.dataPosition.contexts * 32).toBeGreaterThanOrEqual(20 * 256);
    expect(state.dataPosition.contexts * 32).toBeLessThanOrEqual(20 * 256 + 2048 + 16 * 32);
    // The table's frac_recovered is `dictlearn eval`'s on the same held-out contexts.
    const io = captureOutput();
    const code = await main([
      'eval',
      topk.savedTo,
      '--model',
      NEOX,
      '--hook',
      'gpt_neox.layers.1',
      '--text',
      `${FIX}heldout.txt`,
      '--context-length',
      '32',
      '--contexts',
      '32',
      '--batches',
      '2',
      '--batch-size',
      '256',
      '--json',
    ]);
    expect(code).toBe(0);
    const m = JSON.parse(io.out.join(''));
    expect(m.frac_recovered).toBeCloseTo(topk.fracRecovered, 6);
    expect(m.ce_contexts).toBe(32);
  });

  it('resumes the text where the checkpoint stopped: no forward pass over the text already trained on', async () => {
    const args = ONE_BATCH_BUFFER;
    const whole = await mkdtemp(join(tmpdir(), 'dl-model-'));
    const a = await train([...args, '--steps', '16', '--out', whole]);
    expect(a.code).toBe(0);
    const split = await mkdtemp(join(tmpdir(), 'dl-model-'));
    expect((await train([...args, '--steps', '8', '--out', split, '--save-steps', '8'])).code).toBe(0);
    const b = await train([...args, '--steps', '16', '--out', split, '--resume']);
    expect(b.code).toBe(0);
    expect(b.err).toMatch(/resuming from step 8/);
    // The resumed process ran the model over 8 steps' rows (and the evaluation), not 16.
    expect((b.summary as Summary).modelTokens).toBeLessThan((a.summary as Summary).modelTokens - 6 * 256);
    const name = (a.summary as Summary).trainers[0].savedTo.split('/').pop() as string;
    const diff = maxDiff(
      await params(join(whole, 'gpt_neox.layers.1', name)),
      await params(join(split, 'gpt_neox.layers.1', name)),
    );
    // Equal up to float summation order (the buffer draws each batch's rows in another order).
    expect(diff).toBeLessThan(1e-5);
  });

  it('feeds two hooks from one forward pass, one trainer set per hook (or the hook a trainer names)', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dl-model-'));
    const config = join(out, 'run.yaml');
    await writeFile(
      config,
      [
        'source:',
        '  type: model',
        `  model: ${NEOX}`,
        '  hooks: [gpt_neox.layers.0, gpt_neox.layers.2]',
        `  text: ${FIX}corpus.txt`,
        '  contextLength: 32',
        '  forwardBatch: 16',
        'trainers:',
        '  - { architecture: standard, config: { l1Penalty: 0.05 }, dictSize: 128 }',
        '  - { architecture: topk, config: { k: 4 }, dictSize: 128, hook: gpt_neox.layers.2 }',
        'steps: 12',
        'batchSize: 256',
        'bufferRows: 1024',
        'evalBatches: 1',
        '',
      ].join('\n'),
    );
    const r = await train(['--config', config, '--out', join(out, 'run')]);
    expect(r.code).toBe(0);
    const s = r.summary as Summary;
    expect(s.trainers.map((t) => t.architecture)).toEqual([
      'gpt_neox.layers.0 standard(l1Penalty=0.05)',
      'gpt_neox.layers.2 standard(l1Penalty=0.05)',
      'gpt_neox.layers.2 topk(k=4)',
    ]);
    expect(s.trainers.map((t) => t.savedTo.replace(`${out}/run/`, ''))).toEqual([
      'gpt_neox.layers.0/0_standard_l1Penalty=0.05',
      'gpt_neox.layers.2/0_standard_l1Penalty=0.05',
      'gpt_neox.layers.2/1_topk_k=4',
    ]);
    // Both hooks read 12 × 256 rows (and the buffer fills ahead); one set of forward passes served
    // both: fewer model tokens than the two hooks' rows together.
    expect(s.modelTokens).toBeGreaterThanOrEqual(12 * 256 + 1024);
    expect(s.modelTokens).toBeLessThan(2 * 12 * 256);
  });

  it('refuses bad input with one line naming the flag, hook or field', async () => {
    const unknown = await train([...model, '--hook', 'gpt_neox.layer.1', '--steps', '2']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/gpt_neox\.layer\.1.*gpt_neox\.layers\.1/);
    const noHook = await train([...model, '--steps', '2']);
    expect(noHook.code).toBe(2);
    expect(noHook.err).toMatch(/--source model needs --hook/);
    const dir = await mkdtemp(join(tmpdir(), 'dl-model-'));
    const config = join(dir, 'c.json');
    await writeFile(
      config,
      JSON.stringify({
        source: { type: 'model', model: NEOX, hooks: 'gpt_neox.layers.1', text: `${FIX}corpus.txt` },
        trainers: [{ architecture: 'standard', hook: 'gpt_neox.layers.2' }],
      }),
    );
    const wrong = await train(['--config', config, '--steps', '2']);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(
      /'trainers\[0\]\.hook' is 'gpt_neox\.layers\.2', which the source does not read/,
    );
    const io = captureOutput();
    expect(await main(['train', '--source', 'synthetic', '--hook', 'x'])).toBe(2);
    expect(io.err.join('')).toMatch(/--hook is an option of --source model/);
  });
});

describe('dictlearn eval --model', () => {
  it("prints torch's CE-loss recovered and KL beside the other metrics (the fixture SAE, first 8 held-out contexts)", async () => {
    const ref = JSON.parse(readFileSync(`${FIX}gpt-neox/ce-reference.json`, 'utf8'));
    const io = captureOutput();
    const code = await main([
      'eval',
      `${FIX}gpt-neox/sae`,
      '--model',
      NEOX,
      '--hook',
      'gpt_neox.layers.1',
      '--text',
      `${FIX}heldout.txt`,
      '--context-length',
      '32',
      '--contexts',
      '8',
      '--batch-size',
      '64',
      '--batches',
      '2',
    ]);
    expect(code).toBe(0);
    const text = io.out.join('');
    for (const k of [
      'loss_original',
      'loss_reconstructed',
      'loss_zero',
      'frac_recovered',
      'kl_div_with_sae',
      'kl_div_with_ablation',
    ]) {
      const m = new RegExp(`^${k}\\s+(\\S+)$`, 'm').exec(text);
      expect(m, k).not.toBeNull();
      expect(Math.abs(Number(m?.[1]) - ref[k]), k).toBeLessThan(1e-4);
    }
    // The reconstruction metrics are there too.
    expect(text).toMatch(/^frac_variance_explained\s+0\.\d+$/m);
  });
});

describe('dictlearn train --source model: forward passes run ahead (--prefetch)', () => {
  const args = ONE_BATCH_BUFFER;
  const NAME = '0_standard_l1Penalty=0.05';
  const dict = (out: string) => join(out, 'gpt_neox.layers.1', NAME);

  it('trains the same dictionary with 0, 1 and 3 passes ahead; a resume may change --prefetch and --model-threads', async () => {
    const outs: string[] = [];
    for (const depth of ['0', '1', '3']) {
      const out = await mkdtemp(join(tmpdir(), 'dl-prefetch-'));
      const r = await train([...args, '--steps', '12', '--out', out, '--prefetch', depth]);
      expect(r.code, r.err).toBe(0);
      outs.push(out);
    }
    const base = await params(dict(outs[0]));
    for (const out of outs.slice(1)) expect(maxDiff(await params(dict(out)), base)).toBe(0);
    // Stopped at 6 with 3 passes ahead, resumed without prefetch on one model thread: the text
    // continues at the saved position (the passes run ahead were not counted in it).
    const split = await mkdtemp(join(tmpdir(), 'dl-prefetch-'));
    const a = await train([...args, '--steps', '6', '--out', split, '--save-steps', '6', '--prefetch', '3']);
    expect(a.code, a.err).toBe(0);
    const b = await train([
      ...args,
      '--steps',
      '12',
      '--out',
      split,
      '--resume',
      '--prefetch',
      '0',
      '--model-threads',
      '1',
    ]);
    expect(b.code, b.err).toBe(0);
    expect(b.err).toMatch(/resuming from step 6/);
    expect(maxDiff(await params(dict(split)), base)).toBeLessThan(1e-5);
  });

  it('SIGINT with a pass running ahead: exit 130 with every pass finished and no unhandled rejection; the resume ends as an uninterrupted run', async () => {
    const { LanguageModel } = await import('@dictlearn/source-model');
    const forward = LanguageModel.prototype.forward;
    let started = 0;
    let settled = 0;
    vi.spyOn(LanguageModel.prototype, 'forward').mockImplementation(function (this: unknown, ...a) {
      started++;
      return (forward.apply(this, a) as ReturnType<typeof forward>).finally(() => {
        settled++;
      });
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    const out = await mkdtemp(join(tmpdir(), 'dl-prefetch-'));
    const io = captureOutput();
    try {
      const run = main([
        'train',
        '--source',
        'model',
        ...args,
        '--steps',
        '1000000',
        '--save-steps',
        '8',
        '--out',
        out,
        '--prefetch',
        '2',
        '--json',
      ]);
      const ckpt = join(dict(out), 'checkpoints', 'step_8');
      for (let t = 0; !existsSync(ckpt); t++) {
        if (t > 6000) throw new Error('no checkpoint at step 8');
        await new Promise((r) => setTimeout(r, 10));
      }
      process.emit('SIGINT', 'SIGINT');
      expect(await run).toBe(130);
      // Every forward pass started (the probe's, the training's, those run ahead) has finished.
      expect(started).toBeGreaterThan(2);
      expect(settled).toBe(started);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      vi.restoreAllMocks();
    }
    const m = /interrupted at step (\d+)\//.exec(io.err.join(''));
    expect(m, io.err.join('')).not.toBeNull();
    const total = Number(m![1]) + 4;
    const resumed = await train([...args, '--steps', String(total), '--out', out, '--resume']);
    expect(resumed.code, resumed.err).toBe(0);
    const ref = await mkdtemp(join(tmpdir(), 'dl-prefetch-'));
    expect((await train([...args, '--steps', String(total), '--out', ref, '--prefetch', '0'])).code).toBe(0);
    expect(maxDiff(await params(dict(out)), await params(dict(ref)))).toBeLessThan(1e-5);
  });

  it('shows the overall tokens/s beside the model and SAE figures; refuses bad --prefetch and --model-threads', async () => {
    const r = await train([...args, '--steps', '4', '--log-every', '2']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/model \d+ tok\/s, SAE \d+ tok\/s, overall \d+ tok\/s/);
    for (const v of ['-1', '1.5', 'two']) {
      const bad = await train([...args, '--steps', '2', `--prefetch=${v}`]);
      expect(bad.code).toBe(2);
      expect(bad.err).toBe(`dictlearn train: --prefetch must be a non-negative integer, got '${v}'\n`);
    }
    const threads = await train([...args, '--steps', '2', '--model-threads', '0']);
    expect(threads.code).toBe(2);
    expect(threads.err).toMatch(/--model-threads must be a positive integer, got '0'/);
  });
});
