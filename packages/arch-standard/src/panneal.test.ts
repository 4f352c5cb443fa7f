import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  type ArchitecturePlugin,
  loadTrainerState,
  memory,
  registerBackend,
  type StepLogs,
  saveTrainerState,
  scope,
  Trainer,
  tensor,
  useBackend,
  valueAndGrad,
} from '@dictlearn/core';
import { compareValues, describeStepFixture, type StepFixture } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import fixture from './fixtures/panneal-steps.json' with { type: 'json' };
import { factories } from './index.js';
import { lpPenalty, type PAnnealConfig, PAnnealer, pAnneal } from './panneal.js';
import { standard } from './standard.js';

// Four optimisation steps of each L_p variant against torch autograd running dictionary_learning's
// PAnnealTrainer logic (scripts/make-panneal-fixture.py): loss, logs (p and the adapted
// coefficient), every gradient and every parameter after ConstrainedAdam.

const fx = fixture as unknown as StepFixture<Partial<PAnnealConfig>>;

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

const GRAD_TOL = { rtol: 1e-4, atol: 1e-6 };
const PARAM_TOL = { rtol: 1e-5, atol: 1e-5 };

describeStepFixture('p-anneal (%s): training steps match torch', fx, (c) => pAnneal(c), {
  grad: GRAD_TOL,
  param: PARAM_TOL,
});

describe('pAnneal plugin', () => {
  it('before annealing starts it is the standard SAE with λ = sparsityPenalty', async () => {
    const sizes = { activationDim: 5, dictSize: 7 };
    const a = pAnneal({ sparsityPenalty: 0.3 });
    const b = standard({ l1Penalty: 0.3 });
    const p = a.init(sizes, { seed: 4 });
    const x = tensor(
      Array.from({ length: 20 }, (_, i) => Math.sin(i * 1.7)),
      [4, 5],
    );
    const vals = await Promise.all(
      [a, b].map(async (arch) => (await arch.loss(p, x, { step: 3, sparsityScale: 0.5 }).loss.data())[0]),
    );
    expect(vals[0]).toBeCloseTo(vals[1], 6);
    expect(a.training).toEqual(b.training);
  });

  it('the L_p gradient is finite and 0 where f = 0, for p < 1 and both functions', async () => {
    const f = tensor([
      [0, 0.5, 2],
      [0, 0, 0],
    ]);
    for (const fn of ['Lp', 'Lp^p'] as const) {
      const { value, grads } = valueAndGrad(() => lpPenalty(f, 0.5, fn), [f]);
      const g = Array.from(await grads.get(f)!.data());
      const s = Math.sqrt(0.5) + Math.sqrt(2);
      expect((await value.data())[0]).toBeCloseTo(fn === 'Lp' ? s ** 2 / 2 : s / 2, 5);
      // d/df of (Σ f^½)² / 2 = s·f^(−½)/2; of Σ f^½ / 2 = f^(−½)/4.
      const want = [0, 0.5 ** -0.5, 2 ** -0.5].map((v) => (fn === 'Lp' ? (s * v) / 2 : v / 4));
      expect(compareValues(g, [...want, 0, 0, 0], { rtol: 1e-5, atol: 0 })).toBeNull();
    }
  });

  it('a resumed step rebuilds p from the schedule; annealEnd −1 needs the run’s step count', async () => {
    const schedule = {
      sparsityFunction: 'Lp' as const,
      sparsityPenalty: 0.1,
      annealStart: 10,
      annealEnd: 20,
      pStart: 1,
      pEnd: 0,
      sparsityUpdates: 3,
      sparsityQueueLength: 10,
    };
    const f = tensor([[0.5, 1]]);
    // Updates at steps 10, 15, 20 to p = 1, 0.5, 0: the loss of step 16 uses p = 0.5, next 0.
    const a = new PAnnealer(schedule);
    const at16 = a.step(f, { step: 16, sparsityScale: 1 });
    expect([at16.before.p, at16.before.nextP, at16.before.count]).toEqual([0.5, 0, 2]);
    expect(a.step(f, { step: 9, sparsityScale: 1 }).before.p).toBe(1);
    const open = new PAnnealer({ ...schedule, annealEnd: -1 });
    expect(open.step(f, { step: 9, sparsityScale: 1 }).after.p).toBe(1);
    expect(() => open.step(f, { step: 10, sparsityScale: 1 })).toThrow(
      "p-anneal: annealEnd is −1 (the run's step count) but the trainer did not pass the step count; set annealEnd",
    );
    const ctx = { step: 16, sparsityScale: 1, totalSteps: 20 };
    expect(new PAnnealer({ ...schedule, annealEnd: -1 }).step(f, ctx).before.p).toBe(0.5);
  });

  it("a Trainer passes the run's step count, so annealEnd = −1 (the default) anneals to the end", async () => {
    const arch = pAnneal({ annealStart: 2, pEnd: 0.5, sparsityUpdates: 3 });
    const trainer = new Trainer({ architecture: arch, dictSize: 12, lr: 1e-3, warmupSteps: 0 }, 6, 8);
    const x = tensor(
      Array.from({ length: 48 }, (_, i) => Math.sin(i * 0.7)),
      [8, 6],
    );
    const ps: number[] = [];
    for (let i = 0; i < 8; i++) ps.push((await trainer.update(x, true)).p);
    // updates at linspace(2, 8, 3) = 2, 5, 8 to p = linspace(1, 0.5, 3) = 1, 0.75, 0.5
    expect(ps[ps.length - 1]).toBeLessThan(1);
    trainer.dispose();
    x.dispose();
  });

  it('the annealing state does not leak tensors over a run (updates, queue, repeated steps)', async () => {
    const arch = pAnneal({
      annealStart: 2,
      annealEnd: 40,
      pEnd: 0.2,
      sparsityUpdates: 12,
      sparsityQueueLength: 3,
    });
    const trainer = new Trainer({ architecture: arch, dictSize: 12, lr: 1e-3, warmupSteps: 0 }, 6, 50);
    const x = tensor(
      Array.from({ length: 48 }, (_, i) => Math.cos(i * 0.9)),
      [8, 6],
    );
    const live: number[] = [];
    for (let s = 0; s < 45; s++) {
      if (s % 3 === 0)
        scope(() => arch.loss(trainer.params(), x, { step: s, sparsityScale: 1 }).loss).dispose();
      const logs = await trainer.update(x, s % 2 === 0);
      if (s % 2 === 0) expect(Number.isFinite(logs.sparsity_coeff)).toBe(true);
      live.push(memory().tensors);
    }
    // After the first adaptation the state holds α and the queue, plus the next α on an update
    // step: the count moves by at most one and does not grow.
    const tail = live.slice(10);
    expect(Math.max(...tail) - Math.min(...tail)).toBeLessThanOrEqual(1);
    trainer.dispose();
    // With annealEnd before the run's end, p reaches pEnd; p = 0 is an error, not a NaN loss.
    const zero = pAnneal({ annealStart: 0, annealEnd: 1, sparsityUpdates: 2 });
    for (const step of [0, 1])
      zero.loss(zero.init({ activationDim: 6, dictSize: 4 }, { seed: 1 }), x, { step, sparsityScale: 1 });
    expect(() =>
      zero.loss(zero.init({ activationDim: 6, dictSize: 4 }, { seed: 1 }), x, { step: 2, sparsityScale: 1 }),
    ).toThrow('p-anneal: step 2: p reached 0; L_p needs p > 0');
  });

  it('configs are validated with the field named; the register entry lists p-anneal', () => {
    expect(() => pAnneal({ sparsityFunction: 'L1' as never })).toThrow(
      "p-anneal: field 'sparsityFunction' must be 'Lp' or 'Lp^p', got \"L1\"",
    );
    expect(() => pAnneal({ sparsityUpdates: 0 })).toThrow(
      "p-anneal: field 'sparsityUpdates' must be an integer ≥ 1",
    );
    expect(() => pAnneal({ annealEnd: -2 })).toThrow("p-anneal: field 'annealEnd'");
    expect(pAnneal().config).toEqual({
      sparsityFunction: 'Lp',
      sparsityPenalty: 0.1,
      annealStart: 15000,
      annealEnd: -1,
      pStart: 1,
      pEnd: 0,
      sparsityUpdates: 10,
      sparsityQueueLength: 10,
      encoderBiasInit: 'zero',
    });
    expect(factories.map((f) => f.name)).toEqual(['standard', 'april-update', 'tied', 'p-anneal']);
  });
});

