/**
 * Side-effect entry: registers the source factories `synthetic`, `npy` and `safetensors` in the
 * plugin registry, so the CLI (and `findPlugin<SourceFactory>('source', name)`) finds them.
 *
 * ```ts
 * import '@dictlearn/buffer/register';
 * import { findPlugin, type SourceFactory } from '@dictlearn/core';
 * const source = await findPlugin<SourceFactory>('source', 'synthetic')!.create({ dim: 64, seed: 1 });
 * ```
 * @packageDocumentation
 */
import { registerPlugin } from '@dictlearn/core';
import { npySourceFactory, safetensorsSourceFactory, syntheticSourceFactory } from './factories.js';

/** The factories this entry registered, by name. */
export const registeredSources = {
  /** `synthetic`: a `SyntheticSource`. */
  synthetic: registerPlugin('source', 'synthetic', syntheticSourceFactory),
  /** `npy`: an `NpySource` over `files`. */
  npy: registerPlugin('source', 'npy', npySourceFactory),
  /** `safetensors`: a `SafetensorsSource` over `files`. */
  safetensors: registerPlugin('source', 'safetensors', safetensorsSourceFactory),
};
