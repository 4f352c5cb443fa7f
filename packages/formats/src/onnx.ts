/**
 * ONNX export of a dictionary: `encode` (x → features), `decode` (features → x̂) and `forward`
 * (x → x̂, features) as self-contained ONNX models (opset 17, weights as float32 initializers,
 * a symbolic batch axis), for inference anywhere ONNX runs. The protobuf is written by core's
 * shared ONNX writer (`encodeOnnxModel`); this module only builds the graph.
 */
import {
  Dictionary,
  DictlearnError,
  encodeOnnxModel,
  ONNX_FLOAT,
  type OnnxAttributeSpec,
  type OnnxNodeSpec,
  type OnnxTensorSpec,
  type OnnxValueSpec,
} from '@dictlearn/core';
import { kindOf, nativeOf } from './families.js';
import { ensureDir, join, writeFileAtomic } from './files.js';
import { type DictionaryParts, partsFromDictionary } from './parts.js';

/** The three graphs {@link exportOnnx} builds. */
export type OnnxGraph = 'encode' | 'decode' | 'forward';

/** `to = float32`: the attribute of every Cast here (boolean masks to 0/1). */
const TO_FLOAT: OnnxAttributeSpec = { name: 'to', kind: 'int', value: ONNX_FLOAT };

/** A graph value of shape [batch, n]. */
const batchValue = (name: string, n: number): OnnxValueSpec => ({
  name,
  elemType: ONNX_FLOAT,
  dims: ['batch', n],
});

/**
 * An ONNX model of the dictionary's `graph`: `encode` maps input `x` [batch, d] to `features`
 * [batch, F], `decode` maps `features` to `reconstruction` [batch, d], `forward` maps `x` to both.
 * The encoders follow dictlearn's definitions (`@dictlearn/formats`' README lists them); JumpReLU's
 * θ = exp(log θ) and gated's W_enc ⊙ exp(r_mag) are folded into float32 initializers as the CPU
 * backend computes them.
 */
