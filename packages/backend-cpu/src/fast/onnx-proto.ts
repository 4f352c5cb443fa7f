/**
 * A minimal ONNX model encoder: just enough protobuf to describe a small graph of float tensors with
 * symbolic shapes, so the onnxruntime fast path can build its models in memory instead of shipping
 * `.onnx` files (or depending on protobufjs and the onnx schema for a few hundred bytes of output).
 *
 * Field numbers follow `onnx/onnx.proto` (proto2). Only the fields this package writes are covered:
 * ModelProto, OperatorSetIdProto, GraphProto, NodeProto, AttributeProto, ValueInfoProto, TypeProto
 * (tensor and sequence-of-tensor types) and TensorShapeProto.
 *
 * @module
 */

/** ONNX `TensorProto.DataType` code for float32, the only element type the fast path uses. */
export const ONNX_FLOAT = 1;

/** One node attribute. Only the kinds the fast-path graphs need are representable. */
export type AttributeSpec =
  | { readonly name: string; readonly kind: 'int'; readonly value: number }
  | { readonly name: string; readonly kind: 'ints'; readonly value: readonly number[] }
  | { readonly name: string; readonly kind: 'float'; readonly value: number };

/** One graph node (`NodeProto`). */
export interface NodeSpec {
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  /** Operator-set domain; omitted or `''` means the default ONNX domain. */
  readonly domain?: string;
  readonly name?: string;
  readonly attributes?: readonly AttributeSpec[];
}

/** A graph input or output (`ValueInfoProto` with a tensor type, or a sequence of tensors). */
export interface ValueSpec {
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

/** A whole model (`ModelProto` with its single `GraphProto`). */
export interface ModelSpec {
  readonly irVersion: number;
  /** Operator sets the nodes bind against; the default domain is `''`. */
  readonly opsets: readonly { readonly domain: string; readonly version: number }[];
  readonly producerName?: string;
  readonly graphName: string;
  readonly nodes: readonly NodeSpec[];
  readonly inputs: readonly ValueSpec[];
  readonly outputs: readonly ValueSpec[];
}

// Protobuf wire types.
const VARINT = 0;
const LEN = 2;
const I32 = 5;

// AttributeProto.AttributeType values.
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

const utf8 = new TextEncoder();

/**
 * Appends protobuf fields to a growable byte list. Messages are small (a few hundred bytes), so a plain
 * number array keeps the code obvious; nested messages are encoded separately and written as bytes,
 * which is how their length prefix becomes known.
 */
class ProtoWriter {
  private readonly out: number[] = [];

  private rawVarint(value: number): void {
    // Only non-negative integers are ever written (versions, enum codes, 0/1 flags, axis indices).
    // Negative int64 would need the 10-byte two's-complement form, so refuse rather than mis-encode.
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`protobuf varint must be a non-negative safe integer, got ${value}`);
    }
    // Division instead of >>> because values may exceed 32 bits.
    while (value >= 0x80) {
      this.out.push((value % 0x80) | 0x80);
      value = Math.floor(value / 0x80);
    }
    this.out.push(value);
  }

  private key(field: number, wireType: number): void {
    this.rawVarint(field * 8 + wireType);
  }

  /** A varint-encoded scalar (int32, int64 or enum). */
  varint(field: number, value: number): this {
    this.key(field, VARINT);
    this.rawVarint(value);
    return this;
  }

  /** A 32-bit IEEE float (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.key(field, I32);
    const bytes = new Uint8Array(4);
    // Protobuf fixed32 is little-endian on the wire whatever the platform's byte order.
    new DataView(bytes.buffer).setFloat32(0, value, true);
    for (const byte of bytes) this.out.push(byte);
    return this;
  }

  /** A length-delimited byte string (bytes or an already-encoded nested message). */
  bytes(field: number, value: Uint8Array): this {
    this.key(field, LEN);
    this.rawVarint(value.length);
    for (const byte of value) this.out.push(byte);
    return this;
  }

  /** A UTF-8 string. */
  string(field: number, value: string): this {
    return this.bytes(field, utf8.encode(value));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

function encodeAttribute(attr: AttributeSpec): Uint8Array {
  // AttributeProto: name = 1, f = 2, i = 3, ints = 8, type = 20.
  const w = new ProtoWriter().string(1, attr.name);
  switch (attr.kind) {
    case 'int':
      w.varint(3, attr.value).varint(20, ATTR_INT);
      break;
    case 'ints':
      // `repeated int64 ints = 8` is not declared packed in the proto2 schema, so write one field per value.
      for (const v of attr.value) w.varint(8, v);
      w.varint(20, ATTR_INTS);
      break;
    case 'float':
      w.float(2, attr.value).varint(20, ATTR_FLOAT);
      break;
  }
  return w.finish();
}

function encodeNode(node: NodeSpec): Uint8Array {
  // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7.
  const w = new ProtoWriter();
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  if (node.name !== undefined) w.string(3, node.name);
  w.string(4, node.opType);
  for (const attr of node.attributes ?? []) w.bytes(5, encodeAttribute(attr));
  if (node.domain) w.string(7, node.domain);
  return w.finish();
}

function encodeTensorType(elemType: number, dims: readonly (number | string)[] | undefined): Uint8Array {
  // TypeProto.Tensor: elem_type = 1, shape = 2.
  const tensorType = new ProtoWriter().varint(1, elemType);
  if (dims !== undefined) {
    // TensorShapeProto: dim = 1; Dimension: dim_value = 1, dim_param = 2.
    const shape = new ProtoWriter();
    for (const dim of dims) {
      const d = new ProtoWriter();
      if (typeof dim === 'number') d.varint(1, dim);
      else d.string(2, dim);
      shape.bytes(1, d.finish());
    }
    tensorType.bytes(2, shape.finish());
  }
  // TypeProto: tensor_type = 1.
  return new ProtoWriter().bytes(1, tensorType.finish()).finish();
}

function encodeValueInfo(value: ValueSpec): Uint8Array {
  let type = encodeTensorType(value.elemType, value.dims);
  if (value.sequence) {
    // TypeProto.Sequence: elem_type = 1; TypeProto: sequence_type = 4.
    type = new ProtoWriter().bytes(4, new ProtoWriter().bytes(1, type).finish()).finish();
  }
  // ValueInfoProto: name = 1, type = 2.
  return new ProtoWriter().string(1, value.name).bytes(2, type).finish();
}

/**
 * Serialises a model to the ONNX protobuf format, ready for `InferenceSession` to load from memory.
 * Throws a `RangeError` on values the encoder does not support (negative integers).
 */
export function encodeModel(spec: ModelSpec): Uint8Array {
  // GraphProto: node = 1, name = 2, input = 11, output = 12.
  const graph = new ProtoWriter();
  for (const node of spec.nodes) graph.bytes(1, encodeNode(node));
  graph.string(2, spec.graphName);
  for (const input of spec.inputs) graph.bytes(11, encodeValueInfo(input));
  for (const output of spec.outputs) graph.bytes(12, encodeValueInfo(output));

  // ModelProto: ir_version = 1, producer_name = 2, graph = 7, opset_import = 8.
  const model = new ProtoWriter().varint(1, spec.irVersion);
  if (spec.producerName !== undefined) model.string(2, spec.producerName);
  model.bytes(7, graph.finish());
  for (const opset of spec.opsets) {
    // OperatorSetIdProto: domain = 1, version = 2.
    model.bytes(8, new ProtoWriter().string(1, opset.domain).varint(2, opset.version).finish());
  }
  return model.finish();
}
