import { type DType, philoxNormal, philoxUniform, philoxUnitRows } from '@dictlearn/core';
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
  ctx.kernel('randomUniform', (_inputs, attrs) => {
    const shape = attrs.shape as number[];
    const values = philoxUniform(
      sizeOf(shape),
      attrs.seed as number,
      attrs.stream as number,
      attrs.low as number,
      attrs.high as number,
    );
    const dst = ctx.alloc('float32', values.length);
    dst.set(values);
    return out(dst, shape, 'float32');
  });
  ctx.kernel('randomUnitRows', (_inputs, attrs) => {
    const [rows, cols] = attrs.shape as number[];
    const values = philoxUnitRows(
      rows,
      cols,
      attrs.seed as number,
      attrs.stream as number,
      attrs.norm as number,
    );
    const dst = ctx.alloc('float32', values.length);
    dst.set(values);
    return out(dst, [rows, cols], 'float32');
  });
  ctx.kernel('randomNormal', (_inputs, attrs) => {
    const shape = attrs.shape as number[];
    const values = philoxNormal(
      sizeOf(shape),
      attrs.seed as number,
      attrs.stream as number,
      attrs.mean as number,
      attrs.std as number,
    );
    const dst = ctx.alloc('float32', values.length);
    dst.set(values);
    return out(dst, shape, 'float32');
  });
}
