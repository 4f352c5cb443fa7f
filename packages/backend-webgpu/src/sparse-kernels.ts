import {
  type Backend,
  getKernel,
  type KernelOutput,
  type KernelTensor,
  type OpAttrs,
  type OpName,
  registerKernel,
} from '@dictlearn/core';
import { type GpuData, type GpuDevice, groupsFor } from './device.js';
import { bindings, kernel1d, topkSelectShader } from './wgsl.js';

type Kernel<Op extends OpName> = (
  inputs: KernelTensor[],
  attrs: OpAttrs[Op],
) => KernelOutput | KernelOutput[];

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const buf = (t: KernelTensor) => (t.data as GpuData).buffer;

/**
 * WGSL kernels of core's sparse-code ops (correctness first; every sum over entries runs in entry
 * order inside one thread, so results are the same on every run):
 *
 * - `topkEncode`: the backend's fused encoder product (bias and ReLU in its epilogue), then one
 *   thread per row takes the k best in k sweeps over F (`topkSelectShader`, vec4 loads).
 * - `sparseDecode`: one thread per 4 output columns (vec4 loads where d allows, else one column)
 *   sums its row's k entries (the batch layout, whose rows hold any number of entries, scans all
 *   entries).
 * - `sparseDot`: one thread per entry (rows loaded as vec4s where d allows).
 * - `sparseOuter`: a counting sort builds each feature's list of entries in entry order (no
 *   atomics), then one thread per (feature, up to 4 vec4 columns) adds its entries' rows in that
 *   order: the same sums as scanning all entries per feature, without F·n index reads per column
 *   or divergent lanes.
 *
 * `batchTopkEncode` has no kernel here: core's composition (encoder product and a top-k over the
 * flattened batch) runs instead.
 */
