import { readFileSync } from 'node:fs';
import { DictlearnError } from '@dictlearn/core';
import { afterAll, describe, expect, it } from 'vitest';
import { nearestTokens, type TokenMatrix, tokenEmbeddings } from './embeddings.js';
import { FIXTURES, maxAbsDiff, readNpy, reference } from './fixtures.js';
import { LanguageModel } from './model.js';
import { encodeValueInfo, OnnxModel, OnnxType } from './onnx.js';
import { concatBytes, encodeBytesField, encodeStringField, encodeVarintField } from './proto.js';

const bytesOf = (name: string) => new Uint8Array(readFileSync(`${FIXTURES}${name}/model.onnx`));
const models: LanguageModel[] = [];
afterAll(async () => {
  for (const m of models) await m.release();
});

/** A ONNX tensor initializer: float32 in float_data (packed), or raw_data bytes of `type`. */
function initializer(
  name: string,
  dims: number[],
  values: number[],
  type: 'float_data' | 'raw' | 'fp16',
): Uint8Array {
  const fields = [...dims.map((d) => encodeVarintField(1, d))];
  if (type === 'fp16') {
    fields.push(encodeVarintField(2, OnnxType.FLOAT16));
    const raw = new DataView(new ArrayBuffer(2 * values.length));
    // Values chosen exact in half precision: sign, exponent and mantissa written by hand.
    values.forEach((v, i) => {
      raw.setUint16(2 * i, halfBits(v), true);
    });
    fields.push(encodeBytesField(9, new Uint8Array(raw.buffer)));
  } else {
    fields.push(encodeVarintField(2, OnnxType.FLOAT));
    const raw = new DataView(new ArrayBuffer(4 * values.length));
    values.forEach((v, i) => {
      raw.setFloat32(4 * i, v, true);
    });
    fields.push(encodeBytesField(type === 'raw' ? 9 : 4, new Uint8Array(raw.buffer)));
  }
  fields.push(encodeStringField(8, name));
  return concatBytes(fields);
}

/** IEEE half bits of a small dyadic value (|v| in [2⁻¹⁴, 65504], ≤ 10 mantissa bits). */
function halfBits(v: number): number {
  if (v === 0) return 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  const m = Math.round((a / 2 ** e - 1) * 1024);
  return sign | ((e + 15) << 10) | m;
}

function node(op: string, inputs: string[], outputs: string[]): Uint8Array {
  return concatBytes([
    ...inputs.map((i) => encodeStringField(1, i)),
    ...outputs.map((o) => encodeStringField(2, o)),
    encodeStringField(4, op),
  ]);
}

/** input_ids → Gather(embedding) → [Transpose] → MatMul(·, unembedding) → logits. */
function tinyLm(parts: { nodes: Uint8Array[]; inits: Uint8Array[] }): OnnxModel {
  const graph = concatBytes([
    ...parts.nodes.map((n) => encodeBytesField(1, n)),
    encodeStringField(2, 'g'),
    ...parts.inits.map((t) => encodeBytesField(5, t)),
    encodeBytesField(11, encodeValueInfo({ name: 'input_ids', elemType: OnnxType.INT64, dims: ['b', 's'] })),
    encodeBytesField(12, encodeValueInfo({ name: 'logits', elemType: OnnxType.FLOAT, dims: ['b', 's', 3] })),
  ]);
  const opset = concatBytes([encodeStringField(1, ''), encodeVarintField(2, 17)]);
  return OnnxModel.parse(
    concatBytes([encodeVarintField(1, 8), encodeBytesField(7, graph), encodeBytesField(8, opset)]),
    'tiny.onnx',
  );
}

// Vocabulary 3, width 2.
const E = [1, 0.5, -2, 0.25, 0, 3];
const U = [0.5, 1, 1.5, -1, 2, 0]; // stored [d=2, vocab=3]: rows of the unembedding are its columns

