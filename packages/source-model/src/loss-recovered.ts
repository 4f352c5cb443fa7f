/**
 * CE-loss recovered and KL: how much of a language model's next-token loss survives when a hook's
 * value is replaced by a dictionary's reconstruction (REFERENCE "Metrics").
 *
 * @module
 */
import { type DictionaryLike, DictlearnError, type Tensor, tensor } from '@dictlearn/core';
import type { ResolvedHook } from './hooks.js';
import type { HookValue, LanguageModel } from './model.js';

/** A context to evaluate on: token ids, or anything with `tokens` (a `PackedContext` of a `ModelSource`). */
export type ContextTokens =
  | ArrayLike<number>
  | {
      /** The context's token ids. */
      readonly tokens: ArrayLike<number>;
    };

/** Options of {@link lossRecovered}. */
export interface LossRecoveredOptions {
  /**
   * Contexts per forward pass (default 8). Each pass holds three [contexts, length, vocab] float32
   * logits arrays (original, reconstructed, zero): 8 × 128 × 50 304 × 4 bytes = 206 MB each for Pythia.
   */
  forwardBatch?: number;
  /** Evaluate at most this many contexts (default: all that `contexts` yields). */
  maxContexts?: number;
  /** Backend the dictionary runs on (default: the current backend). */
  backend?: string;
  /** Keep the model's onnxruntime sessions for these runs after returning (default false: they are freed). */
  keepSessions?: boolean;
}

/**
 * The figures of dictionary_learning's `loss_recovered` (under its key names) and SAELens's KL
 * divergences. Definitions, for contexts of L tokens t₀ … t_{L−1}:
 *
 * - `loss_original`, `loss_reconstructed`, `loss_zero`: next-token cross-entropy (nats) with the hook's
 *   value untouched, replaced by the dictionary's reconstruction x̂ at every position (BOS included, as
 *   dictionary_learning does), or replaced by zeros; the mean of −log p(t_{i+1} | t₀ … t_i) over every
 *   context and every position i = 0 … L−2 (dictionary_learning's `logits[:, :-1]` against
 *   `tokens[:, 1:]`; packed contexts hold no padding, so no position is ignored).
 * - `frac_recovered` = (loss_reconstructed − loss_zero) / (loss_original − loss_zero), from the mean
 *   losses over all the contexts (dictionary_learning averages this ratio per batch of 128 contexts;
 *   one batch gives the same number). SAELens calls it `ce_loss_score`.
 * - `kl_div_with_sae` = KL(p_original ‖ p_reconstructed) = Σ_v p_o(v)·(log p_o(v) − log p_r(v)) per
 *   position, averaged over every context and every position 0 … L−1; `kl_div_with_ablation` the same
 *   with the zeroed run (SAELens, no tokens ignored).
 */
export type LossRecovered = {
  /** Cross-entropy with the hook untouched. */
  loss_original: number;
  /** Cross-entropy with the hook's value replaced by the dictionary's reconstruction. */
  loss_reconstructed: number;
  /** Cross-entropy with the hook's value replaced by zeros. */
  loss_zero: number;
  /** (loss_reconstructed − loss_zero) / (loss_original − loss_zero): 1 when the dictionary loses nothing. */
  frac_recovered: number;
  /** Mean per-token KL(p_original ‖ p_reconstructed). */
  kl_div_with_sae: number;
  /** Mean per-token KL(p_original ‖ p_zero). */
  kl_div_with_ablation: number;
  /** Contexts evaluated. */
  ce_contexts: number;
  /** Next-token predictions the cross-entropies average over (contexts × (L − 1)). */
  ce_tokens: number;
};

function tokensOf(c: ContextTokens): ArrayLike<number> {
  return 'tokens' in (c as object) && !ArrayBuffer.isView(c) && !Array.isArray(c)
    ? (c as { tokens: ArrayLike<number> }).tokens
    : (c as ArrayLike<number>);
}

