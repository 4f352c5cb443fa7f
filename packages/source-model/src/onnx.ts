/**
 * An ONNX model reader and graph editor: lists nodes, graph inputs and outputs, initializers and
 * node scopes; writes an edited copy (other outputs, values cut out and fed as inputs, unused nodes
 * pruned) for `InferenceSession.create(bytes)`. Weights and every field it does not edit are copied
 * byte for byte. Field numbers follow `onnx/onnx.proto`.
 *
 * @module
 */
import { bfloat16ToFloat32, DictlearnError, float16ToFloat32 } from '@dictlearn/core';
import {
  concatBytes,
  encodeBytesField,
  encodeStringField,
  encodeVarintField,
  fieldString,
  ProtoError,
  type ProtoField,
  readFields,
  repeatedVarints,
  WIRE_LEN,
} from './proto.js';

/** ONNX `TensorProto.DataType` codes used here. */
export const OnnxType = {
  /** float32. */
  FLOAT: 1,
  /** uint8. */
  UINT8: 2,
  /** int8. */
  INT8: 3,
  /** int32. */
  INT32: 6,
  /** int64 (torch's token ids). */
  INT64: 7,
  /** bool. */
  BOOL: 9,
  /** IEEE half precision. */
  FLOAT16: 10,
  /** float64. */
  DOUBLE: 11,
  /** bfloat16. */
  BFLOAT16: 16,
} as const;

const FLOAT_TYPES = new Set<number>([OnnxType.FLOAT, OnnxType.FLOAT16, OnnxType.DOUBLE, OnnxType.BFLOAT16]);

/** Whether an ONNX element type is a floating-point type (float32, float16, bfloat16, float64). */
export function isFloatType(elemType: number | undefined): boolean {
  return elemType !== undefined && FLOAT_TYPES.has(elemType);
}

/** One node of the main graph. */
export interface OnnxNode {
  /** Position in the graph's node list (ONNX requires topological order). */
  readonly index: number;
  /** The node's name (`/gpt_neox/layers.1/attention/dense/MatMul` from the TorchScript exporter). */
  readonly name: string;
  /** Operator, e.g. `MatMul`. */
  readonly opType: string;
  /** Operator-set domain; `''` is the default ONNX domain. */
  readonly domain: string;
  /** Input value names in order (`''` for an omitted optional input). */
  readonly inputs: readonly string[];
  /** Output value names in order. */
  readonly outputs: readonly string[];
  /**
   * Names of outer values that the node's subgraphs (`If`/`Loop`/`Scan` bodies) read: the node
   * depends on them although they are not among its inputs.
   */
  readonly implicitInputs: readonly string[];
  /**
   * The PyTorch module the node belongs to, as a dotted path (`gpt_neox.layers.1.attention.dense`;
   * `''` for the root): from the dynamo exporter's `pkg.torch.onnx.name_scopes` metadata, else from
   * the TorchScript exporter's node name (`/gpt_neox/layers.1/attention/dense/MatMul`).
   */
  readonly scope: string;
  /** Element type of the outputs when the node fixes it (`Cast`'s `to`, a `Constant`'s tensor type). */
  readonly outputType?: number;
}

/** A graph input, output or value annotation (`ValueInfoProto` with a tensor type). */
export interface OnnxValueInfo {
  /** Value name. */
  readonly name: string;
  /** Element type (a `TensorProto.DataType` code); undefined when not a tensor or not given. */
  readonly elemType?: number;
  /** Dimensions: a number (fixed), a string (symbolic) or undefined (unknown); undefined when no shape. */
  readonly dims?: readonly (number | string | undefined)[];
}

/** An initializer (a weight stored in the graph). */
export interface OnnxInitializer {
  /** Value name. */
  readonly name: string;
  /** Element type. */
  readonly dataType: number;
  /** Dimensions. */
  readonly dims: readonly number[];
  /** Whether the data lives in an external file (models over 2 GB). */
  readonly external: boolean;
  /** Where the data lies when {@link external}: the file (relative to the model), offset and length. */
  readonly externalData?: ExternalDataRef;
}

/**
 * Where an initializer's bytes lie outside the model file (`TensorProto.external_data`): models over
 * 2 GB keep their weights in side files, since a protobuf message cannot exceed 2 GB.
 */
export interface ExternalDataRef {
  /** The data file, as the model names it: a path relative to the model file's directory. */
  readonly location: string;
  /** Byte offset of the data in that file (0 when the model gives none). */
  readonly offset: number;
  /** Byte length (undefined when the model gives none: the data runs to the end of the file). */
  readonly length?: number;
}

