/**
 * The fused kernels of the ReLU encoder with its L1 penalty (the Standard SAE's step), which
 * replace passes over the [B, F] activations that their compositions in core would make:
 *
 * - `linearBiasReluSum(x, W, b)` → [f, Σ_b f]: the encoder product whose epilogue adds the bias,
 *   applies ReLU, stores f and sums the workgroup's rows of f per column into a partial-sum row
 *   (see `MatmulEpilogue` in matmul.ts); a small pass then adds the partial rows per column. The
 *   composition (linearBiasRelu, then sum over the batch) reads f back in full.
 * - `reluGradRowSum(dF, row, f)` → [dPre, Σ_b dPre] with dPre = (dF + row)·[f > 0]: one pass
 *   writes dPre and per-column partial sums of a chunk of rows, and the same small pass adds them.
 *   The composition (add with `row` broadcast down the batch, reluGrad, sum) makes three passes
 *   and a [B, F] temporary.
 *
 * Sums are float32, rows in order within a partial and partials in order (deterministic; the CPU
 * backend adds rows in order in float64, so the column sums differ from it by float32 rounding
 * growing with the batch: under B·2⁻²⁴·Σ|f| with every term non-negative, as the tests bound it).
 * A NaN anywhere in a column makes its sum NaN (tracked from the bits, not trusted to the adds).
 * Element values match this backend's compositions: relu(v) is max(v, 0) with NaN kept, and the
 * mask [f > 0] gives 0 where f ≤ 0 or f is NaN, whatever dF + row is (this backend's reluGrad).
 *
 * @module
 */
import type { Backend, KernelOutput, KernelTensor, OpAttrs, OpName } from '@dictlearn/core';
import { registerKernel } from '@dictlearn/core';
import { type GpuData, type GpuDevice, groupsFor } from './device.js';
import { matmulProgram } from './matmul.js';
import { bindings, kernel1d } from './wgsl.js';

type Kernel<Op extends OpName> = (
  inputs: KernelTensor[],
  attrs: OpAttrs[Op],
) => KernelOutput | KernelOutput[];

const buf = (t: KernelTensor) => (t.data as GpuData).buffer;

/** Rows of [B, F] one thread of `reluGradRowSum` walks (more for huge batches: ≤ 65535 chunks). */
export const GRAD_ROWS_PER_THREAD = 16;

/** NaN-aware adds (NaN if either side is), scalar and vec4. */
const ADD_NAN = /* wgsl */ `
fn isnan4(x: vec4f) -> vec4<bool> { return (bitcast<vec4u>(x) & vec4u(0x7fffffffu)) > vec4u(0x7f800000u); }
fn addNan(a: f32, b: f32) -> f32 { return select(a + b, nan_(), isnan_(a) || isnan_(b)); }
fn addNan4(a: vec4f, b: vec4f) -> vec4f { return select(a + b, vec4f(nan_()), isnan4(a) | isnan4(b)); }`;

/**
 * WGSL of the `reluGradRowSum` pass over [B, F] as rows of `F / width` elements of width 1 or 4
 * (vec4 loads where F is a multiple of 4): thread (q, chunk) walks its chunk of rows for column
 * (quad) q, storing dPre and one partial column sum per chunk. prm: B, F / width, rows per chunk.
 */
