import type { ArchitecturePlugin, DictionarySizes, Params } from '../arch.js';
import { Dictionary } from '../dictionary.js';
import { noGrad, scope, Variable, valueAndGrad } from '../engine.js';
import { DictlearnError } from '../errors.js';
import { clipByGlobalNorm } from '../ops/clip.js';
import { tensor } from '../ops/create.js';
import { abs, sub } from '../ops/elementwise.js';
import { gatherRows } from '../ops/indexing.js';
import { l2Norm, max } from '../ops/reduce.js';
import { Adam, removeParallelComponent } from '../optim.js';
import { philoxUniform, seedFor } from '../random.js';
import { lrMultiplier, type ScheduleOptions, sparsityScale } from '../schedule.js';
import type { Tensor } from '../tensor.js';
import { fractionVarianceExplained, meanL0 } from './metrics.js';

/** One trainer of a `trainSAE` run: an architecture and its optimisation settings. */
export interface TrainerSpec {
  /** The architecture plugin (e.g. `standard({ l1Penalty: 0.1 })`). */
  architecture: ArchitecturePlugin<object>;
  /** Number of features F. */
  dictSize: number;
  /** Name in logs and the output directory (default `trainer_<i>`). */
  name?: string;
  /** Seed of the initial parameters and of resampling (default 0). */
  seed?: number;
  /** Learning rate (default: the architecture's). */
  lr?: number;
  /** Adam β₁, β₂ (default: the architecture's). */
  betas?: [number, number];
  /** lr warm-up steps (default: the architecture's). */
  warmupSteps?: number;
  /** Sparsity warm-up steps (default: the architecture's). */
  sparsityWarmupSteps?: number;
  /** Step from which the lr decays linearly to 0 (default none). */
  decayStart?: number;
  /** Resample dead features every this many steps (default: the architecture's; `null` = never). */
  resampleSteps?: number | null;
  /** Clip the global gradient norm (default: the architecture's; `null` = never). */
  clipGradNorm?: number | null;
}

/** Settings of a trainer after defaults are applied. */
export interface ResolvedTrainerSettings {
  /** Learning rate. */
  lr: number;
  /** Adam β₁, β₂. */
  betas: [number, number];
  /** lr warm-up steps. */
  warmupSteps: number;
  /** Sparsity warm-up steps. */
  sparsityWarmupSteps: number;
  /** Linear decay start (or undefined). */
  decayStart?: number;
  /** Resampling period (or undefined). */
  resampleSteps?: number;
  /** Gradient clip (or undefined). */
  clipGradNorm?: number;
  /** Parameters kept unit-norm by ConstrainedAdam. */
  unitNormRows: string[];
  /** Seed. */
  seed: number;
}

/** Resampling counters of a trainer. */
export interface ResampleCounts {
  /** Resamples that replaced at least one feature. */
  times: number;
  /** Features replaced in total. */
  features: number;
}

/**
 * Steps a feature must stay silent to count in the logged `dead_fraction` (a window of steps,
 * independent of the resampling period, so runs with and without resampling compare).
 */
export const DEAD_LOG_STEPS = 100;

/** Numbers a trainer reports for one step. */
export type StepLogs = Record<string, number>;

/**
 * Trains one dictionary: parameters, optimizer (Adam or ConstrainedAdam), schedules,
 * dead-feature tracking and resampling. `trainSAE` drives several on the same batches.
 */
export class Trainer {
  /** Name in logs and output paths. */
  readonly name: string;
  /** The architecture. */
  readonly arch: ArchitecturePlugin<object>;
  /** Sizes. */
  readonly sizes: DictionarySizes;
  /** Settings with defaults applied. */
  readonly settings: ResolvedTrainerSettings;
  /** Parameters (training space: activations divided by the normalisation scale). */
  readonly vars: Record<string, Variable>;
  /** The optimizer. */
  readonly optimizer: Adam;
  /** Per feature: consecutive steps without firing on any row of the batch. */
  readonly stepsSinceFired: Int32Array;
  /** Total steps of the run (for lr decay). */
  readonly totalSteps: number;
  /** Steps taken (the next step's index). */
  step = 0;
  /** How many resamples ran and features they replaced. */
  resampled: ResampleCounts = { times: 0, features: 0 };

