import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder of the Python reference scripts (apps/cli/python), found from this module's location. */
function pythonDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'python', 'numpy_step.py'))) return join(dir, 'python');
    dir = dirname(dir);
  }
  throw new Error('the numpy reference scripts (apps/cli/python) are missing');
}

/** Runs one of the reference scripts with python3; parses its JSON output. */
function runPython(
  script: string,
  args: string[],
  unsetCoretype: boolean,
): { ok: true; value: unknown } | { ok: false; reason: string } {
  const env = { ...process.env };
  if (unsetCoretype) {
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
  }
  let path: string;
  try {
    path = join(pythonDir(), script);
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  const r = spawnSync('python3', [path, ...args], { env, encoding: 'utf8', timeout: 600_000 });
  if (r.error) return { ok: false, reason: `python3 could not run: ${r.error.message}` };
  if (r.status !== 0) {
    const last = r.stderr.trim().split('\n').pop() ?? '';
    return { ok: false, reason: `python3 with numpy failed: ${last}` };
  }
  return { ok: true, value: JSON.parse(r.stdout) };
}

/** Label of a numpy environment variant. */
function variantLabel(unsetCoretype: boolean): string {
  return unsetCoretype
    ? 'OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset'
    : `environment as is${process.env.OPENBLAS_CORETYPE ? ` (OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE})` : ''}`;
}

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

/**
 * Times the products with numpy in a child python3 (best of `reps`). `unsetCoretype` removes
 * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for that process alone: some machines set them for old
 * OpenBLAS builds, and they slow a current numpy down.
 */
export function timeNumpy(specs: ProductSpec[], reps: number, unsetCoretype: boolean): NumpyResult {
  const r = runPython('numpy_matmul.py', [JSON.stringify(specs), String(reps)], unsetCoretype);
  if (!r.ok) return { available: false, reason: r.reason };
  const parsed = r.value as { version: string; seconds: number[] };
  return {
    available: true,
    version: parsed.version,
    variant: variantLabel(unsetCoretype),
    seconds: parsed.seconds,
  };
}

/** numpy's time for one full Standard training step, or why there is none. */
export type NumpyStepResult =
  | { available: true; version: string; variant: string; seconds: number }
  | { available: false; reason: string };

/** Times one Standard SAE training step (forward, backward, ConstrainedAdam) in numpy: best of `reps`. */
export function timeNumpyStep(
  batch: number,
  d: number,
  features: number,
  reps: number,
  unsetCoretype: boolean,
): NumpyStepResult {
  const r = runPython(
    'numpy_step.py',
    [String(batch), String(d), String(features), String(reps)],
    unsetCoretype,
  );
  if (!r.ok) return { available: false, reason: r.reason };
  const parsed = r.value as { version: string; seconds: number };
  return {
    available: true,
    version: parsed.version,
    variant: variantLabel(unsetCoretype),
    seconds: parsed.seconds,
  };
}

/**
 * Times one TopK SAE training step written the dense way in numpy (numpy_topk_step.py: encoder
 * product, top-k by argpartition, dense decode, hand-written dense backward, ConstrainedAdam).
 */
export function timeNumpyTopkStep(
  batch: number,
  d: number,
  features: number,
  k: number,
  reps: number,
  unsetCoretype: boolean,
): NumpyStepResult {
  const r = runPython(
    'numpy_topk_step.py',
    [String(batch), String(d), String(features), String(k), String(reps)],
    unsetCoretype,
  );
  if (!r.ok) return { available: false, reason: r.reason };
  const parsed = r.value as { version: string; seconds: number };
  return {
    available: true,
    version: parsed.version,
    variant: variantLabel(unsetCoretype),
    seconds: parsed.seconds,
  };
}
