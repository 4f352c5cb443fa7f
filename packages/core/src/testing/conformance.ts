import { beforeAll, describe, expect, it } from 'vitest';
import { findBackend, initBackend, useBackend } from '../backend.js';
import { fromHost, keep, runOp, scope, Variable, valueAndGrad } from '../engine.js';
import { getKernel, type Kernel, type OpName, registerKernel, unregisterKernel } from '../kernel-registry.js';
import * as ops from '../ops/index.js';
import { type AdamHyper, adamUpdate, normalizeRows, removeParallelComponent } from '../optim.js';
import { philoxUniform } from '../random.js';
import { broadcastShapes } from '../shape.js';
import { memory, type Tensor } from '../tensor.js';
import { compareValues, type Tolerance } from './compare.js';
import fixtures from './fixtures/ops.json' with { type: 'json' };
import { analyticGradients, checkGradients } from './gradcheck.js';
import { OP_TABLE } from './op-table.js';
import { PHILOX_FIXTURE, seedOfPhiloxKey } from './philox-fixture.js';

/** One tensor of a fixture case. */
export interface FixtureTensor {
  /** Shape. */
  shape: number[];
  /** Element type. */
  dtype: 'float32' | 'int32';
  /** Row-major values. */
  values: number[];
}

/** One numpy-computed case of `fixtures/ops.json` (made by `scripts/make-op-fixtures.py`). */
export interface FixtureCase {
  /** Unique case name. */
  name: string;
  /** Key into the op table. */
  op: string;
  /** Op attributes. */
  attrs: Record<string, unknown>;
  /** Inputs. */
  inputs: FixtureTensor[];
  /** numpy's outputs. */
  outputs: FixtureTensor[];
  /** Whether the case gets a gradient check. */
  grad: boolean;
}

/** The numpy fixtures the conformance suite checks every backend against. */
export const OP_FIXTURES: FixtureCase[] = (fixtures as { cases: FixtureCase[] }).cases;

/**
 * Inputs whose gradient a case checks, where not every float32 input: a `where` condition is not
 * differentiable, nor is the mask f of `reluGradRowSum` (its fixture has f = 0 exactly, where a
 * finite difference crosses the step).
 */
const GRAD_WRT: Record<string, number[]> = { where: [1, 2], reluGradRowSum: [0, 1] };

/**
 * The composite ops: core composes them from other ops and a backend may fuse them. The
 * conformance suite finds which ops are composite (an op that still runs when its kernel is
 * removed) and checks that finding against this list, so a new composite op cannot go untested.
 */
export const COMPOSITE_OPS: readonly OpName[] = [
  'adamUpdate',
  'batchTopkEncode',
  'biasRelu',
  'broadcastTo',
  'clipByGlobalNorm',
  'l1Norm',
  'l2Norm',
  'linearBiasRelu',
  'linearBiasReluSum',
  'mean',
  'normalizeRows',
  'reluGrad',
  'reluGradRowSum',
  'removeParallelComponent',
  'sparseDecode',
  'sparseDot',
  'sparseOuter',
  'topkEncode',
];

/**
 * Finite-difference steps other than the default 1e-6, where the default step is too coarse:
 * Adam's √v at v ~ 1e-3 curves enough that a 1e-6 step is off by ~1e-5 relative.
 */
const GRADCHECK_EPS: Record<string, number> = { adamUpdate: 1e-8 };

/** Composite fixture cases whose gradient is not checked under a fused kernel, with why. */
const NO_FUSED_GRADCHECK: Record<string, string> = {
  clipByGlobalNorm: 'not differentiable by contract: it runs without recording',
  adamUpdate_small_v: 'v ~ 1e-11 is smaller than the finite-difference step',
  topkEncode_ties: 'tied pre-activations: a finite difference changes which features are kept',
  batchTopkEncode_ties: 'tied pre-activations: a finite difference changes which features are kept',
};

