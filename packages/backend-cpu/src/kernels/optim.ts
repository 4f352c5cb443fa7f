import { arr, type CpuContext, out } from './context.js';

/**
 * Fused Adam update (core's `adamUpdate`): one pass over p, g, m, v instead of the ten passes
 * of the reference composition. Same arithmetic as torch.optim.Adam:
 * m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − (lr/bc₁)·m / (√v/√bc₂ + ε).
 */
export function registerOptim(ctx: CpuContext): void {
  ctx.kernel('adamUpdate', ([p, g, m, v], attrs) => {
    const n = p.size;
    const P = arr(p);
    const G = arr(g);
    const M = arr(m);
    const V = arr(v);
    const p2 = ctx.alloc('float32', n, false);
    const m2 = ctx.alloc('float32', n, false);
    const v2 = ctx.alloc('float32', n, false);
    const b1 = attrs.beta1 as number;
    const b2 = attrs.beta2 as number;
    const step = (attrs.lr as number) / (attrs.bc1 as number);
    const sqrtBc2 = Math.sqrt(attrs.bc2 as number);
    const eps = attrs.eps as number;
    for (let i = 0; i < n; i++) {
      const gi = G[i];
      const mi = b1 * M[i] + (1 - b1) * gi;
      const vi = b2 * V[i] + (1 - b2) * gi * gi;
      m2[i] = mi;
      v2[i] = vi;
      p2[i] = P[i] - (step * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
    }
    return [out(p2, p.shape, 'float32'), out(m2, p.shape, 'float32'), out(v2, p.shape, 'float32')];
  });
}
