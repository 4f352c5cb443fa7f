/**
 * One entry point for every format: find out what a path holds, read it as
 * {@link DictionaryParts} or load it as a `Dictionary`, and write a dictionary in any format.
 */
import {
  DICTIONARY_FILES,
  Dictionary,
  DictlearnError,
  decodeSafetensors,
  parseConfig,
  verifyChecksum,
} from '@dictlearn/core';
import {
  type DictionaryLearningReadOptions,
  readDictionaryLearning,
  writeDictionaryLearning,
} from './dictionary-learning.js';
import { basename, dirname, join, listDirectory, pathKind, readFileBytes } from './files.js';
import {
  type DictionaryParts,
  dictionaryFromParts,
  type FormatName,
  partsFromDictionary,
  type ReadResult,
  storedOf,
} from './parts.js';
import { hostTensors, readSaeLens, SAELENS_FILES, writeSaeLens } from './saelens.js';
import { readSparsify, SPARSIFY_FILES, writeSparsify } from './sparsify.js';

/** Every format name, and the short names the CLI accepts for them. */
export const FORMAT_ALIASES: Readonly<Record<string, FormatName>> = {
  dictlearn: 'dictlearn',
  dl: 'dictionary_learning',
  dictionary_learning: 'dictionary_learning',
  'dictionary-learning': 'dictionary_learning',
  saelens: 'saelens',
  sparsify: 'sparsify',
};

/**
 * Which format `path` holds, from the files present (never from a file's contents alone):
 * a folder with `config.json` + `sae.safetensors` is dictlearn's, with `ae.pt` dictionary_learning's,
 * with `cfg.json` + `sae_weights.safetensors` SAELens', with `cfg.json` + `sae.safetensors`
 * sparsify's; a file is judged by its name and its neighbours the same way.
 */
export async function detectFormat(path: string): Promise<FormatName> {
  const kind = await pathKind(path);
  if (kind === 'none') throw new DictlearnError(path, 'no such file or directory');
  const dir = kind === 'dir' ? path : dirname(path);
  const name = kind === 'file' ? basename(path) : undefined;
  const names = new Set(await listDirectory(dir));
  if (name && /\.(pt|pth)$/.test(name)) return 'dictionary_learning';
  if (name && !name.endsWith('.safetensors') && name !== 'cfg.json' && name !== 'config.json') {
    throw new DictlearnError(
      path,
      'is not a dictionary file this reader knows (.pt, .safetensors, or a folder)',
    );
  }
  if (kind === 'dir' && names.has('ae.pt')) return 'dictionary_learning';
  if (names.has(SAELENS_FILES.weights) && names.has(SAELENS_FILES.config)) return 'saelens';
  if (names.has(DICTIONARY_FILES.weights) && names.has(DICTIONARY_FILES.config)) return 'dictlearn';
  if (names.has(SPARSIFY_FILES.weights) && names.has(SPARSIFY_FILES.config)) return 'sparsify';
  // A lone config.json is read as dictlearn's, whose reader then says precisely what is wrong
  // (a foreign config, the missing weights file).
  if (names.has(DICTIONARY_FILES.config)) return 'dictlearn';
  if (kind === 'dir') {
    for (const sub of names) {
      if ((await pathKind(join(join(dir, sub), SPARSIFY_FILES.config))) === 'file') return 'sparsify';
    }
  }
  throw new DictlearnError(
    path,
    'holds no dictionary this reader knows: expected config.json + sae.safetensors (dictlearn), ae.pt (dictionary_learning), cfg.json + sae_weights.safetensors (SAELens) or cfg.json + sae.safetensors (sparsify)',
  );
}

