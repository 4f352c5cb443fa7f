// The backward pass frees what it no longer needs: each gradient once its node has used it, and
// each gradient function's temporaries when it returns; and it tells a gradient function which
// incoming gradients it may overwrite (`own`). Byte counts are hand-computed (float32, 4 bytes),
// on a CPU backend of this file's own so other tests' tensors do not move them.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from './backend.js';
import { customGrad, noGrad, recordNode, valueAndGrad } from './engine.js';
import * as ops from './ops/index.js';
import { memory, resetPeakMemory, type Tensor } from './tensor.js';

const NAME = 'backward-mem-cpu';
beforeAll(async () => {
  registerBackend(createCpuBackend({ name: NAME, fastMatmul: false }));
  await useBackend(NAME);
});
const mem = () => memory().backends[NAME] ?? { tensors: 0, bytes: 0, peakBytes: 0 };

/** The identity, whose gradient function records the `own` flag it was given. */
function spy(seen: boolean[]): (x: Tensor) => Tensor {
  return customGrad((x: Tensor) => ({
    value: ops.add(x, 0),
    grad: (dy, own) => {
      seen.push(own);
      return [ops.add(dy, 0)];
    },
  }));
}

describe('backward pass memory', () => {
  it('a chain of n ops holds the gradient in, its temporaries and the gradient out, not all n', () => {
    const N = 1000;
    const x = ops.randomNormal([N], { seed: 1 });
    resetPeakMemory(NAME);
    const base = mem().bytes;
    const sq = ops.square;
    const { value, grads } = valueAndGrad(() => ops.sum(sq(sq(sq(ops.mul(x, 0.1))))), [x]);
    // Forward: the four [N] tensors the tape holds (x·0.1 and three squares) and the scalar loss.
    // Backward, one square at a time: the gradient reaching it, its temporary 2·u, and the
    // gradient it makes ([N] each), besides scalars. Kept to the end, the gradients and
    // temporaries of earlier nodes would add up to 7 [N] tensors by the last square.
    expect(mem().peakBytes - base).toBeLessThanOrEqual(4 * (4 * N + 3 * N) + 4 * 4);
    value.dispose();
    grads.get(x)!.dispose();
    expect(mem().bytes).toBe(base);
    x.dispose();
  });

  it("frees a node's forward outputs once the node has run: the later ones are gone when an early node's gradient runs", () => {
    const N = 1000;
    const x = ops.randomNormal([N], { seed: 3 });
    resetPeakMemory(NAME);
    const base = mem().bytes;
    let during = -1;
    const first = customGrad((u: Tensor) => ({
      value: ops.mul(u, 0.5),
      grad: (dy) => {
        during = mem().bytes - base;
        return [ops.mul(dy, 0.5)];
      },
    }));
    const { value, grads } = valueAndGrad(() => ops.sum(ops.exp(ops.exp(ops.exp(first(x))))), [x]);
    // When the first node's gradient runs: its own output and the gradient reaching it ([N] each),
    // and the scalar loss. The three exps' outputs, recorded after it, are gone already.
    expect(during).toBeGreaterThanOrEqual(4 * 2 * N);
    expect(during).toBeLessThanOrEqual(4 * 2 * N + 4 * 4);
    for (const t of [value, grads.get(x)!, x]) t.dispose();
  });

  it('hands a gradient over only when nothing else holds it', () => {
    const x = ops.randomNormal([8], { seed: 2 });
    // A gradient made by the walk and held by one output: the node may overwrite it.
    const a: boolean[] = [];
    let r = valueAndGrad(() => ops.sum(ops.mul(spy(a)(x), 3)), [x]);
    expect(a).toEqual([true]);
    for (const t of [r.value, ...r.grads.values()]) t.dispose();

    // One tensor returned as the gradient of two outputs: the first node to run must not touch
    // it (the second still reads it); by the second, nothing else holds it.
    const b: boolean[] = [];
    const both = customGrad((u: Tensor, v: Tensor) => ({
      value: ops.add(ops.sum(u), ops.sum(v)),
      grad: (dy) => {
        const g = ops.mul(ops.onesLike(u), dy);
        return [g, g];
      },
    }));
    r = valueAndGrad(() => both(spy(b)(x), spy(b)(x)), [x]);
    expect(b).toEqual([false, true]);
    expect(Array.from(r.grads.get(x)!.dataSync())).toEqual(new Array(8).fill(2));
    for (const t of [r.value, ...r.grads.values()]) t.dispose();

    // A gradient sharing its storage with one still held (a reshaped view of it): not until
    // the other is gone.
    const d: boolean[] = [];
    const viewPair = customGrad((u: Tensor, v: Tensor) => ({
      value: ops.add(ops.sum(u), ops.sum(v)),
      grad: (dy) => {
        const g = ops.mul(ops.onesLike(u), dy);
        return [g, ops.reshape(g, [2, 4])];
      },
    }));
    r = valueAndGrad(() => viewPair(spy(d)(x), ops.reshape(spy(d)(x), [2, 4])), [x]);
    expect(d).toEqual([false, true]);
    expect(Array.from(r.grads.get(x)!.dataSync())).toEqual(new Array(8).fill(2));
    for (const t of [r.value, ...r.grads.values()]) t.dispose();

    // A gradient from outside the walk (a custom rule returning a tensor it captured): never.
    const outside = ops.ones([8]);
    const c: boolean[] = [];
    const fixed = customGrad((u: Tensor) => ({ value: ops.sum(u), grad: () => [outside] }));
    r = valueAndGrad(() => fixed(spy(c)(x)), [x]);
    expect(c).toEqual([false]);
    expect(Array.from(outside.dataSync())).toEqual(new Array(8).fill(1));
    for (const t of [r.value, ...r.grads.values(), outside, x]) t.dispose();
  });

  it("sums a tensor's gradients over the first one it got, never over one from outside the walk", () => {
    const N = 1000;
    const K = 4;
    const x = ops.randomNormal([N], { seed: 4 });
    const base = mem().bytes;
    resetPeakMemory(NAME);
    // x enters one node K times; the node's rule returns K fresh [N] gradients (k + 1 each)
    const fan = customGrad((...us: Tensor[]) => ({
      value: ops.sum(us[0]),
      grad: () => us.map((u, k) => ops.fill(u.shape, k + 1)), // no [N] temporaries of its own
    }));
    const r = valueAndGrad(() => fan(...new Array<Tensor>(K).fill(x)), [x]);
    expect(Array.from(r.grads.get(x)!.dataSync())).toEqual(new Array(N).fill((K * (K + 1)) / 2));
    // the K gradients at once, and the running sum written over the first: a new [N] array per
    // sum would make K + 1
    expect(mem().peakBytes - base).toBeLessThan(4 * (K + 1) * N);
    for (const t of [r.value, ...r.grads.values()]) t.dispose();
    expect(mem().bytes).toBe(base);

    // the first gradient from outside the walk (a tensor the rule captured): summed into a new array
    const outside = ops.ones([N]);
    const pair = customGrad((u: Tensor, v: Tensor) => ({
      value: ops.add(ops.sum(u), ops.sum(v)),
      grad: (dy) => [outside, ops.mul(ops.onesLike(v), dy)],
    }));
    const q = valueAndGrad(() => pair(x, x), [x]);
    expect(Array.from(q.grads.get(x)!.dataSync())).toEqual(new Array(N).fill(2));
    expect(Array.from(outside.dataSync())).toEqual(new Array(N).fill(1));
    for (const t of [q.value, ...q.grads.values()]) t.dispose();

    // nor over a gradient the node also gives a later input: y's stays g, x's is g + h
    const y = ops.randomNormal([N], { seed: 5 });
    const shared = customGrad((u: Tensor, v: Tensor, w: Tensor) => ({
      value: ops.add(ops.add(ops.sum(u), ops.sum(v)), ops.sum(w)),
      grad: () => {
        const g = ops.fill([N], 1);
        return [g, ops.fill([N], 2), g];
      },
    }));
    const s = valueAndGrad(() => shared(x, x, y), [x, y]);
    expect(Array.from(s.grads.get(x)!.dataSync())).toEqual(new Array(N).fill(3));
    expect(Array.from(s.grads.get(y)!.dataSync())).toEqual(new Array(N).fill(1));
    for (const t of [s.value, ...s.grads.values(), outside, x, y]) t.dispose();
  });

  it("hands an input over (ownInputs) only when this node is its one reader and its producer's rule will not read it", () => {
    const [B, d, F] = [8, 4, 6];
    const x = ops.randomNormal([B, d], { seed: 6 });
    const w = ops.randomNormal([d, F], { seed: 7 });
    const b = ops.zeros([F]);
    const wDec = ops.randomNormal([F, d], { seed: 8 });
    const bDec = ops.zeros([d]);
    /** A loss Σ y over a node that records the ownInputs flag it gets for y. */
    const spyOn = (y: Tensor, seen: boolean[]) => {
      const value = noGrad(() => ops.sum(y));
      recordNode([y], [value], (dys, _needs, _own, _ownOut, ownIn) => {
        seen.push(ownIn?.[0] ?? false);
        return [ops.mul(ops.onesLike(y), dys[0])];
      });
      return value;
    };
    const run = (body: (xhat: Tensor, seen: boolean[]) => Tensor | { value: Tensor; aux: unknown }) => {
      const seen: boolean[] = [];
      const r = valueAndGrad(() => {
        // x̂: an output of linearBiasReluSumDecode, whose rule reads only f
        const [, , xhat] = ops.linearBiasReluSumDecode(x, w, b, wDec, bDec);
        return body(xhat, seen);
      }, [w]);
      for (const t of [r.value, ...r.grads.values()]) t.dispose();
      if (r.aux) for (const t of Object.values(r.aux as Record<string, Tensor>)) t.dispose();
      return seen;
    };
    // the node is x̂'s only reader: handed over
    expect(run((xhat, seen) => spyOn(xhat, seen))).toEqual([true]);
    // another recorded op reads x̂ too: not handed over
    expect(run((xhat, seen) => ops.add(spyOn(xhat, seen), ops.sum(ops.mul(xhat, 2))))).toEqual([false]);
    // returned to the caller: not handed over
    expect(run((xhat, seen) => ({ value: spyOn(xhat, seen), aux: { xhat } }))).toEqual([false]);
    // a view of x̂ still alive: not handed over
    let view: Tensor | undefined;
    expect(
      run((xhat, seen) => {
        view = ops.reshape(xhat, [d, B]);
        return spyOn(xhat, seen);
      }),
    ).toEqual([false]);
    view?.dispose();
    // f, the output linearBiasReluSumDecode's rule does read: not handed over
    const seenF: boolean[] = [];
    const rf = valueAndGrad(() => spyOn(ops.linearBiasReluSumDecode(x, w, b, wDec, bDec)[0], seenF), [w]);
    expect(seenF).toEqual([false]);
    for (const t of [rf.value, ...rf.grads.values()]) t.dispose();
    // from a producer whose rule reads its output (exp: dy·y): not handed over
    const seen: boolean[] = [];
    const r = valueAndGrad(() => spyOn(ops.exp(ops.matmul(x, w)), seen), [w]);
    expect(seen).toEqual([false]);
    for (const t of [r.value, ...r.grads.values(), x, w, b, wDec, bDec]) t.dispose();
  });
});