/**
 * Runs `model` three times on each group of contexts: untouched, with `hook`'s value replaced by
 * `dictionary`'s reconstruction of it (the graph is cut at the hook, so the rest of the model reads the
 * reconstruction), and with zeros there; returns the cross-entropies, `frac_recovered` and the KL
 * divergences defined in {@link LossRecovered}, accumulated in float64.
 *
 * The dictionary works on raw activations: a dictionary trained on normalised activations carries the
 * scale folded into its parameters (core's `Dictionary`), so its reconstruction is fed back as is.
 * Contexts must all have the same length (≥ 2). Errors (`DictlearnError`) name the hook or the
 * dictionary's width when they do not fit.
 *
 * ```ts
 * const model = await LanguageModel.load('model.onnx');
 * const source = await ModelSource.open({ model, text: 'heldout.txt', hooks: 'gpt_neox.layers.1' });
 * const dict = await Dictionary.load('run/gpt_neox.layers.1/0_standard');
 * const r = await lossRecovered(model, 'gpt_neox.layers.1', dict, source.contexts(), { maxContexts: 64 });
 * ```
 */
export async function lossRecovered(
  model: LanguageModel,
  hook: string | ResolvedHook,
  dictionary: DictionaryLike,
  contexts: Iterable<ContextTokens> | AsyncIterable<ContextTokens>,
  options: LossRecoveredOptions = {},
): Promise<LossRecovered> {
  const where = 'lossRecovered';
  const forwardBatch = options.forwardBatch ?? 8;
  if (!Number.isSafeInteger(forwardBatch) || forwardBatch < 1) {
    throw new DictlearnError(where, `option 'forwardBatch' must be a positive integer, got ${forwardBatch}`);
  }
  const max = options.maxContexts ?? Number.POSITIVE_INFINITY;
  if (!(max === Number.POSITIVE_INFINITY || (Number.isSafeInteger(max) && max >= 1))) {
    throw new DictlearnError(where, `option 'maxContexts' must be a positive integer, got ${max}`);
  }
  const h = typeof hook === 'string' ? model.resolve(hook) : hook;
  const sums = new Accumulator();
  let length = -1;
  let group: ArrayLike<number>[] = [];
  let seen = 0;
  let shape: readonly number[] | undefined;
  const flush = async () => {
    if (group.length === 0) return;
    shape = await runGroup(model, h, dictionary, group, length, sums, options.backend);
    group = [];
  };
  try {
    for await (const c of contexts as AsyncIterable<ContextTokens>) {
      if (seen >= max) break;
      const tokens = tokensOf(c);
      if (length < 0) {
        length = tokens.length;
        if (length < 2) {
          throw new DictlearnError(
            where,
            `a context of ${length} token(s); next-token losses need at least 2`,
          );
        }
      } else if (tokens.length !== length) {
        throw new DictlearnError(
          where,
          `context ${seen} has ${tokens.length} tokens, the first had ${length}; contexts must have one length`,
        );
      }
      group.push(tokens);
      seen++;
      if (group.length === forwardBatch) await flush();
    }
    await flush();
  } finally {
    if (!options.keepSessions && shape) {
      await model.releaseSession([h], { logits: true });
      await model.releaseSession([], {
        logits: true,
        replace: [{ hook: h, data: new Float32Array(0), shape }],
      });
    }
  }
  if (seen === 0) throw new DictlearnError(where, 'no contexts to evaluate (the text gave none)');
  return sums.result(seen, length);
}

/** Float64 running sums over the groups. */
class Accumulator {
  ceOriginal = 0;
  ceReconstructed = 0;
  ceZero = 0;
  klSae = 0;
  klZero = 0;

