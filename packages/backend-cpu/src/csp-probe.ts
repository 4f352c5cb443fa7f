/**
 * Runs the CPU backend in the page that loads it and reports what it computed: the browser
 * test `csp.browser.test.ts` loads this module into a frame whose content-security policy
 * forbids 'unsafe-eval', and checks the numbers against references computed by hand.
 * Not part of the package's API.
 * @internal
 * @packageDocumentation
 */
import {
  abs,
  add,
  biasRelu,
  div,
  exp,
  greater,
  initBackend,
  matmul,
  maximum,
  mean,
  minimum,
  mul,
  pow,
  registerBackend,
  relu,
  scope,
  sign,
  sqrt,
  square,
  step,
  sub,
  sum,
  type Tensor,
  tensor,
  useBackend,
  valueAndGrad,
  where,
} from '@dictlearn/core';
import { createCpuBackend } from './backend.js';

/** The inputs of the probe (row-major), shared with the test's hand-computed references. */
export const PROBE = {
  /** A [3, 4] matrix with negatives, zeros and fractions. */
  a: [1, -2, 0.5, 3, 0, 4, -1.5, 2, -3, 1, 2, -0.25],
  /** A [4, 2] matrix. */
  b: [2, 1, -1, 0.5, 3, -2, 0.25, 4],
  /** A row [4] (broadcast over rows). */
  row: [10, -20, 30, -40],
  /** A column [3, 1] (broadcast over columns). */
  col: [1, 2, -3],
  /** Training data x [4, 3]. */
  x: [1, 0.5, -1, 0.2, -0.3, 0.8, -0.6, 1.2, 0.4, 0.9, -0.7, -0.2],
  /** Encoder [3, 2]. */
  wEnc: [0.5, -0.4, 0.3, 0.8, -0.6, 0.2],
  /** Encoder bias [2]. */
  bEnc: [0.1, -0.05],
  /** Decoder [2, 3]. */
  wDec: [0.7, -0.2, 0.4, -0.3, 0.9, 0.5],
  /** SGD learning rate. */
  lr: 0.1,
} as const;

/** What the probe reports; `error` instead when something threw. */
export interface ProbeReport {
  /** The error `new Function` threw in this page (its name), or null when it ran. */
  evalError: string | null;
  /** Whether the backend generated its elementwise loops. */
  codegen: boolean;
  /** Values computed on the backend, by name. */
  values: Record<string, number[]>;
}

/** Creates, starts and exercises a CPU backend in this page. */
export async function runProbe(): Promise<ProbeReport> {
  let evalError: string | null = null;
  try {
    new Function('return 1')();
  } catch (e) {
    evalError = (e as Error).name;
  }
  const cpu = registerBackend(createCpuBackend({ name: 'cpu' }));
  await initBackend(cpu);
  await useBackend('cpu');
  const values: Record<string, number[]> = {};
  const put = async (key: string, t: Tensor) => {
    values[key] = Array.from(await t.data());
  };
  const held = scope(() => {
    const a = tensor(PROBE.a, [3, 4]);
    const b = tensor(PROBE.b, [4, 2]);
    const row = tensor(PROBE.row, [4]);
    const col = tensor(PROBE.col, [3, 1]);
    return {
      matmul: matmul(a, b),
      addRow: add(a, row),
      mulCol: mul(a, col),
      subScalar: sub(2, a),
      divGeneral: div(tensor(PROBE.a, [3, 1, 4]), tensor([1, 2, 4], [1, 3, 1])),
      exp: exp(a),
      sqrtAbs: sqrt(abs(a)),
      pow3: pow(a, 3),
      sign: sign(a),
      relu: relu(a),
      step: step(a, 0.5),
      maximum: maximum(a, col),
      minimum: minimum(a, row),
      greater: greater(a, 0),
      where: where(greater(a, 0), a, row),
      biasRelu: biasRelu(a, row),
    };
  });
  for (const [key, t] of Object.entries(held)) await put(key, t);

  // One SGD step of a tiny SAE: relu(x·W_enc + b_enc)·W_dec, loss mean_n Σ_j (x̂ − x)².
  const x = tensor(PROBE.x, [4, 3]);
  const params = [tensor(PROBE.wEnc, [3, 2]), tensor(PROBE.bEnc, [2]), tensor(PROBE.wDec, [2, 3])];
  const loss = (p: Tensor[]) => {
    const f = biasRelu(matmul(x, p[0]), p[1]);
    return mean(sum(square(sub(matmul(f, p[2]), x)), -1));
  };
  const { value, grads } = valueAndGrad(() => loss(params), params);
  await put('loss', value);
  const names = ['gWEnc', 'gBEnc', 'gWDec'];
  for (let i = 0; i < params.length; i++) await put(names[i], grads.get(params[i])!);
  const next = params.map((p) => sub(p, mul(grads.get(p)!, PROBE.lr)));
  await put(
    'lossAfter',
    scope(() => loss(next)),
  );
  return { evalError, codegen: cpu.codegen, values };
}
