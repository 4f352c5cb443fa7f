/**
 * A causal language model from an ONNX export, run with onnxruntime, with hook values exposed as
 * extra graph outputs.
 *
 * @module
 */
import {
  bfloat16ToFloat32,
  DictlearnError,
  float16ToFloat32,
  float32ToBFloat16Bits,
  float32ToFloat16Bits,
  readFileBytes,
} from '@dictlearn/core';
import {
  type ExternalData,
  externalInitializers,
  memoryExternalData,
  mergeSessionOptions,
  nodeExternalData,
  PROTOBUF_LIMIT,
} from './external-data.js';
import { type ResolvedHook, resolveHook } from './hooks.js';
import { type ExternalDataReader, OnnxModel, OnnxType, type OnnxValueInfo } from './onnx.js';
import { loadNodeRuntime, type OrtModule, type OrtSession, type OrtTensor } from './runtime.js';

/** Options of {@link LanguageModel.load}. */
export interface LanguageModelOptions {
  /** The onnxruntime module (default: onnxruntime-node, loaded on demand; pass onnxruntime-web in a browser). */
  runtime?: OrtModule;
  /** Session options passed to `InferenceSession.create` (threads, execution providers, …). */
  sessionOptions?: Record<string, unknown>;
  /**
   * The bytes of the model's external data files by the `location` the model names them with
   * (`{ 'model.onnx.data': bytes }`), for a model whose weights live in side files and that is not
   * read from disk (a browser fetched it). In Node, {@link LanguageModel.load} reads the files
   * beside the model itself.
   */
  externalData?: Readonly<Record<string, Uint8Array>>;
}

/** One hook's values from a forward pass. */
export interface HookValue {
  /** [batch·seq, dim] float32 rows (context after context). */
  data: Float32Array;
  /** Width of a row. */
  dim: number;
  /** The value's shape in the graph ([batch, seq, dim], or [batch·seq, dim]): what a replacement must have. */
  shape: readonly number[];
}

/**
 * A hook value to replace in a forward pass: every node that reads the hook's value reads `data`
 * instead (the graph is cut there, see {@link OnnxModel.edit}), so the rest of the model runs on a
 * dictionary's reconstruction, or on zeros.
 */
export interface HookReplacement {
  /** The hook whose value is replaced. */
  hook: ResolvedHook;
  /** The replacement, float32, row-major over `shape` (converted to the value's type, e.g. float16). */
  data: Float32Array;
  /** Its shape: the hook value's shape from a forward pass ({@link HookValue.shape}). */
  shape: readonly number[];
}

/** Options of {@link LanguageModel.forward}. */
export interface ForwardOptions {
  /** Return the logits too. */
  logits?: boolean;
  /** Hook values to replace (each hook at most once). */
  replace?: readonly HookReplacement[];
}

/** What one forward pass returns. */
export interface ForwardResult {
  /** Logits [batch·seq, vocab] (row-major: context, then position), when asked for. */
  logits?: Float32Array;
  /** Hook values by hook name. */
  hooks: Map<string, HookValue>;
}

/** Graph inputs the model fills itself besides `input_ids`. */
const AUTO_INPUTS = new Set(['attention_mask', 'position_ids', 'token_type_ids']);

/**
 * A causal LM exported to ONNX (input_ids [batch, seq] → logits [batch, seq, vocab], no KV cache),
 * e.g. with `torch.onnx.export(model, …, dynamo=False)` or Hugging Face Optimum. Hooks name a
 * module path of the PyTorch model (see {@link resolveHook}); {@link forward} runs the graph with
 * the hooks as extra outputs, in one pass, and drops the nodes no requested output needs (so
 * activations at an early layer never pay for the rest of the model).
 */
export class LanguageModel {
  /** The parsed graph. */
  readonly graph: OnnxModel;
  /** The graph input that takes the token ids. */
  readonly inputIds: OnnxValueInfo;
  /** Name of the logits output. */
  readonly logitsName: string;
  /** Vocabulary size from the logits output's static width or the token embedding, when the graph says it. */
  readonly vocabSize: number | undefined;
  readonly #ort: OrtModule;
  readonly #sessionOptions: Record<string, unknown>;
  readonly #sessions = new Map<string, Promise<OrtSession>>();
  readonly #externalLocations: ReadonlyMap<string, string> | undefined;

