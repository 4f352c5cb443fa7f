// Train from activation files: write activations to .npy files (here synthetic ones, standing
// in for a model's residual stream saved with numpy.save), train a standard SAE on them, save it,
// and score it on held-out rows.
// Run from the repository root: pnpm --filter @dictlearn/examples run train-from-files [OUT]
// The same run from the command line: pnpm dictlearn train --source npy --data OUT/acts.npy ...
import '@dictlearn/backend-cpu/register';
import { standard } from '@dictlearn/arch-standard';
import { NpySource, SyntheticSource } from '@dictlearn/buffer';
import { ensureDir, trainSAE, useBackend, writeFileAtomic } from '@dictlearn/core';
import { evaluate, formatMetrics } from '@dictlearn/eval';

/**
 * A float32 matrix as a version-1.0 .npy file (what numpy.save writes): magic, header length,
 * a Python-dict header padded with spaces to a multiple of 64 bytes, then the row-major data.
 */
function npyBytes(data: Float32Array, rows: number, cols: number): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

await useBackend('cpu');
const out = process.argv[2] ?? 'runs/examples/train-from-files';
await ensureDir(out);

// 8192 training rows and 1024 held-out rows of width 32 (written temp + rename).
const synthetic = new SyntheticSource({ dim: 32, numFeatures: 64, meanActive: 3, seed: 0 });
await writeFileAtomic(`${out}/acts.npy`, npyBytes(synthetic.sampleHost(0, 8192), 8192, 32));
await writeFileAtomic(`${out}/heldout.npy`, npyBytes(synthetic.sampleHost(1e9, 1024), 1024, 32));

// 20 passes over the rows, reshuffled every pass; the width is read from the file header.
const data = await NpySource.open(`${out}/acts.npy`, { epochs: 20, shuffle: true, seed: 0 });
console.log(`training on ${data.name}`);
const { dictionaries } = await trainSAE({
  data,
  batchSize: 256,
  steps: 600,
  logEvery: 0,
  outDir: out, // the dictionary goes to <out>/standard (config.json + sae.safetensors)
  restart: true, // an example is run again and again: replace the previous run in `out`
  trainers: [
    {
      name: 'standard',
      architecture: standard({ l1Penalty: 0.1 }),
      dictSize: 4 * data.dim,
      lr: 1e-2,
      warmupSteps: 50,
      sparsityWarmupSteps: 100,
      resampleSteps: 200,
    },
  ],
});

const heldOut = await NpySource.open(`${out}/heldout.npy`);
const metrics = await evaluate(dictionaries[0], heldOut.batches({ batchSize: 512 }));
console.log(formatMetrics(metrics));
console.log(`saved ${out}/standard`);
dictionaries[0].dispose();
