// Core's engine is exercised on the CPU reference backend (resolved from source by the
// workspace's vitest alias; core itself does not depend on it).
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from './backend.js';
import {
  customGrad,
  keep,
  type OpName,
  registerKernel,
  runOp,
  scope,
  Variable,
  valueAndGrad,
} from './engine.js';
import * as ops from './ops/index.js';
import { memory, type Tensor } from './tensor.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'engine-cpu', fastMatmul: false }));
  await useBackend('engine-cpu');
});

const live = () => memory().backends['engine-cpu']?.tensors ?? 0;

describe('scope and memory', () => {
  it('frees intermediates, keeps what is returned (searched in arrays and objects) and kept tensors', () => {
    const before = live();
    const bytesBefore = memory().backends['engine-cpu']?.bytes ?? 0;
    let inner: Tensor | undefined;
    const out = scope(() => {
      const a = ops.ones([10]);
      inner = ops.mul(a, 2);
      const k = keep(ops.zeros([3]));
      return { result: [ops.add(inner, 1)], k };
    });
    expect(inner!.isDisposed).toBe(true);
    expect(out.result[0].isDisposed).toBe(false);
    expect(live()).toBe(before + 2);
    expect(memory().backends['engine-cpu'].bytes).toBe(bytesBefore + 40 + 12);
    out.result[0].dispose();
    out.k.dispose();
    expect(live()).toBe(before);
    expect(memory().backends['engine-cpu'].bytes).toBe(bytesBefore);
  });

  it('reshape shares storage: bytes are counted once and freed with the last handle', () => {
    const bytes = () => memory().backends['engine-cpu'].bytes;
    const b0 = bytes();
    const a = ops.ones([2, 3]);
    const r = ops.reshape(a, [3, 2]);
    expect(bytes()).toBe(b0 + 24);
    a.dispose();
    expect(bytes()).toBe(b0 + 24);
    r.dispose();
    expect(bytes()).toBe(b0);
  });

  it('disposes what a throwing function created', () => {
    const before = live();
    expect(() =>
      scope(() => {
        ops.ones([4]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(live()).toBe(before);
  });
});

describe('autograd', () => {
  it('valueAndGrad: d/dW Σ relu(xW) by hand', async () => {
    const w = ops.tensor([
      [1, -2],
      [3, 4],
    ]);
    const x = ops.tensor([[1, 1]]);
    const { value, grads } = valueAndGrad(() => ops.sum(ops.relu(ops.matmul(x, w))), [w]);
    expect(Array.from(await value.data())).toEqual([6]); // relu([4, 2])
    expect(await grads.get(w)!.array()).toEqual([
      [1, 1],
      [1, 1],
    ]);
  });

  it('params the value does not depend on get zeros; non-scalar values are refused', async () => {
    const a = ops.tensor([1, 2]);
    const b = ops.tensor([3]);
    const { grads } = valueAndGrad(() => ops.sum(ops.square(a)), [a, b]);
    expect(Array.from(await grads.get(a)!.data())).toEqual([2, 4]);
    expect(Array.from(await grads.get(b)!.data())).toEqual([0]);
    expect(() => valueAndGrad(() => ops.square(a), [a])).toThrow(/fn must return a scalar float32 tensor/);
  });

  it('frees every intermediate: only the value, the aux and the gradients survive', () => {
    const w = keep(ops.randomNormal([8, 4], { seed: 9 }));
    const before = live();
    const { value, grads, aux } = valueAndGrad(() => {
      const h = ops.relu(ops.matmul(ops.ones([5, 8]), w));
      return { value: ops.mean(ops.square(h)), aux: { l0: ops.sum(ops.greater(h, 0)) } };
    }, [w]);
    expect(live()).toBe(before + 3);
    for (const t of [value, aux.l0, ...grads.values()]) t.dispose();
    w.dispose();
  });

  it('customGrad defines a straight-through gradient (JumpReLU-style step)', async () => {
    // forward: step(x − θ); backward: rectangle kernel of width ε around θ for θ, zero for x.
    const eps = 0.5;
    const jump = customGrad((x: Tensor, theta: Tensor) => ({
      value: ops.step(ops.sub(x, theta), 0),
      grad: (dy) => [
        null,
        ops.reshape(
          ops.sum(ops.mul(dy, ops.mul(ops.less(ops.abs(ops.sub(x, theta)), eps / 2), -1 / eps))),
          [1],
        ),
      ],
    }));
    const x = ops.tensor([[0.1, 0.9, 2.0]]);
    const theta = ops.tensor([1.0]);
    const { value, grads } = valueAndGrad(() => ops.sum(jump(x, theta)), [theta]);
    expect(Array.from(await value.data())).toEqual([1]); // only 2.0 > 1.0
    // |0.9 − 1| < 0.25 contributes −1/ε = −2; the others are outside the kernel
    expect(Array.from(await grads.get(theta)!.data())).toEqual([-2]);
  });

  it('Variable.assign swaps tensors without leaking and checks shapes', () => {
    const v = new Variable(ops.zeros([2]), 'bias');
    const before = live();
    v.assign(scope(() => ops.add(v.value, 1)));
    expect(live()).toBe(before);
    expect(() => v.assign(ops.zeros([3]))).toThrow(
      "Variable 'bias'.assign: shape [3] does not match the variable's [2]",
    );
    v.dispose();
  });
});

describe('kernel registry', () => {
  it('a missing kernel names the op and the backend', () => {
    const x = ops.ones([2]);
    // An op name no module declares in OpAttrs (a plugin op whose backend lacks the kernel).
    expect(() => runOp('noSuchOp' as OpName, [x], {})).toThrow(
      "noSuchOp: backend 'engine-cpu' has no kernel for op 'noSuchOp' and core has no composition of it",
    );
  });

  it('a backend kernel overrides the reference composition (fused kernel)', async () => {
    const x = ops.tensor([3, 4]);
    // l2Norm is a composition in core; register a fused kernel that returns a marker value.
    const composed = Array.from(await ops.l2Norm(x).data());
    expect(composed).toEqual([5]);
    registerKernel('l2Norm', 'engine-cpu', () => ({
      data: new Float32Array([42]),
      shape: [],
      dtype: 'float32',
    }));
    expect(Array.from(await ops.l2Norm(x).data())).toEqual([42]);
  });
});
