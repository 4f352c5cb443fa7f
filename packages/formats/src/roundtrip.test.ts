// dictlearn → each format → dictlearn is exact: every parameter bit for bit, the architecture
// and its hyper-parameters, and so the same features. Architectures a format cannot hold are
// refused with an error naming them. Without the dictlearn block (a file as the Python library
// would have written it), the format's own mapping still gives the same function.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Dictionary, tensor } from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDictionary, writeDictionary } from './api.js';
import { logThreshold } from './families.js';
import { dictionaryFromParts, type FormatName } from './parts.js';
import { expectClose, holds, randomParts, seededRandom, TEST_ARCHS, useCpu } from './test-support.js';

const FORMATS: FormatName[] = ['dictlearn', 'dictionary_learning', 'saelens', 'sparsify'];
let root: string;
beforeAll(async () => {
  await useCpu();
  root = await mkdtemp(join(tmpdir(), 'dl-formats-rt-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

function batch(d: number, seed: number) {
  const r = seededRandom(seed);
  return tensor(
    Float32Array.from({ length: 5 * d }, () => (r() - 0.5) * 3),
    [5, d],
  );
}

async function features(dict: Dictionary, seed: number) {
  const x = batch(dict.activationDim, seed);
  const { features: f, reconstruction: r } = dict.forward(x);
  const out = { f: Float32Array.from(await f.data()), r: Float32Array.from(await r.data()) };
  for (const t of [x, f, r]) t.dispose();
  return out;
}

let n = 0;
describe.each(TEST_ARCHS)('%s %j', (name, config) => {
  it.each(FORMATS)('→ %s → dictlearn', async (format) => {
    const seed = ++n;
    const dict = dictionaryFromParts(randomParts(name, config, seed), 'test');
    const dir = join(root, `${name}-${seed}-${format}`);
    if (!holds(format, name, config)) {
      await expect(writeDictionary(dict, dir, format)).rejects.toThrow(new RegExp(`'${name}'`));
      dict.dispose();
      return;
    }
    await writeDictionary(dict, dir, format);
    const { dictionary: back, read } = await loadDictionary(dir);
    expect(read.format).toBe(format);
    expect(back.arch.name).toBe(name);
    expect(back.config().architecture.config).toEqual(dict.config().architecture.config);
    for (const [k, t] of Object.entries(dict.params)) {
      // toEqual compares with Object.is: -0 ≠ 0, so this is bit for bit (NaN aside, never here)
      expect(Array.from(await back.params[k].data()), k).toEqual(Array.from(await t.data()));
    }
    const a = await features(dict, seed);
    const b = await features(back, seed);
    expect(Array.from(b.f)).toEqual(Array.from(a.f));
    expect(Array.from(b.r)).toEqual(Array.from(a.r));
    expect(a.f.some((v) => v !== 0) && a.f.some((v) => v === 0)).toBe(true);

    if (format === 'dictlearn') return;
    // The same file without dictlearn's block: what the Python library itself would have saved.
    const cfgName = format === 'dictionary_learning' ? 'config.json' : 'cfg.json';
    const cfg = JSON.parse(await readFile(join(dir, cfgName), 'utf8'));
    delete cfg.dictlearn;
    await writeFile(join(dir, cfgName), JSON.stringify(cfg));
    const { dictionary: plain } = await loadDictionary(dir);
    const c = await features(plain, seed);
    expectClose(c.f, a.f, 1e-6, 1e-6);
    expectClose(c.r, a.r, 1e-6, 1e-6);
    for (const d of [dict, back, plain]) d.dispose();
  });
});

describe('JumpReLU thresholds through formats that store θ', () => {
  it('log θ comes back bit for bit where exp is one-to-one (|log θ| > 1), else to the float with the same θ', () => {
    const r = seededRandom(7);
    for (let i = 0; i < 2000; i++) {
      const lt = Math.fround(Math.log(0.01 + 0.34 * r()));
      expect(logThreshold(Math.fround(Math.exp(lt)))).toBe(lt);
    }
    for (let i = 0; i < 2000; i++) {
      const lt = Math.fround((r() - 0.5) * 1.8);
      const theta = Math.fround(Math.exp(lt));
      expect(Math.fround(Math.exp(logThreshold(theta)))).toBe(theta);
    }
  });
});
