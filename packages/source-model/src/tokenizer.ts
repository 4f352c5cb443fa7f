/**
 * The model's tokenizer: a Hugging Face `tokenizer.json` run by `@huggingface/tokenizers` (pure
 * JavaScript, the same code in Node and browsers).
 *
 * @module
 */
import { DictlearnError, readFileBytes } from '@dictlearn/core';
import { Tokenizer } from '@huggingface/tokenizers';

/** A loaded tokenizer. */
export interface TextTokenizer {
  /** The tokenizer.json it came from (for errors). */
  readonly file: string;
  /** One more than the largest token id (added tokens included). */
  readonly vocabSize: number;
  /** The beginning-of-sequence token id, when the tokenizer or its configs name one. */
  readonly bos: number | undefined;
  /** The end-of-sequence token id, when known. */
  readonly eos: number | undefined;
  /** Token ids of `text`, without special tokens (the source adds BOS itself). */
  encode(text: string): number[];
  /**
   * The text of token ids, special tokens kept (`<|endoftext|>`) and spaces not cleaned up, so one
   * token decodes to exactly its own piece (a byte-level token that holds part of a multi-byte
   * character decodes to U+FFFD).
   */
  decode(ids: readonly number[]): string;
}

/** Options of {@link loadTokenizer} and {@link tokenizerFromJson}. */
export interface TokenizerOptions {
  /** `tokenizer_config.json` contents (`bos_token`, `eos_token`), when present. */
  tokenizerConfig?: Record<string, unknown>;
  /** The model's `config.json` contents (`bos_token_id`, `eos_token_id`), when present. */
  modelConfig?: Record<string, unknown>;
}

/** Special tokens that serve as BOS when no config names one (GPT-2/NeoX, Llama, Llama 3, Gemma). */
const BOS_CANDIDATES = ['<|endoftext|>', '<s>', '<|begin_of_text|>', '<bos>'];
const EOS_CANDIDATES = ['<|endoftext|>', '</s>', '<|end_of_text|>', '<eos>'];

function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

function specialId(
  t: Tokenizer,
  configName: unknown,
  configId: unknown,
  candidates: readonly string[],
  vocab: ReadonlyMap<string, number>,
): number | undefined {
  if (typeof configId === 'number' && Number.isSafeInteger(configId) && configId >= 0) return configId;
  const name = tokenName(configName);
  if (name !== undefined) {
    const id = t.token_to_id(name);
    if (id !== undefined) return id;
  }
  for (const c of candidates) {
    const id = vocab.get(c);
    if (id !== undefined) return id;
  }
  return undefined;
}

/** Builds a tokenizer from parsed `tokenizer.json` contents; `file` names it in errors. */
export function tokenizerFromJson(
  json: unknown,
  file: string,
  options: TokenizerOptions = {},
): TextTokenizer {
  if (!json || typeof json !== 'object' || !('model' in json)) {
    throw new DictlearnError(
      file,
      'not a Hugging Face tokenizer.json (no "model" field); expected the tokenizer saved with the model',
    );
  }
  let t: Tokenizer;
  try {
    t = new Tokenizer(json, options.tokenizerConfig ?? {});
  } catch (e) {
    throw new DictlearnError(
      file,
      `could not build the tokenizer: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const vocab = t.get_vocab(true);
  let max = -1;
  for (const id of vocab.values()) if (id > max) max = id;
  const tc = options.tokenizerConfig ?? {};
  const mc = options.modelConfig ?? {};
  const bos = specialId(t, tc.bos_token, mc.bos_token_id, BOS_CANDIDATES, vocab);
  const eos = specialId(t, tc.eos_token, mc.eos_token_id, EOS_CANDIDATES, vocab);
  return {
    file,
    vocabSize: max + 1,
    bos,
    eos,
    encode(text: string): number[] {
      return t.encode(text, { add_special_tokens: false }).ids;
    },
    decode(ids: readonly number[]): string {
      return t.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    },
  };
}

async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readFileBytes(path);
  } catch (e) {
    if (required) throw e;
    return undefined;
  }
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as Record<string, unknown>;
  } catch (e) {
    throw new DictlearnError(path, `not valid UTF-8 JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function dirOf(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i < 0 ? '.' : path.slice(0, i) || '/';
}

/**
 * Loads `tokenizer.json` (Node), with `tokenizer_config.json` and `config.json` from the same
 * folder when they exist (they name the BOS and EOS tokens).
 */
export async function loadTokenizer(path: string): Promise<TextTokenizer> {
  const json = await readJson(path, true);
  const dir = dirOf(path);
  const tokenizerConfig = await readJson(`${dir}/tokenizer_config.json`, false);
  const modelConfig = await readJson(`${dir}/config.json`, false);
  return tokenizerFromJson(json, path, { tokenizerConfig, modelConfig });
}
