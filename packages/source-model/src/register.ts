/**
 * Side-effect entry: registers the `model` source factory in the plugin registry, so the CLI (and
 * `findPlugin<SourceFactory>('source', 'model')`) finds it. The model runtime (onnxruntime) and the
 * tokenizer load only when a source is created.
 *
 * ```ts
 * import '@dictlearn/source-model/register';
 * import { findPlugin, type SourceFactory } from '@dictlearn/core';
 * const source = await findPlugin<SourceFactory>('source', 'model')!.create({
 *   model: 'model.onnx', hooks: 'gpt_neox.layers.1', text: 'corpus.txt',
 * });
 * ```
 * @packageDocumentation
 */
import { registerPlugin } from '@dictlearn/core';
import { modelSourceFactory } from './factory.js';

/** The factory this entry registered. */
export const registeredModelSource: typeof modelSourceFactory = registerPlugin(
  'source',
  'model',
  modelSourceFactory,
);