// Resume: the oracle is the uninterrupted run of the same trainer on the same batches; a run
// checkpointed halfway and resumed by a fresh trainer and plugin must match it bit for bit (CPU
// reference backend), logs included.
const RESUME_STEPS = 16;
// annealEnd −1 = the run's 16 steps: p updates at steps 2, 5, 9, 12 (linspace(2, 16, 5), 16
// excluded). Before step 4, α is still the configured number and the queue holds one row; before
// step 9, α was adapted at step 5 and the queue (3 rows) is full, and step 9 adapts α from it.
const RESUME_SCHEDULE = { annealStart: 2, pEnd: 0.2, sparsityUpdates: 5, sparsityQueueLength: 3 };

function resumeBatch(step: number) {
  return tensor(
    Array.from({ length: 48 }, (_, i) => Math.sin(i * 0.7 + step * 1.3) + 0.3),
    [8, 6],
  );
}

async function trainSteps(trainer: Trainer, from: number, to: number): Promise<StepLogs[]> {
  const logs: StepLogs[] = [];
  for (let s = from; s < to; s++) {
    const x = resumeBatch(s);
    logs.push(await trainer.update(x, true));
    x.dispose();
  }
  return logs;
}

async function paramValues(trainer: Trainer): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(trainer.vars)) out[k] = Array.from(await v.value.data());
  return out;
}

