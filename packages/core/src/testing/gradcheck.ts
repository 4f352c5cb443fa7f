import { findBackend } from '../backend.js';
import { fromHost, scope, valueAndGrad } from '../engine.js';
import { DictlearnError, fmtShape } from '../errors.js';
import { mul, sum } from '../ops/index.js';
import { philoxUniform } from '../random.js';
import type { Tensor } from '../tensor.js';
import { compareValues, type Tolerance } from './compare.js';

/** Options of {@link checkGradients}. */
export interface GradCheckOptions {
  /** Backend to run on; it must implement `readFloat64` (a float64 CPU backend). */
  backend: string;
  /** Finite-difference step (default 1e-6). */
  eps?: number;
  /** Tolerance between autograd and finite differences (default rtol 1e-5, atol 1e-7). */
  tolerance?: Tolerance;
  /** Which inputs to differentiate (default: every float32 input). */
  wrt?: number[];
  /** Seed of the random projection of the output (default 7). */
  seed?: number;
}

/** Result of {@link checkGradients}: null when every gradient agrees, else the mismatches. */
export interface GradCheckResult {
  /** Mismatch messages, one per input that disagrees; empty when all agree. */
  errors: string[];
  /** The analytic gradients per differentiated input (float64 values). */
  analytic: Float64Array[];
  /** The central-difference gradients per differentiated input. */
  numeric: Float64Array[];
}

/**
 * Checks the autograd gradients of `fn` at `inputs` against central finite differences,
 * computed in float64 on a high-precision backend. The scalar differentiated is
 * Σ fn(inputs) ⊙ R for a fixed random R, so every output element's gradient is exercised.
 * Inputs are given as host values with shapes so the checker can perturb them in float64.
 */
export async function checkGradients(
  fn: (...inputs: Tensor[]) => Tensor,
  inputs: { values: ArrayLike<number>; shape: readonly number[]; dtype?: 'float32' | 'int32' }[],
  options: GradCheckOptions,
): Promise<GradCheckResult> {
  const backend = findBackend(options.backend);
  if (!backend?.readFloat64) {
    throw new DictlearnError(
      'checkGradients',
      `backend '${options.backend}' cannot read float64 values; use createCpuBackend({ name, precision: 'float64' })`,
    );
  }
  const eps = options.eps ?? 1e-6;
  const tol = options.tolerance ?? { rtol: 1e-5, atol: 1e-7 };
  const wrt =
    options.wrt ??
    inputs.map((x, i) => ((x.dtype ?? 'float32') === 'float32' ? i : -1)).filter((i) => i >= 0);
  const hosts = inputs.map((x) =>
    x.dtype === 'int32' ? Int32Array.from(x.values) : Float64Array.from(x.values),
  );
  const make = (i: number, values: Float64Array | Int32Array) =>
    fromHost(values, inputs[i].shape, inputs[i].dtype ?? 'float32', options.backend);
  const read = (t: Tensor) => backend.readFloat64!(t.storage.data, t.size);

  const objective = (ts: Tensor[]) => projected(fn, ts, options.seed, options.backend);
  const evalAt = (values: (Float64Array | Int32Array)[]): number =>
    scope(() => {
      const ts = values.map((h, i) => make(i, h));
      return read(objective(ts))[0];
    });

  const analytic = await analyticGradients(fn, inputs, {
    backend: options.backend,
    wrt,
    seed: options.seed,
    read,
  });

  const numeric = wrt.map((i) => {
    const base = hosts[i] as Float64Array;
    const g = new Float64Array(base.length);
    for (let j = 0; j < base.length; j++) {
      const orig = base[j];
      const h = eps * Math.max(1, Math.abs(orig));
      base[j] = orig + h;
      const up = evalAt(hosts);
      base[j] = orig - h;
      const down = evalAt(hosts);
      base[j] = orig;
      g[j] = (up - down) / (2 * h);
    }
    return g;
  });

  const errors: string[] = [];
  wrt.forEach((i, n) => {
    const msg = compareValues(analytic[n], numeric[n], tol, `d/d input ${i} ${fmtShape(inputs[i].shape)}`);
    if (msg) errors.push(msg);
  });
  return { errors, analytic, numeric };
}

/** Σ fn(ts) ⊙ R with R uniform in [-1, 1) from the Philox stream of `seed`, shaped like the output. */
function projected(fn: (...inputs: Tensor[]) => Tensor, ts: Tensor[], seed = 7, backend?: string): Tensor {
  const y = fn(...ts);
  const r = philoxUniform(y.size, seed, 0, -1, 1);
  return sum(mul(y, fromHost(r, y.shape, 'float32', backend ?? y.backend)));
}

/**
 * Autograd gradients of Σ fn(inputs) ⊙ R (the objective {@link checkGradients} uses) on any
 * backend, read back as float64 — for comparing a backend's gradients with finite differences.
 */
export async function analyticGradients(
  fn: (...inputs: Tensor[]) => Tensor,
  inputs: { values: ArrayLike<number>; shape: readonly number[]; dtype?: 'float32' | 'int32' }[],
  options: { backend: string; wrt?: number[]; seed?: number; read?: (t: Tensor) => Float64Array },
): Promise<Float64Array[]> {
  const wrt =
    options.wrt ??
    inputs.map((x, i) => ((x.dtype ?? 'float32') === 'float32' ? i : -1)).filter((i) => i >= 0);
  const gradTensors = scope(() => {
    const ts = inputs.map((x) =>
      fromHost(
        x.dtype === 'int32' ? Int32Array.from(x.values) : Float64Array.from(x.values),
        x.shape,
        x.dtype ?? 'float32',
        options.backend,
      ),
    );
    const params = wrt.map((i) => ts[i]);
    const { value, grads } = valueAndGrad(() => projected(fn, ts, options.seed, options.backend), params);
    value.dispose();
    return params.map((p) => grads.get(p)!);
  });
  const out: Float64Array[] = [];
  for (const g of gradTensors) {
    out.push(options.read ? options.read(g) : Float64Array.from(await g.data()));
    g.dispose();
  }
  return out;
}
