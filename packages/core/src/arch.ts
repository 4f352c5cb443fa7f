import { DictlearnError } from './errors.js';
import { findPlugin, registerPlugin } from './registry.js';
import type { Tensor } from './tensor.js';

/** A dictionary's parameters by name (`W_enc`, `b_enc`, `W_dec`, `b_dec`...). */
export type Params = Record<string, Tensor>;

/** Sizes of a dictionary. */
export interface DictionarySizes {
  /** Width d of the activations. */
  activationDim: number;
  /** Number of features F. */
  dictSize: number;
}

/** What the trainer tells an architecture's loss at each step. */
export interface LossContext {
  /** 0-based step of this trainer. */
  step: number;
  /** Sparsity warm-up factor s(t) in [0, 1] (REFERENCE: linear 0 → 1 over the warm-up). */
  sparsityScale: number;
  /** Whether this step's logs will be read: skip log-only computations when false. */
  withLogs?: boolean;
  /**
   * Per feature, the trainer's count of consecutive steps without firing before this step
   * (read-only; e.g. for TopK's aux-k loss on dead features). Absent when not trained by a
   * `Trainer`.
   */
  stepsSinceFired?: Readonly<Int32Array>;
  /** Steps of the whole run, where a `Trainer` trains it (schedules that end with the run). */
  totalSteps?: number;
}

/** What an architecture's loss returns. */
export interface LossOutput {
  /** The scalar loss to minimise. */
  loss: Tensor;
  /** Scalars to log (e.g. `mse_loss`, `sparsity_loss`, `l0`), each a 0-d or size-1 tensor. */
  logs: Record<string, Tensor>;
  /**
   * The features f of the batch [B, F], for dead-feature tracking and the logged L0. A sparse
   * architecture that never builds the dense [B, F] matrix leaves it out and gives
   * {@link LossOutput.activity} and {@link LossOutput.l0} instead.
   */
  features?: Tensor;
  /**
   * Mean number of non-zero features per row (0-d), when the architecture knows it without
   * {@link LossOutput.features}; read only on logging steps.
   */
  l0?: Tensor;
  /** The reconstruction x̂ [B, d], for resampling and logging FVE. */
  reconstruction: Tensor;
  /**
   * Optional per-feature activity of the batch [F], non-zero exactly for features that fired
   * (e.g. the column sums of non-negative features, which an L1 penalty computes anyway); saves
   * the trainer a pass over [B, F] to find them.
   */
  activity?: Tensor;
  /**
   * New values of state parameters that are not trained by gradient (e.g. BatchTopK's inference
   * threshold, an EMA): the trainer assigns them after the optimizer step. Such a parameter must
   * not enter the loss, so its gradient is zero and Adam leaves it unchanged.
   */
  buffers?: Params;
}

/** Training defaults an architecture brings (REFERENCE values); a trainer may override each. */
export interface TrainingDefaults {
  /** Learning rate. */
  lr: number;
  /**
   * Learning rate for given sizes, when the default depends on them (e.g. TopK's
   * 2e-4/√(F/2¹⁴)); takes precedence over {@link TrainingDefaults.lr}.
   */
  lrFor?(sizes: DictionarySizes): number;
  /** Adam β₁, β₂. */
  betas: [number, number];
  /** Linear lr warm-up from 0 over this many steps (restarted after each resample). */
  warmupSteps: number;
  /** Linear sparsity warm-up s(t): 0 → 1 over this many steps (0 = none). */
  sparsityWarmupSteps: number;
  /**
   * Global gradient-norm clip (undefined = none). With `unitNormRows`, the rows' parallel
   * component is removed before the norm is taken (dictionary_learning's order).
   */
  clipGradNorm?: number;
  /** Parameters whose rows are kept unit-norm by ConstrainedAdam (e.g. `['W_dec']`). */
  unitNormRows: string[];
  /** Dead-feature resampling every this many steps (undefined = none). */
  resampleSteps?: number;
}

/**
 * An SAE architecture, written only with core ops so it gets gradients and every backend for
 * free. Plugins are values: a factory such as `standard({ l1Penalty: 0.1 })` returns one.
 * Parameters use SAELens layout: `W_enc` [d, F], `W_dec` [F, d].
 */
