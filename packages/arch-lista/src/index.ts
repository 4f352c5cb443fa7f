/**
 * `@dictlearn/arch-lista`: LISTA sparse autoencoders as a dictlearn architecture plugin — the
 * encoder is n unrolled iterations of ISTA (or FISTA, with momentum)
 * z ← soft_threshold(z + (x − b_dec − z W_dec) W_e⁽ᵏ⁾, θ⁽ᵏ⁾) with learned encoder matrices and
 * thresholds, and the decoder is the dictionary itself. Plugins are values:
 *
 * ```ts
 * import { lista } from '@dictlearn/arch-lista';
 * const arch = lista({ iterations: 3, variant: 'fista', l1Penalty: 0.1 });
 * ```
 * @packageDocumentation
 */

export {
  factories,
  fistaMomentum,
  type ListaConfig,
  type ListaVariant,
  lista,
  softThreshold,
  squaredSpectralNorm,
} from './lista.js';
