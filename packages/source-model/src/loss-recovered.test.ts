import '@dictlearn/backend-cpu/register';
import '@dictlearn/arch-standard/register';
import { readFileSync } from 'node:fs';
import { Dictionary, useBackend } from '@dictlearn/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORTS, FIXTURES, reference } from './fixtures.js';
import { lossRecovered } from './loss-recovered.js';
import { LanguageModel } from './model.js';

// fixtures/<model>/ce-reference.json: a standard SAE trained in torch on one hook (on normalised
// activations; the saved dictionary in fixtures/<model>/sae has the scale folded into its biases),
// and torch's losses with forward hooks that replace the module's output by the SAE's
// reconstruction (computed from the unfolded weights on x / s, times s) or by zeros.
interface CeReference {
  hook: string;
  contexts: number[][];
  loss_original: number;
  loss_reconstructed: number;
  loss_zero: number;
  frac_recovered: number;
  kl_div_with_sae: number;
  kl_div_with_ablation: number;
}

const TOL = 1e-4;
const KEYS = [
  'loss_original',
  'loss_reconstructed',
  'loss_zero',
  'frac_recovered',
  'kl_div_with_sae',
  'kl_div_with_ablation',
] as const;
const measured: Record<string, number> = {};

beforeAll(async () => {
  await useBackend('cpu');
});

afterAll(() => {
  console.log(`CE-loss recovered, max abs error vs torch: ${JSON.stringify(measured)}`);
});

describe.each(EXPORTS)('$name: CE-loss recovered against torch', ({ name: label, model: name, file }) => {
  const ref = JSON.parse(readFileSync(`${FIXTURES}${name}/ce-reference.json`, 'utf8')) as CeReference;

  it("gives torch's losses, frac_recovered and KL for the same dictionary (folded normalisation)", async () => {
    const model = await LanguageModel.load(`${FIXTURES}${name}/${file}`);
    const dict = await Dictionary.load(`${FIXTURES}${name}/sae`);
    expect(dict.scale).not.toBe(1); // trained on normalised activations: the fold is exercised
    // Two forward groups (5 + 3 contexts): the sums run across groups.
    const got = await lossRecovered(model, ref.hook, dict, ref.contexts, { forwardBatch: 5 });
    let worst = 0;
    for (const k of KEYS) {
      const err = Math.abs(got[k] - ref[k]);
      worst = Math.max(worst, err);
      expect(err, `${k}: ${got[k]} vs torch ${ref[k]}`).toBeLessThan(TOL);
    }
    measured[label] = worst;
    expect(got.ce_contexts).toBe(ref.contexts.length);
    expect(got.ce_tokens).toBe(ref.contexts.length * (ref.contexts[0].length - 1));
    // A trained dictionary keeps most of the loss that zeroing the hook loses, and zeroing hurts.
    expect(ref.loss_zero).toBeGreaterThan(ref.loss_original + 0.5);
    expect(ref.frac_recovered).toBeGreaterThan(0.5);
    expect(ref.kl_div_with_sae).toBeLessThan(ref.kl_div_with_ablation);
    dict.dispose();
    await model.release();
  });
});

describe('lossRecovered', () => {
  it("loss_original is the model's own next-token loss over positions 0 … L−2 (reference.json's per-context losses)", async () => {
    const ref = reference('gpt-neox');
    const model = await LanguageModel.load(`${FIXTURES}gpt-neox/model.onnx`);
    const dict = await Dictionary.load(`${FIXTURES}gpt-neox/sae`);
    const got = await lossRecovered(model, 'gpt_neox.layers.1', dict, ref.contexts);
    const mean = ref.ce_loss.reduce((a, b) => a + b, 0) / ref.ce_loss.length;
    expect(Math.abs(got.loss_original - mean)).toBeLessThan(TOL);
    dict.dispose();
    await model.release();
  });

  it('refuses a dictionary of another width, contexts of different lengths, and no contexts', async () => {
    const model = await LanguageModel.load(`${FIXTURES}gpt2/model.onnx`);
    const dict = await Dictionary.load(`${FIXTURES}gpt-neox/sae`);
    const heads = { activationDim: 32 } as unknown as Dictionary;
    await expect(lossRecovered(model, 'transformer.h.0', heads, [[0, 5, 6]])).rejects.toThrow(
      /hook 'transformer\.h\.0': the model's values are 64 wide but the dictionary expects 32/,
    );
    await expect(
      lossRecovered(model, 'transformer.h.0', dict, [
        [0, 5, 6],
        [0, 5],
      ]),
    ).rejects.toThrow(/context 1 has 2 tokens, the first had 3/);
    await expect(lossRecovered(model, 'transformer.h.0', dict, [])).rejects.toThrow(/no contexts/);
    dict.dispose();
    await model.release();
  });
});
