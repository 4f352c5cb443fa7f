import type { RunConfig } from './commands/train-config.js';

/**
 * The no-argument demo: synthetic activations with known features (REFERENCE "Synthetic
 * data": d = 256, 512 unit features, ~5 active per sample, probabilities decaying by 0.99,
 * noise 0.1), standard SAEs at several L1 penalties trained in one pass.
 */
export function demoConfig(): Partial<RunConfig> {
  return {
    source: {
      type: 'synthetic',
      dim: 256,
      numFeatures: 512,
      meanActive: 5,
      decay: 0.99,
      noise: 0.1,
      seed: 0,
    },
    trainers: [0.03, 0.1, 0.3].map((l1Penalty) => ({
      architecture: 'standard',
      config: { l1Penalty },
      dictSize: 1024,
      lr: 1e-3,
      warmupSteps: 100,
      sparsityWarmupSteps: 300,
    })),
    steps: 1000,
    batchSize: 1024,
    logEvery: 100,
    evalBatches: 4,
  };
}
