import { type Backend, type BackendData, findBackend } from './backend.js';
import { DictlearnError } from './errors.js';
import type { RandomPurpose } from './random.js';
import type { DType } from './types.js';

/** A tensor as a kernel sees it: the backend's data handle plus shape and dtype. */
export interface KernelTensor {
  /** The backend's handle to the values. */
  readonly data: BackendData;
  /** Shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
}

/** What a kernel returns per output. Returning an input's `data` makes the output share its storage. */
export interface KernelOutput {
  /** The backend's handle to the new values (or an input's, to share its storage). */
  readonly data: BackendData;
  /** Shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/** Attributes of an op call (axes, flags, scalars), untyped: see {@link OpAttrs} for each op's. */
export type Attrs = Record<string, unknown>;

/** An op without attributes. */
export type NoAttrs = Record<string, never>;

/** Attributes of ops whose kernels allocate their output from the broadcast or computed `shape`. */
export type ShapeAttrs = {
  /** Output shape. */
  shape: number[];
};

/** Attributes of a reduction over normalised axes. */
export type ReduceAttrs = {
  /** Axes reduced over, normalised (non-negative, sorted, unique). */
  axes: number[];
  /** Whether reduced axes stay as size 1. */
  keepDims: boolean;
  /** Output shape. */
  shape: number[];
};

/** Attributes of the random ops (Philox stream; see `random.ts`). */
export type RandomAttrs = {
  /** Output shape. */
  shape: number[];
  /** Seed. */
  seed: number;
  /** Sub-stream. */
  stream: number;
  /** Key domain of the draw. */
  purpose?: RandomPurpose;
  /** Backend the tensor is created on. */
  backend: string;
};

/** Attributes of a unary elementwise op with no parameter. */
export type Unary = NoAttrs;

/**
 * Every op core dispatches, by name, with the attributes its kernel receives. Op names and
 * attribute bags of {@link registerKernel} and {@link runOp} are checked against it, so a typo
 * in either is a compile error.
 *
 * Plugins that define their own ops add them by declaration merging:
 *
 * ```ts
 * declare module '@dictlearn/core' {
 *   interface OpAttrs {
 *     myFusedEncode: { k: number; shape: number[] };
 *   }
 * }
 * ```
 */
export interface OpAttrs {
  /** Creation: a constant. */
  fill: {
    /** Output shape. */
    shape: number[];
    /** The constant. */
    value: number;
    /** Element type of the output. */
    dtype: DType;
    /** Backend the tensor is created on. */
    backend: string;
  };
  /** Creation: an arithmetic sequence of `n` values. */
  arange: {
    /** First value. */
    start: number;
    /** Difference between consecutive values. */
    step: number;
    /** Number of values. */
    n: number;
    /** Element type of the output. */
    dtype: DType;
    /** Backend the tensor is created on. */
    backend: string;
  };
  /** Creation: uniform values in [low, high). */
  randomUniform: RandomAttrs & {
    /** Lower bound (inclusive). */
    low: number;
    /** Upper bound (exclusive). */
    high: number;
  };
  /** Creation: normal values. */
  randomNormal: RandomAttrs & {
    /** Mean. */
    mean: number;
    /** Standard deviation. */
    std: number;
  };
  /** Creation: random rows of L2 norm `norm`. */
  randomUnitRows: RandomAttrs & {
    /** L2 norm of each row. */
    norm: number;
  };
  /** −x. */
  neg: Unary;
  /** |x|. */
  abs: Unary;
  /** Sign. */
  sign: Unary;
  /** x². */
  square: Unary;
  /** √x. */
  sqrt: Unary;
  /** eˣ. */
  exp: Unary;
  /** ln x. */
  log: Unary;
  /** xᵖ. */
  pow: {
    /** The exponent. */
    p: number;
  };
  /** max(x, 0). */
  relu: Unary;
  /** 1 where x > threshold. */
  step: {
    /** Values above it give 1. */
    threshold: number;
  };
  /** dtype conversion. */
  cast: {
    /** Element type of the output. */
    dtype: DType;
  };
  /** a + b. */
  add: ShapeAttrs & {
    /**
     * The kernel may write the sum over a, which has the output's shape and dtype and which the
     * caller owns (the backward pass summing gradients); ignored otherwise.
     */
    inPlace?: boolean;
  };
  /** a − b. */
  sub: ShapeAttrs;
  /** a · b. */
  mul: ShapeAttrs & {
    /** As add's: the kernel may write the product over a (the caller owns it). */
    inPlace?: boolean;
  };
  /** a / b. */
  div: ShapeAttrs;
  /** Elementwise maximum. */
  maximum: ShapeAttrs;
  /** Elementwise minimum. */
  minimum: ShapeAttrs;
  /** a > b. */
  greater: ShapeAttrs;
  /** a ≥ b. */
  greaterEqual: ShapeAttrs;
  /** a < b. */
  less: ShapeAttrs;
  /** a ≤ b. */
  lessEqual: ShapeAttrs;
  /** a = b. */
  equal: ShapeAttrs;
  /** a ≠ b. */
  notEqual: ShapeAttrs;
  /** cond ? a : b. */
  where: ShapeAttrs;
  /** dy where x > 0 (composite). */
  reluGrad: NoAttrs;
  /** relu(x + b) (composite, with a gradient rule). */
  biasRelu: NoAttrs;
  /** Sum. */
  sum: ReduceAttrs;
  /** Mean (composite). */
  mean: ReduceAttrs;
  /** Maximum. */
  max: ReduceAttrs;
  /** Minimum. */
  min: ReduceAttrs;
  /** Σ|x| (composite). */
  l1Norm: ReduceAttrs;
  /** √Σx² (composite). */
  l2Norm: ReduceAttrs;
  /** Index of the maximum along `axis`. */
  argmax: {
    /** The axis. */
    axis: number;
    /** Whether the reduced axis stays as size 1. */
    keepDims: boolean;
    /** Output shape. */
    shape: number[];
  };
  /** (a − b)·s for same-shape a, b and a one-element s (composite). */
  scaledDifference: {
    /** The kernel may write the result over a (the caller owns it). */
    inPlace?: boolean;
  };
  /** Σ (a − b)² over all elements (composite). */
  sumSquaredDifference: NoAttrs;
  /** Count of NaN and ±Inf (composite). */
  countNonFinite: NoAttrs;
  /** op(A)·op(B). */
  matmul: {
    /** Whether A is transposed. */
    transA: boolean;
    /** Whether B is transposed. */
    transB: boolean;
    /** Output shape. */
    shape: number[];
  };
  /** relu(x·op(W) + b) (composite, with a gradient rule). */
  linearBiasRelu: {
    /** Whether B is transposed. */
    transB: boolean;
    /** Output shape. */
    shape: number[];
  };
  /** [relu(x·op(W) + b), its column sums] (composite, with a gradient rule through `reluGradRowSum`). */
  linearBiasReluSum: {
    /** Whether B is transposed. */
    transB: boolean;
    /** Shape of the first output, [B, F]. */
    shape: number[];
  };
  /**
   * The ReLU SAE's forward pass (composite, with a gradient rule through `reluDecodeGrad`):
   * relu(x·op(W) + b), its column sums, and that times W_dec plus b_dec.
   */
  linearBiasReluSumDecode: {
    /** Whether the encoder's W is transposed. */
    transB: boolean;
    /** Shape of the first output, [B, F]. */
    shape: number[];
  };
  /** The backward of `linearBiasReluSumDecode` (composite): dPre = (dX̂·W_decᵀ + row)·[f > 0] and its column sums. */
  reluDecodeGrad: {
    /** The caller gives f up: the kernel may write the first output over it. */
    inPlace: boolean;
  };
  /** [(dF + row)·[f > 0], its column sums]: the ReLU encoder's backward (composite). */
  reluGradRowSum: {
    /** The caller gives dF up: the kernel may write the first output over it. */
    inPlace: boolean;
  };
  /** Axis permutation. */
  transpose: {
    /** The permutation of the axes. */
    perm: number[];
    /** Output shape. */
    shape: number[];
  };
  /** A contiguous block. */
  slice: {
    /** First index per axis. */
    begin: number[];
    /** Extent per axis. */
    size: number[];
    /** Output shape. */
    shape: number[];
  };
  /** Zero padding, `[before, after]` per axis. */
  pad: {
    /** `[before, after]` per axis. */
    paddings: [number, number][];
    /** Output shape. */
    shape: number[];
  };
  /** Join along `axis`. */
  concat: {
    /** The axis. */
    axis: number;
    /** Output shape. */
    shape: number[];
  };
  /** Broadcast (composite, with a gradient rule). */
  broadcastTo: ShapeAttrs;
  /** Rows by index. */
  gatherRows: ShapeAttrs;
  /** Rows added by index. */
  scatterAddRows: ShapeAttrs;
  /** Columns by index. */
  indexColumns: ShapeAttrs;
  /** take_along_axis on the last axis. */
  gatherLast: ShapeAttrs;
  /** Inverse of gatherLast into `width` columns. */
  scatterLast: {
    /** Size of the last axis of the output. */
    width: number;
    /** Output shape. */
    shape: number[];
  };
  /** The k largest along the last axis. */
  topk: {
    /** How many largest values to keep. */
    k: number;
    /** Output shape. */
    shape: number[];
  };
  /** The k largest of relu(x·op(W) + b) per row as values and indices (composite, with a gradient rule). */
  topkEncode: {
    /** Features kept per row. */
    k: number;
    /** Whether W is stored [F, d]. */
    transB: boolean;
    /** Shape of each output, [B, k]. */
    shape: number[];
  };
  /** The B·k largest of relu(x·op(W) + b) over the batch as values, features and rows (composite, with a gradient rule). */
  batchTopkEncode: {
    /** Features kept per row on average (B·k in all). */
    k: number;
    /** Whether W is stored [F, d]. */
    transB: boolean;
    /** Shape of each output, [B·k]. */
    shape: number[];
  };
  /** Σ values·W[indices] per row, plus an optional bias (composite, with a gradient rule). */
  sparseDecode: {
    /** Output shape, [B, d]. */
    shape: number[];
    /** Whether a bias [d] follows W among the inputs. */
    bias: boolean;
    /** Whether the entries' rows come last among the inputs (the batch layout). */
    rows: boolean;
  };
  /** y[row]·W[index] per entry (composite, with a gradient rule). */
  sparseDot: {
    /** Output shape, the indices' shape. */
    shape: number[];
    /** Whether the entries' rows come last among the inputs (the batch layout). */
    rows: boolean;
  };
  /** Scatter-add of values·y[row] into row index of a [F, d] zero matrix (composite, with a gradient rule). */
  sparseOuter: {
    /** Output shape, [F, d]. */
    shape: number[];
    /** Whether the entries' rows come last among the inputs (the batch layout). */
    rows: boolean;
  };
  /** Joint L2 norm clipping (composite, not differentiable). */
  clipByGlobalNorm: {
    /** Largest global L2 norm allowed. */
    maxNorm: number;
    /** The kernel may write the scaled tensors over the inputs (the caller owns them). */
    inPlace?: boolean;
  };
  /** One Adam step (composite). */
  adamUpdate: {
    /** Learning rate. */
    lr: number;
    /** β₁, the first-moment decay. */
    beta1: number;
    /** β₂, the second-moment decay. */
    beta2: number;
    /** ε, added to the root of the (bias-corrected) second moment. */
    eps: number;
    /** Adam step t (from 1). */
    step: number;
    /** Bias correction 1 − β₁ᵗ. */
    bc1: number;
    /** Bias correction 1 − β₂ᵗ. */
    bc2: number;
    /** The kernel may write p, m, v over the inputs' memory (the caller owns them). */
    inPlace?: boolean;
  };
  /** Rows to unit L2 norm (composite). */
  normalizeRows: {
    /** The kernel may write the rows over w's memory (the caller owns w). */
    inPlace?: boolean;
  };
  /** ConstrainedAdam's projection (composite). */
  removeParallelComponent: {
    /** The kernel may write the result over g's memory (the caller owns g). */
    inPlace?: boolean;
  };
}

/** The name of an op a kernel can be registered for: core's ops and those plugins add to {@link OpAttrs}. */
export type OpName = keyof OpAttrs & string;

/** A backend's implementation of op `Op`; `attrs` is typed by {@link OpAttrs}. */
export type Kernel<Op extends OpName = OpName> = (
  inputs: KernelTensor[],
  attrs: OpAttrs[Op],
  backend: Backend,
) => KernelOutput | KernelOutput[];

/** Options of {@link registerKernel}. */
export interface RegisterKernelOptions {
  /** Replace a kernel already registered for this op on this backend (default false: that throws). */
  replace?: boolean;
}

// The table holds kernels of every op; registerKernel types each entry.
type AnyKernel = Kernel<any>;

const TABLES_KEY = Symbol.for('dictlearn.kernels');

let cached: WeakMap<Backend, Map<string, AnyKernel>> | undefined;
/**
 * Kernels by backend instance, on `globalThis` like the plugin registry, so two copies of core
 * in one process (a bundler duplicating it) find the kernels a backend package registered.
 * Keyed by the instance, never by name: a second backend created under a taken name gets its
 * own table and cannot touch the live one's.
 */
function tables(): WeakMap<Backend, Map<string, AnyKernel>> {
  // Every op dispatch looks here; the global slot never changes once set, so keep it at hand.
  if (cached) return cached;
  const g = globalThis as unknown as Record<symbol, WeakMap<Backend, Map<string, AnyKernel>> | undefined>;
  let t = g[TABLES_KEY];
  if (!t) {
    t = new WeakMap();
    Object.defineProperty(g, TABLES_KEY, {
      value: t,
      enumerable: false,
      configurable: false,
      writable: false,
    });
  }
  cached = t;
  return t;
}

function resolve(where: string, backend: Backend | string): Backend {
  if (typeof backend !== 'string') return backend;
  const found = findBackend(backend);
  if (!found) {
    throw new DictlearnError(
      where,
      `no backend named '${backend}' is registered; pass the backend instance (kernels belong to an instance)`,
    );
  }
  return found;
}

/**
 * Registers the kernel of op `op` on a backend instance (or the registered backend of that
 * name). A kernel for an op that also has a reference composition in core is a fused kernel:
 * it replaces the composition, except while gradients are recorded through an op that has no
 * gradient rule of its own (then the composition runs, so gradients flow through its parts).
 * A second kernel for the same op and backend throws unless `{ replace: true }`.
 */
export function registerKernel<Op extends OpName>(
  op: Op,
  backend: Backend | string,
  kernel: Kernel<Op>,
  options: RegisterKernelOptions = {},
): void {
  const b = resolve('registerKernel', backend);
  const all = tables();
  let table = all.get(b);
  if (!table) {
    table = new Map();
    all.set(b, table);
  }
  if (table.has(op) && !options.replace) {
    throw new DictlearnError(
      'registerKernel',
      `backend '${b.name}' already has a kernel for op '${op}'; pass { replace: true } to replace it`,
    );
  }
  table.set(op, kernel as AnyKernel);
}

/** Removes a backend's kernel for an op and returns it (undefined when it had none). */
export function unregisterKernel<Op extends OpName>(
  op: Op,
  backend: Backend | string,
): Kernel<Op> | undefined {
  const table = tables().get(resolve('unregisterKernel', backend));
  const k = table?.get(op);
  table?.delete(op);
  return k;
}

/** The kernel of an op on a backend instance (or the registered backend of that name), if it has one. */
export function getKernel<Op extends OpName>(op: Op, backend: Backend | string): Kernel<Op> | undefined {
  const b = typeof backend === 'string' ? findBackend(backend) : backend;
  return b ? tables().get(b)?.get(op) : undefined;
}

/** Ops a backend instance (or the registered backend of that name) has a kernel for. */
export function kernelsOf(backend: Backend | string): OpName[] {
  const b = typeof backend === 'string' ? findBackend(backend) : backend;
  return b ? ([...(tables().get(b)?.keys() ?? [])] as OpName[]) : [];
}