export function registerSparseKernels(backend: Backend, gpu: () => GpuDevice): void {
  const reg = <Op extends OpName>(op: Op, k: Kernel<Op>) => registerKernel(op, backend, k);
  const output = (shape: readonly number[], dtype: 'float32' | 'int32', op: string) => ({
    data: gpu().alloc(sizeOf(shape), op),
    shape: [...shape],
    dtype,
  });

  reg('topkEncode', ([x, w, b], attrs) => {
    const { k, transB, shape } = attrs;
    const B = x.shape[0];
    const F = b.shape[0];
    const values = output(shape, 'float32', 'topkEncode');
    const indices = output(shape, 'int32', 'topkEncode');
    if (B === 0 || k === 0) return [values, indices];
    const encoder = getKernel('linearBiasRelu', backend);
    if (!encoder) throw new Error('topkEncode: this backend has no linearBiasRelu kernel');
    const pre = encoder([x, w, b], { transB, shape: [B, F] }, backend) as KernelOutput;
    gpu().dispatch(
      topkSelectShader(F),
      [(pre.data as GpuData).buffer, values.data.buffer, indices.data.buffer],
      [B, F, k],
      groupsFor(B),
    );
    gpu().free(pre.data as GpuData);
    return [values, indices];
  });

  // The row of entry e: explicit (ROWS) or e / k for the per-row layout.
  const rowOf = (rows: boolean) => (rows ? 'ROWS[e]' : 'i32(e / prm[3])');

  reg('sparseDecode', (inputs, attrs) => {
    const [values, , w] = inputs;
    const [B, d] = attrs.shape;
    const n = values.size;
    const k = attrs.rows ? 1 : values.shape[1];
    const out = output(attrs.shape, 'float32', 'sparseDecode');
    // Columns as vec4s where d allows (a thread per 4 output columns; lavapipe pays per load).
    const width = d % 4 === 0 ? 4 : 1;
    const t = width === 4 ? 'vec4f' : 'f32';
    const ins: [string, string][] = [
      ['V', 'f32'],
      ['IDX', 'i32'],
      ['W', t],
    ];
    if (attrs.bias) ins.push(['BIAS', t]);
    if (attrs.rows) ins.push(['ROWS', 'i32']);
    // prm: [B·d/width, d/width, F, k, n]; per row: its k entries; batch layout: every entry, keeping its row's.
    const add = `let f = IDX[e]; if (f >= 0 && u32(f) < prm[2]) { acc = acc + V[e] * W[u32(f) * d + c]; }`;
    const loop = attrs.rows
      ? `for (var e = 0u; e < prm[4]; e++) { if (ROWS[e] == i32(r)) { ${add} } }`
      : `for (var e = r * prm[3]; e < (r + 1u) * prm[3]; e++) { ${add} }`;
    const body = `let d = prm[1]; let r = i / d; let c = i % d; var acc = ${t}(0.0);
  ${loop}
  O[i] = acc${attrs.bias ? ' + BIAS[c]' : ''};`;
    const W = d / width;
    gpu().dispatch(
      kernel1d(bindings(ins, [['O', t]]), body),
      [...inputs.map(buf), out.data.buffer],
      [B * W, W, w.shape[0], k, n],
      groupsFor(B * W),
    );
    return out;
  });

  reg('sparseDot', (inputs, attrs) => {
    const [y, indices, w] = inputs;
    const [B, d] = y.shape;
    const n = indices.size;
    const k = attrs.rows ? 1 : indices.shape[1];
    const out = output(attrs.shape, 'float32', 'sparseDot');
    // Rows loaded as vec4s where d allows, the products still added one column after another.
    const width = d % 4 === 0 ? 4 : 1;
    const t = width === 4 ? 'vec4f' : 'f32';
    const ins: [string, string][] = [
      ['Y', t],
      ['IDX', 'i32'],
      ['W', t],
    ];
    if (attrs.rows) ins.push(['ROWS', 'i32']);
    const addProducts =
      width === 4
        ? 'let p = Y[u32(r) * d + c] * W[u32(f) * d + c]; acc = acc + p.x; acc = acc + p.y; acc = acc + p.z; acc = acc + p.w;'
        : 'acc = acc + Y[u32(r) * d + c] * W[u32(f) * d + c];';
    const body = `let e = i; let d = prm[1]; let r = ${rowOf(attrs.rows)}; let f = IDX[e];
  var acc = 0.0;
  if (f >= 0 && u32(f) < prm[2] && r >= 0 && u32(r) < prm[4]) {
    for (var c = 0u; c < d; c++) { ${addProducts} }
  }
  O[e] = acc;`;
    gpu().dispatch(
      kernel1d(bindings(ins, [['O', 'f32']]), body),
      [...inputs.map(buf), out.data.buffer],
      [n, d / width, w.shape[0], k, B],
      groupsFor(n),
    );
    return out;
  });

  reg('sparseOuter', (inputs, attrs) => {
    const [values, indices, y] = inputs;
    const [F, d] = attrs.shape;
    const n = values.size;
    const k = attrs.rows ? 1 : values.shape[1];
    const out = output(attrs.shape, 'float32', 'sparseOuter');
    if (F === 0 || d === 0) return out;
    const dev = gpu();
    const chunks = Math.ceil(n / OUTER_CHUNK);
    const tmp = (size: number) => dev.alloc(size, 'sparseOuter');
    const [count, rank, total, offsets, listValues, listRows] = [
      tmp(chunks * F),
      tmp(n),
      tmp(F),
      tmp(F + 1),
      tmp(n),
      tmp(n),
    ];
    const width = d % 4 === 0 ? 4 : 1;
    const W = d / width;
    // Each thread takes `quads` columns (of `width`) spread W / quads apart, so that the lanes of a
    // subgroup read adjacent columns and each entry's value and row are loaded once for all.
    const quads = W % OUTER_QUADS === 0 ? OUTER_QUADS : 1;
    const G = W / quads;
    // prm of every pass: threads, F, n, entries per chunk, chunks, then pass-specific.
    const common = [F, n, OUTER_CHUNK, chunks];
    dev.dispatch(OUTER_ZERO, [count.buffer], [chunks * F], groupsFor(chunks * F));
    dev.dispatch(OUTER_LOCAL_RANK, [buf(indices), rank.buffer, count.buffer], [n, ...common], groupsFor(n));
    dev.dispatch(OUTER_CHUNK_OFFSETS, [count.buffer, total.buffer], [F, ...common], groupsFor(F));
    dev.dispatch(OUTER_FEATURE_OFFSETS, [total.buffer, offsets.buffer], [1, ...common], 1);
    dev.dispatch(
      outerPlaceShader(attrs.rows),
      [
        buf(indices),
        rank.buffer,
        count.buffer,
        offsets.buffer,
        buf(values),
        ...(attrs.rows ? [buf(inputs[3])] : []),
        listValues.buffer,
        listRows.buffer,
      ],
      [n, ...common, k, y.shape[0]],
      groupsFor(n),
    );
    dev.dispatch(
      outerProductShader(width, quads),
      [offsets.buffer, listValues.buffer, listRows.buffer, buf(y), out.data.buffer],
      [F * G, ...common, W, G],
      groupsFor(F * G),
    );
    for (const t of [count, rank, total, offsets, listValues, listRows]) dev.free(t);
    return out;
  });
}

/**
 * Entries per chunk of `sparseOuter`'s list building: each entry scans its chunk (n·C compares,
 * the same address across a subgroup's lanes) and each feature walks the chunks (F·n/C). C = √F
 * would balance the two, but the counts take n/C·F words (16 MB at n = 131072, F = 4096 with
 * C = 128), so C is larger.
 */
export const OUTER_CHUNK = 128;

// sparseOuter builds, per feature, the list of its entries in entry order (a counting sort with no
// atomics, so the same on every run), then one thread per (feature, column quad) adds its entries.
// prm: threads, F, n, C (entries per chunk), chunks, then the product's own.
const OUTER_PRM = 'let F = prm[1]; let n = prm[2]; let C = prm[3]; let chunks = prm[4];';

