import { readFileSync } from 'node:fs';
import { DictlearnError } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { FIXTURES } from './fixtures.js';
import { modulePaths, nearestNames, resolveHook } from './hooks.js';
import { encodeValueInfo, OnnxModel, OnnxType } from './onnx.js';
import {
  concatBytes,
  encodeBytesField,
  encodeStringField,
  encodeVarintField,
  fieldString,
  readFields,
} from './proto.js';

const load = (name: string) =>
  OnnxModel.parse(new Uint8Array(readFileSync(`${FIXTURES}${name}/model.onnx`)), `${name}/model.onnx`);

describe('hooks on the TorchScript exports (node names carry the module scopes)', () => {
  const models = { 'gpt-neox': load('gpt-neox'), gpt2: load('gpt2') };
  const neox = models['gpt-neox'];
  const gpt2 = models.gpt2;

  // The values a reader of the graph picks by hand: the residual Add that ends a block, the output
  // projection's bias Add (NeoX) or reshape back to [batch, seq, d] (GPT-2's Conv1D), and the
  // merged-heads reshape that feeds the output projection.
  it.each([
    ['gpt-neox', 'gpt_neox.layers.1', '/gpt_neox/layers.1/Add_1_output_0'],
    ['gpt-neox', 'gpt_neox.layers.1.mlp', '/gpt_neox/layers.1/mlp/dense_4h_to_h/Add_output_0'],
    ['gpt-neox', 'gpt_neox.layers.1.attention', '/gpt_neox/layers.1/attention/dense/Add_output_0'],
    ['gpt-neox', 'gpt_neox.layers.1.attention:heads', '/gpt_neox/layers.1/attention/Reshape_1_output_0'],
    [
      'gpt-neox',
      'gpt_neox.layers.1.mlp:input',
      '/gpt_neox/layers.1/post_attention_layernorm/LayerNormalization_output_0',
    ],
    ['gpt-neox', 'gpt_neox.embed_in', '/gpt_neox/embed_in/Gather_output_0'],
    ['gpt2', 'transformer.h.0', '/transformer/h.0/Add_1_output_0'],
    ['gpt2', 'transformer.h.1.attn', '/transformer/h.1/attn/c_proj/Reshape_1_output_0'],
    ['gpt2', 'transformer.h.0.attn:heads', '/transformer/h.0/attn/Reshape_3_output_0'],
    ['gpt2', 'transformer.h.1.ln_2', '/transformer/h.1/ln_2/LayerNormalization_output_0'],
  ])('%s %s → the value it returns', (name, hook, value) => {
    const r = resolveHook(models[name as keyof typeof models], hook);
    expect(r.value).toBe(value);
    expect(r.elemType).toBe(OnnxType.FLOAT);
  });

  it('lists module paths and suggests the nearest for an unknown module, naming the file', () => {
    expect(modulePaths(neox)).toContain('gpt_neox.layers.2.attention.dense');
    expect(modulePaths(neox)).toContain('gpt_neox.layers');
    expect(() => resolveHook(neox, 'gpt_neox.layer.1')).toThrow(
      /gpt-neox\/model\.onnx: hook 'gpt_neox\.layer\.1': the model has no module 'gpt_neox\.layer\.1'; nearest module names: gpt_neox\.layers\.1, /,
    );
    expect(() => resolveHook(gpt2, 'transformer.h.7')).toThrow(
      /nearest module names: transformer\.h\.0, transformer\.h\.1/,
    );
  });

  it('refuses :heads on a module without an output projection, listing its submodules', () => {
    expect(() => resolveHook(gpt2, 'transformer.h.0:heads')).toThrow(
      /'transformer\.h\.0' has the submodules transformer\.h\.0\.attn, transformer\.h\.0\.ln_1, transformer\.h\.0\.ln_2, transformer\.h\.0\.mlp/,
    );
    expect(() => resolveHook(gpt2, 'transformer.h.0:z')).toThrow(/unknown suffix ':z'/);
    expect(() => resolveHook(gpt2, 'value:nope')).toThrow(DictlearnError);
    expect(resolveHook(gpt2, 'value:/transformer/h.0/Add_output_0').value).toBe(
      '/transformer/h.0/Add_output_0',
    );
  });

  it('ranks suggestions by edit distance', () => {
    expect(nearestNames('h.1.atn', ['h.1.attn', 'h.10.attn', 'h.1.mlp'], 2)).toEqual([
      'h.1.attn',
      'h.10.attn',
    ]);
  });
});

