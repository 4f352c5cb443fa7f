import '@dictlearn/backend-cpu/register';
import '@dictlearn/arch-standard/register';
import { useBackend } from '@dictlearn/core';
// The package's public entry, as a page would import it: loading it here also proves that its
// import graph reaches no Node-only module (a `node:` import would fail to load in the page).
import { LanguageModel, lossRecovered, ModelSource, tokenizerFromJson } from '@dictlearn/source-model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  contextLoss,
  fixtureBytes,
  fixtureDictionary,
  fixtureJson,
  fixtureNpy,
  maxAbsDiff,
  ORT_WASM_URL,
  webRuntime,
} from './browser-fixtures.js';
import type { OrtModule } from './runtime.js';

// The Node tests' checks (model.test.ts, loss-recovered.test.ts, source.test.ts) in Chromium on
// onnxruntime-web's wasm backend, against the same torch references from make-test-models.py, and
// the tokenizer against Python `tokenizers`' ids (fixtures/tokenizer-cases.json).

interface Reference {
  vocab: number;
  contexts: number[][];
  ce_loss: number[];
  hooks: { hook: string; file: string; dim: number }[];
}
interface CeReference {
  hook: string;
  contexts: number[][];
  loss_original: number;
  loss_reconstructed: number;
  loss_zero: number;
  frac_recovered: number;
  kl_div_with_sae: number;
  kl_div_with_ablation: number;
}
type TokenizerCases = Record<string, { text: string; ids: number[] }[]>;

const MODELS = ['gpt-neox', 'gpt2'] as const;
const TOL = 1e-4;
const CE_KEYS = [
  'loss_original',
  'loss_reconstructed',
  'loss_zero',
  'frac_recovered',
  'kl_div_with_sae',
  'kl_div_with_ablation',
] as const;
const measured: Record<string, number> = {};
let ort: OrtModule;

beforeAll(async () => {
  ort = webRuntime();
  await useBackend('cpu');
});

afterAll(() => {
  console.log(`onnxruntime-web in Chromium, max abs error vs torch: ${JSON.stringify(measured)}`);
});

async function load(name: string): Promise<LanguageModel> {
  const file = `${name}/model.onnx`;
  return LanguageModel.fromBytes(await fixtureBytes(file), file, { runtime: ort });
}

describe.each(MODELS)('%s in Chromium on onnxruntime-web', (name) => {
  it('gives torch activations at every reference hook (residual, mlp, attention, :heads) in one pass', async () => {
    const ref = await fixtureJson<Reference>(`${name}/reference.json`);
    const seq = ref.contexts[0].length;
    const batch = ref.contexts.length;
    const model = await load(name);
    const hooks = ref.hooks.map((h) => model.resolve(h.hook));
    expect(ref.hooks.some((h) => h.hook.endsWith(':heads'))).toBe(true);
    const out = await model.forward(Int32Array.from(ref.contexts.flat()), batch, seq, hooks);
    for (const h of ref.hooks) {
      const want = await fixtureNpy(`${name}/${h.file}`);
      const got = out.hooks.get(h.hook);
      expect(got?.dim, h.hook).toBe(h.dim);
      expect(want.shape).toEqual([batch * seq, h.dim]);
      const err = maxAbsDiff(got?.data ?? [], want.data);
      measured[`${name} ${h.hook}`] = err;
      expect(err, h.hook).toBeLessThan(TOL);
    }
    await model.release();
  });

  it("gives torch's cross-entropy per context", async () => {
    const ref = await fixtureJson<Reference>(`${name}/reference.json`);
    const seq = ref.contexts[0].length;
    const batch = ref.contexts.length;
    const model = await load(name);
    const out = await model.forward(Int32Array.from(ref.contexts.flat()), batch, seq, [], { logits: true });
    const vocab = model.vocabSize as number;
    expect(vocab).toBe(ref.vocab);
    const logits = out.logits as Float32Array;
    expect(logits.length).toBe(batch * seq * vocab);
    const losses = ref.contexts.map((c, i) =>
      contextLoss(logits.subarray(i * seq * vocab, (i + 1) * seq * vocab), c, vocab),
    );
    const err = maxAbsDiff(losses, ref.ce_loss);
    measured[`${name} ce`] = err;
    expect(err).toBeLessThan(TOL);
    for (const l of ref.ce_loss) expect(l).toBeLessThan(Math.log(vocab) / 2);
    await model.release();
  });

  it("gives torch's CE-loss recovered and KL for the fixture SAE (graph cut at the hook)", async () => {
    const ref = await fixtureJson<CeReference>(`${name}/ce-reference.json`);
    const model = await load(name);
    const dict = await fixtureDictionary(`${name}/sae`);
    expect(dict.scale).not.toBe(1);
    const got = await lossRecovered(model, ref.hook, dict, ref.contexts, { forwardBatch: 5 });
    let worst = 0;
    for (const k of CE_KEYS) {
      const err = Math.abs(got[k] - ref[k]);
      worst = Math.max(worst, err);
      expect(err, `${k}: ${got[k]} vs torch ${ref[k]}`).toBeLessThan(TOL);
    }
    measured[`${name} lossRecovered`] = worst;
    expect(got.ce_contexts).toBe(ref.contexts.length);
    expect(ref.loss_zero).toBeGreaterThan(ref.loss_original + 0.5);
    dict.dispose();
    await model.release();
  });

  it("tokenises text to Python tokenizers' ids, and packs the held-out text into torch's contexts", async () => {
    const cases = (await fixtureJson<TokenizerCases>('tokenizer-cases.json'))[name];
    const file = `${name}/tokenizer.json`;
    const tokenizer = tokenizerFromJson(await fixtureJson(file), file, {
      modelConfig: await fixtureJson(`${name}/config.json`),
    });
    expect(cases.length).toBeGreaterThan(5);
    for (const c of cases) expect(tokenizer.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
    // The same ids through a ModelSource fed the text as bytes (no file system in a page).
    const ref = await fixtureJson<Reference>(`${name}/reference.json`);
    const source = await ModelSource.open({
      model: await load(name),
      tokenizer,
      text: { file: 'heldout.txt', bytes: await fixtureBytes('heldout.txt') },
      hooks: ref.hooks[0].hook,
      contextLength: ref.contexts[0].length,
    });
    const got: number[][] = [];
    for await (const c of source.contexts()) {
      got.push([...c.tokens]);
      if (got.length === ref.contexts.length) break;
    }
    expect(got).toEqual(ref.contexts);
    await source.release();
  });
});

describe('onnxruntime-web without network', () => {
  it('fetched nothing from another origin (its wasm binary came from the test server)', () => {
    const page = globalThis as unknown as {
      location: { origin: string };
      performance: { getEntriesByType(t: string): { name: string }[] };
    };
    const urls = page.performance.getEntriesByType('resource').map((e) => e.name);
    // The binary onnxruntime-web ran came from the URL set in wasmPaths (exactly: the `?url`
    // import that gave the URL is a request for the same path with a query).
    expect(urls).toContain(new URL(ORT_WASM_URL, page.location.origin).href);
    expect(urls.filter((u) => !u.startsWith(page.location.origin))).toEqual([]);
  });
});
