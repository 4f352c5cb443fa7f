// Tests that need an NVIDIA GPU: the core conformance suite against the CPU oracle, training
// parity with the CPU (Standard and TopK), live tensors flat over training, device Philox bit for
// bit. Where the driver or a GPU is missing they report themselves skipped with the reason.
import { standard } from '@dictlearn/arch-standard';
import { topk } from '@dictlearn/arch-topk';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { SyntheticSource } from '@dictlearn/buffer';
import {
  initBackend,
  memory,
  ops,
  registerBackend,
  Trainer,
  type TrainLogEntry,
  tensor,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import { compareValues, conformanceSuite } from '@dictlearn/core/testing';
import { describe, expect, it } from 'vitest';
import { createCudaBackend } from './backend.js';
import { MATMUL_INPUT_EPS, type MatmulMath } from './driver.js';

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
registerBackend(createCpuBackend({ name: 'cpu64', precision: 'float64' }));
const cuda = registerBackend(createCudaBackend());
// The opt-in product precisions, each its own backend (context) on the same GPU.
const reduced = { tf32: 'cuda-tf32', bf16: 'cuda-bf16' } as const;
const reducedBackends = Object.entries(reduced).map(([math, name]) =>
  registerBackend(createCudaBackend({ name, math: math as MatmulMath })),
);
let skip: string | undefined;
try {
  await initBackend(cuda);
} catch (e) {
  skip = (e as Error).message.replace(/^useBackend: /, '');
}
const why = skip ? ` (skipped: ${skip})` : '';

conformanceSuite({ backend: 'cuda', reference: 'cpu', gradientBackend: 'cpu64', skip });

const specs = () => [
  {
    architecture: standard({ l1Penalty: 0.05 }),
    dictSize: 64,
    warmupSteps: 20,
    sparsityWarmupSteps: 50,
    seed: 11,
  },
  { architecture: topk({ k: 8 }), dictSize: 64, warmupSteps: 20, seed: 12, name: 'topk' },
];

async function run(backend: string) {
  await useBackend(backend);
  const t = new Trainer(specs()[0], 32, 200, 0, backend);
  const init: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(t.vars)) init[k] = Array.from(await v.value.data());
  t.dispose();
  const losses: Record<string, number[]> = { trainer_0: [], topk: [] };
  const r = await trainSAE({
    data: new SyntheticSource({ dim: 32, numFeatures: 48, meanActive: 3, seed: 5 }),
    batchSize: 128,
    steps: 200,
    trainers: specs(),
    logEvery: 10,
    backend,
    onLog: (e: TrainLogEntry) => losses[e.trainer].push(e.logs.loss),
  });
  for (const d of r.dictionaries) d.dispose();
  return { init, losses };
}

