import { defineConfig } from 'tsup';

// The examples are scripts, not a library: plain ESM for Node 20, no declarations, and the
// @dictlearn packages left as imports so they resolve to the built packages of the workspace.
export default defineConfig({
  entry: {
    'quick-start': 'src/quick-start.ts',
    'custom-architecture': 'src/custom-architecture.ts',
    'train-from-files': 'src/train-from-files.ts',
    'load-dictionary': 'src/load-dictionary.ts',
    'custom-backend': 'src/custom-backend.ts',
  },
  format: ['esm'],
  target: 'node20',
  clean: true,
  splitting: false,
  external: [/^@dictlearn\//],
});