  result(contexts: number, length: number): LossRecovered {
    const predictions = contexts * (length - 1);
    const positions = contexts * length;
    const loss_original = this.ceOriginal / predictions;
    const loss_reconstructed = this.ceReconstructed / predictions;
    const loss_zero = this.ceZero / predictions;
    return {
      loss_original,
      loss_reconstructed,
      loss_zero,
      frac_recovered: (loss_reconstructed - loss_zero) / (loss_original - loss_zero),
      kl_div_with_sae: this.klSae / positions,
      kl_div_with_ablation: this.klZero / positions,
      ce_contexts: contexts,
      ce_tokens: predictions,
    };
  }
}

/** The three runs of one group of contexts; adds to `sums`; returns the hook value's shape. */
async function runGroup(
  model: LanguageModel,
  hook: ResolvedHook,
  dictionary: DictionaryLike,
  group: readonly ArrayLike<number>[],
  length: number,
  sums: Accumulator,
  backend: string | undefined,
): Promise<readonly number[]> {
  const n = group.length;
  const ids = new Int32Array(n * length);
  group.forEach((g, i) => {
    ids.set(g, i * length);
  });
  const original = await model.forward(ids, n, length, [hook], { logits: true });
  const value = original.hooks.get(hook.hook) as HookValue;
  if (value.dim !== dictionary.activationDim) {
    throw new DictlearnError(
      `hook '${hook.hook}'`,
      `the model's values are ${value.dim} wide but the dictionary expects ${dictionary.activationDim}; was it trained on another hook or model?`,
    );
  }
  const xhat = await reconstruct(dictionary, value, backend);
  const spliced = (data: Float32Array) =>
    model.forward(ids, n, length, [], { logits: true, replace: [{ hook, data, shape: value.shape }] });
  const reconstructed = (await spliced(xhat)).logits as Float32Array;
  const zero = (await spliced(new Float32Array(value.data.length))).logits as Float32Array;
  const logits = original.logits as Float32Array;
  const vocab = logits.length / (n * length);
  for (let c = 0; c < n; c++) {
    for (let t = 0; t < length; t++) {
      const row = (c * length + t) * vocab;
      const o = logits.subarray(row, row + vocab);
      const r = reconstructed.subarray(row, row + vocab);
      const z = zero.subarray(row, row + vocab);
      const lo = logSumExp(o);
      const lr = logSumExp(r);
      const lz = logSumExp(z);
      if (t + 1 < length) {
        const next = group[c][t + 1];
        sums.ceOriginal += lo - o[next];
        sums.ceReconstructed += lr - r[next];
        sums.ceZero += lz - z[next];
      }
      // KL(p_o ‖ q) = Σ p_o(v)·((o_v − lo) − (q_v − lq)) = Σ p_o(v)·(o_v − q_v) − lo + lq.
      let dr = 0;
      let dz = 0;
      for (let v = 0; v < vocab; v++) {
        const p = Math.exp(o[v] - lo);
        dr += p * (o[v] - r[v]);
        dz += p * (o[v] - z[v]);
      }
      sums.klSae += dr - lo + lr;
      sums.klZero += dz - lo + lz;
    }
  }
  return value.shape;
}

/** log Σ exp(x_v), in float64. */
function logSumExp(x: Float32Array): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let v = 0; v < x.length; v++) if (x[v] > max) max = x[v];
  let s = 0;
  for (let v = 0; v < x.length; v++) s += Math.exp(x[v] - max);
  return max + Math.log(s);
}

/** The dictionary's reconstruction of a hook's rows, on `backend`, back on the host. */
async function reconstruct(
  dictionary: DictionaryLike,
  value: HookValue,
  backend: string | undefined,
): Promise<Float32Array> {
  const rows = value.data.length / value.dim;
  const x = tensor(value.data, [rows, value.dim], { backend });
  let out: { reconstruction: Tensor; features: Tensor } | undefined;
  try {
    out = dictionary.forward(x, { outputFeatures: true });
    const data = await out.reconstruction.data();
    return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  } finally {
    x.dispose();
    out?.reconstruction.dispose();
    out?.features.dispose();
  }
}
