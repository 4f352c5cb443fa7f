// Binary elementwise ops over every broadcasting pattern the direct-index kernel takes (same
// shape, a scalar, a bias row over trailing axes, a column over leading axes) and the patterns
// left to the strided kernel (a middle axis broadcast, both sides broadcast), float32 and int32,
// against values computed here; and which patterns take which kernel.
import { add, div, initBackend, registerBackend, sub, type Tensor, tensor } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { createWebGPUBackend } from './backend.js';
import { directIndex } from './kernels.js';

const gpu = registerBackend(createWebGPUBackend({ name: 'webgpu-ew' }));
let skip: string | undefined;
try {
  await initBackend(gpu);
} catch (e) {
  skip = `no WebGPU here: ${(e as Error).message}`;
}

const size = (s: number[]) => s.reduce((p, d) => p * d, 1);

/** a ∘ b broadcast to `out` on the host (numpy's rules), element by element. */
function hostBroadcast(
  a: ArrayLike<number>,
  as: number[],
  b: ArrayLike<number>,
  bs: number[],
  out: number[],
  f: (x: number, y: number) => number,
): number[] {
  const at = (v: ArrayLike<number>, s: number[], coords: number[]) => {
    const lead = out.length - s.length;
    let o = 0;
    for (let ax = 0; ax < s.length; ax++) o = o * s[ax] + (s[ax] === 1 ? 0 : coords[ax + lead]);
    return v[o];
  };
  return Array.from({ length: size(out) }, (_, i) => {
    const coords: number[] = [];
    let rem = i;
    for (let ax = out.length - 1; ax >= 0; ax--) {
      coords[ax] = rem % out[ax];
      rem = Math.floor(rem / out[ax]);
    }
    return f(at(a, as, coords), at(b, bs, coords));
  });
}

// [a shape, b shape, output shape, kernel each side takes]
const PATTERNS: [number[], number[], number[], string, string][] = [
  [[5, 7], [5, 7], [5, 7], 'i', 'i'],
  [[5, 7], [1], [5, 7], 'i', '0u'],
  [[4, 5, 7], [7], [4, 5, 7], 'i', 'i % prm[2]'],
  [[4, 5, 7], [5, 7], [4, 5, 7], 'i', 'i % prm[2]'],
  [[6, 7], [6, 1], [6, 7], 'i', 'i / prm[2]'],
  [[4, 5, 7], [4, 1, 1], [4, 5, 7], 'i', 'i / prm[2]'],
  [[6, 1], [1, 7], [6, 7], 'i / prm[1]', 'i % prm[2]'],
  [[4, 5, 7], [4, 1, 7], [4, 5, 7], 'i', 'strided'],
  [[4, 1, 7], [1, 5, 1], [4, 5, 7], 'strided', 'strided'],
];

describe('which broadcasts read by direct index (no GPU needed)', () => {
  it('same, scalar, trailing row, leading column: direct; a middle axis: strided', () => {
    for (const [as, bs, out, ka, kb] of PATTERNS) {
      expect(directIndex(as, out, 1)?.index ?? 'strided', `${as} → ${out}`).toBe(ka);
      expect(directIndex(bs, out, 2)?.index ?? 'strided', `${bs} → ${out}`).toBe(kb);
    }
    // size-1 axes of the output do not count: [3, 1, 4] over [1, 1, 4] is a row.
    expect(directIndex([1, 1, 4], [3, 1, 4], 2)).toEqual({ index: 'i % prm[2]', param: 4 });
    expect(directIndex([3, 1, 1], [3, 1, 4], 1)).toEqual({ index: 'i / prm[1]', param: 4 });
  });
});

describe.skipIf(skip !== undefined)(
  `WebGPU binary elementwise ops${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('float32 sub and div, int32 add, over every pattern', async () => {
      const bad: string[] = [];
      for (const [as, bs, out] of PATTERNS) {
        const av = Array.from({ length: size(as) }, (_, i) => ((i * 37) % 23) - 11);
        const bv = Array.from({ length: size(bs) }, (_, i) => ((i * 13) % 7) + 1);
        const cases: [
          string,
          (x: Tensor, y: Tensor) => Tensor,
          (x: number, y: number) => number,
          'float32' | 'int32',
        ][] = [
          ['sub', sub, (x, y) => x - y, 'float32'],
          ['div', div, (x, y) => Math.fround(x / y), 'float32'],
          ['add int32', add, (x, y) => x + y, 'int32'],
        ];
        for (const [name, op, f, dtype] of cases) {
          const at = tensor(av, as, { backend: 'webgpu-ew', dtype });
          const bt = tensor(bv, bs, { backend: 'webgpu-ew', dtype });
          const o = op(at, bt);
          const got = Array.from(await o.data());
          for (const t of [at, bt, o]) t.dispose();
          const want = hostBroadcast(av, as, bv, bs, out, f);
          if (got.join() !== want.join())
            bad.push(`${name} ${as} ∘ ${bs}: ${got.slice(0, 8)}…, want ${want.slice(0, 8)}…`);
        }
      }
      expect(bad).toEqual([]);
    });
  },
);
