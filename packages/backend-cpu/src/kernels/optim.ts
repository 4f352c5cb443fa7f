import { arr, type CpuContext, out } from './context.js';

/**
 * Fused Adam update (core's `adamUpdate`): one pass over p, g, m, v instead of the ten passes
 * of the reference composition. Same arithmetic as torch.optim.Adam:
 * m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − (lr/bc₁)·m / (√v/√bc₂ + ε).
 */
export function registerOptim(ctx: CpuContext): void {
  // Rows to unit L2 norm: one pass for the norms, one to scale (the composition takes five).
  ctx.kernel('normalizeRows', ([w]) => {
    const W = arr(w);
    const cols = w.shape[w.shape.length - 1];
    const dst = ctx.alloc('float32', w.size, false);
    for (let r = 0; r < w.size; r += cols) {
      let ss = 0;
      for (let j = 0; j < cols; j++) ss += W[r + j] * W[r + j];
      const inv = 1 / (Math.sqrt(ss) + 1e-12);
      for (let j = 0; j < cols; j++) dst[r + j] = W[r + j] * inv;
    }
    return out(dst, w.shape, 'float32');
  });
  // ConstrainedAdam's projection: g − (g·n) n per row, n = w/‖w‖, in two passes per row.
  ctx.kernel('removeParallelComponent', ([w, g]) => {
    const W = arr(w);
    const G = arr(g);
    const cols = w.shape[w.shape.length - 1];
    const dst = ctx.alloc('float32', w.size, false);
    for (let r = 0; r < w.size; r += cols) {
      let ss = 0;
      let dot = 0;
      for (let j = 0; j < cols; j++) {
        ss += W[r + j] * W[r + j];
        dot += G[r + j] * W[r + j];
      }
      const norm = Math.sqrt(ss) + 1e-12;
      const coef = dot / (norm * norm);
      for (let j = 0; j < cols; j++) dst[r + j] = G[r + j] - coef * W[r + j];
    }
    return out(dst, w.shape, 'float32');
  });
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
