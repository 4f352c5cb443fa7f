import {
  type ArchitectureFactory,
  type ArchitecturePlugin,
  add,
  concat,
  customGrad,
  DictlearnError,
  div,
  greater,
  keep,
  type LossContext,
  mean,
  mul,
  noGrad,
  type Params,
  type PluginTrainingState,
  pow,
  reshape,
  type StateTensor,
  slice,
  sum,
  type Tensor,
  tensor,
  validateConfig,
  where,
} from '@dictlearn/core';
import {
  checkEncoderBiasInit,
  decodeLinear,
  type EncoderBiasInit,
  encodeRelu,
  meanL2,
  meanSquaredError,
} from './linear.js';
import { standard } from './standard.js';

/**
 * The L_p sparsity measure of p-annealing (dictionary_learning's `lp_norm`): `'Lp'` is
 * mean_b (Σ_i f_i^p)^(1/p), `'Lp^p'` is mean_b Σ_i f_i^p.
 */
export type SparsityFunction = 'Lp' | 'Lp^p';

/**
 * The p-annealing schedule and adaptive coefficient of dictionary_learning's `PAnnealTrainer`
 * and `GatedAnnealTrainer` (config keys of `pAnneal` and of `@dictlearn/arch-gated`'s
 * `gatedAnneal`).
 */
export interface PAnnealSchedule {
  /** L_p or L_p^p (see {@link SparsityFunction}). */
  sparsityFunction: SparsityFunction;
  /** α at the start, DL's `initial_sparsity_penalty` (the L1 λ while p = 1). */
  sparsityPenalty: number;
  /** Step of the first p update (DL `anneal_start`, default 15000). */
  annealStart: number;
  /**
   * Step of the last p update (DL `anneal_end`); −1 (the default) means the run's step count,
   * so the last value, `pEnd` itself, is never reached (DL: "exact endpoint excluded").
   */
  annealEnd: number;
  /** p until the first update (default 1). */
  pStart: number;
  /** The value p is annealed toward (default 0). */
  pEnd: number;
  /**
   * How many times p is updated (DL `n_sparsity_updates`, default 10): at the steps
   * linspace(annealStart, annealEnd, n) (integers, as torch's integer linspace), p takes the
   * values linspace(pStart, pEnd, n) in turn. DL's `'continuous'` is annealEnd − annealStart + 1.
   */
  sparsityUpdates: number;
  /**
   * How many recent steps the coefficient adaptation averages (DL `sparsity_queue_length`,
   * default 10): at each update after the first, α ← α · mean(L_p(f)) / mean(L_p'(f)) over the
   * queue, p' the next p, so α·L_p keeps its size when p changes.
   */
  sparsityQueueLength: number;
}

/** Hyper-parameters of the p-annealing standard SAE. */
export interface PAnnealConfig extends PAnnealSchedule {
  /** How b_enc starts (default `'zero'`; `'torch'`: uniform in ±1/√d, as dictionary_learning). */
  encoderBiasInit: EncoderBiasInit;
}

const isInt = (v: number) => Number.isInteger(v);

/**
 * `validateConfig` rules of the {@link PAnnealSchedule} fields, with dictionary_learning's
 * defaults (`sparsityFunction` differs per trainer: `'Lp'` for PAnneal, `'Lp^p'` for GatedAnneal).
 */