/**
 * Reads `length` bytes at `offset` of the external data file `location` (relative to the model's
 * directory). It throws a `DictlearnError` naming the file when it cannot.
 */
export type ExternalDataReader = (location: string, offset: number, length: number) => Uint8Array;

/** Options of {@link OnnxModel.parse}. */
export interface OnnxParseOptions {
  /**
   * Reads initializers stored in external data files, for {@link OnnxModel.initializerValues}
   * (`LanguageModel.load` supplies one that reads the files beside the model). Without it such
   * initializers can be listed and edited but not read.
   */
  readExternal?: ExternalDataReader;
}

/** Bytes per element of the fixed-width ONNX element types (for sizes of external data). */
export function elementBytes(dataType: number): number | undefined {
  switch (dataType) {
    case OnnxType.DOUBLE:
    case OnnxType.INT64:
      return 8;
    case OnnxType.FLOAT:
    case OnnxType.INT32:
      return 4;
    case OnnxType.FLOAT16:
    case OnnxType.BFLOAT16:
      return 2;
    case OnnxType.UINT8:
    case OnnxType.INT8:
    case OnnxType.BOOL:
      return 1;
    default:
      return undefined;
  }
}

/** A value cut out of the graph and fed from a new input (see {@link GraphEdit.cuts}). */
export interface GraphCut {
  /** The node output to replace. */
  value: string;
  /** The new graph input its readers read instead. */
  input: OnnxValueInfo;
}

/** An operator set the model imports. */
export interface OpsetImport {
  /** Domain (`''` is the default ONNX domain). */
  domain: string;
  /** Version. */
  version: number;
}

/** What {@link OnnxModel.edit} changes; everything else is copied as is. */
export interface GraphEdit {
  /** The graph outputs after the edit (default: the model's outputs). */
  outputs?: readonly OnnxValueInfo[];
  /**
   * Values to cut out: each consumer of `value` reads the new graph input `input` instead (of the
   * given type and dims), so a caller can feed a replacement (a reconstruction, zeros) for it.
   */
  cuts?: readonly GraphCut[];
  /** Drop the nodes that no output needs (default true). onnxruntime then never runs them. */
  prune?: boolean;
  /**
   * External data files to name differently in the written model: the `location` a model names →
   * the one to write (onnxruntime reads the files relative to a folder it is given, which may not be
   * the model's own; see `nodeExternalData`). Offsets and lengths are kept.
   */
  externalLocations?: ReadonlyMap<string, string>;
}

// Field numbers (onnx.proto).
const MODEL_IR_VERSION = 1;
const MODEL_PRODUCER = 2;
const MODEL_GRAPH = 7;
const MODEL_OPSET = 8;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const GRAPH_VALUE_INFO = 13;
const NODE_INPUT = 1;
const NODE_OUTPUT = 2;
const NODE_NAME = 3;
const NODE_OP_TYPE = 4;
const NODE_ATTRIBUTE = 5;
const NODE_DOMAIN = 7;
const NODE_METADATA = 9;
const ATTR_NAME = 1;
const ATTR_I = 3;
const ATTR_T = 5;
const ATTR_G = 6;
const ATTR_GRAPHS = 11;
const TENSOR_DIMS = 1;
const TENSOR_DATA_TYPE = 2;
const TENSOR_FLOAT_DATA = 4;
const TENSOR_INT32_DATA = 5;
const TENSOR_NAME = 8;
const TENSOR_RAW_DATA = 9;
const TENSOR_DOUBLE_DATA = 10;
const TENSOR_EXTERNAL_DATA = 13;
const TENSOR_DATA_LOCATION = 14;
const VALUE_NAME = 1;
const VALUE_TYPE = 2;
const TYPE_TENSOR = 1;
const TENSOR_TYPE_ELEM = 1;
const TENSOR_TYPE_SHAPE = 2;
const SHAPE_DIM = 1;
const DIM_VALUE = 1;
const DIM_PARAM = 2;

/**
 * The elements of a repeated fixed-width field (`float_data`, `double_data`), packed or one field
 * each, as little-endian views of `width` bytes.
 */
function fixedValues(fields: readonly ProtoField[], no: number, width: number): DataView[] {
  const out: DataView[] = [];
  for (const f of fields) {
    if (f.no !== no) continue;
    const bytes = f.wire === WIRE_LEN ? f.bytes : f.raw.subarray(f.raw.length - width);
    const copy = bytes.slice();
    for (let at = 0; at + width <= copy.length; at += width) out.push(new DataView(copy.buffer, at, width));
  }
  return out;
}

