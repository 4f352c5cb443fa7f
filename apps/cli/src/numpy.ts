import { spawnSync } from 'node:child_process';

/** One product to time: op(A)·op(B) with A stored [aRows, aCols], B stored [bRows, bCols]. */
export interface ProductSpec {
  /** Label, e.g. `x·W_enc`. */
  name: string;
  /** Output rows. */
  m: number;
  /** Output columns. */
  n: number;
  /** Inner dimension. */
  k: number;
  /** A is used transposed. */
  transA: boolean;
  /** B is used transposed. */
  transB: boolean;
}

/** numpy's timing of the products, or why there is none. */
export type NumpyResult =
  | { available: true; version: string; variant: string; seconds: number[] }
  | { available: false; reason: string };

const SCRIPT = `
import json, sys, time
import numpy as np
specs = json.loads(sys.argv[1]); reps = int(sys.argv[2])
rng = np.random.default_rng(0)
out = []
for s in specs:
    a = rng.standard_normal((s['k'], s['m']) if s['transA'] else (s['m'], s['k']), dtype=np.float32)
    b = rng.standard_normal((s['n'], s['k']) if s['transB'] else (s['k'], s['n']), dtype=np.float32)
    A = a.T if s['transA'] else a
    B = b.T if s['transB'] else b
    A @ B
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); A @ B; best = min(best, time.perf_counter() - t)
    out.append(best)
print(json.dumps({'version': np.__version__, 'seconds': out}))
`;

/**
 * Times the products with numpy in a child python3 (best of `reps`). `unsetCoretype` removes
 * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for that process alone: some machines set them for old
 * OpenBLAS builds, and they slow a current numpy down.
 */
export function timeNumpy(specs: ProductSpec[], reps: number, unsetCoretype: boolean): NumpyResult {
  const env = { ...process.env };
  if (unsetCoretype) {
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
  }
  const r = spawnSync('python3', ['-c', SCRIPT, JSON.stringify(specs), String(reps)], {
    env,
    encoding: 'utf8',
    timeout: 600_000,
  });
  if (r.error) return { available: false, reason: `python3 could not run: ${r.error.message}` };
  if (r.status !== 0) {
    const last = r.stderr.trim().split('\n').pop() ?? '';
    return { available: false, reason: `python3 with numpy failed: ${last}` };
  }
  const parsed = JSON.parse(r.stdout) as { version: string; seconds: number[] };
  const variant = unsetCoretype
    ? 'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset'
    : `environment as is${process.env.OPENBLAS_CORETYPE ? ` (OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE})` : ''}`;
  return { available: true, version: parsed.version, variant, seconds: parsed.seconds };
}
