import { createCpuBackend } from '@dictlearn/backend-cpu';
import { registerBackend, scope, tensor, useBackend } from '@dictlearn/core';
import {
  compareValues,
  describeStepFixture,
  type StepFixture,
  type StepFixtureCase,
} from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import fixture from './fixtures/steps.json' with { type: 'json' };
import { aprilUpdate, type StandardConfig, standard, tied } from './standard.js';

// Two optimisation steps of each architecture against a numpy reimplementation of the
// REFERENCE definitions (scripts/make-step-fixture.py): loss, logs, every gradient, and every
// parameter after ConstrainedAdam / clipped Adam.

const raw = fixture as unknown as {
  sizes: StepFixture<StandardConfig>['sizes'];
  hyper: { l1Penalty: number; lr: number };
  architectures: Record<string, StepFixtureCase>;
};

// The fixture keeps one l1Penalty for all three; each case gets it as its config.
const fx: StepFixture<Partial<StandardConfig>> = {
  sizes: raw.sizes,
  hyper: { lr: raw.hyper.lr },
  cases: Object.fromEntries(
    Object.entries(raw.architectures).map(([name, c]) => [
      name,
      { ...c, config: { l1Penalty: raw.hyper.l1Penalty } },
    ]),
  ),
};
const makers = { standard, 'april-update': aprilUpdate, tied };

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

// float32 arithmetic against a float64 reference on O(1) values: losses and gradients agree to
// ~1e-6 relative; one Adam step moves parameters by ≤ lr = 1e-2, so 1e-5 absolute is tight.
const GRAD_TOL = { rtol: 1e-4, atol: 1e-6 };
const PARAM_TOL = { rtol: 1e-5, atol: 1e-5 };

it('the fixture holds exactly the three architectures tested', () => {
  expect(Object.keys(fx.cases).sort()).toEqual(Object.keys(makers).sort());
});

describeStepFixture(
  '%s: two training steps match numpy',
  fx,
  (config, name) => makers[name as keyof typeof makers](config),
  { grad: GRAD_TOL, param: PARAM_TOL },
);

describe('plugins', () => {
  it('init follows REFERENCE: decoder rows of norm 0.1, W_enc = W_decᵀ, zero biases; same seed, same values', async () => {
    const arch = standard();
    const p = scope(() => arch.init({ activationDim: 5, dictSize: 7 }, { seed: 3 }));
    const wDec = (await p.W_dec.array()) as number[][];
    for (const row of wDec) expect(Math.hypot(...row)).toBeCloseTo(0.1, 6);
    const wEnc = (await p.W_enc.array()) as number[][];
    expect(wEnc[2][4]).toBe(wDec[4][2]);
    expect(Array.from(await p.b_enc.data())).toEqual(new Array(7).fill(0));
    const again = arch.init({ activationDim: 5, dictSize: 7 }, { seed: 3 });
    expect(Array.from(await again.W_dec.data())).toEqual(wDec.flat());
  });

  it('configs are validated with the field named', () => {
    expect(() => standard({ l1Penalty: -1 })).toThrow("standard: field 'l1Penalty' must be ≥ 0, got -1");
    expect(() => standard({ l1Penalty: 'x' as never })).toThrow(
      "standard: field 'l1Penalty' must be a finite number",
    );
    expect(() => standard({ lambda: 1 } as never)).toThrow(
      "standard: unknown field 'lambda' (known: l1Penalty, encoderBiasInit)",
    );
  });

  it('folding the normalisation scale makes the raw-space model s times the train-space one', async () => {
    const arch = standard();
    const s = 2.5;
    const p = arch.init({ activationDim: 4, dictSize: 6 }, { seed: 1 });
    p.b_enc = tensor([0.1, -0.2, 0.05, 0.3, 0, -0.1]);
    p.b_dec = tensor([0.2, 0.1, -0.3, 0]);
    const x = tensor([
      [1, -2, 0.5, 3],
      [0.2, 0.1, -1, 2],
    ]);
    const folded = { ...p, ...arch.foldScale(p, s) };
    const xs = scope(() =>
      tensor(
        Array.from(x.dataSync()).map((v) => v / s),
        [2, 4],
      ),
    );
    const trainSpace = arch.decode(p, arch.encode(p, xs));
    const raw = arch.decode(folded, arch.encode(folded, x));
    expect(
      compareValues(
        await raw.data(),
        Array.from(await trainSpace.data()).map((v) => v * s),
        { rtol: 1e-6, atol: 1e-6 },
      ),
    ).toBeNull();
    const back = arch.unfoldScale(folded, s);
    expect(compareValues(await back.b_dec.data(), await p.b_dec.data(), { rtol: 1e-6, atol: 0 })).toBeNull();
  });
});
