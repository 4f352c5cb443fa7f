// Every TypeScript block of the docs' guides is an example file, included verbatim: the guide
// says which (`<!-- example: examples/src/NAME.ts -->` on the line before the block), and this
// test checks the block equals the file. examples.test.ts runs the Node examples and the test
// below bundles the browser one, so every guide's code runs in CI.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { workspaceAliases } from '../../workspace-aliases.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const guidesDir = join(repo, 'apps/docs/guides');
const guides = readdirSync(guidesDir).filter((f) => f.endsWith('.md'));

/** The ```ts blocks of a Markdown text, each with the `<!-- example: PATH -->` line before it. */
function tsBlocks(text: string): { example?: string; code: string; line: number }[] {
  const out: { example?: string; code: string; line: number }[] = [];
  const re = /(?:<!-- example: (\S+) -->\n)?```(?:ts|typescript)\n([\s\S]*?)```/g;
  for (const m of text.matchAll(re)) {
    out.push({ example: m[1], code: m[2], line: text.slice(0, m.index).split('\n').length });
  }
  return out;
}

describe('the guides in apps/docs/guides', () => {
  it.each(guides)('%s: every ts block is an example file, verbatim', (guide) => {
    const text = readFileSync(join(guidesDir, guide), 'utf8');
    for (const block of tsBlocks(text)) {
      expect(
        block.example,
        `${guide}:${block.line}: a ts block without <!-- example: PATH -->`,
      ).toBeDefined();
      const file = readFileSync(join(repo, block.example!), 'utf8');
      expect(
        block.code,
        `${guide}:${block.line} differs from ${block.example}; run: node examples/sync-guides.mjs`,
      ).toBe(file);
    }
  });

  it('the guides link each other and the examples in order, from getting started', () => {
    const order = [
      'getting-started.md',
      'train-from-files.md',
      'write-an-architecture.md',
      'write-a-backend.md',
      'evaluate-and-report.md',
      'run-in-the-browser.md',
    ];
    for (const g of order) expect(guides).toContain(g);
    for (let i = 0; i + 1 < order.length; i++) {
      const text = readFileSync(join(guidesDir, order[i]), 'utf8');
      expect(text, `${order[i]} does not link to ${order[i + 1]}`).toContain(`](${order[i + 1]})`);
    }
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    for (const g of order) expect(readme, `README.md does not link ${g}`).toContain(`apps/docs/guides/${g}`);
  });

  it('the browser example bundles for the browser (Node built-ins stubbed, as vite does)', async () => {
    const aliases = workspaceAliases();
    const result = await build({
      entryPoints: [join(repo, 'examples/src/browser.ts')],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      write: false,
      logLevel: 'silent',
      // The Node-only modules the packages import lazily, as the playground's vite config leaves out.
      external: ['webgpu', 'koffi', 'onnxruntime-node'],
      plugins: [
        {
          name: 'workspace-sources',
          setup(b) {
            b.onResolve({ filter: /^@dictlearn\// }, (args) => {
              const hit = aliases.find((a) => a.find.test(args.path));
              return hit ? { path: hit.replacement } : undefined;
            });
            // backend-cpu imports node:os / node:worker_threads for its Node fast paths; in a page
            // they are never called. vite replaces them with empty modules by itself; so does this.
            b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: 'node-stub' }));
            b.onLoad({ filter: /.*/, namespace: 'node-stub' }, () => ({ contents: 'module.exports = {};' }));
          },
        },
      ],
    });
    expect(result.errors).toEqual([]);
    const js = result.outputFiles[0].text;
    expect(js).toContain('navigator'); // the WebGPU backend's browser path is in
    expect(js).not.toMatch(/^import .* from ["']node:/m);
    expect(js).toContain('recovered'); // the example itself
  });
});
