// `dictlearn train` as a separate process, killed, interrupted and run twice on one folder.
// The CLI is bundled from the TypeScript sources once (esbuild, which tsup brings), so these
// tests need no `pnpm build` and test the code as it is. The oracle for "resumed correctly" is
// an uninterrupted run of the same configuration: the final dictionary must be the same bytes.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { workspaceAliases } from '../../../workspace-aliases.js';
import { catchInterrupts, formatDuration, Progress, resumeCommand } from './commands/train.js';

/** The part of esbuild's API used here (esbuild is tsup's dependency, not ours, so no types). */
interface Esbuild {
  build(options: {
    plugins: {
      name: string;
      setup(build: {
        onResolve(
          options: { filter: RegExp },
          callback: (args: { path: string }) => { path: string } | undefined,
        ): void;
      }): void;
    }[];
    [option: string]: unknown;
  }): Promise<unknown>;
}

const root = fileURLToPath(new URL('../../../', import.meta.url));
let cli: string;
let bundleDir: string | undefined;
afterAll(async () => {
  if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
});

beforeAll(async () => {
  const tsup = createRequire(join(root, 'package.json')).resolve('tsup');
  const esbuild = (await import(pathToFileURL(createRequire(tsup).resolve('esbuild')).href)) as Esbuild;
  const aliases = workspaceAliases();
  bundleDir = await mkdtemp(join(tmpdir(), 'dl-cli-bundle-'));
  cli = join(bundleDir, 'main.mjs');
  await esbuild.build({
    entryPoints: [join(root, 'apps/cli/src/main.ts')],
    outfile: cli,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'error',
    // Native addons never loaded here: the WebGPU binding (--backend cpu) and resvg (the report
    // command's PNGs, imported on first use).
    external: ['webgpu', '@resvg/resvg-js'],
    // Bundled CommonJS dependencies (yaml's Node build) call require().
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    plugins: [
      {
        name: 'workspace-sources',
        setup(build) {
          build.onResolve({ filter: /^@dictlearn\// }, (a) => {
            const hit = aliases.find((x) => x.find.test(a.path));
            return hit ? { path: hit.replacement } : undefined;
          });
        },
      },
    ],
  });
}, 60_000);

/** d=16, F=32, batch 64 on the CPU backend: tiny, so a step takes well under a millisecond. */
const BASE = [
  'train',
  '--dim',
  '16',
  '--num-features',
  '24',
  '--dict-size',
  '32',
  '--batch-size',
  '64',
  '--l1',
  '0.05',
  '--backend',
  'cpu',
  '--log-every',
  '50',
];

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();
// A failed test must not leave a million-step run behind.
afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
});

function start(args: string[]): { child: ChildProcess; done: Promise<Exit>; stderr: () => string } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<Exit>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, done, stderr: () => stderr };
}

const runCli = (args: string[]) => start(args).done;

