/**
 * What a dictionary's features respond to on text: top-activating contexts with per-token values,
 * firing statistics, the vocabulary tokens nearest to each decoder direction beside a random
 * direction's, and the same view of the raw activation dimensions (neurons). Also
 * {@link encodeText}: the top features of every token of a prompt.
 *
 * @module
 */
import {
  type DictionaryLike,
  DictlearnError,
  philoxUnitRows,
  seedFor,
  type Tensor,
  tensor,
} from '@dictlearn/core';
import { nearestTokens, rowNorms, type TokenEmbeddings, tokenEmbeddings } from './embeddings.js';
import type { LanguageModel } from './model.js';
import type { PackedContext } from './packing.js';
import type { ModelSource } from './source.js';
import type { TextTokenizer } from './tokenizer.js';

/** Options of {@link analyzeFeatures}. */
export interface FeatureAnalysisOptions {
  /** The dictionary (its width must be the hook's). */
  dictionary: DictionaryLike;
  /** A model source with one hook: its text, contexts and start position are the ones analysed. */
  source: ModelSource;
  /** How many features (and neurons) to show, chosen by {@link SELECTION_RULE} (default 16). */
  features?: number;
  /** Show these features instead of choosing them. */
  featureIds?: readonly number[];
  /** Top-activating contexts kept per feature (default 8). */
  contexts?: number;
  /** Tokens shown before the top token of a context (default 12). */
  before?: number;
  /** Tokens shown after it (default 4). */
  after?: number;
  /**
   * Contexts to run at most (default: every context the source gives: one pass over its text, or
   * as many as its `epochs` option asks; set this for a source that repeats for ever).
   */
  maxContexts?: number;
  /** Tokens in each nearest-token list (default 10; 0: no lists). */
  nearest?: number;
  /** Seed of the random baseline directions (Philox, `'baseline'` key domain; default 0). */
  seed?: number;
  /** Also analyse the raw activation dimensions (default true). */
  neurons?: boolean;
  /**
   * Leave positions holding the BOS token out of every statistic and top-context choice (default
   * true: the BOS position's activations are typically huge and say nothing about the text).
   */
  skipBos?: boolean;
  /** Called after every forward pass with the contexts done so far. */
  onProgress?: (contexts: number) => void;
}

/** Rows encoded at once by {@link analyzeFeatures} (at most; whole contexts). */
const ENCODE_ROWS = 2048;

/** How {@link analyzeFeatures} picks the features (and neurons) it shows, in words. */
export const SELECTION_RULE =
  'the units with the largest total activation over the analysed tokens (the sum of their positive values = tokens x firing frequency x mean activation when firing; ties: lower index), among those that fire at least once';

/** One top-activating context of a unit. */
export interface ContextExample {
  /** The unit's largest value in the context (over the positions analysed). */
  readonly value: number;
  /** Index of the context in the run (0 = the first context from the source's start). */
  readonly context: number;
  /** Position of the top token in the context. */
  readonly position: number;
  /** Position of the first token shown. */
  readonly offset: number;
  /** Token ids shown (a window around the top token). */
  readonly ids: readonly number[];
  /** Their text, decoded one token at a time. */
  readonly tokens: readonly string[];
  /** The unit's value at each token shown. */
  readonly values: readonly number[];
}

/** A vocabulary token near a direction. */
export interface NearestToken {
  /** Token id. */
  readonly id: number;
  /** Its text. */
  readonly token: string;
  /** Cosine similarity of its embedding (or unembedding) row with the direction. */
  readonly cosine: number;
}

/** Nearest-token lists of one direction. */
export interface NearestLists {
  /** By the input embedding. */
  readonly embedding: readonly NearestToken[];
  /** By the unembedding; absent when the model ties it to the embedding. */
  readonly unembedding?: readonly NearestToken[];
}

