// The shipped PTX: up to date with the CUDA sources (everywhere), assembled by ptxas for each
// target without errors and within a register / spill budget (where ptxas is), equal to a fresh
// nvcc compile (where the same nvcc is), and Philox (philox.cuh, built for the host by nvcc)
// against core's known-answer vectors.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs build script, no declarations
import { findNvcc, sourceHash } from '../scripts/build-ptx.mjs';
import { readPtxManifest } from './device.js';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const manifest = readPtxManifest();
// Core's Philox known-answer fixture (made by numpy, independently of any dictlearn code).
const PHILOX_FIXTURE = JSON.parse(
  readFileSync(
    join(
      dirname(createRequire(import.meta.url).resolve('@dictlearn/core/package.json')),
      'src/testing/fixtures/philox.json',
    ),
    'utf8',
  ),
) as {
  blocks: { counter: number[]; key: number[]; words: number[] }[];
  draws: { key: number[]; stream: number; n: number; words: number[] }[];
};
const nvcc = findNvcc() as { path: string; version: string } | undefined;
const ptxas = (() => {
  for (const c of [nvcc?.path.replace(/nvcc$/, 'ptxas'), 'ptxas']) {
    if (!c) continue;
    try {
      execFileSync(c, ['--version'], { stdio: 'ignore' });
      return c;
    } catch {}
  }
  return undefined;
})();

/**
 * Register budget per thread: 64 keeps 4 blocks of 256 threads resident per SM on every target
 * (65536 registers / (64 × 256) = 4); the heaviest kernel measured uses 40 (topk_rows, sm_90).
 */
const MAX_REGISTERS = 64;

it('ptx/ was compiled from the current src/kernels (rerun node scripts/build-ptx.mjs after editing them)', () => {
  expect(manifest.sourceHash).toBe(sourceHash());
  expect(manifest.targets).toEqual(['75', '80', '90']);
});

describe.skipIf(!ptxas)(
  `ptxas assembles the shipped PTX${ptxas ? '' : ' (skipped: ptxas not found; install the CUDA toolkit)'}`,
  () => {
    for (const file of manifest.files) {
      it(`${file}: no errors, ≤ ${MAX_REGISTERS} registers, no spills, no stack`, () => {
        const target = /sm_(\d+)/.exec(file)![1];
        // ptxas -v reports on stderr.
        const r = spawnSync(
          'nice',
          ['-n', '19', ptxas!, `-arch=sm_${target}`, '-v', join(pkg, 'ptx', file), '-o', '/dev/null'],
          {
            encoding: 'utf8',
          },
        );
        const log = `${r.stdout}${r.stderr}`;
        expect(r.status, log).toBe(0);
        expect(log).not.toMatch(/error/i);
        const regs = [...log.matchAll(/Used (\d+) registers/g)].map((m) => Number(m[1]));
        expect(regs.length).toBeGreaterThan(0);
        expect(Math.max(...regs)).toBeLessThanOrEqual(MAX_REGISTERS);
        for (const m of log.matchAll(
          /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/g,
        )) {
          expect([m[1], m[2], m[3]].map(Number)).toEqual([0, 0, 0]);
        }
      }, 60_000);
    }
  },
);

const sameNvcc = nvcc && nvcc.version === manifest.nvcc;
it.skipIf(!sameNvcc)(
  `a fresh nvcc compile equals the checked-in PTX${sameNvcc ? '' : ` (skipped: ${nvcc ? `nvcc ${nvcc.version} differs from ${manifest.nvcc}, which compiled ptx/` : 'nvcc not found'})`}`,
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dl-ptx-'));
    try {
      // In a child process, awaited: a minute of synchronous compiling would starve the test
      // worker's messages to vitest (its RPC times out).
      await promisify(execFile)(process.execPath, [join(pkg, 'scripts', 'build-ptx.mjs'), '--out', dir]);
      const fresh = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as typeof manifest;
      const files = [...fresh.files];
      expect(fresh.sourceHash).toBe(manifest.sourceHash);
      expect(files.sort()).toEqual([...manifest.files].sort());
      for (const f of files)
        expect(readFileSync(join(dir, f), 'utf8'), f).toBe(readFileSync(join(pkg, 'ptx', f), 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  600_000,
);

it.skipIf(!nvcc)(
  `philox.cuh (the device generator) gives core's known-answer words${nvcc ? '' : ' (skipped: nvcc not found)'}`,
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'dl-philox-'));
    try {
      const exe = join(dir, 'philox-host');
      execFileSync('nice', ['-n', '19', nvcc!.path, '-O2', '-o', exe, join(pkg, 'test', 'philox-host.cu')], {
        stdio: 'inherit',
      });
      const lines = [
        ...PHILOX_FIXTURE.blocks.map((b) => `block ${b.counter.join(' ')} ${b.key.join(' ')}`),
        ...PHILOX_FIXTURE.draws.map((d) => `draw ${d.key.join(' ')} ${d.stream} ${d.n}`),
      ];
      const out = execFileSync(exe, { input: `${lines.join('\n')}\n`, encoding: 'utf8' })
        .trim()
        .split('\n');
      const want = [
        ...PHILOX_FIXTURE.blocks.map((b) => b.words),
        ...PHILOX_FIXTURE.draws.map((d) => d.words),
      ];
      expect(out.map((l) => l.split(' ').map(Number))).toEqual(want);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  120_000,
);
