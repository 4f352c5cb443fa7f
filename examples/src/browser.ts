// dictlearn in a web page: the same code as in Node, on the GPU through WebGPU. Bundle it with
// any bundler (vite, esbuild) and load it from a page; a test bundles it for the browser.
// Keep the Node-only modules the packages load lazily (webgpu, koffi, onnxruntime-node,
// node:*) out of the bundle: they are never reached in a browser.
import '@dictlearn/backend-webgpu/register';
import '@dictlearn/backend-cpu/register';
import { standard } from '@dictlearn/arch-standard';
import { SyntheticSource } from '@dictlearn/buffer';
import { trainSAE, useBackend } from '@dictlearn/core';
import { groundTruthRecovery } from '@dictlearn/eval';

// 'auto' takes WebGPU where navigator.gpu works and falls back to the CPU, saying why.
const backend = await useBackend('auto');
const source = new SyntheticSource({ dim: 32, numFeatures: 64, meanActive: 3, seed: 0 });
const { dictionaries } = await trainSAE({
  data: source,
  batchSize: 256,
  steps: 600,
  trainers: [{ architecture: standard({ l1Penalty: 0.1 }), dictSize: 128, lr: 1e-2, resampleSteps: 200 }],
});
const truth = source.groundTruth();
const decoder = dictionaries[0].decoderRows();
const { fractionRecovered } = await groundTruthRecovery(decoder, truth);
console.log(`${backend.name}: recovered ${(100 * fractionRecovered).toFixed(1)}% of the true features`);
for (const t of [truth, decoder, ...dictionaries]) t.dispose();