const OUTER_ZERO = kernel1d(bindings([], [['CNT', 'u32']]), 'CNT[i] = 0u;');

/**
 * Per entry e of feature f (skipped when f is out of range): RANK[e] = entries of f before e in
 * e's chunk; the last entry of f in a chunk writes that chunk's count of f.
 */
const OUTER_LOCAL_RANK = kernel1d(
  bindings(
    [['IDX', 'i32']],
    [
      ['RANK', 'u32'],
      ['CNT', 'u32'],
    ],
  ),
  `${OUTER_PRM}
  let f = IDX[i];
  if (f < 0 || u32(f) >= F) { return; }
  let chunk = i / C; let c1 = min((chunk + 1u) * C, n);
  var before = 0u; var after = 0u;
  for (var j = chunk * C; j < c1; j++) {
    if (IDX[j] == f) { if (j < i) { before++; } else if (j > i) { after++; } }
  }
  RANK[i] = before;
  if (after == 0u) { CNT[chunk * F + u32(f)] = before + 1u; }`,
);

/** Per feature: its counts per chunk become the entries before the chunk; TOTAL its count. */
const OUTER_CHUNK_OFFSETS = kernel1d(
  bindings(
    [],
    [
      ['CNT', 'u32'],
      ['TOTAL', 'u32'],
    ],
  ),
  `${OUTER_PRM}
  var run = 0u;
  for (var c = 0u; c < chunks; c++) { let at = c * F + i; let t = CNT[at]; CNT[at] = run; run += t; }
  TOTAL[i] = run;`,
);

/** One thread: OFF[f] = entries of the features before f (OFF[F]: all). */
const OUTER_FEATURE_OFFSETS = kernel1d(
  bindings([['TOTAL', 'u32']], [['OFF', 'u32']]),
  `${OUTER_PRM}
  var run = 0u;
  for (var f = 0u; f < F; f++) { OFF[f] = run; run += TOTAL[f]; }
  OFF[F] = run;`,
);

/** Columns (vec4s) per thread of the `sparseOuter` product where d / 4 is a multiple of it. */
export const OUTER_QUADS = 4;

/**
 * Each valid entry to its place in its feature's list (its feature's start, the entries in
 * earlier chunks, its rank in its chunk): the list holds the entry's value and row (−1 when out
 * of range), so that the product reads neither the indices nor a row division. prm after the
 * common ones: k, rows of Y.
 */
function outerPlaceShader(rows: boolean): string {
  const ins: [string, string][] = [
    ['IDX', 'i32'],
    ['RANK', 'u32'],
    ['CNT', 'u32'],
    ['OFF', 'u32'],
    ['V', 'f32'],
  ];
  if (rows) ins.push(['ROWS', 'i32']);
  return kernel1d(
    bindings(ins, [
      ['LV', 'f32'],
      ['LR', 'i32'],
    ]),
    `${OUTER_PRM}
  let k = prm[5]; let B = prm[6];
  let f = IDX[i];
  if (f < 0 || u32(f) >= F) { return; }
  let at = OFF[u32(f)] + CNT[(i / C) * F + u32(f)] + RANK[i];
  let r = ${rows ? 'ROWS[i]' : 'i32(i / k)'};
  LV[at] = V[i];
  LR[at] = select(-1, r, r >= 0 && u32(r) < B);`,
  );
}

/**
 * O[f, q] = Σ over f's list, in entry order, of value·Y[row, q] (rows −1 add nothing), for columns
 * q as vec4s (width 4) or scalars, `quads` of them per thread G apart (thread i: f = i / G,
 * columns i % G + j·G). prm after the common ones: W (d / width), G.
 */
function outerProductShader(width: 1 | 4, quads: number): string {
  const t = width === 4 ? 'vec4f' : 'f32';
  const js = Array.from({ length: quads }, (_, j) => j);
  return kernel1d(
    bindings(
      [
        ['OFF', 'u32'],
        ['LV', 'f32'],
        ['LR', 'i32'],
        ['Y', t],
      ],
      [['O', t]],
    ),
    `${OUTER_PRM}
  let W = prm[5]; let G = prm[6];
  let f = i / G; let q = i % G;
  ${js.map((j) => `var acc${j} = ${t}(0.0);`).join(' ')}
  let end = OFF[f + 1u];
  for (var s = OFF[f]; s < end; s++) {
    let r = LR[s];
    if (r >= 0) {
      let v = LV[s]; let y = u32(r) * W + q;
      ${js.map((j) => `acc${j} = acc${j} + v * Y[y + ${j}u * G];`).join(' ')}
    }
  }
  ${js.map((j) => `O[f * W + q + ${j}u * G] = acc${j};`).join(' ')}`,
  );
}
