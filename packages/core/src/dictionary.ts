import pkg from '../package.json' with { type: 'json' };
import { type ArchitecturePlugin, createArchitecture, type DictionarySizes, type Params } from './arch.js';
import type { DictionaryLike, ForwardOutput } from './dictionary-types.js';
import { keep, noGrad, scope } from './engine.js';
import { DictlearnError, fmtShape } from './errors.js';
import { tensor } from './ops/create.js';
import { add } from './ops/elementwise.js';
import type { Tensor } from './tensor.js';

/** The `config.json` written beside `sae.safetensors`. */
export interface DictionaryConfig {
  /** Always `'dictlearn'`. */
  format: 'dictlearn';
  /** Library version that wrote it. */
  version: string;
  /** Which architecture, and its hyper-parameters. */
  architecture: {
    /** Registry name. */
    name: string;
    /** The npm package providing it. */
    package: string;
    /** Hyper-parameters (the plugin factory's config). */
    config: object;
  };
  /** Width d. */
  activationDim: number;
  /** Features F. */
  dictSize: number;
  /**
   * Activation normalisation used in training (REFERENCE: s = √(mean‖x‖²)/√d); already folded
   * into the saved parameters, so the dictionary works on raw activations.
   */
  normalization: {
    /** The scale s (training ran on x / s). */
    scale: number;
    /** Always true: s is already folded into the saved parameters. */
    folded: true;
  } | null;
  /** Trainer settings and provenance (free-form, for people). */
  training?: Record<string, unknown>;
  /**
   * SHA-256 (hex) of the files saved beside this config, by file name (`sae.safetensors`):
   * written by {@link Dictionary.save}, verified by {@link Dictionary.load}. Configs written
   * before it existed have none and load unchecked.
   */
  sha256?: Record<string, string>;
}

/**
 * SHA-256 of `bytes` as 64 lowercase hex digits (Web Crypto, in Node ≥ 20 and browsers).
 * Throws a {@link DictlearnError} where no Web Crypto exists.
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const subtle = (
    globalThis as { crypto?: { subtle?: { digest(a: string, d: Uint8Array): Promise<ArrayBuffer> } } }
  ).crypto?.subtle;
  if (!subtle) throw new DictlearnError('sha256', 'no Web Crypto (crypto.subtle) in this runtime');
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Checks `bytes` (the file `path`, named `name` in the config's `sha256` map) against the
 * checksum recorded in `config`; a file with no recorded checksum passes. The error names the
 * file and both digests.
 */
export async function verifyChecksum(
  config: Pick<DictionaryConfig, 'sha256'>,
  name: string,
  bytes: Uint8Array,
  path: string,
): Promise<void> {
  const want = config.sha256?.[name];
  if (want === undefined) return;
  const got = await sha256Hex(bytes);
  if (got !== want) {
    throw new DictlearnError(
      path,
      `SHA-256 is ${got} but config.json records ${want}: the file was changed or corrupted after it was saved`,
    );
  }
}

/** The library version written into configs (from package.json, so releases keep it current). */
export const LIBRARY_VERSION: string = pkg.version;

/** File names of a saved dictionary. */
export const DICTIONARY_FILES = {
  /** The config (architecture, sizes, normalisation, provenance). */
  config: 'config.json',
  /** The parameters. */
  weights: 'sae.safetensors',
} as const;

/**
 * A trained sparse dictionary: an architecture plugin plus its parameters, working on raw
 * activations. `encode`, `decode`, `forward`; `save(dir)` writes `config.json` +
 * `sae.safetensors` atomically, `Dictionary.load(dir)` reads them back (the architecture is
 * looked up in the plugin registry).
 */
export class Dictionary implements DictionaryLike {
  /** The architecture. */
  readonly arch: ArchitecturePlugin<object>;
  /** Parameters for raw activations (owned by the dictionary). */
  readonly params: Params;
  /** Width d. */
  readonly activationDim: number;
  /** Features F. */
  readonly dictSize: number;
  /** The normalisation scale folded into the parameters (1 if none). */
  readonly scale: number;
  /** Free-form training provenance written to config.json. */
  readonly training: Record<string, unknown>;