describe('tokenEmbeddings', () => {
  it('reads the tiny models: the embedding rows are the embed_in activations torch recorded', async () => {
    const graph = OnnxModel.parse(bytesOf('gpt-neox'), 'gpt-neox/model.onnx');
    const emb = tokenEmbeddings(graph);
    expect(emb.embedding.name).toBe('gpt_neox.embed_in.weight');
    expect([emb.embedding.rows, emb.embedding.dim]).toEqual([453, 64]);
    expect(emb.tied).toBe(false);
    expect(emb.unembedding.name).not.toBe(emb.embedding.name);
    expect([emb.unembedding.rows, emb.unembedding.dim]).toEqual([453, 64]);
    const ref = reference('gpt-neox');
    const acts = readNpy(`${FIXTURES}gpt-neox/gpt_neox.embed_in.npy`).data;
    const ids = ref.contexts.flat();
    const rows = new Float32Array(ids.length * 64);
    ids.forEach((id, i) => {
      rows.set(emb.embedding.data.subarray(id * 64, (id + 1) * 64), i * 64);
    });
    expect(maxAbsDiff(rows, acts)).toBe(0);
  });

  it.each([
    { name: 'gpt-neox', finalNorm: 'gpt_neox.final_layer_norm', tied: false },
    { name: 'gpt2', finalNorm: 'transformer.ln_f', tied: true },
  ] as const)(
    '$name: the unembedding rows give the logits from the final hidden state (onnxruntime); tied: $tied',
    async ({ name, finalNorm, tied }) => {
      const model = await LanguageModel.load(`${FIXTURES}${name}/model.onnx`);
      models.push(model);
      const emb = tokenEmbeddings(model.graph, { vocab: model.vocabSize });
      expect(emb.tied).toBe(tied);
      if (tied) expect(emb.unembedding).toBe(emb.embedding);
      const tokens = Int32Array.from(reference(name).contexts[0]);
      const out = await model.forward(tokens, 1, tokens.length, [model.resolve(finalNorm)], { logits: true });
      const h = (out.hooks.get(finalNorm) as { data: Float32Array }).data;
      const logits = out.logits as Float32Array;
      const V = emb.unembedding.rows;
      const d = emb.unembedding.dim;
      const mine = new Float32Array(tokens.length * V);
      for (let t = 0; t < tokens.length; t++) {
        for (let v = 0; v < V; v++) {
          let s = 0;
          for (let j = 0; j < d; j++) s += h[t * d + j] * emb.unembedding.data[v * d + j];
          mine[t * V + v] = s;
        }
      }
      expect(maxAbsDiff(mine, logits)).toBeLessThan(1e-4);
    },
  );

  it('float_data and float16 weights, a [d, vocab] weight transposed on reading', () => {
    const g = tinyLm({
      nodes: [node('Gather', ['E', 'input_ids'], ['h']), node('MatMul', ['h', 'U'], ['logits'])],
      inits: [initializer('E', [3, 2], E, 'fp16'), initializer('U', [2, 3], U, 'float_data')],
    });
    const emb = tokenEmbeddings(g);
    expect(Array.from(emb.embedding.data)).toEqual(E);
    expect(emb.unembedding.name).toBe('U');
    // U is [2, 3]; the unembedding is its transpose [3, 2], by hand.
    expect(Array.from(emb.unembedding.data)).toEqual([0.5, -1, 1, 2, 1.5, 0]);
    expect(emb.tied).toBe(false);
  });

  it('a model that multiplies by the transposed embedding is tied', () => {
    const g = tinyLm({
      nodes: [
        node('Gather', ['embed_tokens.weight', 'input_ids'], ['h']),
        node('Transpose', ['embed_tokens.weight'], ['Et']),
        node('MatMul', ['h', 'Et'], ['logits']),
      ],
      inits: [initializer('embed_tokens.weight', [3, 2], E, 'raw')],
    });
    const emb = tokenEmbeddings(g);
    expect(emb.tied).toBe(true);
    expect(Array.from(emb.unembedding.data)).toEqual(E);
  });

  it('no embedding or no unembedding: one line naming the file and what was looked for', () => {
    const noEmbedding = tinyLm({
      nodes: [node('Identity', ['input_ids'], ['h']), node('MatMul', ['h', 'U'], ['logits'])],
      inits: [initializer('U', [2, 3], U, 'raw')],
    });
    expect(() => tokenEmbeddings(noEmbedding)).toThrow(DictlearnError);
    expect(() => tokenEmbeddings(noEmbedding)).toThrow(
      /^tiny\.onnx: found no token embedding: expected a \[vocab, d\] weight .*transformer\.wte\.weight/,
    );
    const noUnembedding = tinyLm({
      nodes: [node('Gather', ['E', 'input_ids'], ['h']), node('Relu', ['h'], ['logits'])],
      inits: [initializer('E', [3, 2], E, 'raw')],
    });
    expect(() => tokenEmbeddings(noUnembedding)).toThrow(
      /^tiny\.onnx: found no unembedding: expected the logits output 'logits' to come from a MatMul with a \[2, 3\] weight/,
    );
  });
});

describe('nearestTokens', () => {
  const m: TokenMatrix = {
    name: 'm',
    rows: 5,
    dim: 2,
    data: Float32Array.from([10, 10, 1, 0.1, 0, 2, -1, 0, 0, 0]),
  };

  it('ranks by cosine, not by dot product: a long row far off the direction comes after a short one on it', () => {
    const got = nearestTokens(m, [1, 0], 5);
    // Hand-computed cosines with [1, 0]: row 1 1/√1.01, row 0 1/√2, row 2 0, row 3 −1; row 4 has no norm.
    expect(got.map((s) => s.id)).toEqual([1, 0, 2, 3]);
    expect(got[0].cosine).toBeCloseTo(1 / Math.sqrt(1.01), 6);
    expect(got[1].cosine).toBeCloseTo(Math.SQRT1_2, 6);
    expect(got[2].cosine).toBe(0);
    expect(got[3].cosine).toBeCloseTo(-1, 6);
    // The direction's own length does not matter.
    expect(nearestTokens(m, [7, 0], 2)).toEqual(got.slice(0, 2));
  });

  it('keeps to the first `limit` rows and k results; a zero direction has none', () => {
    expect(nearestTokens(m, [1, 0], 1, { limit: 1 }).map((s) => s.id)).toEqual([0]);
    expect(nearestTokens(m, [0, 0], 3)).toEqual([]);
    expect(() => nearestTokens(m, [1, 0, 0], 3)).toThrow(/width 3 against 'm' of width 2/);
  });
});
