/**
 * `@dictlearn/source-model`: activations of a real language model, for training dictionaries.
 *
 * - {@link ModelSource}: text files → the model's tokenizer → packed contexts → one forward pass
 *   per group of contexts with every hook as an extra output → rows [tokens, d] per hook, seeded
 *   and resumable. With one hook it is an `ActivationSource` for `ActivationBuffer`/`trainSAE`.
 * - {@link LanguageModel}: an ONNX export of a causal LM on onnxruntime (onnxruntime-node in Node,
 *   onnxruntime-web passed in a browser), with hooks named by PyTorch module path.
 * - {@link OnnxModel} and {@link resolveHook}: the graph reader/editor and hook resolution.
 * - {@link analyzeFeatures}, {@link encodeText}, {@link tokenEmbeddings}: what a dictionary's
 *   features fire on in text, their nearest vocabulary tokens, and per-token top features.
 *
 * ```ts
 * import '@dictlearn/backend-cpu/register';
 * import { ModelSource } from '@dictlearn/source-model';
 * const source = await ModelSource.open({ model: 'model.onnx', text: 'corpus.txt', hooks: 'gpt_neox.layers.1' });
 * for await (const x of source.batches({ batchSize: 1024 })) { x.dispose(); break; }
 * ```
 * @packageDocumentation
 */
export {
  nearestTokens,
  rowNorms,
  type TokenEmbeddings,
  type TokenMatrix,
  type TokenScore,
  tokenEmbeddings,
} from './embeddings.js';
export { modelSourceFactory, parseModelSourceOptions } from './factory.js';
export {
  analyzeFeatures,
  type ContextExample,
  type EncodeTextOptions,
  encodeText,
  type FeatureAnalysisOptions,
  type FeatureReport,
  type NearestLists,
  type NearestSummary,
  type NearestToken,
  SELECTION_RULE,
  type TokenFeatures,
  type UnitSummary,
} from './features.js';
export {
  type HookKind,
  modulePaths,
  nearestNames,
  OUTPUT_PROJECTIONS,
  type ResolvedHook,
  resolveHook,
} from './hooks.js';
export {
  type ContextTokens,
  type LossRecovered,
  type LossRecoveredOptions,
  lossRecovered,
} from './loss-recovered.js';
export {
  type ForwardOptions,
  type ForwardResult,
  type HookReplacement,
  type HookValue,
  LanguageModel,
  type LanguageModelOptions,
} from './model.js';
export {
  type ExternalDataReader,
  type ExternalDataRef,
  elementBytes,
  encodeValueInfo,
  type GraphCut,
  type GraphEdit,
  isFloatType,
  type OnnxInitializer,
  OnnxModel,
  type OnnxNode,
  type OnnxParseOptions,
  OnnxType,
  type OnnxValueInfo,
  type OpsetImport,
} from './onnx.js';
export {
  ContextPacker,
  documentOrder,
  type ModelSourcePosition,
  type PackedContext,
  type PackerOptions,
  START_POSITION,
} from './packing.js';
export {
  loadNodeRuntime,
  type OrtModule,
  type OrtSession,
  type OrtSessionFactory,
  type OrtTensor,
  type OrtTensorConstructor,
} from './runtime.js';
export {
  type HookRows,
  type HookSource,
  type ModelBatchOptions,
  type ModelChunk,
  ModelSource,
  type ModelSourceOptions,
  type ModelSourceStats,
} from './source.js';
export {
  formatOf,
  parseDocuments,
  readDocuments,
  type TextBytes,
  type TextFile,
  type TextFormat,
  type TextInput,
  type TextOptions,
} from './text.js';
export { loadTokenizer, type TextTokenizer, type TokenizerOptions, tokenizerFromJson } from './tokenizer.js';
export { workerRuntime } from './worker-runtime.js';
