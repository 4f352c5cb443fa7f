/**
 * `dictlearn features` (an HTML page of what a dictionary's features fire on in text, beside the
 * model's neurons) and `dictlearn encode` (the top features of every token of a prompt).
 *
 * @module
 */

import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { useBackend, writeFileAtomic } from '@dictlearn/core';
import { loadDictionary } from '@dictlearn/formats';
import {
  analyzeFeatures,
  encodeText,
  type FeatureReport,
  LanguageModel,
  loadTokenizer,
  ModelSource,
  type TokenFeatures,
} from '@dictlearn/source-model';
import { renderFeaturesPage } from './features-page.js';
import { ConfigError } from './train-config.js';

/** Options of {@link runFeatures}. */
export interface FeaturesOptions {
  /** The dictionary directory. */
  dictionary: string;
  /** The ONNX model. */
  model: string;
  /** The hook the dictionary was trained on. */
  hook: string;
  /** Text files (plain text or JSONL). */
  text: string[];
  /** tokenizer.json (default: beside the model). */
  tokenizer?: string;
  /** Features (and neurons) shown. */
  features?: number;
  /** Feature ids to show instead. */
  ids?: number[];
  /** Top contexts per feature. */
  contexts?: number;
  /** Contexts to run at most. */
  maxContexts?: number;
  /** Tokens per context. */
  contextLength?: number;
  /** Contexts per forward pass. */
  forwardBatch?: number;
  /** Tokens per nearest-token list. */
  nearest?: number;
  /** Seed of the random baseline directions. */
  seed?: number;
  /** Show the neurons view. */
  neurons?: boolean;
  /** Leave BOS positions out. */
  skipBos?: boolean;
  /**
   * Where the HTML page goes (default `features.html` in the dictionary's folder, or beside it when
   * the dictionary is a file such as dictionary_learning's `ae.pt`).
   */
  out?: string;
  /** Where the JSON goes, if anywhere. */
  json?: string;
  /** Backend of the dictionary. */
  backend?: string;
  /** Progress lines. */
  progress?: (text: string) => void;
}

/** What {@link runFeatures} wrote. */
export interface FeaturesResult {
  /** The report (also in the JSON file). */
  report: FeatureReport;
  /** The HTML page's path. */
  page: string;
  /** The JSON file's path, when written. */
  json?: string;
}

/** Loads the dictionary and model, analyses the text and writes the page (and JSON). */
export async function runFeatures(o: FeaturesOptions): Promise<FeaturesResult> {
  const backend = await useBackend(o.backend ?? 'auto');
  const { dictionary: dict } = await loadDictionary(o.dictionary, { backend: backend.name });
  let source: ModelSource | undefined;
  try {
    source = await ModelSource.open({
      model: o.model,
      tokenizer: o.tokenizer,
      text: o.text,
      hooks: o.hook,
      contextLength: o.contextLength ?? 128,
      // Small passes: each pass's rows are encoded at once, [contexts·length, F] floats.
      forwardBatch: o.forwardBatch ?? 16,
    });
    const report = await analyzeFeatures({
      dictionary: dict,
      source,
      features: o.features,
      featureIds: o.ids,
      contexts: o.contexts,
      maxContexts: o.maxContexts,
      nearest: o.nearest,
      seed: o.seed,
      neurons: o.neurons,
      skipBos: o.skipBos,
      onProgress: (n) => o.progress?.(`features: ${n} contexts run`),
    });
    const info = { dictionary: o.dictionary, architecture: dict.arch.name, text: o.text };
    const page = o.out ?? join(dictionaryFolder(o.dictionary), 'features.html');
    await writeFileAtomic(page, renderFeaturesPage(report, info));
    if (o.json) {
      const json = { path: o.dictionary, architecture: info.architecture, text: o.text, ...report };
      await writeFileAtomic(o.json, `${JSON.stringify(json, null, 1)}\n`);
    }
    return { report, page, json: o.json };
  } finally {
    await source?.release();
    dict.dispose();
  }
}

/** Options of {@link runEncode}. */
export interface EncodeOptions {
  /** The dictionary directory. */
  dictionary: string;
  /** The ONNX model. */
  model: string;
  /** The hook the dictionary was trained on. */
  hook: string;
  /** The prompt. */
  prompt: string;
  /** tokenizer.json (default: beside the model). */
  tokenizer?: string;
  /** Features per token. */
  top?: number;
  /** Put BOS first (default: when the tokenizer has one). */
  bos?: boolean;
  /** Backend of the dictionary. */
  backend?: string;
}

/** Encodes a prompt: per token, the top features. */
export async function runEncode(o: EncodeOptions): Promise<TokenFeatures[]> {
  const backend = await useBackend(o.backend ?? 'auto');
  const { dictionary: dict } = await loadDictionary(o.dictionary, { backend: backend.name });
  let model: LanguageModel | undefined;
  try {
    model = await LanguageModel.load(o.model);
    const tokenizer = await loadTokenizer(o.tokenizer ?? join(dirname(o.model), 'tokenizer.json'));
    return await encodeText({
      dictionary: dict,
      model,
      tokenizer,
      hook: o.hook,
      text: o.prompt,
      top: o.top,
      prependBos: o.bos,
    });
  } finally {
    await model?.release();
    dict.dispose();
  }
}

