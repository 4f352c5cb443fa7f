// analyzeFeatures and encodeText against a brute-force reference written here: every context's
// activations from onnxruntime, every statistic and top-context list recomputed by plain loops.
import '@dictlearn/backend-cpu/register';
import { readFileSync } from 'node:fs';
import {
  type DictionaryLike,
  matmul,
  philoxUnitRows,
  relu,
  seedFor,
  type Tensor,
  tensor,
  useBackend,
} from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenEmbeddings } from './embeddings.js';
import { analyzeFeatures, encodeText, type FeatureReport, type UnitSummary } from './features.js';
import { FIXTURES } from './fixtures.js';
import { LanguageModel } from './model.js';
import { ModelSource } from './source.js';

const D = 64;
const F = 96;
const HOOK = 'gpt_neox.layers.1';
const L = 32;

/**
 * A dictionary whose features are known without running it: feature j = relu(s_j · x[p_j]) for a
 * fixed neuron p_j and scale s_j (a column of W_enc with one non-zero entry, so the float32 product
 * is exact), and decoder rows drawn at random.
 */
function knownDictionary(): {
  dict: DictionaryLike;
  neuron: number[];
  scale: number[];
  decoder: Float32Array;
} {
  const neuron = Array.from({ length: F }, (_, j) => (j * 37 + 11) % D);
  const scale = Array.from({ length: F }, (_, j) => (j % 3 === 0 ? -2 : j % 3 === 1 ? 0.5 : 4));
  const w = new Float32Array(D * F);
  for (let j = 0; j < F; j++) w[neuron[j] * F + j] = scale[j];
  const W = tensor(w, [D, F]);
  const decoder = philoxUnitRows(F, D, 99);
  const dict: DictionaryLike = {
    activationDim: D,
    dictSize: F,
    encode: (x: Tensor) => {
      const z = matmul(x, W);
      const f = relu(z);
      z.dispose();
      return f;
    },
    decode: () => {
      throw new Error('not used');
    },
    forward: () => {
      throw new Error('not used');
    },
    decoderRows: () => tensor(decoder, [F, D]),
  };
  return { dict, neuron, scale, decoder };
}

let model: LanguageModel;
let source: ModelSource;
let contexts: Int32Array[];
let acts: Float32Array[];
let bos: number;
const known = {
  dict: undefined as unknown as DictionaryLike,
  neuron: [] as number[],
  scale: [] as number[],
  decoder: new Float32Array(),
};

beforeAll(async () => {
  await useBackend('cpu');
  model = await LanguageModel.load(`${FIXTURES}gpt-neox/model.onnx`);
  source = await ModelSource.open({
    model,
    text: `${FIXTURES}heldout.txt`,
    hooks: HOOK,
    contextLength: L,
    // 70 contexts per pass: more than analyzeFeatures encodes at once (2048 rows = 64 contexts of 32).
    forwardBatch: 70,
  });
  bos = source.tokenizer.bos as number;
  contexts = [];
  acts = [];
  // The reference: each context run alone.
  for await (const c of source.contexts()) {
    contexts.push(c.tokens);
    const out = await model.forward(c.tokens, 1, L, [model.resolve(HOOK)]);
    acts.push((out.hooks.get(HOOK) as { data: Float32Array }).data);
  }
  Object.assign(known, knownDictionary());
});

afterAll(async () => {
  await model?.release();
});

interface Ref {
  firings: number;
  sum: number;
  max: number;
  top: { value: number; context: number; position: number }[];
}

/** Brute force for one unit given its value at (context, position). */
function bruteForce(value: (c: number, t: number) => number, k: number, skipBos: boolean): Ref {
  let firings = 0;
  let sum = 0;
  let max = 0;
  const best: { value: number; context: number; position: number }[] = [];
  contexts.forEach((ctx, c) => {
    let cm = 0;
    let ct = -1;
    for (let t = 0; t < L; t++) {
      if (skipBos && ctx[t] === bos) continue;
      const v = value(c, t);
      if (v > 0) {
        firings++;
        sum += v;
        max = Math.max(max, v);
        if (v > cm) {
          cm = v;
          ct = t;
        }
      }
    }
    if (ct >= 0) best.push({ value: cm, context: c, position: ct });
  });
  best.sort((a, b) => b.value - a.value || a.context - b.context);
  return { firings, sum, max, top: best.slice(0, k) };
}

const neuronValue = (j: number) => (c: number, t: number) => acts[c][t * D + j];
const featureValue = (j: number) => (c: number, t: number) =>
  Math.max(0, Math.fround(known.scale[j] * acts[c][t * D + known.neuron[j]]));

function tokensAnalysed(skipBos: boolean): number {
  return contexts.reduce((n, ctx) => n + ctx.filter((id) => !(skipBos && id === bos)).length, 0);
}

