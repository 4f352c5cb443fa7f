// trainSAE's `dataPosition`: checkpoints record where resumable data stood after the last batch
// trained on, and a resume reopens the data there instead of replaying it from the start.
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { factories, standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerArchitecture } from '../arch.js';
import { registerBackend, useBackend } from '../backend.js';
import { Dictionary } from '../dictionary.js';
import { tensor } from '../ops/create.js';
import { philoxNormal } from '../random.js';
import type { Tensor } from '../tensor.js';
import { type DataPosition, trainSAE } from './train-sae.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  for (const f of factories) registerArchitecture(f);
});

const D = 8;
const B = 16;

/**
 * Batches i = from, from+1, … of a deterministic stream, and the position after each (`{ next }`),
 * with a count of the batches produced (what a model source pays forward passes for).
 */
function positioned(): { data(from: number): AsyncIterable<Tensor>; tracker: DataPosition; reads: number[] } {
  const reads: number[] = [];
  let next = 0;
  const data = (from: number): AsyncIterable<Tensor> => ({
    async *[Symbol.asyncIterator]() {
      for (let i = from; ; i++) {
        reads.push(i);
        next = i + 1;
        yield tensor(philoxNormal(B * D, 7, i), [B, D]);
      }
    },
  });
  const tracker: DataPosition = {
    current: () => ({ next }),
    resume: (p) => data((p as { next: number }).next),
  };
  return { data, tracker, reads };
}

const spec = () => [
  { architecture: standard({ l1Penalty: 0.05 }), dictSize: 16, name: 'std', seed: 3, warmupSteps: 2 },
];

async function params(dir: string): Promise<number[]> {
  const d = await Dictionary.load(dir);
  const out: number[] = [];
  for (const t of Object.values(d.params)) out.push(...(await t.data()));
  d.dispose();
  return out;
}

async function stateOf(
  dir: string,
  step: number,
): Promise<{ dataPosition?: unknown; batchesConsumed: number }> {
  return JSON.parse(await readFile(join(dir, 'std', 'checkpoints', `step_${step}`, 'state.json'), 'utf8'));
}

describe('trainSAE dataPosition', () => {
  it.each([false, true])(
    'resumes where the checkpoint left the data, without replaying it, and ends where an uninterrupted run does (normalize %s)',
    async (normalize) => {
      const whole = await mkdtemp(join(tmpdir(), 'dl-pos-'));
      const a = positioned();
      await trainSAE({
        data: a.data(0),
        dataPosition: a.tracker,
        trainers: spec(),
        steps: 10,
        normalize,
        normalizeBatches: 4,
        outDir: whole,
        logEvery: 0,
      });

      const split = await mkdtemp(join(tmpdir(), 'dl-pos-'));
      const b = positioned();
      // Stops after step 2: with normalisation the first 4 batches were read ahead for the scale,
      // so the data stands at batch 4 while only 2 were trained on.
      await trainSAE({
        data: b.data(0),
        dataPosition: b.tracker,
        trainers: spec(),
        steps: 2,
        normalize,
        normalizeBatches: 4,
        outDir: split,
        saveSteps: [2],
        logEvery: 0,
      });
      const saved = await stateOf(split, 2);
      expect(saved.dataPosition).toEqual({ next: 2 });
      expect(saved.batchesConsumed).toBe(2);

      const c = positioned();
      // States its width, so trainSAE need not read a batch to learn it.
      const never: AsyncIterable<Tensor> & { dim: number } = {
        dim: D,
        [Symbol.asyncIterator]: () => ({
          next: () => Promise.reject(new Error('the original stream was read on resume')),
        }),
      };
      await trainSAE({
        data: never,
        dataPosition: c.tracker,
        batchSize: B,
        trainers: spec(),
        steps: 10,
        normalize,
        normalizeBatches: 4,
        outDir: split,
        resume: true,
        saveSteps: [6],
        logEvery: 0,
        onNotice: () => {},
      });
      // Batches 2 … 9 and nothing before: no replay.
      expect(c.reads).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
      expect(await stateOf(split, 6)).toMatchObject({ dataPosition: { next: 6 }, batchesConsumed: 6 });
      expect(await params(join(split, 'std'))).toEqual(await params(join(whole, 'std')));
    },
  );

  it('replays from the start for a checkpoint without a position (written without dataPosition)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-pos-'));
    const a = positioned();
    await trainSAE({ data: a.data(0), trainers: spec(), steps: 3, outDir: dir, saveSteps: [3], logEvery: 0 });
    expect((await stateOf(dir, 3)).dataPosition).toBeUndefined();
    const b = positioned();
    await trainSAE({
      data: b.data(0),
      dataPosition: b.tracker,
      trainers: spec(),
      steps: 5,
      outDir: dir,
      resume: true,
      logEvery: 0,
      onNotice: () => {},
    });
    expect(b.reads).toEqual([0, 1, 2, 3, 4]);
  });
});
