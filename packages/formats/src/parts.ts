/**
 * The format-neutral middle of every conversion: a dictionary's architecture, sizes and
 * parameters as host arrays, in dictlearn's names and layouts (SAELens layout: `W_enc` [d, F],
 * `W_dec` [F, d]). Readers produce it from a file, writers consume it, and
 * {@link dictionaryFromParts} / {@link partsFromDictionary} move it to and from a `Dictionary`.
 */
import {
  createArchitecture,
  Dictionary,
  type DictionaryConfig,
  DictlearnError,
  fmtShape,
  LIBRARY_VERSION,
  type Params,
  type Tensor,
  tensor,
} from '@dictlearn/core';
import type { HostTensor } from './torch.js';

/** One parameter on the host: float32 values, row-major. */
export interface HostParam {
  /** Shape. */
  shape: number[];
  /** Values. */
  values: Float32Array;
}

/** A dictionary as plain data: what readers return and writers take. */
export interface DictionaryParts {
  /** dictlearn architecture (registry name, e.g. `'topk'`). */
  architecture: string;
  /** The architecture's hyper-parameters (the plugin factory's config). */
  config: Record<string, unknown>;
  /** The npm package of the architecture (named when it is not registered). */
  packageName?: string;
  /** Width d. */
  activationDim: number;
  /** Features F. */
  dictSize: number;
  /** Parameters by dictlearn name. */
  params: Record<string, HostParam>;
  /** The normalisation scale already folded into the parameters (1 if none). */
  scale: number;
  /** Provenance carried along (free-form). */
  training: Record<string, unknown>;
}

/** The formats dictlearn reads and writes. */
export type FormatName = 'dictlearn' | 'dictionary_learning' | 'saelens' | 'sparsify';

/** What a writer puts in a safetensors format's folder: the config and the tensors. */
export interface SafetensorsFormatFiles {
  /** The config (`cfg.json`). */
  config: Record<string, unknown>;
  /** The tensors, by the format's key names. */
  tensors: Record<
    string,
    {
      /** Always float32. */
      dtype: 'F32';
      /** Shape. */
      shape: number[];
      /** Values, row-major. */
      data: Float32Array;
    }
  >;
}

/** A tensor as a file stores it. */
export interface StoredTensor {
  /** Key in the file. */
  name: string;
  /** Element type (safetensors' names: F32, F16, BF16, I64…). */
  dtype: string;
  /** Shape. */
  shape: number[];
}

/** The {@link StoredTensor}s of a file's tensors. */
export function storedOf(tensors: Record<string, { dtype: string; shape: number[] }>): StoredTensor[] {
  return Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: [...t.shape] }));
}

/** A dictionary read from a file, with where it came from and what was done to it. */
export interface ReadResult {
  /** The format it was read from. */
  format: FormatName;
  /** The files read (config and weights). */
  files: string[];
  /** The format's own name of the architecture (e.g. `AutoEncoderTopK`, `jumprelu`). */
  formatArchitecture: string;
  /** The tensors as the file stores them: names, element types, shapes. */
  stored: StoredTensor[];
  /** The dictionary. */
  parts: DictionaryParts;
  /**
   * What the reader had to decide or change, in words (e.g. a bias folded because the file's
   * SAE does not subtract b_dec before encoding).
   */
  notes: string[];
}

/**
 * The `dictlearn` block a writer stores beside a foreign format's own config (an extra key the
 * Python libraries ignore): the exact dictlearn architecture, so a round trip restores it.
 */
export interface DictlearnBlock {
  /** Always `'dictlearn'`. */
  format: 'dictlearn';
  /** Library version that wrote it. */
  version: string;
  /** The architecture as `config.json` names it. */
  architecture: {
    /** Registry name. */
    name: string;
    /** The npm package providing it. */
    package?: string;
    /** Hyper-parameters. */
    config: Record<string, unknown>;
  };
  /** The folded normalisation scale (1 if none). */
  scale: number;
}

/** The {@link DictlearnBlock} of `parts`. */
export function dictlearnBlock(parts: DictionaryParts): DictlearnBlock {
  return {
    format: 'dictlearn',
    version: LIBRARY_VERSION,
    architecture: { name: parts.architecture, package: parts.packageName, config: parts.config },
    scale: parts.scale,
  };
}

/** Reads a {@link DictlearnBlock} from a parsed config, or undefined when absent or malformed. */
export function readDictlearnBlock(config: unknown): DictlearnBlock | undefined {
  const b = (config as { dictlearn?: unknown } | null)?.dictlearn as Partial<DictlearnBlock> | undefined;
  if (!b || typeof b !== 'object' || b.format !== 'dictlearn') return undefined;
  const a = b.architecture;
  if (!a || typeof a.name !== 'string' || !a.config || typeof a.config !== 'object') return undefined;
  return {
    format: 'dictlearn',
    version: String(b.version ?? ''),
    architecture: {
      name: a.name,
      package: typeof a.package === 'string' ? a.package : undefined,
      config: a.config,
    },
    scale: typeof b.scale === 'number' && b.scale > 0 ? b.scale : 1,
  };
}

