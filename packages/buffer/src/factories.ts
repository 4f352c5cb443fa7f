import {
  type ActivationSource,
  parseSourceOptions,
  type SourceFactory,
  type SourceOptionKind,
} from '@dictlearn/core';
import { SyntheticSource, type SyntheticSourceOptions } from './synthetic.js';

/** `synthetic`: {@link SyntheticSource} from its options (all optional). */
export const syntheticSourceFactory: SourceFactory = {
  name: 'synthetic',
  description:
    'synthetic activations with known ground-truth features (sparse_coding): dim, numFeatures, meanActive, decay, noise, correlation, correlationRank, coefficients, seed, threads',
  create(options: Record<string, unknown>): ActivationSource {
    const o = parseSourceOptions('synthetic', options, {
      dim: 'integer',
      numFeatures: 'integer',
      meanActive: 'number',
      decay: 'number',
      noise: 'number',
      correlation: 'number',
      correlationRank: 'integer',
      coefficients: 'string',
      seed: 'integer',
      threads: 'integer',
    });
    return new SyntheticSource(o as SyntheticSourceOptions);
  },
};

const FILE_FIELDS: Record<string, SourceOptionKind> = {
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
    const { files, ...rest } = parseSourceOptions('npy', options, FILE_FIELDS, ['files']);
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
    const { files, ...rest } = parseSourceOptions('safetensors', options, { ...FILE_FIELDS, key: 'string' }, [
      'files',
    ]);
    const { SafetensorsSource } = await import('./files.js');
    return SafetensorsSource.open(files as string[], rest);
  },
};