export function pAnnealSpec(
  sparsityFunction: SparsityFunction,
): Parameters<typeof validateConfig<PAnnealSchedule>>[2] {
  return {
    sparsityFunction: {
      kind: 'string' as const,
      default: sparsityFunction,
      check: (v: string) => (v === 'Lp' || v === 'Lp^p' ? null : "must be 'Lp' or 'Lp^p'"),
    },
    sparsityPenalty: {
      kind: 'number' as const,
      default: 0.1,
      check: (v: number) => (v >= 0 ? null : 'must be ≥ 0'),
    },
    annealStart: {
      kind: 'number' as const,
      default: 15000,
      check: (v: number) => (isInt(v) && v >= 0 ? null : 'must be an integer ≥ 0'),
    },
    annealEnd: {
      kind: 'number' as const,
      default: -1,
      check: (v: number) =>
        isInt(v) && v >= -1 ? null : "must be an integer ≥ 0, or −1 for the run's steps",
    },
    pStart: { kind: 'number' as const, default: 1, check: (v: number) => (v > 0 ? null : 'must be > 0') },
    pEnd: { kind: 'number' as const, default: 0, check: (v: number) => (v >= 0 ? null : 'must be ≥ 0') },
    sparsityUpdates: {
      kind: 'number' as const,
      default: 10,
      check: (v: number) => (isInt(v) && v >= 1 ? null : 'must be an integer ≥ 1'),
    },
    sparsityQueueLength: {
      kind: 'number' as const,
      default: 10,
      check: (v: number) => (isInt(v) && v >= 1 ? null : 'must be an integer ≥ 1'),
    },
  };
}

/**
 * The L_p penalty of features f ≥ 0 [B, F] (see {@link SparsityFunction}), differentiable and
 * finite at f = 0 for p < 1, where f^p has an infinite slope: there the gradient is 0, as the
 * ReLU in front of f gives (torch reaches the same through the ReLU's backward). p = 0 gives
 * what torch gives (0⁰ = 1: Σ f⁰ = F, and ∞ for `'Lp'`).
 */
export function lpPenalty(f: Tensor, p: number, fn: SparsityFunction): Tensor {
  const B = f.shape[0];
  return customGrad((f: Tensor) => {
    const rowSums = sum(pow(f, p), -1, true); // [B, 1]
    return {
      value: div(sum(fn === 'Lp' ? pow(rowSums, 1 / p) : rowSums), B),
      grad: (dy) => {
        // d/df of f^p: p·f^(p−1) where f > 0, else 0.
        const s = sum(pow(f, p), -1, true);
        const dfp = where(greater(f, 0), mul(pow(f, p - 1), p / B), 0);
        // 'Lp': d/dS of S^(1/p) is (1/p)·S^(1/p − 1), taken as 0 on all-zero rows.
        const outer = fn === 'Lp' ? mul(where(greater(s, 0), pow(s, 1 / p - 1), 0), 1 / p) : null;
        return [mul(outer ? mul(dfp, outer) : dfp, reshape(dy, []))];
      },
    };
  })(f);
}

/** One state of the p-annealing (what dictionary_learning's trainer holds between steps). */
export interface AnnealState {
  /** The p of the loss. */
  p: number;
  /** The p of the next update (null before the first update). */
  nextP: number | null;
  /** Updates done. */
  count: number;
  /** α: a host number until the first adaptation, then a kept scalar tensor. */
  coeff: number | Tensor;
  /** Rows (L_p(f), L_next(f)) of the last steps, kept [n, 2]; null when empty. */
  queue: Tensor | null;
}

/** The annealing around one step: see {@link PAnnealer.step}. */
export interface AnnealStep {
  /** The state the step's loss uses. */
  before: AnnealState;
  /** The state after the step's bookkeeping (what dictionary_learning logs). */
  after: AnnealState;
}

/** What {@link annealedPenalty} returns. */
export interface AnnealedPenalty {
  /** α·L_p(f), differentiable (the loss adds s(t) times it). */
  scaled: Tensor;
  /** L_p(f) (logged as `sparsity_loss`). */
  lp: Tensor;
  /** `p` and `sparsity_coeff` after the step's update, when the step logs. */
  logs: Record<string, Tensor>;
}

/** torch.linspace(a, b, n) as torch computes it (from both ends; integer results truncated). */
function linspace(a: number, b: number, n: number, integer: boolean): number[] {
  if (n === 1) return [a];
  const step = (b - a) / (n - 1);
  return Array.from({ length: n }, (_, k) => {
    const v = k < Math.floor(n / 2) ? a + step * k : b - step * (n - 1 - k);
    return integer ? Math.trunc(v) : Math.fround(v);
  });
}

function tensorsOf(s: AnnealState): Tensor[] {
  return [s.coeff, s.queue].filter((t): t is Tensor => t !== null && typeof t !== 'number');
}

