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
import { bindings, kernel1d } from './wgsl.js';

type Kernel<Op extends OpName> = (
  inputs: KernelTensor[],
  attrs: OpAttrs[Op],
) => KernelOutput | KernelOutput[];

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const buf = (t: KernelTensor) => (t.data as GpuData).buffer;

/** Ranks a before b: larger first, NaN largest, ties to the lower index (core's top-k order). */
const BEFORE = /* wgsl */ `
fn before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
  let na = isnan_(a); let nb = isnan_(b);
  if (na || nb) { if (na && nb) { return ia < ib; } return na; }
  return a > b || (a == b && ia < ib);
}`;

/**
 * WGSL kernels of core's sparse-code ops (correctness first; every sum over entries runs in entry
 * order inside one thread, so results are the same on every run):
 *
 * - `topkEncode`: the backend's fused encoder product (bias and ReLU in its epilogue), then one
 *   thread per row takes the k best in k sweeps over F.
 * - `sparseDecode`: one thread per output element sums its row's k entries (the batch layout,
 *   whose rows hold any number of entries, scans all entries).
 * - `sparseDot`: one thread per entry.
 * - `sparseOuter`: one thread per dictionary row scans the entries in order and adds those of its
 *   feature (no atomics, so the sums are deterministic).
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
    const body = `let n = prm[1]; let k = prm[2]; let base = i * n;
  var pv = 0.0; var pi = -1;
  for (var j = 0u; j < k; j++) {
    var bv = 0.0; var bi = -1;
    for (var c = 0u; c < n; c++) {
      let v = X[base + c];
      if (pi >= 0 && !before(pv, u32(pi), v, c)) { continue; }
      if (bi < 0 || before(v, c, bv, u32(bi))) { bv = v; bi = i32(c); }
    }
    VALS[i * k + j] = bv; IDXS[i * k + j] = bi; pv = bv; pi = bi;
  }`;
    gpu().dispatch(
      kernel1d(
        bindings(
          [['X', 'f32']],
          [
            ['VALS', 'f32'],
            ['IDXS', 'i32'],
          ],
        ),
        body,
        BEFORE,
      ),
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
    const ins: [string, string][] = [
      ['V', 'f32'],
      ['IDX', 'i32'],
      ['W', 'f32'],
    ];
    if (attrs.bias) ins.push(['BIAS', 'f32']);
    if (attrs.rows) ins.push(['ROWS', 'i32']);
    // prm: [B·d, d, F, k, n]; per row: its k entries; batch layout: every entry, keeping its row's.
    const add = `let f = IDX[e]; if (f >= 0 && u32(f) < prm[2]) { acc = acc + V[e] * W[u32(f) * d + c]; }`;
    const loop = attrs.rows
      ? `for (var e = 0u; e < prm[4]; e++) { if (ROWS[e] == i32(r)) { ${add} } }`
      : `for (var e = r * prm[3]; e < (r + 1u) * prm[3]; e++) { ${add} }`;
    const body = `let d = prm[1]; let r = i / d; let c = i % d; var acc = 0.0;
  ${loop}
  O[i] = acc${attrs.bias ? ' + BIAS[c]' : ''};`;
    gpu().dispatch(
      kernel1d(bindings(ins, [['O', 'f32']]), body),
      [...inputs.map(buf), out.data.buffer],
      [B * d, d, w.shape[0], k, n],
      groupsFor(B * d),
    );
    return out;
  });

  reg('sparseDot', (inputs, attrs) => {
    const [y, indices, w] = inputs;
    const [B, d] = y.shape;
    const n = indices.size;
    const k = attrs.rows ? 1 : indices.shape[1];
    const out = output(attrs.shape, 'float32', 'sparseDot');
    const ins: [string, string][] = [
      ['Y', 'f32'],
      ['IDX', 'i32'],
      ['W', 'f32'],
    ];
    if (attrs.rows) ins.push(['ROWS', 'i32']);
    const body = `let e = i; let d = prm[1]; let r = ${rowOf(attrs.rows)}; let f = IDX[e];
  var acc = 0.0;
  if (f >= 0 && u32(f) < prm[2] && r >= 0 && u32(r) < prm[4]) {
    for (var c = 0u; c < d; c++) { acc = acc + Y[u32(r) * d + c] * W[u32(f) * d + c]; }
  }
  O[e] = acc;`;
    gpu().dispatch(
      kernel1d(bindings(ins, [['O', 'f32']]), body),
      [...inputs.map(buf), out.data.buffer],
      [n, d, w.shape[0], k, B],
      groupsFor(n),
    );
    return out;
  });

  reg('sparseOuter', (inputs, attrs) => {
    const [values, , y] = inputs;
    const [F, d] = attrs.shape;
    const n = values.size;
    const k = attrs.rows ? 1 : values.shape[1];
    const out = output(attrs.shape, 'float32', 'sparseOuter');
    const ins: [string, string][] = [
      ['V', 'f32'],
      ['IDX', 'i32'],
      ['Y', 'f32'],
    ];
    if (attrs.rows) ins.push(['ROWS', 'i32']);
    // One thread per dictionary row f: zero it, then add every entry of feature f in entry order.
    const body = `let f = i32(i); let d = prm[1]; let o = i * d;
  for (var c = 0u; c < d; c++) { O[o + c] = 0.0; }
  for (var e = 0u; e < prm[2]; e++) {
    if (IDX[e] != f) { continue; }
    let r = ${rowOf(attrs.rows)};
    if (r < 0 || u32(r) >= prm[4]) { continue; }
    let v = V[e]; let yo = u32(r) * d;
    for (var c = 0u; c < d; c++) { O[o + c] = O[o + c] + v * Y[yo + c]; }
  }`;
    gpu().dispatch(
      kernel1d(bindings(ins, [['O', 'f32']]), body),
      [...inputs.map(buf), out.data.buffer],
      [F, d, n, k, y.shape[0]],
      groupsFor(F),
    );
    return out;
  });
}
