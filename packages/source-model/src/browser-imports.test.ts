import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { workspaceAliases } from '../../../workspace-aliases.js';

// A page imports `@dictlearn/source-model` (with onnxruntime-web passed in): its static import graph
// must reach no Node-only module, or the page fails to load (or a bundler drags a native addon in).
// Node-only code is reached lazily: `node:` built-ins by dynamic imports inside functions (core's
// io/fs.ts), onnxruntime-node by a dynamic import with a variable specifier (runtime.ts), which
// bundlers do not follow. This walks the sources' static imports (and literal dynamic ones) from
// the package's entry points through the workspace packages it uses, and lists what it reaches.
// The browser tests (`*.browser.test.ts`) load the same entry in Chromium.

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ENTRIES = ['packages/source-model/src/index.ts', 'packages/source-model/src/register.ts'];
/** Packages that only run in Node (native addons): never to be imported literally, even lazily. */
const NODE_ONLY_PACKAGES = ['onnxruntime-node', 'koffi', 'webgpu'];
const BUILTINS = new Set(builtinModules);

function isBuiltin(spec: string): boolean {
  return spec.startsWith('node:') || BUILTINS.has(spec) || BUILTINS.has(spec.split('/')[0]);
}

function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

interface Graph {
  /** Source files reached (relative to the repository root). */
  files: string[];
  /** Static imports of things outside the workspace sources: `file → specifier`. */
  external: { file: string; spec: string }[];
  /** Dynamic `import('literal')` of things outside the workspace sources. */
  dynamic: { file: string; spec: string }[];
}

/** Top-level `import … from '…'`, `export … from '…'` and `import '…'` (type-only ones are erased). */
const STATIC =
  /^(?:import|export)\s+(type\s+)?(?:\{[^}]*\}|\*(?:\s+as\s+\w+)?|\w+(?:\s*,\s*\{[^}]*\})?)\s+from\s+'([^']+)'|^import\s+'([^']+)'/gm;
const DYNAMIC = /\bimport\(\s*(?:\/\*[^*]*\*\/\s*)?'([^']+)'\s*\)/g;

function walk(
  entries: readonly string[],
  source: (file: string) => string = (f) => readFileSync(f, 'utf8'),
): Graph {
  const aliases = workspaceAliases();
  const resolveWorkspace = (spec: string): string | undefined =>
    aliases.find((a) => a.find.test(spec))?.replacement;
  const seen = new Set<string>();
  const graph: Graph = { files: [], external: [], dynamic: [] };
  const queue = entries.map((e) => join(ROOT, e));
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const rel = relative(ROOT, file);
    graph.files.push(rel);
    const text = source(file);
    const follow = (spec: string): string | undefined => {
      if (spec.startsWith('.')) return join(dirname(file), spec.replace(/\.js$/, '.ts'));
      return resolveWorkspace(spec);
    };
    for (const m of text.matchAll(STATIC)) {
      if (m[1]) continue; // `import type` / `export type`: erased
      const spec = m[2] ?? m[3];
      const target = follow(spec);
      if (target) queue.push(target);
      else graph.external.push({ file: rel, spec });
    }
    for (const m of text.matchAll(DYNAMIC)) {
      if (!follow(m[1])) graph.dynamic.push({ file: rel, spec: m[1] });
    }
  }
  graph.files.sort();
  return graph;
}

/** What a page would trip on: the Node-only imports of a graph. */
function nodeOnly(g: Graph): string[] {
  return [
    ...g.external.filter((e) => isBuiltin(e.spec) || NODE_ONLY_PACKAGES.includes(packageName(e.spec))),
    ...g.dynamic.filter((e) => NODE_ONLY_PACKAGES.includes(packageName(e.spec))),
  ].map((e) => `${e.file} → ${e.spec}`);
}

describe('the browser import graph of @dictlearn/source-model', () => {
  const graph = walk(ENTRIES);

  it('reaches no Node built-in statically and no Node-only package at all', () => {
    expect(nodeOnly(graph)).toEqual([]);
  });

  it('covers the model, the runtime loader and core (the walk is not vacuous)', () => {
    for (const f of [
      'packages/source-model/src/model.ts',
      'packages/source-model/src/runtime.ts',
      'packages/source-model/src/tokenizer.ts',
      'packages/core/src/io/fs.ts',
    ]) {
      expect(graph.files).toContain(f);
    }
    expect(graph.external.map((e) => e.spec)).toContain('@huggingface/tokenizers');
    // core's file helpers load node:fs lazily: seen as a dynamic import, not a static one.
    expect(graph.dynamic.map((e) => e.spec)).toContain('node:fs/promises');
  });

  it('would catch a leak: a static node:fs import, or onnxruntime-node named literally', () => {
    const model = join(ROOT, 'packages/source-model/src/model.ts');
    const runtime = join(ROOT, 'packages/source-model/src/runtime.ts');
    const planted = (edit: (file: string, text: string) => string) =>
      nodeOnly(walk(ENTRIES, (f) => edit(f, readFileSync(f, 'utf8'))));
    expect(planted((f, t) => (f === model ? `import { readFileSync } from 'node:fs';\n${t}` : t))).toEqual([
      'packages/source-model/src/model.ts → node:fs',
    ]);
    expect(
      planted((f, t) =>
        f === runtime
          ? t.replace('await import(/* @vite-ignore */ name)', "await import('onnxruntime-node')")
          : t,
      ),
    ).toEqual(['packages/source-model/src/runtime.ts → onnxruntime-node']);
  });
});

// The browser runs (model.browser.test.ts: onnxruntime-web against torch; train.browser.test.ts:
// ModelSource → trainSAE on WebGPU) need Chromium; where vitest found none it has no browser
// project, so say so here rather than pass in silence.
if (process.env.DICTLEARN_CHROMIUM_FOUND !== '1') {
  it.skip('onnxruntime-web and WebGPU training in headless Chromium (skipped: Chromium not found; apt-get install chromium or set DICTLEARN_CHROMIUM)', () => {});
}