/** α and the queue as a checkpoint holds them (absent: α not adapted yet, queue empty). */
interface SavedAnneal {
  coeff?: StateTensor;
  queue?: StateTensor;
}

/**
 * The p-annealing of dictionary_learning's `PAnnealTrainer` / `GatedAnnealTrainer`, as a state
 * machine an architecture's loss drives: {@link PAnnealer.step} gives the p and α the loss of a
 * step uses, then records the step (queue, p update, α adaptation) as DL does after its loss.
 * Calling it again for the same step reuses that step's state (so a test may evaluate a loss
 * before the trainer does). As the plugin's `trainingState`, it hands α and the queue to trainer
 * checkpoints and takes them back on resume, so a resumed run trains as the uninterrupted one;
 * p and the update count follow from the step. Any other jump to a step that is not the next one
 * (a reused plugin, a checkpoint of an older version without this state) restarts the state from
 * the schedule: p and the update count are exact, α restarts from `sparsityPenalty` and the queue
 * empty.
 */
export class PAnnealer implements PluginTrainingState {
  readonly #cfg: PAnnealSchedule;
  #cur: (AnnealStep & { step: number }) | null = null;
  /** State loaded from a checkpoint for the resumed run's first step, until that step runs. */
  #restored: { step: number; state: SavedAnneal } | null = null;

  /** An annealer following `schedule`. */
  constructor(schedule: PAnnealSchedule) {
    this.#cfg = schedule;
  }

