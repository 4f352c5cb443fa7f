import { installGradHelpers } from '../engine.js';
import { onesLike, zerosLike } from './create.js';
import { add } from './elementwise.js';

export * from './clip.js';
export * from './create.js';
export * from './elementwise.js';
export * from './indexing.js';
export * from './matmul.js';
export * from './random.js';
export * from './reduce.js';
export * from './shape-ops.js';

installGradHelpers({ onesLike, zerosLike, add });
