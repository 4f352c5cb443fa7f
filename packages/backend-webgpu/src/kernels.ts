import {
  type Backend,
  broadcastStrides,
  type DType,
  type KernelOutput,
  type KernelTensor,
  type OpAttrs,
  type OpName,
  RANDOM_OPS,
  randomValues,
  registerKernel,
  stridesOf,
} from '@dictlearn/core';
import { f32bits, type GpuData, type GpuDevice, groupsFor } from './device.js';
import { matmulProgram } from './matmul.js';
import { bindings, kernel1d, PRELUDE, stridedOffsets, topkSelectShader, wgslType } from './wgsl.js';

type Kernel<Op extends OpName> = (
  inputs: KernelTensor[],
  attrs: OpAttrs[Op],
) => KernelOutput | KernelOutput[];

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const buf = (t: KernelTensor) => (t.data as GpuData).buffer;

/** Elementwise expressions over `x` (unary) or `a`, `b` (binary), per element type. */
type UnaryOp = 'neg' | 'abs' | 'sign' | 'square' | 'sqrt' | 'exp' | 'log' | 'pow' | 'relu' | 'step';
const UNARY_F32: Record<UnaryOp, string> = {
  neg: '-x',
  abs: 'abs(x)',
  sign: 'select(sign(x), x, isnan_(x))',
  square: 'x * x',
  sqrt: 'select(sqrt(x), nan_(), x < 0.0)',
  exp: 'select(exp(x), x, isnan_(x))',
  log: 'select(select(log(x), ninf_(), x == 0.0), nan_(), x < 0.0 || isnan_(x))',
  pow: 'pow_(x, f_(prm[1]), prm[3])',
  relu: 'select(max(x, 0.0), x, isnan_(x))',
  step: 'select(select(0.0, 1.0, x > f_(prm[2])), x, isnan_(x))',
};
const UNARY_I32: Partial<Record<UnaryOp, string>> = {
  neg: '-x',
  abs: 'abs(x)',
  sign: 'sign(x)',
  square: 'x * x',
};

const POW_FN = /* wgsl */ `
fn pow_(x: f32, p: f32, flags: u32) -> f32 {
  if (isnan_(x) || isnan_(p)) { return nan_(); }
  if (p == 0.0) { return 1.0; }
  if (x == 0.0) { return select(0.0, inf_(), p < 0.0); }
  let r = pow(abs(x), p);
  if (x < 0.0) {
    if ((flags & 1u) == 0u) { return nan_(); }
    return select(r, -r, (flags & 2u) != 0u);
  }
  return r;
}`;

type BinaryOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'maximum'
  | 'minimum'
  | 'greater'
  | 'greaterEqual'
  | 'less'
  | 'lessEqual'
  | 'equal'
  | 'notEqual'
  | 'reluGrad';
const BINARY_F32: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  maximum: 'select(max(a, b), nan_(), isnan_(a) || isnan_(b))',
  minimum: 'select(min(a, b), nan_(), isnan_(a) || isnan_(b))',
  greater: 'select(0.0, 1.0, !(isnan_(a) || isnan_(b)) && a > b)',
  greaterEqual: 'select(0.0, 1.0, !(isnan_(a) || isnan_(b)) && a >= b)',
  less: 'select(0.0, 1.0, !(isnan_(a) || isnan_(b)) && a < b)',
  lessEqual: 'select(0.0, 1.0, !(isnan_(a) || isnan_(b)) && a <= b)',
  equal: 'select(0.0, 1.0, !(isnan_(a) || isnan_(b)) && a == b)',
  notEqual: 'select(0.0, 1.0, isnan_(a) || isnan_(b) || a != b)',
  reluGrad: 'select(0.0, a, !isnan_(b) && b > 0.0)',
};
const BINARY_I32: Partial<Record<BinaryOp, string>> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  maximum: 'max(a, b)',
  minimum: 'min(a, b)',
  greater: 'select(0.0, 1.0, a > b)',
  greaterEqual: 'select(0.0, 1.0, a >= b)',
  less: 'select(0.0, 1.0, a < b)',
  lessEqual: 'select(0.0, 1.0, a <= b)',
  equal: 'select(0.0, 1.0, a == b)',
  notEqual: 'select(0.0, 1.0, a != b)',
};
const COMPARISONS = new Set(['greater', 'greaterEqual', 'less', 'lessEqual', 'equal', 'notEqual']);

