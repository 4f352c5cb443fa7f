import { noGrad, runOp } from '../engine.js';
import { check } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { add, div, minimum, mul, sqrt, square } from './elementwise.js';
import { sum } from './reduce.js';

/** What {@link clipByGlobalNorm} returns. */
export interface ClipResult {
  /** The tensors scaled by min(1, maxNorm / (norm + 1e-6)). */
  tensors: Tensor[];
  /** The global L2 norm before clipping (a scalar; NaN/Inf propagate). */
  norm: Tensor;
}

/**
 * Scales a list of tensors (gradients) so their joint L2 norm is at most `maxNorm`, as
 * torch.nn.utils.clip_grad_norm_ does (coefficient maxNorm / (norm + 1e-6), capped at 1).
 * Not differentiable (it runs without recording). With `inPlace` the scaled tensors may be
 * written over the inputs, which the caller must own (nothing reads them afterwards, no view
 * shares them).
 */
export function clipByGlobalNorm(
  tensors: readonly Tensor[],
  maxNorm: number,
  options: { inPlace?: boolean } = {},
): ClipResult {
  check(tensors.length > 0, 'clipByGlobalNorm', () => 'needs at least one tensor');
  check(
    maxNorm > 0 && Number.isFinite(maxNorm),
    'clipByGlobalNorm',
    () => `maxNorm must be positive, got ${maxNorm}`,
  );
  return noGrad(() => {
    const outs = runOp(
      'clipByGlobalNorm',
      [...tensors],
      { maxNorm, inPlace: options.inPlace ?? false },
      {
        composition: () => {
          let total = sum(square(tensors[0]));
          for (let i = 1; i < tensors.length; i++) total = add(total, sum(square(tensors[i])));
          const norm = sqrt(total);
          const coef = div(maxNorm, add(norm, 1e-6));
          const capped = minimum(coef, 1);
          const scale = (t: Tensor) =>
            options.inPlace
              ? runOp('mul', [t, capped], { shape: [...t.shape], inPlace: true })[0]
              : mul(t, capped);
          return [...tensors.map(scale), norm];
        },
      },
    );
    return { tensors: outs.slice(0, -1), norm: outs[outs.length - 1] };
  });
}
