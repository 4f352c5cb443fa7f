/**
 * An ONNX model writer: a small spec object in, `ModelProto` bytes out, ready for onnxruntime's
 * `InferenceSession.create(bytes)`. Used by backend-cpu's fast path (MatMul graphs for
 * onnxruntime-node) and by formats' ONNX export of a dictionary; it lives in core, next to the
 * protobuf codec it is written with, because both packages sit above core and neither may import
 * the other (see `protobuf.ts` for why core can carry it).
 *
 * Field numbers follow `onnx/onnx.proto` (proto2). Only the messages dictlearn writes are covered:
 * ModelProto, OperatorSetIdProto, GraphProto, NodeProto, AttributeProto (int, ints, float),
 * TensorProto (dims, data_type, name, raw_data), ValueInfoProto, TypeProto (tensor and
 * sequence-of-tensor types) and TensorShapeProto. Fields are written in field-number order, as
 * protobuf serialisers do, so the bytes are stable.
 *
 * @module
 */
import { littleEndianBytes, ProtoWriter } from './protobuf.js';

/** ONNX `TensorProto.DataType` code for float32. */
export const ONNX_FLOAT = 1;
/** ONNX `TensorProto.DataType` code for int32. */
export const ONNX_INT32 = 6;
/** ONNX `TensorProto.DataType` code for int64. */
export const ONNX_INT64 = 7;

/** One node attribute (`AttributeProto`) of the kinds dictlearn's graphs use. */
export type OnnxAttributeSpec =
  | {
      /** Attribute name, e.g. `'axis'`. */
      readonly name: string;
      /** One int64 (`AttributeProto.i`); may be negative (`axis: -1`). */
      readonly kind: 'int';
      /** The integer. */
      readonly value: number;
    }
  | {
      /** Attribute name, e.g. `'perm'`. */
      readonly name: string;
      /** A list of int64 (`AttributeProto.ints`). */
      readonly kind: 'ints';
      /** The integers, in order. */
      readonly value: readonly number[];
    }
  | {
      /** Attribute name, e.g. `'alpha'`. */
      readonly name: string;
      /** One float32 (`AttributeProto.f`). */
      readonly kind: 'float';
      /** The number (rounded to float32 on the wire). */
      readonly value: number;
    };

/** An operator set a model imports (`OperatorSetIdProto`). */
export interface OnnxOpsetSpec {
  /** Domain; `''` is the default ONNX domain, `'com.microsoft'` onnxruntime's contrib ops. */
  readonly domain: string;
  /** Opset version, e.g. 17. */
  readonly version: number;
}

/** One graph node (`NodeProto`). */
export interface OnnxNodeSpec {
  /** Operator name, e.g. `'MatMul'`. */
  readonly opType: string;
  /** Names of the input values, in the operator's order. */
  readonly inputs: readonly string[];
  /** Names of the output values, in the operator's order. */
  readonly outputs: readonly string[];
  /** Operator-set domain; omitted or `''` means the default ONNX domain. */
  readonly domain?: string;
  /** Node name (optional in ONNX; shows up in profiles and error messages). */
  readonly name?: string;
  /** Attributes, written in this order. */
  readonly attributes?: readonly OnnxAttributeSpec[];
}

/** A graph input or output (`ValueInfoProto` with a tensor type, or a sequence of tensors). */
export interface OnnxValueSpec {
  /** Value name, as nodes refer to it. */
  readonly name: string;
  /** `TensorProto.DataType` code, e.g. {@link ONNX_FLOAT}. */
  readonly elemType: number;
  /**
   * One entry per axis: a number is a fixed size (`dim_value`), a string a symbolic one (`dim_param`).
   * For a sequence, the shape of its elements; omit to leave it unspecified.
   */
  readonly dims?: readonly (number | string)[];
  /** When true the value is a `sequence(tensor(elemType))` rather than a tensor. */
  readonly sequence?: boolean;
}

/**
 * A constant tensor of the graph (`TensorProto` initializer). The element type follows the array:
 * float32, int32 or int64; the values are stored as little-endian `raw_data`.
 */
export interface OnnxTensorSpec {
  /** Value name, as nodes refer to it. */
  readonly name: string;
  /** Shape; `[]` for a scalar. */
  readonly dims: readonly number[];
  /** Row-major values; their count must be the product of `dims`. */
  readonly data: Float32Array | Int32Array | BigInt64Array;
}

/** A whole model (`ModelProto` with its single `GraphProto`). */
export interface OnnxModelSpec {
  /** `ModelProto.ir_version`, e.g. 8 for opset 17. */
  readonly irVersion: number;
  /** Operator sets the nodes bind against; the default domain is `''`. */
  readonly opsets: readonly OnnxOpsetSpec[];
  /** `ModelProto.producer_name`; omitted when undefined. */
  readonly producerName?: string;
  /** `GraphProto.name`. */
  readonly graphName: string;
  /** Nodes in topological order. */
  readonly nodes: readonly OnnxNodeSpec[];
  /** Constant tensors (weights). */
  readonly initializers?: readonly OnnxTensorSpec[];
  /** Graph inputs. */
  readonly inputs: readonly OnnxValueSpec[];
  /** Graph outputs. */
  readonly outputs: readonly OnnxValueSpec[];
}