/** Parses a `ValueInfoProto`. */
function parseValueInfo(bytes: Uint8Array): OnnxValueInfo {
  const fields = readFields(bytes);
  let name = '';
  let elemType: number | undefined;
  let dims: (number | string | undefined)[] | undefined;
  for (const f of fields) {
    if (f.no === VALUE_NAME) name = fieldString(f);
    else if (f.no === VALUE_TYPE && f.wire === WIRE_LEN) {
      for (const t of readFields(f.bytes)) {
        if (t.no !== TYPE_TENSOR || t.wire !== WIRE_LEN) continue;
        for (const tt of readFields(t.bytes)) {
          if (tt.no === TENSOR_TYPE_ELEM) elemType = tt.value;
          else if (tt.no === TENSOR_TYPE_SHAPE && tt.wire === WIRE_LEN) {
            dims = [];
            for (const d of readFields(tt.bytes)) {
              if (d.no !== SHAPE_DIM) continue;
              let dim: number | string | undefined;
              for (const x of readFields(d.bytes)) {
                if (x.no === DIM_VALUE) dim = x.value;
                else if (x.no === DIM_PARAM) dim = fieldString(x);
              }
              dims.push(dim);
            }
          }
        }
      }
    }
  }
  return { name, elemType, dims };
}

/** Encodes a `ValueInfoProto` with a tensor type. */
export function encodeValueInfo(v: OnnxValueInfo): Uint8Array {
  const tensor: Uint8Array[] = [];
  if (v.elemType !== undefined) tensor.push(encodeVarintField(TENSOR_TYPE_ELEM, v.elemType));
  if (v.dims !== undefined) {
    const dims = v.dims.map((d) =>
      encodeBytesField(
        SHAPE_DIM,
        d === undefined
          ? new Uint8Array(0)
          : typeof d === 'number'
            ? encodeVarintField(DIM_VALUE, d)
            : encodeStringField(DIM_PARAM, d),
      ),
    );
    tensor.push(encodeBytesField(TENSOR_TYPE_SHAPE, concatBytes(dims)));
  }
  const type = encodeBytesField(TYPE_TENSOR, concatBytes(tensor));
  return concatBytes([encodeStringField(VALUE_NAME, v.name), encodeBytesField(VALUE_TYPE, type)]);
}

/** Every value name a graph (and its nested subgraphs) reads, for a node's implicit inputs. */
function subgraphReads(graph: Uint8Array, into: Set<string>): void {
  const produced = new Set<string>();
  for (const f of readFields(graph)) {
    if (f.no === GRAPH_INPUT || f.no === GRAPH_INITIALIZER) {
      for (const g of readFields(f.bytes)) {
        if (
          (f.no === GRAPH_INPUT && g.no === VALUE_NAME) ||
          (f.no === GRAPH_INITIALIZER && g.no === TENSOR_NAME)
        ) {
          produced.add(fieldString(g));
        }
      }
    }
  }
  for (const f of readFields(graph)) {
    if (f.no !== GRAPH_NODE) continue;
    for (const g of readFields(f.bytes)) {
      if (g.no === NODE_OUTPUT) produced.add(fieldString(g));
    }
  }
  for (const f of readFields(graph)) {
    if (f.no !== GRAPH_NODE) continue;
    for (const g of readFields(f.bytes)) {
      if (g.no === NODE_INPUT) {
        const name = fieldString(g);
        if (name && !produced.has(name)) into.add(name);
      } else if (g.no === NODE_ATTRIBUTE) {
        for (const a of readFields(g.bytes)) {
          if (a.no === ATTR_G || a.no === ATTR_GRAPHS) {
            const inner = new Set<string>();
            subgraphReads(a.bytes, inner);
            for (const n of inner) if (!produced.has(n)) into.add(n);
          }
        }
      }
    }
  }
}

/**
 * torch.export's stand-in module for nodes it could not place in the module tree (the sizes of the
 * graph inputs, read before the model runs): they belong to the root.
 */
function realScope(scope: string): string {
  return scope.startsWith('_empty_nn_module_stack') ? '' : scope;
}

/** The innermost module of the dynamo exporter's `pkg.torch.onnx.name_scopes` (a Python list repr). */
function scopeFromMetadata(value: string): string | undefined {
  const items = [...value.matchAll(/'([^']*)'|"([^"]*)"/g)].map((m) => m[1] ?? m[2]);
  // ['', 'transformer', 'transformer.h.0', 'view_4']: the last item names the op, the one before
  // it the innermost module ('' for the root).
  if (items.length < 2) return items.length === 1 ? '' : undefined;
  return realScope(items[items.length - 2]);
}

