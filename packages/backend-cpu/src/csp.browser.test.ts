import { compareValues } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROBE, type ProbeReport } from './csp-probe.js';

// The CPU backend under a content-security policy that forbids 'unsafe-eval' (no `new Function`,
// no eval), as on pages with a strict CSP. A policy added to this page now would come too late
// (its scripts are loaded), so the backend runs in a fresh frame whose policy is in force
// before any of its scripts: the frame imports the backend's modules from the test server
// and reports what it computed. Every value is checked against a reference computed here by hand.

// The repository compiles without the DOM library (one file cannot add it without adding it to
// every file), so the few browser objects used here are typed locally.
interface Frame {
  srcdoc: string;
  readonly contentWindow: unknown;
  remove(): void;
}
type MessageListener = (e: {
  source: unknown;
  data: { cspProbe?: ProbeReport & { error?: string } };
}) => void;
const browser = globalThis as unknown as {
  document: { createElement(tag: 'iframe'): Frame; body: { append(node: Frame): void } };
  addEventListener(type: 'message', listener: MessageListener): void;
  removeEventListener(type: 'message', listener: MessageListener): void;
};

/** Loads `csp-probe.ts` into a frame with policy `csp` and returns its report. */
async function probeUnder(csp: string): Promise<ProbeReport & { error?: string }> {
  const nonce = 'dictlearn-csp-test';
  const probeUrl = new URL('./csp-probe.ts', import.meta.url).href;
  const frame = browser.document.createElement('iframe');
  const reported = new Promise<ProbeReport & { error?: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the frame reported nothing within 30 s')), 30_000);
    const onMessage: MessageListener = (e) => {
      if (e.source !== frame.contentWindow || !e.data?.cspProbe) return;
      clearTimeout(timer);
      browser.removeEventListener('message', onMessage);
      resolve(e.data.cspProbe);
    };
    browser.addEventListener('message', onMessage);
  });
  frame.srcdoc = `<!doctype html>
<meta http-equiv="Content-Security-Policy" content="${csp.replaceAll('NONCE', nonce)}">
<script type="module" nonce="${nonce}">
  const send = (report) => parent.postMessage({ cspProbe: report }, '*');
  import(${JSON.stringify(probeUrl)})
    .then((m) => m.runProbe())
    .then(send, (e) => send({ error: String((e && e.stack) || e) }));
</script>`;
  browser.document.body.append(frame);
  try {
    return await reported;
  } finally {
    frame.remove();
  }
}

// Hand-computed references, in float64 from the probe's inputs.
const rowsOf = (v: readonly number[], cols: number) =>
  Array.from({ length: v.length / cols }, (_, r) => v.slice(r * cols, r * cols + cols));
const matmulRef = (a: number[][], b: number[][]) =>
  a.map((r) => b[0].map((_, j) => r.reduce((s, v, k) => s + v * b[k][j], 0)));
const T = (m: number[][]) => m[0].map((_, j) => m.map((r) => r[j]));
const map2 = (a: number[][], f: (v: number, i: number, j: number) => number) =>
  a.map((r, i) => r.map((v, j) => f(v, i, j)));

function elementwiseRefs(): Record<string, number[]> {
  const A = rowsOf(PROBE.a, 4);
  const B = rowsOf(PROBE.b, 2);
  const row = PROBE.row;
  const col = PROBE.col;
  const relu = (v: number) => Math.max(v, 0);
  const e = (f: (v: number, i: number, j: number) => number) => map2(A, f).flat();
  return {
    matmul: matmulRef(A, B).flat(),
    addRow: e((v, _i, j) => v + row[j]),
    mulCol: e((v, i) => v * col[i]),
    subScalar: e((v) => 2 - v),
    // [3, 1, 4] / [1, 3, 1] → [3, 3, 4]: the general broadcast (no row or column pattern).
    divGeneral: A.flatMap((r) => [1, 2, 4].flatMap((d) => r.map((v) => v / d))),
    exp: e((v) => Math.exp(v)),
    sqrtAbs: e((v) => Math.sqrt(Math.abs(v))),
    pow3: e((v) => v ** 3),
    sign: e((v) => Math.sign(v) + 0),
    relu: e(relu),
    step: e((v) => (v > 0.5 ? 1 : 0)),
    maximum: e((v, i) => Math.max(v, col[i])),
    minimum: e((v, _i, j) => Math.min(v, row[j])),
    greater: e((v) => (v > 0 ? 1 : 0)),
    where: e((v, _i, j) => (v > 0 ? v : row[j])),
    biasRelu: e((v, _i, j) => relu(v + row[j])),
  };
}

