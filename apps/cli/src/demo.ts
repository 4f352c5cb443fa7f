import type { RunConfig, TrainerConfig } from './commands/train-config.js';

/** The L1 penalties the demo sweeps (0.1 is the one its test checks). */
export const DEMO_L1_PENALTIES = [0.03, 0.1, 0.3];

/**
 * The demo's synthetic source (REFERENCE "Synthetic data"): d = 256, 512 unit features, ~5
 * active per sample, probabilities decaying by 0.99, noise 0.1.
 */
function demoSource(seed: number): RunConfig['source'] {
  return { type: 'synthetic', dim: 256, numFeatures: 512, meanActive: 5, decay: 0.99, noise: 0.1, seed };
}

/**
 * The standard SAE's schedule in the demo: lr 1e-2 instead of 1e-3 and dead-feature resampling
 * every 200 steps took the λ = 0.1 dictionary from about 63% to about 97% of the true features
 * recovered in 1000 steps, from an init that cannot see the truth (see the README).
 */
const STANDARD_SCHEDULE = { lr: 1e-2, warmupSteps: 100, sparsityWarmupSteps: 300, resampleSteps: 200 };

/**
 * The no-argument demo: synthetic activations with known features, standard SAEs at several L1
 * penalties trained in one pass. The init and the data draw from different Philox key domains,
 * so `seed` may set both: equal seeds are safe.
 */
export function demoConfig(seed = 0): Partial<RunConfig> {
  return {
    source: demoSource(seed),
    trainers: DEMO_L1_PENALTIES.map((l1Penalty) => ({
      architecture: 'standard',
      config: { l1Penalty },
      dictSize: 1024,
      ...STANDARD_SCHEDULE,
      seed,
    })),
    steps: 1000,
    batchSize: 1024,
    logEvery: 100,
    evalBatches: 4,
  };
}

/** The architectures `dictlearn demo --archs` trains, in the order of its table. */
export const DEMO_ARCHITECTURES = ['standard', 'topk', 'batch-topk', 'jumprelu', 'gated'] as const;

/** Steps of `dictlearn demo --archs` (one count for every architecture). */
export const ARCHS_DEMO_STEPS = 1500;

/**
 * Each architecture's settings in `dictlearn demo --archs`: its hyper-parameters and schedule
 * (F = 1024 for all). The plugins' defaults are dictionary_learning's, made for runs of tens of
 * thousands of steps; these are tuned for a short run on this task:
 * - TopK / BatchTopK: k 6 (the true L0 is about 5); lr 4e-3 (the default 2e-4/√(F/2¹⁴) = 8e-4
 *   left about 600 of the 1024 features never firing); aux-k after 102 400 tokens without firing
 *   (100 batches; the default 10M is ten times the whole run, so aux-k would never act).
 * - JumpReLU: an L0 target of 5 near the true L0, bandwidth ε 0.05 (SAELens'; with 1e-3 θ barely
 *   moves in a short run), θ starting at 0.05 instead of 0.001 (log θ moves about lr per step, so
 *   from 0.001 it took most of the run to reach the scale of the activations: seed 1 recovered
 *   68% at step 1000, against 97% from 0.05; from 0.3 most features never fire), lr 1e-2.
 * - gated: λ 0.3 (λ 0.1 leaves L0 near 14 and most features split), lr 1e-2 (2e-2 diverges), a
 *   sparsity warm-up of 100 steps (300 reached 86% by step 1250 on seed 1, 100 reached 91%).
 */
export function archsDemoTrainers(seed = 0): TrainerConfig[] {
  const sparseTopk = { k: 6, deadTokens: 102_400 };
  const trainers: TrainerConfig[] = [
    { architecture: 'standard', config: { l1Penalty: 0.1 }, ...STANDARD_SCHEDULE },
    { architecture: 'topk', config: sparseTopk, lr: 4e-3, warmupSteps: 100 },
    { architecture: 'batch-topk', config: sparseTopk, lr: 4e-3, warmupSteps: 100 },
    {
      architecture: 'jumprelu',
      config: { targetL0: 5, bandwidth: 0.05, initThreshold: 0.05 },
      lr: 1e-2,
      warmupSteps: 100,
      sparsityWarmupSteps: 300,
    },
    {
      architecture: 'gated',
      config: { l1Penalty: 0.3 },
      lr: 1e-2,
      warmupSteps: 100,
      sparsityWarmupSteps: 100,
    },
  ];
  return trainers.map((t) => ({ ...t, config: { ...t.config }, dictSize: 1024, seed }));
}

/**
 * `dictlearn demo --archs`: one dictionary of each architecture of {@link DEMO_ARCHITECTURES}
 * trained on one synthetic stream (the demo's source), each with its own tuned settings
 * ({@link archsDemoTrainers}), for {@link ARCHS_DEMO_STEPS} steps of 1024 rows. `seed` sets the
 * data and every init seed. `apps/cli/examples/archs-demo.yaml` is the same run as a config file.
 */
export function archsDemoConfig(seed = 0): Partial<RunConfig> {
  return { ...demoConfig(seed), trainers: archsDemoTrainers(seed), steps: ARCHS_DEMO_STEPS };
}
