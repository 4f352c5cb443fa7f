import {
  type ArchitectureFactory,
  type ArchitecturePlugin,
  concat,
  createArchitecture,
  type DictionarySizes,
  DictlearnError,
  div,
  type LossOutput,
  l2Norm,
  maximum,
  mean,
  mul,
  notEqual,
  type Params,
  reshape,
  scalar,
  slice,
  sum,
  type Tensor,
  tensor,
  validateConfig,
} from '@dictlearn/core';

const PACKAGE = '@dictlearn/arch-blockdiag';
const WHERE = 'blockdiag';

/** Hyper-parameters of the block-diagonal wrapper (JSON: what config.json stores). */
export interface BlockDiagConfig {
  /** H, the number of heads (blocks); d and F must both be multiples of it. */
  heads: number;
  /** Registry name of the inner architecture of every head (e.g. `'standard'`, `'lista'`). */
  inner: string;
  /** The inner architecture's config (validated by it). */
  innerConfig: Record<string, unknown>;
  /**
   * A feature counts as dead in the per-head training logs after this many steps without
   * firing (default 1000).
   */
  deadSteps: number;
}

/** What each axis of a parameter scales with: the width d, the features F, or neither. */
type AxisKind = 'd' | 'F' | '-';

/** How one inner parameter is laid out across heads. */
interface Layout {
  /** The per-head shape (inner sizes d/H, F/H). */
  head: number[];
  /** The dense shape (inner sizes d, F). */
  dense: number[];
  /** Kind of each axis. */
  kinds: AxisKind[];
  /**
   * Block parameters (two or more d/F axes, e.g. W_enc [d, F]) are block-diagonal: stored
   * compactly, the heads stacked along `stack` (the first F axis, else the first d axis).
   * Others (b_enc [F], b_dec [d], a scalar) are stored dense: one d or F axis is the heads'
   * blocks concatenated, none means shared by every head.
   */
  block: boolean;
  /** The axis the heads are stacked along in the compact form (block parameters). */
  stack: number;
  /** The compact shape (block parameters; else the dense shape). */
  stored: number[];
}

function classify(
  inner: ArchitecturePlugin<object>,
  H: number,
  sizes: DictionarySizes,
): Record<string, Layout> {
  const { activationDim: d, dictSize: F } = sizes;
  const dh = d / H;
  const fh = F / H;
  // Which axes follow d and which follow F: the shapes at doubled sizes say (a size that
  // happens to equal d/H, like 3 iterations with d/H = 3, cannot be mistaken for it).
  const base = inner.paramShapes({ activationDim: dh, dictSize: fh });
  const moreD = inner.paramShapes({ activationDim: 2 * dh, dictSize: fh });
  const moreF = inner.paramShapes({ activationDim: dh, dictSize: 2 * fh });
  const dense = inner.paramShapes(sizes);
  const out: Record<string, Layout> = {};
  for (const [name, head] of Object.entries(base)) {
    const kinds = head.map((n, i): AxisKind => {
      const byD = moreD[name]?.[i] !== n;
      const byF = moreF[name]?.[i] !== n;
      if (byD && byF) {
        throw new DictlearnError(
          WHERE,
          `inner architecture '${inner.name}': parameter '${name}' has an axis that grows with both d and F; it cannot be split into heads`,
        );
      }
      if (byD && (moreD[name][i] !== 2 * n || dense[name]?.[i] !== H * n)) {
        throw new DictlearnError(
          WHERE,
          `inner architecture '${inner.name}': axis ${i} of '${name}' is not proportional to d`,
        );
      }
      if (byF && (moreF[name][i] !== 2 * n || dense[name]?.[i] !== H * n)) {
        throw new DictlearnError(
          WHERE,
          `inner architecture '${inner.name}': axis ${i} of '${name}' is not proportional to F`,
        );
      }
      return byD ? 'd' : byF ? 'F' : '-';
    });
    const blockAxes = kinds.filter((k) => k !== '-').length;
    const block = blockAxes >= 2;
    const firstF = kinds.indexOf('F');
    const stack = firstF >= 0 ? firstF : kinds.indexOf('d');
    const stored = block ? head.map((n, i) => (i === stack ? H * n : n)) : [...dense[name]];
    out[name] = { head, dense: [...dense[name]], kinds, block, stack, stored };
  }
  return out;
}

