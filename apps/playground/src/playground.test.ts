import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SyntheticSource } from '@dictlearn/buffer';
import { type Browser, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../../scripts/chromium.js';

const app = fileURLToPath(new URL('..', import.meta.url));
const artifacts = fileURLToPath(new URL('../../../artifacts', import.meta.url));
const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.wasm': 'application/wasm',
};

let server: Server | undefined;
afterAll(() => server?.close());

/** Serves a folder on 127.0.0.1 (a random port). */
async function serve(dir: string): Promise<string> {
  server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0])).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path === '/' ? 'index.html' : path);
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}/`;
}

/** The data and sweep the test runs: small, so two settings train in seconds on SwiftShader. */
const RUN = {
  dim: 32,
  numFeatures: 32,
  meanActive: 2,
  noise: 0.05,
  seed: 5,
  dictSize: 64,
  steps: 100,
  logEvery: 20,
};
const SWEEP = ['l1Penalty=0.02', 'l1Penalty=0.5'];
const METRICS = ['loss', 'MSE', 'L0', 'FVE', 'dead fraction'];

/** Opens the page, recording console errors, page errors and every request. */
async function open(browser: Browser, url: string, init?: () => void) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('request', (r) => requests.push(r.url()));
  if (init) await page.addInitScript(init);
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('backend')?.textContent !== '…');
  return { page, errors, requests };
}

/** The points drawn in each curve panel: panel title → setting → [step, value] from the SVG. */
async function drawnCurves(page: Page): Promise<Record<string, Record<string, [number, number][]>>> {
  return page.evaluate(() => {
    const out: Record<string, Record<string, [number, number][]>> = {};
    for (const panel of document.querySelectorAll('#curves g.mark-group.role-scope')) {
      // The concat's own scope has no title of its own; each panel's has its metric.
      const title = panel.querySelector('.role-title-text text')?.textContent;
      if (!title) continue;
      const series: Record<string, [number, number][]> = {};
      for (const p of panel.querySelectorAll('g.mark-symbol path[aria-label]')) {
        // vega's description of a point: "step: 10; value: 0.123; trainer: l1Penalty=0.02" (field order varies)
        const fields = Object.fromEntries(
          (p.getAttribute('aria-label') ?? '').split('; ').map((kv) => kv.split(': ') as [string, string]),
        );
        series[fields.trainer] ??= [];
        series[fields.trainer].push([
          Number(fields.step),
          Number(fields[Object.keys(fields).find((k) => k !== 'step' && k !== 'trainer')!]),
        ]);
      }
      out[title] = series;
    }
    return out;
  });
}

describe.skipIf(!existsSync(CHROMIUM_PATH))(
  `playground in headless Chromium${existsSync(CHROMIUM_PATH) ? '' : ` (skipped: no Chromium at ${CHROMIUM_PATH})`}`,
  () => {
    let browser: Browser;
    let url: string;
    beforeAll(async () => {
      const outDir = join(app, 'dist');
      await build({
        root: app,
        configFile: join(app, 'vite.config.ts'),
        logLevel: 'warn',
        build: { outDir, emptyOutDir: true },
      });
      url = await serve(outDir);
      browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    }, 240_000);
    afterAll(() => browser?.close());

    it('runs a two-setting sweep on WebGPU: curves, feature matches and drill-down', {
      timeout: 300_000,
    }, async () => {
      const { page, errors, requests } = await open(browser, url);
      const base = new URL(url);
      await page.selectOption('#arch', 'standard');
      for (const [id, v] of Object.entries({
        dim: RUN.dim,
        numFeatures: RUN.numFeatures,
        meanActive: RUN.meanActive,
        noise: RUN.noise,
        dataSeed: RUN.seed,
        dictSize: RUN.dictSize,
        steps: RUN.steps,
        logEvery: RUN.logEvery,
        lr: 0.01,
        warmupSteps: 10,
        sparsityWarmupSteps: 20,
      })) {
        await page.fill(`#${id}`, String(v));
        await page.dispatchEvent(`#${id}`, 'change');
      }
      await page.fill('#arch-fields input[data-key="l1Penalty"]', '0.02, 0.5');
      await page.click('#train');
      await page.waitForFunction(
        () =>
          (window as unknown as { dictlearnPlayground: { done: boolean } }).dictlearnPlayground.done ||
          document.getElementById('error')?.textContent !== '',
        undefined,
        { timeout: 280_000 },
      );
      await mkdir(artifacts, { recursive: true });
      const screenshot = () => page.screenshot({ path: join(artifacts, 'playground.png'), fullPage: true });
      await screenshot();
      expect(await page.textContent('#error')).toBe('');
      expect(await page.textContent('#backend')).toMatch(/^WebGPU/);

      // Curves: every panel has both settings, one point per logged step, as logged by the run.
      const logged = RUN.steps / RUN.logEvery;
      const steps = Array.from({ length: logged }, (_, i) => (i + 1) * RUN.logEvery);
      const drawn = await drawnCurves(page);
      expect(Object.keys(drawn).sort()).toEqual([...METRICS].sort());
      const points = (await page.evaluate(
        () =>
          (window as unknown as { dictlearnPlayground: { points: unknown[] } }).dictlearnPlayground.points,
      )) as { trainer: string; step: number; metric: string; value: number }[];
      const key: Record<string, string> = {
        loss: 'loss',
        MSE: 'mse_loss',
        L0: 'l0',
        FVE: 'frac_variance_explained',
        'dead fraction': 'dead_fraction',
      };
      for (const title of METRICS) {
        expect(Object.keys(drawn[title]).sort()).toEqual(SWEEP);
        for (const s of SWEEP) {
          const line = drawn[title][s].sort((a, b) => a[0] - b[0]);
          expect(line.map((p) => p[0])).toEqual(steps);
          const want = points.filter((p) => p.trainer === s && p.metric === key[title]).map((p) => p.value);
          expect(want).toHaveLength(logged);
          // aria labels carry vega's default number format (a few significant digits).
          for (const [i, [, v]] of line.entries()) {
            expect(Math.abs(v - want[i])).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(want[i])));
          }
        }
      }
      // The sweep really trained two settings: the heavier L1 penalty ends sparser, and the loss moved.
      const final = (s: string, m: string) =>
        points.filter((p) => p.trainer === s && p.metric === m).at(-1)!.value;
      expect(final(SWEEP[1], 'l0')).toBeLessThan(final(SWEEP[0], 'l0'));
      for (const s of SWEEP) {
        const loss = points.filter((p) => p.trainer === s && p.metric === 'loss').map((p) => p.value);
        expect(new Set(loss).size).toBe(logged);
      }

      // Feature view of the sparser setting (the dense one has not found features in 100 steps):
      // one tile per learned feature, labelled with the nearest true feature and
      // the cosine, which the test recomputes from the page's decoder rows and the true features
      // of the same synthetic source made here.
      await page.selectOption('#feature-setting', { label: SWEEP[1] });
      expect(await page.textContent('#feature-note')).toMatch(
        new RegExp(`^${RUN.dictSize} learned features of ${SWEEP[1]}`),
      );
      const learned = (await page.evaluate(() =>
        Array.from(
          (window as unknown as { dictlearnPlayground: { results: { learned: Float32Array }[] } })
            .dictlearnPlayground.results[1].learned,
        ),
      )) as number[];
      const truth = new SyntheticSource({
        dim: RUN.dim,
        numFeatures: RUN.numFeatures,
        meanActive: RUN.meanActive,
        noise: RUN.noise,
        seed: RUN.seed,
      }).groundTruthHost();
      const labels = await page.$$eval('#tiles .tile .label', (els) => els.map((e) => e.textContent ?? ''));
      expect(labels).toHaveLength(RUN.dictSize);
      const d = RUN.dim;
      const cosines: number[] = [];
      for (const label of labels) {
        const m = /^#(\d+) ↔ T(\d+) · cos (-?\d\.\d{3})$/.exec(label);
        expect(m, label).not.toBeNull();
        const [j, g, c] = [Number(m![1]), Number(m![2]), Number(m![3])];
        expect(c).toBeGreaterThanOrEqual(-1);
        expect(c).toBeLessThanOrEqual(1);
        const cos = (t: number) => {
          let dot = 0;
          let nl = 0;
          let nt = 0;
          for (let k = 0; k < d; k++) {
            dot += learned[j * d + k] * truth[t * d + k];
            nl += learned[j * d + k] ** 2;
            nt += truth[t * d + k] ** 2;
          }
          return dot / Math.sqrt(nl * nt);
        };
        const all = Array.from({ length: RUN.numFeatures }, (_, t) => cos(t));
        expect(Math.abs(c - cos(g))).toBeLessThanOrEqual(6e-4);
        expect(cos(g)).toBeCloseTo(Math.max(...all), 5);
        cosines.push(c);
      }
      // Sorted by cosine, largest first; a 100-step run already finds some features.
      expect(cosines).toEqual([...cosines].sort((a, b) => b - a));
      expect(cosines[0]).toBeGreaterThan(0.9);

      // Drill-down of the best-matched feature.
      await page.click('#tiles .tile >> nth=0');
      await page.waitForSelector('#drill-chart svg');
      expect(await page.textContent('#drill-info')).toMatch(
        new RegExp(
          `^feature ${labels[0].split(' ')[0]} of ${SWEEP[1]} · nearest true feature T\\d+, cosine 0\\.9\\d{3} · fires on \\d+\\.\\d% of 512 held-out samples$`,
        ),
      );
      expect(await page.$$eval('#drill-samples li', (els) => els.length)).toBeGreaterThan(0);

      await screenshot();
      expect(errors).toEqual([]);
      expect(requests.filter((r) => new URL(r).host !== base.host && !r.startsWith('data:'))).toEqual([]);
      await page.close();
    });

    it('says why it runs on CPU when the browser has no WebGPU', { timeout: 60_000 }, async () => {
      const { page, errors } = await open(browser, url, () => {
        Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined });
      });
      const text = await page.textContent('#backend');
      expect(text).toBe(
        'CPU — WebGPU unavailable: navigator.gpu is undefined in this browser; running on CPU',
      );
      expect(errors).toEqual([]);
      await page.close();
    });
  },
);