/** What the analysis found for one feature or neuron. */
export interface UnitSummary {
  /** Feature (or activation dimension) index. */
  readonly index: number;
  /** Tokens on which it is positive. */
  readonly firings: number;
  /** firings / tokens analysed. */
  readonly frequency: number;
  /** Mean of its value over the tokens where it fires. */
  readonly meanActivation: number;
  /** Its largest value. */
  readonly maxActivation: number;
  /** Sum of its positive values (the selection key). */
  readonly totalActivation: number;
  /** Top-activating contexts, highest first. */
  readonly examples: readonly ContextExample[];
  /** Tokens nearest to its direction (decoder row; basis vector for a neuron), when available. */
  readonly nearest?: NearestLists;
  /** Tokens nearest to a random direction drawn for this card: the chance baseline. */
  readonly random?: NearestLists;
}

/** Mean cosine of the nearest-token lists, over the units shown. */
export interface NearestSummary {
  /** Over the features' decoder directions. */
  readonly features: number;
  /** Over the neurons' basis directions (NaN without the neurons view). */
  readonly neurons: number;
  /** Over the random directions beside the features. */
  readonly random: number;
}

/** The result of {@link analyzeFeatures}: plain JSON. */
export interface FeatureReport {
  /** The model file. */
  readonly model: string;
  /** The hook. */
  readonly hook: string;
  /** Tokens per context. */
  readonly contextLength: number;
  /** Contexts run. */
  readonly contexts: number;
  /** Tokens analysed (BOS positions left out when skipped). */
  readonly tokens: number;
  /** The dictionary's sizes. */
  readonly dictionary: {
    /** Width d. */
    readonly activationDim: number;
    /** Features F. */
    readonly dictSize: number;
  };
  /** How the units shown were chosen ({@link SELECTION_RULE}, or the ids given). */
  readonly selection: string;
  /** Seed of the random baseline directions. */
  readonly seed: number;
  /** Whether BOS positions were left out. */
  readonly skipBos: boolean;
  /** The BOS token id when its positions were left out (they still show in context windows). */
  readonly bos?: number;
  /** The weights the nearest-token lists come from. */
  readonly embeddings?: {
    /** Initializer of the token embedding. */
    readonly embedding: string;
    /** Initializer of the unembedding (the embedding's when tied). */
    readonly unembedding: string;
    /** Whether the model ties them. */
    readonly tied: boolean;
  };
  /** Why there are no nearest-token lists, when there are none. */
  readonly nearestNote?: string;
  /** Mean cosine of the lists. */
  readonly nearestSummary?: {
    /** Of the lists by the embedding. */
    readonly embedding: NearestSummary;
    /** Of the lists by the unembedding, when it is separate. */
    readonly unembedding?: NearestSummary;
  };
  /** Features shown, in selection order. */
  readonly features: readonly UnitSummary[];
  /** Neurons shown (empty without the neurons view). */
  readonly neurons: readonly UnitSummary[];
}