/** Registers every core op's kernel on a WebGPU backend instance. */
export function registerWebGPUKernels(backend: Backend, gpu: () => GpuDevice): void {
  const reg = <Op extends OpName>(op: Op, k: Kernel<Op>) => registerKernel(op, backend, k);
  const output = (
    shape: readonly number[],
    dtype: DType,
    op: string,
  ): { data: GpuData; shape: number[]; dtype: DType } => ({
    data: gpu().alloc(sizeOf(shape), op),
    shape: [...shape],
    dtype,
  });

  for (const op of Object.keys(UNARY_F32) as UnaryOp[]) {
    reg(op, ([x], attrs) => {
      const t = wgslType(x.dtype);
      const expr = (t === 'i32' ? UNARY_I32 : UNARY_F32)[op];
      if (!expr) throw new Error(`${op}: no int32 kernel on WebGPU`);
      const out = output(x.shape, x.dtype, op);
      const { p = 0, threshold = 0 } = attrs as { p?: number; threshold?: number };
      const flags = Number.isInteger(p) ? 1 | (Math.abs(p) % 2 === 1 ? 2 : 0) : 0;
      const code = kernel1d(bindings([['X', t]], [['O', t]]), `let x = X[i]; O[i] = ${expr};`, POW_FN);
      gpu().dispatch(
        code,
        [buf(x), out.data.buffer],
        [x.size, f32bits(p), f32bits(threshold), flags],
        groupsFor(x.size),
      );
      return out;
    });
  }

  const binary = (op: BinaryOp) => {
    reg(op, ([a, b], attrs) => {
      const shape = (attrs as { shape?: number[] }).shape ?? [...a.shape]; // reluGrad: dy's shape
      const t = wgslType(a.dtype);
      const expr = (t === 'i32' ? BINARY_I32 : BINARY_F32)[op];
      if (!expr) throw new Error(`${op}: no ${a.dtype} kernel on WebGPU`);
      const outDtype: DType = COMPARISONS.has(op) ? 'float32' : a.dtype;
      const n = sizeOf(shape);
      const ib0 = directIndex(b.shape, shape, 1);
      if ((attrs as { inPlace?: boolean }).inPlace && a.size === n && a.dtype === outDtype && ib0) {
        // add's inPlace (the backward pass summing gradients): a, of the output's shape, is
        // read and written by the same thread
        const code = kernel1d(
          bindings([['B', t]], [['A', t]]),
          `let a = A[i]; let b = B[${ib0.index}]; A[i] = ${expr};`,
        );
        gpu().dispatch(code, [buf(b), buf(a)], [n, ib0.param], groupsFor(n));
        return { data: a.data, shape, dtype: outDtype };
      }
      const out = output(shape, outDtype, op);
      const decls = bindings(
        [
          ['A', t],
          ['B', t],
        ],
        [['O', wgslType(outDtype)]],
      );
      // Same shape, a scalar, a bias row or a column: direct indices. The general strided walk
      // divides per axis per element, which costs more than the op itself on lavapipe.
      const [ia, ib] = [directIndex(a.shape, shape, 1), directIndex(b.shape, shape, 2)];
      if (ia && ib) {
        gpu().dispatch(
          kernel1d(decls, `let a = A[${ia.index}]; let b = B[${ib.index}]; O[i] = ${expr};`),
          [buf(a), buf(b), out.data.buffer],
          [n, ia.param, ib.param],
          groupsFor(n),
        );
        return out;
      }
      gpu().dispatch(
        kernel1d(decls, `${stridedOffsets(['ia', 'ib'])} let a = A[ia]; let b = B[ib]; O[i] = ${expr};`),
        [buf(a), buf(b), out.data.buffer],
        [n, shape.length, ...shape, ...broadcastStrides(a.shape, shape), ...broadcastStrides(b.shape, shape)],
        groupsFor(n),
      );
      return out;
    });
  };
  for (const op of Object.keys(BINARY_F32) as BinaryOp[]) binary(op);

  reg('where', ([c, a, b], attrs) => {
    const shape = attrs.shape as number[];
    const n = sizeOf(shape);
    const t = wgslType(a.dtype);
    const out = output(shape, a.dtype, 'where');
    const code = kernel1d(
      bindings(
        [
          ['C', wgslType(c.dtype)],
          ['A', t],
          ['B', t],
        ],
        [['O', t]],
      ),
      `${stridedOffsets(['ic', 'ia', 'ib'])} O[i] = select(B[ib], A[ia], C[ic] != ${c.dtype === 'int32' ? '0' : '0.0'});`,
    );
    gpu().dispatch(
      code,
      [buf(c), buf(a), buf(b), out.data.buffer],
      [
        n,
        shape.length,
        ...shape,
        ...broadcastStrides(c.shape, shape),
        ...broadcastStrides(a.shape, shape),
        ...broadcastStrides(b.shape, shape),
      ],
      groupsFor(n),
    );
    return out;
  });

  reg('cast', ([x], attrs) => {
    const dtype = attrs.dtype as DType;
    const out = output(x.shape, dtype, 'cast');
    const expr =
      dtype === 'int32'
        ? 'select(i32(clamp(trunc(x), -2147483648.0, 2147483520.0)), 0, isnan_(x))'
        : 'f32(x)';
    const code = kernel1d(
      bindings([['X', wgslType(x.dtype)]], [['O', wgslType(dtype)]]),
      `let x = X[i]; O[i] = ${expr};`,
    );
    gpu().dispatch(code, [buf(x), out.data.buffer], [x.size], groupsFor(x.size));
    return out;
  });

  // Reductions: one thread per output element walks its reduced elements in order.
  const reduce = (kind: 'sum' | 'max' | 'min') => {
    reg(kind, ([x], attrs) => {
      const axes = attrs.axes as number[];
      const shape = attrs.shape as number[];
      const t = wgslType(x.dtype);
      const out = output(shape, x.dtype, kind);
      const xs = stridesOf(x.shape);
      const kept = x.shape.map((_, i) => i).filter((i) => !axes.includes(i));
      const nOut = sizeOf(shape);
      const redSize = axes.reduce((p, a) => p * x.shape[a], 1);
      const isF = t === 'f32';
      const init =
        kind === 'sum'
          ? isF
            ? '0.0'
            : '0'
          : kind === 'max'
            ? isF
              ? 'ninf_()'
              : 'i32(-2147483647) - 1'
            : isF
              ? 'inf_()'
              : '2147483647';
      const step =
        kind === 'sum' ? 'acc = acc + v;' : kind === 'max' ? 'acc = max(acc, v);' : 'acc = min(acc, v);';
      const nanCheck = isF ? 'if (isnan_(v)) { sawNan = true; }' : '';
      const meta = [
        nOut,
        kept.length,
        axes.length,
        redSize,
        ...kept.map((a) => x.shape[a]),
        ...kept.map((a) => xs[a]),
        ...axes.map((a) => x.shape[a]),
        ...axes.map((a) => xs[a]),
      ];
      // Few outputs over many elements (a loss, a bias gradient): a workgroup per output, its
      // threads striding over the elements, then combined: by one subgroup operation where the
      // adapter has fixed-width subgroups (the workgroup is then exactly one subgroup), else 64
      // threads and a tree in workgroup memory. Otherwise one thread per output walks its
      // elements in order.
      if (redSize > 64 && nOut <= 65535 * 64) {
        const code = gpu().subgroupSize
          ? subgroupReduceShader(kind, t, gpu().subgroupSize, baseOf, offsetOf, init, step, nanCheck)
          : treeReduceShader(kind, t, baseOf, offsetOf, init, step, nanCheck);
        gpu().dispatch(code, [buf(x), out.data.buffer], meta, nOut);
        return out;
      }
      const body = `
  ${baseOf('i')}
  var acc: ${t} = ${init}; var sawNan = false;
  for (var r = 0u; r < rs; r++) {
    ${offsetOf}
    let v = X[off]; ${nanCheck} ${step}
  }
  ${isF ? 'O[i] = select(acc, nan_(), sawNan);' : 'O[i] = acc;'}`;
      const code = kernel1d(bindings([['X', t]], [['O', t]]), body);
      gpu().dispatch(code, [buf(x), out.data.buffer], meta, groupsFor(nOut));
      return out;
    });
  };
  reduce('sum');
  reduce('max');
  reduce('min');

  // A squared error and its gradient without a [B, d] temporary: the bits of sum(square(sub(a,
  // b))) (the sum kernel's workgroup reduction over the same elements in the same order) and of
  // mul(sub(a, b), s).
  reg('sumSquaredDifference', ([a, b]) => {
    const n = a.size;
    const out = output([], 'float32', 'sumSquaredDifference');
    const nanCheck = 'if (isnan_(v)) { sawNan = true; }';
    const inputs: [string, 'f32'][] = [
      ['A', 'f32'],
      ['B', 'f32'],
    ];
    const load = '(A[off] - B[off]) * (A[off] - B[off])';
    const [init, step] = ['0.0', 'acc = acc + v;'];
    const sg = gpu().subgroupSize;
    // as the sum kernel: a workgroup over more than 64 elements, else one thread in order
    const code =
      n <= 64
        ? kernel1d(
            bindings(inputs, [['O', 'f32']]),
            `var acc = 0.0; var sawNan = false;
  for (var off = 0u; off < prm[3]; off++) { let v = ${load}; ${nanCheck} ${step} }
  O[i] = select(acc, nan_(), sawNan);`,
          )
        : sg
          ? subgroupReduceShader('sum', 'f32', sg, baseOf, offsetOf, init, step, nanCheck, inputs, load)
          : treeReduceShader('sum', 'f32', baseOf, offsetOf, init, step, nanCheck, inputs, load);
    gpu().dispatch(code, [buf(a), buf(b), out.data.buffer], [1, 0, 1, n, n, 1], 1);
    return out;
  });
  reg('scaledDifference', ([a, b, sc], attrs) => {
    if (attrs.inPlace) {
      // over a (the caller owns it): each thread reads its element of a, then writes it
      const code = kernel1d(
        bindings(
          [
            ['B', 'f32'],
            ['S', 'f32'],
          ],
          [['A', 'f32']],
        ),
        'A[i] = (A[i] - B[i]) * S[0];',
      );
      gpu().dispatch(code, [buf(b), buf(sc), buf(a)], [a.size], groupsFor(a.size));
      return { data: a.data, shape: a.shape, dtype: 'float32' as const };
    }
    const out = output(a.shape, 'float32', 'scaledDifference');
    const decls = bindings(
      [
        ['A', 'f32'],
        ['B', 'f32'],
        ['S', 'f32'],
      ],
      [['O', 'f32']],
    );
    gpu().dispatch(
      kernel1d(decls, 'O[i] = (A[i] - B[i]) * S[0];'),
      [buf(a), buf(b), buf(sc), out.data.buffer],
      [a.size],
      groupsFor(a.size),
    );
    return out;
  });

  reg('argmax', ([x], attrs) => {
    const axis = attrs.axis as number;
    const shape = attrs.shape as number[];
    const n = x.shape[axis];
    const inner = sizeOf(x.shape.slice(axis + 1));
    const nOut = sizeOf(shape);
    const out = output(shape, 'int32', 'argmax');
    const body = `
  let n = prm[1]; let inner = prm[2];
  let base = (i / inner) * n * inner + (i % inner);
  var best = 0u; var bv = X[base];
  if (!isnan_(bv)) {
    for (var r = 1u; r < n; r++) {
      let v = X[base + r * inner];
      if (isnan_(v)) { best = r; break; }
      if (v > bv) { bv = v; best = r; }
    }
  }
  O[i] = i32(best);`;
    gpu().dispatch(
      kernel1d(bindings([['X', 'f32']], [['O', 'i32']]), body),
      [buf(x), out.data.buffer],
      [nOut, n, inner],
      groupsFor(nOut),
    );
    return out;
  });

  // The matmul programs (kernel choice, WGSL, workgroups) live in matmul.ts.
  const sg = () => gpu().subgroupSize;
  reg('matmul', ([a, b], attrs) => {
    const shape = attrs.shape as number[];
    const transA = attrs.transA as boolean;
    const transB = attrs.transB as boolean;
    const batch = shape.length === 3 ? shape[0] : 1;
    const M = shape[shape.length - 2];
    const N = shape[shape.length - 1];
    const K = transA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
    const out = output(shape, 'float32', 'matmul');
    const sA = a.shape.length === 3 ? M * K : 0;
    const sB = b.shape.length === 3 ? K * N : 0;
    if (K === 0) {
      fillBuffer(out.data, 0);
      return out;
    }
    const p = matmulProgram({ M, N, K, transA, transB }, batch, sg(), 'none');
    gpu().dispatch(
      p.code,
      [buf(a), buf(b), out.data.buffer],
      [M, N, K, transA ? 1 : 0, transB ? 1 : 0, sA, sB],
      p.groups,
    );
    return out;
  });

  reg('linearBiasRelu', ([x, w, bias], attrs) => {
    const shape = attrs.shape as number[];
    const transB = attrs.transB as boolean;
    const [M, N] = shape;
    const K = x.shape[1];
    const out = output(shape, 'float32', 'linearBiasRelu');
    // K = 0: relu(bias); x's buffer is then too small to bind as vec4s, so the scalar kernel.
    const d = { M, N, K, transA: false, transB };
    const p = matmulProgram(d, 1, sg(), 'biasRelu', K === 0 ? 'tiled' : undefined);
    gpu().dispatch(
      p.code,
      [buf(x), buf(w), buf(bias), out.data.buffer],
      [M, N, K, 0, transB ? 1 : 0, 0, 0],
      p.groups,
    );
    return out;
  });

  // Layout: out[i] = X[base + Σ cᵢ·strideᵢ] covers transpose, slice and broadcastTo.
  const gather = (
    x: KernelTensor,
    shape: readonly number[],
    strides: readonly number[],
    base: number,
    op: string,
  ) => {
    const t = wgslType(x.dtype);
    const out = output(shape, x.dtype, op);
    const n = sizeOf(shape);
    const code = kernel1d(
      bindings([['X', t]], [['O', t]]),
      `${stridedOffsets(['ix'])} O[i] = X[prm[2u + 2u * rank] + ix];`,
    );
    gpu().dispatch(
      code,
      [buf(x), out.data.buffer],
      [n, shape.length, ...shape, ...strides, base],
      groupsFor(n),
    );
    return out;
  };
  reg('transpose', ([x], attrs) => {
    const perm = attrs.perm as number[];
    const xs = stridesOf(x.shape);
    return gather(
      x,
      attrs.shape as number[],
      perm.map((p) => xs[p]),
      0,
      'transpose',
    );
  });
  reg('slice', ([x], attrs) => {
    const xs = stridesOf(x.shape);
    const begin = attrs.begin as number[];
    return gather(
      x,
      attrs.shape as number[],
      xs,
      begin.reduce((s, b, i) => s + b * xs[i], 0),
      'slice',
    );
  });
  reg('broadcastTo', ([x], attrs) => {
    const shape = attrs.shape as number[];
    return gather(x, shape, broadcastStrides(x.shape, shape), 0, 'broadcastTo');
  });
  reg('pad', ([x], attrs) => {
    const shape = attrs.shape as number[];
    const paddings = attrs.paddings as [number, number][];
    const t = wgslType(x.dtype);
    const out = output(shape, x.dtype, 'pad');
    const n = sizeOf(shape);
    const body = `
  let rank = prm[1]; var rem = i; var off = 0u; var inside = true;
  for (var q = 0u; q < rank; q++) {
    let ax = rank - 1u - q; let d = prm[2u + ax]; let c = i32(rem % d); rem = rem / d;
    let ci = c - i32(prm[2u + rank + ax]);
    if (ci < 0 || ci >= i32(prm[2u + 2u * rank + ax])) { inside = false; } else { off += u32(ci) * prm[2u + 3u * rank + ax]; }
  }
  if (inside) { O[i] = X[off]; } else { O[i] = ${t === 'f32' ? '0.0' : '0'}; }`;
    gpu().dispatch(
      kernel1d(bindings([['X', t]], [['O', t]]), body),
      [buf(x), out.data.buffer],
      [n, shape.length, ...shape, ...paddings.map((p) => p[0]), ...x.shape, ...stridesOf(x.shape)],
      groupsFor(n),
    );
    return out;
  });
  reg('concat', (xs, attrs) => {
    const axis = attrs.axis as number;
    const shape = attrs.shape as number[];
    const t = wgslType(xs[0].dtype);
    const out = output(shape, xs[0].dtype, 'concat');
    const os = stridesOf(shape);
    const code = kernel1d(
      bindings([['X', t]], [['O', t]]),
      `${stridedOffsets(['io'])} O[prm[2u + 2u * rank] + io] = X[i];`,
    );
    let offset = 0;
    for (const x of xs) {
      if (x.size > 0)
        gpu().dispatch(
          code,
          [buf(x), out.data.buffer],
          [x.size, x.shape.length, ...x.shape, ...os, offset * os[axis]],
          groupsFor(x.size),
        );
      offset += x.shape[axis];
    }
    return out;
  });

  // Indexing. Out-of-range indices read 0 / are skipped (the CPU reference throws).
  reg('gatherRows', ([x, idx], attrs) => {
    const shape = attrs.shape as number[];
    const t = wgslType(x.dtype);
    const row = sizeOf(x.shape.slice(1));
    const out = output(shape, x.dtype, 'gatherRows');
    const n = sizeOf(shape);
    const body = `let row = prm[1]; let r = i / row; let j = i % row; let src = IDX[r];
  if (src < 0 || u32(src) >= prm[2]) { O[i] = ${t === 'f32' ? '0.0' : '0'}; } else { O[i] = X[u32(src) * row + j]; }`;
    gpu().dispatch(
      kernel1d(
        bindings(
          [
            ['X', t],
            ['IDX', 'i32'],
          ],
          [['O', t]],
        ),
        body,
      ),
      [buf(x), buf(idx), out.data.buffer],
      [n, row, x.shape[0]],
      groupsFor(n),
    );
    return out;
  });
  reg('scatterAddRows', ([x, idx, upd]) => {
    const t = wgslType(x.dtype);
    const row = sizeOf(x.shape.slice(1));
    const out = output(x.shape, x.dtype, 'scatterAddRows');
    // One thread per element of x adds, in index order, every update aimed at its row: deterministic.
    const body = `let row = prm[1]; let r = i32(i / row); let j = i % row; var acc = X[i];
  for (var u = 0u; u < prm[2]; u++) { if (IDX[u] == r) { acc = acc + U[u * row + j]; } }
  O[i] = acc;`;
    gpu().dispatch(
      kernel1d(
        bindings(
          [
            ['X', t],
            ['IDX', 'i32'],
            ['U', t],
          ],
          [['O', t]],
        ),
        body,
      ),
      [buf(x), buf(idx), buf(upd), out.data.buffer],
      [x.size, row, idx.size],
      groupsFor(x.size),
    );
    return out;
  });
  reg('indexColumns', ([x, idx], attrs) => {
    const shape = attrs.shape as number[];
    const t = wgslType(x.dtype);
    const out = output(shape, x.dtype, 'indexColumns');
    const n = sizeOf(shape);
    const body = `let cols = prm[1]; let k = prm[2]; let r = i / k; let c = IDX[i % k];
  if (c < 0 || u32(c) >= cols) { O[i] = ${t === 'f32' ? '0.0' : '0'}; } else { O[i] = X[r * cols + u32(c)]; }`;
    gpu().dispatch(
      kernel1d(
        bindings(
          [
            ['X', t],
            ['IDX', 'i32'],
          ],
          [['O', t]],
        ),
        body,
      ),
      [buf(x), buf(idx), out.data.buffer],
      [n, x.shape[1], idx.size],
      groupsFor(n),
    );
    return out;
  });
  reg('gatherLast', ([x, idx], attrs) => {
    const shape = attrs.shape as number[];
    const t = wgslType(x.dtype);
    const width = x.shape[x.shape.length - 1];
    const k = idx.shape[idx.shape.length - 1];
    const out = output(shape, x.dtype, 'gatherLast');
    const n = sizeOf(shape);
    const body = `let width = prm[1]; let k = prm[2]; let r = i / k; let c = IDX[i];
  if (c < 0 || u32(c) >= width) { O[i] = ${t === 'f32' ? '0.0' : '0'}; } else { O[i] = X[r * width + u32(c)]; }`;
    gpu().dispatch(
      kernel1d(
        bindings(
          [
            ['X', t],
            ['IDX', 'i32'],
          ],
          [['O', t]],
        ),
        body,
      ),
      [buf(x), buf(idx), out.data.buffer],
      [n, width, k],
      groupsFor(n),
    );
    return out;
  });
  reg('scatterLast', ([idx, vals], attrs) => {
    const shape = attrs.shape as number[];
    const width = attrs.width as number;
    const k = idx.shape[idx.shape.length - 1];
    const t = wgslType(vals.dtype);
    const out = output(shape, vals.dtype, 'scatterLast');
    const n = sizeOf(shape);
    const body = `let width = prm[1]; let k = prm[2]; let r = i / width; let c = i32(i % width);
  var acc: ${t} = ${t === 'f32' ? '0.0' : '0'};
  for (var j = 0u; j < k; j++) { if (IDX[r * k + j] == c) { acc = acc + V[r * k + j]; } }
  O[i] = acc;`;
    gpu().dispatch(
      kernel1d(
        bindings(
          [
            ['IDX', 'i32'],
            ['V', t],
          ],
          [['O', t]],
        ),
        body,
      ),
      [buf(idx), buf(vals), out.data.buffer],
      [n, width, k],
      groupsFor(n),
    );
    return out;
  });
  reg('topk', ([x], attrs) => {
    const k = attrs.k as number;
    const shape = attrs.shape as number[];
    const n = x.shape[x.shape.length - 1];
    const rows = n === 0 ? 0 : x.size / n;
    const values = output(shape, 'float32', 'topk');
    const indices = output(shape, 'int32', 'topk');
    // One thread per row: k selection sweeps, each taking the best element ranked after the last.
    if (rows > 0 && k > 0) {
      gpu().dispatch(
        topkSelectShader(n),
        [buf(x), values.data.buffer, indices.data.buffer],
        [rows, n, k],
        groupsFor(rows),
      );
    }
    return [values, indices];
  });

  // Fused training kernels: the encoder's bias + ReLU, and one Adam update per parameter.
  reg('biasRelu', ([x, b]) => {
    const out = output(x.shape, 'float32', 'biasRelu');
    const cols = b.size;
    const code = kernel1d(
      bindings(
        [
          ['X', 'f32'],
          ['BIAS', 'f32'],
        ],
        [['O', 'f32']],
      ),
      'let v = X[i] + BIAS[i % prm[1]]; O[i] = select(max(v, 0.0), v, isnan_(v));',
    );
    gpu().dispatch(code, [buf(x), buf(b), out.data.buffer], [x.size, cols], groupsFor(x.size));
    return out;
  });
  // In place (attrs.inPlace: the caller owns p, m, v) the shader binds them read_write and writes
  // each element after reading it; otherwise into three new buffers.
  const adamShader = (inPlace: boolean) => {
    const [p, m, v] = inPlace ? ['P', 'M', 'V'] : ['P2', 'M2', 'V2'];
    const body = `let b1 = f_(prm[1]); let b2 = f_(prm[2]); let stepSize = f_(prm[3]); let sqrtBc2 = f_(prm[4]); let eps = f_(prm[5]);
  let gi = G[i];
  let mi = b1 * M[i] + (1.0 - b1) * gi;
  let vi = b2 * V[i] + (1.0 - b2) * gi * gi;
  let pi = P[i] - (stepSize * mi) / (sqrt(vi) / sqrtBc2 + eps);
  ${m}[i] = mi; ${v}[i] = vi; ${p}[i] = pi;`;
    const [ins, outs]: [string, string][][] = inPlace
      ? [
          [['G', 'f32']],
          [
            ['P', 'f32'],
            ['M', 'f32'],
            ['V', 'f32'],
          ],
        ]
      : [
          [
            ['P', 'f32'],
            ['G', 'f32'],
            ['M', 'f32'],
            ['V', 'f32'],
          ],
          [
            ['P2', 'f32'],
            ['M2', 'f32'],
            ['V2', 'f32'],
          ],
        ];
    return kernel1d(bindings(ins, outs), body);
  };
  reg('adamUpdate', ([p, g, m, v], attrs) => {
    const meta = [
      p.size,
      f32bits(attrs.beta1 as number),
      f32bits(attrs.beta2 as number),
      f32bits((attrs.lr as number) / (attrs.bc1 as number)),
      f32bits(Math.sqrt(attrs.bc2 as number)),
      f32bits(attrs.eps as number),
    ];
    if (attrs.inPlace) {
      gpu().dispatch(adamShader(true), [buf(g), buf(p), buf(m), buf(v)], meta, groupsFor(p.size));
      return [p, m, v].map((t) => ({ data: t.data, shape: p.shape, dtype: 'float32' as const }));
    }
    const p2 = output(p.shape, 'float32', 'adamUpdate');
    const m2 = output(p.shape, 'float32', 'adamUpdate');
    const v2 = output(p.shape, 'float32', 'adamUpdate');
    gpu().dispatch(
      adamShader(false),
      [buf(p), buf(g), buf(m), buf(v), p2.data.buffer, m2.data.buffer, v2.data.buffer],
      meta,
      groupsFor(p.size),
    );
    return [p2, m2, v2];
  });

  // ConstrainedAdam's row kernels, one thread per row (run once per step on [F, d]): the norm in
  // one pass, then the row written, over its input where attrs.inPlace says the caller owns it.
  // Same formulas as core's compositions (w / (‖w‖ + 1e-12); g − (g·n)·n), float32 sums in order.
  const rowsShader = (project: boolean, inPlace: boolean) => {
    const target = inPlace ? (project ? 'G' : 'W') : 'O';
    const ins: [string, string][] = project ? [['W', 'f32']] : [];
    const outs: [string, string][] = [];
    if (project) (inPlace ? outs : ins).push(['G', 'f32']);
    else (inPlace ? outs : ins).push(['W', 'f32']);
    if (!inPlace) outs.push(['O', 'f32']);
    const body = `let c = prm[1]; let base = i * c;
  var ss = 0.0;
  for (var j = 0u; j < c; j++) { let x = W[base + j]; ss = ss + x * x; }
  let norm = sqrt(ss) + 1e-12;
  ${
    project
      ? `var dot = 0.0;
  for (var j = 0u; j < c; j++) { dot = dot + G[base + j] * (W[base + j] / norm); }
  for (var j = 0u; j < c; j++) { ${target}[base + j] = G[base + j] - dot * (W[base + j] / norm); }`
      : `for (var j = 0u; j < c; j++) { ${target}[base + j] = W[base + j] / norm; }`
  }`;
    return kernel1d(bindings(ins, outs), body);
  };
  const rowKernel = (project: boolean) => (inputs: KernelTensor[], attrs: { inPlace?: boolean }) => {
    const [w] = inputs;
    const cols = w.shape[w.shape.length - 1];
    const rows = cols === 0 ? 0 : w.size / cols;
    const over = project ? inputs[1] : w;
    if (attrs.inPlace) {
      if (rows > 0) gpu().dispatch(rowsShader(project, true), inputs.map(buf), [rows, cols], groupsFor(rows));
      return [{ data: over.data, shape: w.shape, dtype: 'float32' as const }];
    }
    const out = output(w.shape, 'float32', project ? 'removeParallelComponent' : 'normalizeRows');
    if (rows > 0) {
      const code = rowsShader(project, false);
      gpu().dispatch(code, [...inputs.map(buf), out.data.buffer], [rows, cols], groupsFor(rows));
    }
    return [out];
  };
  reg('normalizeRows', rowKernel(false));
  reg('removeParallelComponent', rowKernel(true));

  const fillBuffer = (d: GpuData, bits: number, dtype: DType = 'float32') => {
    const t = wgslType(dtype);
    const code = kernel1d(bindings([], [['O', t]]), `O[i] = bitcast<${t}>(prm[1]);`);
    gpu().dispatch(code, [d.buffer], [d.size, bits], groupsFor(d.size));
  };
  reg('fill', (_i, attrs) => {
    const dtype = attrs.dtype as DType;
    const out = output(attrs.shape as number[], dtype, 'fill');
    const v = attrs.value as number;
    fillBuffer(out.data, dtype === 'int32' ? v >>> 0 : f32bits(v), dtype);
    return out;
  });
  reg('arange', (_i, attrs) => {
    const dtype = attrs.dtype as DType;
    const n = attrs.n as number;
    const out = output([n], dtype, 'arange');
    const t = wgslType(dtype);
    const body =
      t === 'i32'
        ? 'O[i] = bitcast<i32>(prm[1]) + i32(i) * bitcast<i32>(prm[2]);'
        : 'O[i] = f_(prm[1]) + f32(i) * f_(prm[2]);';
    const enc = (v: number) => (t === 'i32' ? v >>> 0 : f32bits(v));
    gpu().dispatch(
      kernel1d(bindings([], [['O', t]]), body),
      [out.data.buffer],
      [n, enc(attrs.start as number), enc(attrs.step as number)],
      groupsFor(n),
    );
    return out;
  });
  // Random numbers come from core's Philox on the host and are uploaded: bit for bit the CPU stream.
  for (const op of RANDOM_OPS) {
    reg(op, (_i, attrs) => ({
      data: gpu().upload(randomValues(op, attrs), 'float32', op),
      shape: [...(attrs.shape as number[])],
      dtype: 'float32',
    }));
  }
}

