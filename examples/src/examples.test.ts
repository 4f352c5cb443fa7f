// Runs every example as its README command does and checks what it prints and writes.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';

const tmp = mkdtempSync(join(tmpdir(), 'dictlearn-examples-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const repo = fileURLToPath(new URL('../..', import.meta.url));

/** Each example's module (static imports, so the bundler knows them). */
const EXAMPLES: Record<string, () => Promise<unknown>> = {
  'quick-start': () => import('./quick-start.js'),
  'custom-architecture': () => import('./custom-architecture.js'),
  'train-from-files': () => import('./train-from-files.js'),
  'load-dictionary': () => import('./load-dictionary.js'),
  'custom-backend': () => import('./custom-backend.js'),
};

/**
 * Runs an example the way `node dist/<name>.js ARGS` does (its top-level code, with these
 * command-line arguments), against the packages' sources, and returns what it printed, line by
 * line. Each module runs once per test file, so each example is run once.
 */
async function runExample(name: string, args: string[] = []): Promise<string> {
  const argv = process.argv;
  const lines: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
    lines.push(a.map(String).join(' '));
  });
  process.argv = [argv[0], name, ...args];
  try {
    await EXAMPLES[name]();
  } finally {
    process.argv = argv;
    log.mockRestore();
  }
  return lines.join('\n');
}

/** The value of a metric row (`name   value`) of formatMetrics' table. */
function metric(text: string, name: string): number {
  const row = new RegExp(`^${name} +(\\S+)$`, 'm').exec(text);
  if (!row) throw new Error(`no '${name}' row in:\n${text}`);
  return Number(row[1]);
}

/** `recovered P% of the true features (MMCS M)` → [P, M]. */
function recovery(text: string): [number, number] {
  const m = /recovered ([\d.]+)% of the true features \(MMCS ([\d.]+)\)/.exec(text);
  if (!m) throw new Error(`no recovery line in:\n${text}`);
  return [Number(m[1]), Number(m[2])];
}

describe('examples', () => {
  it('quick-start: a standard SAE recovers the true features of the synthetic data', async () => {
    const text = await runExample('quick-start');
    expect(metric(text, 'frac_variance_explained')).toBeGreaterThan(0.85);
    expect(metric(text, 'l0')).toBeGreaterThan(2);
    expect(metric(text, 'l0')).toBeLessThan(20);
    expect(metric(text, 'tokens')).toBe(4096);
    const [recovered, mmcs] = recovery(text);
    expect(recovered).toBeGreaterThan(90);
    expect(mmcs).toBeGreaterThan(0.95);
  });

  it('custom-architecture: the plugin trains, saves, and loads back by name', async () => {
    const out = join(tmp, 'custom');
    const text = await runExample('custom-architecture', [out]);
    expect(text).toContain(`architecture sqrt-penalty, saved to ${out}/sqrt`);
    expect(existsSync(join(out, 'sqrt', 'config.json'))).toBe(true);
    expect(existsSync(join(out, 'sqrt', 'sae.safetensors'))).toBe(true);
    const [recovered, mmcs] = recovery(text);
    expect(recovered).toBeGreaterThan(90);
    expect(mmcs).toBeGreaterThan(0.95);
  });

  it('train-from-files: writes .npy files, trains on them and saves the dictionary', async () => {
    const out = join(tmp, 'files');
    const text = await runExample('train-from-files', [out]);
    expect(text).toContain('training on npy(1 file, 8192 rows, d=32, shuffled with seed 0)');
    for (const f of ['acts.npy', 'heldout.npy', 'standard/config.json', 'standard/sae.safetensors'])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(metric(text, 'frac_variance_explained')).toBeGreaterThan(0.85);
    expect(metric(text, 'tokens')).toBe(1024); // the held-out rows, every one
  });

  it('load-dictionary: loads the saved dictionary, encodes, evaluates, round-trips SAELens', async () => {
    const files = join(tmp, 'files');
    const trained = join(files, 'standard');
    if (!existsSync(trained)) await runExample('train-from-files', [files]);
    const out = join(tmp, 'load');
    const text = await runExample('load-dictionary', [
      trained,
      '--acts',
      join(files, 'heldout.npy'),
      '--out',
      out,
    ]);
    expect(text).toContain('dictlearn dictionary: standard, d = 32, F = 128');
    expect(text).toMatch(/^row 0: top features \d+:\d+\.\d{3} \d+:\d+\.\d{3} \d+:\d+\.\d{3}$/m);
    // The same held-out rows as train-from-files scored: the same metrics.
    expect(metric(text, 'frac_variance_explained')).toBeGreaterThan(0.85);
    expect(text).toContain(`wrote ${out}/saelens (saelens); largest feature difference 0`);
    expect(existsSync(join(out, 'saelens', 'cfg.json'))).toBe(true);
  });

  it('custom-backend: three kernels agree with the cpu backend; a missing one names op and backend', async () => {
    const text = await runExample('custom-backend');
    // relu(x·W + b) by hand: row 0 = relu([0.2+1-0.35, -0.4-0.2+0.125, 1-1.6+0.025, 0.3-1.2-0.15]
    // + [0.1, -0.1, 0.2, 0]) = [0.95, 0, 0, 0]; row 1 = relu([0.6+0.7, -1.2-0.25, 3-0.05, 0.9+0.3]
    // + b) = [1.4, 0, 3.15, 1.2].
    expect(text).toContain('mini: 0.950 0.000 0.000 0.000 1.400 0.000 3.150 1.200');
    const worst = Number(/largest difference from the cpu backend: (\S+)/.exec(text)?.[1]);
    expect(worst).toBeLessThan(1e-6);
    expect(text).toMatch(/sum on mini: .*sum.*mini/);
  });

  const built = existsSync(join(repo, 'examples/dist/quick-start.js'));
  it.skipIf(!built)(
    `the built example runs as the README says (skipped when examples/dist is missing: pnpm build first)`,
    async () => {
      const { spawnSync } = await import('node:child_process');
      const r = spawnSync(process.execPath, ['examples/dist/quick-start.js'], {
        cwd: repo,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      expect(recovery(r.stdout)[0]).toBeGreaterThan(90);
    },
  );
});
