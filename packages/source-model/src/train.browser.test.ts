import { standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { createWebGPUBackend } from '@dictlearn/backend-webgpu';
import { ActivationBuffer } from '@dictlearn/buffer';
import {
  initBackend,
  memory,
  registerBackend,
  type TrainLogEntry,
  trainSAE,
  useBackend,
} from '@dictlearn/core';
import { LanguageModel, ModelSource, tokenizerFromJson } from '@dictlearn/source-model';
import { describe, expect, it } from 'vitest';
import { fixtureBytes, fixtureJson, webRuntime } from './browser-fixtures.js';

// The whole path in a page: onnxruntime-web runs the tiny GPT-NeoX on the training corpus (fetched,
// fed as bytes), the ModelSource's rows fill an ActivationBuffer, and trainSAE steps a standard
// dictionary on WebGPU (navigator.gpu; SwiftShader where the machine has no GPU). Where the page
// has no WebGPU adapter the same run goes on the CPU backend and the test's name says so.

registerBackend(createCpuBackend({ name: 'cpu' }));
const webgpu = registerBackend(createWebGPUBackend());
let fallback: string | undefined;
try {
  await initBackend(webgpu);
} catch (e) {
  fallback = `no WebGPU adapter in this browser (${(e as Error).message}): on the CPU backend instead`;
}
const BACKEND = fallback ? 'cpu' : 'webgpu';

describe('ModelSource → ActivationBuffer → trainSAE in Chromium', () => {
  it(`trains a standard dictionary on gpt_neox.layers.1 on ${fallback ?? 'WebGPU'}: finite loss that falls`, async () => {
    await useBackend(BACKEND);
    const before = memory().backends[BACKEND]?.tensors ?? 0;
    const model = await LanguageModel.fromBytes(
      await fixtureBytes('gpt-neox/model.onnx'),
      'gpt-neox/model.onnx',
      {
        runtime: webRuntime(),
      },
    );
    const tokenizer = tokenizerFromJson(
      await fixtureJson('gpt-neox/tokenizer.json'),
      'gpt-neox/tokenizer.json',
      {
        modelConfig: await fixtureJson('gpt-neox/config.json'),
      },
    );
    const source = await ModelSource.open({
      model,
      tokenizer,
      text: { file: 'corpus.txt', bytes: await fixtureBytes('corpus.txt') },
      hooks: 'gpt_neox.layers.1',
      contextLength: 32,
      forwardBatch: 16,
      epochs: Number.POSITIVE_INFINITY,
    });
    expect(source.dim).toBe(64);
    const buffer = new ActivationBuffer(source, { capacity: 4096, batchSize: 256, seed: 3 });
    const losses: number[] = [];
    const steps = 60;
    const result = await trainSAE({
      data: buffer,
      steps,
      normalize: true,
      trainers: [
        {
          architecture: standard({ l1Penalty: 0.02 }),
          dictSize: 128,
          lr: 3e-3,
          warmupSteps: 5,
          sparsityWarmupSteps: 0,
          seed: 7,
        },
      ],
      logEvery: 5,
      backend: BACKEND,
      onLog: (e: TrainLogEntry) => losses.push(e.logs.loss),
    });
    await buffer.close();
    await source.release();
    expect(result.steps).toBe(steps);
    expect(result.scale).toBeGreaterThan(0);
    expect(losses).toHaveLength(steps / 5);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
    console.log(
      `trainSAE on ${BACKEND} in Chromium, loss every 5 steps: ${losses.map((l) => l.toFixed(4)).join(' ')}`,
    );
    // On activations normalised to mean ‖x‖² = d = 64, the untrained dictionary (decoder rows of
    // norm 0.1, biases 0) reconstructs almost nothing, so the squared error starts near 64; a
    // working trainer cuts it several-fold within 60 steps (measured on SwiftShader: 43.2 at step 5
    // → 2.3 at step 60).
    expect(losses[0]).toBeGreaterThan(10);
    expect(losses[losses.length - 1]).toBeLessThan(0.25 * losses[0]);
    expect(source.stats.forwardPasses).toBeGreaterThan(0);
    // The dictionary was trained where the test says.
    expect(result.dictionaries[0].params.W_dec.backend).toBe(BACKEND);
    for (const d of result.dictionaries) d.dispose();
    // Everything the run made on the backend was freed.
    expect(memory().backends[BACKEND]?.tensors ?? 0).toBe(before);
  });
});