// Offsets of a reduction (prm: outputs, kept axes kr, reduced axes rr, reduced size rs, then the
// kept axes' sizes and strides, the reduced axes' sizes and strides): the output element's base
// over the kept axes, then each reduced element's.
const baseOf = (o: string) => `let kr = prm[1]; let rr = prm[2]; let rs = prm[3];
  var base = 0u; var rem = ${o};
  for (var q = 0u; q < kr; q++) { let ax = kr - 1u - q; let d = prm[4u + ax]; base += (rem % d) * prm[4u + kr + ax]; rem = rem / d; }`;
const offsetOf = `var off = base; var rem2 = r;
    for (var q = 0u; q < rr; q++) { let ax = rr - 1u - q; let d = prm[4u + 2u * kr + ax]; off += (rem2 % d) * prm[4u + 2u * kr + rr + ax]; rem2 = rem2 / d; }`;

/** The NaN-aware combination of two partial results of a reduction. */
function combineOf(kind: 'sum' | 'max' | 'min', t: 'f32' | 'i32'): string {
  if (kind === 'sum') return 'a + b';
  return t === 'f32' ? `select(${kind}(a, b), nan_(), isnan_(a) || isnan_(b))` : `${kind}(a, b)`;
}

/**
 * One workgroup of 64 threads per output (prm[0] outputs, `baseOf` / `offsetOf` locate its
 * elements): each thread strides over them, then a tree in workgroup memory combines the 64.
 */
