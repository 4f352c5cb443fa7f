// The fused encoder kernels (linearBiasReluSum, reluGradRowSum) at sizes that reach every matmul
// kernel, several partial-sum rows and both widths of the gradient pass, against float64 values
// computed here on the host; NaN and infinities in a column; and a Standard SAE trained on WebGPU
// with them against the CPU backend's TypeScript oracle, with fewer dispatches than without them.
import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { SyntheticSource } from '@dictlearn/buffer';
import {
  add,
  getKernel,
  linearBiasReluSum,
  linearBiasReluSumDecode,
  matmul,
  mul,
  registerBackend,
  registerKernel,
  reluDecodeGrad,
  reluGradRowSum,
  scaledDifference,
  square,
  sub,
  sum,
  sumSquaredDifference,
  Trainer,
  tensor,
  unregisterKernel,
  useBackend,
} from '@dictlearn/core';
import { compareValues } from '@dictlearn/core/testing';
import { describe, expect, it } from 'vitest';
import type { WebGPUBackend } from './backend.js';
import { GRAD_ROWS_PER_THREAD } from './fused-kernels.js';
import { type MatmulKernel, matmulKernelFor } from './matmul.js';
import { expectedMatmulKernels, kernelTestBackends, values } from './test-backends.js';

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
const { withSg, noSg, skip } = await kernelTestBackends('webgpu-fused');
const BACKENDS = ['webgpu-fused', 'webgpu-fused-nosg'];

const EPS32 = 2 ** -24;

/**
 * float64 f = relu(x·op(W) + b) and Σ_b f, with per-element bounds: f within 2K·ε·Σ|xᵢwᵢ| (the
 * float32 product in any order) and each column sum within the sum of its elements' bounds plus
 * 2B·ε·Σ|f| (float32 adds of non-negative terms in any grouping).
 */
function encoderReference(
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array,
  [M, N, K]: number[],
  transB: boolean,
) {
  const f = new Float64Array(M * N);
  const fBound = new Float64Array(M * N);
  const sum = new Float64Array(N);
  const sumBound = new Float64Array(N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      let abs = 0;
      for (let k = 0; k < K; k++) {
        const p = x[i * K + k] * w[transB ? j * K + k : k * N + j];
        s += p;
        abs += Math.abs(p);
      }
      const v = s + bias[j];
      f[i * N + j] = Number.isNaN(v) ? v : Math.max(v, 0);
      fBound[i * N + j] = 1e-6 + 2 * K * EPS32 * abs;
      sum[j] += f[i * N + j];
      sumBound[j] += fBound[i * N + j];
    }
  for (let j = 0; j < N; j++) sumBound[j] += 1e-6 + 2 * M * EPS32 * Math.abs(sum[j]);
  return { f, fBound, sum, sumBound };
}

