import type { StateTensor } from '../arch.js';
import { DictlearnError } from '../errors.js';
import { tensor } from '../ops/create.js';
import type { Tensor } from '../tensor.js';
import type { ResampleCounts, Trainer } from './trainer.js';

/** What a training checkpoint records beside tensors (`state.json`). */
export interface TrainerStateInfo {
  /** Always `'dictlearn-trainer-state'`. */
  format: 'dictlearn-trainer-state';
  /** Trainer name. */
  trainer: string;
  /** Architecture name. */
  architecture: string;
  /** Steps completed. */
  step: number;
  /** Adam steps taken. */
  adamStep: number;
  /** Batches read from the data (a resumed run skips this many). */
  batchesConsumed: number;
  /** Normalisation scale. */
  scale: number;
  /** Where resumable data stood after the last batch trained on (see `TrainSAEOptions.dataPosition`). */
  dataPosition?: unknown;
  /** Resampling counters. */
  resampled: ResampleCounts;
  /**
   * Names of the architecture's training state (`ArchitecturePlugin.trainingState`), saved as
   * tensors `arch_state.<name>`; absent for an architecture without one, and in checkpoints of
   * versions that did not save it.
   */
  archState?: string[];
}

const STATE_TENSORS = 'state.safetensors';
const STATE_INFO = 'state.json';
const ARCH_STATE = 'arch_state.';

/** Where {@link applyTrainerState} says what a resume cannot restore: as `trainSAE`'s default. */
const warnNotice = (m: string) => console.warn(`dictlearn: ${m}`);

/**
 * Writes a resumable checkpoint of a trainer into `dir`: the dictionary as saved for use
 * (config.json + sae.safetensors, normalisation folded in), and the training state (training-space
 * parameters, Adam moments, dead-feature counters, step, data position, the architecture's own
 * training state). The directory is written under a temporary name and renamed, so a checkpoint
 * is either complete or absent.
 */
export async function saveTrainerState(
  trainer: Trainer,
  dir: string,
  extra: { scale: number; batchesConsumed: number; dataPosition?: unknown },
): Promise<void> {
  const fs = { ...(await import('../io/dirs.js')), ...(await import('../io/fs.js')) };
  const { encodeSafetensors } = await import('../io/safetensors.js');
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeState(trainer, tmp, extra, fs, encodeSafetensors);
    await fs.replaceDir(tmp, dir);
  } catch (e) {
    // Leave no half-written checkpoint behind (a full disk): earlier ones stay as they were.
    await fs.removePath(tmp).catch(() => {});
    throw e;
  }
}

async function writeState(
  trainer: Trainer,
  tmp: string,
  extra: { scale: number; batchesConsumed: number; dataPosition?: unknown },
  fs: typeof import('../io/dirs.js') & typeof import('../io/fs.js'),
  encodeSafetensors: typeof import('../io/safetensors.js').encodeSafetensors,
): Promise<void> {
  await fs.ensureDir(tmp);
  const dict = trainer.dictionary(extra.scale);
  try {
    await dict.save(tmp);
  } finally {
    dict.dispose();
  }
  const entries: Record<string, { dtype: 'F32' | 'I32'; shape: number[]; data: Float32Array | Int32Array }> =
    {};
  const add = async (key: string, t: Tensor) => {
    entries[key] = { dtype: 'F32', shape: [...t.shape], data: (await t.data()) as Float32Array };
  };
  for (const [name, v] of Object.entries(trainer.vars)) await add(`param.${name}`, v.value);
  const opt = trainer.optimizer.state();
  for (const [name, t] of Object.entries(opt.m)) await add(`adam_m.${name}`, t);
  for (const [name, t] of Object.entries(opt.v)) await add(`adam_v.${name}`, t);
  entries.steps_since_fired = {
    dtype: 'I32',
    shape: [trainer.stepsSinceFired.length],
    data: trainer.stepsSinceFired,
  };
  const archState = await trainer.arch.trainingState?.save(trainer.step);
  for (const [name, t] of Object.entries(archState ?? {})) {
    entries[`${ARCH_STATE}${name}`] = { dtype: 'F32', shape: [...t.shape], data: t.data };
  }
  await fs.writeFileAtomic(fs.joinPath(tmp, STATE_TENSORS), encodeSafetensors(entries));
  const info: TrainerStateInfo = {
    format: 'dictlearn-trainer-state',
    trainer: trainer.name,
    architecture: trainer.arch.name,
    step: trainer.step,
    adamStep: opt.step,
    batchesConsumed: extra.batchesConsumed,
    scale: extra.scale,
    ...(extra.dataPosition !== undefined ? { dataPosition: extra.dataPosition } : {}),
    resampled: trainer.resampled,
    ...(archState ? { archState: Object.keys(archState) } : {}),
  };
  await fs.writeFileAtomic(fs.joinPath(tmp, STATE_INFO), `${JSON.stringify(info, null, 2)}\n`);
}

/** A checkpoint read and checked against a trainer by {@link readTrainerState}, not yet applied. */
export interface TrainerState {
  /** The checkpoint folder. */
  dir: string;
  /** Its `state.json`. */
  info: TrainerStateInfo;
  /** Parameter values by name. */
  params: Record<string, Float32Array>;
  /** Adam first moments by parameter name. */
  m: Record<string, Float32Array>;
  /** Adam second moments by parameter name. */
  v: Record<string, Float32Array>;
  /** Steps since each feature last fired. */
  stepsSinceFired: Int32Array;
  /** The architecture's training state by name; absent when the checkpoint has none. */
  archState?: Record<string, StateTensor>;
}