function treeReduceShader(
  kind: 'sum' | 'max' | 'min',
  t: 'f32' | 'i32',
  baseOf: (o: string) => string,
  offsetOf: string,
  init: string,
  step: string,
  nanCheck: string,
  // what is reduced: X's elements, or an expression of other inputs at `off`
  inputs: [string, 'f32' | 'i32'][] = [['X', t]],
  load = 'X[off]',
): string {
  return `${PRELUDE}
${bindings(inputs, [['O', t]])}
var<workgroup> part: array<${t}, 64>;
fn comb(a: ${t}, b: ${t}) -> ${t} { return ${combineOf(kind, t)}; }
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = wid.x + wid.y * nwg.x;
  let live = o < prm[0];
  ${baseOf('select(0u, o, live)')}
  var acc: ${t} = ${init}; var sawNan = false;
  if (live) {
    for (var r = lid.x; r < rs; r += 64u) {
      ${offsetOf}
      let v = ${load}; ${nanCheck} ${step}
    }
  }
  ${t === 'f32' ? 'part[lid.x] = select(acc, nan_(), sawNan);' : 'part[lid.x] = acc;'}
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid.x < s) { part[lid.x] = comb(part[lid.x], part[lid.x + s]); }
    workgroupBarrier();
  }
  if (live && lid.x == 0u) { O[o] = part[0]; }
}`;
}