async function waitFor(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The single trainer folder of a run (named after the architecture and penalty). */
async function trainerDir(out: string): Promise<string> {
  const dirs = (await readdir(out, { withFileTypes: true })).filter((e) => e.isDirectory());
  expect(dirs).toHaveLength(1);
  return join(out, dirs[0].name);
}

const TRAINER = '0_standard_l1Penalty=0.05';

async function logWithoutTimes(out: string): Promise<unknown[]> {
  const text = await readFile(join(out, 'log.jsonl'), 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .trim()
    .split('\n')
    .map((l) => {
      const { elapsed: _e, ...rest } = JSON.parse(l);
      return rest;
    });
}

/** Final dictionary and log of `out` are those of an uninterrupted run of `steps` steps. */
async function expectSameAsUninterrupted(out: string, steps: number): Promise<void> {
  const ref = await mkdtemp(join(tmpdir(), 'dl-ref-'));
  const r = await runCli([...BASE, '--steps', String(steps), '--out', ref]);
  expect(r.code).toBe(0);
  const a = await readFile(join(out, TRAINER, 'sae.safetensors'));
  const b = await readFile(join(ref, TRAINER, 'sae.safetensors'));
  expect(a.equals(b)).toBe(true);
  expect(await logWithoutTimes(out)).toEqual(await logWithoutTimes(ref));
}

// The interrupted runs ask for a million steps, so they are surely still running when the test
// acts; the resumed run then asks for fewer (`steps` is the one setting a resume may change, and
// without lr decay it changes nothing else), so it ends where a short uninterrupted run does.
const LONG = ['--steps', '1000000'];

describe('dictlearn train, interrupted', () => {
  it('kill -9 after a checkpoint: --resume takes over the stale lock, resumes from it, ends bit for bit as an uninterrupted run', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dl-kill-'));
    const run = start([...BASE, ...LONG, '--save-steps', '100,200', '--out', out]);
    const ck = join(out, TRAINER, 'checkpoints', 'step_200');
    // Kill once the log is past the checkpoint, so the resume has lines to cut back.
    const logPath = join(out, 'log.jsonl');
    await waitFor(
      'step_200 and a log line past it',
      () => existsSync(ck) && existsSync(logPath) && readFileSync(logPath, 'utf8').includes('"step":250,'),
    );
    run.child.kill('SIGKILL');
    const killed = await run.done;
    expect(killed.signal).toBe('SIGKILL');
    // The kill leaves its lock behind (and, depending on timing, log lines past step 200).
    expect(JSON.parse(await readFile(join(out, '.lock'), 'utf8')).pid).toBe(run.child.pid);

    const resumed = await runCli([
      ...BASE,
      '--steps',
      '300',
      '--save-steps',
      '100,200',
      '--out',
      out,
      '--resume',
    ]);
    expect(resumed.stderr).toContain(`took over '${out}' from pid ${run.child.pid} (started `);
    expect(resumed.stderr).toContain(`resuming from step 200 (checkpoint ${ck})`);
    expect(resumed.stderr).toContain('resuming with a changed configuration: steps was 1000000, now 300');
    expect(resumed.code).toBe(0);
    expect(existsSync(join(out, '.lock'))).toBe(false);
    expect(await trainerDir(out)).toBe(join(out, TRAINER));
    await expectSameAsUninterrupted(out, 300);
  });

  it('SIGINT: saves a checkpoint at the current step, says how to resume, exits 130; the resume ends as an uninterrupted run', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dl-int-'));
    const args = [...BASE, ...LONG, '--save-steps', '100', '--out', out];
    const run = start(args);
    await waitFor('step_100', () => existsSync(join(out, TRAINER, 'checkpoints', 'step_100')));
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    const m = /interrupted at step (\d+)\/1000000; checkpoint saved to (\S+); resume with: (.*)\n/.exec(
      r.stderr,
    );
    expect(m, r.stderr).not.toBeNull();
    const step = Number(m![1]);
    expect(step).toBeGreaterThanOrEqual(100);
    expect(m![2]).toBe(join(out, TRAINER, 'checkpoints', `step_${step}`));
    expect(m![3]).toBe(`dictlearn train ${args.slice(1).join(' ')} --resume`);
    expect(r.stderr).toContain('SIGINT: stopping after the current step to save a checkpoint');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(out, '.lock'))).toBe(false);
    const steps = (await readdir(join(out, TRAINER, 'checkpoints'))).sort();
    expect(steps).toEqual(step === 100 ? ['step_100'] : ['step_100', `step_${step}`]);

    const total = step + 50;
    const resumed = await runCli(['train', ...m![3].split(' ').slice(2), '--steps', String(total)]);
    expect(resumed.stderr).toContain(`resuming from step ${step} (checkpoint ${m![2]})`);
    expect(resumed.code).toBe(0);
    await expectSameAsUninterrupted(out, total);
  });

  it('--resume with no checkpoint refuses naming the folder; --resume-or-start starts', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dl-nock-'));
    const r = await runCli([...BASE, '--steps', '60', '--out', out, '--resume']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`dictlearn train: no checkpoint to resume from in '${out}'`);
    expect(r.stderr).toContain('pass --resume-or-start to start from step 0 when there is no checkpoint');
    const s = await runCli([...BASE, '--steps', '60', '--out', out, '--resume-or-start']);
    expect(s.stderr).toContain(`no checkpoint in '${out}' yet; starting from step 0`);
    expect(s.code).toBe(0);
    // Now the folder holds a run: a plain run refuses, a changed flag on resume is named.
    const again = await runCli([...BASE, '--steps', '60', '--out', out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`'${out}' holds an earlier run (run.json, log.jsonl); pass --resume`);
    const changed = await runCli([...BASE, '--steps', '60', '--out', out, '--save-steps', '30', '--restart']);
    expect(changed.code).toBe(0);
    const lr = await runCli([...BASE, '--steps', '60', '--out', out, '--resume', '--lr', '0.01']);
    expect(lr.code).toBe(1);
    expect(lr.stderr).toMatch(
      /trainers\[0\]\.lr was [0-9.e-]+, now 0\.01; resume with the same settings, or pass --allow-config-change/,
    );
  });
});

