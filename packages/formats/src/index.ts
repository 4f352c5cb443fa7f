/**
 * `@dictlearn/formats`: read and write sparse dictionaries in the Python libraries' formats —
 * dictionary_learning (`ae.pt` + `config.json`), SAELens (`cfg.json` +
 * `sae_weights.safetensors`) and sparsify (`cfg.json` + `sae.safetensors` per hookpoint) — beside
 * dictlearn's own. `ae.pt` is read with a restricted unpickler that never executes code.
 *
 * ```ts
 * import '@dictlearn/backend-cpu/register';
 * import '@dictlearn/arch-topk/register';
 * import { loadDictionary, writeDictionary } from '@dictlearn/formats';
 *
 * const { dictionary } = await loadDictionary('runs/trainer_0'); // ae.pt + config.json
 * await writeDictionary(dictionary, 'out/saelens', 'saelens');
 * ```
 * @packageDocumentation
 */

export {
  detectFormat,
  FORMAT_ALIASES,
  type LoadedDictionary,
  loadDictionary,
  type ReadOptions,
  readDictionary,
  readDictlearn,
  writeDictionary,
} from './api.js';
export {
  type DictionaryLearningFiles,
  type DictionaryLearningReadOptions,
  DL_CLASSES,
  type DLClass,
  decodeDictionaryLearning,
  encodeDictionaryLearning,
  readDictionaryLearning,
  writeDictionaryLearning,
} from './dictionary-learning.js';
export { KINDS, kindOf, logThreshold, type NativeParams, SUPPORTED_ARCHITECTURES } from './families.js';
export { formatInspectReport, type InspectReport, inspectDictionary, type TensorStats } from './inspect.js';
export { exportOnnx, ONNX_FILES, type OnnxGraph, writeOnnx } from './onnx.js';
export {
  type DictionaryParts,
  type DictlearnBlock,
  dictionaryFromParts,
  type FormatName,
  type HostParam,
  partsFromDictionary,
  type ReadResult,
  type SafetensorsFormatFiles,
  type StoredTensor,
} from './parts.js';
export {
  describePy,
  PickleWriter,
  PyDict,
  PyGlobal,
  PyList,
  PyOpaque,
  PyTuple,
  type PyValue,
  type UnpickleOptions,
  unpickle,
} from './pickle.js';
export {
  decodeSaeLens,
  encodeSaeLens,
  readSaeLens,
  SAELENS_ARCHITECTURES,
  SAELENS_FILES,
  writeSaeLens,
} from './saelens.js';
export { decodeSparsify, encodeSparsify, readSparsify, SPARSIFY_FILES, writeSparsify } from './sparsify.js';
export {
  type HostDType,
  type HostTensor,
  readTorchStateDict,
  TORCH_GLOBALS,
  type TorchStateDict,
  type TorchTensorInput,
  torchFileProblem,
  writeTorchStateDict,
} from './torch.js';
export { crc32, readZip, writeZip, type ZipArchive, type ZipEntry, type ZipInput } from './zip.js';
