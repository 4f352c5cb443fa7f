import { noGrad } from '../engine.js';
import { div, notEqual, square, sub } from '../ops/elementwise.js';
import { mean, sum } from '../ops/reduce.js';
import type { Tensor } from '../tensor.js';

/**
 * Per-batch fraction of variance explained, REFERENCE: 1 − Σ_j var_b(x − x̂)_j / Σ_j var_b(x_j)
 * (population variance over the batch). A scalar tensor.
 */
export function fractionVarianceExplained(x: Tensor, xhat: Tensor): Tensor {
  return noGrad(() => {
    const r = sub(x, xhat);
    const varR = sum(mean(square(sub(r, mean(r, 0, true))), 0));
    const varX = sum(mean(square(sub(x, mean(x, 0, true))), 0));
    return sub(1, div(varR, varX));
  });
}

/** Mean number of non-zero features per row (L0), a scalar tensor. */
export function meanL0(f: Tensor): Tensor {
  return noGrad(() => mean(sum(notEqual(f, 0), -1)));
}
