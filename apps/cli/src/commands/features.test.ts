// `dictlearn features` and `dictlearn encode` end to end on the tiny GPT-NeoX of
// packages/source-model/fixtures: a dictionary trained here for a few hundred steps on its layer-1
// residual stream, the page opened in headless Chromium (Debian's, through playwright), a
// screenshot saved to artifacts/features-page.png.
import '@dictlearn/backend-cpu/register';
import '@dictlearn/arch-topk/register';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { topk } from '@dictlearn/arch-topk';
import { Dictionary, trainSAE, useBackend } from '@dictlearn/core';
import { writeDictionary } from '@dictlearn/formats';
import {
  encodeText,
  type FeatureReport,
  LanguageModel,
  loadTokenizer,
  ModelSource,
} from '@dictlearn/source-model';
import { chromium } from 'playwright';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../../../scripts/chromium.js';
import { main } from '../main.js';
import { captureOutput } from '../test-io.js';
import { escapeHtml, renderFeaturesPage } from './features-page.js';

const FIXTURES = fileURLToPath(new URL('../../../../packages/source-model/fixtures/', import.meta.url));
const MODEL = `${FIXTURES}gpt-neox/model.onnx`;
const HOOK = 'gpt_neox.layers.1';
const HELDOUT = `${FIXTURES}heldout.txt`;
const artifacts = fileURLToPath(new URL('../../../../artifacts', import.meta.url));
const hasChromium = existsSync(CHROMIUM_PATH);

let dir: string;
let dictDir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dictlearn-features-'));
  dictDir = join(dir, 'dict');
  await useBackend('cpu');
  // A TopK dictionary (k 8, 256 features) on the layer-1 residual stream of the training corpus.
  const source = await ModelSource.open({
    model: MODEL,
    text: `${FIXTURES}corpus.txt`,
    hooks: HOOK,
    contextLength: 64,
    forwardBatch: 32,
    dropBos: true,
    epochs: Number.POSITIVE_INFINITY,
  });
  try {
    const { dictionaries } = await trainSAE({
      data: source,
      batchSize: 512,
      steps: 300,
      logEvery: 0,
      normalize: true,
      trainers: [
        { name: 'topk', architecture: topk({ k: 8 }), dictSize: 256, seed: 0, lr: 3e-3, warmupSteps: 20 },
      ],
    });
    await dictionaries[0].save(dictDir);
    for (const d of dictionaries) d.dispose();
  } finally {
    await source.release();
  }
}, 300_000);

