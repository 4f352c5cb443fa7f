/**
 * `@dictlearn/arch-blockdiag`: block-diagonal (per-head) sparse autoencoders — any registered
 * architecture split into H independent heads, each with F/H features that see and reconstruct
 * only their own block of d/H input dimensions (attention outputs [B, H·d_head]), with 1/H of a
 * dense dictionary's parameters. Plugins are values:
 *
 * ```ts
 * import { blockDiagonal } from '@dictlearn/arch-blockdiag';
 * import { standard } from '@dictlearn/arch-standard';
 * const arch = blockDiagonal(standard({ l1Penalty: 0.1 }), { heads: 12 });
 * ```
 * @packageDocumentation
 */

export { type BlockDiagConfig, blockDiagonal, factories } from './blockdiag.js';