export function reluGradRowSumShader(width: 1 | 4, inPlace = false): string {
  const t = width === 4 ? 'vec4f' : 'f32';
  const zero = width === 4 ? 'vec4f(0.0)' : '0.0';
  const isnan = width === 4 ? 'isnan4' : 'isnan_';
  const add = width === 4 ? 'addNan4' : 'addNan';
  // In place (the caller gave dF up): dPre is written over DF, which each thread reads first.
  const decls = inPlace
    ? bindings(
        [
          ['ROW', t],
          ['FF', t],
        ],
        [
          ['DF', t],
          ['PART', t],
        ],
      )
    : bindings(
        [
          ['DF', t],
          ['ROW', t],
          ['FF', t],
        ],
        [
          ['O', t],
          ['PART', t],
        ],
      );
  return `${kernel1d(
    decls,
    // kernel1d's i counts (chunk, q) pairs, q fastest: lanes of a workgroup take adjacent columns.
    `let B = prm[1]; let W = prm[2]; let rows = prm[3];
  let q = i % W; let chunk = i / W;
  let rw = ROW[q];
  var s = ${zero};
  let end = min(B, (chunk + 1u) * rows);
  for (var r = chunk * rows; r < end; r++) {
    let at = r * W + q;
    let f = FF[at];
    // (dF + row) rounded to float32 first, as the add kernel stores it; 0 where f ≤ 0 or NaN.
    let d = select(${zero}, DF[at] + rw, (f > ${zero}) & !${isnan}(f));
    ${inPlace ? 'DF' : 'O'}[at] = d;
    s = ${add}(s, d);
  }
  PART[i] = s;`,
    ADD_NAN,
  )}`;
}

/** WGSL adding P partial rows of N column sums, per column in order (prm: N, P). */
export const PARTIAL_ROWS_SUM = kernel1d(
  bindings([['PART', 'f32']], [['O', 'f32']]),
  `let N = prm[0]; let P = prm[1];
  var acc = 0.0;
  for (var p = 0u; p < P; p++) { acc = addNan(acc, PART[p * N + i]); }
  O[i] = acc;`,
  ADD_NAN,
);

/**
 * Registers `linearBiasReluSum`, `reluGradRowSum`, `linearBiasReluSumDecode` and `reluDecodeGrad`
 * on a WebGPU backend instance.
 */
