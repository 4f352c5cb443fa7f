import { keep, noGrad, runOp, scope, type Variable } from './engine.js';
import { DictlearnError } from './errors.js';
import { tensor, zerosLike } from './ops/create.js';
import { add, div, mul, sqrt, square, sub } from './ops/elementwise.js';
import { l2Norm, sum } from './ops/reduce.js';
import { reshape } from './ops/shape-ops.js';
import type { Tensor } from './tensor.js';

/** Hyper-parameters of one Adam update (torch.optim.Adam semantics, no weight decay). */
export interface AdamHyper {
  /** Learning rate of this step. */
  lr: number;
  /** β₁. */
  beta1: number;
  /** β₂. */
  beta2: number;
  /** ε added to the denominator. */
  eps: number;
  /** 1-based step count, for bias correction. */
  step: number;
}

/**
 * One Adam update of a parameter, as torch.optim.Adam computes it:
 * m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε).
 * Returns `[p, m, v]`. Backends may register a fused kernel `adamUpdate` (one pass over memory).
 * With `inPlace` the kernel may write the new p, m and v over the old ones' memory (each element
 * is read before it is written), so the caller must own them: nothing may read the old values
 * afterwards, and no other tensor may share their storage.
 */
export function adamUpdate(
  p: Tensor,
  g: Tensor,
  m: Tensor,
  v: Tensor,
  h: AdamHyper,
  options: { inPlace?: boolean } = {},
): [Tensor, Tensor, Tensor] {
  for (const [what, t] of [
    ['gradient', g],
    ['m', m],
    ['v', v],
  ] as const) {
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new DictlearnError(
        'adamUpdate',
        `${what} shape [${t.shape}] differs from the parameter's [${p.shape}]`,
      );
    }
  }
  const bc1 = 1 - h.beta1 ** h.step;
  const bc2 = 1 - h.beta2 ** h.step;
  const outs = runOp(
    'adamUpdate',
    [p, g, m, v],
    { ...h, bc1, bc2, inPlace: options.inPlace ?? false },
    {
      composition: () => {
        const m2 = add(mul(m, h.beta1), mul(g, 1 - h.beta1));
        const v2 = add(mul(v, h.beta2), mul(square(g), 1 - h.beta2));
        const denom = add(div(sqrt(v2), Math.sqrt(bc2)), h.eps);
        const p2 = sub(p, mul(div(m2, denom), h.lr / bc1));
        return [p2, m2, v2];
      },
    },
  );
  return [outs[0], outs[1], outs[2]];
}

/**
 * Rows of a 2-D tensor scaled to unit L2 norm (zero rows stay zero). With `inPlace` the kernel
 * may write them over w (which the caller must own, as for {@link adamUpdate}).
 */
export function normalizeRows(w: Tensor, options: { inPlace?: boolean } = {}): Tensor {
  return runOp(
    'normalizeRows',
    [w],
    { inPlace: options.inPlace ?? false },
    { composition: () => div(w, add(l2Norm(w, -1, true), 1e-12)) },
  )[0];
}

/**
 * Removes from each row of `g` its component along the matching row of `w` (ConstrainedAdam).
 * With `inPlace` the kernel may write the result over g (which the caller must own).
 */
export function removeParallelComponent(w: Tensor, g: Tensor, options: { inPlace?: boolean } = {}): Tensor {
  return runOp(
    'removeParallelComponent',
    [w, g],
    { inPlace: options.inPlace ?? false },
    {
      composition: () => {
        const n = normalizeRows(w);
        return sub(g, mul(sum(mul(g, n), -1, true), n));
      },
    },
  )[0];
}

/** Whether no other tensor shares t's storage (a view would see an in-place write). */
const alone = (t: Tensor) => t.storage.refs === 1;

/** Options of {@link Adam}. */
export interface AdamOptions {
  /** β₁, β₂ (default 0.9, 0.999). */
  betas?: [number, number];
  /** ε (default 1e-8). */
  eps?: number;
  /**
   * Parameters whose rows are kept unit-norm (ConstrainedAdam, REFERENCE): before the step the
   * gradient's component along each row is removed, after it each row is renormalised.
   */
  unitNormRows?: readonly Variable[];
}

/** Serialisable optimizer state (moments per parameter name and the step count). */
export interface AdamState {
  /** Steps taken. */
  step: number;
  /** First moments by parameter name. */
  m: Record<string, Tensor>;
  /** Second moments by parameter name. */
  v: Record<string, Tensor>;
}

/**
 * Adam over named {@link Variable}s, optionally constrained (ConstrainedAdam): the optimizers of
 * REFERENCE's Standard and April-update trainers. Holds its moments as kept tensors.
 */