/**
 * The innermost module of the dynamo exporter's `namespace` metadata, which carries the same module
 * stack as text: `: …LlamaForCausalLM/model: …LlamaModel/model.layers.1: …LlamaDecoderLayer/add_7:
 * aten.add.Tensor` (module path, colon, class; the last step names the op). Read when a node has no
 * `name_scopes`.
 */
function scopeFromNamespace(value: string): string | undefined {
  const steps = value.split('/');
  if (steps.length < 2) return steps.length === 1 && value.includes(': ') ? '' : undefined;
  const step = steps[steps.length - 2];
  const colon = step.indexOf(': ');
  return realScope(colon >= 0 ? step.slice(0, colon) : step);
}

/** The module path of a TorchScript-exporter node name: `/a/b.1/c/MatMul_2` → `a.b.1.c`. */
function scopeFromName(name: string): string {
  if (!name.startsWith('/')) return '';
  const last = name.lastIndexOf('/');
  return last <= 0 ? '' : name.slice(1, last).split('/').join('.');
}

function parseNode(bytes: Uint8Array, index: number): OnnxNode {
  let name = '';
  let opType = '';
  let domain = '';
  const inputs: string[] = [];
  const outputs: string[] = [];
  const implicit = new Set<string>();
  let metaScope: string | undefined;
  let namespaceScope: string | undefined;
  let outputType: number | undefined;
  const attributes: ProtoField[][] = [];
  for (const f of readFields(bytes)) {
    switch (f.no) {
      case NODE_INPUT:
        inputs.push(fieldString(f));
        break;
      case NODE_OUTPUT:
        outputs.push(fieldString(f));
        break;
      case NODE_NAME:
        name = fieldString(f);
        break;
      case NODE_OP_TYPE:
        opType = fieldString(f);
        break;
      case NODE_DOMAIN:
        domain = fieldString(f);
        break;
      case NODE_ATTRIBUTE:
        attributes.push(readFields(f.bytes));
        break;
      case NODE_METADATA: {
        let key = '';
        let value = '';
        for (const e of readFields(f.bytes)) {
          if (e.no === 1) key = fieldString(e);
          else if (e.no === 2) value = fieldString(e);
        }
        if (key === 'pkg.torch.onnx.name_scopes') metaScope = scopeFromMetadata(value);
        else if (key === 'namespace') namespaceScope = scopeFromNamespace(value);
        break;
      }
    }
  }
  for (const attr of attributes) {
    const attrName = attr.find((a) => a.no === ATTR_NAME);
    const an = attrName ? fieldString(attrName) : '';
    for (const a of attr) {
      if (a.no === ATTR_G || a.no === ATTR_GRAPHS) subgraphReads(a.bytes, implicit);
      if (opType === 'Cast' && an === 'to' && a.no === ATTR_I) outputType = a.value;
      if ((opType === 'Constant' || opType === 'ConstantOfShape') && an === 'value' && a.no === ATTR_T) {
        const t = readFields(a.bytes).find((x) => x.no === TENSOR_DATA_TYPE);
        if (t) outputType = t.value;
      }
    }
  }
  if (opType === 'ConstantOfShape' && outputType === undefined) outputType = OnnxType.FLOAT;
  return {
    index,
    name,
    opType,
    domain,
    inputs,
    outputs,
    implicitInputs: [...implicit],
    scope: metaScope ?? namespaceScope ?? scopeFromName(name),
    outputType,
  };
}

/** An external initializer's `external_data` entries (location, offset, length), checked. */
function externalRef(file: string, name: string, fields: readonly ProtoField[]): ExternalDataRef {
  const entries = new Map<string, string>();
  for (const f of fields) {
    if (f.no !== TENSOR_EXTERNAL_DATA || f.wire !== WIRE_LEN) continue;
    let key = '';
    let value = '';
    for (const e of readFields(f.bytes)) {
      if (e.no === 1) key = fieldString(e);
      else if (e.no === 2) value = fieldString(e);
    }
    entries.set(key, value);
  }
  const location = entries.get('location');
  if (!location) {
    throw new DictlearnError(
      file,
      `initializer '${name}' is marked as stored in an external file but names no 'location'; expected external_data entries location, offset, length`,
    );
  }
  const number = (key: string): number | undefined => {
    const text = entries.get(key);
    if (text === undefined || text === '') return undefined;
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new DictlearnError(
        file,
        `initializer '${name}': external data ${key} '${text}' is not a non-negative integer`,
      );
    }
    return n;
  };
  const length = number('length');
  return { location, offset: number('offset') ?? 0, ...(length !== undefined ? { length } : {}) };
}