export interface ArchitecturePlugin<C extends object = Record<string, unknown>> {
  /** Registry name, e.g. `'standard'`; written to config.json. */
  readonly name: string;
  /** The npm package that provides it, named in errors when a checkpoint needs it. */
  readonly packageName: string;
  /** Validated hyper-parameters (JSON-serialisable); `create(config)` of the factory rebuilds the plugin. */
  readonly config: C;
  /** Training defaults (REFERENCE values). */
  readonly training: TrainingDefaults;
  /** Name → shape of every parameter (checked when a checkpoint is loaded). */
  paramShapes(sizes: DictionarySizes): Record<string, number[]>;
  /**
   * Along which axis each parameter holds one slice per feature (e.g. `W_enc` [d, F] → 1,
   * `W_dec` [F, d] → 0, `b_enc` → 0); used to reset optimizer moments of resampled features.
   */
  featureAxes(): Record<string, number>;
  /** Fresh parameters (seeded: the same seed gives the same parameters on every backend). */
  init(sizes: DictionarySizes, options: { seed: number; backend?: string }): Params;
  /**
   * Data-dependent initialisation, called by the trainer once, on the first (training-space)
   * batch before the first step (e.g. TopK's b_dec ← geometric median of the batch). Returns
   * only the parameters that change. Random draws must use the seed's own Philox domain/stream.
   */
  initFromData?(p: Params, x: Tensor, options: { seed: number }): Params;
  /** Features f: [B, d] → [B, F]. */
  encode(p: Params, x: Tensor): Tensor;
  /** Reconstruction: [B, F] → [B, d]. */
  decode(p: Params, f: Tensor): Tensor;
  /** The training loss of a batch. */
  loss(p: Params, x: Tensor, ctx: LossContext): LossOutput;
  /** Decoder directions, one row per feature [F, d] (a new tensor). */
  decoderRows(p: Params): Tensor;
  /**
   * Parameters for raw activations when training ran on x / scale (REFERENCE: fold the
   * normalisation scale into the biases). Returns only the parameters that change.
   */
  foldScale(p: Params, scale: number): Params;
  /** The inverse of {@link foldScale}: training-space parameters from saved ones. */
  unfoldScale(p: Params, scale: number): Params;
  /**
   * Features are never negative (ReLU family): the trainer then tracks firing with max(f)
   * instead of max(|f|), one pass fewer over [B, F].
   */
  readonly nonNegativeFeatures?: boolean;
  /**
   * Resampling of dead features (REFERENCE "Resampling", dictionary_learning's
   * `resample_neurons`): given which features are dead and which of them to rebuild, and one
   * chosen input (training space) per rebuilt feature, returns replacement parameters.
   * Omitted = no resampling.
   */
  resample?(p: Params, features: DeadFeatures, inputs: Tensor): Params;
  /**
   * State the plugin carries from one training step to the next besides its parameters (e.g.
   * p-annealing's adapted coefficient): a trainer checkpoint saves it, so a resumed run trains
   * as the uninterrupted one. Omitted = none.
   */
  readonly trainingState?: PluginTrainingState;
}

/** One tensor of a plugin's training state, on the host: row-major `data` of `shape`. */
export interface StateTensor {
  /** Its shape (empty for a scalar). */
  shape: number[];
  /** Its values, row-major. */
  data: Float32Array;
}

/** What {@link ArchitecturePlugin.trainingState} does: see there. */
export interface PluginTrainingState {
  /** The state the loss of step `step` (the trainer's next step) starts from, by name. */
  save(step: number): Promise<Record<string, StateTensor>>;
  /**
   * Puts back what {@link PluginTrainingState.save} gave for step `step`. Checks it first and
   * throws a `DictlearnError`, changing nothing, when it does not fit.
   */
  load(state: Record<string, StateTensor>, step: number): void;
}

/** The features a resample concerns (what the trainer passes to `ArchitecturePlugin.resample`). */
export interface DeadFeatures {
  /**
   * Every dead feature (ascending). None of them counts as alive, e.g. for the mean alive
   * encoder norm, even those not rebuilt this time.
   */
  dead: Int32Array;
  /**
   * The features to rebuild: the first n of `dead`, n = min(#dead, batch rows); `replace[i]` is
   * rebuilt from row i of the inputs.
   */
  replace: Int32Array;
}

/** Makes plugins from saved configs; what the registry holds under an architecture's name. */
export interface ArchitectureFactory {
  /** Registry name. */
  readonly name: string;
  /** The npm package that provides it. */
  readonly packageName: string;
  /** Builds the plugin from a (JSON) config; throws a clear error on bad fields. */
  create(config: unknown): ArchitecturePlugin<object>;
}

/** Registers an architecture factory (same object twice is a no-op). */
export function registerArchitecture(factory: ArchitectureFactory): ArchitectureFactory {
  return registerPlugin('architecture', factory.name, factory);
}

/**
 * Rebuilds a plugin from its registry name and config. Throws, naming the package to install
 * and import, when no factory of that name is registered.
 */
export function createArchitecture(
  name: string,
  config: unknown,
  packageName?: string,
  where = 'architecture',
): ArchitecturePlugin<object> {
  const factory = findPlugin<ArchitectureFactory>('architecture', name);
  if (!factory) {
    const pkg = packageName ?? `@dictlearn/arch-${name}`;
    throw new DictlearnError(
      where,
      `unknown architecture '${name}': install ${pkg} and import '${pkg}/register' (or register the plugin yourself)`,
    );
  }
  return factory.create(config);
}

/**
 * Validates a plain-object config field by field: `spec[field]` is the expected kind and an
 * optional check; unknown fields and wrong kinds throw naming the field and what was expected.
 */
export function validateConfig<T extends object>(
  where: string,
  input: unknown,
  spec: Record<
    keyof T & string,
    { kind: 'number' | 'boolean' | 'string'; check?: (v: never) => string | null; default?: unknown }
  >,
): T {
  if (input === undefined || input === null) input = {};
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new DictlearnError(
      where,
      `config must be an object, got ${Array.isArray(input) ? 'an array' : typeof input}`,
    );
  }
  const obj = input as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!(key in spec)) {
      throw new DictlearnError(where, `unknown field '${key}' (known: ${Object.keys(spec).join(', ')})`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, rule] of Object.entries(spec) as [string, (typeof spec)[keyof typeof spec]][]) {
    const v = obj[key] ?? rule.default;
    if (v === undefined) throw new DictlearnError(where, `field '${key}' is required (a ${rule.kind})`);
    if (typeof v !== rule.kind || (rule.kind === 'number' && !Number.isFinite(v))) {
      throw new DictlearnError(
        where,
        `field '${key}' must be a finite ${rule.kind}, got ${JSON.stringify(v)}`,
      );
    }
    const problem = rule.check?.(v as never);
    if (problem) throw new DictlearnError(where, `field '${key}' ${problem}, got ${JSON.stringify(v)}`);
    out[key] = v;
  }
  return out as T;
}
