export * from './clip.js';
export * from './create.js';
export * from './elementwise.js';
export * from './indexing.js';
export * from './matmul.js';
export * from './random.js';
export * from './reduce.js';
export * from './shape-ops.js';
