import { blockDiagonal } from '@dictlearn/arch-blockdiag';
import { type ListaConfig, lista } from '@dictlearn/arch-lista';
import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  initBackend,
  type Params,
  registerBackend,
  tensor,
  useBackend,
  Variable,
  valueAndGrad,
} from '@dictlearn/core';
import { checkTrainingSteps, compareValues, type StepFixture } from '@dictlearn/core/testing';
import { fistaCodes, ompCodes } from '@dictlearn/eval';
import { describe, expect, it } from 'vitest';
import listaSteps from '../../arch-lista/src/fixtures/steps.json' with { type: 'json' };
import evalFixture from '../../eval/src/fixtures/sparse-coding.json' with { type: 'json' };
import { createWebGPUBackend } from './backend.js';

// The research encoders (issue 13) on WebGPU: LISTA's torch step fixture (two training steps per
// variant, every gradient through the unrolled iterations), the block-diagonal wrapper against
// the CPU backend, and inference-time FISTA / OMP codes against scikit-learn's. They are built
// from core ops only, so this checks that composition, not new kernels.

registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
const webgpu = registerBackend(createWebGPUBackend());
let skip: string | undefined;
try {
  await initBackend(webgpu);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

const fx = listaSteps as unknown as StepFixture<Partial<ListaConfig>>;

describe.skipIf(skip)('LISTA on WebGPU: two training steps match torch', () => {
  it.each(Object.keys(fx.cases))('%s', async (name) => {
    await useBackend('webgpu');
    const entry = fx.cases[name];
    await checkTrainingSteps(lista(entry.config), entry, {
      name,
      dictSize: fx.sizes.dictSize,
      activationDim: fx.sizes.activationDim,
      lr: fx.hyper.lr,
      gradTolerance: { rtol: 1e-4, atol: 1e-5 },
      paramTolerance: { rtol: 1e-4, atol: 1e-5 },
    });
  });
});

/** Deterministic values in [-scale, scale). */
function values(n: number, seed: number, scale = 1): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * scale;
  });
}

describe.skipIf(skip)('block-diagonal on WebGPU equals the CPU backend', () => {
  it.each([
    ['standard', standard({ l1Penalty: 0.1 })],
    ['lista', lista({ iterations: 2, variant: 'fista', l1Penalty: 0.1 })],
  ] as const)('%s inside: features, loss and every gradient', async (_, inner) => {
    const arch = blockDiagonal(inner, { heads: 4 });
    const sizes = { activationDim: 16, dictSize: 32 };
    const x = values(12 * 16, 3, 1);
    const run = async (backend: string) => {
      await useBackend(backend);
      const p: Params = arch.init(sizes, { seed: 5, backend });
      const vars = Object.entries(p).map(([k, t]) => new Variable(t, k));
      const xt = tensor(x, [12, 16]);
      const out = valueAndGrad(
        () =>
          arch.loss(Object.fromEntries(vars.map((v) => [v.name, v.value])), xt, { step: 0, sparsityScale: 1 })
            .loss,
        vars,
      );
      return {
        features: Array.from(await arch.encode(p, xt).data()),
        loss: Array.from(await out.value.data()),
        grads: await Promise.all(vars.map(async (v) => Array.from(await out.grads.get(v)!.data()))),
      };
    };
    const cpu = await run('cpu');
    const gpu = await run('webgpu');
    const tol = { rtol: 1e-4, atol: 1e-5 };
    expect(cpu.features.some((v) => v !== 0)).toBe(true);
    expect(compareValues(gpu.features, cpu.features, tol)).toBeNull();
    expect(compareValues(gpu.loss, cpu.loss, tol)).toBeNull();
    cpu.grads.forEach((g, i) => {
      expect(compareValues(gpu.grads[i], g, tol, `gradient ${i}`)).toBeNull();
    });
  });
});

type T = { shape: number[]; values: number[] };
const ef = evalFixture as unknown as {
  W: T;
  b: T;
  x: T;
  lasso: { l1Penalty: number; nonNegative: boolean; codes: T }[];
  omp: { atoms: number; codes: T }[];
};

describe.skipIf(skip)('inference-time codes on WebGPU match scikit-learn', () => {
  const t = (a: T) => tensor(a.values, a.shape);
  it('FISTA (lasso) and OMP', async () => {
    await useBackend('webgpu');
    const decoder = { rows: t(ef.W), bias: t(ef.b) };
    for (const c of ef.lasso) {
      const { codes } = await fistaCodes(decoder, t(ef.x), {
        l1Penalty: c.l1Penalty,
        nonNegative: c.nonNegative,
        iterations: 3000,
      });
      expect(compareValues(await codes.data(), c.codes.values, { rtol: 1e-3, atol: 2e-4 })).toBeNull();
    }
    for (const c of ef.omp) {
      const z = ompCodes(decoder, t(ef.x), { atoms: c.atoms });
      expect(compareValues(await z.data(), c.codes.values, { rtol: 1e-4, atol: 2e-5 })).toBeNull();
    }
  });
});
