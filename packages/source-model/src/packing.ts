/**
 * Packing documents into fixed-length contexts (SAELens's `concat_and_batch_sequences` with a BOS at
 * the start of every context and between documents), with a position that can be saved and resumed.
 *
 * @module
 */
import { DictlearnError, philox4x32, philoxKey, seedFor } from '@dictlearn/core';

/**
 * Where a stream of contexts stands: the next context starts `token` tokens into document
 * `document` of epoch `epoch`'s order (the separator after a document counts as its last token),
 * `contexts` contexts came before it, and `row` of its rows were already yielded. Plain JSON: save
 * it with a checkpoint and pass it back as `start` to resume.
 */
export interface ModelSourcePosition {
  /** Pass over the documents (0-based). */
  readonly epoch: number;
  /** Index in that epoch's document order. */
  readonly document: number;
  /** Tokens of that document (and its separator) already used. */
  readonly token: number;
  /** Contexts before this point, over all epochs. */
  readonly contexts: number;
  /** Rows of the next context already yielded (after BOS and outlier filtering). */
  readonly row: number;
}

/** The start of a stream. */
export const START_POSITION: ModelSourcePosition = Object.freeze({
  epoch: 0,
  document: 0,
  token: 0,
  contexts: 0,
  row: 0,
});

/** Options of {@link ContextPacker}. */
export interface PackerOptions {
  /** Tokens per context, BOS included. */
  contextLength: number;
  /** Token put at position 0 of every context; none when undefined. */
  bos: number | undefined;
  /** Token between documents in the stream; none when undefined. */
  separator: number | undefined;
  /** Passes over the documents (`Infinity` repeats them). */
  epochs: number;
  /** Permute the documents every epoch. */
  shuffle: boolean;
  /** Seed of the permutation. */
  seed: number;
}

/** One packed context and the positions before and after it. */
export interface PackedContext {
  /** Token ids, `contextLength` of them. */
  readonly tokens: Int32Array;
  /** The position of this context (row 0). */
  readonly start: ModelSourcePosition;
  /** The position of the next context. */
  readonly end: ModelSourcePosition;
}

/**
 * A uniform permutation of 0 … n−1 for epoch `epoch` (Fisher–Yates, 53-bit uniforms from Philox
 * blocks keyed by the seed in the `'shuffle'` domain, counter (block, epoch, 0, tag)).
 */