/** The encode table: one line per token, its text quoted (JSON escapes keep control bytes off the terminal). */
export function formatEncode(tokens: readonly TokenFeatures[]): string {
  const shown = tokens.map((t) => JSON.stringify(t.token));
  const width = Math.min(24, Math.max(5, ...shown.map((s) => s.length)));
  const lines = [`${'pos'.padStart(4)}  ${'token'.padEnd(width)}  top features (index value)`];
  tokens.forEach((t, i) => {
    const feats = t.top.map((f) => `${f.feature} ${f.value.toFixed(3)}`).join('   ');
    lines.push(`${String(t.position).padStart(4)}  ${shown[i].padEnd(width)}  ${feats || '(none active)'}`);
  });
  return lines.join('\n');
}

function intFlag(flag: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const v = text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isSafeInteger(v) || v < min)
    throw new ConfigError(`--${flag} must be an integer ≥ ${min}, got '${text}'`);
  return v;
}

function intList(flag: string, text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  return text.split(',').map((s) => intFlag(flag, s, 0) as number);
}

function need(flag: string, v: string | undefined, usage: string): string {
  if (v === undefined || v === '') throw new ConfigError(`--${flag} is required: ${usage}`);
  return v;
}

const FEATURES_USAGE =
  'dictlearn features DIR --model m.onnx --hook H --text FILE [--features N --contexts N --json OUT]';

/** `dictlearn features DIR --model m.onnx --hook H --text FILE …`: writes the page; returns the exit code. */
export async function featuresCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      hook: { type: 'string' },
      text: { type: 'string', multiple: true },
      tokenizer: { type: 'string' },
      features: { type: 'string' },
      ids: { type: 'string' },
      contexts: { type: 'string' },
      'max-contexts': { type: 'string' },
      'context-length': { type: 'string' },
      'forward-batch': { type: 'string' },
      nearest: { type: 'string' },
      seed: { type: 'string' },
      'no-neurons': { type: 'boolean', default: false },
      'keep-bos': { type: 'boolean', default: false },
      out: { type: 'string' },
      json: { type: 'string' },
      backend: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new ConfigError(`usage: ${FEATURES_USAGE}`);
  const text = values.text ?? [];
  if (text.length === 0) throw new ConfigError(`--text is required: ${FEATURES_USAGE}`);
  const tty = process.stderr.isTTY;
  const r = await runFeatures({
    dictionary: positionals[0],
    model: need('model', values.model, FEATURES_USAGE),
    hook: need('hook', values.hook, FEATURES_USAGE),
    text,
    tokenizer: values.tokenizer,
    features: intFlag('features', values.features, 1),
    ids: intList('ids', values.ids),
    contexts: intFlag('contexts', values.contexts, 0),
    maxContexts: intFlag('max-contexts', values['max-contexts'], 1),
    contextLength: intFlag('context-length', values['context-length'], 2),
    forwardBatch: intFlag('forward-batch', values['forward-batch'], 1),
    nearest: intFlag('nearest', values.nearest, 0),
    seed: intFlag('seed', values.seed, 0),
    neurons: !values['no-neurons'],
    skipBos: !values['keep-bos'],
    out: values.out,
    json: values.json,
    backend: values.backend,
    progress: tty ? (line) => process.stderr.write(`\r\x1b[2K${line}`) : undefined,
  });
  if (tty) process.stderr.write('\r\x1b[2K');
  const s = r.report.nearestSummary;
  const lines = [
    `${r.report.contexts} contexts, ${r.report.tokens} tokens; ${r.report.features.length} features and ${r.report.neurons.length} neurons shown`,
    s
      ? `mean cosine of the nearest embedding tokens: features ${s.embedding.features.toFixed(3)}, neurons ${s.embedding.neurons.toFixed(3)}, random directions ${s.embedding.random.toFixed(3)}`
      : `no nearest-token lists: ${r.report.nearestNote}`,
    `page: ${r.page}`,
    ...(r.json ? [`json: ${r.json}`] : []),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

const ENCODE_USAGE = 'dictlearn encode DIR --model m.onnx --hook H --prompt "text" [--top N --json]';

/** `dictlearn encode DIR --model m.onnx --hook H --prompt "…"`: prints per token the top features. */
export async function encodeCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      hook: { type: 'string' },
      prompt: { type: 'string' },
      tokenizer: { type: 'string' },
      top: { type: 'string' },
      'no-bos': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      backend: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new ConfigError(`usage: ${ENCODE_USAGE}`);
  if (values.prompt === undefined) throw new ConfigError(`--prompt is required: ${ENCODE_USAGE}`);
  const tokens = await runEncode({
    dictionary: positionals[0],
    model: need('model', values.model, ENCODE_USAGE),
    hook: need('hook', values.hook, ENCODE_USAGE),
    prompt: values.prompt,
    tokenizer: values.tokenizer,
    top: intFlag('top', values.top, 1),
    bos: values['no-bos'] ? false : undefined,
    backend: values.backend,
  });
  process.stdout.write(values.json ? `${JSON.stringify(tokens, null, 1)}\n` : `${formatEncode(tokens)}\n`);
  return 0;
}

/** The folder of a dictionary given as a folder, or as a file inside one (`ae.pt`). */
function dictionaryFolder(path: string): string {
  return statSync(path, { throwIfNoEntry: false })?.isFile() ? dirname(path) : path;
}