// AttributeProto.AttributeType values.
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

/**
 * Versions and sizes are never negative in ONNX; the wire format would accept them (as 10-byte
 * int64), so check here and name the field instead of writing a model onnxruntime rejects later.
 */
function nonNegative(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`ONNX ${what} must be a non-negative integer, got ${value}`);
  }
  return value;
}

function attribute(attr: OnnxAttributeSpec): ProtoWriter {
  // AttributeProto: name = 1, f = 2, i = 3, ints = 8, type = 20.
  const w = new ProtoWriter().string(1, attr.name);
  switch (attr.kind) {
    case 'int':
      return w.varint(3, attr.value).varint(20, ATTR_INT);
    case 'ints':
      // `repeated int64 ints = 8` is not declared packed in the proto2 schema: one field per value.
      for (const v of attr.value) w.varint(8, v);
      return w.varint(20, ATTR_INTS);
    case 'float':
      return w.float(2, attr.value).varint(20, ATTR_FLOAT);
  }
}

function node(n: OnnxNodeSpec): ProtoWriter {
  // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7.
  const w = new ProtoWriter();
  for (const input of n.inputs) w.string(1, input);
  for (const output of n.outputs) w.string(2, output);
  if (n.name !== undefined) w.string(3, n.name);
  w.string(4, n.opType);
  for (const attr of n.attributes ?? []) w.message(5, attribute(attr));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function tensor(t: OnnxTensorSpec): ProtoWriter {
  const count = t.dims.reduce((a, d) => a * nonNegative(d, `initializer '${t.name}' dim`), 1);
  if (count !== t.data.length) {
    throw new RangeError(
      `ONNX initializer '${t.name}': dims [${t.dims.join(', ')}] hold ${count} values, got ${t.data.length}`,
    );
  }
  const type =
    t.data instanceof Float32Array ? ONNX_FLOAT : t.data instanceof Int32Array ? ONNX_INT32 : ONNX_INT64;
  // TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9.
  const w = new ProtoWriter();
  for (const d of t.dims) w.varint(1, d);
  return w.varint(2, type).string(8, t.name).bytes(9, littleEndianBytes(t.data));
}

function tensorType(v: OnnxValueSpec): ProtoWriter {
  // TypeProto.Tensor: elem_type = 1, shape = 2.
  const tt = new ProtoWriter().varint(1, nonNegative(v.elemType, `value '${v.name}' elem_type`));
  if (v.dims !== undefined) {
    // TensorShapeProto: dim = 1; Dimension: dim_value = 1, dim_param = 2.
    const shape = new ProtoWriter();
    for (const dim of v.dims) {
      const d = new ProtoWriter();
      if (typeof dim === 'number') d.varint(1, nonNegative(dim, `value '${v.name}' dim`));
      else d.string(2, dim);
      shape.message(1, d);
    }
    tt.message(2, shape);
  }
  // TypeProto: tensor_type = 1.
  return new ProtoWriter().message(1, tt);
}

function valueInfo(v: OnnxValueSpec): ProtoWriter {
  let type = tensorType(v);
  // TypeProto.Sequence: elem_type = 1; TypeProto: sequence_type = 4.
  if (v.sequence) type = new ProtoWriter().message(4, new ProtoWriter().message(1, type));
  // ValueInfoProto: name = 1, type = 2.
  return new ProtoWriter().string(1, v.name).message(2, type);
}

/**
 * Serialises a model to the ONNX protobuf format, ready for `InferenceSession` to load from memory.
 * Throws a `RangeError` naming the field for a negative or fractional version, size or type code,
 * and for an initializer whose values do not fill its dims.
 */
export function encodeOnnxModel(spec: OnnxModelSpec): Uint8Array {
  // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12.
  const graph = new ProtoWriter();
  for (const n of spec.nodes) graph.message(1, node(n));
  graph.string(2, spec.graphName);
  for (const t of spec.initializers ?? []) graph.message(5, tensor(t));
  for (const v of spec.inputs) graph.message(11, valueInfo(v));
  for (const v of spec.outputs) graph.message(12, valueInfo(v));

  // ModelProto: ir_version = 1, producer_name = 2, graph = 7, opset_import = 8.
  const model = new ProtoWriter().varint(1, nonNegative(spec.irVersion, 'ir_version'));
  if (spec.producerName !== undefined) model.string(2, spec.producerName);
  model.message(7, graph);
  for (const [i, opset] of spec.opsets.entries()) {
    // OperatorSetIdProto: domain = 1, version = 2.
    const version = nonNegative(opset.version, `opset_import[${i}] ('${opset.domain}') version`);
    model.message(8, new ProtoWriter().string(1, opset.domain).varint(2, version));
  }
  return model.finish();
}