  private constructor(
    graph: OnnxModel,
    ort: OrtModule,
    sessionOptions: Record<string, unknown>,
    externalLocations?: ReadonlyMap<string, string>,
  ) {
    this.graph = graph;
    this.#ort = ort;
    this.#sessionOptions = sessionOptions;
    this.#externalLocations = externalLocations;
    const file = graph.file;
    const expected =
      'expected an ONNX export of a causal language model (input_ids [batch, sequence] → logits [batch, sequence, vocab])';
    const ids = graph.inputs.find((i) => i.name === 'input_ids');
    if (!ids) {
      throw new DictlearnError(
        file,
        `the graph has no input 'input_ids' (its inputs: ${graph.inputs.map((i) => i.name).join(', ') || 'none'}); ${expected}`,
      );
    }
    if (ids.elemType !== undefined && ids.elemType !== OnnxType.INT64 && ids.elemType !== OnnxType.INT32) {
      throw new DictlearnError(
        file,
        `input 'input_ids' has element type ${ids.elemType}; expected int64 or int32 token ids`,
      );
    }
    this.inputIds = ids;
    const others = graph.inputs.filter((i) => i.name !== 'input_ids' && !AUTO_INPUTS.has(i.name));
    if (others.length > 0) {
      const cache = others.some((i) => /past|key_values|cache/i.test(i.name));
      throw new DictlearnError(
        file,
        `the graph has inputs this source cannot fill: ${others.map((i) => i.name).join(', ')}${cache ? ' (an export with a KV cache: export without past key values, e.g. Optimum task text-generation rather than text-generation-with-past)' : ''}; ${expected}`,
      );
    }
    const logits =
      graph.outputs.find((o) => o.name === 'logits') ?? graph.outputs.find((o) => o.dims?.length === 3);
    if (!logits || (logits.dims !== undefined && logits.dims.length !== 3)) {
      throw new DictlearnError(
        file,
        `the graph has no logits output (its outputs: ${graph.outputs.map((o) => `${o.name}${o.dims ? ` [${o.dims.map((d) => d ?? '?').join(', ')}]` : ''}`).join(', ') || 'none'}); ${expected}`,
      );
    }
    this.logitsName = logits.name;
    const width = logits.dims?.[2];
    this.vocabSize = typeof width === 'number' && width > 0 ? width : embeddingRows(graph);
  }

  /** The model file (for errors). */
  get file(): string {
    return this.graph.file;
  }

  /**
   * Loads an ONNX file (Node) and checks that it is a causal LM. A `DictlearnError` naming the
   * file says what is missing otherwise.
   */
  static async load(path: string, options: LanguageModelOptions = {}): Promise<LanguageModel> {
    await refuseOversized(path);
    const bytes = await readFileBytes(path);
    return LanguageModel.#create(bytes, path, options);
  }

  /**
   * Wraps ONNX bytes already in memory (a browser fetch, say); `file` names them in errors. A model
   * with external data needs `options.externalData`, or, in Node, `file` to be its path (the data
   * files are read from its directory).
   */
  static async fromBytes(
    bytes: Uint8Array,
    file: string,
    options: LanguageModelOptions = {},
  ): Promise<LanguageModel> {
    return LanguageModel.#create(bytes, file, options);
  }