/** Options of {@link conformanceSuite}. */
export interface ConformanceOptions {
  /** The backend under test (registered; the suite starts it). */
  backend: string;
  /** Backend it is compared with, op by op (default `'cpu'`; skipped when it is the backend under test). */
  reference?: string;
  /**
   * A float64 backend (`createCpuBackend({ name, precision: 'float64' })`) for finite-difference
   * gradients. Required: every differentiable op's gradient is checked against it.
   */
  gradientBackend: string;
  /** Tolerance against numpy fixtures and the reference (default rtol 2e-6·…, see below). */
  tolerance?: Tolerance;
  /** Tolerance of the backend's float32 gradients against float64 finite differences (default rtol 1e-4, atol 1e-5). */
  gradientTolerance?: Tolerance;
  /** When set, every test is reported skipped with this reason (e.g. no GPU on this machine). */
  skip?: string;
}

function upload(t: FixtureTensor, backend: string): Tensor {
  return fromHost(
    t.dtype === 'int32' ? Int32Array.from(t.values) : Float32Array.from(t.values),
    t.shape,
    t.dtype,
    backend,
  );
}

async function runCase(
  c: FixtureCase,
  backend: string,
): Promise<{ shape: number[]; dtype: string; values: number[] }[]> {
  const outs = scope(() =>
    OP_TABLE[c.op](
      c.inputs.map((t) => upload(t, backend)),
      c.attrs,
    ),
  );
  const result = [];
  for (const o of outs) {
    result.push({ shape: [...o.shape], dtype: o.dtype, values: Array.from(await o.data()) });
    o.dispose();
  }
  return result;
}

/**
 * Defines (with vitest's `describe`/`it`) the conformance tests of one backend: every op's
 * values against numpy fixtures and against the reference backend, every differentiable
 * op's gradient against float64 finite differences, edge cases (empty axes, size-1
 * broadcasting, non-contiguous inputs, large k in top-k, NaN propagation), bad input, the
 * Philox stream bit for bit, memory, and a short training run. Call it at the top level of a
 * test file:
 *
 * ```ts
 * conformanceSuite({ backend: 'cpu', gradientBackend: 'cpu64' });
 * ```
 */
