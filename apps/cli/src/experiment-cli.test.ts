import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from './main.js';
import { captureOutput } from './test-io.js';

afterEach(() => vi.restoreAllMocks());

describe('dictlearn experiment', () => {
  it('runs a recipe from the command line and prints its table', async () => {
    const io = captureOutput();
    expect(await main(['experiment', 'heads', '--tiny', '--seed', '3', '--backend', 'cpu'])).toBe(0);
    const text = io.out.join('');
    expect(text).toContain('experiment heads (seed 3)');
    expect(text).toMatch(/^dense\s/m);
    expect(text).toMatch(/^blockdiag ×4\s/m);
  });

  it('size flags override the recipe’s default size; sizes the heads cannot split are refused', async () => {
    const io = captureOutput();
    const args = ['experiment', 'heads', '--tiny', '--backend', 'cpu', '--dim', '32', '--num-features', '16'];
    expect(await main(args)).toBe(0);
    expect(io.out.join('')).toContain('4 blocks of d/4 = 8 with 4 true features each');
    vi.restoreAllMocks();
    const bad = captureOutput();
    expect(await main(['experiment', 'heads', '--tiny', '--dim', '6'])).toBe(2);
    expect(bad.err.join('')).toContain(
      'experiment sizes dim, numFeatures and dictSize must be multiples of 4',
    );
  });

  it('names the recipes when the name is wrong (exit 2)', async () => {
    const io = captureOutput();
    expect(await main(['experiment', 'nope'])).toBe(2);
    expect(io.err.join('')).toContain(
      "dictlearn experiment: unknown experiment 'nope' (experiments: l1-sweep, dict-size, encoders, heads)",
    );
  });
});

describe('dictlearn eval of a block-diagonal dictionary, with --codes', () => {
  it('adds per-head L0 and dead fractions and the amortisation gap, consistent with the metrics', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dictlearn-blockdiag-'));
    try {
      const data = ['--source', 'synthetic', '--dim', '8', '--num-features', '8', '--backend', 'cpu'];
      captureOutput();
      const trained = await main([
        'train',
        ...data,
        '--arch',
        'blockdiag',
        '--set',
        'heads=2',
        '--set',
        'inner=standard',
        '--l1',
        '0.05',
        '--dict-size',
        '16',
        '--steps',
        '30',
        '--batch-size',
        '64',
        '--out',
        dir,
      ]);
      expect(trained).toBe(0);
      const [saved] = (await readdir(dir)).filter((n) => n.startsWith('0_'));
      vi.restoreAllMocks();
      const io = captureOutput();
      const code = await main([
        'eval',
        join(dir, saved),
        ...data,
        '--batches',
        '1',
        '--batch-size',
        '64',
        '--codes',
        'omp',
        '--json',
      ]);
      expect(code).toBe(0);
      const r = JSON.parse(io.out.join(''));
      expect(r.heads.heads).toBe(2);
      expect(r.heads.l0[0] + r.heads.l0[1]).toBeCloseTo(r.l0, 4);
      expect(r.gap.encoder.fve).toBeCloseTo(r.frac_variance_explained, 4);
      expect(r.gap.encoder.l0).toBeCloseTo(r.l0, 4);
      expect(r.gap.optimal.atoms).toBe(Math.max(1, Math.round(r.l0)));
      // Without --codes the per-head figures come all the same (the config names blockdiag).
      vi.restoreAllMocks();
      const plain = captureOutput();
      expect(await main(['eval', join(dir, saved), ...data, '--batches', '1', '--batch-size', '64'])).toBe(0);
      expect(plain.out.join('')).toMatch(/per head \(2 heads\)\nhead\t0\t1\nL0\t[0-9.]+\t[0-9.]+\ndead\t/);
      expect(plain.out.join('')).not.toContain('amortisation gap');
      vi.restoreAllMocks();
      const bad = captureOutput();
      expect(await main(['eval', join(dir, saved), ...data, '--codes', 'lasso'])).toBe(2);
      expect(bad.err.join('')).toContain("--codes must be 'fista' or 'omp', got 'lasso'");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
