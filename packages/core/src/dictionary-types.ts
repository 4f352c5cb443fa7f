import type { Tensor } from './tensor.js';

/** What `forward` returns. */
export interface ForwardOutput {
  /** x̂ [B, d]. */
  reconstruction: Tensor;
  /** f [B, F]. */
  features: Tensor;
}

/**
 * What evaluation needs of a trained dictionary (an SAE): encode, decode, and the decoder's
 * feature directions. `Dictionary` implements it; so can an adapter around another library's SAE.
 */
export interface DictionaryLike {
  /** Width d of the activations it encodes. */
  readonly activationDim: number;
  /** Number of features F. */
  readonly dictSize: number;
  /** Features f = encode(x): [B, d] → [B, F] (non-negative for ReLU-family architectures). */
  encode(x: Tensor): Tensor;
  /** Reconstruction x̂ = decode(f): [B, F] → [B, d]. */
  decode(f: Tensor): Tensor;
  /** Both at once: `{ reconstruction: x̂, features: f }`. */
  forward(x: Tensor, options: { outputFeatures: true }): ForwardOutput;
  /** The decoder's feature directions, one row per feature: [F, d] (a new tensor; dispose it). */
  decoderRows(): Tensor;
}
