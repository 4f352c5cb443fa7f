// OpenBLAS's kernels on the 'blas' route: as OPENBLAS_CORETYPE says by default, as OpenBLAS
// detects them with blasKernels: 'detect' (the variable hidden from the library's load only).
// OpenBLAS reads the variable once per process, so each case loads it in a child process, from
// the built package. Prescott: a core OpenBLAS knows and no current CPU is detected as.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadBlasMatmul } from './blas-matmul.js';

const dist = new URL('../../dist/index.js', import.meta.url);
const blas = loadBlasMatmul();
const why =
  typeof blas === 'string'
    ? `OpenBLAS unavailable: ${blas}`
    : !existsSync(dist)
      ? 'backend-cpu is not built (the cases load dist/ in a child process)'
      : undefined;

/** The fast path's description and OPENBLAS_CORETYPE after the load, in a fresh process. */
function child(
  env: Record<string, string | undefined>,
  kernels?: string,
): { description: string; coretype: string | null } {
  const script = `const { createCpuBackend } = await import(${JSON.stringify(dist.href)});
const b = createCpuBackend({ name: 'k', fastMatmul: 'blas'${kernels ? `, blasKernels: '${kernels}'` : ''} });
await b.init();
console.log(JSON.stringify({ description: b.fastPath.description ?? b.fastPath.reason, coretype: process.env.OPENBLAS_CORETYPE ?? null }));`;
  const full: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...env })) if (v !== undefined) full[k] = v;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: full,
    encoding: 'utf8',
  });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!);
}

describe.skipIf(why !== undefined)(`OpenBLAS kernels${why ? ` (skipped: ${why})` : ''}`, () => {
  it("'environment' runs the kernels OPENBLAS_CORETYPE names; 'detect' the ones OpenBLAS picks without it, and leaves the variable set", () => {
    const pinned = child({ OPENBLAS_CORETYPE: 'Prescott' });
    expect(pinned.description).toContain('Prescott kernels');
    const unset = child({ OPENBLAS_CORETYPE: undefined, OPENBLAS_L2_SIZE: undefined });
    expect(unset.description).not.toContain('Prescott');
    const detected = child({ OPENBLAS_CORETYPE: 'Prescott' }, 'detect');
    expect(detected.description).toBe(unset.description);
    expect(detected.coretype).toBe('Prescott'); // put back once the library has loaded
    expect(child({ OPENBLAS_CORETYPE: 'Prescott' }, 'environment').description).toBe(pinned.description);
  });
});