export class Adam {
  readonly #params: readonly Variable[];
  readonly #beta1: number;
  readonly #beta2: number;
  readonly #eps: number;
  readonly #unit: Set<Variable>;
  #m = new Map<Variable, Tensor>();
  #v = new Map<Variable, Tensor>();
  #step = 0;

  constructor(params: readonly Variable[], options: AdamOptions = {}) {
    this.#params = params;
    [this.#beta1, this.#beta2] = options.betas ?? [0.9, 0.999];
    this.#eps = options.eps ?? 1e-8;
    this.#unit = new Set(options.unitNormRows ?? []);
    for (const p of this.#unit) {
      if (p.value.rank !== 2) {
        throw new DictlearnError(
          'Adam',
          `unit-norm rows need a 2-D parameter, '${p.name}' is [${p.value.shape}]`,
        );
      }
    }
    for (const p of params) {
      this.#m.set(p, keep(zerosLike(p.value)));
      this.#v.set(p, keep(zerosLike(p.value)));
    }
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.#step;
  }

  /**
   * Applies one update with learning rate `lr`; disposes the gradients it is given. With
   * `rowsProjected` the caller has already removed the parallel component from the gradients of
   * the unit-norm parameters (the trainer does, before clipping: DL's order), so it is not
   * removed a second time.
   */
  step(grads: Map<Variable | Tensor, Tensor>, lr: number, options: { rowsProjected?: boolean } = {}): void {
    const project = !options.rowsProjected;
    this.#step++;
    noGrad(() => {
      for (const p of this.#params) {
        const g0 = grads.get(p);
        if (!g0) throw new DictlearnError('Adam.step', `no gradient for parameter '${p.name}'`);
        const [m0, v0] = [this.#m.get(p)!, this.#v.get(p)!];
        // The step writes over the parameter, its moments and its gradient where nothing else
        // shares their memory (a view would see the new values): no [rows, cols] temporary.
        const inPlace = alone(p.value) && alone(m0) && alone(v0);
        const [next, m, v] = scope(() => {
          const g =
            project && this.#unit.has(p) ? removeParallelComponent(p.value, g0, { inPlace: alone(g0) }) : g0;
          const [p2, m2, v2] = adamUpdate(
            p.value,
            g,
            m0,
            v0,
            { lr, beta1: this.#beta1, beta2: this.#beta2, eps: this.#eps, step: this.#step },
            { inPlace },
          );
          return [this.#unit.has(p) ? normalizeRows(p2, { inPlace: true }) : p2, m2, v2];
        });
        g0.dispose();
        this.#m.get(p)!.dispose();
        this.#v.get(p)!.dispose();
        this.#m.set(p, keep(m));
        this.#v.set(p, keep(v));
        p.assign(next);
      }
    });
  }

  /**
   * Zeroes the moments of some features (after resampling them): `mask` holds 1 for features
   * to keep and 0 for reset ones; `axes[name]` says along which axis of each parameter the
   * features lie (parameters not listed are untouched).
   */
  resetFeatures(mask: Float32Array, axes: Record<string, number>): void {
    noGrad(() => {
      for (const p of this.#params) {
        const axis = axes[p.name];
        if (axis === undefined) continue;
        const shape = p.value.shape.map((d, i) => (i === axis ? d : 1));
        for (const moments of [this.#m, this.#v]) {
          const next = scope(() =>
            mul(moments.get(p)!, reshape(tensor(mask, [mask.length], { backend: p.value.backend }), shape)),
          );
          moments.get(p)!.dispose();
          moments.set(p, keep(next));
        }
      }
    });
  }

  /** The state, for checkpoints (tensors stay owned by the optimizer). */
  state(): AdamState {
    const m: Record<string, Tensor> = {};
    const v: Record<string, Tensor> = {};
    for (const p of this.#params) {
      m[p.name] = this.#m.get(p)!;
      v[p.name] = this.#v.get(p)!;
    }
    return { step: this.#step, m, v };
  }

  /** Restores a saved state (copies the tensors). */
  load(state: AdamState): void {
    this.#step = state.step;
    for (const p of this.#params) {
      for (const [mine, saved] of [
        [this.#m, state.m],
        [this.#v, state.v],
      ] as const) {
        const t = saved[p.name];
        if (!t) throw new DictlearnError('Adam.load', `saved state has no moment for parameter '${p.name}'`);
        if (t.shape.length !== p.value.shape.length || t.shape.some((d, i) => d !== p.value.shape[i])) {
          throw new DictlearnError(
            'Adam.load',
            `moment of '${p.name}' is [${t.shape}], expected [${p.value.shape}]`,
          );
        }
        mine.get(p)!.dispose();
        mine.set(p, keep(scope(() => add(t, 0))));
      }
    }
  }

  /** Frees the moments. */
  dispose(): void {
    for (const t of [...this.#m.values(), ...this.#v.values()]) t.dispose();
  }
}