/** The model bytes with every node's metadata entry `key` removed (as an exporter that never wrote it). */
function withoutMetadata(bytes: Uint8Array, key: string): Uint8Array {
  const node = (b: Uint8Array) =>
    concatBytes(
      readFields(b)
        .filter((f) => {
          if (f.no !== 9) return true;
          const k = readFields(f.bytes).find((e) => e.no === 1);
          return !k || fieldString(k) !== key;
        })
        .map((f) => f.raw),
    );
  const graph = (b: Uint8Array) =>
    concatBytes(readFields(b).map((f) => (f.no === 1 ? encodeBytesField(1, node(f.bytes)) : f.raw)));
  return concatBytes(
    readFields(bytes).map((f) => (f.no === 7 ? encodeBytesField(7, graph(f.bytes)) : f.raw)),
  );
}

describe('hooks on a Llama-style model (RMSNorm, rotary, SwiGLU, grouped-query attention)', () => {
  const script = load('llama');
  const dynamoBytes = new Uint8Array(readFileSync(`${FIXTURES}llama/model-dynamo.onnx`));
  const dynamo = OnnxModel.parse(dynamoBytes, 'llama/model-dynamo.onnx');

  // TorchScript export: the residual Add ending the block, down_proj's MatMul (no bias), the
  // merged-heads Reshape that o_proj reads, and the previous block's output as this block's input.
  // Dynamo export of the same model: the same values under torch.export's names.
  it.each([
    ['model.layers.1', '/model/layers.1/Add_1_output_0', 'add_722'],
    ['model.layers.1.mlp', '/model/layers.1/mlp/down_proj/MatMul_output_0', 'linear_13'],
    ['model.layers.1.self_attn', '/model/layers.1/self_attn/o_proj/MatMul_output_0', 'linear_10'],
    ['model.layers.0.self_attn:heads', '/model/layers.0/self_attn/Reshape_7_output_0', 'view_3'],
    ['model.layers.1:input', '/model/layers.0/Add_1_output_0', 'add_412'],
    ['model.layers.1.mlp:input', '/model/layers.1/post_attention_layernorm/Mul_1_output_0', 'mul_651'],
    ['model.embed_tokens', '/model/embed_tokens/Gather_output_0', 'embedding'],
  ])('%s → %s (TorchScript) / %s (dynamo)', (hook, scriptValue, dynamoValue) => {
    expect(resolveHook(script, hook).value).toBe(scriptValue);
    const r = resolveHook(dynamo, hook);
    expect(r.value).toBe(dynamoValue);
    expect(r.elemType).toBe(OnnxType.FLOAT);
  });

  it("dynamo: ':heads' is what o_proj's MatMul reads, and ':input' is the previous block's output", () => {
    const heads = resolveHook(dynamo, 'model.layers.0.self_attn:heads').value;
    const readers = (dynamo.consumers.get(heads) ?? []).map((i) => dynamo.nodes[i]);
    expect(readers.map((n) => [n.opType, n.scope])).toEqual([['MatMul', 'model.layers.0.self_attn.o_proj']]);
    expect(resolveHook(dynamo, 'model.layers.1:input').value).toBe(
      resolveHook(dynamo, 'model.layers.0').value,
    );
  });

  it('dynamo: module paths come from node metadata, with no stand-in modules; errors list the nearest', () => {
    const linear = dynamo.nodes.find((n) => n.name === 'node_linear_10');
    expect(linear?.scope).toBe('model.layers.1.self_attn.o_proj');
    const paths = modulePaths(dynamo);
    expect(paths).toEqual(modulePaths(script));
    expect(paths.some((p) => p.startsWith('_'))).toBe(false);
    expect(() => resolveHook(dynamo, 'model.layers.1.self_atn')).toThrow(
      /llama\/model-dynamo\.onnx: hook 'model\.layers\.1\.self_atn': the model has no module 'model\.layers\.1\.self_atn'; nearest module names: model\.layers\.1\.self_attn, /,
    );
    expect(() => resolveHook(dynamo, 'model.layers.1:heads')).toThrow(
      /'model\.layers\.1' has the submodules model\.layers\.1\.input_layernorm, model\.layers\.1\.mlp, model\.layers\.1\.post_attention_layernorm, model\.layers\.1\.self_attn/,
    );
  });

  it("dynamo: the 'namespace' metadata alone gives every node the same module path", () => {
    const bare = OnnxModel.parse(withoutMetadata(dynamoBytes, 'pkg.torch.onnx.name_scopes'), 'bare.onnx');
    expect(bare.nodes.map((n) => n.scope)).toEqual(dynamo.nodes.map((n) => n.scope));
    expect(resolveHook(bare, 'model.layers.0.self_attn:heads').value).toBe('view_3');
    // With neither, the graph has no module names: the error says to name values instead.
    const none = OnnxModel.parse(
      withoutMetadata(withoutMetadata(dynamoBytes, 'pkg.torch.onnx.name_scopes'), 'namespace'),
      'none.onnx',
    );
    expect(() => resolveHook(none, 'model.layers.1')).toThrow(/carry no module names.*'value:NAME'/);
  });
});

