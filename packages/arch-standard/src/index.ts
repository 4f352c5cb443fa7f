/**
 * `@dictlearn/arch-standard`: ReLU sparse autoencoders as dictlearn architecture plugins —
 * `standard` (unit-norm decoder, L1), `aprilUpdate` (decoder-norm-weighted L1, no constraint,
 * gradient clipping) and `tied` (one matrix). Plugins are values:
 *
 * ```ts
 * import { standard } from '@dictlearn/arch-standard';
 * const arch = standard({ l1Penalty: 0.05 });
 * ```
 * @packageDocumentation
 */

export type { EncoderBiasInit } from './linear.js';
export {
  type AprilUpdateConfig,
  aprilUpdate,
  factories,
  type StandardConfig,
  standard,
  tied,
} from './standard.js';