function count(name: string, v: unknown, min: number, where: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < min) {
    throw new DictlearnError(where, `option '${name}' must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return v as number;
}

interface Entry {
  value: number;
  context: number;
  position: number;
  offset: number;
  ids: Int32Array;
  values: Float32Array;
}

/**
 * Firing statistics of every unit of a [positions, width] value matrix, and a bounded min-heap of
 * top contexts (one entry per context: its largest value) for the tracked units.
 */
class UnitCollector {
  readonly width: number;
  readonly firings: Float64Array;
  readonly sum: Float64Array;
  readonly max: Float32Array;
  tokens = 0;
  readonly #slot: Int32Array;
  readonly #heaps: Entry[][];
  readonly #k: number;
  readonly #before: number;
  readonly #after: number;
  readonly #ctxMax: Float32Array;
  readonly #ctxArg: Int32Array;

  constructor(width: number, tracked: readonly number[], k: number, before: number, after: number) {
    this.width = width;
    this.firings = new Float64Array(width);
    this.sum = new Float64Array(width);
    this.max = new Float32Array(width);
    this.#slot = new Int32Array(width).fill(-1);
    tracked.forEach((u, i) => {
      this.#slot[u] = i;
    });
    this.#heaps = tracked.map(() => []);
    this.#k = k;
    this.#before = before;
    this.#after = after;
    this.#ctxMax = new Float32Array(width);
    this.#ctxArg = new Int32Array(width);
  }

  /** Adds one context's values ([L, width], row-major); `skip[t]` leaves position t out. */
  add(values: Float32Array, tokens: Int32Array, skip: Uint8Array, context: number): void {
    const w = this.width;
    const L = tokens.length;
    const cmax = this.#ctxMax.fill(0);
    const carg = this.#ctxArg.fill(-1);
    const { firings, sum, max } = this;
    for (let t = 0; t < L; t++) {
      if (skip[t]) continue;
      this.tokens++;
      const row = t * w;
      for (let j = 0; j < w; j++) {
        const v = values[row + j];
        if (v > 0) {
          firings[j]++;
          sum[j] += v;
          if (v > max[j]) max[j] = v;
          if (v > cmax[j]) {
            cmax[j] = v;
            carg[j] = t;
          }
        }
      }
    }
    if (this.#k === 0) return;
    for (let j = 0; j < w; j++) {
      const s = this.#slot[j];
      if (s < 0 || carg[j] < 0) continue;
      const heap = this.#heaps[s];
      const v = cmax[j];
      // Full heap: a context must beat the weakest kept one (ties keep the earlier context).
      if (heap.length === this.#k && !(v > heap[0].value)) continue;
      const t = carg[j];
      const lo = Math.max(0, t - this.#before);
      const hi = Math.min(L, t + this.#after + 1);
      const shown = new Float32Array(hi - lo);
      for (let p = lo; p < hi; p++) shown[p - lo] = values[p * w + j];
      const e: Entry = {
        value: v,
        context,
        position: t,
        offset: lo,
        ids: tokens.slice(lo, hi),
        values: shown,
      };
      if (heap.length < this.#k) {
        heap.push(e);
        siftUp(heap, heap.length - 1);
      } else {
        heap[0] = e;
        siftDown(heap, 0);
      }
    }
  }

  /** The kept contexts of unit `u`, highest value first (ties: earlier context). */
  examples(u: number): Entry[] {
    const s = this.#slot[u];
    if (s < 0) return [];
    return [...this.#heaps[s]].sort((a, b) => b.value - a.value || a.context - b.context);
  }

  /** Units ranked by {@link SELECTION_RULE}. */
  ranked(n: number): number[] {
    const units: number[] = [];
    for (let j = 0; j < this.width; j++) if (this.firings[j] > 0) units.push(j);
    units.sort((a, b) => this.sum[b] - this.sum[a] || a - b);
    return units.slice(0, n);
  }
}

/** Min-heap order: the smaller value on top; for equal values the later context (so it leaves first). */
function below(a: Entry, b: Entry): boolean {
  return a.value < b.value || (a.value === b.value && a.context > b.context);
}

function siftUp(h: Entry[], i: number): void {
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!below(h[i], h[p])) return;
    [h[i], h[p]] = [h[p], h[i]];
    i = p;
  }
}

function siftDown(h: Entry[], i: number): void {
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < h.length && below(h[l], h[m])) m = l;
    if (r < h.length && below(h[r], h[m])) m = r;
    if (m === i) return;
    [h[i], h[m]] = [h[m], h[i]];
    i = m;
  }
}

/** Per-token text, decoded one id at a time and cached. */
function tokenTexts(tokenizer: TextTokenizer): (id: number) => string {
  const cache = new Map<number, string>();
  return (id) => {
    let s = cache.get(id);
    if (s === undefined) {
      s = tokenizer.decode([id]);
      cache.set(id, s);
    }
    return s;
  };
}

/** The values of the dictionary's features for rows x ([n, d] float32), as [n, F] host values. */
async function encodeRows(
  dictionary: DictionaryLike,
  x: Float32Array,
  n: number,
  backend: string,
): Promise<Float32Array> {
  let input: Tensor | undefined;
  let f: Tensor | undefined;
  try {
    input = tensor(x, [n, dictionary.activationDim], { backend });
    f = dictionary.encode(input);
    return (await f.data()) as Float32Array;
  } finally {
    input?.dispose();
    f?.dispose();
  }
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * Runs the source's contexts through the model, encodes the hook's activations with the dictionary
 * and reports, for the features chosen by {@link SELECTION_RULE} (or the ids given): firing
 * frequency, mean activation when firing, the top-activating contexts (one per context, a window of
 * tokens around its top token with the feature's value at each), and the vocabulary tokens whose
 * embedding and unembedding rows are most cosine-similar to the decoder direction beside those of
 * a random direction (seeded, `'baseline'` key domain). With `neurons` (default) the same for the
 * raw activation dimensions, so the dictionary can be compared with the model's own basis.
 * Nearest-token lists only mean something for directions in the residual stream's space; for
 * another hook of the same width they are computed all the same.
 */
export async function analyzeFeatures(options: FeatureAnalysisOptions): Promise<FeatureReport> {
  const where = 'analyzeFeatures';
  const { dictionary, source } = options;
  if (source.hooks.length !== 1) {
    throw new DictlearnError(
      where,
      `the source reads ${source.hooks.length} hooks; open one with a single hook`,
    );
  }
  const hook = source.hooks[0];
  const d = source.dim;
  if (dictionary.activationDim !== d) {
    throw new DictlearnError(
      where,
      `the dictionary has width ${dictionary.activationDim} but hook '${hook.hook}' of ${source.model.file} gives rows of width ${d}`,
    );
  }
  const shown = count('features', options.features ?? 16, 1, where);
  const ids = options.featureIds ? [...options.featureIds] : undefined;
  for (const id of ids ?? []) {
    if (!Number.isSafeInteger(id) || id < 0 || id >= dictionary.dictSize) {
      throw new DictlearnError(
        where,
        `feature id ${id} is out of range: the dictionary has features 0 … ${dictionary.dictSize - 1}`,
      );
    }
  }
  const k = count('contexts', options.contexts ?? 8, 0, where);
  const before = count('before', options.before ?? 12, 0, where);
  const after = count('after', options.after ?? 4, 0, where);
  const nearestK = count('nearest', options.nearest ?? 10, 0, where);
  const seed = count('seed', options.seed ?? 0, 0, where);
  const maxContexts = options.maxContexts ?? Number.POSITIVE_INFINITY;
  if (
    !(maxContexts === Number.POSITIVE_INFINITY || (Number.isSafeInteger(maxContexts) && maxContexts >= 1))
  ) {
    throw new DictlearnError(where, `option 'maxContexts' must be a positive integer, got ${maxContexts}`);
  }
  const skipBos = options.skipBos ?? true;
  const withNeurons = options.neurons ?? true;
  const F = dictionary.dictSize;

  const dec = dictionary.decoderRows();
  const backend = dec.backend;
  let decoder: Float32Array;
  try {
    decoder = (await dec.data()) as Float32Array;
  } finally {
    dec.dispose();
  }

  const features = new UnitCollector(F, ids ?? Array.from({ length: F }, (_, i) => i), k, before, after);
  const neurons = withNeurons
    ? new UnitCollector(
        d,
        Array.from({ length: d }, (_, i) => i),
        k,
        before,
        after,
      )
    : undefined;
  const L = source.contextLength;
  const bos = source.tokenizer.bos;
  let done = 0;
  const run = async (group: PackedContext[]) => {
    const n = group.length;
    const tokens = new Int32Array(n * L);
    group.forEach((c, i) => {
      tokens.set(c.tokens, i * L);
    });
    const out = await source.model.forward(tokens, n, L, [hook]);
    const x = (out.hooks.get(hook.hook) as { data: Float32Array }).data;
    // Encode a few contexts at a time: the features of a pass, [n·L, F] floats, can be large.
    const per = Math.max(1, Math.floor(ENCODE_ROWS / L));
    for (let a = 0; a < n; a += per) {
      const b = Math.min(n, a + per);
      const f = await encodeRows(dictionary, x.subarray(a * L * d, b * L * d), (b - a) * L, backend);
      for (let i = a; i < b; i++) {
        const ctx = group[i].tokens;
        const skip = new Uint8Array(L);
        if (skipBos && bos !== undefined) for (let t = 0; t < L; t++) skip[t] = ctx[t] === bos ? 1 : 0;
        features.add(f.subarray((i - a) * L * F, (i - a + 1) * L * F), ctx, skip, done + i);
        neurons?.add(x.subarray(i * L * d, (i + 1) * L * d), ctx, skip, done + i);
      }
    }
    done += n;
    options.onProgress?.(done);
  };
  let group: PackedContext[] = [];
  for await (const c of source.contexts()) {
    if (done + group.length >= maxContexts) break;
    group.push(c);
    if (group.length === source.forwardBatch) {
      await run(group);
      group = [];
    }
  }
  if (group.length > 0) await run(group);
  if (done === 0) {
    throw new DictlearnError(
      where,
      `the text gives no context of ${L} tokens; use more text or a shorter context length`,
    );
  }

  // Nearest tokens: the embedding matrices, when they can be read and have the hook's width.
  let emb: TokenEmbeddings | undefined;
  let nearestNote: string | undefined;
  if (nearestK > 0) {
    try {
      emb = tokenEmbeddings(source.model.graph, {
        logits: source.model.logitsName,
        vocab: source.model.vocabSize,
      });
      if (emb.embedding.dim !== d) {
        nearestNote = `hook '${hook.hook}' has width ${d} but the token embedding '${emb.embedding.name}' has width ${emb.embedding.dim}: nearest tokens need directions in the residual stream's space`;
        emb = undefined;
      }
    } catch (e) {
      if (!(e instanceof DictlearnError)) throw e;
      nearestNote = e.message;
    }
  } else nearestNote = 'nearest-token lists were not asked for (nearest: 0)';
  const text = tokenTexts(source.tokenizer);
  const limit = source.tokenizer.vocabSize;
  const embNorms = emb ? rowNorms(emb.embedding) : undefined;
  const unNorms = emb && !emb.tied ? rowNorms(emb.unembedding) : undefined;
  const lists = (direction: Float32Array): NearestLists | undefined => {
    if (!emb) return undefined;
    const named = (scores: { id: number; cosine: number }[]) =>
      scores.map((s) => ({ id: s.id, token: text(s.id), cosine: s.cosine }));
    const embedding = named(nearestTokens(emb.embedding, direction, nearestK, { limit, norms: embNorms }));
    if (emb.tied) return { embedding };
    const unembedding = named(nearestTokens(emb.unembedding, direction, nearestK, { limit, norms: unNorms }));
    return { embedding, unembedding };
  };

  const summarize = (
    c: UnitCollector,
    units: readonly number[],
    direction: (u: number) => Float32Array,
    randomStream: number | undefined,
  ): UnitSummary[] => {
    const random =
      emb && randomStream !== undefined
        ? philoxUnitRows(units.length, d, seedFor('baseline', seed), randomStream)
        : undefined;
    return units.map((u, i) => ({
      index: u,
      firings: c.firings[u],
      frequency: c.tokens > 0 ? c.firings[u] / c.tokens : 0,
      meanActivation: c.firings[u] > 0 ? c.sum[u] / c.firings[u] : 0,
      maxActivation: c.max[u],
      totalActivation: c.sum[u],
      examples: c.examples(u).map((e) => ({
        value: e.value,
        context: e.context,
        position: e.position,
        offset: e.offset,
        ids: Array.from(e.ids),
        tokens: Array.from(e.ids, text),
        values: Array.from(e.values),
      })),
      ...(emb ? { nearest: lists(direction(u)) } : {}),
      ...(random ? { random: lists(random.subarray(i * d, (i + 1) * d)) } : {}),
    }));
  };

  const featureUnits = ids ?? features.ranked(shown);
  const featureCards = summarize(features, featureUnits, (u) => decoder.subarray(u * d, (u + 1) * d), 0);
  const neuronCards = neurons
    ? summarize(
        neurons,
        neurons.ranked(ids ? ids.length : shown),
        (u) => {
          const e = new Float32Array(d);
          e[u] = 1;
          return e;
        },
        undefined,
      )
    : [];

  const meanCos = (
    cards: readonly UnitSummary[],
    pick: (c: UnitSummary) => readonly NearestToken[] | undefined,
  ) => mean(cards.map((c) => mean((pick(c) ?? []).map((t) => t.cosine))).filter((v) => !Number.isNaN(v)));
  const summaryBy = (key: 'embedding' | 'unembedding'): NearestSummary => ({
    features: meanCos(featureCards, (c) => c.nearest?.[key]),
    neurons: meanCos(neuronCards, (c) => c.nearest?.[key]),
    random: meanCos(featureCards, (c) => c.random?.[key]),
  });

  return {
    model: source.model.file,
    hook: hook.hook,
    contextLength: L,
    contexts: done,
    tokens: features.tokens,
    dictionary: { activationDim: d, dictSize: F },
    selection: ids ? `the features asked for: ${ids.join(', ')}` : SELECTION_RULE,
    seed,
    skipBos,
    ...(skipBos && bos !== undefined ? { bos } : {}),
    ...(emb
      ? {
          embeddings: { embedding: emb.embedding.name, unembedding: emb.unembedding.name, tied: emb.tied },
          nearestSummary: {
            embedding: summaryBy('embedding'),
            ...(emb.tied ? {} : { unembedding: summaryBy('unembedding') }),
          },
        }
      : { nearestNote }),
    features: featureCards,
    neurons: neuronCards,
  };
}

