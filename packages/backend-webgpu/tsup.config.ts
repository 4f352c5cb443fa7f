import { packageBuild } from '../../tsup.config.base.js';

export default packageBuild(
  { index: 'src/index.ts', register: 'src/register.ts' },
  { external: ['webgpu', 'koffi'] },
);
