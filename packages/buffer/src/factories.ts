import { type ActivationSource, closestName, DictlearnError, type SourceFactory } from '@dictlearn/core';
import { SyntheticSource, type SyntheticSourceOptions } from './synthetic.js';

type FieldKind = 'number' | 'integer' | 'string' | 'paths' | 'count' | 'boolean';

function opOf(name: string): string {
  return `source '${name}'`;
}

/**
 * Checks plain options (from a CLI flag or a config file) against `fields`: unknown fields,
 * missing required ones and wrong types are `DictlearnError`s naming the field. Numbers may be
 * given as numeric strings; `paths` accept an array of strings or one comma-separated string.
 */
function parseOptions(
  source: string,
  options: Record<string, unknown>,
  fields: Record<string, FieldKind>,
  required: string[] = [],
): Record<string, unknown> {
  const op = opOf(source);
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new DictlearnError(op, `options must be an object, got ${JSON.stringify(options)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(options)) {
    const kind = fields[key];
    if (!kind) {
      const near = closestName(key, Object.keys(fields));
      throw new DictlearnError(
        op,
        `unknown option '${key}'${near ? ` (did you mean '${near}'?)` : ''}; expected one of ${Object.keys(
          fields,
        )
          .map((k) => `'${k}'`)
          .join(', ')}`,
      );
    }
    if (raw === undefined) continue;
    out[key] = parseField(op, key, kind, raw);
  }
  for (const key of required) {
    if (out[key] === undefined) throw new DictlearnError(op, `option '${key}' is required`);
  }
  return out;
}

function parseField(op: string, key: string, kind: FieldKind, raw: unknown): unknown {
  const show = JSON.stringify(raw);
  switch (kind) {
    case 'boolean':
      if (raw === true || raw === 'true') return true;
      if (raw === false || raw === 'false') return false;
      throw new DictlearnError(op, `option '${key}' must be true or false, got ${show}`);
    case 'number':
    case 'integer':
    case 'count': {
      const v =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && raw.trim() !== ''
            ? raw.trim() === 'Infinity' && kind === 'count'
              ? Number.POSITIVE_INFINITY
              : Number(raw)
            : Number.NaN;
      if (kind === 'count' && v === Number.POSITIVE_INFINITY) return v;
      if (!Number.isFinite(v) || (kind !== 'number' && !Number.isSafeInteger(v))) {
        throw new DictlearnError(
          op,
          `option '${key}' must be ${kind === 'number' ? 'a number' : 'an integer'}, got ${show}`,
        );
      }
      return v;
    }
    case 'string':
      if (typeof raw !== 'string')
        throw new DictlearnError(op, `option '${key}' must be a string, got ${show}`);
      return raw;
    case 'paths': {
      const list = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()) : raw;
      if (
        !Array.isArray(list) ||
        list.length === 0 ||
        !list.every((p) => typeof p === 'string' && p !== '')
      ) {
        throw new DictlearnError(op, `option '${key}' must be a path or a list of paths, got ${show}`);
      }
      return list;
    }
  }
}

/** `synthetic`: {@link SyntheticSource} from its options (all optional). */
export const syntheticSourceFactory: SourceFactory = {
  name: 'synthetic',
  description:
    'synthetic activations with known ground-truth features (sparse_coding): dim, numFeatures, meanActive, decay, noise, correlation, correlationRank, coefficients, seed',
  create(options: Record<string, unknown>): ActivationSource {
    const o = parseOptions('synthetic', options, {
      dim: 'integer',
      numFeatures: 'integer',
      meanActive: 'number',
      decay: 'number',
      noise: 'number',
      correlation: 'number',
      correlationRank: 'integer',
      coefficients: 'string',
      seed: 'integer',
    });
    return new SyntheticSource(o as SyntheticSourceOptions);
  },
};

const FILE_FIELDS: Record<string, FieldKind> = {
  files: 'paths',
  dim: 'integer',
  epochs: 'count',
  shuffle: 'boolean',
  seed: 'integer',
  readBytes: 'integer',
  stripeBytes: 'integer',
};

/** `npy`: {@link NpySource} over `files` (required), with `dim`, `epochs`, `shuffle`, `seed`, `readBytes`, `stripeBytes`. */
export const npySourceFactory: SourceFactory = {
  name: 'npy',
  description:
    'activations in .npy files (float32/float16/float64, [rows, d]): files (required), dim, epochs, shuffle, seed, readBytes, stripeBytes',
  async create(options: Record<string, unknown>): Promise<ActivationSource> {
    const { files, ...rest } = parseOptions('npy', options, FILE_FIELDS, ['files']);
    const { NpySource } = await import('./files.js');
    return NpySource.open(files as string[], rest);
  },
};

/** `safetensors`: {@link SafetensorsSource} over `files` (required), with `key` and the options of `npy`. */
export const safetensorsSourceFactory: SourceFactory = {
  name: 'safetensors',
  description:
    'activations in safetensors files, one tensor each (F32/F16/BF16/F64, [rows, d]): files (required), key, dim, epochs, shuffle, seed, readBytes, stripeBytes',
  async create(options: Record<string, unknown>): Promise<ActivationSource> {
    const { files, ...rest } = parseOptions('safetensors', options, { ...FILE_FIELDS, key: 'string' }, [
      'files',
    ]);
    const { SafetensorsSource } = await import('./files.js');
    return SafetensorsSource.open(files as string[], rest);
  },
};
