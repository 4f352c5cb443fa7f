/**
 * `@dictlearn/arch-jumprelu`: the JumpReLU sparse autoencoder as a dictlearn architecture
 * plugin — f = pre·1[pre > θ] with a learned per-feature threshold θ = exp(log θ), trained with
 * rectangle-kernel straight-through gradients and either dictionary_learning's L0-target penalty
 * or Gemma Scope's λ·L0. Plugins are values:
 *
 * ```ts
 * import { jumpRelu } from '@dictlearn/arch-jumprelu';
 * const arch = jumpRelu({ targetL0: 20 });
 * ```
 * @packageDocumentation
 */

export {
  factories,
  type JumpReluConfig,
  type JumpReluPenalty,
  jumpRelu,
  jumpReluFunction,
  stepFunction,
} from './jumprelu.js';
