// A custom architecture in a page of code: a ReLU SAE whose sparsity penalty is Σ √(f + ε)
// instead of the L1 norm (it presses harder on small activations, closer to counting them).
// Written only with core ops, so training, gradients, resampling, checkpoints and every backend
// come for free. Registered by name, so a saved dictionary loads back with Dictionary.load.
// Run from the repository root: pnpm --filter @dictlearn/examples run custom-architecture
import '@dictlearn/backend-cpu/register';
import { SyntheticSource } from '@dictlearn/buffer';
import {
  type ArchitecturePlugin,
  add,
  Dictionary,
  div,
  l2Norm,
  matmul,
  mul,
  randomNormal,
  registerArchitecture,
  relu,
  sqrt,
  square,
  sub,
  sum,
  type Tensor,
  trainSAE,
  transpose,
  useBackend,
  zeros,
} from '@dictlearn/core';
import { groundTruthRecovery } from '@dictlearn/eval';

/** The plugin's hyper-parameters: the penalty's weight λ and the ε that keeps √ differentiable at 0. */
interface SqrtPenaltyConfig {
  lambda: number;
  epsilon: number;
}

type Params = Record<string, Tensor>;

/** A ReLU SAE with the penalty λ · mean_b Σᵢ √(fᵢ + ε). */
function sqrtPenalty(config: SqrtPenaltyConfig): ArchitecturePlugin<SqrtPenaltyConfig> {
  const encode = (p: Params, x: Tensor) => relu(add(matmul(sub(x, p.b_dec), p.W_enc), p.b_enc));
  const decode = (p: Params, f: Tensor) => add(matmul(f, p.W_dec), p.b_dec);
  return {
    name: 'sqrt-penalty',
    packageName: 'my-sae-ideas',
    config,
    // Defaults a trainer may override; W_dec's rows are kept at unit norm by ConstrainedAdam.
    training: {
      lr: 1e-3,
      betas: [0.9, 0.999],
      warmupSteps: 100,
      sparsityWarmupSteps: 200,
      unitNormRows: ['W_dec'],
    },
    nonNegativeFeatures: true,
    paramShapes: ({ activationDim: d, dictSize: F }) => ({
      W_enc: [d, F],
      b_enc: [F],
      W_dec: [F, d],
      b_dec: [d],
    }),
    // Which axis of each parameter indexes features (resampling resets those Adam moments).
    featureAxes: () => ({ W_enc: 1, b_enc: 0, W_dec: 0 }),
    init({ activationDim: d, dictSize: F }, { seed, backend }) {
      const w = randomNormal([F, d], { seed, purpose: 'init', backend });
      const W_dec = div(w, l2Norm(w, -1, true));
      return {
        W_enc: transpose(W_dec),
        b_enc: zeros([F], { backend }),
        W_dec,
        b_dec: zeros([d], { backend }),
      };
    },
    encode,
    decode,
    loss(p, x, { sparsityScale }) {
      const f = encode(p, x);
      const xhat = decode(p, f);
      const batch = x.shape[0];
      const mse = div(sum(square(sub(x, xhat))), batch);
      // √(f + ε) − √ε: zero for a silent feature, so only active features pay.
      const penalty = div(sub(sum(sqrt(add(f, config.epsilon))), f.size * Math.sqrt(config.epsilon)), batch);
      return {
        loss: add(mse, mul(penalty, config.lambda * sparsityScale)),
        logs: { mse_loss: mse, sparsity_loss: penalty },
        features: f,
        reconstruction: xhat,
      };
    },
    decoderRows: (p) => add(p.W_dec, 0),
    // How the activation normalisation scale s folds into the weights when saving.
    foldScale: (p, s) => ({ b_enc: mul(p.b_enc, s), b_dec: mul(p.b_dec, s) }),
    unfoldScale: (p, s) => ({ b_enc: div(p.b_enc, s), b_dec: div(p.b_dec, s) }),
  };
}

// Registering a factory makes saved dictionaries of this architecture loadable by name.
registerArchitecture({
  name: 'sqrt-penalty',
  packageName: 'my-sae-ideas',
  create: (c) => sqrtPenalty(c as SqrtPenaltyConfig),
});

await useBackend('cpu');
const out = process.argv[2] ?? 'runs/examples/custom-architecture';
const source = new SyntheticSource({ dim: 32, numFeatures: 64, meanActive: 3, seed: 0 });
await trainSAE({
  data: source,
  batchSize: 256,
  steps: 600,
  logEvery: 0,
  outDir: out,
  restart: true, // an example is run again and again: replace the previous run in `out`
  trainers: [
    {
      name: 'sqrt',
      architecture: sqrtPenalty({ lambda: 0.15, epsilon: 0.01 }),
      dictSize: 128,
      lr: 1e-2,
      warmupSteps: 50,
      sparsityWarmupSteps: 100,
      resampleSteps: 200,
    },
  ],
});

// Loaded back by name from <out>/sqrt (config.json + sae.safetensors).
const dict = await Dictionary.load(`${out}/sqrt`);
const truth = source.groundTruth();
const decoder = dict.decoderRows();
const { fractionRecovered, mmcs } = await groundTruthRecovery(decoder, truth, 0.9);
console.log(`architecture ${dict.config().architecture.name}, saved to ${out}/sqrt`);
console.log(
  `recovered ${(100 * fractionRecovered).toFixed(1)}% of the true features (MMCS ${mmcs.toFixed(4)})`,
);
truth.dispose();
decoder.dispose();
dict.dispose();