/** Output element types of ops that fix them whatever their inputs. */
const FIXED_OUTPUT: Record<string, number> = {
  Shape: OnnxType.INT64,
  Size: OnnxType.INT64,
  NonZero: OnnxType.INT64,
  ArgMax: OnnxType.INT64,
  ArgMin: OnnxType.INT64,
  Equal: OnnxType.BOOL,
  Less: OnnxType.BOOL,
  LessOrEqual: OnnxType.BOOL,
  Greater: OnnxType.BOOL,
  GreaterOrEqual: OnnxType.BOOL,
  And: OnnxType.BOOL,
  Or: OnnxType.BOOL,
  Xor: OnnxType.BOOL,
  Not: OnnxType.BOOL,
  IsNaN: OnnxType.BOOL,
  IsInf: OnnxType.BOOL,
};

/** Ops whose output type is that of their input at this position (else input 0). */
const TYPE_FROM_INPUT: Record<string, number> = { Where: 1, CastLike: 1 };

/**
 * An ONNX model held as its bytes: parsed enough to list and edit the main graph. Parse with
 * {@link OnnxModel.parse}; {@link OnnxModel.edit} returns new bytes and leaves this model as is.
 */
export class OnnxModel {
  /** File the bytes came from (for errors), or a description. */
  readonly file: string;
  /** `ir_version`. */
  readonly irVersion: number;
  /** Operator sets imported (`''` is the default domain). */
  readonly opsets: readonly OpsetImport[];
  /** `producer_name` (`pytorch` for torch exports). */
  readonly producerName: string;
  /** Nodes of the main graph, in graph (topological) order. */
  readonly nodes: readonly OnnxNode[];
  /** Graph inputs that are not initializers (what a caller feeds). */
  readonly inputs: readonly OnnxValueInfo[];
  /** Graph outputs. */
  readonly outputs: readonly OnnxValueInfo[];
  /** Initializers by name. */
  readonly initializers: ReadonlyMap<string, OnnxInitializer>;
  /** `value_info` annotations by name (types and shapes of intermediate values, when exported). */
  readonly valueInfo: ReadonlyMap<string, OnnxValueInfo>;

  readonly #modelFields: ProtoField[];
  readonly #graphFields: ProtoField[];
  /** Node index → the node's raw fields (for re-encoding a node with renamed inputs). */
  readonly #nodeBytes: Uint8Array[];
  /** Initializer names in graph-field order (for dropping the unused ones). */
  readonly #initializerNames: string[] = [];
  /** Initializer name → its `TensorProto` fields (views of the model bytes; decoded on demand). */
  readonly #initializerFields = new Map<string, ProtoField[]>();
  #producer: Map<string, number> | undefined;
  #consumers: Map<string, number[]> | undefined;
  #types: Map<string, number> | undefined;
  readonly #readExternal: ExternalDataReader | undefined;

