import { packageBuild } from '../../tsup.config.base.js';

export default packageBuild({ main: 'src/main.ts' }, { dts: false, banner: { js: '#!/usr/bin/env node' } });