describe.skipIf(skip !== undefined)(`CUDA on a GPU${why}`, () => {
  it('training parity with the CPU, Standard and TopK: initial parameters bit for bit, loss curves within float32 drift', async () => {
    const cpu = await run('cpu');
    const gpu = await run('cuda');
    for (const k of Object.keys(cpu.init)) expect(gpu.init[k]).toEqual(cpu.init[k]);
    // The WebGPU parity test's tolerance (measured drift 1.4e-5 over 200 Adam steps there).
    for (const name of ['trainer_0', 'topk']) {
      expect(gpu.losses[name]).toHaveLength(20);
      expect(
        compareValues(gpu.losses[name], cpu.losses[name], { rtol: 1e-4, atol: 0 }, `${name} loss curve`),
      ).toBeNull();
    }
    expect(gpu.losses.trainer_0[19]).toBeLessThan(0.5 * gpu.losses.trainer_0[0]);
  });

  it('live GPU tensors and bytes stay flat over many training steps', async () => {
    await useBackend('cuda');
    const t = new Trainer(specs()[0], 32, 1000, 0, 'cuda');
    const source = new SyntheticSource({ dim: 32, numFeatures: 48, seed: 2 });
    const seen: { tensors: number; bytes: number }[] = [];
    let step = 0;
    for await (const x of source.batches({ batchSize: 64, backend: 'cuda' })) {
      await t.update(x, step % 5 === 0);
      x.dispose();
      seen.push({ ...memory().backends.cuda });
      if (++step === 40) break;
    }
    t.dispose();
    expect(new Set(seen.slice(3).map((s) => s.tensors)).size).toBe(1);
    expect(new Set(seen.slice(3).map((s) => s.bytes)).size).toBe(1);
  });

  it('device Philox uniforms equal the host stream bit for bit (large draw, many blocks)', async () => {
    for (const [seed, stream, low, high] of [
      [0, 0, 0, 1],
      [123456789, 7, -0.1, 0.3],
    ] as const) {
      const g = ops.randomUniform([1000, 37], { seed, stream, low, high, backend: 'cuda' });
      const c = ops.randomUniform([1000, 37], { seed, stream, low, high, backend: 'cpu' });
      expect(Array.from(await g.data())).toEqual(Array.from(await c.data()));
      g.dispose();
      c.dispose();
    }
  });

  it('dense products in fp32, tf32 and bf16 within the bound each documents: |Δ| ≤ (2ε + K·2⁻²⁴)·Σ|a||b|', async () => {
    for (const b of reducedBackends) await initBackend(b);
    // Single and strided-batched products (GemmEx and GemmStridedBatchedEx under bf16), transposed B.
    const cases = [
      { batch: 1, M: 64, K: 300, N: 96, transB: false },
      { batch: 3, M: 17, K: 129, N: 40, transB: true },
    ];
    for (const { batch, M, K, N, transB } of cases) {
      const av = hostValues(batch * M * K, 21);
      const bv = hostValues(batch * K * N, 22);
      const aShape = batch === 1 ? [M, K] : [batch, M, K];
      const bShape = batch === 1 ? (transB ? [N, K] : [K, N]) : transB ? [batch, N, K] : [batch, K, N];
      for (const [math, backend] of [['fp32', 'cuda'], ...Object.entries(reduced)] as [
        MatmulMath,
        string,
      ][]) {
        const c = ops.matmul(tensor(av, aShape, { backend }), tensor(bv, bShape, { backend }), { transB });
        const got = await c.data();
        const eps = 2 * MATMUL_INPUT_EPS[math] + K * 2 ** -24;
        let worst = 0;
        for (let p = 0; p < batch; p++)
          for (let i = 0; i < M; i++)
            for (let j = 0; j < N; j++) {
              let exact = 0;
              let mag = 0;
              for (let k = 0; k < K; k++) {
                const a = av[p * M * K + i * K + k];
                const b = transB ? bv[p * K * N + j * K + k] : bv[p * K * N + k * N + j];
                exact += a * b;
                mag += Math.abs(a * b);
              }
              worst = Math.max(worst, Math.abs(got[p * M * N + i * N + j] - exact) / (eps * mag));
            }
        expect(worst, `${math} ${batch}×${M}×${K}×${N}: worst error / bound`).toBeLessThanOrEqual(1);
      }
    }
  });

  it('the fused encoder ops over many row chunks and a partial column tile: as the CPU, and bit for bit the same on a second run', async () => {
    const [B, d, F] = [1000, 48, 200]; // 8 chunks of 128 rows (the last partial), 7 column tiles (the last 8 wide)
    const xv = hostValues(B * d, 31);
    const wv = hostValues(d * F, 32).map((v) => v * 0.2);
    const bv = hostValues(F, 33).map((v) => v * 0.1);
    const encode = async (backend: string) => {
      const [f, sums] = ops.linearBiasReluSum(
        tensor(xv, [B, d], { backend }),
        tensor(wv, [d, F], { backend }),
        tensor(bv, [F], { backend }),
      );
      return [await f.data(), await sums.data()];
    };
    const [f1, s1] = await encode('cuda');
    const [f2, s2] = await encode('cuda');
    const [fc, sc] = await encode('cpu');
    expect(Array.from(f2)).toEqual(Array.from(f1));
    expect(Array.from(s2)).toEqual(Array.from(s1));
    expect(compareValues(Array.from(f1), Array.from(fc), { rtol: 1e-4, atol: 1e-5 }, 'f')).toBeNull();
    expect(compareValues(Array.from(s1), Array.from(sc), { rtol: 1e-4, atol: 1e-4 }, 'Σ_b f')).toBeNull();

    // The backward on the CPU's f, so the masks agree: dPre bit for bit, sums to the last float32 bit or so.
    const dFv = hostValues(B * F, 34);
    const rowv = hostValues(F, 35);
    const grad = async (backend: string) => {
      const [dPre, sums] = ops.reluGradRowSum(
        tensor(dFv, [B, F], { backend }),
        tensor(rowv, [F], { backend }),
        tensor(fc, [B, F], { backend }),
      );
      return [await dPre.data(), await sums.data()];
    };
    const [d1, g1] = await grad('cuda');
    const [d2, g2] = await grad('cuda');
    const [dc, gc] = await grad('cpu');
    expect(Array.from(d1)).toEqual(Array.from(dc));
    expect(Array.from(d2)).toEqual(Array.from(d1));
    expect(Array.from(g2)).toEqual(Array.from(g1));
    for (let j = 0; j < F; j++) {
      let mag = 0;
      for (let r = 0; r < B; r++) mag += Math.abs(dc[r * F + j]);
      expect(Math.abs(g1[j] - gc[j]), `Σ_b dPre[${j}]`).toBeLessThanOrEqual(2 ** -23 * mag);
    }
  });

  it('sparse gradients grouped by key (longer chunks past 262144 entries): as the CPU, and bit for bit the same on a second run', async () => {
    const [B, k, F, d] = [4096, 80, 2048, 64]; // 327680 entries: 160 chunks of 2048
    const n = B * k;
    const idx = Int32Array.from({ length: n }, (_, e) => (e * 7919 + ((e * 31) >>> 7)) % F);
    const rows = Int32Array.from({ length: n }, (_, e) => (e * 104729 + 3) % B);
    const vals = hostValues(n, 41);
    const yv = hostValues(B * d, 42);
    const wv = hostValues(F * d, 43);
    const bv = hostValues(d, 44);
    const run = async (backend: string) => {
      const t = (v: Float32Array | Int32Array, shape: number[]) =>
        tensor(v, shape, { backend, dtype: v instanceof Int32Array ? 'int32' : 'float32' });
      const outs = [
        ops.sparseOuter(t(vals, [B, k]), t(idx, [B, k]), t(yv, [B, d]), F),
        ops.sparseOuter(t(vals, [n]), t(idx, [n]), t(yv, [B, d]), F, { rows: t(rows, [n]) }),
        ops.sparseDecode(t(vals, [n]), t(idx, [n]), t(wv, [F, d]), t(bv, [d]), {
          rows: t(rows, [n]),
          batch: B,
        }),
      ];
      return Promise.all(outs.map(async (o) => Array.from(await o.data())));
    };
    const first = await run('cuda');
    const second = await run('cuda');
    const cpu = await run('cpu');
    for (const [j, what] of ['sparseOuter', 'sparseOuter rows', 'sparseDecode rows'].entries()) {
      expect(second[j], what).toEqual(first[j]);
      expect(compareValues(first[j], cpu[j], { rtol: 1e-4, atol: 1e-4 }, what)).toBeNull();
    }
  });
});

/** Deterministic values in [−1, 1) (an LCG; independent of every backend's generator). */
function hostValues(n: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  });
}
