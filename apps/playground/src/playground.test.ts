import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { build } from 'vite';
import { afterAll, describe, expect, it } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../../scripts/chromium.js';

const app = fileURLToPath(new URL('..', import.meta.url));
const artifacts = fileURLToPath(new URL('../../../artifacts', import.meta.url));
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };

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

describe.skipIf(!existsSync(CHROMIUM_PATH))(
  `playground in headless Chromium${existsSync(CHROMIUM_PATH) ? '' : ` (skipped: no Chromium at ${CHROMIUM_PATH})`}`,
  () => {
    it('trains on WebGPU in the page and shows the recovery figure', { timeout: 300_000 }, async () => {
      const outDir = join(app, 'dist');
      await build({
        root: app,
        configFile: join(app, 'vite.config.ts'),
        logLevel: 'warn',
        build: { outDir, emptyOutDir: true },
      });
      const url = await serve(outDir);
      const browser = await chromium.launch({
        executablePath: CHROMIUM_PATH,
        args: CHROMIUM_ARGS,
      });
      try {
        const page = await browser.newPage({ viewport: { width: 1150, height: 900 } });
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(url);
        await page.click('#train');
        await page.waitForFunction(
          () => document.getElementById('recovery')?.dataset.value !== '',
          undefined,
          {
            timeout: 280_000,
          },
        );
        const backend = await page.textContent('#backend');
        const value = Number(await page.getAttribute('#recovery', 'data-value'));
        await mkdir(artifacts, { recursive: true });
        await page.screenshot({ path: join(artifacts, 'playground.png'), fullPage: true });
        expect(errors).toEqual([]);
        expect(backend).toMatch(/^WebGPU/);
        // The same run recovers 98% of the 64 true features on the CPU backend in Node.
        expect(value).toBeGreaterThanOrEqual(0.9);
      } finally {
        await browser.close();
      }
    });
  },
);