/** Reads dictlearn's own folder as parts (the weights' checksum verified), without the plugin. */
export async function readDictlearn(path: string): Promise<ReadResult> {
  const dir = (await pathKind(path)) === 'file' ? dirname(path) : path;
  const configPath = join(dir, DICTIONARY_FILES.config);
  const weightsPath = join(dir, DICTIONARY_FILES.weights);
  const config = parseConfig(new TextDecoder().decode(await readFileBytes(configPath)), configPath);
  const bytes = await readFileBytes(weightsPath);
  await verifyChecksum(config, DICTIONARY_FILES.weights, bytes, weightsPath);
  const tensors = hostTensors(decodeSafetensors(bytes, weightsPath).tensors);
  const params: DictionaryParts['params'] = {};
  for (const [k, t] of Object.entries(tensors)) {
    params[k] = {
      shape: t.shape,
      values: t.values instanceof Float32Array ? t.values : Float32Array.from(t.values),
    };
  }
  return {
    format: 'dictlearn',
    files: [weightsPath, configPath],
    formatArchitecture: config.architecture.name,
    stored: storedOf(tensors),
    parts: {
      architecture: config.architecture.name,
      config: config.architecture.config as Record<string, unknown>,
      packageName: config.architecture.package,
      activationDim: config.activationDim,
      dictSize: config.dictSize,
      params,
      scale: config.normalization?.scale ?? 1,
      training: config.training ?? {},
    },
    notes: config.sha256
      ? []
      : ['config.json records no checksum (written before checksums existed): not verified'],
  };
}

/** What {@link loadDictionary} returns. */
export interface LoadedDictionary {
  /** The dictionary (dispose it when done). */
  dictionary: Dictionary;
  /** Where it came from and what the reader decided. */
  read: ReadResult;
}

/** Options of {@link readDictionary} and {@link loadDictionary}. */
export interface ReadOptions extends DictionaryLearningReadOptions {
  /** The format, when it should not be detected. */
  format?: FormatName;
}

/**
 * Reads a dictionary in any format as plain data ({@link ReadResult}); no architecture plugin
 * needs to be registered. Errors name the file and field.
 */
export async function readDictionary(path: string, options: ReadOptions = {}): Promise<ReadResult> {
  const format = options.format ?? (await detectFormat(path));
  switch (format) {
    case 'dictlearn':
      return readDictlearn(path);
    case 'dictionary_learning':
      return readDictionaryLearning(path, options);
    case 'saelens':
      return readSaeLens(path);
    case 'sparsify':
      return readSparsify(path);
  }
}

/**
 * Loads a dictionary in any format as a `Dictionary` (its architecture must be registered,
 * e.g. `import '@dictlearn/arch-topk/register'`); with the read's notes. dictlearn's own folders
 * go through `Dictionary.load`.
 */
export async function loadDictionary(
  path: string,
  options: ReadOptions & { backend?: string } = {},
): Promise<LoadedDictionary> {
  const read = await readDictionary(path, options);
  if (read.format === 'dictlearn') {
    return { dictionary: await Dictionary.load(dirname(read.files[0]), { backend: options.backend }), read };
  }
  const dictionary = dictionaryFromParts(read.parts, read.files[0], {
    backend: options.backend,
    configSource: read.files[1] ?? read.files[0],
  });
  return { dictionary, read };
}

/**
 * Writes a dictionary (a `Dictionary` or parts) in `format` into the folder `out` (created if
 * needed; every file written atomically). Returns the files written. An architecture the
 * format cannot hold is an error naming it.
 */
export async function writeDictionary(
  dict: Dictionary | DictionaryParts,
  out: string,
  format: FormatName,
): Promise<string[]> {
  if (format === 'dictlearn') {
    const d = dict instanceof Dictionary ? dict : dictionaryFromParts(dict, out);
    try {
      await d.save(out);
    } finally {
      if (d !== dict) d.dispose();
    }
    return [join(out, DICTIONARY_FILES.weights), join(out, DICTIONARY_FILES.config)];
  }
  const parts = dict instanceof Dictionary ? await partsFromDictionary(dict) : dict;
  switch (format) {
    case 'dictionary_learning':
      return writeDictionaryLearning(parts, out);
    case 'saelens':
      return writeSaeLens(parts, out);
    case 'sparsify':
      return writeSparsify(parts, out);
  }
}
