import { describe, expect, it } from 'vitest';
import {
  call,
  F64,
  F64_ADD,
  F64_MUL,
  f64c,
  funcBody,
  funcType,
  get,
  I32,
  I32_ADD,
  I32X4_EXTRACT,
  I32X4_SPLAT,
  I64X2_EXTMUL_HIGH_I32X4_U,
  I64X2_EXTMUL_LOW_I32X4_U,
  i32c,
  i32x4c,
  moduleBytes,
  shuffle32,
  sleb,
  uleb,
  wasmApi,
} from './index.js';

/** Instantiates a module of the given functions and returns its exports. */
function instantiate(types: number[][], funcs: { type: number; body: number[]; export?: string }[]) {
  const api = wasmApi()!;
  const bytes = moduleBytes(types, funcs);
  expect(api.validate(bytes)).toBe(true);
  return new api.Instance(new api.Module(bytes), {}).exports as Record<string, (...a: number[]) => number>;
}

describe('@dictlearn/core/wasm', () => {
  it('encodes LEB128 as the specification’s examples', () => {
    // the DWARF / Wikipedia examples
    expect(uleb(0)).toEqual([0x00]);
    expect(uleb(127)).toEqual([0x7f]);
    expect(uleb(128)).toEqual([0x80, 0x01]);
    expect(uleb(624485)).toEqual([0xe5, 0x8e, 0x26]);
    expect(sleb(-123456)).toEqual([0xc0, 0xbb, 0x78]);
    expect(sleb(63)).toEqual([0x3f]);
    expect(sleb(64)).toEqual([0xc0, 0x00]); // 0x40 alone would read as −64
    expect(sleb(-1)).toEqual([0x7f]);
  });

  it('shuffle32 picks whole 32-bit lanes', () => {
    expect(shuffle32([1, 3, 5, 7]).slice(2)).toEqual([
      4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31,
    ]);
  });

  it.skipIf(!wasmApi())('assembles modules that run: i32 and f64 arithmetic, constants', () => {
    const ex = instantiate(
      [funcType([I32, I32], [I32]), funcType([F64], [F64])],
      [
        {
          type: 0,
          body: funcBody([], [...get(0), ...get(1), I32_ADD, ...i32c(-70), I32_ADD]),
          export: 'add',
        },
        {
          type: 1,
          body: funcBody([], [...get(0), ...f64c(0.1), F64_MUL, ...f64c(-2.5), F64_ADD]),
          export: 'affine',
        },
      ],
    );
    expect(ex.add(1000, 7)).toBe(937);
    expect(ex.affine(3)).toBe(3 * 0.1 + -2.5);
    expect(F64).toBe(0x7c);
  });

  it.skipIf(!wasmApi())(
    'the unsigned extended multiplies give the full 64-bit products (checked with BigInt)',
    () => {
      // high 32 bits of lane k's product a·b: the odd halves of extmul_low (lanes 0, 1) and
      // extmul_high (lanes 2, 3)
      const lanes = [0xffffffff, 0xd2511f53, 0x80000001, 12345];
      const mulHigh = (lane: number) => [
        ...i32x4c(lanes),
        ...get(0),
        ...I32X4_SPLAT,
        ...I64X2_EXTMUL_LOW_I32X4_U,
        ...i32x4c(lanes),
        ...get(0),
        ...I32X4_SPLAT,
        ...I64X2_EXTMUL_HIGH_I32X4_U,
        ...shuffle32([1, 3, 5, 7]),
        ...I32X4_EXTRACT,
        lane,
      ];
      const ex = instantiate(
        [funcType([I32], [I32])],
        [0, 1, 2, 3].map((k) => ({ type: 0, body: funcBody([], mulHigh(k)), export: `hi${k}` })),
      );
      for (const b of [0xcd9e8d57, 0xffffffff, 3]) {
        for (let k = 0; k < 4; k++) {
          const want = Number((BigInt(lanes[k]) * BigInt(b)) >> 32n);
          expect(ex[`hi${k}`](b | 0) >>> 0).toBe(want);
        }
      }
    },
  );

  it.skipIf(!wasmApi())(
    'imported functions come first in the index space: calls and exports name the right ones',
    () => {
      const api = wasmApi()!;
      const types = [funcType([F64], [F64])];
      // import 0: log; import 1: a JS function; function 2 = 0.1·x − 2.5; function 3 calls 0, 1 and 2
      const bytes = moduleBytes(
        types,
        [
          {
            type: 0,
            body: funcBody([], [...get(0), ...f64c(0.1), F64_MUL, ...f64c(-2.5), F64_ADD]),
            export: 'affine',
          },
          {
            type: 0,
            body: funcBody([], [...get(0), ...call(0), ...get(0), ...call(1), F64_ADD, ...call(2)]),
            export: 'both',
          },
        ],
        undefined,
        [
          { module: 'math', name: 'log', type: 0 },
          { module: 'js', name: 'twice', type: 0 },
        ],
      );
      expect(api.validate(bytes)).toBe(true);
      const ex = new api.Instance(new api.Module(bytes), {
        math: { log: Math.log },
        js: { twice: (x: number) => 2 * x },
      }).exports as Record<string, (x: number) => number>;
      expect(ex.affine(3)).toBe(3 * 0.1 + -2.5);
      expect(ex.both(7)).toBe((Math.log(7) + 14) * 0.1 + -2.5);
    },
  );
});
