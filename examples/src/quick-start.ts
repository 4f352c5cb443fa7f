// Quick start: train a small standard SAE on synthetic activations whose true features are
// known, then print the reference metrics and how many true features it recovered.
// Run from the repository root: pnpm --filter @dictlearn/examples run quick-start
import '@dictlearn/backend-cpu/register';
import { standard } from '@dictlearn/arch-standard';
import { SyntheticSource } from '@dictlearn/buffer';
import { trainSAE, useBackend } from '@dictlearn/core';
import { evaluate, formatMetrics, groundTruthRecovery } from '@dictlearn/eval';

await useBackend('cpu');

// 64 unit-norm true features in 32 dimensions, about 3 active per sample.
const source = new SyntheticSource({ dim: 32, numFeatures: 64, meanActive: 3, seed: 0 });

// One standard SAE (ReLU encoder, L1 penalty) with twice as many features as the truth.
const { dictionaries } = await trainSAE({
  data: source,
  batchSize: 256,
  steps: 600,
  logEvery: 0,
  trainers: [
    {
      architecture: standard({ l1Penalty: 0.1 }),
      dictSize: 128,
      lr: 1e-2,
      warmupSteps: 50,
      sparsityWarmupSteps: 100,
      resampleSteps: 200,
    },
  ],
});
const [dict] = dictionaries;

// Scored on fresh samples: the same features, samples far past the ones trained on.
const heldOut = source.batches({ batchSize: 1024, start: 1e9 });
const metrics = await evaluate(dict, heldOut, { maxBatches: 4 });
console.log(formatMetrics(metrics));

const truth = source.groundTruth();
const decoder = dict.decoderRows();
const { fractionRecovered, mmcs } = await groundTruthRecovery(decoder, truth, 0.9);
console.log(
  `recovered ${(100 * fractionRecovered).toFixed(1)}% of the true features (MMCS ${mmcs.toFixed(4)})`,
);

truth.dispose();
decoder.dispose();
dict.dispose();
