import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  add,
  div,
  getKernel,
  linearBiasRelu,
  linearBiasReluSum,
  linearBiasReluSumDecode,
  matmul,
  mul,
  type OpName,
  randomNormal,
  registerBackend,
  reshape,
  square,
  sub,
  sum,
  type Tensor,
  tensor,
  unregisterKernel,
  useBackend,
  valueAndGrad,
} from '@dictlearn/core';
import { checkGradients } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { standard, tied } from './standard.js';

// The Standard loss runs through a fused op (linearBiasReluSumDecode: the encoder, its column
// sums and the decoder's product, whose backward is reluDecodeGrad, writing f's gradient over f)
// and a written-out MSE gradient. Here its gradients are checked against the
// loss written as plain core ops (autograd through linearBiasRelu, sum, square …), on a backend
// with the fused kernels and on one without them (the ops' reference compositions), and against
// finite differences in float64.

const FUSED_OPS: OpName[] = [
  'linearBiasReluSum',
  'reluGradRowSum',
  'linearBiasReluSumDecode',
  'reluDecodeGrad',
];
const [B, d, F, L1] = [40, 12, 64, 0.3];

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'fused-k', fastMatmul: false, kernelThreads: 1 }));
  const plain = registerBackend(createCpuBackend({ name: 'unfused-k', fastMatmul: false, kernelThreads: 1 }));
  for (const op of FUSED_OPS) unregisterKernel(op, plain);
  registerBackend(createCpuBackend({ name: 'f64-k', precision: 'float64', kernelThreads: 1 }));
  await useBackend('f64-k');
  await useBackend('unfused-k');
  await useBackend('fused-k');
});

/** The Standard loss as plain core ops, autograd end to end: the reference. */
function referenceLoss(p: Record<string, Tensor>, x: Tensor, tiedW: boolean): Tensor {
  const w = tiedW ? p.W_dec : p.W_enc;
  const shift = sub(p.b_enc, reshape(matmul(reshape(p.b_dec, [1, -1]), w, { transB: tiedW }), [-1]));
  const f = linearBiasRelu(x, w, shift, { transB: tiedW });
  const xhat = add(matmul(f, p.W_dec), p.b_dec);
  const mse = div(sum(square(sub(x, xhat))), B);
  return add(mse, mul(div(sum(sum(f, 0)), B), L1));
}

function params(backend: string, tiedW: boolean): Record<string, Tensor> {
  const p: Record<string, Tensor> = {
    W_dec: mul(randomNormal([F, d], { seed: 1, backend }), 0.3),
    b_enc: mul(randomNormal([F], { seed: 2, backend }), 0.2),
    b_dec: mul(randomNormal([d], { seed: 3, backend }), 0.2),
  };
  if (!tiedW) p.W_enc = mul(randomNormal([d, F], { seed: 4, backend }), 0.3);
  return p;
}

describe.each([
  ['standard', false],
  ['tied', true],
] as const)('%s loss through the fused ops', (_name, tiedW) => {
  const arch = tiedW ? tied({ l1Penalty: L1 }) : standard({ l1Penalty: L1 });

  it.each(['fused-k', 'unfused-k'])(
    'on %s: loss and every gradient are those of the unfused expression, bit for bit',
    async (backend) => {
      for (const op of FUSED_OPS) expect(getKernel(op, backend) !== undefined).toBe(backend === 'fused-k');
      const p = params(backend, tiedW);
      const x = randomNormal([B, d], { seed: 5, backend });
      const names = Object.keys(p);
      const ctx = { step: 0, sparsityScale: 1 };
      const got = valueAndGrad(() => arch.loss(p, x, ctx).loss, Object.values(p));
      const want = valueAndGrad(() => referenceLoss(p, x, tiedW), Object.values(p));
      expect(Array.from(await got.value.data())).toEqual(Array.from(await want.value.data()));
      for (const [i, n] of names.entries()) {
        const g = Array.from(await got.grads.get(Object.values(p)[i])!.data());
        const w = Array.from(await want.grads.get(Object.values(p)[i])!.data());
        expect(g, `d${n}`).toEqual(w);
        expect(
          g.some((v) => v !== 0),
          `d${n} is not all zeros`,
        ).toBe(true);
      }
      // the activity is Σ_b f, from the fused op's second output
      const out = arch.loss(p, x, ctx);
      expect(Array.from(await out.activity!.data())).toEqual(Array.from(await sum(out.features!, 0).data()));
    },
  );

  it.each(['fused-k', 'unfused-k'])(
    'on %s: with a gradient reaching f as well, or f kept by the caller: f unchanged, gradients bit for bit',
    async (backend) => {
      const p = params(backend, tiedW);
      const x = randomNormal([B, d], { seed: 7, backend });
      const w = tiedW ? p.W_dec : p.W_enc;
      const opts = { transB: tiedW };
      const vars = Object.values(p);
      for (const [penaltyOnF, keepF] of [
        [true, false],
        [false, true],
        [true, true],
      ]) {
        // the reconstruction and the column sums, and a penalty on f itself (Σ f²) or none
        const loss = (f: Tensor, sums: Tensor, xhat: Tensor) => {
          const l = add(sum(square(sub(xhat, x))), mul(sum(sums), L1));
          return penaltyOnF ? add(l, sum(square(f))) : l;
        };
        const got = valueAndGrad(() => {
          const [f, sums, xhat] = linearBiasReluSumDecode(x, w, p.b_enc, p.W_dec, p.b_dec, opts);
          return { value: loss(f, sums, xhat), aux: keepF ? { f, copy: mul(f, 1) } : {} };
        }, vars);
        const want = valueAndGrad(() => {
          const [f, sums] = linearBiasReluSum(x, w, p.b_enc, opts);
          return loss(f, sums, add(matmul(f, p.W_dec), p.b_dec));
        }, vars);
        const how = `penalty on f ${penaltyOnF}, f kept ${keepF}`;
        expect(Array.from(await got.value.data()), how).toEqual(Array.from(await want.value.data()));
        for (const [i, v] of vars.entries()) {
          const [g, wg] = [await got.grads.get(v)!.data(), await want.grads.get(v)!.data()];
          expect(Array.from(g), `${how}: gradient ${i}`).toEqual(Array.from(wg));
        }
        if (keepF) {
          const { f, copy } = got.aux as { f: Tensor; copy: Tensor };
          expect(Array.from(await f.data()), `${how}: f after the backward pass`).toEqual(
            Array.from(await copy.data()),
          );
        }
      }
    },
  );

  it('gradients match finite differences in float64', async () => {
    const p = params('f64-k', tiedW);
    const names = Object.keys(p);
    const x = randomNormal([8, d], { seed: 6, backend: 'f64-k' });
    const inputs = await Promise.all(
      names.map(async (n) => ({ values: Array.from(await p[n].data()), shape: p[n].shape })),
    );
    const xs = tensor(Array.from(await x.data()), [8, d], { backend: 'f64-k' });
    const r = await checkGradients(
      (...ts) => {
        const q = Object.fromEntries(names.map((n, i) => [n, ts[i]]));
        return arch.loss(q, xs, { step: 0, sparsityScale: 1 }).loss;
      },
      inputs,
      { backend: 'f64-k', tolerance: { rtol: 1e-5, atol: 1e-7 } },
    );
    expect(r.errors).toEqual([]);
  });
});