function checkCard(card: UnitSummary, ref: Ref, value: (c: number, t: number) => number, tokens: number) {
  expect(card.firings).toBe(ref.firings);
  expect(card.frequency).toBeCloseTo(ref.firings / tokens, 12);
  expect(card.totalActivation).toBeCloseTo(ref.sum, 3);
  expect(card.meanActivation).toBeCloseTo(ref.sum / ref.firings, 5);
  expect(card.maxActivation).toBeCloseTo(ref.max, 5);
  expect(card.examples.map((e) => [e.context, e.position])).toEqual(
    ref.top.map((r) => [r.context, r.position]),
  );
  for (const [i, e] of card.examples.entries()) {
    expect(e.value).toBeCloseTo(ref.top[i].value, 5);
    // The window: 3 tokens before the top token, 2 after, clipped to the context.
    const lo = Math.max(0, e.position - 3);
    const hi = Math.min(L, e.position + 3);
    expect(e.offset).toBe(lo);
    expect(e.ids).toEqual(Array.from(contexts[e.context].slice(lo, hi)));
    expect(e.tokens).toEqual(e.ids.map((id) => source.tokenizer.decode([id])));
    e.values.forEach((v, p) => {
      expect(v).toBeCloseTo(value(e.context, lo + p), 5);
    });
  }
}

describe('analyzeFeatures on the tiny GPT-NeoX', () => {
  let report: FeatureReport;
  beforeAll(async () => {
    report = await analyzeFeatures({
      dictionary: known.dict,
      source,
      features: 6,
      contexts: 4,
      before: 3,
      after: 2,
      nearest: 5,
      seed: 3,
    });
  }, 120_000);

  it('runs every context of the text once', () => {
    expect(report.contexts).toBe(contexts.length);
    expect(contexts.length).toBeGreaterThan(70);
    expect(report.tokens).toBe(tokensAnalysed(true));
    expect(report.tokens).toBeLessThan(contexts.length * L); // BOS positions left out
  });

  it('chooses the features with the largest total activation, with their statistics and top contexts', () => {
    const refs = Array.from({ length: F }, (_, j) => bruteForce(featureValue(j), 4, true));
    const order = refs
      .map((r, j) => ({ j, sum: r.sum }))
      .filter((r) => r.sum > 0)
      .sort((a, b) => b.sum - a.sum || a.j - b.j)
      .map((r) => r.j);
    expect(report.features.map((c) => c.index)).toEqual(order.slice(0, 6));
    for (const card of report.features)
      checkCard(card, refs[card.index], featureValue(card.index), report.tokens);
  });

  it('the neurons view: the raw activation dimensions, by the same rule', () => {
    const refs = Array.from({ length: D }, (_, j) => bruteForce(neuronValue(j), 4, true));
    const order = refs
      .map((r, j) => ({ j, sum: r.sum }))
      .sort((a, b) => b.sum - a.sum || a.j - b.j)
      .map((r) => r.j);
    expect(report.neurons.map((c) => c.index)).toEqual(order.slice(0, 6));
    for (const card of report.neurons)
      checkCard(card, refs[card.index], neuronValue(card.index), report.tokens);
  });

  it('top contexts are real text from the run: the window decodes to a piece of the held-out file', () => {
    const text = readFileSync(`${FIXTURES}heldout.txt`, 'utf8');
    let pieces = 0;
    for (const card of [...report.features, ...report.neurons]) {
      expect(card.examples.length).toBe(4);
      for (const e of card.examples) {
        for (const piece of e.tokens.join('').split('<|endoftext|>')) {
          if (piece.trim() === '') continue;
          expect(text).toContain(piece);
          pieces++;
        }
      }
    }
    expect(pieces).toBeGreaterThan(40);
  });

  it('nearest tokens by cosine to the decoder row (embedding and unembedding), beside a seeded random direction', () => {
    const emb = tokenEmbeddings(model.graph);
    expect(report.embeddings).toEqual({
      embedding: 'gpt_neox.embed_in.weight',
      unembedding: emb.unembedding.name,
      tied: false,
    });
    const cosines = (m: { rows: number; data: Float32Array }, dir: ArrayLike<number>) => {
      const out: { id: number; cosine: number }[] = [];
      let dn = 0;
      for (let j = 0; j < D; j++) dn += dir[j] * dir[j];
      for (let v = 0; v < m.rows; v++) {
        let dot = 0;
        let n = 0;
        for (let j = 0; j < D; j++) {
          dot += m.data[v * D + j] * dir[j];
          n += m.data[v * D + j] ** 2;
        }
        out.push({ id: v, cosine: dot / Math.sqrt(n * dn) });
      }
      return out.sort((a, b) => b.cosine - a.cosine).slice(0, 5);
    };
    const random = philoxUnitRows(6, D, seedFor('baseline', 3), 0);
    report.features.forEach((card, i) => {
      const dir = known.decoder.subarray(card.index * D, (card.index + 1) * D);
      for (const [key, m] of [
        ['embedding', emb.embedding],
        ['unembedding', emb.unembedding],
      ] as const) {
        const want = cosines(m, dir);
        const got = card.nearest?.[key] ?? [];
        expect(got.map((t) => t.id)).toEqual(want.map((t) => t.id));
        got.forEach((t, r) => {
          expect(t.cosine).toBeCloseTo(want[r].cosine, 5);
          expect(t.token).toBe(source.tokenizer.decode([t.id]));
        });
        const base = cosines(m, random.subarray(i * D, (i + 1) * D));
        expect(card.random?.[key]?.map((t) => t.id)).toEqual(base.map((t) => t.id));
      }
    });
    // A neuron's direction is its basis vector: the tokens with the largest e_j-component share.
    const n0 = report.neurons[0];
    const basis = new Float32Array(D);
    basis[n0.index] = 1;
    expect(n0.nearest?.embedding.map((t) => t.id)).toEqual(cosines(emb.embedding, basis).map((t) => t.id));
    const s = report.nearestSummary?.embedding;
    const meanOf = (lists: (readonly { cosine: number }[] | undefined)[]) =>
      lists.reduce((a, l) => a + (l ?? []).reduce((b, t) => b + t.cosine, 0) / 5, 0) / lists.length;
    expect(s?.features).toBeCloseTo(meanOf(report.features.map((c) => c.nearest?.embedding)), 10);
    expect(s?.random).toBeCloseTo(meanOf(report.features.map((c) => c.random?.embedding)), 10);
    expect(s?.neurons).toBeCloseTo(meanOf(report.neurons.map((c) => c.nearest?.embedding)), 10);
  });

  it('a different seed draws other random directions; feature ids can be given; BOS can be kept', async () => {
    const again = await analyzeFeatures({
      dictionary: known.dict,
      source,
      featureIds: [5, 0],
      contexts: 2,
      before: 3,
      after: 2,
      nearest: 5,
      seed: 4,
      neurons: false,
      skipBos: false,
    });
    expect(again.features.map((c) => c.index)).toEqual([5, 0]);
    expect(again.neurons).toEqual([]);
    expect(again.tokens).toBe(contexts.length * L);
    for (const card of again.features) {
      checkCard(card, bruteForce(featureValue(card.index), 2, false), featureValue(card.index), again.tokens);
    }
    const other = philoxUnitRows(2, D, seedFor('baseline', 4), 0);
    expect(other).not.toEqual(philoxUnitRows(2, D, seedFor('baseline', 3), 0));
    expect(again.selection).toBe('the features asked for: 5, 0');
  });

  it('bad options name the option', async () => {
    await expect(analyzeFeatures({ dictionary: known.dict, source, featureIds: [F] })).rejects.toThrow(
      /feature id 96 is out of range: the dictionary has features 0 … 95/,
    );
    await expect(analyzeFeatures({ dictionary: known.dict, source, contexts: -1 })).rejects.toThrow(
      /option 'contexts' must be an integer ≥ 0/,
    );
    const narrow = { ...known.dict, activationDim: 32 };
    await expect(analyzeFeatures({ dictionary: narrow, source })).rejects.toThrow(
      /the dictionary has width 32 but hook 'gpt_neox.layers.1' of .*model.onnx gives rows of width 64/,
    );
  });
});

