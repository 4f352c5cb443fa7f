// The wiring of `dictlearn demo --archs` and of its config file, checked cheaply (a few steps):
// the five trainers carry the settings the README documents, the example config file is the
// same run, and both commands print a table row per architecture with the ground-truth
// columns. Whether those settings reach ≥ 90% recovery is archs-demo.ground-truth.test.ts
// (minutes of CPU, so it runs only when asked).
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { readConfigFile } from './commands/train-config.js';
import { archsDemoConfig, DEMO_ARCHITECTURES } from './demo.js';
import { main } from './main.js';
import { captureOutput } from './test-io.js';

afterEach(() => {
  vi.restoreAllMocks();
});

const EXAMPLE = fileURLToPath(new URL('../examples/archs-demo.yaml', import.meta.url));

/** The settings of the README's "Every architecture" section, written out by hand. */
function documented(seed: number) {
  const common = { dictSize: 1024, seed };
  return [
    {
      architecture: 'standard',
      config: { l1Penalty: 0.1 },
      lr: 1e-2,
      warmupSteps: 100,
      sparsityWarmupSteps: 300,
      resampleSteps: 200,
      ...common,
    },
    { architecture: 'topk', config: { k: 6, deadTokens: 102_400 }, lr: 4e-3, warmupSteps: 100, ...common },
    {
      architecture: 'batch-topk',
      config: { k: 6, deadTokens: 102_400 },
      lr: 4e-3,
      warmupSteps: 100,
      ...common,
    },
    {
      architecture: 'jumprelu',
      config: { targetL0: 5, bandwidth: 0.05, initThreshold: 0.05 },
      lr: 1e-2,
      warmupSteps: 100,
      sparsityWarmupSteps: 300,
      ...common,
    },
    {
      architecture: 'gated',
      config: { l1Penalty: 0.3 },
      lr: 1e-2,
      warmupSteps: 100,
      sparsityWarmupSteps: 100,
      ...common,
    },
  ];
}

/** The rows of a printed table, from the line under the header on: [label, L0, FVE, dead, MMCS, recovered]. */
function tableRows(text: string): string[][] {
  const lines = text.split('\n');
  const rule = lines.findIndex((l) => /^-+( +-+)+$/.test(l));
  expect(rule, 'the table has a header rule').toBeGreaterThan(0);
  const rows: string[][] = [];
  for (const line of lines.slice(rule + 1)) {
    if (line.trim() === '') break;
    rows.push(line.trim().split(/ {2,}/));
  }
  return rows;
}

describe('dictlearn demo --archs', () => {
  it('trains the five architectures with the documented settings on the demo source', () => {
    for (const seed of [0, 3]) {
      const cfg = archsDemoConfig(seed);
      expect(cfg.trainers).toEqual(documented(seed));
      expect(cfg.source).toEqual({
        type: 'synthetic',
        dim: 256,
        numFeatures: 512,
        meanActive: 5,
        decay: 0.99,
        noise: 0.1,
        seed,
      });
      expect([cfg.steps, cfg.batchSize]).toEqual([1500, 1024]);
    }
    expect(DEMO_ARCHITECTURES).toEqual(documented(0).map((t) => t.architecture));
  });

  it('--help documents --archs and the config file; a bad --steps is refused naming the flag', async () => {
    const io = captureOutput();
    expect(await main(['--help'])).toBe(0);
    const help = io.out.join('');
    expect(help).toMatch(/^ +--archs +one dictionary of each architecture/m);
    expect(help).toContain('dictlearn train --config apps/cli/examples/archs-demo.yaml');
    expect(await main(['demo', '--archs', '--steps', '0'])).toBe(2);
    expect(io.err.join('')).toContain('dictlearn demo: --steps must be an integer from 1 to');
  });

  it('apps/cli/examples/archs-demo.yaml is the same run', async () => {
    expect(await readConfigFile(EXAMPLE)).toEqual(archsDemoConfig(0));
  });

  it('demo --archs and train --config archs-demo.yaml print the same table, a row per architecture', async () => {
    const io = captureOutput();
    expect(await main(['demo', '--archs', '--steps', '3'])).toBe(0);
    const demo = io.out.join('');
    io.out.length = 0;
    expect(await main(['train', '--config', EXAMPLE, '--steps', '3'])).toBe(0);
    const train = io.out.join('');
    expect(demo).toMatch(/^trained 5 dictionaries for 3 steps \(3072 activations\)/);
    const rows = tableRows(demo);
    expect(rows.map((r) => r[0])).toEqual([
      'standard(l1Penalty=0.1)',
      'topk(k=6, deadTokens=102400)',
      'batch-topk(k=6, deadTokens=102400)',
      'jumprelu(targetL0=5, bandwidth=0.05, initThreshold=0.05)',
      'gated(l1Penalty=0.3)',
    ]);
    for (const r of rows) {
      expect(r).toHaveLength(6);
      // The ground-truth columns are filled: MMCS of random directions (~0.2) and a percentage.
      expect(Number(r[4])).toBeGreaterThan(0.1);
      expect(Number(r[4])).toBeLessThan(1);
      expect(r[5]).toMatch(/^\d+\.\d%$/);
    }
    // TopK keeps exactly k = 6 features per row whatever the weights: the config reached the plugin.
    expect(rows[1][1]).toBe('6.00');
    // Same seeds, same data, same settings: the same figures, row for row.
    expect(tableRows(train)).toEqual(rows);
  }, 120_000);
});