/**
 * The 0/1 mask [H, 1, H, 1, …] (one H axis per block axis, in the split shape) that is 1 where
 * every head index is the same: the block diagonal.
 */
function diagonalMask(layout: Layout, H: number, backend: string): Tensor {
  const axes = layout.kinds.map((k) => k !== '-');
  const count = axes.filter(Boolean).length;
  const values = new Float32Array(H ** count);
  for (let h = 0; h < H; h++) {
    let idx = 0;
    for (let j = 0; j < count; j++) idx = idx * H + h;
    values[idx] = 1;
  }
  const shape: number[] = [];
  for (const isBlock of axes) shape.push(...(isBlock ? [H, 1] : [1]));
  return tensor(values, shape, { backend });
}

/** Split shapes: each block axis of size H·s becomes [H, s] (or [1, s] where `singleton`). */
function splitShape(layout: Layout, H: number, singletonExceptStack: boolean): number[] {
  const shape: number[] = [];
  layout.head.forEach((n, i) => {
    if (layout.kinds[i] === '-') shape.push(n);
    else shape.push(singletonExceptStack && i !== layout.stack ? 1 : H, n);
  });
  return shape;
}

/** Compact block parameter → its dense block-diagonal form (zeros off the diagonal blocks). */
function expand(t: Tensor, layout: Layout, H: number): Tensor {
  const split = reshape(t, splitShape(layout, H, true));
  return reshape(mul(split, diagonalMask(layout, H, t.backend)), layout.dense);
}

/** Dense block-diagonal parameter → compact (the off-diagonal blocks are dropped). */
function compact(t: Tensor, layout: Layout, H: number): Tensor {
  const masked = mul(reshape(t, splitShape(layout, H, false)), diagonalMask(layout, H, t.backend));
  // Sum away the head axis of every block axis but the stacking one.
  const axes: number[] = [];
  let pos = 0;
  layout.head.forEach((_, i) => {
    if (layout.kinds[i] === '-') pos += 1;
    else {
      if (i !== layout.stack) axes.push(pos);
      pos += 2;
    }
  });
  return reshape(axes.length ? sum(masked, axes) : masked, layout.stored);
}

/**
 * Wraps an architecture into H independent heads (block-diagonal per-head SAEs, as trained on
 * attention outputs [B, H·d_head]): x splits into H blocks of d/H columns and each head has F/H
 * features that see and reconstruct only its own block, so every feature belongs to one head
 * by construction.
 *
 * Parameters are 1/H of a dense dictionary's: every inner parameter with two or more d/F axes
 * (W_enc [d, F], W_dec [F, d], a LISTA's W_enc [n, d, F]) is stored compactly, the heads stacked
 * along its feature axis (W_enc [d/H, F], W_dec [F, d/H]); parameters with one such axis (b_enc
 * [F], b_dec [d], thresholds [F]) are the heads' blocks side by side; parameters with none (a
 * tied LISTA's step sizes) are shared by every head.
 *
 * Execution: each step the compact parameters are laid out block-diagonally (one broadcast
 * multiply per parameter) and the inner architecture runs once on the whole width — one product
 * per layer, whatever H, for any inner architecture written with core ops. Its products are
 * those of a dense SAE of the same width (the zero blocks are multiplied too). For an inner
 * architecture that is separable over features (standard, tied, April update, gated, JumpReLU,
 * p-anneal, LISTA) the result is exactly H separate dictionaries, and the loss is the sum of
 * their losses. TopK-style selection (TopK, BatchTopK, Matryoshka) chooses among all F features
 * at once, so k is shared across the heads rather than per head.
 *
 * Resampling (where the inner architecture resamples) runs on the dense layout and keeps each
 * rebuilt feature's head block, its decoder row renormalised to its head.
 *
 * Logs add `l0_head_h` (mean active features of head h per row) and `dead_head_h` (fraction of
 * head h's features not fired for `deadSteps` steps) for every head.
 */
