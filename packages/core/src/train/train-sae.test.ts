// trainSAE end to end on the CPU reference backend with the standard architectures (both
// resolved from source by the workspace's vitest aliases; core does not depend on them).
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aprilUpdate, factories, standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerArchitecture } from '../arch.js';
import { registerBackend, useBackend } from '../backend.js';
import { Dictionary } from '../dictionary.js';
import { tensor } from '../ops/create.js';
import { philoxNormal } from '../random.js';
import { memory, type Tensor } from '../tensor.js';
import { trainSAE } from './train-sae.js';
import { Trainer } from './trainer.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  for (const f of factories) registerArchitecture(f);
});

const D = 8;
const B = 32;

/** A deterministic stream of batches: sparse non-negative mixtures plus noise, optionally a NaN. */
function batches(count: number, options: { nanAt?: number; failAt?: number } = {}): AsyncIterable<Tensor> {
  return {
    async *[Symbol.asyncIterator]() {
      for (let i = 0; i < count; i++) {
        if (i === options.failAt) throw new Error('simulated crash');
        const v = philoxNormal(B * D, 99, i);
        for (let j = 0; j < v.length; j++) v[j] = (j % 3 === 0 ? 2 : 0.3) * v[j] + 1;
        if (i === options.nanAt) v[5] = Number.NaN;
        yield tensor(v, [B, D]);
      }
    },
  };
}

const specs = () => [
  {
    architecture: standard({ l1Penalty: 0.05 }),
    dictSize: 16,
    name: 'std',
    seed: 1,
    warmupSteps: 3,
    sparsityWarmupSteps: 5,
    resampleSteps: 6,
  },
  { architecture: aprilUpdate({ l1Penalty: 0.05 }), dictSize: 12, name: 'april', seed: 2, warmupSteps: 3 },
];

async function paramsOf(dir: string): Promise<Record<string, number[]>> {
  const d = await Dictionary.load(dir);
  const out: Record<string, number[]> = {};
  for (const [k, t] of Object.entries(d.params)) out[k] = Array.from(await t.data());
  d.dispose();
  return out;
}

