/**
 * `ModelSource`: activations of a language model on a text corpus, as an `ActivationSource`.
 *
 * @module
 */
import {
  type ActivationSource,
  type BatchOptions,
  DictlearnError,
  type Tensor,
  tensor,
} from '@dictlearn/core';
import type { ResolvedHook } from './hooks.js';
import { type HookValue, LanguageModel } from './model.js';
import { ContextPacker, type ModelSourcePosition, type PackedContext, START_POSITION } from './packing.js';
import type { OrtModule } from './runtime.js';
import { readDocuments, type TextInput, type TextOptions } from './text.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';
import { workerRunSeconds, workerRuntime } from './worker-runtime.js';

/** Options of {@link ModelSource.open}. */
export interface ModelSourceOptions extends TextOptions {
  /** The ONNX file of a causal LM, or a loaded {@link LanguageModel}. */
  model: string | LanguageModel;
  /** The model's tokenizer.json, or a loaded tokenizer (default: `tokenizer.json` beside the model file). */
  tokenizer?: string | TextTokenizer;
  /**
   * Text files: plain text (documents separated by blank lines) or JSONL (see {@link TextOptions}),
   * by path (Node) or as bytes in memory (`{ file, bytes }`, e.g. fetched in a browser).
   */
  text: TextInput | readonly TextInput[];
  /** Hooks to read, e.g. `'gpt_neox.layers.3'` or `['transformer.h.5', 'transformer.h.5.attn:heads']`. */
  hooks: string | readonly string[];
  /** Tokens per context, BOS included (default 128, dictionary_learning's `ctx_len`). */
  contextLength?: number;
  /** Contexts per forward pass (default 512, dictionary_learning's `refresh_batch_size`; lower it to save memory). */
  forwardBatch?: number;
  /** Put BOS at position 0 of every context (default true when the tokenizer has a BOS token). */
  prependBos?: boolean;
  /** Leave out the rows of BOS tokens (of position 0 when the tokenizer has no BOS), as dictionary_learning's `remove_bos` (default false). */
  dropBos?: boolean;
  /**
   * Leave out tokens whose activation norm exceeds this multiple of the median norm of their context
   * (dictionary_learning's `max_activation_norm_multiple`, which suggests 10); default: keep all.
   */
  outlierMultiple?: number;
  /** Permute the documents each epoch (default false: file order). */
  shuffle?: boolean;
  /** Seed of the permutation (default 0). */
  seed?: number;
  /** Passes over the documents (default 1; `Infinity` repeats them). */
  epochs?: number;
  /** Where to start (a {@link ModelSource.position} saved earlier; default the beginning). */
  start?: ModelSourcePosition;
  /** The onnxruntime module (default onnxruntime-node; pass onnxruntime-web in a browser). */
  runtime?: OrtModule;
  /** onnxruntime session options (threads, execution providers). */
  sessionOptions?: Record<string, unknown>;
  /**
   * Forward passes kept running ahead of the reader (default 1; 0 runs each pass only when its rows
   * are asked for). The next pass then runs while the reader trains on the current one, and a refill
   * finds its rows ready. At most this many passes beyond the one being read are held in memory.
   * Rows, their order and {@link ModelSource.position} do not depend on it. In Node, with no
   * `runtime` given and a model path, a positive value runs onnxruntime-node in a worker thread
   * (`workerRuntime`): its `run` otherwise blocks the JS thread for the whole pass.
   */
  prefetch?: number;
  /**
   * onnxruntime's intra-op threads (its `intraOpNumThreads`; default 1 while prefetching, where the
   * model shares the cores with the SAE steps, else onnxruntime's default of one per core).
   * `sessionOptions.intraOpNumThreads` takes precedence.
   */
  intraOpThreads?: number;
}

/** Options of {@link ModelSource.batches}. */
export interface ModelBatchOptions extends BatchOptions {
  /** Position to start at (default: the source's `start` option). */
  start?: ModelSourcePosition;
}

/** The rows one forward pass gave for one hook. */
export interface HookRows {
  /** Kept rows, context after context: [rows, dim] float32. */
  readonly data: Float32Array;
  /** Width of a row. */
  readonly dim: number;
  /** Rows kept from each context (contextLength minus dropped BOS and outlier rows). */
  readonly counts: Int32Array;
}

/** What one forward pass over a group of contexts gives. */
export interface ModelChunk {
  /** The contexts, in order, with their positions. */
  readonly contexts: readonly PackedContext[];
  /** Kept rows per hook name. */
  readonly rows: ReadonlyMap<string, HookRows>;
}