export function exportOnnx(parts: DictionaryParts, graph: OnnxGraph, where = 'onnx'): Uint8Array {
  const kind = kindOf(parts.architecture);
  if (!kind)
    throw new DictlearnError(where, `architecture '${parts.architecture}' cannot be exported to ONNX yet`);
  const { activationDim: d, dictSize: F } = parts;
  const n = nativeOf(parts, where);
  const initializers: OnnxTensorSpec[] = [];
  const nodes: Omit<OnnxNodeSpec, 'name'>[] = [];
  const init = (name: string, dims: number[], data: Float32Array | BigInt64Array) => {
    initializers.push({ name, dims, data });
    return name;
  };
  const node = (opType: string, inputs: string[], out: string, attributes?: OnnxAttributeSpec[]) => {
    nodes.push({ opType, inputs, outputs: [out], attributes });
    return out;
  };
  const encode = (x: string, out: string): string => {
    const W = init('W_enc', [d, F], n.W_enc);
    const bDec = init('b_dec_enc', [d], n.b_dec);
    const applyBDec = parts.architecture !== 'jumprelu' || parts.config.applyBDecToInput === true;
    const xc = applyBDec ? node('Sub', [x, bDec], 'x_centered') : x;
    if (kind === 'gated') {
      const rMag = n.r_mag!;
      const wMag = n.W_enc.map((w, i) => Math.fround(w * Math.fround(Math.exp(rMag[i % F]))));
      const gate = node(
        'Add',
        [node('MatMul', [xc, W], 'gate_mm'), init('b_gate', [F], n.b_gate!)],
        'pi_gate',
      );
      const mag = node(
        'Add',
        [node('MatMul', [xc, init('W_mag', [d, F], wMag)], 'mag_mm'), init('b_mag', [F], n.b_mag!)],
        'pi_mag',
      );
      const open = node(
        'Cast',
        [node('Greater', [gate, init('zero', [], Float32Array.of(0))], 'gate_open')],
        'gate_mask',
        [TO_FLOAT],
      );
      return node('Mul', [open, node('Relu', [mag], 'mag_relu')], out);
    }
    const pre = node('Add', [node('MatMul', [xc, W], 'enc_mm'), init('b_enc', [F], n.b_enc!)], 'pre');
    if (parts.architecture === 'jumprelu') {
      const above = node('Greater', [pre, init('threshold', [F], n.threshold!)], 'above');
      return node('Mul', [pre, node('Cast', [above], 'jump_mask', [TO_FLOAT])], out);
    }
    const post = node('Relu', [pre], 'post');
    if (kind === 'relu') return node('Identity', [post], out);
    if (kind === 'topk') {
      const k = init('k', [1], BigInt64Array.of(BigInt(parts.config.k as number)));
      nodes.push({
        opType: 'TopK',
        inputs: [post, k],
        outputs: ['top_values', 'top_indices'],
        attributes: [{ name: 'axis', kind: 'int', value: -1 }],
      });
      const zeros = node('ConstantOfShape', [node('Shape', [post], 'post_shape')], 'zeros');
      return node('ScatterElements', [zeros, 'top_indices', 'top_values'], out, [
        { name: 'axis', kind: 'int', value: 1 },
      ]);
    }
    // BatchTopK / Matryoshka at inference: post · 1[post > θ]
    const above = node('Greater', [post, init('threshold', [], n.threshold!)], 'above');
    return node('Mul', [post, node('Cast', [above], 'thr_mask', [TO_FLOAT])], out);
  };
  const decode = (f: string, out: string) =>
    node(
      'Add',
      [node('MatMul', [f, init('W_dec', [F, d], n.W_dec)], 'dec_mm'), init('b_dec', [d], n.b_dec)],
      out,
    );
  let inputs: OnnxValueSpec[];
  let outputs: OnnxValueSpec[];
  if (graph === 'encode') {
    encode('x', 'features');
    [inputs, outputs] = [[batchValue('x', d)], [batchValue('features', F)]];
  } else if (graph === 'decode') {
    decode('features', 'reconstruction');
    [inputs, outputs] = [[batchValue('features', F)], [batchValue('reconstruction', d)]];
  } else {
    decode(encode('x', 'features'), 'reconstruction');
    inputs = [batchValue('x', d)];
    outputs = [batchValue('reconstruction', d), batchValue('features', F)];
  }
  return encodeOnnxModel({
    irVersion: 8, // IR version 8 (onnx 1.13+, opset 17)
    opsets: [{ domain: '', version: 17 }],
    producerName: 'dictlearn',
    graphName: `dictlearn_${parts.architecture.replace(/[^A-Za-z0-9_]/g, '_')}_${graph}`,
    // Node names are unique by position: `MatMul_3`.
    nodes: nodes.map((nd, i) => ({ ...nd, name: `${nd.opType}_${i}` })),
    initializers,
    inputs,
    outputs,
  });
}

/** The files {@link writeOnnx} writes into its folder. */
export const ONNX_FILES = {
  /** x [batch, d] → features [batch, F]. */
  encode: 'encode.onnx',
  /** features [batch, F] → reconstruction [batch, d]. */
  decode: 'decode.onnx',
  /** x → reconstruction, features. */
  forward: 'forward.onnx',
} as const;

/**
 * Writes `encode.onnx`, `decode.onnx` and `forward.onnx` of a dictionary into the folder `dir`
 * (created if needed, each file atomically). Returns the files written.
 */
export async function writeOnnx(dict: Dictionary | DictionaryParts, dir: string): Promise<string[]> {
  const parts = dict instanceof Dictionary ? await partsFromDictionary(dict) : dict;
  const models = (['encode', 'decode', 'forward'] as const).map(
    (g) => [g, exportOnnx(parts, g, dir)] as const,
  );
  await ensureDir(dir);
  const files: string[] = [];
  for (const [g, bytes] of models) {
    const path = join(dir, ONNX_FILES[g]);
    await writeFileAtomic(path, bytes);
    files.push(path);
  }
  return files;
}
