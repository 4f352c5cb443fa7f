import { defineConfig, type Options } from 'tsup';

/**
 * The one build configuration every package uses: ESM, declarations, sourcemaps,
 * Node 20 target. A package passes only its entry points.
 */
export function packageBuild(entry: Record<string, string>, extra: Partial<Options> = {}) {
  return defineConfig({
    entry,
    format: ['esm'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    splitting: true,
    treeshake: true,
    ...extra,
  });
}