// A synthetic graph in the dynamo exporter's style: node names say nothing, the module path is in
// the `pkg.torch.onnx.name_scopes` metadata. Block 1 and block 10 test that a scope is matched as
// a whole path step (`blk.1` must not take in `blk.10`).
function node(name: string, op: string, inputs: string[], outputs: string[], scopes?: string[]): Uint8Array {
  const parts = [
    ...inputs.map((i) => encodeStringField(1, i)),
    ...outputs.map((o) => encodeStringField(2, o)),
    encodeStringField(3, name),
    encodeStringField(4, op),
  ];
  if (scopes) {
    const value = `[${scopes.map((s) => `'${s}'`).join(', ')}]`;
    parts.push(
      encodeBytesField(
        9,
        concatBytes([encodeStringField(1, 'pkg.torch.onnx.name_scopes'), encodeStringField(2, value)]),
      ),
    );
  }
  return concatBytes(parts);
}

function dynamoModel(): OnnxModel {
  const nodes = [
    node('n0', 'Relu', ['x'], ['a1'], ['', 'blk.1', 'blk.1.attn', 'relu']),
    // A second value leaves the attention (its weights, as with output_attentions=True): the
    // module's first output in PyTorch is still the one produced last.
    node('w', 'Sigmoid', ['a1'], ['w1'], ['', 'blk.1', 'blk.1.attn', 'sigmoid']),
    node('n1', 'Neg', ['a1'], ['o1'], ['', 'blk.1', 'blk.1.attn', 'blk.1.attn.o_proj', 'neg']),
    node('n2', 'Add', ['o1', 'x'], ['h1'], ['', 'blk.1', 'add']),
    node('n3', 'Relu', ['h1'], ['a10'], ['', 'blk.10', 'blk.10.attn', 'relu_1']),
    node('n4', 'Add', ['a10', 'h1'], ['h10'], ['', 'blk.10', 'add_1']),
    node('n5', 'Identity', ['h10'], ['y']),
    node('n6', 'Identity', ['w1'], ['w']),
  ];
  const fv = (name: string) => encodeValueInfo({ name, elemType: OnnxType.FLOAT, dims: ['batch', 'seq', 4] });
  const graph = concatBytes([
    ...nodes.map((n) => encodeBytesField(1, n)),
    encodeStringField(2, 'g'),
    encodeBytesField(11, fv('x')),
    encodeBytesField(12, fv('y')),
    encodeBytesField(12, fv('w')),
  ]);
  const model = concatBytes([encodeVarintField(1, 8), encodeBytesField(7, graph)]);
  return OnnxModel.parse(model, 'dynamo.onnx');
}

describe('hooks on a dynamo-style export (scopes in node metadata)', () => {
  const m = dynamoModel();
  it('reads module paths from the metadata', () => {
    expect(m.nodes.map((n) => n.scope)).toEqual([
      'blk.1.attn',
      'blk.1.attn',
      'blk.1.attn.o_proj',
      'blk.1',
      'blk.10.attn',
      'blk.10',
      '',
      '',
    ]);
  });
  it('resolves outputs, heads and inputs by whole path steps', () => {
    expect(resolveHook(m, 'blk.1').value).toBe('h1');
    expect(resolveHook(m, 'blk.10').value).toBe('h10');
    expect(resolveHook(m, 'blk.1.attn').value).toBe('o1');
    expect(resolveHook(m, 'blk.1.attn:heads').value).toBe('a1');
    expect(resolveHook(m, 'blk.10:input').value).toBe('h1');
  });
});
