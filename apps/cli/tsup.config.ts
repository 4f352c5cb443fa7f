import { packageBuild } from '../../tsup.config.base.js';

export default packageBuild(
  { main: 'src/main.ts', bench: 'src/commands/bench.ts' },
  { banner: { js: '#!/usr/bin/env node' } },
);
