/** Element types a tensor can hold. Comparisons return float32 masks (1 or 0). */
export type DType = 'float32' | 'int32';

/** Host arrays a tensor's values are read into. */
export type TensorValues = Float32Array | Int32Array;

/** Host arrays a backend may store values in (float64 only in a backend's high-precision mode). */
export type HostArray = Float32Array | Float64Array | Int32Array;

/** A shape: one non-negative integer per axis; `[]` is a scalar. */
export type Shape = readonly number[];

/** Nested arrays of numbers, as accepted by {@link tensor} and returned by `Tensor.array()`. */
export type NestedArray = number | NestedArray[];
