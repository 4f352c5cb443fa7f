import { packageBuild } from '../../tsup.config.base.js';

export default packageBuild(
  {
    index: 'src/index.ts',
    'testing/index': 'src/testing/index.ts',
    'wasm/index': 'src/wasm/index.ts',
    'threads/index': 'src/threads/index.ts',
  },
  { external: ['vitest'] },
);