describe('dictlearn train, two runs on one --out', () => {
  it('the second is refused with the pid of the first', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dl-two-'));
    const first = start([...BASE, ...LONG, '--out', out]);
    await waitFor('the lock', () => existsSync(join(out, '.lock')));
    const holder = JSON.parse(await readFile(join(out, '.lock'), 'utf8'));
    expect(holder.pid).toBe(first.child.pid);
    for (const extra of [[], ['--resume']]) {
      const second = await runCli([...BASE, '--steps', '10', '--out', out, ...extra]);
      expect(second.code).toBe(1);
      expect(second.stderr).toContain(
        `dictlearn train: '${out}' is in use by pid ${first.child.pid} (started ${holder.started}`,
      );
      expect(second.stderr).toContain('wait for it or pass a different --out');
    }
    first.child.kill('SIGINT');
    expect((await first.done).code).toBe(130);
    expect(existsSync(join(out, '.lock'))).toBe(false);
  });
});

describe('dictlearn train, full disk', () => {
  it('on a tiny tmpfs: one clear error, whole log lines and checkpoints, and the run resumes elsewhere', async (ctx) => {
    const mnt = await mkdtemp(join(tmpdir(), 'dl-tmpfs-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=192k', 'tmpfs', mnt]);
    if (mounted.status !== 0) {
      await rm(mnt, { recursive: true, force: true });
      ctx.skip(); // needs root to mount a tmpfs; the fake-disk tests in core cover ENOSPC everywhere
      return;
    }
    try {
      const out = join(mnt, 'run');
      const saves = Array.from({ length: 20 }, (_, i) => (i + 1) * 50).join(',');
      const r = await runCli([
        ...BASE,
        '--steps',
        '1000',
        '--log-every',
        '5',
        '--save-steps',
        saves,
        '--out',
        out,
      ]);
      expect(r.code).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines.at(-1)).toMatch(
        /^dictlearn train: .*the disk is full \(ENOSPC: no space left on the device\)/,
      );
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(join(out, '.lock'))).toBe(false);
      // Whatever was written is whole: copy it to a real disk and resume to the end.
      const copy = await mkdtemp(join(tmpdir(), 'dl-after-full-'));
      await cp(out, copy, { recursive: true });
      const kept = await readdir(join(copy, TRAINER, 'checkpoints'));
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.filter((n) => !/^step_\d+$/.test(n))).toEqual([]);
      const resumed = await runCli([
        ...BASE,
        '--steps',
        '1000',
        '--log-every',
        '5',
        '--save-steps',
        saves,
        '--out',
        copy,
        '--resume',
      ]);
      expect(resumed.code).toBe(0);
      const ref = await mkdtemp(join(tmpdir(), 'dl-ref-'));
      expect((await runCli([...BASE, '--steps', '1000', '--log-every', '5', '--out', ref])).code).toBe(0);
      const a = await readFile(join(copy, TRAINER, 'sae.safetensors'));
      expect(a.equals(await readFile(join(ref, TRAINER, 'sae.safetensors')))).toBe(true);
      expect(await logWithoutTimes(copy)).toEqual(await logWithoutTimes(ref));
    } finally {
      spawnSync('umount', [mnt]);
      await rm(mnt, { recursive: true, force: true });
    }
  });
});