  /**
   * Wraps parameters (checked against the architecture's shapes; the dictionary keeps them).
   * Use {@link Dictionary.fromTraining} for parameters trained on normalised activations.
   */
  constructor(
    arch: ArchitecturePlugin<object>,
    params: Params,
    sizes: DictionarySizes,
    options: { scale?: number; training?: Record<string, unknown> } = {},
  ) {
    const want = arch.paramShapes(sizes);
    for (const [name, shape] of Object.entries(want)) {
      const t = params[name];
      if (!t)
        throw new DictlearnError(
          'Dictionary',
          `architecture '${arch.name}' needs parameter '${name}' ${fmtShape(shape)}`,
        );
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new DictlearnError(
          'Dictionary',
          `parameter '${name}' is ${fmtShape(t.shape)}, expected ${fmtShape(shape)}`,
        );
      }
    }
    for (const name of Object.keys(params)) {
      if (!(name in want))
        throw new DictlearnError(
          'Dictionary',
          `unexpected parameter '${name}' for architecture '${arch.name}'`,
        );
    }
    this.arch = arch;
    this.params = Object.fromEntries(Object.entries(params).map(([k, t]) => [k, keep(t)]));
    this.activationDim = sizes.activationDim;
    this.dictSize = sizes.dictSize;
    this.scale = options.scale ?? 1;
    this.training = options.training ?? {};
  }

  /**
   * A dictionary for raw activations from parameters trained on x / scale: the scale is folded
   * into the parameters (REFERENCE "Training loop"). The training parameters are copied.
   */
  static fromTraining(
    arch: ArchitecturePlugin<object>,
    trainParams: Params,
    sizes: DictionarySizes,
    scale: number,
    training: Record<string, unknown> = {},
  ): Dictionary {
    const params = noGrad(() =>
      scope(() => {
        const folded = scale === 1 ? {} : arch.foldScale(trainParams, scale);
        const out: Params = {};
        for (const [k, t] of Object.entries(trainParams)) {
          const f = folded[k];
          out[k] = f ? f : copy(t);
        }
        return out;
      }),
    );
    return new Dictionary(arch, params, sizes, { scale, training });
  }

  #checkInput(x: Tensor, op: string): void {
    x.assertAlive(op);
    if (x.rank !== 2 || x.shape[1] !== this.activationDim || x.dtype !== 'float32') {
      throw new DictlearnError(
        op,
        `expected float32 activations [batch, ${this.activationDim}], got ${fmtShape(x.shape)} ${x.dtype}`,
      );
    }
  }

  /** Features f = encode(x): [B, d] → [B, F]. */
  encode(x: Tensor): Tensor {
    this.#checkInput(x, 'Dictionary.encode');
    return noGrad(() => this.arch.encode(this.params, x));
  }

  /** Reconstruction x̂ = decode(f): [B, F] → [B, d]. */
  decode(f: Tensor): Tensor {
    f.assertAlive('Dictionary.decode');
    if (f.rank !== 2 || f.shape[1] !== this.dictSize) {
      throw new DictlearnError(
        'Dictionary.decode',
        `expected features [batch, ${this.dictSize}], got ${fmtShape(f.shape)}`,
      );
    }
    return noGrad(() => this.arch.decode(this.params, f));
  }

  /** `{ reconstruction, features }` of a batch. */
  forward(x: Tensor, _options: { outputFeatures: true } = { outputFeatures: true }): ForwardOutput {
    const features = this.encode(x);
    return { reconstruction: this.decode(features), features };
  }

  /** Decoder directions [F, d]. */
  decoderRows(): Tensor {
    return noGrad(() => this.arch.decoderRows(this.params));
  }

  /** The config written to config.json. */
  config(): DictionaryConfig {
    return {
      format: 'dictlearn',
      version: LIBRARY_VERSION,
      architecture: { name: this.arch.name, package: this.arch.packageName, config: this.arch.config },
      activationDim: this.activationDim,
      dictSize: this.dictSize,
      normalization: this.scale === 1 ? null : { scale: this.scale, folded: true },
      training: this.training,
    };
  }

  /**
   * Writes `config.json` and `sae.safetensors` into `dir` (created if needed); the config records
   * the SHA-256 of the weights. Each file is written to a temporary name and renamed, so an
   * existing dictionary is never half-overwritten.
   */
  async save(dir: string): Promise<void> {
    const { ensureDir, joinPath } = await import('./io/dirs.js');
    const { writeFileAtomic } = await import('./io/fs.js');
    const { encodeSafetensors } = await import('./io/safetensors.js');
    await ensureDir(dir);
    const entries: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of Object.entries(this.params)) {
      entries[name] = { dtype: 'F32', shape: [...t.shape], data: (await t.data()) as Float32Array };
    }
    const bytes = encodeSafetensors(entries, { format: 'dictlearn', architecture: this.arch.name });
    // The config records the weights' checksum, so load can tell a changed or corrupted file.
    const config: DictionaryConfig = {
      ...this.config(),
      sha256: { [DICTIONARY_FILES.weights]: await sha256Hex(bytes) },
    };
    await writeFileAtomic(joinPath(dir, DICTIONARY_FILES.weights), bytes);
    await writeFileAtomic(joinPath(dir, DICTIONARY_FILES.config), `${JSON.stringify(config, null, 2)}\n`);
  }

  /**
   * Reads a dictionary saved by {@link save}. Errors name the file and field: missing or
   * truncated files, weights whose SHA-256 differs from the one config.json records, a foreign
   * config, an unregistered architecture (with the package to install), missing or mis-shaped
   * parameters, non-finite weights.
   */
  static async load(dir: string, options: { backend?: string } = {}): Promise<Dictionary> {
    const { readTextFile, joinPath } = await import('./io/dirs.js');
    const { readFileBytes } = await import('./io/fs.js');
    const { decodeSafetensors } = await import('./io/safetensors.js');
    const configPath = joinPath(dir, DICTIONARY_FILES.config);
    const config = parseConfig(await readTextFile(configPath), configPath);
    const sizes = { activationDim: config.activationDim, dictSize: config.dictSize };
    let arch: ArchitecturePlugin<object>;
    let want: Record<string, number[]>;
    try {
      arch = createArchitecture(
        config.architecture.name,
        config.architecture.config,
        config.architecture.package,
        configPath,
      );
      want = arch.paramShapes(sizes);
    } catch (e) {
      // A plugin's config error names the plugin; the user needs the file that holds the config.
      if (e instanceof DictlearnError && !e.message.startsWith(configPath)) {
        throw new DictlearnError(configPath, `field 'architecture.config': ${e.message}`);
      }
      throw e;
    }
    const weightsPath = joinPath(dir, DICTIONARY_FILES.weights);
    const bytes = await readFileBytes(weightsPath);
    await verifyChecksum(config, DICTIONARY_FILES.weights, bytes, weightsPath);
    const file = decodeSafetensors(bytes, weightsPath);
    const params: Params = {};
    try {
      for (const [name, shape] of Object.entries(want)) {
        const entry = file.tensors[name];
        if (!entry)
          throw new DictlearnError(
            weightsPath,
            `missing tensor '${name}' ${fmtShape(shape)} for architecture '${arch.name}'`,
          );
        if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
          throw new DictlearnError(
            weightsPath,
            `tensor '${name}' is ${fmtShape(entry.shape)}, expected ${fmtShape(shape)}`,
          );
        }
        const values = Float32Array.from(entry.data as ArrayLike<number>);
        const bad = values.findIndex((v) => !Number.isFinite(v));
        if (bad >= 0)
          throw new DictlearnError(
            weightsPath,
            `tensor '${name}' holds a non-finite value (${values[bad]}) at flat index ${bad}`,
          );
        params[name] = tensor(values, shape, { backend: options.backend });
      }
      return new Dictionary(arch, params, sizes, {
        scale: config.normalization?.scale ?? 1,
        training: config.training ?? {},
      });
    } catch (e) {
      for (const t of Object.values(params)) t.dispose();
      throw e;
    }
  }

  /** Frees the parameters. */
  dispose(): void {
    for (const t of Object.values(this.params)) t.dispose();
  }
}