describe('encodeText', () => {
  it('per token: the largest positive features, highest first, with their values', async () => {
    const prompt = 'Where is the horse? The horse is in the market.';
    const got = await encodeText({
      dictionary: known.dict,
      model,
      tokenizer: source.tokenizer,
      hook: HOOK,
      text: prompt,
      top: 3,
    });
    const ids = [bos, ...source.tokenizer.encode(prompt)];
    expect(got.map((t) => t.id)).toEqual(ids);
    expect(got.map((t) => t.token).join('')).toBe(`<|endoftext|>${prompt}`);
    const out = await model.forward(Int32Array.from(ids), 1, ids.length, [model.resolve(HOOK)]);
    const x = (out.hooks.get(HOOK) as { data: Float32Array }).data;
    got.forEach((tok, t) => {
      const all = Array.from({ length: F }, (_, j) => ({
        feature: j,
        value: Math.max(0, Math.fround(known.scale[j] * x[t * D + known.neuron[j]])),
      }))
        .filter((f) => f.value > 0)
        .sort((a, b) => b.value - a.value || a.feature - b.feature)
        .slice(0, 3);
      expect(tok.top.map((f) => f.feature)).toEqual(all.map((f) => f.feature));
      tok.top.forEach((f, i) => {
        expect(f.value).toBeCloseTo(all[i].value, 5);
      });
    });
  });

  it('an empty prompt is an error', async () => {
    await expect(
      encodeText({ dictionary: known.dict, model, tokenizer: source.tokenizer, hook: HOOK, text: '' }),
    ).rejects.toThrow(/the prompt is empty/);
  });
});
