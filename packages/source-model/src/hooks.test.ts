import { readFileSync } from 'node:fs';
import { DictlearnError } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { FIXTURES } from './fixtures.js';
import { modulePaths, nearestNames, resolveHook } from './hooks.js';
import { encodeValueInfo, OnnxModel, OnnxType } from './onnx.js';
import { concatBytes, encodeBytesField, encodeStringField, encodeVarintField } from './proto.js';

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
