import { afterAll, describe, expect, it } from 'vitest';
import { contextLoss, EXPORTS, FIXTURES, maxAbsDiff, readNpy, reference } from './fixtures.js';
import { LanguageModel } from './model.js';

// The torch references come from fixtures/make-test-models.py: forward hooks on the PyTorch
// modules (pre-hooks on the output projection for `:heads`), first tensor of tuple outputs, and
// transformers' own per-context loss. onnxruntime must reproduce them to 1e-4.
const TOL = 1e-4;
const measured: Record<string, number> = {};

afterAll(() => {
  console.log(`max abs error vs torch: ${JSON.stringify(measured)}`);
});

describe.each(EXPORTS)('$name: the ONNX model against torch', ({ name: label, model: name, file }) => {
  const ref = reference(name);
  const path = `${FIXTURES}${name}/${file}`;
  const seq = ref.contexts[0].length;
  const batch = ref.contexts.length;
  const tokens = Int32Array.from(ref.contexts.flat());

  it('gives torch activations at every reference hook in one forward pass', async () => {
    const model = await LanguageModel.load(path);
    const hooks = ref.hooks.map((h) => model.resolve(h.hook));
    const out = await model.forward(tokens, batch, seq, hooks);
    for (const h of ref.hooks) {
      const want = readNpy(`${FIXTURES}${name}/${h.file}`);
      const got = out.hooks.get(h.hook);
      expect(got?.dim, h.hook).toBe(h.dim);
      expect(want.shape).toEqual([batch * seq, h.dim]);
      const err = maxAbsDiff(got?.data ?? [], want.data);
      measured[`${label} ${h.hook}`] = err;
      expect(err, h.hook).toBeLessThan(TOL);
    }
    await model.release();
  });

  it("gives torch's cross-entropy per context from its logits", async () => {
    const model = await LanguageModel.load(path);
    const out = await model.forward(tokens, batch, seq, [], { logits: true });
    const vocab = model.vocabSize as number;
    expect(vocab).toBe(ref.vocab);
    const logits = out.logits as Float32Array;
    expect(logits.length).toBe(batch * seq * vocab);
    const losses = ref.contexts.map((c, i) =>
      contextLoss(logits.subarray(i * seq * vocab, (i + 1) * seq * vocab), c, vocab),
    );
    const err = maxAbsDiff(losses, ref.ce_loss);
    measured[`${label} ce`] = err;
    expect(err).toBeLessThan(TOL);
    // The trained model is far better than chance (uniform: log(vocab)).
    for (const l of ref.ce_loss) expect(l).toBeLessThan(Math.log(vocab) / 2);
    await model.release();
  });

  it('runs only what the hooks need: an early hook alone gives the same values as with the logits', async () => {
    const model = await LanguageModel.load(path);
    const first = model.resolve(ref.hooks[0].hook);
    const alone = await model.forward(tokens, batch, seq, [first]);
    const withLogits = await model.forward(tokens, batch, seq, [first], { logits: true });
    expect(alone.hooks.get(first.hook)?.data).toEqual(withLogits.hooks.get(first.hook)?.data);
    expect(alone.logits).toBeUndefined();
    await model.release();
  });
});