export function blockDiagonal(
  inner: ArchitecturePlugin<object>,
  options: { heads: number; deadSteps?: number },
): ArchitecturePlugin<BlockDiagConfig> {
  const opts = validateConfig<{ heads: number; deadSteps: number }>(WHERE, options, {
    heads: {
      kind: 'number',
      check: (v: number) => (Number.isInteger(v) && v >= 1 ? null : 'must be a positive integer'),
    },
    deadSteps: {
      kind: 'number',
      default: 1000,
      check: (v: number) => (Number.isInteger(v) && v >= 1 ? null : 'must be a positive integer'),
    },
  });
  if (!inner || typeof inner.loss !== 'function' || typeof inner.name !== 'string') {
    throw new DictlearnError(WHERE, 'the inner architecture must be an architecture plugin');
  }
  if (inner.name === 'blockdiag') {
    throw new DictlearnError(
      WHERE,
      'the inner architecture is itself block-diagonal; use one blockdiag with the product of the head counts',
    );
  }
  const H = opts.heads;
  const cfg: BlockDiagConfig = {
    heads: H,
    inner: inner.name,
    innerConfig: { ...(inner.config as Record<string, unknown>) },
    deadSteps: opts.deadSteps,
  };
  const layouts = new Map<string, Record<string, Layout>>();
  const layoutFor = (sizes: DictionarySizes): Record<string, Layout> => {
    const { activationDim: d, dictSize: F } = sizes;
    if (d % H !== 0 || F % H !== 0) {
      throw new DictlearnError(
        WHERE,
        `${H} heads need a width and a dictionary size divisible by ${H}, got d = ${d} and F = ${F}`,
      );
    }
    const key = `${d}x${F}`;
    let l = layouts.get(key);
    if (!l) {
      l = classify(inner, H, sizes);
      layouts.set(key, l);
    }
    return l;
  };
  // Axis kinds do not depend on the sizes (classify checks every d/F axis is proportional), so
  // the sizes of any parameter set can be read back from its shapes: that keeps one plugin
  // usable for dictionaries of several sizes.
  let kinds: Record<string, Layout> | undefined;
  const sizesOf = (p: Params): DictionarySizes => {
    // Before any paramShapes()/init() (parameters made elsewhere): classify at probe sizes.
    kinds ??= layoutFor({ activationDim: 64 * H, dictSize: 256 * H });
    let d = 0;
    let F = 0;
    for (const [name, l] of Object.entries(kinds)) {
      const t = p[name];
      if (!t) continue;
      l.kinds.forEach((k, i) => {
        if (k === '-') return;
        // Stored sizes: the full d or F, except a block parameter's non-stacking axes (per head).
        const full = !l.block || i === l.stack ? t.shape[i] : t.shape[i] * H;
        if (k === 'd') d ||= full;
        else F ||= full;
      });
      if (d && F) return { activationDim: d, dictSize: F };
    }
    throw new DictlearnError(WHERE, 'cannot read d and F from the parameters');
  };
  const layoutOf = (p: Params) => layoutFor(sizesOf(p));
  /** The inner architecture's dense parameters from the stored ones. */
  const dense = (p: Params): Params => {
    const l = layoutOf(p);
    const out: Params = {};
    for (const [name, t] of Object.entries(p)) {
      const layout = l[name];
      out[name] = layout?.block ? expand(t, layout, H) : t;
    }
    return out;
  };
  /** Stored parameters from dense replacements (only those given), for the sizes of `like`. */
  const stored = (like: Params, p: Params): Params => {
    const l = layoutOf(like);
    const out: Params = {};
    for (const [name, t] of Object.entries(p)) {
      const layout = l[name];
      out[name] = layout?.block ? compact(t, layout, H) : t;
    }
    return out;
  };
  const remember = (sizes: DictionarySizes) => {
    const l = layoutFor(sizes);
    kinds ??= l;
    return l;
  };

  const perHeadLogs = (
    out: LossOutput,
    ctxSince: Readonly<Int32Array> | undefined,
  ): Record<string, Tensor> => {
    const logs: Record<string, Tensor> = {};
    const f = out.features;
    if (f) {
      const B = f.shape[0];
      const F = f.shape[1];
      const perHead = mean(sum(notEqual(reshape(f, [B, H, F / H]), 0), 2), 0); // [H]
      for (let h = 0; h < H; h++) logs[`l0_head_${h}`] = reshape(slice(perHead, [h], [1]), []);
    }
    if (ctxSince) {
      const fh = ctxSince.length / H;
      for (let h = 0; h < H; h++) {
        let dead = 0;
        for (let j = h * fh; j < (h + 1) * fh; j++) if (ctxSince[j] >= cfg.deadSteps) dead++;
        logs[`dead_head_${h}`] = scalar(dead / fh, { backend: out.loss.backend });
      }
    }
    return logs;
  };

  return {
    name: 'blockdiag',
    packageName: PACKAGE,
    config: cfg,
    training: inner.training,
    nonNegativeFeatures: inner.nonNegativeFeatures,
    paramShapes(sizes) {
      const l = remember(sizes);
      return Object.fromEntries(Object.entries(l).map(([k, v]) => [k, [...v.stored]]));
    },
    featureAxes: () => inner.featureAxes(),
    init(sizes, { seed, backend }) {
      const l = remember(sizes);
      const dh = sizes.activationDim / H;
      const fh = sizes.dictSize / H;
      // Each head is initialised as its own dictionary, from its own seed (seed·1024 + h: no two
      // (seed, head) pairs share one for H ≤ 1024), all in the init Philox domain.
      if (H > 1024) throw new DictlearnError(WHERE, `at most 1024 heads, got ${H}`);
      const heads = Array.from({ length: H }, (_, h) =>
        inner.init({ activationDim: dh, dictSize: fh }, { seed: seed * 1024 + h, backend }),
      );
      const out: Params = {};
      for (const [name, layout] of Object.entries(l)) {
        const parts = heads.map((p) => p[name]);
        out[name] = stackHeads(parts, layout);
      }
      return out;
    },
    initFromData: inner.initFromData
      ? (p, x, o) => stored(p, inner.initFromData!(dense(p), x, o))
      : undefined,
    encode: (p, x) => inner.encode(dense(p), x),
    decode: (p, f) => inner.decode(dense(p), f),
    loss(p, x, ctx) {
      const out = inner.loss(dense(p), x, ctx);
      if (!ctx.withLogs) return out;
      return { ...out, logs: { ...out.logs, ...perHeadLogs(out, ctx.stepsSinceFired) } };
    },
    decoderRows: (p) => inner.decoderRows(dense(p)),
    foldScale: (p, s) => stored(p, inner.foldScale(dense(p), s)),
    unfoldScale: (p, s) => stored(p, inner.unfoldScale(dense(p), s)),
    resample: inner.resample
      ? (p, features, inputs) => {
          const out = stored(p, inner.resample!(dense(p), features, inputs));
          // A rebuilt decoder row keeps only its head's block of the input: renormalise the
          // unit-norm rows (the others are unit already), as the head alone would have them.
          for (const name of inner.training.unitNormRows) {
            const t = out[name];
            if (t) out[name] = div(t, maximum(l2Norm(t, -1, true), 1e-12));
          }
          return out;
        }
      : undefined,
  };
}

