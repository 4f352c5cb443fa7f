import { afterEach, describe, expect, it, vi } from 'vitest';
import { saeProducts } from './commands/bench.js';
import { main } from './main.js';
import { captureOutput } from './test-io.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('dictlearn bench', () => {
  it('the SAE products have the shapes of the forward and backward pass', () => {
    const [fwd, dW, dx] = saeProducts(4096, 512, 4096);
    expect([fwd.m, fwd.n, fwd.k, fwd.transA, fwd.transB]).toEqual([4096, 4096, 512, false, false]);
    expect([dW.m, dW.n, dW.k, dW.transA, dW.transB]).toEqual([512, 4096, 4096, true, false]);
    expect([dx.m, dx.n, dx.k, dx.transA, dx.transB]).toEqual([4096, 512, 4096, false, true]);
  });

  it('--json prints a report with a row per backend and product, GFLOP/s = 2mnk / seconds', async () => {
    const io = captureOutput();
    const code = await main([
      'bench',
      '--json',
      '--reps',
      '1',
      '--batch',
      '64',
      '--d',
      '32',
      '--features',
      '48',
      '--no-numpy',
    ]);
    expect(code).toBe(0);
    const report = JSON.parse(io.out.join(''));
    const cpuRows = report.matmul.filter((r: { backend: string }) => r.backend === 'cpu');
    expect(cpuRows.map((r: { product: string }) => r.product)).toEqual([
      'x·W_enc (forward)',
      'xᵀ·dPre (dW_enc)',
      'dPre·W_encᵀ (dx)',
    ]);
    for (const r of cpuRows) {
      expect(r.gflops).toBeCloseTo((2 * 64 * 48 * 32) / r.seconds / 1e9, 6);
      expect(r.ratioToNumpy).toBeUndefined();
    }
    expect(report.backends.find((b: { name: string }) => b.name === 'cpu').status).toMatch(/^ready/);
  });

  it('bad flags give a short error and exit code 2, not a stack trace', async () => {
    const io = captureOutput();
    expect(await main(['bench', '--reps', 'zero'])).toBe(2);
    expect(io.err.join('')).toContain("dictlearn bench: --reps must be a positive integer, got 'zero'");
    expect(await main(['bench', '--bogus'])).toBe(2);
    expect(io.err.join('')).toMatch(/dictlearn bench: Unknown option '--bogus'/);
    expect(await main(['frobnicate'])).toBe(2);
    expect(io.err.join('')).toContain("dictlearn: unknown command 'frobnicate'");
  });
});