/** The first element outside its bound (NaN must meet NaN, ±∞ the same ∞), or null. */
function firstMismatch(got: ArrayLike<number>, want: Float64Array, bound: Float64Array, what: string) {
  if (got.length !== want.length) return `${what}: length ${got.length}, want ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    const ok = Number.isNaN(w) || !Number.isFinite(w) ? Object.is(g + 0, w + 0) : Math.abs(g - w) <= bound[i];
    if (!ok) return `${what} element ${i}: got ${g}, want ${w} ± ${bound[i]}`;
  }
  return null;
}

async function encoderCase(
  backend: string,
  [M, N, K]: number[],
  transB: boolean,
  edit?: (bias: Float32Array) => void,
) {
  const x = values(M * K, 3 + M + K);
  const w = values(K * N, 4 + N);
  const bias = values(N, 5 + N).map((v) => v * 0.5);
  edit?.(bias);
  const ts = [
    tensor(x, [M, K], { backend }),
    tensor(w, transB ? [N, K] : [K, N], { backend }),
    tensor(bias, [N], { backend }),
  ];
  const outs = linearBiasReluSum(ts[0], ts[1], ts[2], { transB });
  const [f, sum] = [await outs[0].data(), await outs[1].data()];
  for (const t of [...ts, ...outs]) t.dispose();
  const want = encoderReference(x, w, bias, [M, N, K], transB);
  const size = `${M}×${N}×${K} transB ${transB}`;
  return (
    firstMismatch(f, want.f, want.fBound, `${size} f`) ??
    firstMismatch(sum, want.sum, want.sumBound, `${size} Σf`)
  );
}

// Rows over 1, 3 and several workgroups' worth (the partial-sum rows: 8, 16 or 32 rows each);
// columns and K odd (scalar kernels) and multiples of 4 (vec4 kernels), with partial tiles.
const ENCODER_SHAPES = [
  [1, 5, 3],
  [3, 17, 7],
  [70, 33, 9],
  [129, 65, 17],
  [1, 4, 4],
  [37, 36, 12],
  [100, 132, 68],
  [256, 64, 32],
];

describe.skipIf(skip !== undefined)(
  `WebGPU fused encoder kernels${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('the shapes reach every matmul kernel with the column-sum epilogue', () => {
      const used = new Set<MatmulKernel>();
      for (const sg of [withSg.subgroupSize, noSg.subgroupSize])
        for (const [M, N, K] of ENCODER_SHAPES)
          for (const transB of [false, true])
            used.add(matmulKernelFor({ M, N, K, transA: false, transB }, sg));
      expect([...used].sort()).toEqual(expectedMatmulKernels(withSg.subgroupSize).sort());
    });

    it.each(BACKENDS)(
      '%s: linearBiasReluSum matches float64 relu(x·W + b) and its column sums',
      async (backend) => {
        const bad: string[] = [];
        for (const shape of ENCODER_SHAPES)
          for (const transB of [false, true]) {
            const r = await encoderCase(backend, shape, transB);
            if (r) bad.push(r);
          }
        expect(bad).toEqual([]);
      },
    );

    it.each(BACKENDS)(
      '%s: linearBiasReluSum with a NaN, a −∞ and a +∞ bias: NaN and +∞ columns, a zero column, the rest finite',
      async (backend) => {
        const bad: string[] = [];
        for (const shape of [
          [70, 33, 9],
          [100, 132, 68],
        ])
          for (const transB of [false, true]) {
            const r = await encoderCase(backend, shape, transB, (b) => {
              b[1] = Number.NaN;
              b[2] = Number.NEGATIVE_INFINITY;
              b[shape[1] - 1] = Number.POSITIVE_INFINITY;
            });
            if (r) bad.push(r);
          }
        expect(bad).toEqual([]);
      },
    );

    it.each(BACKENDS)('%s: linearBiasReluSum with B = 0 and K = 0', async (backend) => {
      const [f0, s0] = linearBiasReluSum(
        tensor([], [0, 4], { backend }),
        tensor(values(12, 1), [4, 3], { backend }),
        tensor([1, -2, 3], [3], { backend }),
      );
      expect(f0.shape).toEqual([0, 3]);
      expect(Array.from(await s0.data())).toEqual([0, 0, 0]);
      const [f1, s1] = linearBiasReluSum(
        tensor([], [2, 0], { backend }),
        tensor([], [0, 3], { backend }),
        tensor([1, -2, 3], [3], { backend }),
      );
      expect(Array.from(await f1.data()).map((v) => v + 0)).toEqual([1, 0, 3, 1, 0, 3]);
      expect(Array.from(await s1.data())).toEqual([2, 0, 6]);
      for (const t of [f0, s0, f1, s1]) t.dispose();
    });

    it.each(BACKENDS)(
      '%s: reluGradRowSum matches (dF + row)·[f > 0] exactly and its column sums within float32 rounding',
      async (backend) => {
        const bad: string[] = [];
        // F odd (scalar pass) and a multiple of 4 (vec4 pass); B within one chunk of rows and over several.
        for (const [B, F] of [
          [1, 5],
          [7, 3],
          [3 * GRAD_ROWS_PER_THREAD + 5, 17],
          [1, 4],
          [GRAD_ROWS_PER_THREAD, 8],
          [5 * GRAD_ROWS_PER_THREAD + 3, 132],
        ]) {
          const dF = values(B * F, 7 + B);
          const row = values(F, 8 + F);
          const f = values(B * F, 9 + F).map((v) => Math.max(v, 0)); // about half exactly 0
          // Special values: NaN in dF where f > 0 (NaN column), NaN and −1 in f (masked), +∞ in dF.
          const pos = f.findIndex((v) => v > 0);
          dF[pos] = Number.NaN;
          f[(pos + 1) % (B * F)] = Number.NaN;
          f[(pos + 2) % (B * F)] = -1;
          const want = new Float64Array(B * F);
          const sum = new Float64Array(F);
          const sumBound = new Float64Array(F);
          for (let i = 0; i < B * F; i++) {
            want[i] = f[i] > 0 ? Math.fround(dF[i] + row[i % F]) : 0;
            sum[i % F] += want[i];
          }
          for (let j = 0; j < F; j++) {
            let abs = 0;
            for (let r = 0; r < B; r++) abs += Math.abs(want[r * F + j]);
            sumBound[j] = 1e-7 + 2 * B * EPS32 * abs;
          }
          // Out of place, then in place (dPre written over dF: the same storage, the same values).
          for (const inPlace of [false, true]) {
            const ts = [
              tensor(dF, [B, F], { backend }),
              tensor(row, [F], { backend }),
              tensor(f, [B, F], { backend }),
            ];
            const outs = reluGradRowSum(ts[0], ts[1], ts[2], { inPlace });
            if ((outs[0].storage === ts[0].storage) !== inPlace)
              bad.push(`${B}×${F} inPlace ${inPlace}: dPre ${inPlace ? 'not ' : ''}over dF's storage`);
            const [dPre, colsum] = [await outs[0].data(), await outs[1].data()];
            for (const t of [...ts, ...outs]) t.dispose();
            const what = `${B}×${F}${inPlace ? ' in place' : ''}`;
            const r =
              firstMismatch(dPre, want, new Float64Array(B * F), `${what} dPre`) ??
              firstMismatch(colsum, sum, sumBound, `${what} Σ dPre`);
            if (r) bad.push(r);
            if (!Number.isNaN(colsum[pos % F]))
              bad.push(`${what}: the NaN column summed to ${colsum[pos % F]}`);
          }
        }
        expect(bad).toEqual([]);
      },
    );
  },
);

