import { describe, expect, it } from 'vitest';
import type { ArchitecturePlugin } from '../arch.js';
import { valueAndGrad } from '../engine.js';
import { tensor } from '../ops/create.js';
import type { Tensor } from '../tensor.js';
import { Trainer } from '../train/trainer.js';
import { compareValues, type Tolerance } from './compare.js';

/** A tensor of a step fixture: shape and row-major values. */
export interface StepFixtureTensor {
  /** Shape. */
  shape: number[];
  /** Values, row-major. */
  values: number[];
}

/** What an independent reference computed for one training step. */
export interface StepFixtureStep {
  /** The loss before the update. */
  loss: number;
  /** The architecture's logs of the step. */
  logs: Record<string, number>;
  /** The gradient of every parameter. */
  grads: Record<string, StepFixtureTensor>;
  /** Every parameter after the update. */
  params: Record<string, StepFixtureTensor>;
}

/** One case of a step fixture: initial parameters, a batch per step and the expected steps. */
export interface StepFixtureCase {
  /** Initial parameters by name. */
  init: Record<string, StepFixtureTensor>;
  /** One batch [B, d] per step. */
  batches: StepFixtureTensor[];
  /** The expected numbers of each step. */
  steps: StepFixtureStep[];
}

/** Options of {@link checkTrainingSteps}. */
export interface TrainingStepsOptions {
  /** Name in failure messages. */
  name: string;
  /** Features F. */
  dictSize: number;
  /** Width d. */
  activationDim: number;
  /** Learning rate (warm-ups are 0: full lr and sparsity from the first step). */
  lr: number;
  /** Tolerance of the loss, logs and gradients. */
  gradTolerance: Tolerance;
  /** Tolerance of the updated parameters. */
  paramTolerance: Tolerance;
}

/**
 * Trains `arch` from the fixture's initial parameters with a `Trainer` and checks, step by step,
 * the loss and every gradient straight from the plugin, then the trainer's loss, logs and every
 * updated parameter against the fixture (made by an independent reference, e.g. torch autograd).
 * Call inside a vitest test.
 */
export async function checkTrainingSteps(
  arch: ArchitecturePlugin<object>,
  fixtureCase: StepFixtureCase,
  o: TrainingStepsOptions,
): Promise<void> {
  const t = (a: StepFixtureTensor) => tensor(a.values, a.shape);
  const trainer = new Trainer(
    { architecture: arch, dictSize: o.dictSize, lr: o.lr, warmupSteps: 0, sparsityWarmupSteps: 0 },
    o.activationDim,
    10,
  );
  for (const [k, v] of Object.entries(fixtureCase.init)) trainer.vars[k].assign(t(v));
  for (let s = 0; s < fixtureCase.steps.length; s++) {
    const want = fixtureCase.steps[s];
    const at = `${o.name} step ${s}`;
    const x = t(fixtureCase.batches[s]);
    const vars = Object.values(trainer.vars);
    // The loss straight from the plugin first; the trainer's own call for the same step must
    // then agree (a stateful plugin must not advance twice for one step).
    const { value, grads } = valueAndGrad(
      () => arch.loss(trainer.params(), x, { step: s, sparsityScale: 1 }).loss,
      vars,
    );
    expect(compareValues(await value.data(), [want.loss], o.gradTolerance, `${at} loss`)).toBeNull();
    for (const v of vars) {
      const g = grads.get(v) as Tensor;
      expect(
        compareValues(await g.data(), want.grads[v.name].values, o.gradTolerance, `${at} d${v.name}`),
      ).toBeNull();
      g.dispose();
    }
    value.dispose();
    const logs = await trainer.update(x, true);
    expect(compareValues([logs.loss], [want.loss], o.gradTolerance, `${at} trainer loss`)).toBeNull();
    for (const [k, v] of Object.entries(want.logs)) {
      expect(compareValues([logs[k]], [v], o.gradTolerance, `${at} log ${k}`)).toBeNull();
    }
    for (const [k, v] of Object.entries(want.params)) {
      expect(
        compareValues(await trainer.vars[k].value.data(), v.values, o.paramTolerance, `${at} ${k}`),
      ).toBeNull();
    }
    x.dispose();
  }
  trainer.dispose();
}

/** A step-fixture file: the sizes, the learning rate and the cases by name, each with its config. */
export interface StepFixture<C> {
  /** The sizes of every case. */
  sizes: StepFixtureSizes;
  /** The reference's hyper-parameters. */
  hyper: {
    /** The learning rate the reference used. */
    lr: number;
  };
  /** The cases by name. */
  cases: Record<string, StepFixtureCase & StepFixtureConfig<C>>;
}

/** The sizes of a step fixture's cases. */
export interface StepFixtureSizes {
  /** Rows per batch. */
  batch: number;
  /** Width d. */
  activationDim: number;
  /** Features F. */
  dictSize: number;
}

/** The architecture config a case was made with. */
export interface StepFixtureConfig<C> {
  /** What the plugin is built from. */
  config: C;
}

/**
 * One vitest test per case of a step fixture: builds the plugin from the case's config with
 * `make(config, name)` and runs {@link checkTrainingSteps} on it. `title` may hold `%s` for the
 * case name. Call at the top level of a test file.
 */
export function describeStepFixture<C>(
  title: string,
  fixture: StepFixture<C>,
  make: (config: C, name: string) => ArchitecturePlugin<object>,
  tolerance: { grad: Tolerance; param: Tolerance },
): void {
  describe.each(Object.keys(fixture.cases))(title, (name) => {
    it('loss, logs, gradients and updated parameters', async () => {
      const entry = fixture.cases[name];
      await checkTrainingSteps(make(entry.config, name), entry, {
        name,
        dictSize: fixture.sizes.dictSize,
        activationDim: fixture.sizes.activationDim,
        lr: fixture.hyper.lr,
        gradTolerance: tolerance.grad,
        paramTolerance: tolerance.param,
      });
    });
  });
}