afterAll(async () => {
  vi.restoreAllMocks();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A token as the page shows it (line breaks made visible). */
const shown = (t: string) => t.replace(/\r/g, '␍').replace(/\n/g, '↵').replace(/\t/g, '⇥');

describe('dictlearn features', () => {
  let report: FeatureReport & { path: string; architecture: string };
  let html: string;
  const page = () => join(dir, 'page.html');

  beforeAll(async () => {
    const io = captureOutput();
    const code = await main([
      'features',
      dictDir,
      '--model',
      MODEL,
      '--hook',
      HOOK,
      '--text',
      HELDOUT,
      '--context-length',
      '64',
      '--features',
      '8',
      '--contexts',
      '5',
      '--seed',
      '1',
      '--out',
      page(),
      '--json',
      join(dir, 'features.json'),
      '--backend',
      'cpu',
    ]);
    vi.restoreAllMocks();
    expect(io.err.join('')).toBe('');
    expect(code).toBe(0);
    expect(io.out.join('')).toMatch(/contexts, \d+ tokens; 8 features and 8 neurons shown\n/);
    expect(io.out.join('')).toContain(`page: ${page()}`);
    report = JSON.parse(readFileSync(join(dir, 'features.json'), 'utf8'));
    html = readFileSync(page(), 'utf8');
  }, 120_000);

  it('--json holds every card the page shows, with the numbers it shows', () => {
    expect(report.path).toBe(dictDir);
    expect(report.architecture).toBe('topk');
    expect(report.dictionary).toEqual({ activationDim: 64, dictSize: 256 });
    expect(report.hook).toBe(HOOK);
    expect(report.features).toHaveLength(8);
    expect(report.neurons).toHaveLength(8);
    expect(report.embeddings).toEqual({
      embedding: 'gpt_neox.embed_in.weight',
      unembedding: expect.any(String),
      tied: false,
    });
    for (const card of report.features) {
      expect(html).toContain(`id="feature-${card.index}"`);
      expect(card.examples).toHaveLength(5);
      expect(card.nearest?.embedding).toHaveLength(10);
      expect(card.random?.unembedding).toHaveLength(10);
    }
    // The features shown are the most active ones: total activation, decreasing.
    const totals = report.features.map((c) => c.totalActivation);
    expect([...totals].sort((a, b) => b - a)).toEqual(totals);
  });

  it.skipIf(!hasChromium)(
    `opens in headless Chromium without errors or requests; the cards hold real contexts of the run${hasChromium ? '' : ` (skipped: no Chromium at ${CHROMIUM_PATH})`}`,
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
        tab.on('request', (r) => requests.push(r.url()));
        await tab.goto(pathToFileURL(page()).href);
        // The inline script ran (the CSP lets only it run) and set this.
        await tab.waitForSelector('body[data-ready="1"]', { timeout: 10_000 });
        expect(problems).toEqual([]);
        expect(requests).toEqual([pathToFileURL(page()).href]);

        const cards = await tab.$$eval('#features .card', (els) =>
          els.map((el) => ({
            index: Number(el.getAttribute('data-index')),
            contexts: [...el.querySelectorAll('.ctx .text')].map((t) => t.textContent ?? ''),
            top: [...el.querySelectorAll('.ctx .tok.top')].map((t) => t.textContent ?? ''),
            visible: (el as unknown as { offsetParent: unknown }).offsetParent !== null,
          })),
        );
        expect(cards.map((c) => c.index)).toEqual(report.features.map((c) => c.index));
        const text = readFileSync(HELDOUT, 'utf8');
        cards.forEach((card, i) => {
          const want = report.features[i];
          expect(card.visible).toBe(true);
          // Each context line is the run's tokens, in order, with the top token outlined.
          expect(card.contexts).toEqual(want.examples.map((e) => e.tokens.map(shown).join('')));
          expect(card.top).toEqual(want.examples.map((e) => shown(e.tokens[e.position - e.offset])));
          for (const line of card.contexts) {
            for (const piece of line.split('<|endoftext|>')) if (piece.trim()) expect(text).toContain(piece);
          }
        });
        // Highlighting: the top token of a context is the most strongly coloured one.
        const alphas = await tab.$$eval('#features .card:first-child .ctx:first-child .tok', (els) =>
          els.map((el) => {
            // Chromium writes rgb(…) for an opaque colour, rgba(…, a) otherwise; BOS tokens have none.
            const m = /rgba?\(([^)]*)\)/.exec(
              (el as unknown as { style: { background: string } }).style.background,
            );
            return m ? Number(m[1].split(',')[3] ?? 1) : 0;
          }),
        );
        const e0 = report.features[0].examples[0];
        expect(alphas.indexOf(Math.max(...alphas))).toBe(e0.position - e0.offset);
        expect(Math.max(...alphas)).toBeCloseTo(Math.min(1, e0.value / report.features[0].maxActivation), 3);
        // Nearest tokens beside the random baseline, as in the JSON.
        const near = await tab.$$eval(
          '#features .card:first-child table.nearest td:first-child .ntok',
          (els) => els.map((el) => el.textContent),
        );
        expect(near).toEqual(report.features[0].nearest?.embedding.map((t) => shown(t.token)));

        await tab.click('button[data-show="neurons"]');
        expect(await tab.isVisible('#neurons .card')).toBe(true);
        expect(await tab.isVisible('#features .card')).toBe(false);
        expect(
          await tab.$$eval('#neurons .card', (els) => els.map((el) => Number(el.getAttribute('data-index')))),
        ).toEqual(report.neurons.map((c) => c.index));
        await tab.click('button[data-show="both"]');
        await mkdir(artifacts, { recursive: true });
        await tab.screenshot({ path: join(artifacts, 'features-page.png'), fullPage: false });
        expect(problems).toEqual([]);
      } finally {
        await browser.close();
      }
    },
  );
});

/** A report with hostile token text. */
function hostileReport(tokens: string[]): FeatureReport {
  const example = {
    value: 2,
    context: 0,
    position: 1,
    offset: 0,
    ids: tokens.map((_, i) => i),
    tokens,
    values: tokens.map((_, i) => i),
  };
  const card = {
    index: 0,
    firings: 1,
    frequency: 0.5,
    meanActivation: 2,
    maxActivation: 2,
    totalActivation: 2,
    examples: [example],
    nearest: { embedding: tokens.map((t, i) => ({ id: i, token: t, cosine: 0.5 })) },
    random: { embedding: [] },
  };
  return {
    model: '<b>m.onnx</b>',
    hook: 'h"><script>window.pwned=3</script>',
    contextLength: 4,
    contexts: 1,
    tokens: 2,
    dictionary: { activationDim: 2, dictSize: 1 },
    selection: 'all',
    seed: 0,
    skipBos: true,
    embeddings: { embedding: 'E', unembedding: 'E', tied: true },
    nearestSummary: { embedding: { features: 0.5, neurons: Number.NaN, random: 0.1 } },
    features: [card],
    neurons: [],
  };
}

