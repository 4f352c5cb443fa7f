/**
 * The `model` source factory: a {@link ModelSource} from plain options (a CLI flag or a run config's
 * `source: { type: model, ... }`), for the plugin registry.
 *
 * @module
 */
import {
  type ActivationSource,
  DictlearnError,
  parseSourceOptions,
  type SourceFactory,
  type SourceOptionKind,
} from '@dictlearn/core';
import type { ModelSourcePosition } from './packing.js';
import type { ModelSourceOptions } from './source.js';

/** The options the factory takes, and their kinds. */
const FIELDS: Record<string, SourceOptionKind> = {
  model: 'non-empty string',
  hooks: 'strings',
  text: 'strings',
  tokenizer: 'non-empty string',
  format: { oneOf: ['text', 'jsonl'] },
  textField: 'non-empty string',
  contextLength: 'integer',
  forwardBatch: 'integer',
  prependBos: 'boolean',
  dropBos: 'boolean',
  outlierMultiple: 'number',
  shuffle: 'boolean',
  seed: 'integer',
  epochs: 'count',
  start: { object: 'a saved position object' },
  prefetch: 'integer',
  intraOpThreads: 'integer',
};

const OP = "source 'model'";

/**
 * Checks the `model` source's plain options: unknown fields (with the nearest known name), missing
 * `model`/`hooks`/`text`, wrong types — each a `DictlearnError` naming the option. `hook` is taken
 * as `hooks`. Returns the options of {@link ModelSource.open}.
 */
export function parseModelSourceOptions(options: Record<string, unknown>): ModelSourceOptions {
  // `hook` is another name for `hooks` (renamed in place, so a later key still wins).
  const renamed =
    options !== null && typeof options === 'object' && !Array.isArray(options)
      ? Object.fromEntries(Object.entries(options).map(([k, v]) => [k === 'hook' ? 'hooks' : k, v]))
      : options;
  const out = parseSourceOptions('model', renamed, FIELDS);
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