/**
 * Reads a checkpoint written by {@link saveTrainerState} and checks it fits `trainer` (format,
 * architecture, every tensor present with the trainer's shape) without changing the trainer, so
 * a damaged checkpoint (truncated safetensors, bad state.json) can be passed over for an older one.
 * Throws a {@link DictlearnError} naming the file and the problem.
 */
export async function readTrainerState(trainer: Trainer, dir: string): Promise<TrainerState> {
  const fs = await import('../io/dirs.js');
  const { readSafetensors } = await import('../io/safetensors.js');
  const infoPath = fs.joinPath(dir, STATE_INFO);
  let info: TrainerStateInfo;
  try {
    info = JSON.parse(await fs.readTextFile(infoPath));
  } catch (e) {
    throw new DictlearnError(infoPath, `cannot read the trainer state: ${(e as Error).message}`);
  }
  if (info?.format !== 'dictlearn-trainer-state') {
    throw new DictlearnError(infoPath, "field 'format' must be 'dictlearn-trainer-state'");
  }
  if (info.architecture !== trainer.arch.name) {
    throw new DictlearnError(
      infoPath,
      `checkpoint is of architecture '${info.architecture}', the trainer is '${trainer.arch.name}'`,
    );
  }
  for (const k of ['step', 'adamStep', 'batchesConsumed'] as const) {
    if (!Number.isInteger(info[k]) || info[k] < 0) {
      throw new DictlearnError(infoPath, `field '${k}' must be a non-negative integer, got ${info[k]}`);
    }
  }
  if (!(typeof info.scale === 'number' && info.scale > 0 && Number.isFinite(info.scale))) {
    throw new DictlearnError(infoPath, `field 'scale' must be a positive number, got ${info.scale}`);
  }
  const path = fs.joinPath(dir, STATE_TENSORS);
  const file = await readSafetensors(path);
  const get = (key: string, shape: readonly number[]) => {
    const e = file.tensors[key];
    if (!e) throw new DictlearnError(path, `missing tensor '${key}'`);
    if (e.shape.length !== shape.length || e.shape.some((d: number, i: number) => d !== shape[i])) {
      throw new DictlearnError(path, `tensor '${key}' is [${e.shape}], expected [${shape}]`);
    }
    return e.data as ArrayLike<number>;
  };
  const state: TrainerState = {
    dir,
    info,
    params: {},
    m: {},
    v: {},
    stepsSinceFired: Int32Array.from(get('steps_since_fired', [trainer.stepsSinceFired.length])),
  };
  for (const [name, variable] of Object.entries(trainer.vars)) {
    const shape = variable.value.shape;
    state.params[name] = Float32Array.from(get(`param.${name}`, shape));
    state.m[name] = Float32Array.from(get(`adam_m.${name}`, shape));
    state.v[name] = Float32Array.from(get(`adam_v.${name}`, shape));
  }
  if (info.archState !== undefined) {
    if (!Array.isArray(info.archState) || info.archState.some((n) => typeof n !== 'string')) {
      throw new DictlearnError(infoPath, "field 'archState' must be a list of names");
    }
    // Shapes are the architecture's to check (its load does): they may change over a run.
    state.archState = {};
    for (const name of info.archState) {
      const e = file.tensors[`${ARCH_STATE}${name}`];
      if (!e) throw new DictlearnError(path, `missing tensor '${ARCH_STATE}${name}'`);
      state.archState[name] = { shape: [...e.shape], data: Float32Array.from(e.data as ArrayLike<number>) };
    }
  }
  return state;
}

/**
 * Puts a checkpoint read by {@link readTrainerState} into the trainer. A checkpoint from a version
 * that did not save the architecture's training state (e.g. p-annealing's adapted coefficient)
 * leaves that state to restart from the configuration, and says so through `notice`.
 */
export function applyTrainerState(
  trainer: Trainer,
  state: TrainerState,
  notice: (message: string) => void = warnNotice,
): void {
  // Before anything else: the plugin checks what it is given and may throw, and the trainer
  // should then be left as it was.
  const hooks = trainer.arch.trainingState;
  if (hooks && state.archState) hooks.load(state.archState, state.info.step);
  else if (hooks) {
    notice(
      `${state.dir}: the checkpoint holds no '${trainer.arch.name}' training state (an older version); it restarts from the configuration, so the resumed run differs from an uninterrupted one`,
    );
  }
  const backend = Object.values(trainer.vars)[0].value.backend;
  const m: Record<string, Tensor> = {};
  const v: Record<string, Tensor> = {};
  try {
    for (const [name, variable] of Object.entries(trainer.vars)) {
      const shape = variable.value.shape;
      variable.assign(tensor(state.params[name], shape, { backend }));
      m[name] = tensor(state.m[name], shape, { backend });
      v[name] = tensor(state.v[name], shape, { backend });
    }
    trainer.optimizer.load({ step: state.info.adamStep, m, v });
  } finally {
    for (const t of [...Object.values(m), ...Object.values(v)]) t.dispose();
  }
  trainer.stepsSinceFired.set(state.stepsSinceFired);
  trainer.step = state.info.step;
  trainer.resampled = { ...state.info.resampled };
}

/** Restores a trainer from a checkpoint written by {@link saveTrainerState}; returns its info. */
export async function loadTrainerState(
  trainer: Trainer,
  dir: string,
  notice?: (message: string) => void,
): Promise<TrainerStateInfo> {
  const state = await readTrainerState(trainer, dir);
  applyTrainerState(trainer, state, notice);
  return state.info;
}