/**
 * Trains RESUME_STEPS straight, and again with a checkpoint after `at` steps that a fresh trainer
 * (and plugin) resumes; `edit` may alter the checkpoint folder first. Returns both runs' logs of
 * the steps after `at`, final parameters, and the notices of the resume.
 */
async function resumeAgainstStraight(
  makeArch: () => ArchitecturePlugin<object>,
  at: number,
  edit?: (dir: string) => Promise<void>,
) {
  const make = () =>
    new Trainer(
      { architecture: makeArch(), dictSize: 12, lr: 1e-2, warmupSteps: 0, sparsityWarmupSteps: 3, seed: 3 },
      6,
      RESUME_STEPS,
    );
  const dir = await mkdtemp(join(tmpdir(), 'dictlearn-panneal-'));
  try {
    const straight = make();
    const straightLogs = (await trainSteps(straight, 0, RESUME_STEPS)).slice(at);
    const first = make();
    await trainSteps(first, 0, at);
    await saveTrainerState(first, dir, { scale: 1, batchesConsumed: at });
    first.dispose();
    await edit?.(dir);
    const notices: string[] = [];
    const resumed = make();
    await loadTrainerState(resumed, dir, (m) => notices.push(m));
    const resumedLogs = await trainSteps(resumed, at, RESUME_STEPS);
    const result = {
      straight: { logs: straightLogs, params: await paramValues(straight) },
      resumed: { logs: resumedLogs, params: await paramValues(resumed) },
      notices,
    };
    for (const t of [straight, resumed]) t.dispose();
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('p-anneal resume', () => {
  it('a run resumed from a checkpoint trains bit for bit as the uninterrupted one (α and queue saved)', async () => {
    for (const fn of ['Lp', 'Lp^p'] as const) {
      for (const at of [4, 9]) {
        const r = await resumeAgainstStraight(
          () => pAnneal({ ...RESUME_SCHEDULE, sparsityFunction: fn }),
          at,
        );
        expect(r.notices).toEqual([]);
        expect(r.resumed.logs).toEqual(r.straight.logs);
        expect(r.resumed.params).toEqual(r.straight.params);
      }
    }
    // The comparison has teeth: α moved from its configured 0.1 before the checkpoint.
    const r = await resumeAgainstStraight(() => pAnneal(RESUME_SCHEDULE), 9);
    expect(r.straight.logs[0].sparsity_coeff).not.toBeCloseTo(0.1, 3);
    expect(r.straight.logs.map((l) => l.p)).toEqual([0.6, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4].map(Math.fround));
  });

  it('a checkpoint without the annealing state (an older version) loads with a notice; α restarts', async () => {
    const r = await resumeAgainstStraight(
      () => pAnneal(RESUME_SCHEDULE),
      9,
      async (dir) => {
        const info = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8'));
        expect(info.archState).toEqual(['coeff', 'queue']);
        delete info.archState;
        await writeFile(join(dir, 'state.json'), JSON.stringify(info));
      },
    );
    expect(r.notices).toHaveLength(1);
    expect(r.notices[0]).toMatch(
      /the checkpoint holds no 'p-anneal' training state \(an older version\); it restarts from the configuration/,
    );
    // Restarted: the queue holds only step 9's row when α adapts, so α differs; p does not.
    expect(r.resumed.logs.map((l) => l.p)).toEqual(r.straight.logs.map((l) => l.p));
    expect(r.resumed.logs[0].sparsity_coeff).not.toBe(r.straight.logs[0].sparsity_coeff);
  });

  it('load checks the state it is given and changes nothing when it does not fit', async () => {
    const a = new PAnnealer({ ...pAnneal(RESUME_SCHEDULE).config, annealEnd: 20 });
    const f = tensor([[0.5, 1]]);
    const q = (n: number) => ({ shape: [n, 2], data: new Float32Array(2 * n).fill(1) });
    a.load({ coeff: { shape: [], data: new Float32Array([0.25]) }, queue: q(2) }, 9);
    expect(() => a.load({ queue: q(4) }, 9)).toThrow(
      "p-anneal: training state of step 9: 'queue' is [4,2], expected [n, 2] with 1 ≤ n ≤ 3",
    );
    expect(() => a.load({ coeff: { shape: [1], data: new Float32Array([0.2]) } }, 9)).toThrow(
      "'coeff' is [1], expected []",
    );
    expect(() => a.load({ coeff: { shape: [], data: new Float32Array([Number.NaN]) } }, 9)).toThrow(
      "'coeff' holds a non-finite value",
    );
    expect(() => a.load({ alpha: q(1) }, 9)).toThrow("unknown entry 'alpha'");
    // The refused loads left the first one: what it saves before step 9 is what it was given,
    // and step 9's loss starts from it.
    expect(await a.save(9)).toEqual({
      coeff: { shape: [], data: new Float32Array([0.25]) },
      queue: q(2),
    });
    const { before } = a.step(f, { step: 9, sparsityScale: 1 });
    expect((await (before.coeff as ReturnType<typeof tensor>).data())[0]).toBe(0.25);
    expect(before.queue?.shape).toEqual([2, 2]);
  });
});
