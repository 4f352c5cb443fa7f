/**
 * The `model` source factory: a {@link ModelSource} from plain options (a CLI flag or a run config's
 * `source: { type: model, ... }`), for the plugin registry.
 *
 * @module
 */
import { type ActivationSource, closestName, DictlearnError, type SourceFactory } from '@dictlearn/core';
import type { ModelSourcePosition } from './packing.js';
import type { ModelSourceOptions } from './source.js';

type Kind = 'string' | 'strings' | 'integer' | 'number' | 'count' | 'boolean' | 'position' | 'format';

/** The options the factory takes, and their kinds. */
const FIELDS: Record<string, Kind> = {
  model: 'string',
  hooks: 'strings',
  text: 'strings',
  tokenizer: 'string',
  format: 'format',
  textField: 'string',
  contextLength: 'integer',
  forwardBatch: 'integer',
  prependBos: 'boolean',
  dropBos: 'boolean',
  outlierMultiple: 'number',
  shuffle: 'boolean',
  seed: 'integer',
  epochs: 'count',
  start: 'position',
  prefetch: 'integer',
  intraOpThreads: 'integer',
};

const OP = "source 'model'";

function parse(key: string, kind: Kind, raw: unknown): unknown {
  const show = JSON.stringify(raw);
  switch (kind) {
    case 'string':
      if (typeof raw !== 'string' || raw === '')
        throw new DictlearnError(OP, `option '${key}' must be a non-empty string, got ${show}`);
      return raw;
    case 'strings': {
      const list = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()) : raw;
      if (
        !Array.isArray(list) ||
        list.length === 0 ||
        !list.every((v) => typeof v === 'string' && v !== '')
      ) {
        throw new DictlearnError(OP, `option '${key}' must be a string or a list of strings, got ${show}`);
      }
      return list;
    }
    case 'boolean':
      if (raw === true || raw === 'true') return true;
      if (raw === false || raw === 'false') return false;
      throw new DictlearnError(OP, `option '${key}' must be true or false, got ${show}`);
    case 'format':
      if (raw !== 'text' && raw !== 'jsonl')
        throw new DictlearnError(OP, `option '${key}' must be 'text' or 'jsonl', got ${show}`);
      return raw;
    case 'position':
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
        throw new DictlearnError(OP, `option '${key}' must be a saved position object, got ${show}`);
      return raw;
    default: {
      const v =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? raw.trim() === 'Infinity'
              ? Number.POSITIVE_INFINITY
              : Number(raw)
            : Number.NaN;
      if (kind === 'count' && v === Number.POSITIVE_INFINITY) return v;
      if (!Number.isFinite(v) || (kind !== 'number' && !Number.isSafeInteger(v))) {
        throw new DictlearnError(
          OP,
          `option '${key}' must be ${kind === 'number' ? 'a number' : 'an integer'}, got ${show}`,
        );
      }
      return v;
    }
  }
}

/**
 * Checks the `model` source's plain options: unknown fields (with the nearest known name), missing
 * `model`/`hooks`/`text`, wrong types — each a `DictlearnError` naming the option. `hook` is taken
 * as `hooks`. Returns the options of {@link ModelSource.open}.
 */
export function parseModelSourceOptions(options: Record<string, unknown>): ModelSourceOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new DictlearnError(OP, `options must be an object, got ${JSON.stringify(options)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, raw] of Object.entries(options)) {
    const key = k === 'hook' ? 'hooks' : k;
    const kind = FIELDS[key];
    if (!kind) {
      const near = closestName(k, Object.keys(FIELDS));
      throw new DictlearnError(
        OP,
        `unknown option '${k}'${near ? ` (did you mean '${near}'?)` : ''}; expected one of ${Object.keys(
          FIELDS,
        )
          .map((f) => `'${f}'`)
          .join(', ')}`,
      );
    }
    if (raw === undefined) continue;
    out[key] = parse(key, kind, raw);
  }
  for (const key of ['model', 'hooks', 'text']) {
    if (out[key] === undefined) {
      const example = { model: 'model.onnx', hooks: 'gpt_neox.layers.3', text: 'corpus.txt' }[key];
      throw new DictlearnError(OP, `option '${key}' is required (e.g. ${key}: ${example})`);
    }
  }
  return out as unknown as ModelSourceOptions & { start?: ModelSourcePosition };
}

/**
 * `model`: activations of an ONNX causal LM on text files ({@link ModelSource}): model, hooks, text
 * (required), tokenizer, format, textField, contextLength, forwardBatch, prependBos, dropBos,
 * outlierMultiple, shuffle, seed, epochs, start, prefetch, intraOpThreads. Register it with
 * `registerPlugin('source', 'model', modelSourceFactory)` (or import `@dictlearn/source-model/register`);
 * `@dictlearn/buffer` does not, so it never loads onnxruntime. With several hooks the source it
 * returns is a `ModelSource`: use its `split()` for one source per hook.
 */
export const modelSourceFactory: SourceFactory = {
  name: 'model',
  description:
    'activations of an ONNX causal language model on text: model, hooks, text (required), tokenizer, contextLength, forwardBatch, dropBos, outlierMultiple, shuffle, seed, epochs, prefetch, intraOpThreads',
  async create(options: Record<string, unknown>): Promise<ActivationSource> {
    const parsed = parseModelSourceOptions(options);
    const { ModelSource } = await import('./source.js');
    return ModelSource.open(parsed);
  },
};
