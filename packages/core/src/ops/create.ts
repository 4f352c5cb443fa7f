import { readyBackend } from '../backend.js';
import { fromHost, runOp } from '../engine.js';
import { check, DictlearnError, fmtShape } from '../errors.js';
import { checkShape, sizeOf } from '../shape.js';
import type { Tensor } from '../tensor.js';
import type { DType, HostArray, NestedArray, Shape } from '../types.js';

/** Where and how to create a tensor. */
export interface CreateOptions {
  /** Element type (default float32, or int32 for an Int32Array). */
  dtype?: DType;
  /** Backend name (default: the current backend). */
  backend?: string;
}

function flatten(values: NestedArray, shape: number[], depth: number, out: number[]): void {
  if (Array.isArray(values)) {
    if (shape.length === depth) shape.push(values.length);
    else if (shape[depth] !== values.length) {
      throw new DictlearnError(
        'tensor',
        `ragged nested array: axis ${depth} has lengths ${shape[depth]} and ${values.length}`,
      );
    }
    for (const v of values) flatten(v, shape, depth + 1, out);
  } else {
    if (depth !== shape.length) throw new DictlearnError('tensor', `ragged nested array at depth ${depth}`);
    if (typeof values !== 'number')
      throw new DictlearnError('tensor', `expected numbers, got ${typeof values}`);
    out.push(values);
  }
}

/**
 * Creates a tensor from values: a nested array (shape inferred), or a flat array/typed array
 * with an explicit shape. Values are copied.
 */
export function tensor(
  values: NestedArray | ArrayLike<number>,
  shape?: Shape,
  options: CreateOptions = {},
): Tensor {
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (
    ArrayBuffer.isView(values) ||
    (Array.isArray(values) && shape !== undefined && !values.some(Array.isArray))
  ) {
    flat = values as ArrayLike<number>;
    inferred = shape ? [...shape] : [flat.length];
  } else if (typeof values === 'number') {
    flat = [values];
    inferred = [];
  } else {
    const out: number[] = [];
    inferred = [];
    flatten(values as NestedArray, inferred, 0, out);
    flat = out;
  }
  const finalShape = shape ? [...shape] : inferred;
  checkShape('tensor', finalShape);
  check(
    sizeOf(finalShape) === flat.length,
    'tensor',
    () => `${flat.length} values do not fill shape ${fmtShape(finalShape)} (${sizeOf(finalShape)} elements)`,
  );
  const dtype = options.dtype ?? (values instanceof Int32Array ? 'int32' : 'float32');
  if (dtype !== 'float32' && dtype !== 'int32') {
    throw new DictlearnError('tensor', `unknown dtype '${String(dtype)}'; expected 'float32' or 'int32'`);
  }
  let host: HostArray;
  if (dtype === 'int32') {
    host = Int32Array.from(flat, (v) => {
      if (!Number.isInteger(v))
        throw new DictlearnError('tensor', `int32 tensor given non-integer value ${v}`);
      return v;
    });
  } else host = values instanceof Float32Array ? values : Float32Array.from(flat);
  return fromHost(host, finalShape, dtype, options.backend);
}

/** A 0-d tensor. */
export function scalar(value: number, options: CreateOptions = {}): Tensor {
  return tensor([value], [], options);
}

/** A tensor of `shape` filled with `value`. */
export function fill(shape: Shape, value: number, options: CreateOptions = {}): Tensor {
  checkShape('fill', shape);
  const dtype = options.dtype ?? 'float32';
  if (dtype === 'int32')
    check(Number.isInteger(value), 'fill', () => `int32 fill value must be an integer, got ${value}`);
  return runOp('fill', [], {
    shape: [...shape],
    value,
    dtype,
    backend: readyBackend(options.backend, 'fill').name,
  })[0];
}

/** A tensor of zeros. */
export function zeros(shape: Shape, options: CreateOptions = {}): Tensor {
  return fill(shape, 0, options);
}

/** A tensor of ones. */
export function ones(shape: Shape, options: CreateOptions = {}): Tensor {
  return fill(shape, 1, options);
}

/** Zeros of `t`'s shape, dtype and backend. */
export function zerosLike(t: Tensor): Tensor {
  return fill(t.shape, 0, { dtype: t.dtype, backend: t.backend });
}

/** Ones of `t`'s shape, dtype and backend. */
export function onesLike(t: Tensor): Tensor {
  return fill(t.shape, 1, { dtype: t.dtype, backend: t.backend });
}

/** `[start, start+step, ...)` up to `stop` (exclusive), like numpy's arange. Default dtype int32. */
export function arange(start: number, stop: number, step = 1, options: CreateOptions = {}): Tensor {
  check(
    step !== 0 && Number.isFinite(step),
    'arange',
    () => `step must be a non-zero finite number, got ${step}`,
  );
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const dtype = options.dtype ?? 'int32';
  if (dtype === 'int32') {
    check(
      Number.isInteger(start) && Number.isInteger(step),
      'arange',
      () => `int32 arange needs integer start and step, got ${start}, ${step}`,
    );
  }
  return runOp('arange', [], {
    start,
    step,
    n,
    dtype,
    backend: readyBackend(options.backend, 'arange').name,
  })[0];
}

/** Copies a tensor to another backend (returns a new tensor; the input is left as is). */
export async function toBackend(t: Tensor, backend: string): Promise<Tensor> {
  const values = await t.data();
  return fromHost(values, t.shape, t.dtype, backend);
}
