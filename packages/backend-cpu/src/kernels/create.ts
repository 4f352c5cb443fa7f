import { type DType, RANDOM_OPS, randomValues } from '@dictlearn/core';
import { type CpuContext, out } from './context.js';

/** Registers fill, arange and the Philox random kernels. */
export function registerCreate(ctx: CpuContext): void {
  const sizeOf = (shape: number[]) => shape.reduce((p, d) => p * d, 1);
  ctx.kernel('fill', (_inputs, attrs) => {
    const shape = attrs.shape as number[];
    const dtype = attrs.dtype as DType;
    const dst = ctx.alloc(dtype, sizeOf(shape));
    if (attrs.value !== 0) dst.fill(attrs.value as number);
    return out(dst, shape, dtype);
  });
  ctx.kernel('arange', (_inputs, attrs) => {
    const n = attrs.n as number;
    const dtype = attrs.dtype as DType;
    const dst = ctx.alloc(dtype, n);
    const start = attrs.start as number;
    const step = attrs.step as number;
    for (let i = 0; i < n; i++) dst[i] = start + i * step;
    return out(dst, [n], dtype);
  });
  for (const op of RANDOM_OPS) {
    ctx.kernel(op, (_inputs, attrs) => {
      const values = randomValues(op, attrs);
      const dst = ctx.alloc('float32', values.length, false);
      dst.set(values);
      return out(dst, attrs.shape as number[], 'float32');
    });
  }
}