  private constructor(file: string, modelFields: ProtoField[], options: OnnxParseOptions) {
    this.file = file;
    this.#readExternal = options.readExternal;
    this.#modelFields = modelFields;
    const graphField = modelFields.find((f) => f.no === MODEL_GRAPH && f.wire === WIRE_LEN);
    if (!graphField)
      throw new DictlearnError(file, 'the ONNX model has no graph; expected an ONNX ModelProto');
    this.irVersion = modelFields.find((f) => f.no === MODEL_IR_VERSION)?.value ?? 0;
    const producer = modelFields.find((f) => f.no === MODEL_PRODUCER);
    this.producerName = producer ? fieldString(producer) : '';
    this.opsets = modelFields
      .filter((f) => f.no === MODEL_OPSET)
      .map((f) => {
        let domain = '';
        let version = 0;
        for (const x of readFields(f.bytes)) {
          if (x.no === 1) domain = fieldString(x);
          else if (x.no === 2) version = x.value;
        }
        return { domain, version };
      });
    this.#graphFields = readFields(graphField.bytes);
    const nodes: OnnxNode[] = [];
    this.#nodeBytes = [];
    const initializers = new Map<string, OnnxInitializer>();
    const inputs: OnnxValueInfo[] = [];
    const outputs: OnnxValueInfo[] = [];
    const valueInfo = new Map<string, OnnxValueInfo>();
    for (const f of this.#graphFields) {
      if (f.no === GRAPH_NODE) {
        this.#nodeBytes.push(f.bytes);
        nodes.push(parseNode(f.bytes, nodes.length));
      } else if (f.no === GRAPH_INITIALIZER) {
        const t = readFields(f.bytes);
        const name = t.find((x) => x.no === TENSOR_NAME);
        this.#initializerNames.push(name ? fieldString(name) : '');
        if (!name) continue;
        this.#initializerFields.set(fieldString(name), t);
        const external = (t.find((x) => x.no === TENSOR_DATA_LOCATION)?.value ?? 0) === 1;
        initializers.set(fieldString(name), {
          name: fieldString(name),
          dataType: t.find((x) => x.no === TENSOR_DATA_TYPE)?.value ?? 0,
          dims: repeatedVarints(t, TENSOR_DIMS),
          external,
          ...(external ? { externalData: externalRef(file, fieldString(name), t) } : {}),
        });
      } else if (f.no === GRAPH_INPUT) inputs.push(parseValueInfo(f.bytes));
      else if (f.no === GRAPH_OUTPUT) outputs.push(parseValueInfo(f.bytes));
      else if (f.no === GRAPH_VALUE_INFO) {
        const v = parseValueInfo(f.bytes);
        valueInfo.set(v.name, v);
      }
    }
    this.nodes = nodes;
    this.initializers = initializers;
    // Old exporters list initializers among the inputs too; those are not fed by callers.
    this.inputs = inputs.filter((v) => !initializers.has(v.name));
    this.outputs = outputs;
    this.valueInfo = valueInfo;
  }

  /**
   * Parses ONNX bytes. Throws a `DictlearnError` naming `file` for bytes that are not an ONNX model.
   * The bytes are kept (not copied): do not modify them while the model is in use.
   */
  static parse(bytes: Uint8Array, file = 'model.onnx', options: OnnxParseOptions = {}): OnnxModel {
    let fields: ProtoField[];
    try {
      fields = readFields(bytes);
    } catch (e) {
      throw new DictlearnError(
        file,
        `not an ONNX model (${e instanceof ProtoError ? e.message : String(e)}); expected an ONNX ModelProto (.onnx)`,
      );
    }
    try {
      return new OnnxModel(file, fields, options);
    } catch (e) {
      if (e instanceof DictlearnError) throw e;
      throw new DictlearnError(
        file,
        `not an ONNX model (${e instanceof Error ? e.message : String(e)}); expected an ONNX ModelProto (.onnx)`,
      );
    }
  }

