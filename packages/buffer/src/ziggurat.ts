/**
 * The tables of the ziggurat method (Marsaglia & Tsang 2000, 128 layers) shared by the
 * TypeScript normals of `PhiloxStream` (random.ts) and their WebAssembly fast path.
 *
 * A try reads one 32-bit word: bits 0–6 pick the layer i, bit 7 the sign, bits 8–31 the 24-bit
 * uniform u = (w >>> 8)·2⁻²⁴; it lands inside the curve for sure when u < R[i].
 *
 * @module
 */

/** Right edge of the ziggurat's base strip (the start of the tail). */
export const ZIG_TAIL = 3.442619855899;
/** Area of each of the 128 layers. */
const ZIG_AREA = 9.91256303526217e-3;
/** X[i]: outer edge of layer i (X[0]: the base strip's width, area / f(r)); X[128] = 0. */
export const ZIG_X = new Float64Array(129);
/** R[i] = X[i+1] / X[i]: below it a try lands inside the curve for sure. */
export const ZIG_R = new Float64Array(128);
/** F[i] = f(X[i]) = exp(−X[i]²/2). */
export const ZIG_F = new Float64Array(129);
/**
 * The fast test in integers: u < R[i] exactly when (w >>> 8) < K[i] = ⌈R[i]·2²⁴⌉ (u and
 * R[i]·2²⁴ are exact scalings by a power of two, and for an integer m, m < y ⟺ m < ⌈y⌉).
 */
export const ZIG_K = new Int32Array(128);
{
  const f = (x: number) => Math.exp(-0.5 * x * x);
  ZIG_X[0] = ZIG_AREA / f(ZIG_TAIL);
  ZIG_X[1] = ZIG_TAIL;
  for (let i = 1; i < 127; i++) ZIG_X[i + 1] = Math.sqrt(-2 * Math.log(ZIG_AREA / ZIG_X[i] + f(ZIG_X[i])));
  ZIG_X[128] = 0;
  for (let i = 0; i < 128; i++) ZIG_R[i] = ZIG_X[i + 1] / ZIG_X[i];
  for (let i = 0; i <= 128; i++) ZIG_F[i] = f(ZIG_X[i]);
  for (let i = 0; i < 128; i++) ZIG_K[i] = Math.ceil(ZIG_R[i] * 2 ** 24);
}