describe('trainSAE', () => {
  it('a resumed run ends bit for bit where an uninterrupted one does (optimizer, resampling, dead counters, data position)', async () => {
    // A third trainer whose features die and are resampled at nearly every check (R = 2: silent
    // for 2 steps is dead; a strong L1 and a large lr kill features fast), so the checkpoint holds
    // non-trivial dead-feature counters and the resample right after the resume depends on them.
    const dying = {
      architecture: standard({ l1Penalty: 3 }),
      dictSize: 64,
      name: 'dying',
      seed: 1,
      lr: 0.05,
      warmupSteps: 0,
      sparsityWarmupSteps: 0,
      resampleSteps: 2,
    };
    const trainers = () => [...specs(), dying];
    const names = ['std', 'april', 'dying'];
    const a = await mkdtemp(join(tmpdir(), 'dl-a-'));
    const whole = await trainSAE({
      data: batches(40),
      trainers: trainers(),
      steps: 24,
      outDir: a,
      logEvery: 8,
      normalize: true,
      saveSteps: [12, 13, 24],
    });
    for (const d of whole.dictionaries) d.dispose();
    const info = async (dir: string, name: string, step: number) =>
      JSON.parse(await readFile(join(dir, name, 'checkpoints', `step_${step}`, 'state.json'), 'utf8'));
    // Preconditions: resamples before the checkpoint, on the first step after it (t = 12, a
    // check of R = 2, which needs the restored counters to find the same dead features) and after.
    const [at12, at13, at24] = [
      await info(a, 'dying', 12),
      await info(a, 'dying', 13),
      await info(a, 'dying', 24),
    ];
    expect(at12.resampled.times).toBeGreaterThan(0);
    expect(at13.resampled.times).toBe(at12.resampled.times + 1);
    expect(at24.resampled.times).toBeGreaterThan(at13.resampled.times);

    const b = await mkdtemp(join(tmpdir(), 'dl-b-'));
    await expect(
      trainSAE({
        data: batches(40, { failAt: 16 }),
        trainers: trainers(),
        steps: 24,
        outDir: b,
        saveSteps: [12],
        normalize: true,
      }),
    ).rejects.toThrow('simulated crash');
    expect(await readdir(join(b, 'std', 'checkpoints'))).toEqual(['step_12']);
    const resumed = await trainSAE({
      data: batches(40),
      trainers: trainers(),
      steps: 24,
      outDir: b,
      resume: true,
      normalize: true,
      saveSteps: [13, 24],
    });
    expect(resumed.resumedFrom).toBe(12);
    expect(resumed.scale).toBe(whole.scale);
    for (const d of resumed.dictionaries) d.dispose();
    for (const name of names) {
      expect(await paramsOf(join(b, name))).toEqual(await paramsOf(join(a, name)));
      // The whole training state (parameters, Adam moments, dead-feature counters, resample
      // counts) agrees right after the resume and at the end.
      for (const step of [13, 24]) {
        expect(await info(b, name, step)).toEqual(await info(a, name, step));
        const state = (dir: string) =>
          readFile(join(dir, name, 'checkpoints', `step_${step}`, 'state.safetensors'));
        expect(Buffer.compare(await state(b), await state(a)), `${name} state at step ${step}`).toBe(0);
      }
    }
    // The checkpoint itself is a loadable dictionary.
    const ck = await Dictionary.load(join(b, 'std', 'checkpoints', 'step_12'));
    expect(ck.dictSize).toBe(16);
    ck.dispose();
  });

  it('logs every N steps to the callback and log.jsonl, with loss, l0 and FVE', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-log-'));
    const seen: string[] = [];
    const r = await trainSAE({
      data: batches(20),
      trainers: specs(),
      steps: 10,
      outDir: dir,
      logEvery: 5,
      onLog: (e) => seen.push(`${e.trainer}@${e.step}`),
    });
    for (const d of r.dictionaries) d.dispose();
    expect(seen).toEqual(['std@5', 'april@5', 'std@10', 'april@10']);
    const lines = (await readFile(join(dir, 'log.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(4);
    for (const l of lines) {
      for (const k of ['loss', 'mse_loss', 'sparsity_loss', 'l0', 'frac_variance_explained', 'lr']) {
        expect(Number.isFinite(l.logs[k])).toBe(true);
      }
      expect(l.tokens).toBe(l.step * B);
    }
    // loss = mse + λ·s(t)·sparsity at the logged step
    const first = lines[0].logs;
    expect(first.loss).toBeCloseTo(first.mse_loss + 0.05 * first.sparsity_scale * first.sparsity_loss, 5);
  });

  it('stops on NaN activations naming the step, and keeps the last good checkpoint', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-nan-'));
    await expect(
      trainSAE({
        data: batches(20, { nanAt: 7 }),
        trainers: specs(),
        steps: 12,
        outDir: dir,
        saveSteps: [4, 10],
      }),
    ).rejects.toThrow('train: step 7: the activation batch holds 1 NaN/Inf values; stopping');
    expect(await readdir(join(dir, 'std', 'checkpoints'))).toEqual(['step_4']);
    const d = await Dictionary.load(join(dir, 'std', 'checkpoints', 'step_4'));
    d.dispose();
  });

  it('folds the normalisation scale: the saved dictionary reconstructs raw activations', async () => {
    const r = await trainSAE({
      data: batches(60),
      trainers: [specs()[0]],
      steps: 60,
      normalize: true,
      normalizeBatches: 2,
    });
    // s = √(mean‖x‖²)/√d over the first two batches, by hand:
    let sq = 0;
    for (const i of [0, 1]) {
      const v = philoxNormal(B * D, 99, i);
      for (let j = 0; j < v.length; j++) sq += ((j % 3 === 0 ? 2 : 0.3) * v[j] + 1) ** 2;
    }
    expect(r.scale).toBeCloseTo(Math.sqrt(sq / (2 * B)) / Math.sqrt(D), 5);
    const dict = r.dictionaries[0];
    expect(dict.scale).toBe(r.scale);
    expect(dict.config().normalization).toEqual({ scale: r.scale, folded: true });
    dict.dispose();
  });

  it('holds live tensors flat across training steps (no leaks)', async () => {
    const trainer = new Trainer({ ...specs()[0] }, D, 100);
    const counts: number[] = [];
    for await (const x of batches(12)) {
      await trainer.update(x, true);
      x.dispose();
      counts.push(memory().backends.cpu.tensors);
    }
    expect(new Set(counts.slice(2)).size).toBe(1);
    trainer.dispose();
  });

  it('rejects bad options with clear errors', async () => {
    await expect(trainSAE({ data: batches(2), trainers: [], steps: 1 })).rejects.toThrow(
      "trainSAE: 'trainers' must list at least one trainer",
    );
    await expect(trainSAE({ data: batches(2), trainers: specs(), steps: 1, saveSteps: [1] })).rejects.toThrow(
      "'saveSteps' needs 'outDir'",
    );
    await expect(trainSAE({ data: batches(2), trainers: specs(), steps: 5 })).rejects.toThrow(
      'train: the activation data ran out after 2 batches (step 2)',
    );
    await expect(
      trainSAE({ data: batches(2), trainers: [{ ...specs()[0], dictSize: 0 }], steps: 1 }),
    ).rejects.toThrow("trainer 0: 'dictSize' must be a positive integer, got 0");
  });
});

describe('Dictionary.save / load', () => {
  it('round-trips and refuses foreign, truncated, mismatched and unknown-architecture files', async () => {
    const r = await trainSAE({ data: batches(3), trainers: [specs()[0]], steps: 3 });
    const dict = r.dictionaries[0];
    const dir = await mkdtemp(join(tmpdir(), 'dl-save-'));
    await dict.save(dir);
    const back = await Dictionary.load(dir);
    for (const k of Object.keys(dict.params)) {
      expect(Array.from(await back.params[k].data())).toEqual(Array.from(await dict.params[k].data()));
    }
    back.dispose();
    dict.dispose();

    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8'));
    const variant = async (mutate: (c: Record<string, unknown>) => void) => {
      const d2 = await mkdtemp(join(tmpdir(), 'dl-bad-'));
      const c = structuredClone(cfg);
      mutate(c);
      await writeFile(join(d2, 'config.json'), JSON.stringify(c));
      await writeFile(join(d2, 'sae.safetensors'), await readFile(join(dir, 'sae.safetensors')));
      return d2;
    };
    await expect(
      Dictionary.load(
        await variant((c) => {
          c.format = 'saelens';
        }),
      ),
    ).rejects.toThrow(/config.json: field 'format' must be 'dictlearn'/);
    await expect(
      Dictionary.load(
        await variant((c) => {
          (c.architecture as Record<string, unknown>).name = 'gated';
        }),
      ),
    ).rejects.toThrow(
      /unknown architecture 'gated': install @dictlearn\/arch-standard and import '@dictlearn\/arch-standard\/register'/,
    );
    await expect(
      Dictionary.load(
        await variant((c) => {
          c.dictSize = 17;
        }),
      ),
    ).rejects.toThrow(/sae.safetensors: tensor 'W_enc' is \[8, 16\], expected \[8, 17\]/);
    const truncated = await variant(() => {});
    const bytes = await readFile(join(truncated, 'sae.safetensors'));
    await writeFile(join(truncated, 'sae.safetensors'), bytes.subarray(0, bytes.length - 10));
    await expect(Dictionary.load(truncated)).rejects.toThrow(/sae.safetensors/);
    await expect(Dictionary.load(join(dir, 'nope'))).rejects.toThrow(
      /nope\/config.json: could not read the file/,
    );
  });
});
