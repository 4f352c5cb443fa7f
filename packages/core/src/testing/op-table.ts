import type { Attrs } from '../engine.js';
import * as ops from '../ops/index.js';
import { adamUpdate, normalizeRows, removeParallelComponent } from '../optim.js';
import type { Tensor } from '../tensor.js';

/** Runs one op by its fixture name on tensors, returning every output. */
export type OpRunner = (inputs: Tensor[], attrs: Attrs) => Tensor[];

const one =
  (f: (inputs: Tensor[], attrs: Attrs) => Tensor): OpRunner =>
  (i, a) => [f(i, a)];
type Axes = number | number[] | undefined;
const axes = (a: Attrs): Axes => (a.axes === null ? undefined : (a.axes as Axes));

/**
 * Every core op under the name the fixtures use. The conformance suite and the gradient
 * checker call ops through this table, so one fixture case exercises one public function.
 */
export const OP_TABLE: Record<string, OpRunner> = {
  neg: one(([x]) => ops.neg(x)),
  abs: one(([x]) => ops.abs(x)),
  sign: one(([x]) => ops.sign(x)),
  square: one(([x]) => ops.square(x)),
  sqrt: one(([x]) => ops.sqrt(x)),
  exp: one(([x]) => ops.exp(x)),
  log: one(([x]) => ops.log(x)),
  pow: one(([x], a) => ops.pow(x, a.p as number)),
  relu: one(([x]) => ops.relu(x)),
  step: one(([x], a) => ops.step(x, a.threshold as number)),
  add: one(([a, b]) => ops.add(a, b)),
  sub: one(([a, b]) => ops.sub(a, b)),
  mul: one(([a, b]) => ops.mul(a, b)),
  div: one(([a, b]) => ops.div(a, b)),
  maximum: one(([a, b]) => ops.maximum(a, b)),
  minimum: one(([a, b]) => ops.minimum(a, b)),
  greater: one(([a, b]) => ops.greater(a, b)),
  greaterEqual: one(([a, b]) => ops.greaterEqual(a, b)),
  less: one(([a, b]) => ops.less(a, b)),
  lessEqual: one(([a, b]) => ops.lessEqual(a, b)),
  equal: one(([a, b]) => ops.equal(a, b)),
  notEqual: one(([a, b]) => ops.notEqual(a, b)),
  where: one(([c, a, b]) => ops.where(c, a, b)),
  sum: one(([x], a) => ops.sum(x, axes(a), a.keepDims as boolean)),
  mean: one(([x], a) => ops.mean(x, axes(a), a.keepDims as boolean)),
  max: one(([x], a) => ops.max(x, axes(a), a.keepDims as boolean)),
  min: one(([x], a) => ops.min(x, axes(a), a.keepDims as boolean)),
  argmax: one(([x], a) => ops.argmax(x, a.axis as number)),
  l1Norm: one(([x], a) => ops.l1Norm(x, axes(a), (a.keepDims as boolean) ?? false)),
  l2Norm: one(([x], a) => ops.l2Norm(x, axes(a), (a.keepDims as boolean) ?? false)),
  matmul: one(([a, b], at) =>
    ops.matmul(a, b, { transA: at.transA as boolean, transB: at.transB as boolean }),
  ),
  transpose: one(([x], a) => ops.transpose(x, a.perm as number[])),
  reshape: one(([x], a) => ops.reshape(x, a.shape as number[])),
  expandDims: one(([x], a) => ops.expandDims(x, a.axis as number)),
  slice: one(([x], a) => ops.slice(x, a.begin as number[], a.size as number[])),
  pad: one(([x], a) => ops.pad(x, a.paddings as [number, number][])),
  concat: one((xs, a) => ops.concat(xs, a.axis as number)),
  broadcastTo: one(([x], a) => ops.broadcastTo(x, a.shape as number[])),
  gatherRows: one(([x, i]) => ops.gatherRows(x, i)),
  scatterAddRows: one(([x, i, u]) => ops.scatterAddRows(x, i, u)),
  indexColumns: one(([x, i]) => ops.indexColumns(x, i)),
  gatherLast: one(([x, i]) => ops.gatherLast(x, i)),
  scatterLast: one(([i, v], a) => ops.scatterLast(i, v, a.width as number)),
  topk: ([x], a) => {
    const r = ops.topk(x, a.k as number);
    return [r.values, r.indices];
  },
  topkEncode: ([x, w, b], a) => {
    const r = ops.topkEncode(x, w, b, a.k as number, { transB: a.transB as boolean });
    return [r.values, r.indices];
  },
  batchTopkEncode: ([x, w, b], a) => {
    const r = ops.batchTopkEncode(x, w, b, a.k as number, { transB: a.transB as boolean });
    return [r.values, r.indices, r.rows];
  },
  sparseDecode: one((xs, a) =>
    ops.sparseDecode(
      xs[0],
      xs[1],
      xs[2],
      a.bias ? xs[3] : undefined,
      a.rows ? { rows: xs[a.bias ? 4 : 3], batch: a.batch as number } : {},
    ),
  ),
  sparseDot: one(([y, i, w, rows]) => ops.sparseDot(y, i, w, { rows })),
  sparseOuter: one(([v, i, y, rows], a) => ops.sparseOuter(v, i, y, a.numFeatures as number, { rows })),
  cast: one(([x], a) => ops.cast(x, a.dtype as 'float32' | 'int32')),
  adamUpdate: ([p, g, m, v], a) =>
    adamUpdate(
      p,
      g,
      m,
      v,
      a as unknown as { lr: number; beta1: number; beta2: number; eps: number; step: number },
    ),
  reluGrad: one(([dy, x]) => ops.reluGrad(dy, x)),
  biasRelu: one(([x, b]) => ops.biasRelu(x, b)),
  linearBiasRelu: one(([x, w, b], a) => ops.linearBiasRelu(x, w, b, { transB: a.transB as boolean })),
  linearBiasReluSum: ([x, w, b], a) => ops.linearBiasReluSum(x, w, b, { transB: a.transB as boolean }),
  reluGradRowSum: ([dF, row, f]) => ops.reluGradRowSum(dF, row, f),
  normalizeRows: one(([w]) => normalizeRows(w)),
  removeParallelComponent: one(([w, g]) => removeParallelComponent(w, g)),
  clipByGlobalNorm: (xs, a) => {
    const r = ops.clipByGlobalNorm(xs, a.maxNorm as number);
    return [...r.tensors, r.norm];
  },
};