/** A fresh tensor with the same values (a dictionary's parameters must not alias the trainer's). */
function copy(t: Tensor): Tensor {
  return add(t, 0);
}

/** Parses and checks a config.json; errors name the file and the field. */
export function parseConfig(text: string, path: string): DictionaryConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new DictlearnError(
      path,
      `not valid JSON (${(e as Error).message}); expected a dictlearn config.json`,
    );
  }
  const c = raw as Partial<DictionaryConfig>;
  if (!c || typeof c !== 'object' || c.format !== 'dictlearn') {
    throw new DictlearnError(
      path,
      `field 'format' must be 'dictlearn' (is this a dictlearn dictionary? dictionary_learning, SAELens and sparsify files load with @dictlearn/formats)`,
    );
  }
  if (!c.architecture || typeof c.architecture.name !== 'string') {
    throw new DictlearnError(path, "field 'architecture.name' is missing");
  }
  for (const f of ['activationDim', 'dictSize'] as const) {
    if (!Number.isInteger(c[f]) || (c[f] as number) <= 0) {
      throw new DictlearnError(path, `field '${f}' must be a positive integer, got ${JSON.stringify(c[f])}`);
    }
  }
  if (
    c.sha256 !== undefined &&
    (c.sha256 === null ||
      typeof c.sha256 !== 'object' ||
      Array.isArray(c.sha256) ||
      Object.values(c.sha256).some((v) => typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)))
  ) {
    throw new DictlearnError(
      path,
      `field 'sha256' must map file names to 64 hex digits, got ${JSON.stringify(c.sha256)}`,
    );
  }
  if (c.normalization && !(typeof c.normalization.scale === 'number' && c.normalization.scale > 0)) {
    throw new DictlearnError(
      path,
      `field 'normalization.scale' must be a positive number, got ${JSON.stringify(c.normalization.scale)}`,
    );
  }
  return c as DictionaryConfig;
}
