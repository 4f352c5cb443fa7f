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
  /** Resampling counters. */
  resampled: ResampleCounts;
}

const STATE_TENSORS = 'state.safetensors';
const STATE_INFO = 'state.json';

/**
 * Writes a resumable checkpoint of a trainer into `dir`: the dictionary as saved for use
 * (config.json + sae.safetensors, normalisation folded in), and the training state (training-space
 * parameters, Adam moments, dead-feature counters, step, data position). The directory is written
 * under a temporary name and renamed, so a checkpoint is either complete or absent.
 */
export async function saveTrainerState(
  trainer: Trainer,
  dir: string,
  extra: { scale: number; batchesConsumed: number },
): Promise<void> {
  const fs = { ...(await import('../io/dirs.js')), ...(await import('../io/fs.js')) };
  const { encodeSafetensors } = await import('../io/safetensors.js');
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
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
  await fs.writeFileAtomic(fs.joinPath(tmp, STATE_TENSORS), encodeSafetensors(entries));
  const info: TrainerStateInfo = {
    format: 'dictlearn-trainer-state',
    trainer: trainer.name,
    architecture: trainer.arch.name,
    step: trainer.step,
    adamStep: opt.step,
    batchesConsumed: extra.batchesConsumed,
    scale: extra.scale,
    resampled: trainer.resampled,
  };
  await fs.writeFileAtomic(fs.joinPath(tmp, STATE_INFO), `${JSON.stringify(info, null, 2)}\n`);
  await fs.replaceDir(tmp, dir);
}

/** Restores a trainer from a checkpoint written by {@link saveTrainerState}; returns its info. */
export async function loadTrainerState(trainer: Trainer, dir: string): Promise<TrainerStateInfo> {
  const fs = await import('../io/dirs.js');
  const { readSafetensors } = await import('../io/safetensors.js');
  const infoPath = fs.joinPath(dir, STATE_INFO);
  let info: TrainerStateInfo;
  try {
    info = JSON.parse(await fs.readTextFile(infoPath));
  } catch (e) {
    throw new DictlearnError(infoPath, `cannot read the trainer state: ${(e as Error).message}`);
  }
  if (info.format !== 'dictlearn-trainer-state') {
    throw new DictlearnError(infoPath, "field 'format' must be 'dictlearn-trainer-state'");
  }
  if (info.architecture !== trainer.arch.name) {
    throw new DictlearnError(
      infoPath,
      `checkpoint is of architecture '${info.architecture}', the trainer is '${trainer.arch.name}'`,
    );
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
  const backend = Object.values(trainer.vars)[0].value.backend;
  const m: Record<string, Tensor> = {};
  const v: Record<string, Tensor> = {};
  try {
    for (const [name, variable] of Object.entries(trainer.vars)) {
      const shape = variable.value.shape;
      variable.assign(tensor(Float32Array.from(get(`param.${name}`, shape)), shape, { backend }));
      m[name] = tensor(Float32Array.from(get(`adam_m.${name}`, shape)), shape, { backend });
      v[name] = tensor(Float32Array.from(get(`adam_v.${name}`, shape)), shape, { backend });
    }
    trainer.optimizer.load({ step: info.adamStep, m, v });
  } finally {
    for (const t of [...Object.values(m), ...Object.values(v)]) t.dispose();
  }
  trainer.stepsSinceFired.set(get('steps_since_fired', [trainer.stepsSinceFired.length]));
  trainer.step = info.step;
  trainer.resampled = { ...info.resampled };
  return info;
}