  static async #create(
    bytes: Uint8Array,
    file: string,
    options: LanguageModelOptions,
  ): Promise<LanguageModel> {
    // The graph reads external initializers through `external`, set below once the files are checked.
    let external: ExternalData | undefined;
    const readExternal: ExternalDataReader = (location, offset, length) => {
      if (!external) throw new DictlearnError(file, `external data '${location}' read before it was checked`);
      return external.read(location, offset, length);
    };
    const graph = OnnxModel.parse(bytes, file, { readExternal });
    let sessionOptions = options.sessionOptions ?? {};
    if (externalInitializers(graph).length > 0) {
      // Bytes given (a browser), else the files beside `file` (Node; elsewhere a clear error).
      external =
        options.externalData !== undefined
          ? memoryExternalData(graph, options.externalData)
          : await nodeExternalData(graph, file);
      sessionOptions = mergeSessionOptions(sessionOptions, external.sessionOptions);
    }
    const ort = options.runtime ?? (await loadNodeRuntime());
    return new LanguageModel(graph, ort, sessionOptions, external?.locations);
  }

  /** Resolves a hook name to its graph value (see {@link resolveHook}). */
  resolve(hook: string): ResolvedHook {
    return resolveHook(this.graph, hook);
  }

  /**
   * Runs the model on `batch` contexts of `seq` tokens (`tokens` row-major, length batch·seq) and
   * returns the hooks' values, and the logits when `logits` is set. Sessions are built once per
   * set of outputs and reused.
   */
  async forward(
    tokens: Int32Array,
    batch: number,
    seq: number,
    hooks: readonly ResolvedHook[],
    options: ForwardOptions = {},
  ): Promise<ForwardResult> {
    if (tokens.length !== batch * seq) {
      throw new DictlearnError(this.file, `forward: ${tokens.length} tokens for ${batch} contexts of ${seq}`);
    }
    const outputs = this.#outputs(hooks, options.logits);
    const replace = options.replace ?? [];
    const session = await this.#session(outputs, replace);
    const feeds = this.#feeds(tokens, batch, seq);
    replace.forEach((r, i) => {
      feeds[replacementInput(i)] = this.#replacementTensor(r);
    });
    let results: Record<string, OrtTensor>;
    try {
      results = await session.run(feeds, outputs);
    } catch (e) {
      throw new DictlearnError(
        this.file,
        `onnxruntime failed to run the model: ${e instanceof Error ? e.message : String(e)}`,
      );
    } finally {
      for (const t of Object.values(feeds)) t.dispose?.();
    }
    try {
      const out: ForwardResult = { hooks: new Map() };
      for (const h of hooks)
        out.hooks.set(h.hook, this.#rows(results[h.value], batch, seq, `hook '${h.hook}'`));
      if (options.logits) {
        const l = this.#rows(results[this.logitsName], batch, seq, `output '${this.logitsName}'`);
        out.logits = l.data;
      }
      return out;
    } finally {
      for (const t of Object.values(results)) t.dispose?.();
    }
  }

  /** Frees the session that {@link forward} keeps for these hooks (and logits); the next call rebuilds it. */
  async releaseSession(hooks: readonly ResolvedHook[], options: ForwardOptions = {}): Promise<void> {
    const key = sessionKey(this.#outputs(hooks, options.logits), options.replace ?? []);
    const s = this.#sessions.get(key);
    this.#sessions.delete(key);
    await (await s?.catch(() => undefined))?.release?.();
  }

  /** Frees the onnxruntime sessions. */
  async release(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of sessions) await (await s.catch(() => undefined))?.release?.();
  }

  #outputs(hooks: readonly ResolvedHook[], logits: boolean | undefined): string[] {
    const outputs = [...new Set(hooks.map((h) => h.value))];
    if (logits && !outputs.includes(this.logitsName)) outputs.push(this.logitsName);
    return outputs;
  }

  #session(outputs: readonly string[], replace: readonly HookReplacement[]): Promise<OrtSession> {
    const key = sessionKey(outputs, replace);
    let s = this.#sessions.get(key);
    if (!s) {
      const values = replace.map((r) => r.hook.value);
      if (new Set(values).size !== values.length) {
        throw new DictlearnError(this.file, `forward: a hook value is replaced twice (${values.join(', ')})`);
      }
      const bytes = this.graph.edit({
        outputs: outputs.map((name) => ({ name, elemType: this.graph.elemType(name) ?? OnnxType.FLOAT })),
        cuts: replace.map((r, i) => ({
          value: r.hook.value,
          input: {
            name: replacementInput(i),
            elemType: this.graph.elemType(r.hook.value) ?? OnnxType.FLOAT,
            // Symbolic leading axes (batch, sequence) and the fixed width.
            dims: r.shape.map((d, j) => (j === r.shape.length - 1 ? d : `dictlearn_axis_${j}`)),
          },
        })),
        externalLocations: this.#externalLocations,
      });
      s = this.#ort.InferenceSession.create(bytes, this.#sessionOptions).catch((e: unknown) => {
        this.#sessions.delete(key);
        throw new DictlearnError(
          this.file,
          `onnxruntime could not load the model: ${e instanceof Error ? e.message : String(e)}`,
        );
      });
      this.#sessions.set(key, s);
    }
    return s;
  }

  #feeds(tokens: Int32Array, batch: number, seq: number): Record<string, OrtTensor> {
    const dims = [batch, seq];
    const ints = (values: (i: number) => number): OrtTensor => {
      // int32 ids where the graph asks for them, int64 otherwise (torch's default).
      if (this.inputIds.elemType === OnnxType.INT32) {
        const a = new Int32Array(batch * seq);
        for (let i = 0; i < a.length; i++) a[i] = values(i);
        return new this.#ort.Tensor('int32', a, dims);
      }
      const a = new BigInt64Array(batch * seq);
      for (let i = 0; i < a.length; i++) a[i] = BigInt(values(i));
      return new this.#ort.Tensor('int64', a, dims);
    };
    const feeds: Record<string, OrtTensor> = { input_ids: ints((i) => tokens[i]) };
    for (const input of this.graph.inputs) {
      if (input.name === 'attention_mask') feeds[input.name] = ints(() => 1);
      else if (input.name === 'position_ids') feeds[input.name] = ints((i) => i % seq);
      else if (input.name === 'token_type_ids') feeds[input.name] = ints(() => 0);
    }
    return feeds;
  }

  /** A replacement as an onnxruntime tensor of the replaced value's element type. */
  #replacementTensor(r: HookReplacement): OrtTensor {
    const count = r.shape.reduce((a, b) => a * b, 1);
    if (r.data.length !== count) {
      throw new DictlearnError(
        this.file,
        `forward: the replacement of hook '${r.hook.hook}' holds ${r.data.length} values; expected ${count} for shape [${r.shape.join(', ')}]`,
      );
    }
    const type = this.graph.elemType(r.hook.value) ?? OnnxType.FLOAT;
    if (type === OnnxType.FLOAT) return new this.#ort.Tensor('float32', r.data, [...r.shape]);
    if (type === OnnxType.FLOAT16 || type === OnnxType.BFLOAT16) {
      const bits = new Uint16Array(count);
      const convert = type === OnnxType.FLOAT16 ? float32ToFloat16Bits : float32ToBFloat16Bits;
      for (let i = 0; i < count; i++) bits[i] = convert(r.data[i]);
      return new this.#ort.Tensor(type === OnnxType.FLOAT16 ? 'float16' : 'bfloat16', bits, [...r.shape]);
    }
    if (type === OnnxType.DOUBLE)
      return new this.#ort.Tensor('float64', Float64Array.from(r.data), [...r.shape]);
    throw new DictlearnError(
      this.file,
      `hook '${r.hook.hook}' has element type ${type}; only floating-point values can be replaced`,
    );
  }

  /** An output as float32 rows [batch·seq, width]; checks that its leading axes are batch and seq. */
  #rows(t: OrtTensor | undefined, batch: number, seq: number, what: string): HookValue {
    if (!t) throw new DictlearnError(this.file, `onnxruntime returned no value for ${what}`);
    const dims = t.dims;
    const lead = dims.slice(0, -1).reduce((a, b) => a * b, 1);
    const dim = dims[dims.length - 1];
    if (
      dims.length < 2 ||
      lead !== batch * seq ||
      (dims.length >= 3 && (dims[0] !== batch || dims[1] !== seq))
    ) {
      throw new DictlearnError(
        this.file,
        `${what} has shape [${dims.join(', ')}]; expected [${batch}, ${seq}, d] (a value per token)`,
      );
    }
    let data: Float32Array;
    if (t.data instanceof Float32Array) data = t.data;
    else if (t.type === 'float16' && t.data instanceof Uint16Array) data = float16ToFloat32(t.data);
    else if (t.type === 'bfloat16' && t.data instanceof Uint16Array) data = bfloat16ToFloat32(t.data);
    else if (t.data instanceof Float64Array) data = Float32Array.from(t.data);
    else
      throw new DictlearnError(
        this.file,
        `${what} has element type ${t.type}; expected floating-point values`,
      );
    return { data, dim, shape: [...dims] };
  }
}