  #updateSteps(step: number, totalSteps: number | undefined): number[] {
    const c = this.#cfg;
    if (step < c.annealStart) return [c.annealStart];
    let end = c.annealEnd;
    if (end === -1) {
      if (totalSteps === undefined) {
        throw new DictlearnError(
          'p-anneal',
          "annealEnd is −1 (the run's step count) but the trainer did not pass the step count; set annealEnd",
        );
      }
      end = totalSteps;
    }
    if (end < c.annealStart) {
      throw new DictlearnError('p-anneal', `annealEnd ${end} is before annealStart ${c.annealStart}`);
    }
    return linspace(c.annealStart, end, c.sparsityUpdates, true);
  }

  #initial(step: number, totalSteps: number | undefined): AnnealState {
    const c = this.#cfg;
    const s: AnnealState = { p: c.pStart, nextP: null, count: 0, coeff: c.sparsityPenalty, queue: null };
    if (step <= c.annealStart) return s;
    const at = this.#updateSteps(step, totalSteps);
    const ps = linspace(c.pStart, c.pEnd, c.sparsityUpdates, false);
    // Replay DL's per-step rule over the update steps before this one: at an update step, one
    // update if the step is ≥ the next scheduled one (duplicate steps update once).
    for (const u of new Set(at)) {
      if (u >= step) break;
      if (s.count < at.length && u >= at[s.count]) {
        s.p = ps[s.count];
        s.nextP = s.count < c.sparsityUpdates - 1 ? ps[s.count + 1] : c.pEnd;
        s.count++;
      }
    }
    return s;
  }

  #transition(s: AnnealState, step: number, f: Tensor, totalSteps: number | undefined): AnnealState {
    const c = this.#cfg;
    const next = { ...s };
    noGrad(() => {
      if (s.nextP !== null) {
        const row = reshape(
          concat(
            [lpPenalty(f, s.p, c.sparsityFunction), lpPenalty(f, s.nextP, c.sparsityFunction)].map((t) =>
              reshape(t, [1]),
            ),
          ),
          [1, 2],
        );
        const all = s.queue ? concat([s.queue, row], 0) : row;
        const n = all.shape[0];
        next.queue = keep(
          n > c.sparsityQueueLength ? slice(all, [n - c.sparsityQueueLength, 0]) : add(all, 0),
        );
      }
      const at = this.#updateSteps(step, totalSteps);
      if (next.count < at.length && at.includes(step) && step >= at[next.count]) {
        if (s.nextP !== null && next.queue) {
          const m = mean(next.queue, 0); // [2]: mean L_p, mean L_next
          next.coeff = keep(reshape(mul(div(slice(m, [0], [1]), slice(m, [1], [1])), next.coeff), []));
        }
        const ps = linspace(c.pStart, c.pEnd, c.sparsityUpdates, false);
        next.p = ps[next.count];
        next.nextP = next.count < c.sparsityUpdates - 1 ? ps[next.count + 1] : c.pEnd;
        next.count++;
      }
    });
    return next;
  }

  #drop(s: AnnealState, except: AnnealState): void {
    const held = new Set(tensorsOf(except));
    for (const t of tensorsOf(s)) if (!held.has(t)) t.dispose();
  }

  /** α and the queue the loss of step `step` starts from (what core's `PluginTrainingState.save` gives). */
  async save(step: number): Promise<Record<string, StateTensor>> {
    if (this.#restored?.step === step) return { ...this.#restored.state };
    const cur = this.#cur;
    const s = cur?.step === step - 1 ? cur.after : cur?.step === step ? cur.before : null;
    const out: Record<string, StateTensor> = {};
    // A host-number α is still `sparsityPenalty`: left out, so the resumed loss multiplies by
    // the same number rather than by its float32 rounding.
    if (s && typeof s.coeff !== 'number')
      out.coeff = { shape: [], data: (await s.coeff.data()) as Float32Array };
    if (s?.queue) out.queue = { shape: [...s.queue.shape], data: (await s.queue.data()) as Float32Array };
    return out;
  }

  /** Takes back what {@link PAnnealer.save} gave; step `step` then starts from it. */
  load(state: Record<string, StateTensor>, step: number): void {
    const bad = (what: string) => new DictlearnError('p-anneal', `training state of step ${step}: ${what}`);
    const L = this.#cfg.sparsityQueueLength;
    for (const [name, t] of Object.entries(state)) {
      if (name !== 'coeff' && name !== 'queue') throw bad(`unknown entry '${name}'`);
      // α is a scalar; the queue holds 1 to L rows (L_p(f), L_next(f)).
      const fits =
        name === 'coeff'
          ? t.shape.length === 0 && t.data.length === 1
          : t.shape.length === 2 &&
            t.shape[1] === 2 &&
            t.shape[0] >= 1 &&
            t.shape[0] <= L &&
            t.data.length === 2 * t.shape[0];
      if (!fits) {
        throw bad(
          `'${name}' is [${t.shape}], expected ${name === 'coeff' ? '[]' : `[n, 2] with 1 ≤ n ≤ ${L}`}`,
        );
      }
      if (t.data.some((v) => !Number.isFinite(v))) throw bad(`'${name}' holds a non-finite value`);
    }
    if (this.#cur) this.#dropAll(this.#cur);
    this.#cur = null;
    this.#restored = {
      step,
      state: Object.fromEntries(
        Object.entries(state).map(([k, t]) => [k, { shape: [...t.shape], data: Float32Array.from(t.data) }]),
      ),
    };
  }

  #dropAll(cur: AnnealStep): void {
    this.#drop(cur.after, cur.before);
    this.#drop(cur.before, { p: 0, nextP: null, count: 0, coeff: 0, queue: null });
  }

  /**
   * For step `ctx.step` with features f [B, F]: the p and α its loss uses (`before`) and those
   * after DL's end-of-step bookkeeping (`after`, what DL logs). `ctx.totalSteps`, where the
   * trainer passes it, resolves `annealEnd = −1`.
   */
  step(f: Tensor, ctx: LossContext): AnnealStep {
    const t = ctx.step;
    const total = ctx.totalSteps;
    const cur = this.#cur;
    let before: AnnealState;
    if (cur && t === cur.step) {
      before = cur.before;
      this.#drop(cur.after, before);
    } else if (cur && t === cur.step + 1) {
      before = cur.after;
      this.#drop(cur.before, before);
    } else {
      if (cur) this.#dropAll(cur);
      before = this.#initial(t, total);
      const saved = this.#restored?.step === t ? this.#restored.state : null;
      if (saved?.coeff) before.coeff = keep(tensor(saved.coeff.data, [], { backend: f.backend }));
      if (saved?.queue)
        before.queue = keep(tensor(saved.queue.data, saved.queue.shape, { backend: f.backend }));
    }
    this.#restored = null;
    const after = this.#transition(before, t, f, total);
    this.#cur = { step: t, before, after };
    return this.#cur;
  }
}

