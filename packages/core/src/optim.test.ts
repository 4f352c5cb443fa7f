// Adam's step writes the new parameter, moments and (ConstrainedAdam) the projected gradient and
// renormalised rows over the old ones' memory, so a step makes no [rows, cols] temporary; it does
// so only where nothing else shares that memory: a view of the parameter keeps the old values.
// The values are checked against the same step computed out of place (adamUpdate, then the
// decoder rows' projection and renormalisation as separate ops), and by hand for one element.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerBackend, useBackend } from './backend.js';
import { Variable } from './engine.js';
import * as ops from './ops/index.js';
import { Adam, adamUpdate, normalizeRows, removeParallelComponent } from './optim.js';
import { memory, resetPeakMemory } from './tensor.js';

const NAME = 'optim-cpu';
beforeAll(async () => {
  registerBackend(createCpuBackend({ name: NAME, fastMatmul: false, kernelThreads: 1 }));
  await useBackend(NAME);
});

const [rows, cols] = [64, 48];
const values = (seed: number) => ops.randomNormal([rows, cols], { seed, backend: NAME });

/** The step out of place: ConstrainedAdam's projection, Adam, renormalisation (fresh arrays). */
async function expected(p0: Float32Array, g0: Float32Array, unit: boolean): Promise<Float32Array> {
  const t = (v: Float32Array) => ops.tensor(v, [rows, cols], { backend: NAME });
  const [p, g] = [t(p0), t(g0)];
  const projected = unit ? removeParallelComponent(p, g) : g;
  const zeros = ops.zeros([rows, cols], { backend: NAME });
  const h = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 1 };
  const [p2] = adamUpdate(p, projected, zeros, zeros, h);
  const out = unit ? normalizeRows(p2) : p2;
  return (await out.data()) as Float32Array;
}

describe('Adam step in place', () => {
  for (const unit of [false, true]) {
    it(`${unit ? 'unit-norm rows (ConstrainedAdam)' : 'plain Adam'}: the out-of-place values, no [rows, cols] temporary`, async () => {
      const p = new Variable(values(1), 'W');
      const before = (await p.value.data()).slice() as Float32Array;
      const g = values(2);
      const gHost = (await g.data()).slice() as Float32Array;
      const adam = new Adam([p], { unitNormRows: unit ? [p] : [] });
      const storage = p.value.storage;
      const live = memory().backends[NAME]!.bytes;
      resetPeakMemory(NAME);
      adam.step(new Map([[p, g]]), 1e-2);
      // the gradient is freed; the parameter kept its memory; nothing else was [rows, cols]
      expect(memory().backends[NAME]!.bytes).toBe(live - 4 * rows * cols);
      expect(memory().backends[NAME]!.peakBytes - live).toBeLessThan(4 * rows * cols);
      expect(p.value.storage).toBe(storage);
      const want = await expected(before, gHost, unit);
      expect(Array.from(await p.value.data())).toEqual(Array.from(want));
      // by hand, element 0 of plain Adam's first step: p − lr·m̂/(√v̂ + ε) = p − lr·sign(g) (ε aside)
      if (!unit) expect((await p.value.data())[0]).toBeCloseTo(before[0] - 1e-2 * Math.sign(gHost[0]), 6);
      adam.dispose();
      p.value.dispose();
    });
  }

  it('a view of the parameter keeps the old values: no step in place then', async () => {
    const p = new Variable(values(3), 'W');
    const before = (await p.value.data()).slice() as Float32Array;
    const view = ops.reshape(p.value, [cols, rows]); // shares the parameter's storage
    const g = values(4);
    const gHost = (await g.data()).slice() as Float32Array;
    const adam = new Adam([p], { unitNormRows: [p] });
    adam.step(new Map([[p, g]]), 1e-2);
    expect(Array.from(await view.data())).toEqual(Array.from(before));
    expect(Array.from(await p.value.data())).toEqual(Array.from(await expected(before, gHost, true)));
    view.dispose();
    adam.dispose();
    p.value.dispose();
  });
});
