// The shared cfg.json reader of the SAELens and sparsify folders: each key of a format's key map
// checked, wrong values named with the file and key, both formats refusing the same way.
import { DictlearnError } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { float32Notes, readCfgKeys } from './cfg-folder.js';
import { decodeSaeLens } from './saelens.js';
import { decodeSparsify } from './sparsify.js';

const KEYS = {
  d_in: { kind: 'positive-int' },
  n: { kind: 'positive-int', optional: true },
  flag: { kind: 'boolean', default: true },
} as const;

function message(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    return (e as Error).message;
  }
  throw new Error('expected a DictlearnError');
}

describe('readCfgKeys', () => {
  it('reads the keys of the map, with defaults for absent optional ones', () => {
    expect(readCfgKeys({ d_in: 8, other: 'kept' }, 'c.json', 'X', KEYS)).toEqual({
      cfg: { d_in: 8, other: 'kept' },
      values: { d_in: 8, n: undefined, flag: true },
    });
    expect(readCfgKeys({ d_in: 3, n: 5, flag: false }, 'c.json', 'X', KEYS).values).toEqual({
      d_in: 3,
      n: 5,
      flag: false,
    });
  });

  it('names the file, the key and the value found', () => {
    expect(message(() => readCfgKeys([1], 'c.json', 'X', KEYS))).toBe(
      'c.json: must hold a JSON object (X cfg.json)',
    );
    expect(message(() => readCfgKeys({ d_in: 0 }, 'c.json', 'X', KEYS))).toBe(
      "c.json: field 'd_in' must be a positive integer, got 0",
    );
    expect(message(() => readCfgKeys({ d_in: 2.5 }, 'c.json', 'X', KEYS))).toMatch(/'d_in'.*got 2\.5/);
    expect(message(() => readCfgKeys({}, 'c.json', 'X', KEYS))).toMatch(/'d_in'.*got undefined/);
    expect(message(() => readCfgKeys({ d_in: 1, n: -2 }, 'c.json', 'X', KEYS))).toMatch(/'n'.*got -2/);
    expect(message(() => readCfgKeys({ d_in: 1, flag: 'yes' }, 'c.json', 'X', KEYS))).toBe(
      `c.json: field 'flag' must be true or false, got "yes"`,
    );
  });

  it('is what SAELens and sparsify refuse a bad cfg.json with', () => {
    const files = ['w.safetensors', 'cfg.json'];
    expect(message(() => decodeSaeLens({}, { d_in: 4, d_sae: 0 }, files))).toBe(
      "cfg.json: field 'd_sae' must be a positive integer, got 0",
    );
    expect(message(() => decodeSaeLens({}, { d_in: 4, d_sae: 8, apply_b_dec_to_input: 1 }, files))).toMatch(
      /'apply_b_dec_to_input' must be true or false, got 1/,
    );
    expect(message(() => decodeSaeLens({}, 'x', files))).toMatch(
      /must hold a JSON object \(SAELens cfg\.json\)/,
    );
    expect(message(() => decodeSparsify({}, { d_in: -1, num_latents: 8, k: 2 }, files))).toBe(
      "cfg.json: field 'd_in' must be a positive integer, got -1",
    );
    expect(message(() => decodeSparsify({}, { d_in: 4, num_latents: 8 }, files))).toBe(
      "cfg.json: field 'k' must be a positive integer, got undefined",
    );
    expect(message(() => decodeSparsify({}, null, files))).toMatch(/sparsify cfg\.json/);
  });

  it('notes weights that are not float32 once', () => {
    const t = (dtype: string) => ({ dtype, shape: [1], values: new Float32Array(1) }) as never;
    expect(float32Notes({ a: t('F32'), b: t('F32') })).toEqual([]);
    expect(float32Notes({ a: t('F32'), b: t('BF16'), c: t('F16') })).toEqual([
      'weights stored as BF16, converted to float32',
    ]);
  });
});