/** A log value: a fresh 0-d tensor (the trainer disposes logs after reading them). */
function logValue(v: number | Tensor, like: Tensor): Tensor {
  return typeof v === 'number' ? tensor([v], [], { backend: like.backend }) : add(v, 0);
}

/**
 * The L_p penalty term of a p-annealing loss for features f: α·L_p(f) with this step's p and α,
 * and the logs DL reports (`sparsity_loss` = L_p(f), then `p` and `sparsity_coeff` after this
 * step's update).
 */
export function annealedPenalty(
  annealer: PAnnealer,
  f: Tensor,
  fn: SparsityFunction,
  ctx: LossContext,
): AnnealedPenalty {
  const { before, after } = annealer.step(f, ctx);
  if (!(before.p > 0)) {
    // dictionary_learning reaches p = pEnd = 0 only when annealEnd is before the run's end, and
    // then computes f⁰ = 1 everywhere (for 'Lp' an infinite loss).
    throw new DictlearnError(
      'p-anneal',
      `step ${ctx.step}: p reached ${before.p}; L_p needs p > 0 (set pEnd > 0, or annealEnd at or after the run's last step)`,
    );
  }
  const lp = lpPenalty(f, before.p, fn);
  return {
    scaled: mul(lp, before.coeff),
    lp,
    logs: ctx.withLogs ? { p: logValue(after.p, f), sparsity_coeff: logValue(after.coeff, f) } : {},
  };
}

/**
 * The standard SAE with a p-annealed L_p penalty (dictionary_learning's `PAnnealTrainer`):
 * encoder, decoder, init, unit-norm decoder rows (ConstrainedAdam), lr 1e-3 and warm-ups as
 * `standard`; loss = mean_b ‖x − x̂‖² + s(t)·α·L_p(f), p annealed from `pStart` toward `pEnd`
 * and α adapted at each p update (see {@link PAnnealSchedule}). Resampling is opt-in
 * (`resampleSteps` on the trainer). The plugin value holds the annealing state (which trainer
 * checkpoints save, see {@link PAnnealer}): give each trainer its own.
 */
export function pAnneal(config: Partial<PAnnealConfig> = {}): ArchitecturePlugin<PAnnealConfig> {
  const cfg = validateAnneal(config);
  const base = standard({ l1Penalty: cfg.sparsityPenalty, encoderBiasInit: cfg.encoderBiasInit });
  const annealer = new PAnnealer(cfg);
  return {
    ...base,
    name: 'p-anneal',
    config: cfg,
    trainingState: annealer,
    loss(p: Params, x, ctx) {
      const f = encodeRelu(x, p.b_dec, p.b_enc, { W_enc: p.W_enc });
      const xhat = decodeLinear(f, p.W_dec, p.b_dec);
      const mse = meanSquaredError(x, xhat);
      const { scaled, lp, logs } = annealedPenalty(annealer, f, cfg.sparsityFunction, ctx);
      return {
        loss: add(mse, mul(scaled, ctx.sparsityScale)),
        logs: {
          mse_loss: mse,
          sparsity_loss: lp,
          ...logs,
          ...(ctx.withLogs ? { l2_loss: meanL2(x, xhat) } : {}),
        },
        features: f,
        reconstruction: xhat,
      };
    },
  };
}

function validateAnneal(config: Partial<PAnnealConfig>): PAnnealConfig {
  return validateConfig<PAnnealConfig>('p-anneal', config, {
    ...pAnnealSpec('Lp'),
    encoderBiasInit: { kind: 'string', default: 'zero', check: checkEncoderBiasInit },
  });
}

/** Registry factory of `p-anneal` (registered by `@dictlearn/arch-standard/register`). */
export const pAnnealFactory: ArchitectureFactory = {
  name: 'p-anneal',
  packageName: '@dictlearn/arch-standard',
  create: (config) => pAnneal(config as Partial<PAnnealConfig>),
};