export function registerFusedKernels(backend: Backend, gpu: () => GpuDevice): void {
  const reg = <Op extends OpName>(op: Op, k: Kernel<Op>) => registerKernel(op, backend, k);

  /** Σ over P partial rows of [P, N] into a fresh [N] tensor (zeros when P = 0); frees the partials. */
  const sumPartials = (part: GpuData, P: number, N: number, op: string): KernelOutput => {
    const out = gpu().alloc(N, op);
    gpu().dispatch(PARTIAL_ROWS_SUM, [part.buffer, out.buffer], [N, P], groupsFor(N));
    gpu().free(part);
    return { data: out, shape: [N], dtype: 'float32' };
  };

  const encode = (
    x: KernelTensor,
    w: KernelTensor,
    bias: KernelTensor,
    attrs: { shape: number[]; transB: boolean },
  ): KernelOutput[] => {
    const { shape, transB } = attrs;
    const [M, N] = shape;
    const K = x.shape[1];
    const f = gpu().alloc(M * N, 'linearBiasReluSum');
    // K = 0: relu(bias); x's buffer is then too small to bind as vec4s, so the scalar kernel.
    const p = matmulProgram(
      { M, N, K, transA: false, transB },
      1,
      gpu().subgroupSize,
      'biasReluColsum',
      K === 0 ? 'tiled' : undefined,
    );
    const P = M === 0 ? 0 : p.groups[1];
    const part = gpu().alloc(P * N, 'linearBiasReluSum');
    gpu().dispatch(
      p.code,
      [buf(x), buf(w), buf(bias), f.buffer, part.buffer],
      [M, N, K, 0, transB ? 1 : 0, 0, 0],
      p.groups,
    );
    return [{ data: f, shape: [M, N], dtype: 'float32' }, sumPartials(part, P, N, 'linearBiasReluSum')];
  };
  reg('linearBiasReluSum', ([x, w, bias], attrs) => encode(x, w, bias, attrs));

  // The encoder, then x̂ = f·W_dec + b_dec (the bias in the product's epilogue).
  reg('linearBiasReluSumDecode', ([x, w, bias, wDec, bDec], attrs) => {
    const [f, sums] = encode(x, w, bias, attrs);
    const [M, K] = attrs.shape;
    const N = wDec.shape[1];
    const xhat = gpu().alloc(M * N, 'linearBiasReluSumDecode');
    const p = matmulProgram(
      { M, N, K, transA: false, transB: false },
      1,
      gpu().subgroupSize,
      'bias',
      K === 0 ? 'tiled' : undefined,
    );
    gpu().dispatch(
      p.code,
      [(f.data as GpuData).buffer, buf(wDec), buf(bDec), xhat.buffer],
      [M, N, K, 0, 0, 0, 0],
      p.groups,
    );
    return [f, sums, { data: xhat, shape: [M, N], dtype: 'float32' }];
  });

  // dPre = (dX̂·W_decᵀ + row)·[f > 0] with its column sums: in place, the product's epilogue reads
  // each element of f before it writes dPre there; else the product, then reluGradRowSum over it.
  reg('reluDecodeGrad', ([dX, wDec, row, f], attrs) => {
    const [B, F] = f.shape;
    const K = dX.shape[1];
    const dims = { M: B, N: F, K, transA: false, transB: true };
    const kernel = K === 0 ? 'tiled' : undefined;
    if (!attrs.inPlace) {
      const dF = gpu().alloc(B * F, 'reluDecodeGrad');
      const p = matmulProgram(dims, 1, gpu().subgroupSize, 'none', kernel);
      gpu().dispatch(p.code, [buf(dX), buf(wDec), dF.buffer], [B, F, K, 0, 1, 0, 0], p.groups);
      const dFt = { data: dF, shape: [B, F], dtype: 'float32' as const, size: B * F };
      return registeredGrad([dFt, row, f]);
    }
    const p = matmulProgram(dims, 1, gpu().subgroupSize, 'reluGradColsum', kernel);
    const P = B === 0 ? 0 : p.groups[1];
    const part = gpu().alloc(P * F, 'reluDecodeGrad');
    gpu().dispatch(
      p.code,
      [buf(dX), buf(wDec), buf(row), buf(f), part.buffer],
      [B, F, K, 0, 1, 0, 0],
      p.groups,
    );
    return [{ data: f.data, shape: [B, F], dtype: 'float32' }, sumPartials(part, P, F, 'reluDecodeGrad')];
  });

  // reluGradRowSum in place over a fresh dF (reluDecodeGrad's product)
  const registeredGrad = (inputs: KernelTensor[]) => reluGradRowSum(inputs, { inPlace: true });
  const reluGradRowSum = ([dF, row, f]: KernelTensor[], attrs: { inPlace: boolean }): KernelOutput[] => {
    const [B, F] = dF.shape;
    const width = F % 4 === 0 ? 4 : 1;
    const W = F / width;
    const rows = Math.max(GRAD_ROWS_PER_THREAD, Math.ceil(B / 65535));
    const P = Math.ceil(B / rows);
    const part = gpu().alloc(P * F, 'reluGradRowSum');
    const prm = [P * W, B, W, rows];
    if (attrs.inPlace) {
      gpu().dispatch(
        reluGradRowSumShader(width, true),
        [buf(row), buf(f), buf(dF), part.buffer],
        prm,
        groupsFor(P * W),
      );
      return [{ data: dF.data, shape: [B, F], dtype: 'float32' }, sumPartials(part, P, F, 'reluGradRowSum')];
    }
    const dPre = gpu().alloc(B * F, 'reluGradRowSum');
    gpu().dispatch(
      reluGradRowSumShader(width),
      [buf(dF), buf(row), buf(f), dPre.buffer, part.buffer],
      prm,
      groupsFor(P * W),
    );
    return [{ data: dPre, shape: [B, F], dtype: 'float32' }, sumPartials(part, P, F, 'reluGradRowSum')];
  };
  reg('reluGradRowSum', (inputs, attrs) => reluGradRowSum(inputs, attrs));
}