describe.skipIf(skip !== undefined)(
  `Standard SAE training on WebGPU with the fused kernels${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const FUSED = [
      'linearBiasReluSum',
      'reluGradRowSum',
      'linearBiasReluSumDecode',
      'reluDecodeGrad',
    ] as const;
    const B = 96;
    const d = 24;
    const F = 68; // the vec4 kernels (F, d multiples of 4) and partial tiles
    const STEPS = 20;

    /** Losses, final parameters, dispatches and peak live bytes per step of a 20-step run. */
    async function train(backend: string) {
      await useBackend(backend);
      const trainer = new Trainer(
        {
          architecture: standard({ l1Penalty: 0.2 }),
          dictSize: F,
          warmupSteps: 2,
          sparsityWarmupSteps: 5,
          seed: 4,
        },
        d,
        STEPS,
        0,
        backend,
      );
      const losses: number[] = [];
      const dispatches: number[] = [];
      const handedOut: number[] = [];
      const gpu = backend.startsWith('webgpu') ? (withSg as WebGPUBackend) : undefined;
      let step = 0;
      for await (const x of new SyntheticSource({ dim: d, numFeatures: 40, meanActive: 4, seed: 6 }).batches({
        batchSize: B,
        backend,
      })) {
        await gpu?.sync?.();
        const before = { ...gpu?.stats };
        const logs = await trainer.update(x, true);
        dispatches.push((gpu?.stats?.dispatches ?? 0) - (before.dispatches ?? 0));
        handedOut.push((gpu?.stats?.allocationBytes ?? 0) - (before.allocationBytes ?? 0));
        losses.push(logs?.loss ?? Number.NaN);
        x.dispose();
        if (++step === STEPS) break;
      }
      const params: Record<string, number[]> = {};
      for (const [k, v] of Object.entries(trainer.vars)) params[k] = Array.from(await v.value.data());
      trainer.dispose();
      return { losses, params, dispatches, handedOut };
    }

    /** Runs with the fused kernels taken off the backend, then puts them back. */
    async function withoutFused<T>(fn: () => Promise<T>): Promise<T> {
      const own = FUSED.map((op) => [op, getKernel(op, withSg)] as const);
      for (const op of FUSED) unregisterKernel(op, withSg);
      try {
        return await fn();
      } finally {
        for (const [op, k] of own) if (k) registerKernel(op, withSg, k as never);
      }
    }

    it('20 steps match the CPU oracle within float32 drift, with 4 dispatches and three [B, F] temporaries fewer than the compositions', async () => {
      for (const op of FUSED) expect(getKernel(op, withSg)).toBeDefined();
      const cpu = await train('cpu');
      const fused = await train('webgpu-fused');
      const composed = await withoutFused(() => train('webgpu-fused'));
      // Each step agrees to float32 rounding; summation orders differ (GPU tiles and partial sums
      // vs the CPU's row loops in float64) and Adam carries the differences along. Measured on
      // lavapipe: at most 8.3e-7 relative on the loss and 3.6e-7 absolute on a parameter over the
      // 20 steps (values ~0.01–1); the bounds are about 12× that.
      expect(fused.losses.every(Number.isFinite)).toBe(true);
      expect(compareValues(fused.losses, cpu.losses, { rtol: 1e-5, atol: 0 }, 'loss curve')).toBeNull();
      for (const k of Object.keys(cpu.params))
        expect(compareValues(fused.params[k], cpu.params[k], { rtol: 0, atol: 4e-6 }, k)).toBeNull();
      // Training happens at all (measured: 1.34 → under 1.0).
      expect(fused.losses[STEPS - 1]).toBeLessThan(0.8 * fused.losses[0]);
      // The compositions give the same run (sums in another order; measured 1.2e-7 apart).
      expect(
        compareValues(composed.losses, fused.losses, { rtol: 1e-5, atol: 0 }, 'composed loss curve'),
      ).toBeNull();
      // Per step, forward: linearBiasRelu + sum (f read back) become the product with partial
      // sums + their reduction, 2 dispatches either way, and x̂'s + b_dec moves into the decoder
      // product's epilogue: 1 fewer, and no [B, d] temporary. Backward: the composition's
      // broadcast of the penalty's gradient to [B, F], add, reluGrad and sum become one pass and
      // the reduction: 2 fewer, and that pass moves into the dF product's epilogue, which writes
      // dPre over f (f is read there, element by element, first): 1 fewer, and neither dF nor
      // the broadcast's [B, F] buffer is needed (the composition's sum of f's two gradients is
      // written over the first, as the backward pass sums every gradient); the partial column
      // sums (B / 16 rows of F here, B / 8 at most, twice) take their place. Measured: 4
      // dispatches and 309.9 rows of F fewer handed out per step = 3·96 + 96·24/68 − 2·6.
      const last = (a: number[]) => a[a.length - 1];
      expect(last(composed.dispatches) - last(fused.dispatches)).toBe(4);
      const rowsOfF = (last(composed.handedOut) - last(fused.handedOut)) / (4 * F);
      const fewer = 3 * B + (B * d) / F;
      expect(rowsOfF).toBeGreaterThan(fewer - 2 * Math.ceil(B / 8));
      expect(rowsOfF).toBeLessThanOrEqual(fewer + 1);
    });
  },
);

// The SAE's encode–decode op and its backward (linearBiasReluSumDecode, reluDecodeGrad): the
// products' epilogues (+ b_dec; (· + row)·[f > 0] read from f before dPre is written over it)
// give the bits of the ops they replace on the same backend, the column sums their values.
describe.skipIf(skip !== undefined)(
  `the encode–decode kernels on WebGPU${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it.each(BACKENDS.flatMap((b) => [5, 64, 65, 3001].map((n) => [b, n] as const)))(
      'on %s over %i elements: sumSquaredDifference and scaledDifference give the bits of their compositions',
      async (backend, n) => {
        const t = (v: ArrayLike<number>) => tensor(Array.from(v), [n], { backend });
        const [a, b] = [t(values(n, 8)), t(values(n, 9))];
        const s = tensor([0.37], [], { backend });
        const [got, want] = [await sumSquaredDifference(a, b).data(), await sum(square(sub(a, b))).data()];
        expect(Array.from(got)).toEqual(Array.from(want));
        expect(Array.from(await scaledDifference(a, b, s).data())).toEqual(
          Array.from(await mul(sub(a, b), s).data()),
        );
        // a NaN anywhere makes the sum NaN
        const withNan = values(n, 8);
        withNan[n >> 1] = Number.NaN;
        expect(Number.isNaN((await sumSquaredDifference(t(withNan), b).data())[0])).toBe(true);
      },
    );

    // [B, F, d]: vec4 loads and not (d odd), several workgroup rows
    it.each(
      BACKENDS.flatMap((b) => [
        [b, 70, 36, 8],
        [b, 33, 20, 5],
      ]),
    )('on %s at B %i, F %i, d %i: the bits of the composition', async (backend, B, F, d) => {
      expect(getKernel('reluDecodeGrad', backend)).toBeDefined();
      const t = (v: ArrayLike<number>, shape: number[]) => tensor(Array.from(v), shape, { backend });
      const x = t(values(B * d, 1), [B, d]);
      const w = t(values(d * F, 2), [d, F]);
      const b = t(values(F, 3), [F]);
      const wDec = t(values(F * d, 4), [F, d]);
      const bDec = t(values(d, 5), [d]);
      const [f, sums, xhat] = linearBiasReluSumDecode(x, w, b, wDec, bDec);
      const [f0, sums0] = linearBiasReluSum(x, w, b);
      const xhat0 = add(matmul(f0, wDec), bDec);
      expect(Array.from(await f.data())).toEqual(Array.from(await f0.data()));
      expect(Array.from(await sums.data())).toEqual(Array.from(await sums0.data()));
      expect(Array.from(await xhat.data())).toEqual(Array.from(await xhat0.data()));

      const dXv = values(B * d, 6);
      dXv[3] = Number.NaN; // row 0: NaN where f > 0, 0 where it is masked off
      const dX = t(dXv, [B, d]);
      const row = t(values(F, 7), [F]);
      const fv = Array.from(await f.data());
      fv[5] = Number.NaN; // a NaN feature masks its element off
      const [want, wantSums] = reluGradRowSum(matmul(dX, wDec, { transB: true }), row, t(fv, [B, F]));
      const wantBits = Array.from(await want.data());
      for (const inPlace of [false, true]) {
        const fi = t(fv, [B, F]);
        const [got, gotSums] = reluDecodeGrad(dX, wDec, row, fi, { inPlace });
        expect(got.storage === fi.storage, 'written over f').toBe(inPlace);
        expect(Array.from(await got.data()), `dPre (inPlace ${inPlace})`).toEqual(wantBits);
        expect(
          compareValues(await gotSums.data(), await wantSums.data(), { rtol: 1e-5, atol: 1e-5 }, 'sums'),
        ).toBeNull();
      }
    });
  },
);