  constructor(spec: TrainerSpec, activationDim: number, totalSteps: number, index = 0, backend?: string) {
    const arch = spec.architecture;
    if (!arch || typeof arch.loss !== 'function') {
      throw new DictlearnError(
        'Trainer',
        `trainer ${index}: 'architecture' must be an architecture plugin, got ${typeof arch}`,
      );
    }
    if (!Number.isInteger(spec.dictSize) || spec.dictSize <= 0) {
      throw new DictlearnError(
        'Trainer',
        `trainer ${index}: 'dictSize' must be a positive integer, got ${spec.dictSize}`,
      );
    }
    const t = arch.training;
    const sizes: DictionarySizes = { activationDim, dictSize: spec.dictSize };
    const resampleSteps = spec.resampleSteps === null ? undefined : (spec.resampleSteps ?? t.resampleSteps);
    const clip = spec.clipGradNorm === null ? undefined : (spec.clipGradNorm ?? t.clipGradNorm);
    this.settings = {
      lr: spec.lr ?? t.lrFor?.(sizes) ?? t.lr,
      betas: spec.betas ?? t.betas,
      warmupSteps: spec.warmupSteps ?? t.warmupSteps,
      sparsityWarmupSteps: spec.sparsityWarmupSteps ?? t.sparsityWarmupSteps,
      decayStart: spec.decayStart,
      resampleSteps,
      clipGradNorm: clip,
      unitNormRows: t.unitNormRows,
      seed: spec.seed ?? 0,
    };
    for (const [k, v] of Object.entries({ lr: this.settings.lr, warmupSteps: this.settings.warmupSteps })) {
      if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v))) {
        throw new DictlearnError(
          'Trainer',
          `trainer ${index}: '${k}' must be a non-negative number, got ${v}`,
        );
      }
    }
    if (resampleSteps !== undefined && !(Number.isInteger(resampleSteps) && resampleSteps > 0)) {
      throw new DictlearnError(
        'Trainer',
        `trainer ${index}: 'resampleSteps' must be a positive integer, got ${resampleSteps}`,
      );
    }
    this.name = spec.name ?? `trainer_${index}`;
    this.arch = arch;
    this.sizes = sizes;
    this.totalSteps = totalSteps;
    const init = arch.init(this.sizes, { seed: this.settings.seed, backend });
    this.vars = Object.fromEntries(Object.entries(init).map(([k, v]) => [k, new Variable(v, k)]));
    const unit = this.settings.unitNormRows.map((n) => {
      const v = this.vars[n];
      if (!v)
        throw new DictlearnError(
          'Trainer',
          `architecture '${arch.name}' asks for unit-norm rows of unknown parameter '${n}'`,
        );
      return v;
    });
    this.optimizer = new Adam(Object.values(this.vars), { betas: this.settings.betas, unitNormRows: unit });
    this.stepsSinceFired = new Int32Array(spec.dictSize);
  }

  /** The current parameters by name. */
  params(): Params {
    return Object.fromEntries(Object.entries(this.vars).map(([k, v]) => [k, v.value]));
  }

  /** The schedule settings. */
  schedule(): ScheduleOptions {
    return {
      steps: this.totalSteps,
      warmupSteps: this.settings.warmupSteps,
      decayStart: this.settings.decayStart,
      resampleSteps: this.settings.resampleSteps,
      sparsityWarmupSteps: this.settings.sparsityWarmupSteps,
    };
  }

  /**
   * One optimisation step on a (normalised) batch. Returns the step's numbers when `withLogs`
   * (loss, the architecture's logs, l0, frac_variance_explained, lr), else just the loss.
   * Throws, naming the step and trainer, when the loss is not finite; nothing is updated then.
   */
  async update(x: Tensor, withLogs: boolean): Promise<StepLogs> {
    const t = this.step;
    const sched = this.schedule();
    const lr = this.settings.lr * lrMultiplier(t, sched);
    const s = sparsityScale(t, sched);
    const vars = Object.values(this.vars);
    if (t === 0 && this.arch.initFromData) {
      // Data-dependent init (e.g. TopK's b_dec = geometric median of the first batch).
      const init = scope(() => this.arch.initFromData!(this.params(), x, { seed: this.settings.seed }));
      for (const [k, v] of Object.entries(init)) this.vars[k].assign(v);
    }
    const { value, grads, aux } = valueAndGrad(() => {
      const out = this.arch.loss(this.params(), x, {
        step: t,
        sparsityScale: s,
        withLogs,
        stepsSinceFired: this.stepsSinceFired,
        totalSteps: this.totalSteps,
      });
      const features = () => {
        if (out.features) return out.features;
        throw new DictlearnError(
          'train',
          `architecture '${this.arch.name}': its loss gave neither features [B, F] nor ${out.activity ? 'l0' : 'activity'}; give features, or both activity and l0`,
        );
      };
      return {
        value: out.loss,
        aux: {
          buffers: out.buffers ?? {},
          logs: out.logs,
          fired: out.activity ?? max(this.arch.nonNegativeFeatures ? features() : abs(features()), 0),
          l0: withLogs ? (out.l0 ?? meanL0(features())) : undefined,
          fve: withLogs ? fractionVarianceExplained(x, out.reconstruction) : undefined,
        },
      };
    }, vars);
    const loss = (await value.data())[0];
    const logs: StepLogs = { loss };
    try {
      if (!Number.isFinite(loss)) {
        throw new DictlearnError(
          'train',
          `step ${t}, trainer '${this.name}': the loss is ${loss}; stopping before the update`,
        );
      }
      if (withLogs) {
        for (const [k, v] of Object.entries(aux.logs)) logs[k] = (await v.data())[0];
        logs.l0 = (await aux.l0!.data())[0];
        logs.frac_variance_explained = (await aux.fve!.data())[0];
        logs.lr = lr;
        logs.sparsity_scale = s;
      }
      const fired = await aux.fired.data();
      let list = vars.map((v) => grads.get(v)!);
      const rowsProjected = this.settings.clipGradNorm !== undefined && this.settings.unitNormRows.length > 0;
      if (rowsProjected) {
        // DL's TopK trainers remove the parallel component before clipping (a second removal in
        // Adam would change nothing but rounding, so Adam is told to skip it).
        list = list.map((g, i) => {
          if (!this.settings.unitNormRows.includes(vars[i].name)) return g;
          const inPlace = g.storage.refs === 1; // the gradient is ours: project it over itself
          const projected = scope(() => noGrad(() => removeParallelComponent(vars[i].value, g, { inPlace })));
          g.dispose();
          return projected;
        });
      }
      if (this.settings.clipGradNorm !== undefined) {
        // the gradients are ours (unless a view shares one): scale them over themselves
        const inPlace = list.every((g) => g.storage.refs === 1);
        const clipped = clipByGlobalNorm(list, this.settings.clipGradNorm, { inPlace });
        for (const g of list) g.dispose();
        clipped.norm.dispose();
        list = clipped.tensors;
      }
      this.optimizer.step(new Map(vars.map((v, i) => [v, list[i]])), lr, { rowsProjected });
      for (const [k, v] of Object.entries(aux.buffers)) {
        this.vars[k].assign(v);
        delete aux.buffers[k];
      }
      for (let j = 0; j < fired.length; j++)
        this.stepsSinceFired[j] = fired[j] > 0 ? 0 : this.stepsSinceFired[j] + 1;
      if (withLogs) {
        // The log's dead fraction (the report's curve): features silent for the last
        // DEAD_LOG_STEPS steps. Read from the restored counters, so a resumed run logs the same.
        let dead = 0;
        for (const n of this.stepsSinceFired) if (n >= DEAD_LOG_STEPS) dead++;
        logs.dead_fraction = dead / this.stepsSinceFired.length;
      }
      // DL: resample after the update when step % R == 0, with the same batch.
      const R = this.settings.resampleSteps;
      if (R !== undefined && this.arch.resample && t % R === 0) await this.#resample(x, R);
    } catch (e) {
      for (const g of grads.values()) if (!g.isDisposed) g.dispose();
      throw e;
    } finally {
      value.dispose();
      for (const v of [...Object.values(aux.logs), ...Object.values(aux.buffers)]) v.dispose();
      for (const v of [aux.fired, aux.l0, aux.fve]) v?.dispose();
    }
    this.step++;
    // Batching backends (WebGPU) start the update now rather than at the next step's first read.
    x.storage.backend.flush?.();
    return logs;
  }

  /**
   * REFERENCE resampling: features silent for more than R/2 steps are dead; n = min(#dead,
   * batch rows) inputs are drawn without replacement with probability ∝ ‖x − x̂‖; the
   * architecture rebuilds the first n dead features from them (knowing all dead ones), and
   * their Adam moments are zeroed.
   */
  async #resample(x: Tensor, R: number): Promise<void> {
    const dead: number[] = [];
    for (let j = 0; j < this.stepsSinceFired.length; j++) if (this.stepsSinceFired[j] > R / 2) dead.push(j);
    if (dead.length === 0) return;
    const losses = scope(() => {
      const p = this.params();
      const xhat = this.arch.decode(p, this.arch.encode(p, x));
      return noGrad(() => l2Norm(sub(x, xhat), -1));
    });
    const w = await losses.data();
    losses.dispose();
    const n = Math.min(dead.length, w.length);
    const chosen = weightedSampleWithoutReplacement(w, n, this.settings.seed, this.step);
    // DL: the first n dead are rebuilt, but every dead feature is left out of the alive norm.
    const replace = Int32Array.from(dead.slice(0, n));
    const replacement = scope(() =>
      this.arch.resample!(
        this.params(),
        { dead: Int32Array.from(dead), replace },
        gatherRows(x, tensor(chosen, [n], { dtype: 'int32', backend: x.backend })),
      ),
    );
    for (const [k, v] of Object.entries(replacement)) this.vars[k].assign(v);
    const mask = new Float32Array(this.sizes.dictSize).fill(1);
    for (const j of replace) mask[j] = 0;
    this.optimizer.resetFeatures(mask, this.arch.featureAxes());
    this.resampled.times++;
    this.resampled.features += n;
  }

  /** A dictionary for raw activations (normalisation `scale` folded in). */
  dictionary(scale: number, training: Record<string, unknown> = {}): Dictionary {
    return Dictionary.fromTraining(this.arch, this.params(), this.sizes, scale, {
      trainer: this.name,
      steps: this.step,
      ...this.settings,
      ...training,
    });
  }

  /** Frees parameters and optimizer state. */
  dispose(): void {
    for (const v of Object.values(this.vars)) v.dispose();
    this.optimizer.dispose();
  }
}

/**
 * n distinct indices drawn with probability ∝ weights (Efraimidis–Spirakis: the n largest
 * u^(1/w) keys), using stream step + 1 of the seed's `'resampling'` Philox domain, so a run is
 * reproducible and the draw shares no numbers with the init, data or sampling streams.
 */
export function weightedSampleWithoutReplacement(
  weights: ArrayLike<number>,
  n: number,
  seed: number,
  step: number,
): Int32Array {
  const u = philoxUniform(weights.length, seedFor('resampling', seed), (step + 1) >>> 0);
  const keys = Array.from(weights, (w, i) => ({
    i,
    k: w > 0 ? Math.log(Math.max(u[i], 1e-30)) / w : Number.NEGATIVE_INFINITY,
  }));
  keys.sort((a, b) => b.k - a.k || a.i - b.i);
  return Int32Array.from(keys.slice(0, n), (e) => e.i);
}
