// The kernel registry on the CPU reference backend (resolved from source by the workspace's
// vitest alias; core itself does not depend on it).
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from './backend.js';
import { runOp, valueAndGrad } from './engine.js';
import {
  getKernel,
  type Kernel,
  type KernelTensor,
  kernelsOf,
  registerKernel,
  unregisterKernel,
} from './kernel-registry.js';
import * as ops from './ops/index.js';
import type { Tensor } from './tensor.js';

// A plugin-defined op, typed by declaration merging (the escape hatch for ops core lacks).
declare module './kernel-registry.js' {
  interface OpAttrs {
    testCube: { scale: number };
  }
}

const live = registerBackend(createCpuBackend({ name: 'kr-cpu', fastMatmul: false }));
beforeAll(async () => {
  await useBackend('kr-cpu');
});

const read = async (t: Tensor) => Array.from(await t.data());
/** A kernel that returns `value` everywhere, in the shape of its first input. */
const constant =
  (value: number): Kernel =>
  (inputs: KernelTensor[], _attrs, backend) => ({
    data: backend.upload(new Float32Array(inputs[0].size).fill(value), 'float32'),
    shape: inputs[0].shape,
    dtype: 'float32',
  });

describe('kernel registry', () => {
  it('a second kernel for the same op and backend throws naming both, unless replacing', async () => {
    expect(() => registerKernel('add', live, constant(7))).toThrow(
      "registerKernel: backend 'kr-cpu' already has a kernel for op 'add'; pass { replace: true } to replace it",
    );
    expect(() => registerKernel('add', 'kr-cpu', constant(7))).toThrow(/already has a kernel for op 'add'/);
    const own = getKernel('add', live)!;
    registerKernel('add', live, constant(7), { replace: true });
    expect(await read(ops.add(ops.tensor([1, 2]), ops.tensor([3, 4])))).toEqual([7, 7]);
    expect(unregisterKernel('add', live)).not.toBe(own);
    registerKernel('add', live, own);
    expect(await read(ops.add(ops.tensor([1, 2]), ops.tensor([3, 4])))).toEqual([4, 6]);
  });

  it('creating a second backend under a taken name leaves the live one its kernels', async () => {
    const liveAdd = getKernel('add', live);
    const impostor = createCpuBackend({ name: 'kr-cpu', fastMatmul: false });
    registerKernel('add', impostor, constant(-1), { replace: true });
    registerKernel('matmul', impostor, constant(-1), { replace: true });
    expect(() => registerBackend(impostor)).toThrow(
      "registerPlugin: a different backend is already registered as 'kr-cpu'",
    );
    // The live backend, found by instance or by name, still has (and runs) its own kernels.
    expect(getKernel('add', live)).toBe(liveAdd);
    expect(getKernel('add', 'kr-cpu')).toBe(liveAdd);
    expect(getKernel('add', impostor)).not.toBe(liveAdd);
    const a = ops.tensor([
      [1, 2],
      [3, 4],
    ]);
    expect(await read(ops.add(a, 1))).toEqual([2, 3, 4, 5]);
    expect(await read(ops.matmul(a, a))).toEqual([7, 10, 15, 22]); // by hand
    expect(kernelsOf(live)).toContain('matmul');
  });

  it('two copies of core in one process see the same kernels', async () => {
    // A second instance of this module, as a bundler duplicating @dictlearn/core would load it.
    const copy = (await import(
      /* @vite-ignore */ `${'./kernel-registry.js'}?copy`
    )) as typeof import('./kernel-registry.js');
    expect(copy.getKernel).not.toBe(getKernel);
    expect(copy.getKernel('add', live)).toBe(getKernel('add', live));
  });

  it('naming a backend that is not registered is refused', () => {
    expect(() => registerKernel('add', 'kr-nowhere', constant(0))).toThrow(
      "registerKernel: no backend named 'kr-nowhere' is registered; pass the backend instance (kernels belong to an instance)",
    );
    expect(getKernel('add', 'kr-nowhere')).toBeUndefined();
  });

  it('op names and attributes are typed; plugins add theirs by declaration merging', async () => {
    registerKernel('testCube', live, ([x], attrs, backend) => {
      const v = backend.readSync!(x.data, 'float32', x.size);
      return {
        data: backend.upload(
          Float32Array.from(v, (e) => attrs.scale * e ** 3),
          'float32',
        ),
        shape: x.shape,
        dtype: 'float32',
      };
    });
    const x = ops.tensor([1, 2]);
    expect(await read(runOp('testCube', [x], { scale: 2 })[0])).toEqual([2, 16]);
    // Compile-time checks, never run: tsc fails when one of these lines type-checks.
    const typeChecks = () => {
      // @ts-expect-error an op no module declared
      registerKernel('biasRelU', live, constant(0));
      // @ts-expect-error an attribute the op does not have
      runOp('testCube', [x], { scael: 2 });
      // @ts-expect-error a missing attribute
      runOp('sum', [x], { axes: [0], keepDims: false });
      // @ts-expect-error a kernel reading an attribute its op does not have
      registerKernel('matmul', live, (_i, attrs) => constant(attrs.transC ? 1 : 0)(_i, attrs, live));
    };
    void typeChecks;
    unregisterKernel('testCube', live);
  });
});

describe('a fused kernel of a composite op without a gradient rule', () => {
  // testCube(x) = scale·x³, as core would compose it; its fused kernel counts its calls.
  let calls = 0;
  const cube = (x: Tensor, scale: number) =>
    runOp('testCube', [x], { scale }, { composition: () => ops.mul(ops.mul(ops.square(x), x), scale) })[0];

  it('serves calls that need no gradient; while recording the composition runs', async () => {
    registerKernel(
      'testCube',
      live,
      ([x], attrs, backend) => {
        calls++;
        const v = backend.readSync!(x.data, 'float32', x.size);
        return {
          data: backend.upload(
            Float32Array.from(v, (e) => attrs.scale * e ** 3),
            'float32',
          ),
          shape: x.shape,
          dtype: 'float32',
        };
      },
      { replace: true },
    );
    const x = ops.tensor([1, -2, 3]);
    expect(await read(cube(x, 2))).toEqual([2, -16, 54]);
    expect(calls).toBe(1);
    const { value, grads } = valueAndGrad(() => ops.sum(cube(x, 2)), [x]);
    expect(await read(value)).toEqual([40]);
    // d/dx 2x³ = 6x², by hand.
    expect(await read(grads.get(x)!)).toEqual([6, 24, 54]);
    // Inputs that need no gradient (a constant inside valueAndGrad) still use the fused kernel.
    const w = ops.tensor([1, 1, 1]);
    const before = calls;
    const r = valueAndGrad(() => ops.sum(ops.mul(cube(x, 1), w)), [w]);
    expect(calls).toBe(before + 1);
    expect(await read(r.grads.get(w)!)).toEqual([1, -8, 27]);
    unregisterKernel('testCube', live);
  });
});
