/**
 * Every core op's kernel on a CUDA backend instance: the CUDA C kernels of src/kernels/*.cu
 * (shipped as PTX) and cuBLAS for the dense products. Semantics are the CPU oracle's (NaN
 * propagation, top-k order, float→int conversion); see the .cu files for each kernel.
 */
import {
  type Backend,
  broadcastStrides,
  DictlearnError,
  type DType,
  getKernel,
  type KernelOutput,
  type KernelTensor,
  type OpAttrs,
  type OpName,
  philoxKey,
  RANDOM_OPS,
  randomValues,
  registerKernel,
  seedFor,
  stridesOf,
} from '@dictlearn/core';
import type { CudaData, CudaDevice } from './device.js';
import {
  checkSize,
  colsumGrid,
  f32,
  f64,
  GROUP_SCAN_THREADS,
  GROUP_THREADS,
  grid1d,
  gridRows,
  groupChunks,
  i32,
  ints,
  type Param,
  padMeta,
  ptr,
  reduceMeta,
  stridedMeta,
  u32,
} from './launch.js';

type Kernel<Op extends OpName> = (
  inputs: KernelTensor[],
  attrs: OpAttrs[Op],
) => KernelOutput | KernelOutput[];

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const dev = (t: KernelTensor) => (t.data as CudaData).ptr;

/** Unary op codes, in the order of the U_* enum of elementwise.cu. */
export const UNARY_OPS = [
  'neg',
  'abs',
  'sign',
  'square',
  'sqrt',
  'exp',
  'log',
  'pow',
  'relu',
  'step',
] as const;
/** Unary ops with an int32 kernel (unary_i32). */
const UNARY_I32 = new Set(['neg', 'abs', 'sign', 'square']);
/** Binary op codes, in the order of the B_* enum of elementwise.cu. */
export const BINARY_OPS = [
  'add',
  'sub',
  'mul',
  'div',
  'maximum',
  'minimum',
  'greater',
  'greaterEqual',
  'less',
  'lessEqual',
  'equal',
  'notEqual',
  'reluGrad',
] as const;
const BINARY_I32 = new Set([
  'add',
  'sub',
  'mul',
  'maximum',
  'minimum',
  'greater',
  'greaterEqual',
  'less',
  'lessEqual',
  'equal',
  'notEqual',
]);
const COMPARISONS = new Set(['greater', 'greaterEqual', 'less', 'lessEqual', 'equal', 'notEqual']);
const REDUCE_KIND = { sum: 0, max: 1, min: 2 } as const;

/** Bits of a float32. */
export function f32bits(v: number): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, v, true);
  return b.getUint32(0, true);
}

/**
 * Row-major C[b] = op(A[b]) · op(B[b]) through column-major cuBLAS: Cᵀ = op(B)ᵀ · op(A)ᵀ, so the
 * operands swap and each keeps its own transpose flag; leading dimensions are the stored rows'.
 */
export function rowMajorGemm(
  a: bigint,
  b: bigint,
  c: bigint,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  batch: number,
  aBatched: boolean,
  bBatched: boolean,
) {
  return {
    transA: transB,
    transB: transA,
    m: N,
    n: M,
    k: K,
    a: b,
    lda: transB ? K : N,
    strideA: bBatched ? K * N : 0,
    b: a,
    ldb: transA ? M : K,
    strideB: aBatched ? M * K : 0,
    c,
    ldc: N,
    strideC: M * N,
    batch,
  };
}

