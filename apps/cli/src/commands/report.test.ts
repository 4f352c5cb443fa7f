/**
 * `dictlearn report` end to end: a short real demo run (`demo --out`) and a tiny synthetic run
 * whose d is a square (for image tiles), reported together; the page opened in headless
 * Chromium, each plot checked against the run's own files (log.jsonl, summary.json,
 * density.json), and a screenshot saved as artifacts/report.png.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DictlearnError } from '@dictlearn/core';
import { densityHistogram, pngSize } from '@dictlearn/report';
import { chromium } from 'playwright';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../../../scripts/chromium.js';
import { main } from '../main.js';
import { captureOutput } from '../test-io.js';

const hasChromium = existsSync(CHROMIUM_PATH);
const artifacts = fileURLToPath(new URL('../../../../artifacts', import.meta.url));

let dir: string;
const demo = () => join(dir, 'demo');
const tiny = () => join(dir, 'tiny');
const html = () => join(dir, 'report.html');

type Row = { trainer: string; step: number; logs: Record<string, number> };
const logOf = (run: string): Row[] =>
  readFileSync(join(run, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Row);

describe('dictlearn report', () => {
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dictlearn-report-'));
    const io = captureOutput();
    try {
      expect(await main(['demo', '--steps', '30', '--log-every', '10', '--out', demo()])).toBe(0);
      expect(
        await main([
          'train',
          '--dim',
          '64',
          '--num-features',
          '32',
          '--mean-active',
          '3',
          '--dict-size',
          '48',
          '--steps',
          '20',
          '--log-every',
          '5',
          '--batch-size',
          '256',
          '--out',
          tiny(),
        ]),
      ).toBe(0);
      await writeFile(
        join(dir, 'ref.json'),
        JSON.stringify([{ label: 'paper', l0: 50, fve: 0.9, mse: 0.05 }]),
      );
      const code = await main([
        'report',
        demo(),
        tiny(),
        '--out',
        html(),
        '--png',
        join(dir, 'png'),
        '--json',
        join(dir, 'report.json'),
        '--reference',
        join(dir, 'ref.json'),
        '--image-shape',
        '8,8',
      ]);
      expect(code, io.err.join('')).toBe(0);
    } finally {
      vi.restoreAllMocks();
    }
  }, 300_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the run folders hold the final table and each trainer’s firing frequencies', () => {
    const summary = JSON.parse(readFileSync(join(demo(), 'summary.json'), 'utf8'));
    expect(summary.trainers).toHaveLength(3);
    for (const t of summary.trainers) {
      const d = JSON.parse(readFileSync(join(demo(), t.name, 'density.json'), 'utf8'));
      expect(d.density).toHaveLength(1024);
      // The table's dead fraction is the share of exact zeros of the saved frequencies.
      expect(d.density.filter((v: number) => v === 0).length / 1024).toBe(t.deadFraction);
    }
    // The log carries the dead fraction the curves plot.
    expect(logOf(demo()).every((r) => typeof r.logs.dead_fraction === 'number')).toBe(true);
  });

  it('writes a PNG per plot that decodes (signature and IHDR size), and the JSON of every number', async () => {
    const pngs = (await readdir(join(dir, 'png'))).sort();
    // 2 frontiers, 2 curve plots, 3 + 1 density histograms, 1 tile sheet
    expect(pngs).toHaveLength(9);
    for (const f of pngs) {
      const size = pngSize(readFileSync(join(dir, 'png', f)));
      expect(size, f).toBeDefined();
      expect(size!.width).toBeGreaterThan(50);
      expect(size!.height).toBeGreaterThan(20);
    }
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    expect(json.runs.map((r: { label: string }) => r.label)).toEqual(['demo', 'tiny']);
    expect(json.frontier.fve.filter((p: { reference: boolean }) => p.reference)).toHaveLength(1);
  });

  it('bad input gets one clear error naming the file', async () => {
    await mkdir(join(dir, 'empty'), { recursive: true });
    const bad = join(dir, 'bad');
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, 'run.json'), JSON.stringify({ trainers: [{ name: 't' }] }));
    await writeFile(join(bad, 'log.jsonl'), '{"trainer":"t","step":1,"logs":{}}\n{"trainer":"t","st');
    await writeFile(join(dir, 'badref.json'), '{"label": "x"}');
    const io = captureOutput();
    try {
      expect(await main(['report', join(dir, 'empty')])).toBe(1);
      expect(await main(['report', bad])).toBe(1);
      expect(
        await main(['report', demo(), '--reference', join(dir, 'badref.json'), '--out', join(dir, 'x.html')]),
      ).toBe(1);
      expect(await main(['report'])).toBe(2);
    } finally {
      vi.restoreAllMocks();
    }
    const err = io.err.join('');
    expect(err).toContain(`${join(dir, 'empty')}: is not a dictlearn run folder`);
    expect(err).toContain(
      `${join(bad, 'log.jsonl')}: line 2 is not valid JSON (the file ends mid-line: truncated?)`,
    );
    expect(err).toContain(`${join(dir, 'badref.json')}: expected a JSON array of reference points`);
    expect(DictlearnError).toBeDefined();
  });

  it.skipIf(!hasChromium)(
    `opens in headless Chromium with every plot drawn from the run, no errors, no requests${hasChromium ? '' : ` (skipped: no Chromium at ${CHROMIUM_PATH})`}`,
    { timeout: 120_000 },
    async () => {
      const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
      try {
        const tab = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
        const problems: string[] = [];
        const requests: string[] = [];
        tab.on('pageerror', (e) => problems.push(e.message));
        tab.on('console', (m) => {
          if (m.type() === 'error' || m.type() === 'warning') problems.push(m.text());
        });
        tab.on('request', (r) => {
          if (!r.url().startsWith('data:')) requests.push(r.url());
        });
        await tab.goto(pathToFileURL(html()).href);
        await tab.waitForLoadState('load');
        expect(problems).toEqual([]);
        expect(requests).toEqual([pathToFileURL(html()).href]);

        const plots = await tab.$$eval('figure.plot', (els) =>
          els.map((el) => ({
            kind: el.getAttribute('data-plot'),
            run: el.getAttribute('data-run'),
            trainer: el.getAttribute('data-trainer'),
            points: [...el.querySelectorAll('[aria-roledescription="point"]')].map(
              (p) => p.getAttribute('aria-label') ?? '',
            ),
            bars: [...el.querySelectorAll('[aria-roledescription="bar"]')].map(
              (p) => p.getAttribute('aria-label') ?? '',
            ),
            tiles: [...el.querySelectorAll('img.tile')].map((t) => ({
              id: Number(t.getAttribute('data-feature')),
              w: (t as unknown as { naturalWidth: number }).naturalWidth,
            })),
            box: el.getBoundingClientRect().height,
          })),
        );
        expect(plots.map((p) => p.kind)).toEqual([
          'frontier-fve',
          'frontier-mse',
          'curves',
          'density',
          'density',
          'density',
          'curves',
          'density',
          'tiles',
        ]);
        for (const p of plots) expect(p.box, p.kind!).toBeGreaterThan(p.kind === 'tiles' ? 40 : 100);

        // Curves: a point per (log line, metric) of the run's log.jsonl, each at its logged value.
        for (const [run, label] of [
          [demo(), 'demo'],
          [tiny(), 'tiny'],
        ] as const) {
          const log = logOf(run);
          const curves = plots.find((p) => p.kind === 'curves' && p.run === label)!;
          const metrics = ['loss', 'mse_loss', 'l0', 'frac_variance_explained', 'dead_fraction', 'lr'];
          const expected = log.reduce((n, r) => n + metrics.filter((m) => r.logs[m] !== undefined).length, 0);
          expect(curves.points).toHaveLength(expected);
          expect(expected).toBe(log.length * 6);
          const last = log.at(-1)!;
          expect(
            curves.points.some(
              (l) => l.startsWith(`step: ${last.step}; FVE: `) && l.includes(`trainer: ${last.trainer};`),
            ),
          ).toBe(true);
        }
        expect(new Set(logOf(demo()).map((r) => r.step))).toEqual(new Set([10, 20, 30]));

        // Frontier: one point per dictionary (3 + 1) and the reference; L0 and FVE from summary.json.
        const fve = plots.find((p) => p.kind === 'frontier-fve')!;
        expect(fve.points).toHaveLength(5);
        const summary = JSON.parse(readFileSync(join(demo(), 'summary.json'), 'utf8'));
        for (const t of summary.trainers) {
          const l0 = Number(t.l0.toPrecision(3)).toLocaleString('en-US');
          expect(
            fve.points.some((l) => l.includes(`label: ${t.name};`) && l.includes(`l0: ${l0};`)),
            `${t.name} l0 ${l0}`,
          ).toBe(true);
        }

        // Density: the bars count every feature, as the saved frequencies bin.
        for (const p of plots.filter((q) => q.kind === 'density')) {
          const folder = p.run === 'demo' ? demo() : tiny();
          const density = JSON.parse(readFileSync(join(folder, p.trainer!, 'density.json'), 'utf8')).density;
          const counts = p.bars.map((l) => Number(/count: (\d+)/.exec(l)![1]));
          expect(counts.reduce((a, b) => a + b, 0)).toBe(density.length);
          expect(counts).toEqual(densityHistogram(density).bins.map((b) => b.count));
        }

        // Tiles: 48 decoder rows of 8×8 pixels, most-used first (by the saved frequencies).
        const tiles = plots.find((p) => p.kind === 'tiles')!;
        const density = JSON.parse(readFileSync(join(tiny(), '0_standard', 'density.json'), 'utf8'))
          .density as number[];
        expect(tiles.tiles).toHaveLength(48);
        expect(tiles.tiles.every((t) => t.w === 8)).toBe(true);
        const shown = tiles.tiles.map((t) => density[t.id]);
        expect([...shown].sort((a, b) => b - a)).toEqual(shown);

        await mkdir(artifacts, { recursive: true });
        await tab.screenshot({ path: join(artifacts, 'report.png'), fullPage: true });
      } finally {
        await browser.close();
      }
    },
  );
});
