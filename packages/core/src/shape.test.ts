import { describe, expect, it } from 'vitest';
import { broadcastShapes, normalizeAxes, reducedShape, sizeOf, stridesOf } from './shape.js';

describe('shape helpers', () => {
  it('broadcast like numpy and name the op and shapes when they do not', () => {
    expect(broadcastShapes('t', [3, 1], [1, 4])).toEqual([3, 4]);
    expect(broadcastShapes('t', [2, 3, 4], [4])).toEqual([2, 3, 4]);
    expect(broadcastShapes('t', [], [2])).toEqual([2]);
    expect(broadcastShapes('t', [0, 3], [3])).toEqual([0, 3]);
    expect(() => broadcastShapes('mul', [2, 3], [2])).toThrow(
      'mul: shapes [2, 3] and [2] do not broadcast (axis 1: 3 vs 2)',
    );
  });
  it('sizes, strides, axes', () => {
    expect(sizeOf([])).toBe(1);
    expect(sizeOf([2, 0, 3])).toBe(0);
    expect(stridesOf([2, 3, 4])).toEqual([12, 4, 1]);
    expect(normalizeAxes('t', [-1, 0, 0], 3)).toEqual([0, 2]);
    expect(normalizeAxes('t', undefined, 2)).toEqual([0, 1]);
    expect(() => normalizeAxes('sum', 3, 3)).toThrow('sum: axis 3 is out of range for a tensor of rank 3');
    expect(reducedShape([2, 3, 4], [1], true)).toEqual([2, 1, 4]);
    expect(reducedShape([2, 3, 4], [0, 2], false)).toEqual([3]);
  });
});
