import { factories, standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { createWebGPUBackend } from '@dictlearn/backend-webgpu';
import { SyntheticSource } from '@dictlearn/buffer';
import { registerArchitecture, registerBackend, trainSAE, useBackend } from '@dictlearn/core';
import { groundTruthRecovery } from '@dictlearn/eval';
import { drawFeatures, drawSeries } from './plot.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** The run: small enough to train in a page on a CPU-emulated GPU in about a minute. */
const RUN = {
  dim: 64,
  numFeatures: 64,
  meanActive: 3,
  dictSize: 128,
  batchSize: 256,
  steps: 300,
  l1Penalty: 0.2,
};

registerBackend(createCpuBackend());
registerBackend(createWebGPUBackend());
for (const f of factories) registerArchitecture(f);

/** WebGPU when the browser has it, else the CPU backend, with the reason on the page. */
async function pickBackend(): Promise<string> {
  try {
    const b = await useBackend('webgpu');
    $('backend').textContent = `WebGPU (${(b as { adapter?: string }).adapter ?? 'adapter'})`;
    return b.name;
  } catch (e) {
    await useBackend('cpu');
    $('backend').textContent = `the CPU backend — WebGPU is unavailable: ${(e as Error).message}`;
    return 'cpu';
  }
}

async function train(): Promise<void> {
  const button = $<HTMLButtonElement>('train');
  button.disabled = true;
  const status = $('status');
  const backend = await pickBackend();
  const source = new SyntheticSource({
    dim: RUN.dim,
    numFeatures: RUN.numFeatures,
    meanActive: RUN.meanActive,
    seed: 1,
  });
  const series = { loss: [] as number[], l0: [] as number[], fve: [] as number[] };
  const started = performance.now();
  const result = await trainSAE({
    data: source,
    batchSize: RUN.batchSize,
    steps: RUN.steps,
    backend,
    trainers: [
      {
        architecture: standard({ l1Penalty: RUN.l1Penalty }),
        dictSize: RUN.dictSize,
        lr: 3e-3,
        warmupSteps: 50,
        sparsityWarmupSteps: 100,
      },
    ],
    logEvery: 10,
    onLog: (e) => {
      series.loss.push(e.logs.loss);
      series.l0.push(e.logs.l0);
      series.fve.push(e.logs.frac_variance_explained);
      drawSeries($('loss'), series.loss, '#0969da');
      drawSeries($('l0'), series.l0, '#8250df');
      drawSeries($('fve'), series.fve, '#1a7f37');
    },
    onStep: (step, tokens) => {
      const secs = (performance.now() - started) / 1000;
      status.textContent = `step ${step}/${RUN.steps} · ${(tokens / secs).toFixed(0)} activations/s`;
    },
  });
  const dict = result.dictionaries[0];
  const rows = dict.decoderRows();
  const truth = source.groundTruth(backend);
  const r = await groundTruthRecovery(rows, truth, 0.9);
  // For the picture: each true feature's closest learned row (cosines on the host; small here).
  const [learned, truthHost] = [(await rows.data()) as Float32Array, (await truth.data()) as Float32Array];
  const best = new Int32Array(RUN.numFeatures);
  for (let f = 0; f < RUN.numFeatures; f++) {
    let bestCos = -2;
    for (let j = 0; j < RUN.dictSize; j++) {
      let dot = 0;
      let nn = 0;
      for (let k = 0; k < RUN.dim; k++) {
        dot += truthHost[f * RUN.dim + k] * learned[j * RUN.dim + k];
        nn += learned[j * RUN.dim + k] ** 2;
      }
      const c = dot / (Math.sqrt(nn) || 1);
      if (c > bestCos) {
        bestCos = c;
        best[f] = j;
      }
    }
  }
  drawFeatures($('features'), truthHost, learned, best, r.maxCos, RUN.dim);
  const recovery = $('recovery');
  recovery.textContent = `${(r.fractionRecovered * 100).toFixed(1)}% (MMCS ${r.mmcs.toFixed(3)})`;
  recovery.dataset.value = String(r.fractionRecovered);
  status.textContent = `done in ${((performance.now() - started) / 1000).toFixed(1)} s on ${backend}`;
  for (const t of [rows, truth]) t.dispose();
  dict.dispose();
  button.disabled = false;
}

$('train').addEventListener('click', () => {
  train().catch((e: unknown) => {
    $('status').textContent = `error: ${(e as Error).message}`;
  });
});
void pickBackend();
