// Load a saved dictionary, encode activations with it and evaluate it; then write it in
// SAELens's format and read that back. PATH may be a dictlearn folder, dictionary_learning's
// ae.pt (or its folder), a SAELens or a sparsify folder: the format is detected.
// Run from the repository root, after the train-from-files example:
//   pnpm --filter @dictlearn/examples run load-dictionary [PATH] [--acts FILE.npy] [--out DIR]
// PATH defaults to runs/examples/train-from-files/standard and --acts then to its heldout.npy
// (without --acts nothing is evaluated); the SAELens copy goes to DIR/saelens
// (default runs/examples/load-dictionary).
import '@dictlearn/backend-cpu/register';
// Loading by architecture name needs the architecture's package registered.
import '@dictlearn/arch-standard/register';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { NpySource } from '@dictlearn/buffer';
import { abs, max, sub, tensor, topk, useBackend } from '@dictlearn/core';
import { evaluate, formatMetrics } from '@dictlearn/eval';
import { loadDictionary, writeDictionary } from '@dictlearn/formats';

await useBackend('cpu');
const { positionals, values: flags } = parseArgs({
  options: { acts: { type: 'string' }, out: { type: 'string', default: 'runs/examples/load-dictionary' } },
  allowPositionals: true,
});
const path = positionals[0] ?? 'runs/examples/train-from-files/standard';
const acts = flags.acts ?? (positionals[0] ? undefined : 'runs/examples/train-from-files/heldout.npy');
if (!existsSync(path)) {
  console.error(`no dictionary at '${path}': run the train-from-files example first, or pass a PATH`);
  process.exit(1);
}

const { dictionary: dict, read } = await loadDictionary(path);
console.log(
  `${read.format} dictionary: ${dict.config().architecture.name}, d = ${dict.activationDim}, F = ${dict.dictSize}`,
);

// Encode two activation vectors and list each one's strongest features.
const d = dict.activationDim;
const x = tensor(
  Float32Array.from({ length: 2 * d }, (_, i) => Math.sin(i + 1)),
  [2, d],
);
const features = dict.encode(x);
const top = topk(features, 3);
const [values, ids] = [await top.values.data(), await top.indices.data()];
for (let row = 0; row < 2; row++) {
  const list = [0, 1, 2].map((j) => `${ids[row * 3 + j]}:${values[row * 3 + j].toFixed(3)}`);
  console.log(`row ${row}: top features ${list.join(' ')}`);
}

// The reference metrics on activation rows of the same width.
if (acts) {
  const metrics = await evaluate(dict, (await NpySource.open(acts)).batches({ batchSize: 512 }));
  console.log(formatMetrics(metrics));
}

// The same dictionary for SAELens (cfg.json + sae_weights.safetensors), read back: same features.
const saelensDir = `${flags.out}/saelens`;
await writeDictionary(dict, saelensDir, 'saelens');
const again = await loadDictionary(saelensDir);
const featuresAgain = again.dictionary.encode(x);
const diff = max(abs(sub(features, featuresAgain)));
console.log(
  `wrote ${saelensDir} (${again.read.format}); largest feature difference ${(await diff.data())[0]}`,
);

for (const t of [x, features, top.values, top.indices, featuresAgain, diff]) t.dispose();
dict.dispose();
again.dictionary.dispose();
