// OpenBLAS's kernels: as OpenBLAS detects them by default (blasKernels: 'detect', the variable
// hidden from the library's load only), as OPENBLAS_CORETYPE says with blasKernels: 'environment';
// and the default route, which takes OpenBLAS first only where its kernels are AVX-512 ones.
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
  route: string = "'blas'",
): { description: string; coretype: string | null } {
  const script = `const { createCpuBackend } = await import(${JSON.stringify(dist.href)});
const b = createCpuBackend({ name: 'k', fastMatmul: ${route}${kernels ? `, blasKernels: '${kernels}'` : ''} });
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
  it("'detect' (the default) runs the kernels OpenBLAS picks without OPENBLAS_CORETYPE, and leaves the variable set; 'environment' the ones it names", () => {
    const pinned = child({ OPENBLAS_CORETYPE: 'Prescott' }, 'environment');
    expect(pinned.description).toContain('Prescott kernels');
    const unset = child({ OPENBLAS_CORETYPE: undefined, OPENBLAS_L2_SIZE: undefined });
    expect(unset.description).not.toContain('Prescott');
    const byDefault = child({ OPENBLAS_CORETYPE: 'Prescott' });
    expect(byDefault.description).toBe(unset.description);
    expect(byDefault.coretype).toBe('Prescott'); // put back once the library has loaded
    expect(child({ OPENBLAS_CORETYPE: 'Prescott' }, 'detect').description).toBe(unset.description);
  });

  it('splits products over the kernel threads, as many parts as the threads option allows', () => {
    expect(child({}, undefined, "'blas', kernelThreads: 2").description).toMatch(
      /products split over 2 threads\)$/,
    );
    expect(child({}, undefined, "'blas', kernelThreads: 2, threads: 1").description).toMatch(
      /, 1 threads\)$/,
    );
    expect(child({}, undefined, "'blas', kernelThreads: 1").description).not.toMatch(/split/);
  });

  it('the default route takes OpenBLAS where its kernels are AVX-512 ones, onnxruntime before other kernels', () => {
    // Prescott kernels (SSE3): onnxruntime comes first
    expect(child({ OPENBLAS_CORETYPE: 'Prescott' }, 'environment', 'true').description).toMatch(
      /^onnxruntime-node/,
    );
    expect(child({ OPENBLAS_CORETYPE: 'SkylakeX' }, 'environment', 'true').description).toMatch(
      /^OpenBLAS .*SkylakeX kernels/,
    );
    // detected kernels: OpenBLAS where this CPU gets AVX-512 ones
    const detected = child({}, undefined, 'true').description;
    const core = /, (\w+) kernels/.exec(unset().description)?.[1];
    if (core && ['SkylakeX', 'Cooperlake', 'SapphireRapids'].includes(core))
      expect(detected).toMatch(/^OpenBLAS/);
    else expect(detected).toMatch(/^onnxruntime-node/);
  });
});

const unset = () => child({ OPENBLAS_CORETYPE: undefined, OPENBLAS_L2_SIZE: undefined });
