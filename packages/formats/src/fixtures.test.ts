// Files written the way dictionary_learning, SAELens and sparsify write them
// (fixtures/make-fixtures.py, checked in: no Python needed here) load and give the features and
// reconstructions of a torch forward pass that follows each library's forward, to 1e-5.
import { readdirSync, readFileSync } from 'node:fs';
import { tensor } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { detectFormat, loadDictionary, readDictionary } from './api.js';
import { expectClose, expected, FIXTURES, useCpu } from './test-support.js';
import { readTorchStateDict } from './torch.js';

beforeAll(useCpu);

const cases = (group: string) => readdirSync(`${FIXTURES}${group}`).sort();

describe.each([
  ['dl', 'dictionary_learning'],
  ['saelens', 'saelens'],
  ['sparsify', 'sparsify'],
] as const)('%s fixtures', (group, format) => {
  it.each(cases(group))(
    '%s: maps onto the expected architecture and matches the torch forward pass',
    async (name) => {
      const dir = `${FIXTURES}${group}/${name}`;
      const want = expected(dir);
      expect(await detectFormat(dir)).toBe(format);
      const { dictionary, read } = await loadDictionary(dir);
      expect(read.format).toBe(format);
      expect(read.parts.architecture).toBe(want.architecture);
      expect(read.parts.config).toEqual(want.config);
      const x = tensor(want.x.flat(), [want.x.length, want.x[0].length]);
      const { features, reconstruction } = dictionary.forward(x);
      expectClose(await features.data(), want.features.flat());
      expectClose(await reconstruction.data(), want.reconstruction.flat());
      // the fixtures are built so that features really are sparse and some fire in every row
      const f = want.features;
      expect(f.every((row) => row.some((v) => v !== 0) && row.some((v) => v === 0))).toBe(true);
      for (const t of [x, features, reconstruction]) t.dispose();
      dictionary.dispose();
    },
  );
});

describe('what the readers report', () => {
  it('AutoEncoderTopK without config.json is read as per-row TopK, and says so', async () => {
    const r = await readDictionary(`${FIXTURES}dl/topk-no-config`);
    expect(r.formatArchitecture).toBe('AutoEncoderTopK');
    expect(r.notes.join('\n')).toMatch(/no config.json says whether this is AutoEncoderTopK or BatchTopKSAE/);
    const b = await readDictionary(`${FIXTURES}dl/topk-no-config`, { dictClass: 'BatchTopKSAE' });
    expect(b.parts.architecture).toBe('batch-topk');
    expect(Array.from(b.parts.params.threshold.values)).toEqual([0.25]);
  });

  it("reads DL's state dict exactly: keys in state_dict order, dtypes, int buffers", () => {
    const sd = readTorchStateDict(new Uint8Array(readFileSync(`${FIXTURES}dl/matryoshka/ae.pt`)), 'ae.pt');
    expect(Object.keys(sd.tensors)).toEqual([
      'W_enc',
      'b_enc',
      'W_dec',
      'b_dec',
      'k',
      'threshold',
      'group_sizes',
    ]);
    expect(sd.tensors.k).toMatchObject({ dtype: 'I32', shape: [] });
    expect(Array.from(sd.tensors.k.values)).toEqual([4]);
    expect(sd.tensors.group_sizes).toMatchObject({ dtype: 'I64', shape: [3] });
    expect(Array.from(sd.tensors.group_sizes.values)).toEqual([4, 4, 8]);
    expect(sd.tensors.W_enc).toMatchObject({ dtype: 'F32', shape: [8, 16] });
    // the OrderedDict's _metadata (set by BUILD) is accepted and not a tensor
    expect(sd.ignored).toEqual([]);
  });

  it('SAELens without b_dec subtraction: the bias fold is noted', async () => {
    const r = await readDictionary(`${FIXTURES}saelens/standard-no-bdec`);
    expect(r.notes.join('\n')).toMatch(/apply_b_dec_to_input is false: b_dec·W_enc folded/);
  });

  it('a whole sparsify run is refused with its hookpoints listed', async () => {
    await expect(readDictionary(`${FIXTURES}sparsify-run`)).rejects.toThrow(
      /is a sparsify run with one dictionary per hookpoint; name one: .*layers\.3, .*layers\.4/,
    );
    const one = await readDictionary(`${FIXTURES}sparsify-run/layers.4`);
    expect(one.parts.config).toEqual({ k: 4 });
  });
});
