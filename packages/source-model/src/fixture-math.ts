/**
 * Comparison helpers the Node and browser fixture modules share (no imports, so both can load it).
 *
 * @module
 */

/** Largest |a − b| over two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Next-token cross-entropy of one context from its logits [seq, vocab] (float64 log-softmax). */
export function contextLoss(logits: Float32Array, tokens: ArrayLike<number>, vocab: number): number {
  const seq = tokens.length;
  let total = 0;
  for (let t = 0; t + 1 < seq; t++) {
    const row = logits.subarray(t * vocab, (t + 1) * vocab);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    total += max + Math.log(sum) - row[tokens[t + 1]];
  }
  return total / (seq - 1);
}