describe('signal handling', () => {
  it('the first SIGINT aborts the run, a second one exits at once with 130; SIGTERM gives 143', () => {
    const said: string[] = [];
    const exits: number[] = [];
    const exit = vi.spyOn(process, 'exit').mockImplementation(((code: number) => {
      exits.push(code);
    }) as typeof process.exit);
    try {
      const c = catchInterrupts((t) => said.push(t));
      process.emit('SIGINT', 'SIGINT');
      expect(c.signal.aborted).toBe(true);
      expect(exits).toEqual([]);
      expect(c.exitCode()).toBe(130);
      process.emit('SIGINT', 'SIGINT');
      expect(exits).toEqual([130]);
      expect(said).toEqual([
        'SIGINT: stopping after the current step to save a checkpoint (Ctrl-C again to quit at once)',
        'SIGINT again: quitting at once (the last checkpoint is kept)',
      ]);
      c.dispose();
      expect(process.listenerCount('SIGINT')).toBe(0);
      const t = catchInterrupts(() => {});
      process.emit('SIGTERM', 'SIGTERM');
      expect([t.signal.aborted, t.exitCode()]).toEqual([true, 143]);
      t.dispose();
    } finally {
      exit.mockRestore();
    }
  });
});

describe('progress', () => {
  it('piped output: a line every pipeEvery seconds and at the end, with step/total, rate and ETA', () => {
    let now = 100;
    const lines: string[] = [];
    const p = new Progress({
      total: 1000,
      tty: false,
      now: () => now,
      pipeEvery: 10,
      write: (t) => lines.push(t),
    });
    now = 102; // 2 s of start-up before the first step is not counted in the rate
    p.update(1, 64);
    now = 107;
    p.update(101, 6464); // not yet 10 s since the start
    now = 112.5;
    p.update(201, 12864); // 200 steps, 12800 rows in 10.5 s
    now = 120;
    p.update(300, 19200); // < 10 s since the last line
    now = 140;
    p.update(1000, 64000);
    expect(lines).toEqual([
      // 12800/10.5 = 1219.05 tok/s; 799 steps left at 200/10.5 steps/s = 41.9 s
      'step 201/1000 (20.1%) 1219 tok/s, elapsed 13s, ETA 42s',
      // 63936 rows in 38 s
      'step 1000/1000 (100.0%) 1683 tok/s, elapsed 40s, ETA 0s',
    ]);
  });

  it('terminal: the bar shows elapsed time and ETA', () => {
    let now = 0;
    const lines: string[] = [];
    const p = new Progress({ total: 100, tty: true, now: () => now, write: (t) => lines.push(t) });
    p.update(1, 10);
    now = 30;
    p.update(51, 510, 'std: loss 1.000');
    expect(lines.at(-1)).toBe(
      '[############............] 51/100 17 tok/s elapsed 30s, ETA 29s | std: loss 1.000',
    );
    expect(formatDuration(3725)).toBe('1h02m');
    expect(formatDuration(65)).toBe('1m05s');
  });

  it('the resume hint repeats the command with --resume, quoted for a shell', () => {
    expect(resumeCommand(['--out', 'my runs/a', '--restart', '--l1', '0.1'])).toBe(
      "dictlearn train --out 'my runs/a' --l1 0.1 --resume",
    );
  });
});