export function documentOrder(n: number, seed: number, epoch: number): Uint32Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const key = philoxKey(seedFor('shuffle', seed));
  const block = new Uint32Array(4);
  // Tag 0x646f6373 ('docs') keeps these draws apart from the file sources' shuffles of the same seed.
  const counter = [0, epoch >>> 0, Math.floor(epoch / 2 ** 32) >>> 0, 0x646f6373];
  for (let i = n - 1, b = 0; i > 0; i--, b++) {
    counter[0] = b >>> 0;
    philox4x32(counter, key, block);
    const u = ((block[0] >>> 5) * 67108864 + (block[1] >>> 6)) / 9007199254740992;
    const j = Math.floor(u * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

/**
 * Packs documents into contexts: each context is BOS (when the tokenizer has one) followed by the
 * next `contextLength − 1` tokens of the stream doc₀ SEP doc₁ SEP …, where SEP is the BOS token (or
 * EOS when there is no BOS); a separator that would directly follow the context's own BOS is
 * skipped. Documents are tokenised when reached. The stream continues across epochs; the last
 * partial context is dropped.
 */
export class ContextPacker {
  readonly #docs: readonly string[];
  readonly #encode: (text: string) => number[];
  readonly #o: PackerOptions;
  #order: Uint32Array | undefined;
  #orderEpoch = -1;
  #cache: { epoch: number; document: number; tokens: number[] } | undefined;

  /** `docs` in file order; `encode` tokenises one document. */
  constructor(docs: readonly string[], encode: (text: string) => number[], options: PackerOptions) {
    this.#docs = docs;
    this.#encode = encode;
    this.#o = options;
    if (!Number.isSafeInteger(options.contextLength) || options.contextLength < 2) {
      throw new DictlearnError(
        'ContextPacker',
        `contextLength must be an integer ≥ 2, got ${options.contextLength}`,
      );
    }
  }

  /** The document index in file order of position `d` of epoch `epoch`'s order. */
  #docAt(epoch: number, d: number): number {
    if (!this.#o.shuffle) return d;
    if (this.#orderEpoch !== epoch) {
      this.#order = documentOrder(this.#docs.length, this.#o.seed, epoch);
      this.#orderEpoch = epoch;
    }
    return (this.#order as Uint32Array)[d];
  }

  /** The tokens of a document in the stream: its ids, then the separator. */
  #tokens(epoch: number, d: number): number[] {
    const c = this.#cache;
    if (c && c.epoch === epoch && c.document === d) return c.tokens;
    const ids = this.#encode(this.#docs[this.#docAt(epoch, d)]);
    const tokens = this.#o.separator === undefined ? ids : [...ids, this.#o.separator];
    this.#cache = { epoch, document: d, tokens };
    return tokens;
  }

  /** Checks that a saved position fits these documents; throws a `DictlearnError` naming the field. */
  check(p: ModelSourcePosition, where: string): void {
    const fields: (keyof ModelSourcePosition)[] = ['epoch', 'document', 'token', 'contexts', 'row'];
    for (const f of fields) {
      const v = p?.[f];
      if (!Number.isSafeInteger(v) || (v as number) < 0) {
        throw new DictlearnError(
          where,
          `position field '${f}' must be a non-negative integer, got ${JSON.stringify(v)}`,
        );
      }
    }
    if (p.document > this.#docs.length || (p.document === this.#docs.length && p.token > 0)) {
      throw new DictlearnError(
        where,
        `position document ${p.document} is past the ${this.#docs.length} documents of this corpus; was it saved with other text files?`,
      );
    }
    if (p.epoch >= this.#o.epochs && (p.document > 0 || p.token > 0)) {
      throw new DictlearnError(
        where,
        `position epoch ${p.epoch} is past the ${this.#o.epochs} epochs of this source`,
      );
    }
  }

  /**
   * Up to `count` contexts from position `from` (its `row` is ignored here). Fewer at the end of the
   * data; none once it is exhausted.
   */
  take(from: ModelSourcePosition, count: number): PackedContext[] {
    const L = this.#o.contextLength;
    const bos = this.#o.bos;
    const out: PackedContext[] = [];
    let { epoch, document, token, contexts } = from;
    const n = this.#docs.length;
    while (out.length < count) {
      const start: ModelSourcePosition = { epoch, document, token, contexts, row: 0 };
      const ctx = new Int32Array(L);
      let filled = 0;
      if (bos !== undefined) ctx[filled++] = bos;
      let complete = false;
      let barren = 0; // documents in a row that gave no token: a corpus of nothing never ends otherwise
      while (epoch < this.#o.epochs && barren <= n) {
        if (document >= n) {
          epoch++;
          document = 0;
          token = 0;
          continue;
        }
        const tokens = this.#tokens(epoch, document);
        // No separator right after the context's own BOS: it would say the same thing twice.
        if (
          filled === 1 &&
          bos !== undefined &&
          token < tokens.length &&
          tokens[token] === bos &&
          token === tokens.length - 1
        ) {
          token++;
        }
        const take = Math.min(L - filled, tokens.length - token);
        barren = take > 0 ? 0 : barren + 1;
        for (let i = 0; i < take; i++) ctx[filled + i] = tokens[token + i];
        filled += take;
        token += take;
        if (token >= tokens.length) {
          document++;
          token = 0;
          if (document >= n) {
            epoch++;
            document = 0;
          }
        }
        if (filled === L) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        // The data ran out inside this context: report the end and drop the partial context.
        return out;
      }
      contexts++;
      out.push({ tokens: ctx, start, end: { epoch, document, token, contexts, row: 0 } });
    }
    return out;
  }
}
