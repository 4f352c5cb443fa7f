import { readFileSync } from 'node:fs';
import { DictlearnError } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { FIXTURES, reference } from './fixtures.js';
import { resolveHook } from './hooks.js';
import { OnnxModel, OnnxType } from './onnx.js';
import { loadNodeRuntime, type OrtTensor } from './runtime.js';

const bytesOf = (name: string) => new Uint8Array(readFileSync(`${FIXTURES}${name}/model.onnx`));

describe('OnnxModel', () => {
  const model = OnnxModel.parse(bytesOf('gpt2'), 'gpt2/model.onnx');

  it('lists the graph: inputs, outputs, initializers, nodes with their module scopes', () => {
    expect(model.producerName).toBe('pytorch');
    expect(model.opsets).toEqual([{ domain: '', version: 17 }]);
    expect(model.inputs.map((i) => [i.name, i.elemType, i.dims])).toEqual([
      ['input_ids', OnnxType.INT64, ['batch', 'sequence']],
      ['attention_mask', OnnxType.INT64, ['batch', 'sequence']],
    ]);
    expect(model.outputs).toEqual([
      { name: 'logits', elemType: OnnxType.FLOAT, dims: ['batch', 'sequence', 453] },
    ]);
    expect(model.initializers.get('transformer.wte.weight')).toEqual({
      name: 'transformer.wte.weight',
      dataType: OnnxType.FLOAT,
      dims: [453, 64],
      external: false,
    });
    const gemm = model.nodes.find((n) => n.name === '/transformer/h.0/attn/c_proj/Gemm');
    expect(gemm?.opType).toBe('Gemm');
    expect(gemm?.scope).toBe('transformer.h.0.attn.c_proj');
    expect(gemm?.inputs).toEqual([
      '/transformer/h.0/attn/c_proj/Reshape_output_0',
      'transformer.h.0.attn.c_proj.weight',
      'transformer.h.0.attn.c_proj.bias',
    ]);
    // Types follow the ops: Shape gives int64, a comparison bool, Cast its `to`.
    expect(model.elemType('/transformer/h.0/attn/c_proj/Shape_output_0')).toBe(OnnxType.INT64);
    expect(model.elemType('/transformer/h.0/Add_1_output_0')).toBe(OnnxType.FLOAT);
  });

  it('writes back a model that parses to the same graph when nothing is edited', () => {
    const again = OnnxModel.parse(model.edit({ prune: false }), 'again.onnx');
    expect(again.nodes).toEqual(model.nodes);
    expect(again.outputs).toEqual(model.outputs);
    expect([...again.initializers.keys()]).toEqual([...model.initializers.keys()]);
  });

  it('prunes what an early output does not need', () => {
    const hook = resolveHook(model, 'transformer.h.0');
    const pruned = OnnxModel.parse(
      model.edit({ outputs: [{ name: hook.value, elemType: OnnxType.FLOAT }] }),
      'pruned.onnx',
    );
    expect(pruned.outputs.map((o) => o.name)).toEqual([hook.value]);
    expect(pruned.nodes.some((n) => n.scope.startsWith('transformer.h.1'))).toBe(false);
    expect(pruned.nodes.length).toBeLessThan(model.nodes.length / 2 + 60);
    expect(pruned.initializers.has('transformer.h.1.mlp.c_fc.weight')).toBe(false);
    expect(pruned.initializers.has('transformer.h.0.mlp.c_fc.weight')).toBe(true);
  });

  it('cuts a hook value out and takes a replacement as an input (for running the rest of the model)', async () => {
    const ort = await loadNodeRuntime();
    const ref = reference('gpt2');
    const seq = ref.contexts[0].length;
    const batch = ref.contexts.length;
    const ids = new BigInt64Array(ref.contexts.flat().map((t) => BigInt(t)));
    const feeds = () => ({
      input_ids: new ort.Tensor('int64', ids, [batch, seq]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(batch * seq).fill(1n), [batch, seq]),
    });
    const hook = resolveHook(model, 'transformer.h.0.mlp');
    // The original model with the hook as an extra output.
    const full = await ort.InferenceSession.create(
      model.edit({ outputs: [...model.outputs, { name: hook.value, elemType: OnnxType.FLOAT }] }),
    );
    const original = await full.run(feeds());
    const value = original[hook.value] as OrtTensor;
    const logits = (original.logits as OrtTensor).data as Float32Array;
    expect(value.dims).toEqual([batch, seq, 64]);
    // The cut model: whatever read the MLP's output reads the input 'replacement' instead.
    const cut = await ort.InferenceSession.create(
      model.edit({
        cuts: [
          {
            value: hook.value,
            input: { name: 'replacement', elemType: OnnxType.FLOAT, dims: ['batch', 'sequence', 64] },
          },
        ],
      }),
    );
    expect(cut.inputNames).toContain('replacement');
    const same = await cut.run({ ...feeds(), replacement: value });
    expect((same.logits as OrtTensor).data).toEqual(logits);
    const zero = await cut.run({
      ...feeds(),
      replacement: new ort.Tensor('float32', new Float32Array(batch * seq * 64), [batch, seq, 64]),
    });
    const changed = (zero.logits as OrtTensor).data as Float32Array;
    expect(changed.some((v, i) => Math.abs(v - logits[i]) > 1e-3)).toBe(true);
  });

  it('names the file for bytes that are not an ONNX model, and for unknown values', () => {
    expect(() => OnnxModel.parse(new TextEncoder().encode('{"not": "onnx"}'), 'x.onnx')).toThrow(
      /^x\.onnx: not an ONNX model/,
    );
    expect(() => OnnxModel.parse(new Uint8Array([8, 7]), 'y.onnx')).toThrow(
      /y\.onnx: the ONNX model has no graph/,
    );
    expect(() => model.edit({ outputs: [{ name: 'nope' }] })).toThrow(DictlearnError);
    expect(() => model.edit({ cuts: [{ value: 'input_ids', input: { name: 'z' } }] })).toThrow(
      /no node output 'input_ids'/,
    );
  });
});