describe('the page escapes token text', () => {
  const tokens = [
    '<img src=x onerror="window.pwned=1">',
    '</span><script>window.pwned=2</script>',
    ' a & b',
    "'q'\n",
  ];
  const html = renderFeaturesPage(hostileReport(tokens), {
    dictionary: 'd<i>r',
    architecture: 'topk',
    text: ['t.txt'],
  });

  it('no token becomes markup', () => {
    expect(html).not.toContain('<img src=x');
    expect(html).not.toContain('<script>window.pwned');
    expect(html).toContain(escapeHtml(tokens[0]));
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });

  it.skipIf(!hasChromium)(
    'in Chromium: the tokens read back as text and nothing they hold runs',
    { timeout: 60_000 },
    async () => {
      const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
      try {
        const tab = await browser.newPage();
        const problems: string[] = [];
        tab.on('pageerror', (e) => problems.push(e.message));
        await tab.setContent(html);
        await tab.waitForSelector('body[data-ready="1"]');
        expect(await tab.evaluate(() => (globalThis as { pwned?: number }).pwned)).toBeUndefined();
        expect(await tab.$$eval('.ctx .tok', (els) => els.map((e) => e.textContent))).toEqual(
          tokens.map(shown),
        );
        expect(await tab.$$eval('img', (els) => els.length)).toBe(0);
        expect(await tab.textContent('h1')).toBe('Features of d<i>r');
        expect(problems).toEqual([]);
      } finally {
        await browser.close();
      }
    },
  );
});

/** `dictlearn encode DIR` on the fixture model, on the CPU, with `extra` flags. */
function encodeArgs(dir: string, prompt: string, extra: string[] = [], hook = HOOK): string[] {
  return ['encode', dir, '--model', MODEL, '--hook', hook, '--prompt', prompt, '--backend', 'cpu', ...extra];
}

describe('dictlearn encode', () => {
  it('prints per token the top features, as encodeText computes them', async () => {
    const prompt = 'Hugo counts: two three four. The horse is in the market.';
    const io = captureOutput();
    const code = await main(encodeArgs(dictDir, prompt, ['--top', '3', '--json']));
    vi.restoreAllMocks();
    expect(io.err.join('')).toBe('');
    expect(code).toBe(0);
    const got = JSON.parse(io.out.join(''));
    const dict = await Dictionary.load(dictDir, { backend: 'cpu' });
    const model = await LanguageModel.load(MODEL);
    try {
      const tokenizer = await loadTokenizer(`${FIXTURES}gpt-neox/tokenizer.json`);
      const want = await encodeText({ dictionary: dict, model, tokenizer, hook: HOOK, text: prompt, top: 3 });
      expect(got).toEqual(JSON.parse(JSON.stringify(want)));
      expect(got.map((t: { token: string }) => t.token).join('')).toBe(`<|endoftext|>${prompt}`);
      // A trained TopK dictionary with k 8: up to 3 listed per token, most tokens have 3.
      expect(got.filter((t: { top: unknown[] }) => t.top.length === 3).length).toBeGreaterThan(
        got.length / 2,
      );
    } finally {
      dict.dispose();
      await model.release();
    }

    // The same dictionary as sparsify writes it (TopK): the same per-token features.
    const sparsifyDir = join(dirname(dictDir), 'sparsify');
    const saved = await Dictionary.load(dictDir, { backend: 'cpu' });
    await writeDictionary(saved, sparsifyDir, 'sparsify');
    saved.dispose();
    const foreign = captureOutput();
    expect(await main(encodeArgs(sparsifyDir, prompt, ['--top', '3', '--json']))).toBe(0);
    vi.restoreAllMocks();
    expect(foreign.err.join('')).toBe('');
    const fromSparsify = JSON.parse(foreign.out.join(''));
    const ids = (rows: { top: { feature: number }[] }[]) => rows.map((t) => t.top.map((f) => f.feature));
    expect(ids(fromSparsify)).toEqual(ids(got));

    const table = captureOutput();
    expect(await main(encodeArgs(dictDir, prompt))).toBe(0);
    vi.restoreAllMocks();
    const lines = table.out.join('').trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ pos {2}token +top features \(index value\)$/);
    expect(lines).toHaveLength(got.length + 1);
    expect(lines[1]).toMatch(/^ {3}0 {2}"<\|endoftext\|>" +\d+ \d+\.\d{3}/);
  });

  it('bad input: one line, exit code 2 for a missing flag, 1 for an unknown hook', async () => {
    const io = captureOutput();
    expect(await main(['encode', dictDir, '--model', MODEL, '--hook', HOOK])).toBe(2);
    expect(await main(['features', dictDir, '--model', MODEL, '--text', HELDOUT])).toBe(2);
    expect(await main(encodeArgs(dictDir, 'x', [], 'gpt_neox.layers.9'))).toBe(1);
    vi.restoreAllMocks();
    const lines = io.err.join('').trimEnd().split('\n');
    expect(lines[0]).toBe(
      'dictlearn encode: --prompt is required: dictlearn encode DIR --model m.onnx --hook H --prompt "text" [--top N --json]',
    );
    expect(lines[1]).toMatch(/^dictlearn features: --hook is required/);
    expect(lines[2]).toMatch(/^dictlearn encode: .*model\.onnx: .*gpt_neox\.layers\.9/);
    expect(lines).toHaveLength(3);
  });
});
