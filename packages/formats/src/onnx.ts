/**
 * ONNX export of a dictionary: `encode` (x → features), `decode` (features → x̂) and `forward`
 * (x → x̂, features) as self-contained ONNX models (opset 17, weights as float32 initializers,
 * a symbolic batch axis), for inference anywhere ONNX runs.
 *
 * The protobuf is written by hand (field numbers from `onnx/onnx.proto`): only ModelProto,
 * OperatorSetIdProto, GraphProto, NodeProto, AttributeProto (int, ints), TensorProto (dims,
 * data_type, name, raw_data), ValueInfoProto, TypeProto.Tensor and TensorShapeProto. (The CPU
 * backend's fast path has a similar encoder without initializers, `backend-cpu/src/fast/onnx-proto.ts`.)
 */
import { Dictionary, DictlearnError } from '@dictlearn/core';
import { kindOf, nativeOf } from './families.js';
import { ensureDir, join, writeFileAtomic } from './files.js';
import { type DictionaryParts, partsFromDictionary } from './parts.js';

/** The three graphs {@link exportOnnx} builds. */
export type OnnxGraph = 'encode' | 'decode' | 'forward';

const FLOAT = 1;
const INT64 = 7;

class Pb {
  readonly bytes: number[] = [];
  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      this.bytes.push(b);
    } while (x);
    return this;
  }
  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    return this.tag(field, 0).varint(v);
  }
  raw(field: number, data: Uint8Array | number[]): this {
    this.tag(field, 2).varint(data.length);
    for (const b of data) this.bytes.push(b);
    return this;
  }
  str(field: number, s: string): this {
    return this.raw(field, [...new TextEncoder().encode(s)]);
  }
  msg(field: number, m: Pb): this {
    return this.raw(field, m.bytes);
  }
}

interface Node {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: { name: string; int?: number; ints?: number[] }[];
}

function nodeProto(n: Node, i: number): Pb {
  const p = new Pb();
  for (const x of n.inputs) p.str(1, x);
  for (const y of n.outputs) p.str(2, y);
  p.str(3, `${n.op}_${i}`).str(4, n.op);
  for (const a of n.attrs ?? []) {
    const ap = new Pb().str(1, a.name);
    if (a.int !== undefined) ap.int(3, a.int).int(20, 2);
    else {
      for (const v of a.ints ?? []) ap.int(8, v);
      ap.int(20, 7);
    }
    p.msg(5, ap);
  }
  return p;
}

function tensorProto(name: string, dims: number[], values: Float32Array | BigInt64Array): Pb {
  const p = new Pb();
  for (const d of dims) p.int(1, d);
  p.int(2, values instanceof Float32Array ? FLOAT : INT64).str(8, name);
  const bytes = new Uint8Array(values.byteLength);
  const v = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) {
    if (values instanceof Float32Array) v.setFloat32(4 * i, values[i], true);
    else v.setBigInt64(8 * i, values[i], true);
  }
  return p.raw(9, bytes);
}

function valueInfo(name: string, dims: (number | string)[]): Pb {
  const shape = new Pb();
  for (const d of dims) shape.msg(1, typeof d === 'number' ? new Pb().int(1, d) : new Pb().str(2, d));
  const tensor = new Pb().int(1, FLOAT).msg(2, shape);
  return new Pb().str(1, name).msg(2, new Pb().msg(1, tensor));
}

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
  const inits: Pb[] = [];
  const nodes: Node[] = [];
  const init = (name: string, dims: number[], values: Float32Array | BigInt64Array) => {
    inits.push(tensorProto(name, dims, values));
    return name;
  };
  const node = (op: string, inputs: string[], out: string, attrs?: Node['attrs'], outputs = [out]) => {
    nodes.push({ op, inputs, outputs, attrs });
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
        [{ name: 'to', int: FLOAT }],
      );
      return node('Mul', [open, node('Relu', [mag], 'mag_relu')], out);
    }
    const pre = node('Add', [node('MatMul', [xc, W], 'enc_mm'), init('b_enc', [F], n.b_enc!)], 'pre');
    if (parts.architecture === 'jumprelu') {
      const above = node('Greater', [pre, init('threshold', [F], n.threshold!)], 'above');
      return node('Mul', [pre, node('Cast', [above], 'jump_mask', [{ name: 'to', int: FLOAT }])], out);
    }
    const post = node('Relu', [pre], 'post');
    if (kind === 'relu') return node('Identity', [post], out);
    if (kind === 'topk') {
      const k = init('k', [1], BigInt64Array.of(BigInt(parts.config.k as number)));
      nodes.push({
        op: 'TopK',
        inputs: [post, k],
        outputs: ['top_values', 'top_indices'],
        attrs: [{ name: 'axis', int: -1 }],
      });
      const zeros = node('ConstantOfShape', [node('Shape', [post], 'post_shape')], 'zeros');
      return node('ScatterElements', [zeros, 'top_indices', 'top_values'], out, [{ name: 'axis', int: 1 }]);
    }
    // BatchTopK / Matryoshka at inference: post · 1[post > θ]
    const above = node('Greater', [post, init('threshold', [], n.threshold!)], 'above');
    return node('Mul', [post, node('Cast', [above], 'thr_mask', [{ name: 'to', int: FLOAT }])], out);
  };
  const decode = (f: string, out: string) =>
    node(
      'Add',
      [node('MatMul', [f, init('W_dec', [F, d], n.W_dec)], 'dec_mm'), init('b_dec', [d], n.b_dec)],
      out,
    );
  let inputs: Pb[];
  let outputs: Pb[];
  if (graph === 'encode') {
    encode('x', 'features');
    [inputs, outputs] = [[valueInfo('x', ['batch', d])], [valueInfo('features', ['batch', F])]];
  } else if (graph === 'decode') {
    decode('features', 'reconstruction');
    [inputs, outputs] = [[valueInfo('features', ['batch', F])], [valueInfo('reconstruction', ['batch', d])]];
  } else {
    decode(encode('x', 'features'), 'reconstruction');
    inputs = [valueInfo('x', ['batch', d])];
    outputs = [valueInfo('reconstruction', ['batch', d]), valueInfo('features', ['batch', F])];
  }
  const g = new Pb();
  for (const [i, nd] of nodes.entries()) g.msg(1, nodeProto(nd, i));
  g.str(2, `dictlearn_${parts.architecture.replace(/[^A-Za-z0-9_]/g, '_')}_${graph}`);
  for (const t of inits) g.msg(5, t);
  for (const v of inputs) g.msg(11, v);
  for (const v of outputs) g.msg(12, v);
  const model = new Pb()
    .int(1, 8) // IR version 8 (onnx 1.13+, opset 17)
    .str(2, 'dictlearn')
    .msg(7, g)
    .msg(8, new Pb().str(1, '').int(2, 17));
  return Uint8Array.from(model.bytes);
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
