/**
 * Φ, the standard normal distribution function, and its table: self-contained (no imports), so
 * that buffer's WebAssembly module can import `normalCdf` on any thread (worker threads evaluate
 * `erfc` and `normalCdf` from their source text) and random.ts can build on it.
 *
 * @module
 */

/**
 * The complementary error function, erfc(x) = 1 − erf(x), with fractional error below 1.2e-7
 * everywhere (the Chebyshev fit of Numerical Recipes, `erfcc`).
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** Φ(x), the standard normal cumulative distribution function. */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** Φ tabulated on [−8, 8] in steps of 1/64, to bracket Φ(x) without evaluating it. */
export const PHI_MIN = -8;
export const PHI_STEPS = 64;
export const PHI_N = 16 * PHI_STEPS;
export const PHI_TABLE = Float64Array.from({ length: PHI_N + 1 }, (_, k) =>
  normalCdf(PHI_MIN + k / PHI_STEPS),
);

/** log(1 − Φ) at the tabulated points (for geometric skips), and log(0) for the bound 1. */
export const LOG_MISS_TABLE = Float64Array.from({ length: PHI_N + 2 }, (_, k) =>
  k > PHI_N ? Number.NEGATIVE_INFINITY : Math.log1p(-PHI_TABLE[k]),
);