/** `values` [rows, cols] transposed to [cols, rows] (a new array). */
export function transpose2d(values: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

/** The tensor `name` of a file as float32, checked to have `shape`; errors name the file and key. */
export function takeTensor(
  tensors: Record<string, HostTensor>,
  name: string,
  shape: readonly number[],
  source: string,
  why = '',
): Float32Array {
  const t = tensors[name];
  if (!t) {
    const have = Object.keys(tensors).join(', ') || 'none';
    throw new DictlearnError(
      source,
      `missing tensor '${name}' ${fmtShape(shape)}${why} (the file has: ${have})`,
    );
  }
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new DictlearnError(
      source,
      `tensor '${name}' is ${fmtShape(t.shape)}, expected ${fmtShape(shape)}${why}`,
    );
  }
  if (t.dtype.startsWith('I') || t.dtype === 'U8' || t.dtype === 'BOOL') {
    throw new DictlearnError(source, `tensor '${name}' holds ${t.dtype} values, expected floating point`);
  }
  const values = t.values instanceof Float32Array ? t.values : Float32Array.from(t.values);
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new DictlearnError(
      source,
      `tensor '${name}' holds a non-finite value (${values[bad]}) at flat index ${bad}`,
    );
  }
  return values;
}

/** An integer scalar tensor (DL's `k`), or undefined when absent. */
export function takeIntScalar(
  tensors: Record<string, HostTensor>,
  name: string,
  source: string,
): number | undefined {
  const t = tensors[name];
  if (!t) return undefined;
  if (t.values.length !== 1) {
    throw new DictlearnError(source, `tensor '${name}' is ${fmtShape(t.shape)}, expected a scalar`);
  }
  const v = t.values[0];
  if (!Number.isInteger(v)) throw new DictlearnError(source, `tensor '${name}' is ${v}, expected an integer`);
  return v;
}

/**
 * The parts' parameters checked against the architecture's shapes (names, shapes, finite
 * values); errors name `source` and the parameter, or `configSource` for a bad architecture
 * config. Returns the plugin.
 */
export function checkParts(parts: DictionaryParts, source: string, configSource = source) {
  let arch: ReturnType<typeof createArchitecture>;
  let want: Record<string, number[]>;
  try {
    arch = createArchitecture(parts.architecture, parts.config, parts.packageName, configSource);
    want = arch.paramShapes({ activationDim: parts.activationDim, dictSize: parts.dictSize });
  } catch (e) {
    // The plugin names itself ('topk: field k ...'); the user needs the file that said so.
    if (e instanceof DictlearnError && !e.message.startsWith(configSource)) {
      throw new DictlearnError(configSource, `architecture '${parts.architecture}': ${e.message}`);
    }
    throw e;
  }
  for (const [name, shape] of Object.entries(want)) {
    const p = parts.params[name];
    if (!p)
      throw new DictlearnError(
        source,
        `architecture '${arch.name}' needs parameter '${name}' ${fmtShape(shape)}`,
      );
    if (p.shape.length !== shape.length || p.shape.some((d, i) => d !== shape[i])) {
      throw new DictlearnError(
        source,
        `parameter '${name}' is ${fmtShape(p.shape)}, expected ${fmtShape(shape)}`,
      );
    }
    const bad = p.values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new DictlearnError(
        source,
        `parameter '${name}' holds a non-finite value (${p.values[bad]}) at flat index ${bad}`,
      );
    }
  }
  for (const name of Object.keys(parts.params)) {
    if (!(name in want))
      throw new DictlearnError(source, `unexpected parameter '${name}' for architecture '${arch.name}'`);
  }
  return arch;
}

/** Builds a `Dictionary` from parts (the architecture must be registered). */
export function dictionaryFromParts(
  parts: DictionaryParts,
  source: string,
  options: { backend?: string; configSource?: string } = {},
): Dictionary {
  const arch = checkParts(parts, source, options.configSource);
  const params: Params = {};
  try {
    for (const [name, p] of Object.entries(parts.params)) {
      params[name] = tensor(p.values, p.shape, { backend: options.backend });
    }
    return new Dictionary(
      arch,
      params,
      { activationDim: parts.activationDim, dictSize: parts.dictSize },
      { scale: parts.scale, training: parts.training },
    );
  } catch (e) {
    // The dictionary owns the tensors once built; on failure they are ours to free.
    for (const t of Object.values(params) as Tensor[]) t.dispose();
    throw e;
  }
}

/** A dictionary's architecture, sizes and parameters as plain data. */
export async function partsFromDictionary(dict: Dictionary): Promise<DictionaryParts> {
  const config: DictionaryConfig = dict.config();
  const params: Record<string, HostParam> = {};
  for (const [name, t] of Object.entries(dict.params)) {
    params[name] = { shape: [...t.shape], values: Float32Array.from((await t.data()) as Float32Array) };
  }
  return {
    architecture: config.architecture.name,
    config: config.architecture.config as Record<string, unknown>,
    packageName: config.architecture.package,
    activationDim: dict.activationDim,
    dictSize: dict.dictSize,
    params,
    scale: dict.scale,
    training: dict.training,
  };
}