/**
 * A single-file model over protobuf's 2 GB limit cannot be parsed (by this package or by
 * onnxruntime): say so, and how to store the weights beside it, before reading gigabytes.
 */
async function refuseOversized(path: string): Promise<void> {
  let size: number;
  try {
    const fsName = 'node:fs/promises';
    const fs = (await import(/* @vite-ignore */ fsName)) as typeof import('node:fs/promises');
    size = (await fs.stat(path)).size;
  } catch {
    return; // readFileBytes reports a missing or unreadable file
  }
  if (size > PROTOBUF_LIMIT) {
    throw new DictlearnError(
      path,
      `the file is ${(size / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit for one ONNX file; expected a model whose weights are stored in external data files: re-export it (torch.onnx.export and Optimum write external data for models over 2 GB) or re-save it with onnx.save_model(model, 'model.onnx', save_as_external_data=True, all_tensors_to_one_file=True, location='model.onnx.data')`,
    );
  }
}

/** Name of the graph input that feeds replacement `i`. */
function replacementInput(i: number): string {
  return `dictlearn_replacement_${i}`;
}

/** The sessions cache key: the outputs and the values cut out (with the rank and width fed for each). */
function sessionKey(outputs: readonly string[], replace: readonly HookReplacement[]): string {
  if (replace.length === 0) return JSON.stringify(outputs);
  return JSON.stringify([outputs, replace.map((r) => [r.hook.value, r.shape.length, r.shape.at(-1)])]);
}

/** Rows of the token embedding: the initializer that a Gather on `input_ids` reads, if any. */
function embeddingRows(graph: OnnxModel): number | undefined {
  for (const n of graph.nodes) {
    if (n.opType !== 'Gather' || n.inputs[1] !== 'input_ids') continue;
    const table = graph.initializers.get(n.inputs[0]);
    if (table && table.dims.length === 2) return table.dims[0];
  }
  return undefined;
}
