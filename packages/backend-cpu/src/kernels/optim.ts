import { arr, type CpuContext, out } from './context.js';
import { DENSE_MIN_ELEMENTS, denseFor } from './dense-wasm.js';

/**
 * Fused Adam update (core's `adamUpdate`): one pass over p, g, m, v instead of the ten passes
 * of the reference composition. Same arithmetic as torch.optim.Adam:
 * m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − (lr/bc₁)·m / (√v/√bc₂ + ε); in float32
 * WebAssembly SIMD on float32 backends (as torch computes it), in float64 rounded once otherwise.
 * The decoder-row kernels run in float64 either way (SIMD lanes where available).
 */
export function registerOptim(ctx: CpuContext): void {
  // Rows to unit L2 norm: one pass for the norms, one to scale (the composition takes five).
  // In place (dst = W, or dst = G below) is safe: each row is read whole before it is written.
  ctx.kernel('normalizeRows', ([w], attrs) => {
    const W = arr(w);
    const cols = w.shape[w.shape.length - 1];
    const dst = attrs.inPlace ? W : ctx.alloc('float32', w.size, false);
    if (
      w.size >= DENSE_MIN_ELEMENTS &&
      ctx.dense(W, dst)?.rows(W as Float32Array, undefined, dst as Float32Array, w.size / cols, cols)
    )
      return out(dst, w.shape, 'float32');
    for (let r = 0; r < w.size; r += cols) {
      let ss = 0;
      for (let j = 0; j < cols; j++) ss += W[r + j] * W[r + j];
      const inv = 1 / (Math.sqrt(ss) + 1e-12);
      for (let j = 0; j < cols; j++) dst[r + j] = W[r + j] * inv;
    }
    return out(dst, w.shape, 'float32');
  });
  // ConstrainedAdam's projection: g − (g·n) n per row, n = w/‖w‖, in two passes per row.
  ctx.kernel('removeParallelComponent', ([w, g], attrs) => {
    const W = arr(w);
    const G = arr(g);
    const cols = w.shape[w.shape.length - 1];
    const dst = attrs.inPlace ? G : ctx.alloc('float32', w.size, false);
    if (
      w.size >= DENSE_MIN_ELEMENTS &&
      ctx
        .dense(W, G, dst)
        ?.rows(W as Float32Array, G as Float32Array, dst as Float32Array, w.size / cols, cols)
    )
      return out(dst, w.shape, 'float32');
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
  // clip_grad_norm_ in two passes: Σ x² over every tensor (float64), then each times the
  // coefficient min(1, maxNorm / (norm + 1e-6)) (the composition takes five passes per tensor).
  ctx.kernel('clipByGlobalNorm', (inputs, attrs) => {
    const f32 = arr(inputs[0]) instanceof Float32Array;
    const round = f32 ? Math.fround : (x: number) => x;
    let total = 0;
    for (const t of inputs) {
      const a = arr(t);
      const simd =
        t.size >= DENSE_MIN_ELEMENTS ? denseFor(a)?.sum(a as Float32Array, t.size, true) : undefined;
      if (simd !== undefined) total += simd;
      else for (let i = 0; i < t.size; i++) total += a[i] * a[i];
    }
    const norm = round(Math.sqrt(total));
    const coef = Math.min(round(round(attrs.maxNorm) / round(norm + round(1e-6))), 1);
    const outs = inputs.map((t) => {
      const a = arr(t);
      // in place: element i is read before it is written
      const dst = attrs.inPlace ? a : ctx.alloc('float32', t.size, false);
      const c = Float32Array.of(coef);
      if (
        !(
          t.size >= DENSE_MIN_ELEMENTS &&
          ctx.dense(a, dst)?.binary('mul', a as Float32Array, c, dst as Float32Array, t.size, 1, 1)
        )
      )
        for (let i = 0; i < t.size; i++) dst[i] = a[i] * coef;
      return out(dst, t.shape, 'float32');
    });
    const n = ctx.alloc('float32', 1, false);
    n[0] = norm;
    return [...outs, out(n, [], 'float32')];
  });
  ctx.kernel('adamUpdate', ([p, g, m, v], attrs) => {
    const n = p.size;
    const P = arr(p);
    const G = arr(g);
    const M = arr(m);
    const V = arr(v);
    // in place: every element of p, m, v is read before it is written, in both loops
    const [p2, m2, v2] = attrs.inPlace
      ? [P, M, V]
      : [ctx.alloc('float32', n, false), ctx.alloc('float32', n, false), ctx.alloc('float32', n, false)];
    const b1 = attrs.beta1 as number;
    const b2 = attrs.beta2 as number;
    const step = (attrs.lr as number) / (attrs.bc1 as number);
    const sqrtBc2 = Math.sqrt(attrs.bc2 as number);
    const eps = attrs.eps as number;
    const outs = [out(p2, p.shape, 'float32'), out(m2, p.shape, 'float32'), out(v2, p.shape, 'float32')];
    const f = n >= DENSE_MIN_ELEMENTS ? ctx.dense(P, G, M, V, p2, m2, v2) : undefined;
    if (
      f?.adam(
        P as Float32Array,
        G as Float32Array,
        M as Float32Array,
        V as Float32Array,
        p2 as Float32Array,
        m2 as Float32Array,
        v2 as Float32Array,
        n,
        b1,
        b2,
        step,
        sqrtBc2,
        eps,
      )
    )
      return outs;
    for (let i = 0; i < n; i++) {
      const gi = G[i];
      const mi = b1 * M[i] + (1 - b1) * gi;
      const vi = b2 * V[i] + (1 - b2) * gi * gi;
      m2[i] = mi;
      v2[i] = vi;
      p2[i] = P[i] - (step * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
    }
    return outs;
  });
}