/** Counters of a {@link ModelSource} ({@link ModelSource.stats}). */
export interface ModelSourceStats {
  /** Forward passes run. */
  forwardPasses: number;
  /** Tokens run through the model (contexts × contextLength). */
  tokens: number;
  /**
   * Seconds the forward passes took: timed in the worker thread when the model runs in one (with
   * prefetch they overlap the reader's work), else the time each `forward` call took.
   */
  forwardSeconds: number;
  /** Seconds the reader spent waiting for a forward pass (all of it without prefetch, ideally none with). */
  waitSeconds: number;
}

/** One hook's view of a {@link ModelSource} (see {@link ModelSource.split}). */
export interface HookSource extends ActivationSource {
  /** The hook it yields. */
  readonly hook: ResolvedHook;
  /** Position after the last batch it yielded (save it to resume). */
  readonly position: ModelSourcePosition;
}

function positiveInt(name: string, v: unknown, where: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 1) {
    throw new DictlearnError(where, `option '${name}' must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v as number;
}

function dirOf(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i < 0 ? '.' : path.slice(0, i) || '/';
}

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/** The lower median (torch.median's choice for an even count). */
function lowerMedian(values: Float64Array): number {
  const sorted = Float64Array.from(values).sort();
  return sorted[(sorted.length - 1) >> 1];
}

/**
 * Activations of a causal LM (ONNX, onnxruntime) at one or more hooks, on a text corpus tokenised
 * with the model's tokenizer.json. Documents are packed into contexts (see {@link ContextPacker});
 * each forward pass runs `forwardBatch` contexts with every hook as an extra graph output, and
 * yields the hooks' rows ([tokens, d] float32), optionally without BOS positions and high-norm
 * outliers. Which rows come out depends only on the text, the options and the position, never on
 * `forwardBatch` or `batchSize`, so a run resumes exactly from a saved {@link position}.
 *
 * With one hook the source is itself an `ActivationSource`; with several, {@link split} gives one
 * source per hook that share the forward passes, and {@link chunks} gives every hook's rows of
 * each pass.
 *
 * ```ts
 * const source = await ModelSource.open({ model: 'pythia/model.onnx', text: 'corpus.txt', hooks: 'gpt_neox.layers.3' });
 * for await (const x of source.batches({ batchSize: 4096 })) { x.dispose(); break; }
 * ```
 */
export class ModelSource implements ActivationSource {
  /** The model. */
  readonly model: LanguageModel;
  /** The tokenizer. */
  readonly tokenizer: TextTokenizer;
  /** The hooks, resolved to graph values. */
  readonly hooks: readonly ResolvedHook[];
  /** Width of each hook's rows, by hook name. */
  readonly dims: ReadonlyMap<string, number>;
  /** Tokens per context. */
  readonly contextLength: number;
  /** Contexts per forward pass. */
  readonly forwardBatch: number;
  /** Forward passes kept running ahead of the reader (see {@link ModelSourceOptions.prefetch}). */
  readonly prefetch: number;
  /** Number of documents in the corpus. */
  readonly documents: number;
  /** BOS token at the start of each context (undefined when none is prepended). */
  readonly bos: number | undefined;
  readonly #packer: ContextPacker;
  readonly #dropBos: boolean;
  readonly #bosId: number | undefined;
  readonly #outlier: number | undefined;
  readonly #start: ModelSourcePosition;
  #position: ModelSourcePosition;
  readonly #stats: ModelSourceStats = { forwardPasses: 0, tokens: 0, forwardSeconds: 0, waitSeconds: 0 };

  private constructor(
    model: LanguageModel,
    tokenizer: TextTokenizer,
    hooks: ResolvedHook[],
    dims: Map<string, number>,
    packer: ContextPacker,
    documents: number,
    o: {
      contextLength: number;
      forwardBatch: number;
      prefetch: number;
      bos: number | undefined;
      dropBos: boolean;
      outlier: number | undefined;
      start: ModelSourcePosition;
    },
  ) {
    this.model = model;
    this.tokenizer = tokenizer;
    this.hooks = hooks;
    this.dims = dims;
    this.#packer = packer;
    this.documents = documents;
    this.contextLength = o.contextLength;
    this.forwardBatch = o.forwardBatch;
    this.prefetch = o.prefetch;
    this.bos = o.bos;
    this.#bosId = tokenizer.bos;
    this.#dropBos = o.dropBos;
    this.#outlier = o.outlier;
    this.#start = o.start;
    this.#position = o.start;
  }

  /**
   * Loads the model, tokenizer and text, resolves the hooks and runs a two-token probe to learn each
   * hook's width and check the model's vocabulary. Errors are `DictlearnError`s naming the file or
   * option at fault.
   */
  static async open(options: ModelSourceOptions): Promise<ModelSource> {
    const where = 'ModelSource';
    if (!options || typeof options !== 'object')
      throw new DictlearnError(where, 'expected an options object');
    const hookNames = typeof options.hooks === 'string' ? [options.hooks] : [...(options.hooks ?? [])];
    if (hookNames.length === 0)
      throw new DictlearnError(where, "option 'hooks' must name at least one hook, e.g. 'gpt_neox.layers.3'");
    if (new Set(hookNames).size !== hookNames.length)
      throw new DictlearnError(where, `option 'hooks' names a hook twice: ${hookNames.join(', ')}`);
    const contextLength = positiveInt('contextLength', options.contextLength ?? 128, where);
    if (contextLength < 2)
      throw new DictlearnError(where, `option 'contextLength' must be at least 2, got ${contextLength}`);
    const forwardBatch = positiveInt('forwardBatch', options.forwardBatch ?? 512, where);
    const prefetch = options.prefetch ?? 1;
    if (!Number.isSafeInteger(prefetch) || prefetch < 0)
      throw new DictlearnError(
        where,
        `option 'prefetch' must be a non-negative integer (forward passes run ahead; 0 for none), got ${JSON.stringify(options.prefetch)}`,
      );
    if (options.intraOpThreads !== undefined) positiveInt('intraOpThreads', options.intraOpThreads, where);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0)
      throw new DictlearnError(where, `option 'seed' must be a non-negative integer, got ${seed}`);
    const epochs = options.epochs ?? 1;
    if (!(epochs === Number.POSITIVE_INFINITY || (Number.isSafeInteger(epochs) && epochs >= 1))) {
      throw new DictlearnError(
        where,
        `option 'epochs' must be a positive integer or Infinity, got ${epochs}`,
      );
    }
    const outlier = options.outlierMultiple;
    if (outlier !== undefined && !(typeof outlier === 'number' && outlier > 0 && Number.isFinite(outlier))) {
      throw new DictlearnError(
        where,
        `option 'outlierMultiple' must be a positive number (dictionary_learning suggests 10), got ${outlier}`,
      );
    }

    const model =
      options.model instanceof LanguageModel
        ? options.model
        : typeof options.model === 'string'
          ? await LanguageModel.load(options.model, {
              runtime: options.runtime ?? (prefetch > 0 && isNode() ? workerRuntime() : undefined),
              sessionOptions: {
                ...(options.intraOpThreads !== undefined || prefetch > 0
                  ? { intraOpNumThreads: options.intraOpThreads ?? 1 }
                  : {}),
                ...options.sessionOptions,
              },
            })
          : (() => {
              throw new DictlearnError(
                where,
                "option 'model' must be the path of an .onnx file or a LanguageModel",
              );
            })();
    const tokenizer =
      options.tokenizer && typeof options.tokenizer === 'object'
        ? options.tokenizer
        : await loadTokenizer(options.tokenizer ?? `${dirOf(model.file)}/tokenizer.json`);
    const hooks = hookNames.map((h) => model.resolve(h));

    const prependBos = options.prependBos ?? tokenizer.bos !== undefined;
    if (prependBos && tokenizer.bos === undefined) {
      throw new DictlearnError(
        tokenizer.file,
        "option 'prependBos' is set but the tokenizer names no BOS token (bos_token in tokenizer_config.json or bos_token_id in config.json)",
      );
    }
    // Probe: two tokens through the session the activations will use, to learn the hooks' widths.
    // The vocabulary comes from the graph when it says it, else from a logits run whose session is
    // freed at once (a second copy of a large model should not stay in memory).
    const probeTokens = Int32Array.of(tokenizer.bos ?? 0, tokenizer.bos ?? 0);
    const probe = await model.forward(probeTokens, 1, 2, hooks);
    let vocab = model.vocabSize;
    if (vocab === undefined) {
      vocab = ((await model.forward(probeTokens, 1, 2, [], { logits: true })).logits?.length ?? 0) / 2;
      await model.releaseSession([], { logits: true });
    }
    if (tokenizer.vocabSize > vocab) {
      throw new DictlearnError(
        tokenizer.file,
        `the tokenizer has ${tokenizer.vocabSize} tokens but ${model.file} predicts ${vocab} (its logits width); expected the tokenizer saved with this model`,
      );
    }
    const dims = new Map<string, number>();
    for (const h of hooks) dims.set(h.hook, (probe.hooks.get(h.hook) as { dim: number }).dim);

    const files = await readDocuments(options.text, options);
    const docs = files.flatMap((f) => f.documents);
    const packer = new ContextPacker(docs, (text) => tokenizer.encode(text), {
      contextLength,
      bos: prependBos ? tokenizer.bos : undefined,
      separator: tokenizer.bos ?? tokenizer.eos,
      epochs,
      shuffle: options.shuffle ?? false,
      seed,
    });
    const start = options.start ?? START_POSITION;
    packer.check(start, `${where} option 'start'`);
    return new ModelSource(model, tokenizer, hooks, dims, packer, docs.length, {
      contextLength,
      forwardBatch,
      prefetch,
      bos: prependBos ? tokenizer.bos : undefined,
      dropBos: options.dropBos ?? false,
      outlier,
      start,
    });
  }

  /** A short description for logs. */
  get name(): string {
    return `model(${this.model.file}, ${this.hooks.map((h) => h.hook).join(', ')}, ctx=${this.contextLength})`;
  }

  /** Width of the first hook's rows (the source's rows when it has one hook). */
  get dim(): number {
    return this.dims.get(this.hooks[0].hook) as number;
  }

  /** Position after the last batch {@link batches} yielded (the `start` option before any). */
  get position(): ModelSourcePosition {
    return this.#position;
  }

  /** Packed contexts from `start` (default the source's start), `count` at a time, without running the model. */
  async *contexts(
    options: { start?: ModelSourcePosition; count?: number } = {},
  ): AsyncGenerator<PackedContext> {
    let pos = options.start ?? this.#start;
    this.#packer.check(pos, 'ModelSource.contexts');
    for (;;) {
      const got = this.#packer.take(pos, options.count ?? this.forwardBatch);
      if (got.length === 0) return;
      for (const c of got) yield c;
      pos = got[got.length - 1].end;
    }
  }

  /** The rows a hook keeps from one context's values ([contextLength, d]). */
  #keep(values: Float32Array, d: number, tokens: Int32Array): { rows: Float32Array; count: number } {
    const L = tokens.length;
    const keep = new Uint8Array(L).fill(1);
    if (this.#dropBos) {
      if (this.#bosId !== undefined) for (let t = 0; t < L; t++) keep[t] = tokens[t] === this.#bosId ? 0 : 1;
      else keep[0] = 0;
    }
    const k = this.#outlier;
    if (k !== undefined) {
      const norms = new Float64Array(L);
      for (let t = 0; t < L; t++) {
        let s = 0;
        for (let j = t * d; j < (t + 1) * d; j++) s += values[j] * values[j];
        norms[t] = Math.sqrt(s);
      }
      const limit = k * lowerMedian(norms);
      for (let t = 0; t < L; t++) if (norms[t] > limit) keep[t] = 0;
    }
    let count = 0;
    for (let t = 0; t < L; t++) count += keep[t];
    if (count === L) return { rows: values, count };
    const rows = new Float32Array(count * d);
    for (let t = 0, r = 0; t < L; t++) {
      if (keep[t]) rows.set(values.subarray(t * d, (t + 1) * d), r++ * d);
    }
    return { rows, count };
  }

  /**
   * One chunk per forward pass of up to `forwardBatch` contexts from `start` (its `row` is ignored),
   * with the kept rows of every hook: the form to feed several dictionaries from one pass.
   */
  async *chunks(options: { start?: ModelSourcePosition } = {}): AsyncGenerator<ModelChunk> {
    const pos = options.start ?? this.#start;
    this.#packer.check(pos, 'ModelSource.chunks');
    // Passes started and not yet yielded, oldest first: the one the reader waits for and up to
    // `prefetch` behind it. Which contexts each pass runs is fixed by the packer, not by timing.
    const ahead: Promise<ModelChunk>[] = [];
    let next = pos;
    let ended = false;
    try {
      for (;;) {
        while (!ended && ahead.length <= this.prefetch) {
          const contexts = this.#packer.take(next, this.forwardBatch);
          if (contexts.length === 0) {
            ended = true;
            break;
          }
          next = contexts[contexts.length - 1].end;
          const pass = this.#pass(contexts);
          // Its error reaches the reader when the reader gets to it; never an unhandled rejection before.
          pass.catch(() => {});
          ahead.push(pass);
        }
        const pass = ahead.shift();
        if (!pass) return;
        const t0 = performance.now();
        const chunk = await pass;
        this.#stats.waitSeconds += (performance.now() - t0) / 1000;
        yield chunk;
      }
    } finally {
      // A reader that stops (end of training, Ctrl-C, an error) waits for the passes still running:
      // none is left to use a session that is released next, or to keep the process alive.
      await Promise.allSettled(ahead);
    }
  }

  /** One forward pass over `contexts`, with each hook's kept rows. */
  async #pass(contexts: readonly PackedContext[]): Promise<ModelChunk> {
    const L = this.contextLength;
    const n = contexts.length;
    const tokens = new Int32Array(n * L);
    contexts.forEach((c, i) => {
      tokens.set(c.tokens, i * L);
    });
    const t0 = performance.now();
    const out = await this.model.forward(tokens, n, L, this.hooks);
    // In a worker thread the pass is timed there: the time until this thread sees the result
    // also holds the SAE steps it ran meanwhile.
    const first = out.hooks.get(this.hooks[0].hook) as HookValue;
    this.#stats.forwardSeconds += workerRunSeconds(first.data) ?? (performance.now() - t0) / 1000;
    this.#stats.forwardPasses++;
    this.#stats.tokens += n * L;
    const rows = new Map<string, HookRows>();
    for (const h of this.hooks) {
      const { data, dim } = out.hooks.get(h.hook) as HookValue;
      const counts = new Int32Array(n);
      const parts: Float32Array[] = [];
      let total = 0;
      for (let i = 0; i < n; i++) {
        const kept = this.#keep(data.subarray(i * L * dim, (i + 1) * L * dim), dim, contexts[i].tokens);
        counts[i] = kept.count;
        parts.push(kept.rows);
        total += kept.count;
      }
      const all = parts.length === 1 && total === n * L ? parts[0] : new Float32Array(total * dim);
      if (all !== parts[0]) {
        let at = 0;
        for (const p of parts) {
          all.set(p, at);
          at += p.length;
        }
      }
      rows.set(h.hook, { data: all, dim, counts });
    }
    return { contexts, rows };
  }

  /**
   * Batches [batchSize, dim] of the (single) hook's rows, from `start` (default the `start` option);
   * the last one may be smaller. {@link position} follows the batches yielded. With several hooks use
   * {@link split} or {@link chunks}.
   */
  batches(options: ModelBatchOptions): AsyncIterable<Tensor> {
    if (this.hooks.length !== 1) {
      throw new DictlearnError(
        'ModelSource.batches',
        `the source reads ${this.hooks.length} hooks; use split() for one ActivationSource per hook, or chunks() for all of them per forward pass`,
      );
    }
    const start = options.start ?? this.#start;
    this.#packer.check(start, 'ModelSource.batches');
    return rowBatches(
      this.hooks[0].hook,
      this.dims.get(this.hooks[0].hook) as number,
      start,
      options,
      this.chunks({ start }),
      (p) => {
        this.#position = p;
      },
    );
  }

  /**
   * One `ActivationSource` per hook, sharing the forward passes: each pass's rows wait in memory
   * until every hook source has taken them, so iterate the sources side by side (a trainer per hook
   * stepping in turn). `start` gives each hook's saved position (default the `start` option); the
   * shared passes begin at the earliest.
   */
  split(options: { start?: Readonly<Record<string, ModelSourcePosition>> } = {}): HookSource[] {
    const starts = this.hooks.map((h) => options.start?.[h.hook] ?? this.#start);
    starts.forEach((s, i) => {
      this.#packer.check(s, `ModelSource.split start of '${this.hooks[i].hook}'`);
    });
    const first = starts.reduce((a, b) => (b.contexts < a.contexts ? b : a));
    const shared = new SharedChunks(this.chunks({ start: first }), this.hooks.length);
    return this.hooks.map((h, i) => {
      const dim = this.dims.get(h.hook) as number;
      let position = starts[i];
      let started = false;
      const source: HookSource = {
        hook: h,
        dim,
        name: `model(${this.model.file}, ${h.hook}, ctx=${this.contextLength})`,
        get position() {
          return position;
        },
        batches: (batchOptions: BatchOptions) => {
          if (started)
            throw new DictlearnError(
              'ModelSource.split',
              `the source of '${h.hook}' is already being read; split() again for a new pass`,
            );
          started = true;
          return rowBatches(
            h.hook,
            dim,
            starts[i],
            batchOptions,
            shared.reader(i, starts[i].contexts),
            (p) => {
              position = p;
            },
          );
        },
      };
      return source;
    });
  }

  /**
   * Work done by the model so far: forward passes, tokens run through it (every position of every
   * context, kept or not) and the seconds spent in them, for a tokens/s figure beside the trainer's.
   */
  get stats(): ModelSourceStats {
    return { ...this.#stats };
  }

  /** Frees the model's onnxruntime sessions. */
  release(): Promise<void> {
    return this.model.release();
  }
}

/** Chunks read by several consumers at their own pace; a chunk is dropped once all have passed it. */
class SharedChunks {
  readonly #it: AsyncIterator<ModelChunk>;
  readonly #buffer: ModelChunk[] = [];
  #base = 0;
  #done = false;
  readonly #cursor: number[];
  #pending: Promise<void> | undefined;

  constructor(chunks: AsyncIterable<ModelChunk>, consumers: number) {
    this.#it = chunks[Symbol.asyncIterator]();
    this.#cursor = new Array(consumers).fill(0);
  }

  async #fill(index: number): Promise<void> {
    while (!this.#done && this.#base + this.#buffer.length <= index) {
      this.#pending ??= this.#it.next().then((r) => {
        if (r.done) this.#done = true;
        else this.#buffer.push(r.value);
        this.#pending = undefined;
      });
      await this.#pending;
    }
  }

  /** Consumer `c`'s chunks, skipping contexts before `fromContext`. */
  async *reader(c: number, fromContext: number): AsyncGenerator<ModelChunk> {
    try {
      for (let i = 0; ; i++) {
        await this.#fill(i);
        if (i >= this.#base + this.#buffer.length) return;
        const chunk = this.#buffer[i - this.#base];
        this.#advance(c, i + 1);
        const last = chunk.contexts[chunk.contexts.length - 1];
        if (last.end.contexts <= fromContext) continue;
        yield chunk;
      }
    } finally {
      // A consumer that stops holds nothing back from the others; when the last one stops, the
      // chunk stream is closed, which waits for a forward pass still running ahead.
      this.#advance(c, Number.POSITIVE_INFINITY);
      if (this.#cursor.every((x) => x === Number.POSITIVE_INFINITY)) {
        this.#buffer.length = 0;
        await this.#it.return?.(undefined);
      }
    }
  }

  #advance(c: number, cursor: number): void {
    this.#cursor[c] = cursor;
    const min = Math.min(...this.#cursor);
    while (this.#base < min && this.#buffer.length > 0) {
      this.#buffer.shift();
      this.#base++;
    }
  }
}

/**
 * Batches of one hook's rows from a stream of chunks, starting at `start` (contexts before it are
 * skipped, and `start.row` rows of its context); `track` receives the position after each batch.
 */
async function* rowBatches(
  hook: string,
  dim: number,
  start: ModelSourcePosition,
  options: BatchOptions,
  chunks: AsyncIterable<ModelChunk>,
  track: (p: ModelSourcePosition) => void,
): AsyncGenerator<Tensor> {
  const batchSize = positiveInt('batchSize', options.batchSize, 'ModelSource.batches');
  track(start);
  let out = new Float32Array(batchSize * dim);
  let filled = 0;
  let position = start;
  for await (const chunk of chunks) {
    const rows = chunk.rows.get(hook) as HookRows;
    let offset = 0;
    for (let i = 0; i < chunk.contexts.length; i++) {
      const ctx = chunk.contexts[i];
      const count = rows.counts[i];
      const ctxRows = rows.data.subarray(offset * dim, (offset + count) * dim);
      offset += count;
      if (ctx.start.contexts < start.contexts) continue;
      let r = ctx.start.contexts === start.contexts ? Math.min(start.row, count) : 0;
      while (r < count) {
        const take = Math.min(count - r, batchSize - filled);
        out.set(ctxRows.subarray(r * dim, (r + take) * dim), filled * dim);
        filled += take;
        r += take;
        position = r < count ? { ...ctx.start, row: r } : ctx.end;
        if (filled === batchSize) {
          const t = tensor(out, [batchSize, dim], { backend: options.backend });
          out = new Float32Array(batchSize * dim);
          filled = 0;
          track(position);
          yield t;
        }
      }
      if (r >= count) position = ctx.end;
    }
  }
  if (filled > 0) {
    track(position);
    yield tensor(out.slice(0, filled * dim), [filled, dim], { backend: options.backend });
  } else track(position);
}