/**
 * One workgroup of exactly one subgroup (SG lanes) per output: each lane strides over the
 * elements, then subgroupAdd / subgroupMax / subgroupMin combines the lanes (no workgroup memory,
 * no barriers) and subgroupAny carries a NaN seen by any lane (WGSL lets compilers assume finite
 * math, so the subgroup max / min of a NaN is not trusted).
 */
function subgroupReduceShader(
  kind: 'sum' | 'max' | 'min',
  t: 'f32' | 'i32',
  SG: number,
  baseOf: (o: string) => string,
  offsetOf: string,
  init: string,
  step: string,
  nanCheck: string,
  // what is reduced: X's elements, or an expression of other inputs at `off`
  inputs: [string, 'f32' | 'i32'][] = [['X', t]],
  load = 'X[off]',
): string {
  const op = kind === 'sum' ? 'subgroupAdd' : kind === 'max' ? 'subgroupMax' : 'subgroupMin';
  return `enable subgroups;
${PRELUDE}
${bindings(inputs, [['O', t]])}
@compute @workgroup_size(${SG})
fn main(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = wid.x + wid.y * nwg.x;
  let live = o < prm[0];
  ${baseOf('select(0u, o, live)')}
  var acc: ${t} = ${init}; var sawNan = false;
  if (live) {
    for (var r = lane; r < rs; r += ${SG}u) {
      ${offsetOf}
      let v = ${load}; ${nanCheck} ${step}
    }
  }
  let total = ${op}(acc);
  let anyNan = subgroupAny(sawNan);
  if (live && lane == 0u) { O[o] = ${t === 'f32' ? 'select(total, nan_(), anyNan)' : 'total'}; }
}`;
}