/** The heads' own parameters (each [head shape]) → the stored form: stacked, side by side, or shared. */
function stackHeads(parts: Tensor[], layout: Layout): Tensor {
  if (layout.block) return concat(parts, layout.stack);
  const axis = layout.kinds.findIndex((k) => k !== '-');
  // No d/F axis: shared by every head; each head's init is the same function of the sizes.
  return axis < 0 ? parts[0] : concat(parts, axis);
}

/** Registry factory of `blockdiag`: builds the inner architecture from the registry by name. */
export const factories: readonly ArchitectureFactory[] = [
  {
    name: 'blockdiag',
    packageName: PACKAGE,
    create(config) {
      if (config === null || typeof config !== 'object' || Array.isArray(config)) {
        throw new DictlearnError(WHERE, 'config must be an object { heads, inner, innerConfig }');
      }
      const { inner, innerConfig, heads, deadSteps, ...others } = config as Partial<BlockDiagConfig> &
        Record<string, unknown>;
      if (typeof inner !== 'string' || inner === '') {
        throw new DictlearnError(
          WHERE,
          `field 'inner' is required: the registry name of the heads' architecture (e.g. 'standard'), got ${JSON.stringify(inner)}`,
        );
      }
      if (
        innerConfig !== undefined &&
        (innerConfig === null || typeof innerConfig !== 'object' || Array.isArray(innerConfig))
      ) {
        throw new DictlearnError(
          WHERE,
          `field 'innerConfig' must be an object, got ${JSON.stringify(innerConfig)}`,
        );
      }
      // Any other key belongs to the inner architecture (so `--set heads=4 --set inner=standard
      // --l1 0.1` works); its own validation names a key it does not know.
      const plugin = createArchitecture(
        inner,
        { ...innerConfig, ...others },
        undefined,
        `${WHERE} inner '${inner}'`,
      );
      return blockDiagonal(plugin, {
        heads: heads as number,
        ...(deadSteps === undefined ? {} : { deadSteps }),
      });
    },
  },
];