/** The top features of one token (see {@link encodeText}). */
export interface TokenFeatures {
  /** Position in the encoded sequence (0 = BOS when one is prepended). */
  readonly position: number;
  /** Token id. */
  readonly id: number;
  /** Its text. */
  readonly token: string;
  /** The largest features at this token, highest first (only positive values). */
  readonly top: readonly {
    /** Feature index. */
    readonly feature: number;
    /** Its value at this token. */
    readonly value: number;
  }[];
}

/** Options of {@link encodeText}. */
export interface EncodeTextOptions {
  /** The dictionary. */
  dictionary: DictionaryLike;
  /** The model. */
  model: LanguageModel;
  /** Its tokenizer. */
  tokenizer: TextTokenizer;
  /** The hook the dictionary was trained on. */
  hook: string;
  /** The prompt. */
  text: string;
  /** Features listed per token (default 5). */
  top?: number;
  /** Put BOS first, as the training contexts had it (default: when the tokenizer has one). */
  prependBos?: boolean;
}

/**
 * Runs a prompt through the model (one context: BOS, when the tokenizer has one, then the prompt's
 * tokens) and lists, per token, the dictionary's `top` largest positive features.
 */
export async function encodeText(o: EncodeTextOptions): Promise<TokenFeatures[]> {
  const where = 'encodeText';
  const top = count('top', o.top ?? 5, 1, where);
  if (o.text.length === 0) throw new DictlearnError(where, 'the prompt is empty; expected some text');
  const hook = o.model.resolve(o.hook);
  const prependBos = o.prependBos ?? o.tokenizer.bos !== undefined;
  const ids = [
    ...(prependBos && o.tokenizer.bos !== undefined ? [o.tokenizer.bos] : []),
    ...o.tokenizer.encode(o.text),
  ];
  const n = ids.length;
  const out = await o.model.forward(Int32Array.from(ids), 1, n, [hook]);
  const { data: x, dim } = out.hooks.get(hook.hook) as { data: Float32Array; dim: number };
  if (dim !== o.dictionary.activationDim) {
    throw new DictlearnError(
      where,
      `the dictionary has width ${o.dictionary.activationDim} but hook '${o.hook}' of ${o.model.file} gives rows of width ${dim}`,
    );
  }
  const dec = o.dictionary.decoderRows();
  const backend = dec.backend;
  dec.dispose();
  const f = await encodeRows(o.dictionary, x, n, backend);
  const F = o.dictionary.dictSize;
  const text = tokenTexts(o.tokenizer);
  return ids.map((id, t) => {
    const row = f.subarray(t * F, (t + 1) * F);
    const best: { feature: number; value: number }[] = [];
    for (let j = 0; j < F; j++) {
      const v = row[j];
      if (!(v > 0) || (best.length === top && v <= best[top - 1].value)) continue;
      let at = best.length === top ? top - 1 : best.length;
      if (best.length < top) best.push({ feature: j, value: v });
      while (at > 0 && best[at - 1].value < v) {
        best[at] = best[at - 1];
        at--;
      }
      best[at] = { feature: j, value: v };
    }
    return { position: t, id, token: text(id), top: best };
  });
}