/**
 * How output element i of `out` reads an input of shape `input` broadcast to it, when no strided
 * walk is needed: the element itself (same size), element 0 (one element), i % size (the input
 * spans the trailing axes: a bias row) or i / (n / size) (the input spans the leading axes: a
 * column). `param` is that size or divisor, passed as prm[`slot`]. Undefined otherwise.
 */
export function directIndex(
  input: readonly number[],
  out: readonly number[],
  slot: number,
): { index: string; param: number } | undefined {
  const n = out.reduce((p, d) => p * d, 1);
  const size = input.reduce((p, d) => p * d, 1);
  if (size === n) return { index: 'i', param: 0 };
  if (size === 1) return { index: '0u', param: 0 };
  // Per output axis of more than one element: is it broadcast (the input has 1 there)?
  const lead = out.length - input.length;
  const broadcast = out
    .map((d, ax) => [d, ax < lead ? 1 : input[ax - lead]] as const)
    .filter(([d]) => d > 1)
    .map(([, d]) => d === 1);
  const firstKept = broadcast.indexOf(false);
  const lastBroadcast = broadcast.lastIndexOf(true);
  if (lastBroadcast < firstKept) return { index: `i % prm[${slot}]`, param: size };
  const firstBroadcast = broadcast.indexOf(true);
  const lastKept = broadcast.lastIndexOf(false);
  if (lastKept < firstBroadcast) return { index: `i / prm[${slot}]`, param: n / size };
  return undefined;
}