export function conformanceSuite(options: ConformanceOptions): void {
  const name = options.backend;
  const reference = options.reference ?? 'cpu';
  const tol = options.tolerance ?? { rtol: 2e-6, atol: 1e-6 };
  const gtol = options.gradientTolerance ?? { rtol: 1e-4, atol: 1e-5 };
  const skipReason = options.skip;
  const d = skipReason ? describe.skip : describe;

  d(`conformance of backend '${name}'${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
    beforeAll(async () => {
      for (const other of [reference, options.gradientBackend]) {
        const b = findBackend(other);
        if (!b) throw new Error(`conformanceSuite: backend '${other}' is not registered`);
        await initBackend(b);
      }
      await useBackend(name);
    });

    describe('ops match numpy fixtures', () => {
      for (const c of OP_FIXTURES) {
        it(c.name, async () => {
          const got = await runCase(c, name);
          expect(got.length).toBe(c.outputs.length);
          c.outputs.forEach((want, i) => {
            expect(got[i].shape).toEqual(want.shape);
            expect(got[i].dtype).toBe(want.dtype);
            // Transcendental ops and long sums may differ from the correctly rounded value by a few ulps.
            const t =
              want.dtype === 'int32'
                ? { rtol: 0, atol: 0 }
                : c.op === 'matmul'
                  ? { rtol: 1e-5, atol: 1e-5 }
                  : tol;
            expect(compareValues(got[i].values, want.values, t, `${c.name} output ${i}`)).toBeNull();
          });
        });
      }
    });

    if (reference !== name) {
      describe(`ops match the reference backend '${reference}'`, () => {
        for (const c of OP_FIXTURES) {
          it(c.name, async () => {
            const [got, want] = [await runCase(c, name), await runCase(c, reference)];
            want.forEach((w, i) => {
              // A float32 dot product of length k carries error up to ~k·ε·Σ|aᵢbᵢ| (k = 70, |a|,|b| < 2 here:
              // ≈ 1e-5 absolute); summation order differs between kernels, so matmul gets that bound.
              const t =
                w.dtype === 'int32'
                  ? { rtol: 0, atol: 0 }
                  : c.op === 'matmul'
                    ? { rtol: 1e-5, atol: 1e-5 }
                    : { rtol: 1e-5, atol: 1e-6 };
              expect(compareValues(got[i].values, w.values, t, `${c.name} output ${i}`)).toBeNull();
            });
          });
        }
      });
    }

    describe('gradients match float64 finite differences', () => {
      for (const c of OP_FIXTURES.filter((x) => x.grad)) {
        it(c.name, async () => {
          const fn = (...ts: Tensor[]) => OP_TABLE[c.op](ts, c.attrs)[0];
          const wrt = GRAD_WRT[c.op];
          const ref = await checkGradients(fn, c.inputs, { backend: options.gradientBackend, wrt });
          expect(ref.errors).toEqual([]);
          if (name !== options.gradientBackend) {
            const mine = await analyticGradients(fn, c.inputs, { backend: name, wrt });
            mine.forEach((g, i) => {
              expect(compareValues(g, ref.numeric[i], gtol, `${c.name} gradient ${i}`)).toBeNull();
            });
          }
        });
      }
    });

    describe("composite ops keep the composition's gradient under a fused kernel", () => {
      // A fused kernel standing in for the composition: for the fixture's input and output
      // shapes it returns numpy's outputs (so its values are right) and counts the calls; other
      // calls of the op (a gradient rule broadcasting, say) go to the backend's own kernel.
      const fusedKernel = (c: FixtureCase, calls: { n: number }, own: Kernel | undefined): Kernel => {
        const same = (a: readonly number[], b: readonly number[]) =>
          a.length === b.length && a.every((d, i) => d === b[i]);
        return (inputs, attrs, backend) => {
          const outShape = (attrs as { shape?: number[] }).shape;
          const matches =
            inputs.length === c.inputs.length &&
            inputs.every((t, i) => same(t.shape, c.inputs[i].shape)) &&
            (outShape === undefined || same(outShape, c.outputs[0].shape));
          if (!matches) {
            if (own) return own(inputs, attrs, backend);
            throw new Error(`the test kernel for '${c.op}' got inputs unlike the fixture's`);
          }
          calls.n++;
          const outs = c.outputs.map((o) => ({
            data: backend.upload(
              o.dtype === 'int32' ? Int32Array.from(o.values) : Float32Array.from(o.values),
              o.dtype,
            ),
            shape: o.shape,
            dtype: o.dtype,
          }));
          return outs.length === 1 ? outs[0] : outs;
        };
      };
      // Installs a kernel on the backend under test for the duration of `fn`, then restores its own.
      const withKernel = async <T>(
        op: OpName,
        kernel: ((own: Kernel | undefined) => Kernel) | undefined,
        fn: () => Promise<T>,
      ) => {
        const backend = findBackend(name)!;
        const own = getKernel(op, backend);
        if (kernel) registerKernel(op, backend, kernel(own), { replace: true });
        else unregisterKernel(op, backend);
        try {
          return await fn();
        } finally {
          unregisterKernel(op, backend);
          if (own) registerKernel(op, backend, own);
        }
      };
      const all =
        (c: FixtureCase) =>
        (...ts: Tensor[]) => {
          // The float outputs (a sparse code's int32 indices carry no gradient).
          const outs = OP_TABLE[c.op](ts, c.attrs).filter((o) => o.dtype === 'float32');
          return outs.length === 1 ? outs[0] : ops.concat(outs.map((o) => ops.reshape(o, [-1])));
        };

      it('the composite ops are exactly the ops that run without a kernel of their own', async () => {
        const found: string[] = [];
        for (const op of [...new Set(OP_FIXTURES.map((c) => c.op))]) {
          const c = OP_FIXTURES.find((x) => x.op === op)!;
          const calls = { n: 0 };
          // An op that never reaches a kernel of its name (reshape) is neither fused nor composite.
          await withKernel(
            op as OpName,
            (own) => fusedKernel(c, calls, own),
            () => runCase(c, name),
          );
          if (calls.n === 0) continue;
          const runs = await withKernel(op as OpName, undefined, () =>
            runCase(c, name).then(
              () => true,
              (e: unknown) => {
                expect(String(e)).toMatch(`has no kernel for op '${op}' and core has no composition of it`);
                return false;
              },
            ),
          );
          if (runs) found.push(op);
        }
        expect(found.sort()).toEqual([...COMPOSITE_OPS].sort());
      });

      for (const c of OP_FIXTURES.filter((x) => COMPOSITE_OPS.includes(x.op as OpName))) {
        const why = NO_FUSED_GRADCHECK[c.name] ?? NO_FUSED_GRADCHECK[c.op];
        (why ? it.skip : it)(`${c.name}${why ? ` (${why})` : ''}`, async () => {
          const fn = all(c);
          const wrt = GRAD_WRT[c.op];
          // float64 finite differences on the gradient backend, before any kernel is replaced.
          const ref = await checkGradients(fn, c.inputs, {
            backend: options.gradientBackend,
            wrt,
            eps: GRADCHECK_EPS[c.op],
          });
          expect(ref.errors).toEqual([]);
          const calls = { n: 0 };
          await withKernel(
            c.op as OpName,
            (own) => fusedKernel(c, calls, own),
            async () => {
              // Where no gradient is needed the fused kernel serves the call...
              const got = await runCase(c, name);
              expect(calls.n).toBeGreaterThan(0);
              expect(got.map((o) => o.values)).toEqual(
                c.outputs.map((o) => Float32Array.from(o.values)).map((v) => Array.from(v)),
              );
              // ...and while gradients are recorded they still equal the composition's.
              const mine = await analyticGradients(fn, c.inputs, { backend: name, wrt });
              mine.forEach((g, i) => {
                expect(compareValues(g, ref.numeric[i], gtol, `${c.name} gradient ${i} (fused)`)).toBeNull();
              });
            },
          );
        });
      }
    });

    describe('edge cases', () => {
      const b = { backend: name };
      const t = (values: number[] | Float32Array, shape: number[]) => ops.tensor(values, shape, b);
      const read = async (x: Tensor) => Array.from(await x.data());

      it('ops told they may write over an input (inPlace) give the same values, over that input alone', async () => {
        // op → which input each output may overwrite (the op's contract), and how to call it in place
        const inPlace: Record<
          string,
          { over: number[]; run: (xs: Tensor[], a: Record<string, unknown>) => Tensor[] }
        > = {
          adamUpdate: {
            over: [0, 2, 3],
            run: ([p, g, m, v], a) => adamUpdate(p, g, m, v, a as unknown as AdamHyper, { inPlace: true }),
          },
          normalizeRows: { over: [0], run: ([w]) => [normalizeRows(w, { inPlace: true })] },
          removeParallelComponent: {
            over: [1],
            run: ([w, g]) => [removeParallelComponent(w, g, { inPlace: true })],
          },
          reluGradRowSum: {
            over: [0, -1],
            run: ([dF, row, f]) => ops.reluGradRowSum(dF, row, f, { inPlace: true }),
          },
          // where a has the output's shape (a broadcast a is left alone)
          add: { over: [0], run: ([a, b]) => runOp('add', [a, b], { shape: outShape(a, b), inPlace: true }) },
          mul: { over: [0], run: ([a, b]) => runOp('mul', [a, b], { shape: outShape(a, b), inPlace: true }) },
          clipByGlobalNorm: {
            over: Array.from({ length: 64 }, (_, k) => k), // output k over input k; then the norm
            run: (xs, a) => {
              const r = ops.clipByGlobalNorm(xs, a.maxNorm as number, { inPlace: true });
              return [...r.tensors, r.norm];
            },
          },
        };
        const outShape = (a: Tensor, b: Tensor) => broadcastShapes('inPlace', a.shape, b.shape);
        let cases = 0;
        for (const c of OP_FIXTURES.filter((f) => f.op in inPlace)) {
          const { over, run } = inPlace[c.op];
          const fresh = await runCase(c, name);
          const inputs = c.inputs.map((x) => upload(x, name));
          const outs = run(inputs, c.attrs);
          for (let k = 0; k < outs.length; k++) {
            const got = Array.from(await outs[k].data());
            expect(got.map((v) => (Number.isNaN(v) ? 'NaN' : Object.is(v, -0) ? '-0' : v))).toEqual(
              fresh[k].values.map((v) => (Number.isNaN(v) ? 'NaN' : Object.is(v, -0) ? '-0' : v)),
            );
            // an output shares storage with no input but the one it may overwrite
            inputs.forEach((x, j) => {
              if (j !== over[k])
                expect(outs[k].storage === x.storage, `${c.name}: output ${k} over input ${j}`).toBe(false);
            });
          }
          // inputs nobody may overwrite keep their values
          for (let j = 0; j < inputs.length; j++) {
            if (over.includes(j)) continue;
            expect(Array.from(await inputs[j].data())).toEqual(
              Array.from(Float32Array.from(c.inputs[j].values)),
            );
          }
          for (const o of outs) o.dispose();
          for (const x of inputs) if (!x.isDisposed) x.dispose();
          cases++;
        }
        expect(cases).toBeGreaterThanOrEqual(15);
        // scaledDifference (no numpy fixture): over a, the same bits as the fresh result
        const a = ops.randomNormal([37, 24], { seed: 11, backend: name });
        const bb = ops.randomNormal([37, 24], { seed: 12, backend: name });
        const sc = ops.tensor([0.37], [1], { backend: name });
        const made = ops.scaledDifference(a, bb, sc);
        const fresh = Array.from(await made.data());
        const over = ops.scaledDifference(a, bb, sc, { inPlace: true });
        expect(Array.from(await over.data())).toEqual(fresh);
        expect(over.storage === bb.storage || over.storage === sc.storage).toBe(false);
        for (const t of [made, over, a, bb, sc]) t.dispose();
      });

      it('empty axes: elementwise, sums, matmul with k = 0, top-k with k = 0, concat', async () => {
        const e = t([], [0, 3]);
        const s = ops.add(e, t([1, 2, 3], [3]));
        expect(s.shape).toEqual([0, 3]);
        expect(await read(ops.sum(e, 0))).toEqual([0, 0, 0]);
        const mm = ops.matmul(t([], [2, 0]), t([], [0, 3]));
        expect(mm.shape).toEqual([2, 3]);
        expect(await read(mm)).toEqual([0, 0, 0, 0, 0, 0]);
        const k0 = ops.topk(t([1, 2, 3], [1, 3]), 0);
        expect(k0.values.shape).toEqual([1, 0]);
        const c = ops.concat([e, t([4, 5, 6], [1, 3])], 0);
        expect(await read(c)).toEqual([4, 5, 6]);
        expect(Number.isNaN((await read(ops.mean(e)))[0])).toBe(true);
        for (const x of [e, s, mm, k0.values, k0.indices, c]) x.dispose();
      });

      it('size-1 broadcasting in every position, and 0-d scalars', async () => {
        const col = t([1, 2, 3], [3, 1]);
        const row = t([10, 20], [1, 2]);
        expect(await read(ops.add(col, row))).toEqual([11, 21, 12, 22, 13, 23]);
        const one = t([2], [1, 1]);
        expect(await read(ops.mul(one, t([1, 2, 3, 4, 5, 6], [2, 3])))).toEqual([2, 4, 6, 8, 10, 12]);
        const s = ops.scalar(3, b);
        expect(s.shape).toEqual([]);
        expect(await read(ops.sub(s, t([1, 2], [2])))).toEqual([2, 1]);
        expect(await read(ops.sum(ops.mul(s, s)))).toEqual([9]);
        const r3 = ops.add(t([1, 2], [2, 1, 1]), t([0, 10, 20], [1, 3, 1]));
        expect(r3.shape).toEqual([2, 3, 1]);
        expect(await read(r3)).toEqual([1, 11, 21, 2, 12, 22]);
      });

      it('non-contiguous inputs (transposed, sliced) give the same results as contiguous copies', async () => {
        const values = Array.from({ length: 24 }, (_, i) => ((i * 7) % 11) - 5);
        const x = t(values, [4, 6]);
        const xt = ops.transpose(x); // [6, 4], a permuted view in layout terms
        // by hand: xt[i][j] = x[j][i]
        const manual = Array.from({ length: 24 }, (_, q) => values[(q % 4) * 6 + Math.floor(q / 4)]);
        expect(await read(xt)).toEqual(manual);
        const sl = ops.slice(xt, [1, 1], [3, 2]);
        expect(await read(sl)).toEqual([manual[5], manual[6], manual[9], manual[10], manual[13], manual[14]]);
        const viaT = ops.matmul(xt, x);
        const viaFlag = ops.matmul(x, x, { transA: true });
        expect(await read(viaT)).toEqual(await read(viaFlag));
        expect(await read(ops.sum(xt, 0))).toEqual(await read(ops.sum(x, 1)));
      });

      it('large k in top-k: k = n = 1000 sorts the row; ties go to the lower index', async () => {
        const n = 1000;
        const v = new Float32Array(2 * n);
        for (let i = 0; i < v.length; i++) v[i] = ((i * 7919) % 211) - 105; // many ties
        const x = t(v, [2, n]);
        for (const k of [n, 999, 1]) {
          const { values, indices } = ops.topk(x, k);
          const vals = await read(values);
          const idx = await read(indices);
          for (let r = 0; r < 2; r++) {
            const order = Array.from({ length: n }, (_, j) => j).sort(
              (p, q) => v[r * n + q] - v[r * n + p] || p - q,
            );
            expect(idx.slice(r * k, r * k + k)).toEqual(order.slice(0, k));
            expect(vals.slice(r * k, r * k + k)).toEqual(order.slice(0, k).map((j) => v[r * n + j]));
          }
        }
      });

      it('elementwise ops at their boundaries: step at its threshold, relu and sign at 0 and ±Inf', async () => {
        const plain = async (x: Tensor) => (await read(x)).map((v) => v + 0); // −0 reads as 0
        expect(await plain(ops.step(t([0.5, 1, 1.5], [3]), 1))).toEqual([0, 0, 1]);
        expect(await plain(ops.relu(t([-Infinity, -2, 0, 3, Infinity], [5])))).toEqual([
          0,
          0,
          0,
          3,
          Infinity,
        ]);
        expect(await plain(ops.sign(t([-Infinity, -3, 0, 2, Infinity], [5])))).toEqual([-1, -1, 0, 1, 1]);
        expect(await plain(ops.maximum(t([-1, 2], [2]), t([1, -2], [2])))).toEqual([1, 2]);
      });

      it('NaN propagates through elementwise ops, reductions and matmul; top-k and argmax rank NaN first', async () => {
        const x = t([1, Number.NaN, -2, 4], [2, 2]);
        const nanMask = (a: number[]) => a.map((q) => Number.isNaN(q));
        expect(nanMask(await read(ops.add(x, 1)))).toEqual([false, true, false, false]);
        expect(nanMask(await read(ops.relu(x)))).toEqual([false, true, false, false]);
        expect(nanMask(await read(ops.exp(x)))).toEqual([false, true, false, false]);
        expect(nanMask(await read(ops.maximum(x, 0)))).toEqual([false, true, false, false]);
        expect(nanMask(await read(ops.sum(x, 1)))).toEqual([true, false]);
        expect(nanMask(await read(ops.max(x, 0)))).toEqual([false, true]);
        expect(nanMask(await read(ops.matmul(x, t([1, 0, 0, 1], [2, 2]))))).toEqual([
          true,
          true,
          false,
          false,
        ]);
        const tk = ops.topk(t([3, Number.NaN, 5, Number.NaN], [1, 4]), 3);
        expect(await read(tk.indices)).toEqual([1, 3, 2]);
        expect(await read(ops.argmax(t([3, Number.NaN, 5], [1, 3]), -1))).toEqual([1]);
      });

      it('large reductions (hundreds of elements per output) match a float64 reference, NaN included', async () => {
        const [R, C] = [300, 70];
        const v = philoxUniform(R * C, 77, 0, -1, 1);
        v[5 * C + 3] = Number.NaN; // column 3, row 5
        const x = t(v, [R, C]);
        const ref = (axis: 0 | 1 | undefined, kind: 'sum' | 'max' | 'min') => {
          const outN = axis === undefined ? 1 : axis === 0 ? C : R;
          const res: number[] = [];
          for (let o = 0; o < outN; o++) {
            let acc = kind === 'sum' ? 0 : kind === 'max' ? -Infinity : Infinity;
            const n = axis === undefined ? R * C : axis === 0 ? R : C;
            for (let r = 0; r < n; r++) {
              const val = axis === undefined ? v[r] : axis === 0 ? v[r * C + o] : v[o * C + r];
              acc = kind === 'sum' ? acc + val : kind === 'max' ? Math.max(acc, val) : Math.min(acc, val);
            }
            res.push(acc);
          }
          return res;
        };
        for (const axis of [undefined, 0, 1] as const) {
          for (const kind of ['sum', 'max', 'min'] as const) {
            const got = await read(ops[kind](x, axis));
            // float32 sums of ≤ 21000 terms of |v| < 1: error ≲ n·ε·Σ|v| ≈ 3e-3 absolute at most
            const tolerance = kind === 'sum' ? { rtol: 1e-4, atol: 3e-3 } : { rtol: 0, atol: 0 };
            expect(compareValues(got, ref(axis, kind), tolerance, `${kind} axis ${axis}`)).toBeNull();
          }
        }
      });

      it('random streams match an independent numpy Philox (fixtures/philox.json) bit for bit', async () => {
        // Not compared with the host functions: every backend may call those, so a bug there
        // would agree with itself.
        for (const d of PHILOX_FIXTURE.draws) {
          const o = { seed: seedOfPhiloxKey(d.key), stream: d.stream, backend: name };
          const { low, high } = d.uniform;
          const u = ops.randomUniform([d.n], { ...o, low, high });
          expect(await read(u), `uniform key [${d.key}] stream ${d.stream}`).toEqual(d.uniform.values);
          const { mean, std } = d.normal;
          const z = ops.randomNormal([d.n], { ...o, mean, std });
          expect(await read(z), `normal key [${d.key}] stream ${d.stream}`).toEqual(d.normal.values);
        }
        for (const r of PHILOX_FIXTURE.unitRows) {
          const o = { seed: seedOfPhiloxKey(r.key), stream: r.stream, norm: r.norm, backend: name };
          const dirs = ops.randomUnitRows(r.rows, r.cols, o);
          expect(await read(dirs), `unit rows key [${r.key}]`).toEqual(r.values);
        }
        const other = ops.randomUniform([15], { seed: 42, stream: 4, backend: name });
        expect(await read(other)).not.toEqual(
          await read(ops.randomUniform([15], { seed: 42, stream: 3, backend: name })),
        );
      });
    });

    describe('bad input gives clear errors', () => {
      const b = { backend: name };
      it('shape mismatch names the op and both shapes', () => {
        const a = ops.zeros([2, 3], b);
        expect(() => ops.add(a, ops.zeros([4], b))).toThrow(
          /add: shapes \[2, 3\] and \[4\] do not broadcast/,
        );
        expect(() => ops.matmul(a, ops.zeros([2, 3], b))).toThrow(
          /matmul: inner dimensions differ.*k=3.*k=2/,
        );
        expect(() => ops.reshape(a, [4, 2])).toThrow(
          /reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4, 2\]/,
        );
        expect(() => ops.topk(a, 4)).toThrow(/topk: k must be an integer in \[0, 3\]/);
        expect(() => ops.tensor([1, 2, 3], [2, 2], b)).toThrow(/3 values do not fill shape \[2, 2\]/);
      });
      it('wrong dtype names what was given and what was expected', () => {
        const i = ops.tensor([1, 2], [2], { dtype: 'int32', backend: name });
        const f = ops.zeros([2, 2], b);
        expect(() => ops.matmul(ops.cast(f, 'int32'), f)).toThrow(/matmul: A must be float32, got int32/);
        expect(() => ops.gatherRows(f, f)).toThrow(/gatherRows: indices must be int32, got float32/);
        expect(() => ops.sqrt(i)).toThrow(/sqrt: input must be float32, got int32/);
        expect(() => ops.add(i, ops.zeros([2], b))).toThrow(/add: dtypes differ: int32 and float32/);
      });
      it('NaN/Inf where an input must be finite is refused with the count and first position', async () => {
        const x = ops.tensor([1, 2, Number.POSITIVE_INFINITY, 4, Number.NaN, 6], [2, 3], b);
        expect(Array.from(await ops.countNonFinite(x).data())).toEqual([2]);
        await expect(ops.assertFinite(x, 'activations')).rejects.toThrow(
          'activations: 2 of 6 values are NaN or Inf (first at [0, 2]: Infinity); expected finite numbers',
        );
        await expect(ops.assertFinite(ops.ones([3], b), 'activations')).resolves.toBeUndefined();
      });
      it('a disposed tensor is refused by name', () => {
        const a = ops.ones([2], b);
        a.dispose();
        expect(() => ops.neg(a)).toThrow(/neg: tensor #\d+ \[2\] float32 was disposed/);
      });
      it('out-of-range indices and bad axes are refused', async () => {
        const x = ops.zeros([3, 2], b);
        expect(() => ops.sum(x, 2)).toThrow(/sum: axis 2 is out of range for a tensor of rank 2/);
        let err: unknown;
        try {
          const g = ops.gatherRows(x, ops.tensor([0, 3], [2], { dtype: 'int32', backend: name }));
          await g.data();
        } catch (e) {
          err = e;
        }
        // GPU backends may defer the check to read-back; the CPU reference throws at once.
        if (err) expect(String(err)).toMatch(/gatherRows: index 3 at position 1 is out of range \[0, 3\)/);
        else expect(findBackend(name)?.readSync).toBeUndefined();
      });
      if (reference !== name) {
        it('mixing backends names both', async () => {
          await useBackend(reference);
          const other = ops.zeros([2], { backend: reference });
          await useBackend(name);
          expect(() => ops.add(ops.zeros([2], b), other)).toThrow(/different backends/);
        });
      }
    });

    describe('memory and training', () => {
      it('scope and valueAndGrad leave no tensors behind', () => {
        const before = memory().backends[name]?.tensors ?? 0;
        const w = keep(ops.randomNormal([4, 3], { seed: 1, backend: name }));
        const kept = scope(() => {
          const { value, grads } = valueAndGrad(
            () => ops.sum(ops.relu(ops.matmul(ops.ones([2, 4], { backend: name }), w))),
            [w],
          );
          return [value, grads.get(w)!];
        });
        expect(memory().backends[name].tensors).toBe(before + 3); // w, the value and its gradient
        for (const t of [w, ...kept]) t.dispose();
        expect(memory().backends[name]?.tensors ?? 0).toBe(before);
      });

      it('a short SAE-style training run matches the reference and keeps memory flat', async () => {
        const run = async (backend: string) => {
          await useBackend(backend);
          const o = { backend };
          const x = keep(ops.randomNormal([32, 8], { seed: 3, backend }));
          const wEnc = new Variable(ops.randomNormal([8, 16], { seed: 4, std: 0.3, backend }), 'W_enc');
          const bEnc = new Variable(ops.zeros([16], o), 'b_enc');
          const wDec = new Variable(ops.randomNormal([16, 8], { seed: 5, std: 0.3, backend }), 'W_dec');
          const params = [wEnc, bEnc, wDec];
          const losses: number[] = [];
          let live = 0;
          for (let stepNo = 0; stepNo < 30; stepNo++) {
            const { value, grads } = valueAndGrad(() => {
              const f = ops.relu(ops.add(ops.matmul(x, wEnc.value), bEnc.value));
              const xhat = ops.matmul(f, wDec.value);
              const mse = ops.mean(ops.sum(ops.square(ops.sub(x, xhat)), -1));
              return ops.add(mse, ops.mul(ops.mean(ops.l1Norm(f)), 0.01));
            }, params);
            losses.push((await value.data())[0]);
            value.dispose();
            for (const p of params) {
              const g = grads.get(p)!;
              p.assign(scope(() => ops.sub(p.value, ops.mul(g, 0.05))));
              g.dispose();
            }
            if (stepNo === 4) live = memory().backends[backend].tensors;
            if (stepNo > 4) expect(memory().backends[backend].tensors).toBe(live);
          }
          x.dispose();
          for (const p of params) p.dispose();
          return losses;
        };
        const mine = await run(name);
        expect(mine[29]).toBeLessThan(mine[0] * 0.8);
        if (reference !== name) {
          const theirs = await run(reference);
          // float32 rounding differs between kernels; 30 steps of SGD amplify it little (loss is smooth).
          expect(compareValues(mine, theirs, { rtol: 1e-4, atol: 1e-6 }, 'loss curve')).toBeNull();
        }
        await useBackend(name);
      });
    });
  });
}