  /**
   * The values of a floating-point initializer (float32, float16, bfloat16 or float64; from
   * `raw_data`, the typed fields or an external data file) as float32, row-major over its `dims`:
   * reading a model's weights, e.g. the token embedding. A `DictlearnError` naming the file says why
   * it cannot: no such initializer, data in an external file and no reader given to
   * {@link OnnxModel.parse}, a type that is not floating point, a size that does not match the dims.
   */
  initializerValues(name: string): Float32Array {
    const info = this.initializers.get(name);
    const fields = this.#initializerFields.get(name);
    if (!info || !fields) throw new DictlearnError(this.file, `the graph has no initializer '${name}'`);
    const type = info.dataType;
    if (!isFloatType(type)) {
      throw new DictlearnError(
        this.file,
        `initializer '${name}' has element type ${type}; expected floating-point weights`,
      );
    }
    const count = info.dims.reduce((a, b) => a * b, 1);
    let rawBytes: Uint8Array | undefined;
    if (info.externalData) {
      const ref = info.externalData;
      if (!this.#readExternal) {
        throw new DictlearnError(
          this.file,
          `initializer '${name}' is stored in the external data file '${ref.location}' and no reader was given; load the model with LanguageModel.load (Node), or pass its data files' bytes as { externalData }`,
        );
      }
      rawBytes = this.#readExternal(
        ref.location,
        ref.offset,
        ref.length ?? count * (elementBytes(type) ?? 0),
      );
    } else {
      // A copy: raw_data is rarely 4-byte aligned inside the model bytes.
      rawBytes = fields.find((f) => f.no === TENSOR_RAW_DATA && f.wire === WIRE_LEN)?.bytes.slice();
    }
    let out: Float32Array;
    if (rawBytes) {
      // ONNX stores raw data little-endian.
      const bytes = rawBytes;
      const view = new DataView(bytes.buffer);
      const width = type === OnnxType.DOUBLE ? 8 : type === OnnxType.FLOAT ? 4 : 2;
      if (bytes.length !== count * width) {
        throw new DictlearnError(
          this.file,
          `initializer '${name}' holds ${bytes.length} bytes of data; expected ${count * width} for dims [${info.dims.join(', ')}]`,
        );
      } else if (type === OnnxType.FLOAT) out = new Float32Array(bytes.buffer);
      else if (type === OnnxType.DOUBLE) {
        out = new Float32Array(count);
        for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, true);
      } else {
        const bits = new Uint16Array(count);
        for (let i = 0; i < count; i++) bits[i] = view.getUint16(2 * i, true);
        out = type === OnnxType.FLOAT16 ? float16ToFloat32(bits) : bfloat16ToFloat32(bits);
      }
    } else if (type === OnnxType.FLOAT) {
      out = Float32Array.from(fixedValues(fields, TENSOR_FLOAT_DATA, 4), (b) => b.getFloat32(0, true));
    } else if (type === OnnxType.DOUBLE) {
      out = Float32Array.from(fixedValues(fields, TENSOR_DOUBLE_DATA, 8), (b) => b.getFloat64(0, true));
    } else {
      // Half-precision values without raw_data sit in int32_data, one per element (the low 16 bits).
      const bits = Uint16Array.from(repeatedVarints(fields, TENSOR_INT32_DATA), (v) => v & 0xffff);
      out = type === OnnxType.FLOAT16 ? float16ToFloat32(bits) : bfloat16ToFloat32(bits);
    }
    if (out.length !== count) {
      throw new DictlearnError(
        this.file,
        `initializer '${name}' holds ${out.length} values; expected ${count} for dims [${info.dims.join(', ')}]`,
      );
    }
    return out;
  }

  /** Value name → index of the node that produces it. */
  get producers(): ReadonlyMap<string, number> {
    if (!this.#producer) {
      const m = new Map<string, number>();
      for (const n of this.nodes) for (const o of n.outputs) if (o) m.set(o, n.index);
      this.#producer = m;
    }
    return this.#producer;
  }

  /** Value name → indices of the nodes that read it (explicitly or inside a subgraph). */
  get consumers(): ReadonlyMap<string, readonly number[]> {
    if (!this.#consumers) {
      const m = new Map<string, number[]>();
      for (const n of this.nodes) {
        for (const v of new Set([...n.inputs, ...n.implicitInputs])) {
          if (!v) continue;
          const list = m.get(v);
          if (list) list.push(n.index);
          else m.set(v, [n.index]);
        }
      }
      this.#consumers = m;
    }
    return this.#consumers;
  }

  /**
   * The element type of a value, when known: from `value_info` or the graph's inputs, outputs and
   * initializers, else propagated through the ops (`Shape` gives int64, comparisons bool, `Cast` its
   * `to`, most ops their first input's type). Undefined for values it cannot tell.
   */
  elemType(value: string): number | undefined {
    if (!this.#types) this.#types = this.#inferTypes();
    return this.#types.get(value);
  }

  #inferTypes(): Map<string, number> {
    const types = new Map<string, number>();
    for (const v of [...this.inputs, ...this.outputs, ...this.valueInfo.values()]) {
      if (v.elemType !== undefined) types.set(v.name, v.elemType);
    }
    for (const t of this.initializers.values()) types.set(t.name, t.dataType);
    for (const n of this.nodes) {
      const fixed = n.outputType ?? FIXED_OUTPUT[n.opType];
      const from = n.inputs[TYPE_FROM_INPUT[n.opType] ?? 0];
      const type = fixed ?? (from ? types.get(from) : undefined);
      if (type === undefined) continue;
      for (const o of n.outputs) if (o && !types.has(o)) types.set(o, type);
    }
    return types;
  }

  /**
   * Writes an edited copy of the model: new graph outputs, cut values fed as new inputs, and (by
   * default) the nodes no output needs dropped. Throws a `DictlearnError` naming the file for a value
   * the graph does not have.
   */
  edit(edit: GraphEdit): Uint8Array {
    const outputs = edit.outputs ?? this.outputs;
    const cuts = edit.cuts ?? [];
    const known = (v: string) =>
      this.producers.has(v) || this.initializers.has(v) || this.inputs.some((i) => i.name === v);
    for (const o of outputs) {
      if (!known(o.name)) throw new DictlearnError(this.file, `the graph has no value '${o.name}' to output`);
    }
    const rename = new Map<string, string>();
    for (const c of cuts) {
      if (!this.producers.has(c.value)) {
        throw new DictlearnError(this.file, `the graph has no node output '${c.value}' to cut`);
      }
      rename.set(c.value, c.input.name);
    }
    for (const n of this.nodes) {
      for (const v of n.implicitInputs) {
        if (rename.has(v)) {
          throw new DictlearnError(
            this.file,
            `cannot cut '${v}': a subgraph of node '${n.name}' (${n.opType}) reads it; only values read by plain nodes can be replaced`,
          );
        }
      }
    }
    // Which nodes to keep: everything an output needs, walking back from the outputs; a cut value's
    // producer is needed only where something else still reads it.
    let keep: boolean[];
    if (edit.prune === false) keep = this.nodes.map(() => true);
    else {
      keep = this.nodes.map(() => false);
      const stack = outputs.map((o) => o.name);
      const seen = new Set<string>();
      while (stack.length > 0) {
        const v = stack.pop() as string;
        if (seen.has(v)) continue;
        seen.add(v);
        const p = this.producers.get(v);
        if (p === undefined || keep[p]) continue;
        keep[p] = true;
        const node = this.nodes[p];
        for (const i of [...node.inputs, ...node.implicitInputs]) {
          if (i) stack.push(rename.get(i) ?? i);
        }
      }
    }
    const cutInputs = cuts.map((c) => c.input);
    // Weights that no kept node reads are dropped too (onnxruntime would warn about each one).
    const used = new Set<string>(outputs.map((o) => o.name));
    this.nodes.forEach((n, i) => {
      if (keep[i]) for (const v of [...n.inputs, ...n.implicitInputs]) used.add(v);
    });
    const graph: Uint8Array[] = [];
    let nodeIndex = 0;
    let initializerIndex = 0;
    for (const f of this.#graphFields) {
      if (f.no === GRAPH_INITIALIZER) {
        const name = this.#initializerNames[initializerIndex++];
        if (edit.prune !== false && !used.has(name)) continue;
        const location = this.initializers.get(name)?.externalData?.location;
        const moved = location === undefined ? undefined : edit.externalLocations?.get(location);
        if (moved !== undefined && moved !== location) {
          graph.push(encodeBytesField(GRAPH_INITIALIZER, this.#relocated(name, moved)));
        } else graph.push(f.raw);
      } else if (f.no === GRAPH_NODE) {
        const i = nodeIndex++;
        if (!keep[i]) continue;
        const node = this.nodes[i];
        if (node.inputs.some((v) => rename.has(v))) {
          graph.push(encodeBytesField(GRAPH_NODE, this.#renamedNode(i, rename)));
        } else graph.push(f.raw);
      } else if (f.no === GRAPH_INPUT) {
        // Old exporters list initializers among the inputs: drop those whose weight was dropped.
        const name = parseValueInfo(f.bytes).name;
        if (edit.prune === false || !this.initializers.has(name) || used.has(name)) graph.push(f.raw);
      } else if (f.no === GRAPH_OUTPUT) {
        // replaced below
      } else graph.push(f.raw);
    }
    for (const v of cutInputs) graph.push(encodeBytesField(GRAPH_INPUT, encodeValueInfo(v)));
    for (const o of outputs) graph.push(encodeBytesField(GRAPH_OUTPUT, encodeValueInfo(o)));
    const model: Uint8Array[] = [];
    for (const f of this.#modelFields) {
      if (f.no === MODEL_GRAPH) model.push(encodeBytesField(MODEL_GRAPH, concatBytes(graph)));
      else model.push(f.raw);
    }
    return concatBytes(model);
  }

  /** An external initializer's `TensorProto` with its `location` entry replaced. */
  #relocated(name: string, location: string): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const f of this.#initializerFields.get(name) ?? []) {
      const key = f.no === TENSOR_EXTERNAL_DATA ? readFields(f.bytes).find((e) => e.no === 1) : undefined;
      if (key && fieldString(key) === 'location') {
        const entry = concatBytes([encodeStringField(1, 'location'), encodeStringField(2, location)]);
        parts.push(encodeBytesField(TENSOR_EXTERNAL_DATA, entry));
      } else parts.push(f.raw);
    }
    return concatBytes(parts);
  }

  /** The node's bytes with its inputs renamed (inputs first, then its other fields as they were). */
  #renamedNode(index: number, rename: ReadonlyMap<string, string>): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const v of this.nodes[index].inputs) parts.push(encodeStringField(NODE_INPUT, rename.get(v) ?? v));
    for (const f of readFields(this.#nodeBytes[index])) if (f.no !== NODE_INPUT) parts.push(f.raw);
    return concatBytes(parts);
  }
}