/** Loss, gradients (by backpropagation written out) and the loss after one SGD step. */
function trainingRefs(): Record<string, number[]> {
  const X = rowsOf(PROBE.x, 3);
  const n = X.length;
  const forward = (w1: number[][], b1: number[], w2: number[][]) => {
    const pre = map2(matmulRef(X, w1), (v, _i, j) => v + b1[j]);
    const f = map2(pre, (v) => Math.max(v, 0));
    const r = map2(matmulRef(f, w2), (v, i, j) => v - X[i][j]);
    const loss = r.flat().reduce((s, v) => s + v * v, 0) / n;
    return { pre, f, r, loss };
  };
  const w1 = rowsOf(PROBE.wEnc, 2);
  const b1 = [...PROBE.bEnc];
  const w2 = rowsOf(PROBE.wDec, 3);
  const { pre, f, r, loss } = forward(w1, b1, w2);
  const dr = map2(r, (v) => (2 * v) / n);
  const gW2 = matmulRef(T(f), dr);
  const dpre = map2(matmulRef(dr, T(w2)), (v, i, j) => (pre[i][j] > 0 ? v : 0));
  const gW1 = matmulRef(T(X), dpre);
  const gB1 = T(dpre).map((c) => c.reduce((s, v) => s + v, 0));
  const step = (p: number[][], g: number[][]) => map2(p, (v, i, j) => v - PROBE.lr * g[i][j]);
  const after = forward(
    step(w1, gW1),
    b1.map((v, j) => v - PROBE.lr * gB1[j]),
    step(w2, gW2),
  );
  return {
    loss: [loss],
    gWEnc: gW1.flat(),
    gBEnc: gB1,
    gWDec: gW2.flat(),
    lossAfter: [after.loss],
  };
}

describe('the CPU backend under a CSP without unsafe-eval', () => {
  const policy = "default-src 'self'; script-src 'self' 'nonce-NONCE'";
  let report: ProbeReport & { error?: string };
  beforeAll(async () => {
    report = await probeUnder(policy);
  }, 60_000);

  it('the policy is in force: new Function throws an EvalError in the frame (not in this page)', () => {
    expect(new Function('return 1')()).toBe(1);
    expect(report.error).toBeUndefined();
    expect(report.evalError).toBe('EvalError');
    expect(report.codegen).toBe(false);
  });

  it('matmul and elementwise ops (every broadcast pattern) match hand-computed values', () => {
    expect(report.error).toBeUndefined();
    for (const [key, want] of Object.entries(elementwiseRefs())) {
      expect(compareValues(report.values[key], want, { rtol: 1e-6, atol: 1e-6 }, key)).toBeNull();
    }
  });

  it('a training step (loss, gradients, SGD update) matches backpropagation written out by hand', () => {
    expect(report.error).toBeUndefined();
    const refs = trainingRefs();
    for (const [key, want] of Object.entries(refs)) {
      expect(compareValues(report.values[key], want, { rtol: 1e-5, atol: 1e-6 }, key)).toBeNull();
    }
    expect(refs.lossAfter[0]).toBeLessThan(refs.loss[0]);
  });

  it('without the policy the same frame generates its loops (the check above is not vacuous)', async () => {
    const open = await probeUnder("script-src 'self' 'nonce-NONCE' 'unsafe-eval'");
    expect(open.error).toBeUndefined();
    expect(open.evalError).toBeNull();
    expect(open.codegen).toBe(true);
    expect(open.values.matmul).toEqual(report.values.matmul);
  }, 60_000);
});
