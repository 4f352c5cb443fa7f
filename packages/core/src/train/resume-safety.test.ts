// What keeps a training run's output folder safe across kills, Ctrl-C, full disks and a second
// run on the same folder: the lock, run.json, log truncation, checkpoint fallback and the
// all-or-nothing writes. The oracle for "resumes correctly" is an uninterrupted run of the same
// configuration: a resumed run must end bit for bit where it does (CPU reference backend).
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { aprilUpdate, factories, standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { registerArchitecture } from '../arch.js';
import { registerBackend, useBackend } from '../backend.js';
import { Dictionary } from '../dictionary.js';
import { tensor } from '../ops/create.js';
import { philoxNormal } from '../random.js';
import type { Tensor } from '../tensor.js';
import { RunStateError, TrainInterruptedError, type TrainSAEOptions, trainSAE } from './train-sae.js';

// A fake disk for the full-disk tests: every FileHandle.write spends from `budget` bytes; a
// write that does not fit writes what fits (a short write, as a real disk does) and the next
// one fails with ENOSPC. Infinity = a normal disk.
const disk = vi.hoisted(() => ({ budget: Number.POSITIVE_INFINITY }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const enospc = () =>
    Object.assign(new Error('ENOSPC: no space left on device, write'), {
      code: 'ENOSPC',
      errno: -28,
      syscall: 'write',
    });
  const open: typeof real.open = async (...args: Parameters<typeof real.open>) => {
    const handle = await real.open(...args);
    return new Proxy(handle, {
      get(target, prop) {
        if (prop === 'write') {
          return async (buffer: Uint8Array, offset = 0, length = buffer.byteLength - offset) => {
            if (disk.budget <= 0) throw enospc();
            const n = Math.min(length, disk.budget);
            disk.budget -= n;
            return target.write(buffer, offset, n);
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  };
  return { ...real, open, default: { ...real, open } };
});

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  for (const f of factories) registerArchitecture(f);
});

beforeEach(() => {
  disk.budget = Number.POSITIVE_INFINITY;
});

const D = 8;
const B = 32;

/** A deterministic stream of batches; `failAt` simulates a crash (a kill) before that batch. */
function batches(
  count: number,
  options: { failAt?: number; gate?: Promise<void> } = {},
): AsyncIterable<Tensor> {
  return {
    async *[Symbol.asyncIterator]() {
      for (let i = 0; i < count; i++) {
        if (i === options.failAt) throw new Error('simulated crash');
        if (i === 1 && options.gate) await options.gate;
        const v = philoxNormal(B * D, 99, i);
        for (let j = 0; j < v.length; j++) v[j] = (j % 3 === 0 ? 2 : 0.3) * v[j] + 1;
        yield tensor(v, [B, D]);
      }
    },
  };
}

const specs = (lr?: number) => [
  {
    architecture: standard({ l1Penalty: 0.05 }),
    dictSize: 16,
    name: 'std',
    seed: 1,
    warmupSteps: 3,
    sparsityWarmupSteps: 5,
    resampleSteps: 6,
    lr,
  },
  { architecture: aprilUpdate({ l1Penalty: 0.05 }), dictSize: 12, name: 'april', seed: 2, warmupSteps: 3 },
];

const STEPS = 24;

/** Runs trainSAE with the shared configuration, collecting notices; disposes the dictionaries. */
async function run(
  outDir: string | undefined,
  extra: Partial<TrainSAEOptions> & { failAt?: number } = {},
): Promise<{ notices: string[]; resumedFrom: number }> {
  const notices: string[] = [];
  const { failAt, ...rest } = extra;
  const r = await trainSAE({
    data: batches(40, { failAt }),
    trainers: specs(),
    steps: STEPS,
    outDir,
    logEvery: 4,
    normalize: true,
    dataSpec: { kind: 'test-batches', seed: 99 },
    onNotice: (m) => notices.push(m),
    ...rest,
  });
  for (const d of r.dictionaries) d.dispose();
  return { notices, resumedFrom: r.resumedFrom };
}

async function paramsOf(dir: string): Promise<Record<string, number[]>> {
  const d = await Dictionary.load(dir);
  const out: Record<string, number[]> = {};
  for (const [k, t] of Object.entries(d.params)) out[k] = Array.from(await t.data());
  d.dispose();
  return out;
}

/** log.jsonl without the wall-clock field, for comparing runs. */
async function logOf(dir: string): Promise<unknown[]> {
  const text = await readFile(join(dir, 'log.jsonl'), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .trim()
    .split('\n')
    .map((l) => {
      const { elapsed: _e, ...rest } = JSON.parse(l);
      return rest;
    });
}

let reference: { dir: string; params: Record<string, Record<string, number[]>>; log: unknown[] } | undefined;
/** The uninterrupted run every resumed run is compared with (computed once). */
async function uninterrupted() {
  if (!reference) {
    const dir = await mkdtemp(join(tmpdir(), 'dl-ref-'));
    await run(dir);
    reference = {
      dir,
      params: { std: await paramsOf(join(dir, 'std')), april: await paramsOf(join(dir, 'april')) },
      log: await logOf(dir),
    };
  }
  return reference;
}

async function expectSameAsUninterrupted(dir: string) {
  const ref = await uninterrupted();
  for (const name of ['std', 'april']) expect(await paramsOf(join(dir, name))).toEqual(ref.params[name]);
  expect(await logOf(dir)).toEqual(ref.log);
}

/** A pid that is certainly not running: a child that has already exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  return r.pid as number;
}

describe('resume', () => {
  it('after a crash: resumes from the checkpoint, cuts log.jsonl back to it, ends as an uninterrupted run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-crash-'));
    await expect(run(dir, { saveSteps: [8, 12], failAt: 18 })).rejects.toThrow('simulated crash');
    // The crashed run logged steps 4..16; a kill mid-write leaves a partial last line.
    expect((await logOf(dir)).map((e) => (e as { step: number }).step)).toEqual([4, 4, 8, 8, 12, 12, 16, 16]);
    await writeFile(join(dir, 'log.jsonl'), '{"trainer":"std","step":17,"tok', { flag: 'a' });
    const { notices, resumedFrom } = await run(dir, { resume: true, saveSteps: [8, 12] });
    expect(resumedFrom).toBe(12);
    expect(notices).toContain(`resuming from step 12 (checkpoint ${dir}/{std,april}/checkpoints/step_12)`);
    expect(notices).toContain('log.jsonl: dropped 3 lines after step 12');
    await expectSameAsUninterrupted(dir);
  });

  it('refuses --resume without a checkpoint; if-present starts from step 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-none-'));
    const err = await run(dir, { resume: true }).catch((e) => e);
    expect(err).toBeInstanceOf(RunStateError);
    expect(err.problem).toBe('no-checkpoint');
    expect(err.message).toContain(`no checkpoint to resume from in '${dir}'`);
    const { notices, resumedFrom } = await run(dir, { resume: 'if-present' });
    expect(resumedFrom).toBe(0);
    expect(notices).toContain(`no checkpoint in '${dir}' yet; starting from step 0`);
    await expectSameAsUninterrupted(dir);
  });

  it('refuses a changed configuration naming the field; steps may change; allowConfigChange records the new one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-cfg-'));
    await expect(run(dir, { saveSteps: [8], failAt: 10 })).rejects.toThrow('simulated crash');
    const changed = await run(dir, { resume: true, trainers: specs(0.002) }).catch((e) => e);
    expect(changed).toBeInstanceOf(RunStateError);
    expect(changed.message).toContain(
      `the configuration differs from the run in '${dir}/run.json': trainers[0].lr was 0.001, now 0.002`,
    );
    const data = await run(dir, { resume: true, dataSpec: { kind: 'test-batches', seed: 7 } }).catch(
      (e) => e,
    );
    expect(data.message).toContain('data.seed was 99, now 7');
    // A longer run is fine (the lr schedule has no decay here, so nothing else changes).
    const longer = await run(dir, { resume: true, steps: 30 });
    expect(longer.resumedFrom).toBe(8);
    expect(longer.notices).toContain('resuming with a changed configuration: steps was 24, now 30');
    const runJson = JSON.parse(await readFile(join(dir, 'run.json'), 'utf8'));
    expect(runJson.steps).toBe(30);

    const dir2 = await mkdtemp(join(tmpdir(), 'dl-cfg2-'));
    await expect(run(dir2, { saveSteps: [8], failAt: 10 })).rejects.toThrow('simulated crash');
    const allowed = await run(dir2, { resume: true, trainers: specs(0.002), allowConfigChange: true });
    expect(allowed.resumedFrom).toBe(8);
    expect(allowed.notices.join('\n')).toContain('(allowed): trainers[0].lr was 0.001, now 0.002');
    expect(JSON.parse(await readFile(join(dir2, 'run.json'), 'utf8')).trainers[0].lr).toBe(0.002);
  });

  it('a new run on a folder holding one is refused; restart removes its checkpoints and log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-exists-'));
    await run(dir, { saveSteps: [20] });
    const err = await run(dir, { saveSteps: [8] }).catch((e) => e);
    expect(err).toBeInstanceOf(RunStateError);
    expect(err.message).toContain(
      `'${dir}' holds an earlier run (checkpoints up to step 20, run.json, log.jsonl)`,
    );
    await expect(run(dir, { saveSteps: [8], failAt: 10, restart: true })).rejects.toThrow('simulated crash');
    // The old step_20 is gone, so resuming cannot pick up the earlier run's checkpoint.
    expect(await readdir(join(dir, 'std', 'checkpoints'))).toEqual(['step_8']);
    expect((await run(dir, { resume: true })).resumedFrom).toBe(8);
    await expectSameAsUninterrupted(dir);
  });

  it('falls back past a damaged newest checkpoint (truncated safetensors, bad state.json), naming it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-corrupt-'));
    await expect(run(dir, { saveSteps: [4, 8, 12], failAt: 14 })).rejects.toThrow('simulated crash');
    const st12 = join(dir, 'std', 'checkpoints', 'step_12', 'state.safetensors');
    await truncate(st12, (await stat(st12)).size - 100);
    await writeFile(join(dir, 'april', 'checkpoints', 'step_8', 'state.json'), '{"format": "dictlearn-tr');
    const { notices, resumedFrom } = await run(dir, { resume: true });
    expect(resumedFrom).toBe(4);
    expect(notices[0]).toMatch(
      new RegExp(`^checkpoint step_12 is damaged \\(${st12}: .*\\); falling back to step_8$`),
    );
    expect(notices[1]).toMatch(
      /^checkpoint step_8 is damaged \(.*april\/checkpoints\/step_8\/state.json: cannot read the trainer state: .*JSON.*\); falling back to step_4$/,
    );
    await expectSameAsUninterrupted(dir);
  });

  it('stops at a step on abort with a checkpoint there, and resumes from it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-abort-'));
    const ctl = new AbortController();
    const err = await run(dir, { onStep: (s) => s === 13 && ctl.abort(), signal: ctl.signal }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(TrainInterruptedError);
    expect([err.step, err.steps]).toEqual([13, STEPS]);
    expect(err.checkpoints).toEqual([`${dir}/std/checkpoints/step_13`, `${dir}/april/checkpoints/step_13`]);
    expect(await readdir(join(dir, 'std', 'checkpoints'))).toEqual(['step_13']);
    await expect(stat(join(dir, '.lock'))).rejects.toThrow(/ENOENT/);
    expect((await run(dir, { resume: true })).resumedFrom).toBe(13);
    await expectSameAsUninterrupted(dir);
    // Without an output folder nothing is saved, and the error says so.
    const ctl2 = new AbortController();
    const err2 = await run(undefined, { onStep: (s) => s === 3 && ctl2.abort(), signal: ctl2.signal }).catch(
      (e) => e,
    );
    expect(err2.message).toBe('train: interrupted at step 3/24; nothing was saved');
  });

  it('a timer (a signal handler) gets to abort a run that does no I/O: the loop yields to the event loop', async () => {
    const ctl = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ctl.abort(), 20);
    const err = await trainSAE({
      data: batches(5000),
      trainers: [specs()[0]],
      steps: 5000,
      logEvery: 0,
      signal: ctl.signal,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(TrainInterruptedError);
    expect(err.step).toBeLessThan(5000);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('removes temporaries of killed runs and puts back a checkpoint caught between renames', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-tmp-'));
    await expect(run(dir, { saveSteps: [4, 8], failAt: 10 })).rejects.toThrow('simulated crash');
    const dead = deadPid();
    const ck = join(dir, 'std', 'checkpoints');
    await mkdir(join(ck, `step_12.tmp-${dead}-1700000000000`));
    await writeFile(join(ck, `step_12.tmp-${dead}-1700000000000`, 'config.json'), '{');
    await writeFile(join(dir, `log.jsonl.tmp-${dead}-a1b2c3`), 'x');
    // Killed inside replaceDir: step_8 moved aside, its replacement not yet in place.
    const { rename } = await import('node:fs/promises');
    await rename(join(ck, 'step_8'), join(ck, `step_8.old-${dead}-1700000000000`));
    // A temporary of a live process (this one is alive, but not ours to judge: use the parent).
    const live = join(dir, `run.json.tmp-${process.ppid}-ffff`);
    await writeFile(live, '{');
    const { notices, resumedFrom } = await run(dir, { resume: true });
    expect(notices[0]).toBe(`removed 3 temporary files left by an interrupted run in '${dir}'`);
    expect(resumedFrom).toBe(8);
    expect((await readdir(ck)).sort()).toEqual(['step_4', 'step_8']);
    expect((await readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([
      `run.json.tmp-${process.ppid}-ffff`,
    ]);
    await expectSameAsUninterrupted(dir);
  });
});

describe('two runs on one folder', () => {
  it('the second is refused with the holder pid while the first runs; the lock goes with the first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-lock-'));
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const first = trainSAE({
      data: batches(40, { gate }),
      trainers: specs(),
      steps: 4,
      outDir: dir,
      onNotice: () => {},
    });
    // Wait until the first run holds the lock (it then blocks on the gated second batch).
    for (let i = 0; i < 200 && !(await stat(join(dir, '.lock')).catch(() => undefined)); i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const lock = JSON.parse(await readFile(join(dir, '.lock'), 'utf8'));
    expect(lock.pid).toBe(process.pid);
    // The same folder spelled differently (trailing slash) is the same lock.
    const err = await run(`${dir}/`).catch((e) => e);
    expect(err).toBeInstanceOf(RunStateError);
    expect(err.problem).toBe('in-use');
    expect(err.message).toContain(`'${dir}' is in use by pid ${process.pid} (started ${lock.started}`);
    open();
    const r = await first;
    for (const d of r.dictionaries) d.dispose();
    await expect(stat(join(dir, '.lock'))).rejects.toThrow(/ENOENT/);
  });

  it('takes over the lock of a process that is gone, with a notice', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-stale-'));
    const pid = deadPid();
    await writeFile(
      join(dir, '.lock'),
      JSON.stringify({ pid, hostname: hostname(), started: '2020-01-01T00:00:00.000Z' }),
    );
    const { notices } = await run(dir);
    expect(notices[0]).toBe(
      `took over '${dir}' from pid ${pid} (started 2020-01-01T00:00:00.000Z), which is no longer running`,
    );
    await expect(stat(join(dir, '.lock'))).rejects.toThrow(/ENOENT/);
    // A live holder (our parent process) is respected.
    await writeFile(
      join(dir, '.lock'),
      JSON.stringify({ pid: process.ppid, hostname: hostname(), started: '2020-01-01T00:00:00.000Z' }),
    );
    await expect(run(dir, { restart: true })).rejects.toThrow(`is in use by pid ${process.ppid}`);
    await rm(join(dir, '.lock'));
  });
});

describe('full disk', () => {
  it('ENOSPC while writing a checkpoint: one clear error, earlier checkpoints intact, no temporaries', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-full-ck-'));
    const err = await run(dir, {
      saveSteps: [8, 16],
      logEvery: 0,
      // After step_8 is written, leave room for part of the next checkpoint only.
      onStep: (s) => {
        if (s === 10) disk.budget = 1500;
      },
    }).catch((e) => e);
    expect(err.message).toMatch(
      /std\/checkpoints\/step_16: could not write the checkpoint of step 16: the disk is full \(ENOSPC: no space left on the device\); earlier checkpoints are kept$/,
    );
    expect(err.message.split('\n')).toHaveLength(1);
    disk.budget = Number.POSITIVE_INFINITY;
    expect(await readdir(join(dir, 'std', 'checkpoints'))).toEqual(['step_8']);
    expect(await readdir(join(dir, 'april', 'checkpoints'))).toEqual(['step_8']);
    const d = await Dictionary.load(join(dir, 'std', 'checkpoints', 'step_8'));
    d.dispose();
    expect((await run(dir, { resume: true, logEvery: 0 })).resumedFrom).toBe(8);
    for (const name of ['std', 'april']) {
      expect(await paramsOf(join(dir, name))).toEqual((await uninterrupted()).params[name]);
    }
  });

  it('ENOSPC while appending to log.jsonl: the log keeps whole lines only, and resume completes it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dl-full-log-'));
    const err = await run(dir, {
      saveSteps: [8],
      onStep: (s) => {
        // Room for half of step 12's two log lines.
        if (s === 11) disk.budget = 200;
      },
    }).catch((e) => e);
    expect(err.message).toBe(
      `${dir}/log.jsonl: could not log step 12: the disk is full (ENOSPC: no space left on the device); the log up to step 11 and the checkpoints written are intact`,
    );
    disk.budget = Number.POSITIVE_INFINITY;
    expect((await logOf(dir)).map((e) => (e as { step: number }).step)).toEqual([4, 4, 8, 8]);
    expect((await run(dir, { resume: true })).resumedFrom).toBe(8);
    await expectSameAsUninterrupted(dir);
  });
});
