/**
 * `@dictlearn/arch-gated`: the gated sparse autoencoder (Rajamanoharan et al. 2024) as dictlearn
 * architecture plugins — a gate path decides which features fire, a magnitude path (the same
 * encoder rescaled by exp(r_mag)) how strongly; `gatedAnneal` replaces the L1 penalty with a
 * p-annealed L_p. Plugins are values:
 *
 * ```ts
 * import { gated } from '@dictlearn/arch-gated';
 * const arch = gated({ l1Penalty: 0.1 });
 * ```
 * @packageDocumentation
 */

export { factories, type GatedAnnealConfig, type GatedConfig, gated, gatedAnneal } from './gated.js';