/** Registers every core op's kernel, and the fused SAE kernels, on a CUDA backend instance. */
export function registerCudaKernels(backend: Backend, gpu: () => CudaDevice): void {
  const reg = <Op extends OpName>(op: Op, k: Kernel<Op>) => registerKernel(op, backend, k);
  const output = (shape: readonly number[], dtype: DType, op: string) => {
    const n = sizeOf(shape);
    checkSize(op, n);
    return { data: gpu().alloc(n, `the output of ${op}`), shape: [...shape], dtype };
  };

  UNARY_OPS.forEach((op, code) => {
    reg(op, ([x], attrs) => {
      const out = output(x.shape, x.dtype, op);
      if (x.size === 0) return out;
      if (x.dtype === 'int32') {
        if (!UNARY_I32.has(op))
          throw new DictlearnError(op, 'no int32 kernel on CUDA (cast to float32 first)');
        gpu().launch('unary_i32', grid1d(x.size), [ptr(dev(x)), ptr(out.data.ptr), u32(x.size), i32(code)]);
        return out;
      }
      const { p = 0, threshold = 0 } = attrs as { p?: number; threshold?: number };
      const flags = Number.isInteger(p) ? 1 | (Math.abs(p) % 2 === 1 ? 2 : 0) : 0;
      gpu().launch('unary_f32', grid1d(x.size), [
        ptr(dev(x)),
        ptr(out.data.ptr),
        u32(x.size),
        i32(code),
        f32(p),
        f32(threshold),
        i32(flags),
      ]);
      return out;
    });
  });

  BINARY_OPS.forEach((op, code) => {
    reg(op, ([a, b], attrs) => {
      const shape = (attrs as { shape?: number[] }).shape ?? [...a.shape]; // reluGrad: dy's shape
      const isInt = a.dtype === 'int32';
      if (isInt && !BINARY_I32.has(op))
        throw new DictlearnError(op, 'no int32 kernel on CUDA (cast to float32 first)');
      const out = output(shape, COMPARISONS.has(op) ? 'float32' : a.dtype, op);
      const n = sizeOf(shape);
      if (n === 0) return out;
      const meta = stridedMeta(op, shape, [
        broadcastStrides(a.shape, shape),
        broadcastStrides(b.shape, shape),
      ]);
      gpu().launch(isInt ? 'binary_i32' : 'binary_f32', grid1d(n), [
        ptr(dev(a)),
        ptr(dev(b)),
        ptr(out.data.ptr),
        i32(code),
        ints(meta),
      ]);
      return out;
    });
  });

  reg('where', ([c, a, b], attrs) => {
    const shape = attrs.shape;
    const out = output(shape, a.dtype, 'where');
    const n = sizeOf(shape);
    if (n === 0) return out;
    const meta = stridedMeta('where', shape, [
      broadcastStrides(c.shape, shape),
      broadcastStrides(a.shape, shape),
      broadcastStrides(b.shape, shape),
    ]);
    gpu().launch('where32', grid1d(n), [
      ptr(dev(c)),
      i32(c.dtype === 'int32' ? 1 : 0),
      ptr(dev(a)),
      ptr(dev(b)),
      ptr(out.data.ptr),
      ints(meta),
    ]);
    return out;
  });

  reg('cast', ([x], attrs) => {
    const out = output(x.shape, attrs.dtype, 'cast');
    if (x.size === 0) return out;
    if (x.dtype === attrs.dtype) gpu().copy(out.data, x.data as CudaData);
    else
      gpu().launch(x.dtype === 'float32' ? 'cast_f32_i32' : 'cast_i32_f32', grid1d(x.size), [
        ptr(dev(x)),
        ptr(out.data.ptr),
        u32(x.size),
      ]);
    return out;
  });

  for (const kind of ['sum', 'max', 'min'] as const) {
    reg(kind, ([x], attrs) => {
      const out = output(attrs.shape, x.dtype, kind);
      const meta = reduceMeta(kind, x.shape, attrs.axes);
      const nOut = meta[2];
      const redSize = meta[3];
      if (nOut === 0) return out;
      const t = x.dtype === 'int32' ? 'i32' : 'f32';
      const params = [ptr(dev(x)), ptr(out.data.ptr), i32(REDUCE_KIND[kind]), ints(meta)];
      // Many elements per output: a block each (warp shuffles); few: a thread each.
      if (redSize >= 256) gpu().launch(`reduce_block_${t}`, gridRows(nOut), params);
      else gpu().launch(`reduce_thread_${t}`, grid1d(nOut), params);
      return out;
    });
  }

  reg('argmax', ([x], attrs) => {
    const out = output(attrs.shape, 'int32', 'argmax');
    const n = x.shape[attrs.axis];
    const inner = sizeOf(x.shape.slice(attrs.axis + 1));
    const nOut = sizeOf(attrs.shape);
    if (nOut > 0 && n > 0)
      gpu().launch('argmax_f32', grid1d(nOut), [
        ptr(dev(x)),
        ptr(out.data.ptr),
        u32(nOut),
        u32(n),
        u32(inner),
      ]);
    return out;
  });

  reg('matmul', ([a, b], attrs) => {
    const { shape, transA, transB } = attrs;
    const batch = shape.length === 3 ? shape[0] : 1;
    const M = shape[shape.length - 2];
    const N = shape[shape.length - 1];
    const K = transA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
    const out = output(shape, 'float32', 'matmul');
    if (out.data.size === 0) return out;
    if (K === 0) {
      gpu().fill(out.data, 0);
      return out;
    }
    gpu().gemm(
      rowMajorGemm(
        dev(a),
        dev(b),
        out.data.ptr,
        M,
        N,
        K,
        transA,
        transB,
        batch,
        a.shape.length === 3,
        b.shape.length === 3,
      ),
    );
    return out;
  });

  /** relu(x·op(W) + b): the cuBLAS product, then the bias + ReLU epilogue in place. */
  const encoder = (
    x: KernelTensor,
    w: KernelTensor,
    bias: KernelTensor,
    transB: boolean,
    epilogue: boolean,
    op = 'linearBiasRelu',
  ) => {
    const M = x.shape[0];
    const K = x.shape[1];
    const N = bias.shape[0];
    const out = output([M, N], 'float32', op);
    if (out.data.size === 0) return out;
    if (K === 0) gpu().fill(out.data, 0);
    else gpu().gemm(rowMajorGemm(dev(x), dev(w), out.data.ptr, M, N, K, false, transB, 1, false, false));
    if (epilogue)
      gpu().launch('bias_relu', grid1d(M * N), [
        ptr(out.data.ptr),
        ptr(dev(bias)),
        ptr(out.data.ptr),
        u32(M * N),
        u32(N),
      ]);
    return out;
  };
  reg('linearBiasRelu', ([x, w, bias], attrs) => encoder(x, w, bias, attrs.transB, true));

  /**
   * A fused column-sum kernel of fused.cu over a [rows, cols] matrix (`params` are its arguments
   * before the partials), then colsum_finish into `sums` [cols]: float64 partials per chunk of
   * rows, added in chunk order, so the sums are the same on every run.
   */
  const fusedColsum = (
    kernel: string,
    params: Param[],
    rows: number,
    cols: number,
    sums: CudaData,
    op: string,
  ) => {
    if (cols === 0) return;
    if (rows === 0) {
      gpu().fill(sums, 0);
      return;
    }
    const g = colsumGrid(rows, cols);
    checkSize(op, 2 * g.chunks * cols);
    const partials = gpu().alloc(2 * g.chunks * cols, `the column-sum partials of ${op}`);
    gpu().launch(kernel, g.launch, [...params, ptr(partials.ptr), u32(rows), u32(cols), u32(g.rowsPerChunk)]);
    gpu().launch('colsum_finish', grid1d(cols), [ptr(partials.ptr), ptr(sums.ptr), u32(g.chunks), u32(cols)]);
    // Freed at once: a later op reusing the block is queued after these kernels on the one stream.
    gpu().free(partials);
  };
  // The Standard SAE's encoder with its column sums: the cuBLAS product, then one pass adding the
  // bias, applying ReLU in place and summing the columns.
  reg('linearBiasReluSum', ([x, w, bias], attrs) => {
    const f = encoder(x, w, bias, attrs.transB, false, 'linearBiasReluSum');
    const [B, F] = f.shape;
    const sums = output([F], 'float32', 'linearBiasReluSum');
    fusedColsum('bias_relu_colsum', [ptr(f.data.ptr), ptr(dev(bias))], B, F, sums.data, 'linearBiasReluSum');
    return [f, sums];
  });
  // Its backward in one pass: dPre = (dF + row)·[f > 0] and the bias gradient Σ_b dPre.
  reg('reluGradRowSum', ([dF, row, f], attrs) => {
    const [B, F] = dF.shape;
    // in place (the caller gave dF up): each thread reads its element of dF before writing it
    const dPre = attrs.inPlace
      ? { data: dF.data as CudaData, shape: [...dF.shape], dtype: 'float32' as const }
      : output(dF.shape, 'float32', 'reluGradRowSum');
    const sums = output([F], 'float32', 'reluGradRowSum');
    fusedColsum(
      'relu_grad_row_colsum',
      [ptr(dev(dF)), ptr(dev(row)), ptr(dev(f)), ptr(dPre.data.ptr)],
      B,
      F,
      sums.data,
      'reluGradRowSum',
    );
    return [dPre, sums];
  });

  // Layout: o[i] = x[base + offset of i] covers transpose, slice and broadcastTo.
  const gather = (
    x: KernelTensor,
    shape: readonly number[],
    strides: readonly number[],
    base: number,
    op: string,
  ) => {
    const out = output(shape, x.dtype, op);
    const n = sizeOf(shape);
    if (n > 0)
      gpu().launch('gather_strided', grid1d(n), [
        ptr(dev(x)),
        ptr(out.data.ptr),
        ints(stridedMeta(op, shape, [strides], base)),
      ]);
    return out;
  };
  reg('transpose', ([x], attrs) => {
    const xs = stridesOf(x.shape);
    return gather(
      x,
      attrs.shape,
      attrs.perm.map((p) => xs[p]),
      0,
      'transpose',
    );
  });
  reg('slice', ([x], attrs) => {
    const xs = stridesOf(x.shape);
    return gather(
      x,
      attrs.shape,
      xs,
      attrs.begin.reduce((s, b, i) => s + b * xs[i], 0),
      'slice',
    );
  });
  reg('broadcastTo', ([x], attrs) =>
    gather(x, attrs.shape, broadcastStrides(x.shape, attrs.shape), 0, 'broadcastTo'),
  );
  reg('pad', ([x], attrs) => {
    const out = output(attrs.shape, x.dtype, 'pad');
    const n = sizeOf(attrs.shape);
    if (n > 0)
      gpu().launch('pad32', grid1d(n), [
        ptr(dev(x)),
        ptr(out.data.ptr),
        ints(
          padMeta(
            'pad',
            attrs.shape,
            attrs.paddings.map((p) => p[0]),
            x.shape,
          ),
        ),
      ]);
    return out;
  });
  reg('concat', (xs, attrs) => {
    const out = output(attrs.shape, xs[0].dtype, 'concat');
    const os = stridesOf(attrs.shape);
    let offset = 0;
    for (const x of xs) {
      if (x.size > 0)
        gpu().launch('scatter_strided', grid1d(x.size), [
          ptr(dev(x)),
          ptr(out.data.ptr),
          ints(stridedMeta('concat', x.shape, [os], offset * os[attrs.axis])),
        ]);
      offset += x.shape[attrs.axis];
    }
    return out;
  });

  reg('gatherRows', ([x, idx], attrs) => {
    const out = output(attrs.shape, x.dtype, 'gatherRows');
    const row = sizeOf(x.shape.slice(1));
    const n = sizeOf(attrs.shape);
    if (n > 0)
      gpu().launch('gather_rows', grid1d(n), [
        ptr(dev(x)),
        ptr(dev(idx)),
        ptr(out.data.ptr),
        u32(n),
        u32(row),
        u32(x.shape[0]),
      ]);
    return out;
  });
  reg('scatterAddRows', ([x, idx, upd]) => {
    const out = output(x.shape, x.dtype, 'scatterAddRows');
    const row = sizeOf(x.shape.slice(1));
    gpu().copy(out.data, x.data as CudaData);
    if (upd.size > 0)
      gpu().launch(`scatter_add_rows_${x.dtype === 'int32' ? 'i32' : 'f32'}`, grid1d(upd.size), [
        ptr(dev(idx)),
        ptr(dev(upd)),
        ptr(out.data.ptr),
        u32(upd.size),
        u32(row),
        u32(x.shape[0]),
      ]);
    return out;
  });
  reg('indexColumns', ([x, idx], attrs) => {
    const out = output(attrs.shape, x.dtype, 'indexColumns');
    const n = sizeOf(attrs.shape);
    if (n > 0)
      gpu().launch('index_columns', grid1d(n), [
        ptr(dev(x)),
        ptr(dev(idx)),
        ptr(out.data.ptr),
        u32(n),
        u32(x.shape[1]),
        u32(idx.size),
      ]);
    return out;
  });
  reg('gatherLast', ([x, idx], attrs) => {
    const out = output(attrs.shape, x.dtype, 'gatherLast');
    const n = sizeOf(attrs.shape);
    const width = x.shape[x.shape.length - 1];
    const k = idx.shape[idx.shape.length - 1];
    if (n > 0)
      gpu().launch('gather_last', grid1d(n), [
        ptr(dev(x)),
        ptr(dev(idx)),
        ptr(out.data.ptr),
        u32(n),
        u32(width),
        u32(k),
      ]);
    return out;
  });
  reg('scatterLast', ([idx, vals], attrs) => {
    const out = output(attrs.shape, vals.dtype, 'scatterLast');
    gpu().fill(out.data, 0);
    const k = idx.shape[idx.shape.length - 1];
    if (idx.size > 0)
      gpu().launch(`scatter_last_${vals.dtype === 'int32' ? 'i32' : 'f32'}`, grid1d(idx.size), [
        ptr(dev(idx)),
        ptr(dev(vals)),
        ptr(out.data.ptr),
        u32(idx.size),
        u32(attrs.width),
        u32(k),
      ]);
    return out;
  });

  /** k best per row of x (of relu(x + bias) with a bias), one block per row. */
  const topkRows = (
    x: bigint,
    bias: bigint,
    rows: number,
    n: number,
    k: number,
    shape: readonly number[],
    op: string,
  ) => {
    const values = output(shape, 'float32', op);
    const indices = output(shape, 'int32', op);
    if (rows > 0 && k > 0)
      gpu().launch('topk_rows', gridRows(rows), [
        ptr(x),
        ptr(bias),
        ptr(values.data.ptr),
        ptr(indices.data.ptr),
        u32(rows),
        u32(n),
        u32(k),
      ]);
    return [values, indices];
  };
  reg('topk', ([x], attrs) => {
    const n = x.shape[x.shape.length - 1];
    return topkRows(dev(x), 0n, n === 0 ? 0 : x.size / n, n, attrs.k, attrs.shape, 'topk');
  });
  // The fused TopK encoder: the cuBLAS product, then bias + ReLU applied while selecting (one read).
  reg('topkEncode', ([x, w, b], attrs) => {
    const B = x.shape[0];
    const F = b.shape[0];
    if (B === 0 || attrs.k === 0) return topkRows(0n, 0n, 0, F, attrs.k, attrs.shape, 'topkEncode');
    const pre = encoder(x, w, b, attrs.transB, false);
    const outs = topkRows(pre.data.ptr, dev(b), B, F, attrs.k, attrs.shape, 'topkEncode');
    gpu().free(pre.data);
    return outs;
  });

  reg('biasRelu', ([x, b]) => {
    const out = output(x.shape, 'float32', 'biasRelu');
    if (x.size > 0)
      gpu().launch('bias_relu', grid1d(x.size), [
        ptr(dev(x)),
        ptr(dev(b)),
        ptr(out.data.ptr),
        u32(x.size),
        u32(b.size),
      ]);
    return out;
  });

  /**
   * Entries grouped by key, stably (sparse.cu's counting sort, the CPU's grouping): `order` [n]
   * lists the entries with a key in [0, nKeys) by key, in entry order within a key, and key q's
   * are order[start[q] .. start[q + 1]). The caller frees both after queuing its kernel.
   */
  const groupByKey = (key: bigint, n: number, nKeys: number, op: string) => {
    const { chunk, chunks } = groupChunks(n);
    checkSize(op, chunks * nKeys);
    const counts = gpu().alloc(chunks * nKeys, `the grouping counts of ${op}`);
    const start = gpu().alloc(nKeys + 1, `the grouping offsets of ${op}`);
    const order = gpu().alloc(n, `the grouping order of ${op}`);
    gpu().fill(counts, 0);
    gpu().launch('group_count', gridRows(chunks), [
      ptr(key),
      u32(n),
      u32(nKeys),
      u32(chunk),
      ptr(counts.ptr),
    ]);
    gpu().launch('group_chunk_offsets', grid1d(nKeys), [
      ptr(counts.ptr),
      u32(chunks),
      u32(nKeys),
      ptr(start.ptr),
    ]);
    gpu().launch('exclusive_scan_u32', { grid: [1, 1, 1], block: [GROUP_SCAN_THREADS, 1, 1] }, [
      ptr(start.ptr),
      u32(nKeys),
    ]);
    gpu().launch(
      'group_place',
      gridRows(chunks, GROUP_THREADS),
      [ptr(key), u32(n), u32(nKeys), u32(chunk), ptr(counts.ptr), ptr(start.ptr), ptr(order.ptr)],
      chunk * 4,
    );
    gpu().free(counts);
    return { order, start };
  };

  reg('sparseDecode', (inputs, attrs) => {
    const [values, indices, w] = inputs;
    const [B, d] = attrs.shape;
    const F = w.shape[0];
    const bias = attrs.bias ? dev(inputs[3]) : 0n;
    const out = output(attrs.shape, 'float32', 'sparseDecode');
    if (B * d === 0) return out;
    if (attrs.rows) {
      // Entries grouped by row, each row's summed in entry order: no atomics, the same bits every run.
      const rows = dev(inputs[attrs.bias ? 4 : 3]);
      const g = groupByKey(rows, values.size, B, 'sparseDecode');
      gpu().launch('sparse_decode_grouped', gridRows(B), [
        ptr(dev(values)),
        ptr(dev(indices)),
        ptr(dev(w)),
        ptr(bias),
        ptr(g.order.ptr),
        ptr(g.start.ptr),
        ptr(out.data.ptr),
        u32(B),
        u32(d),
        u32(F),
      ]);
      gpu().free(g.order);
      gpu().free(g.start);
    } else {
      gpu().launch('sparse_decode_rows', gridRows(B), [
        ptr(dev(values)),
        ptr(dev(indices)),
        ptr(dev(w)),
        ptr(bias),
        ptr(out.data.ptr),
        u32(B),
        u32(d),
        u32(F),
        u32(values.shape[1]),
      ]);
    }
    return out;
  });
  reg('sparseDot', (inputs, attrs) => {
    const [y, indices, w] = inputs;
    const [B, d] = y.shape;
    const n = indices.size;
    const out = output(attrs.shape, 'float32', 'sparseDot');
    if (n > 0)
      gpu().launch('sparse_dot', grid1d(n * 32), [
        ptr(dev(y)),
        ptr(dev(indices)),
        ptr(dev(w)),
        ptr(attrs.rows ? dev(inputs[3]) : 0n),
        ptr(out.data.ptr),
        u32(n),
        u32(B),
        u32(d),
        u32(w.shape[0]),
        u32(attrs.rows ? 1 : indices.shape[1]),
      ]);
    return out;
  });
  reg('sparseOuter', (inputs, attrs) => {
    const [values, indices, y] = inputs;
    const [F, d] = attrs.shape;
    const out = output(attrs.shape, 'float32', 'sparseOuter');
    if (F * d === 0) return out;
    if (values.size === 0) {
      gpu().fill(out.data, 0);
      return out;
    }
    // Entries grouped by feature, each feature's row summed in entry order (both layouts): no
    // atomics, the same bits every run.
    const g = groupByKey(dev(indices), values.size, F, 'sparseOuter');
    gpu().launch('sparse_outer_grouped', gridRows(F), [
      ptr(dev(values)),
      ptr(dev(y)),
      ptr(attrs.rows ? dev(inputs[3]) : 0n),
      ptr(g.order.ptr),
      ptr(g.start.ptr),
      ptr(out.data.ptr),
      u32(y.shape[0]),
      u32(d),
      u32(F),
      u32(attrs.rows ? 1 : values.shape[1]),
    ]);
    gpu().free(g.order);
    gpu().free(g.start);
    return out;
  });

  reg('adamUpdate', ([p, g, m, v], attrs) => {
    const outs = [
      output(p.shape, 'float32', 'adamUpdate'),
      output(p.shape, 'float32', 'adamUpdate'),
      output(p.shape, 'float32', 'adamUpdate'),
    ];
    if (p.size > 0)
      gpu().launch('adam_update', grid1d(p.size), [
        ptr(dev(p)),
        ptr(dev(g)),
        ptr(dev(m)),
        ptr(dev(v)),
        ...outs.map((o) => ptr(o.data.ptr)),
        u32(p.size),
        f32(attrs.beta1),
        f32(attrs.beta2),
        f32(attrs.lr / attrs.bc1),
        f32(Math.sqrt(attrs.bc2)),
        f32(attrs.eps),
      ]);
    return outs;
  });
  reg('normalizeRows', ([w]) => {
    const out = output(w.shape, 'float32', 'normalizeRows');
    const cols = w.shape[w.shape.length - 1];
    if (w.size > 0)
      gpu().launch('normalize_rows', gridRows(w.size / cols), [
        ptr(dev(w)),
        ptr(out.data.ptr),
        u32(w.size / cols),
        u32(cols),
      ]);
    return out;
  });
  reg('removeParallelComponent', ([w, g]) => {
    const out = output(w.shape, 'float32', 'removeParallelComponent');
    const cols = w.shape[w.shape.length - 1];
    if (w.size > 0)
      gpu().launch('remove_parallel', gridRows(w.size / cols), [
        ptr(dev(w)),
        ptr(dev(g)),
        ptr(out.data.ptr),
        u32(w.size / cols),
        u32(cols),
      ]);
    return out;
  });
  // Two passes: Σx² of every tensor into one device scalar, then each tensor scaled by the clip
  // coefficient read on the device (no host round trip).
  reg('clipByGlobalNorm', (inputs, attrs) => {
    const acc = output([], 'float32', 'clipByGlobalNorm');
    gpu().fill(acc.data, 0);
    for (const t of inputs)
      if (t.size > 0)
        gpu().launch('sumsq_accum', grid1d(t.size), [ptr(dev(t)), u32(t.size), ptr(acc.data.ptr)]);
    const outs = inputs.map((t) => {
      const o = output(t.shape, 'float32', 'clipByGlobalNorm');
      if (t.size > 0)
        gpu().launch('clip_scale', grid1d(t.size), [
          ptr(dev(t)),
          ptr(o.data.ptr),
          u32(t.size),
          ptr(acc.data.ptr),
          f32(attrs.maxNorm),
        ]);
      return o;
    });
    const norm = output([], 'float32', 'clipByGlobalNorm');
    gpu().launch('clip_norm_out', { grid: [1, 1, 1], block: [32, 1, 1] }, [
      ptr(acc.data.ptr),
      ptr(norm.data.ptr),
    ]);
    gpu().free(acc.data);
    return [...outs, norm];
  });

  reg('fill', (_i, attrs) => {
    const out = output(attrs.shape, attrs.dtype, 'fill');
    gpu().fill(out.data, attrs.dtype === 'int32' ? attrs.value >>> 0 : f32bits(attrs.value));
    return out;
  });
  reg('arange', (_i, attrs) => {
    const out = output([attrs.n], attrs.dtype, 'arange');
    if (attrs.n > 0) {
      const isInt = attrs.dtype === 'int32';
      gpu().launch(isInt ? 'arange_i32' : 'arange_f32', grid1d(attrs.n), [
        ptr(out.data.ptr),
        u32(attrs.n),
        isInt ? i32(attrs.start) : f32(attrs.start),
        isInt ? i32(attrs.step) : f32(attrs.step),
      ]);
    }
    return out;
  });
  // Uniform draws run Philox on the device (bit for bit the host's stream); normals and unit rows
  // use float64 Box–Muller, computed on the host by core and uploaded, so every backend gets the
  // same bits (the device's double log/cos may differ from V8's in the last place).
  for (const op of RANDOM_OPS) {
    reg(op, (_i, attrs) => {
      const shape = attrs.shape as number[];
      if (op === 'randomUniform') {
        const a = attrs as OpAttrs['randomUniform'];
        const out = output(shape, 'float32', op);
        const n = sizeOf(shape);
        if (n > 0) {
          const [k0, k1] = philoxKey(seedFor(a.purpose ?? 'user', a.seed));
          gpu().launch('philox_uniform', grid1d(Math.ceil(n / 4)), [
            ptr(out.data.ptr),
            u32(n),
            u32(k0),
            u32(k1),
            u32(a.stream),
            f64(a.low),
            f32(Math.fround(a.high - a.low)),
          ]);
        }
        return out;
      }
      return {
        data: gpu().upload(randomValues(op, attrs), 'float32', op),
        shape: [...shape],
        dtype: 'float32',
      };
    });
  }
  // Composites core runs from the ops above (mean, l1Norm, l2Norm, batchTopkEncode,
  // countNonFinite) need no kernel; make sure the fused ones are really in the table.
  for (const op of ['topkEncode', 'linearBiasReluSum', 'reluGradRowSum'] as const)
    if (!getKernel(op, backend)) throw new Error(`registerCudaKernels: ${op} missing`);
}
