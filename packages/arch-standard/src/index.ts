/**
 * `@dictlearn/arch-standard`: ReLU sparse autoencoders as dictlearn architecture plugins —
 * `standard` (unit-norm decoder, L1), `aprilUpdate` (decoder-norm-weighted L1, no constraint,
 * gradient clipping), `tied` (one matrix) and `pAnneal` (L_p penalty, p annealed from 1).
 * Plugins are values:
 *
 * ```ts
 * import { standard } from '@dictlearn/arch-standard';
 * const arch = standard({ l1Penalty: 0.05 });
 * ```
 * @packageDocumentation
 */

import type { ArchitectureFactory } from '@dictlearn/core';
import { pAnnealFactory } from './panneal.js';
import { factories as standardFactories } from './standard.js';

export type { EncoderBiasInit } from './linear.js';
export {
  type AnnealedPenalty,
  type AnnealState,
  type AnnealStep,
  annealedPenalty,
  lpPenalty,
  type PAnnealConfig,
  PAnnealer,
  type PAnnealSchedule,
  pAnneal,
  pAnnealFactory,
  pAnnealSpec,
  type SparsityFunction,
} from './panneal.js';
export {
  type AprilUpdateConfig,
  aprilUpdate,
  type StandardConfig,
  standard,
  tied,
} from './standard.js';

/** Registry factories of this package (what `@dictlearn/arch-standard/register` registers). */
export const factories: readonly ArchitectureFactory[] = [...standardFactories, pAnnealFactory];
