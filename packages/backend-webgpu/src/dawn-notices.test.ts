// Dawn's two limit notices are filtered from fd 2 on the first requestAdapter; everything else
// Dawn (or anyone) prints meanwhile still reaches stderr.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { findGpu, withoutDawnLimitNotices } from './device.js';

const NOTICES = [
  'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.',
  'Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 500000 to 16 to fit dynamic offset allocation limit.',
];

/** Runs `fn` with fd 2 sent to a scratch file (libc dup/dup2 through koffi); returns what reached fd 2. */
async function captureFd2(fn: () => Promise<unknown>): Promise<string | undefined> {
  let koffi: typeof import('koffi');
  try {
    koffi = ((await import('koffi')) as unknown as { default: typeof import('koffi') }).default;
  } catch {
    return undefined;
  }
  const libc = koffi.load('libc.so.6');
  const dup = libc.func('int dup(int)') as (fd: number) => number;
  const dup2 = libc.func('int dup2(int, int)') as (a: number, b: number) => number;
  const path = `${tmpdir()}/dawn-notices-test-${process.pid}`;
  const scratch = openSync(path, 'w+');
  unlinkSync(path);
  const saved = dup(2);
  dup2(scratch, 2);
  try {
    await fn();
  } finally {
    dup2(saved, 2);
    closeSync(saved);
  }
  const size = fstatSync(scratch).size;
  const bytes = Buffer.alloc(size);
  if (size > 0) readSync(scratch, bytes, 0, size, 0);
  closeSync(scratch);
  return bytes.toString('utf8');
}

const hasDawn = await import('webgpu').then(
  () => process.platform === 'linux',
  () => false,
);

describe("Dawn's limit notices", () => {
  it('withoutDawnLimitNotices drops exactly the two notices and keeps every other line', () => {
    const other = 'Warning: something else Dawn says.\n';
    const text = `${NOTICES[0]}\n${other}${NOTICES[1]}\nlast line without newline`;
    expect(withoutDawnLimitNotices(text)).toBe(`${other}last line without newline`);
    // A notice with other text on its line is not one of them.
    expect(withoutDawnLimitNotices(`x ${NOTICES[0]}\n`)).toBe(`x ${NOTICES[0]}\n`);
  });

  it.skipIf(!hasDawn)(
    'the first requestAdapter prints neither notice (skipped without the webgpu package on Linux)',
    async () => {
      const gpu = await findGpu();
      let adapter: GPUAdapter | null = null;
      const printed = await captureFd2(async () => {
        adapter = await gpu.requestAdapter();
      });
      expect(printed, 'koffi is needed to watch fd 2').toBeDefined();
      expect(printed).not.toContain('artificially reduced');
      expect(adapter).not.toBeNull();
    },
  );

  // The built package, as the CLI loads it: koffi must stay an import of the installed package
  // (bundled into dist, it cannot find its native binary, and the filter silently turned off).
  const dist = new URL('../dist/index.js', import.meta.url);
  it.skipIf(!hasDawn || !existsSync(dist))(
    'the built dist starts the backend without printing either notice (skipped without a build or Dawn)',
    () => {
      const script = `const m = await import(${JSON.stringify(dist.href)});
const b = m.createWebGPUBackend({ name: 'dawn-notice-check' });
await b.init();
process.stdout.write('started');`;
      // A user's plain environment: the test runner's variables (npm_*, paths into node_modules)
      // let the bundled copy of koffi find its binary and hid the fault this test exists for.
      const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
      const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env,
      });
      expect(run.stdout).toBe('started');
      expect(run.stderr).not.toContain('artificially reduced');
    },
  );
});
