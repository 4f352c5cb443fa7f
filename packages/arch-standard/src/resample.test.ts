import { createCpuBackend } from '@dictlearn/backend-cpu';
import { type Params, registerBackend, tensor, useBackend } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { standard, tied } from './standard.js';

// dictionary_learning's `resample_neurons`, checked against values worked out here in float64:
// alive = not dead (every dead feature excluded, not only those rebuilt), n = min(#dead, rows),
// only the first n dead are rebuilt: encoder column ← x·0.2·mean‖alive encoder columns‖,
// decoder row ← x/‖x‖, b_enc ← 0; everything else untouched.

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
});

const F = 8;
const d = 3;
const dead = [1, 2, 4, 5, 7];
const alive = [0, 3, 6];
const inputs = [
  [1, 2, -0.5],
  [-2, 0.1, 1],
  [0.3, -1, 2],
];
const replace = dead.slice(0, inputs.length); // more dead (5) than rows (3)

/** Encoder columns: alive ones of norm ~0.1–0.3, dead ones ~100× larger, so a mean over the wrong set is far off. */
function encoderColumns(): number[][] {
  return Array.from({ length: F }, (_, j) => {
    const scale = dead.includes(j) ? 10 + j : 0.1 + 0.03 * j;
    return [scale * Math.cos(j), scale * Math.sin(j), scale * 0.5];
  });
}

function params(withEncoder: boolean): Params {
  const cols = encoderColumns();
  const wEnc = Array.from({ length: d }, (_, i) => cols.map((c) => c[i])); // [d, F]
  const wDec = Array.from({ length: F }, (_, j) => [0.5 - 0.1 * j, 0.2 * j, 1]); // [F, d]
  const p: Params = {
    W_dec: tensor(wDec),
    b_enc: tensor(Array.from({ length: F }, (_, j) => 0.1 * (j + 1))),
    b_dec: tensor([0.1, -0.2, 0.3]),
  };
  if (withEncoder) p.W_enc = tensor(wEnc);
  return p;
}

const features = { dead: Int32Array.from(dead), replace: Int32Array.from(replace) };

describe('resampling (dictionary_learning resample_neurons)', () => {
  it('standard: the first n dead are rebuilt with 0.2 · the mean encoder norm over every alive feature', async () => {
    const p = params(true);
    const before = {
      wEnc: (await p.W_enc.array()) as number[][],
      wDec: (await p.W_dec.array()) as number[][],
      bEnc: Array.from(await p.b_enc.data()),
    };
    const out = standard().resample!(p, features, tensor(inputs));
    const wEnc = (await out.W_enc.array()) as number[][];
    const wDec = (await out.W_dec.array()) as number[][];
    const bEnc = Array.from(await out.b_enc.data());
    // By hand: the alive columns' norms, from the float32 values the backend holds.
    const colNorm = (j: number) => Math.hypot(...before.wEnc.map((r) => r[j]));
    const aliveNorm = alive.map(colNorm).reduce((a, b) => a + b) / alive.length;
    expect(aliveNorm).toBeGreaterThan(0.1);
    expect(aliveNorm).toBeLessThan(0.3);
    for (let j = 0; j < F; j++) {
      const i = replace.indexOf(j);
      const encCol = wEnc.map((r) => r[j]);
      if (i >= 0) {
        const x = inputs[i];
        const nx = Math.hypot(...x);
        for (let k = 0; k < d; k++) {
          expect(encCol[k]).toBeCloseTo(x[k] * 0.2 * aliveNorm, 6);
          expect(wDec[j][k]).toBeCloseTo(x[k] / nx, 6);
        }
        expect(bEnc[j]).toBe(0);
      } else {
        // Alive features and dead ones beyond the first n keep every value.
        expect(encCol).toEqual(before.wEnc.map((r) => r[j]));
        expect(wDec[j]).toEqual(before.wDec[j]);
        expect(bEnc[j]).toBe(before.bEnc[j]);
      }
    }
  });

  it('tied: only the decoder row (which is also the encoder) and b_enc of the first n dead change', async () => {
    const p = params(false);
    const before = (await p.W_dec.array()) as number[][];
    const bBefore = Array.from(await p.b_enc.data());
    const out = tied().resample!(p, features, tensor(inputs));
    expect(Object.keys(out).sort()).toEqual(['W_dec', 'b_enc']);
    const wDec = (await out.W_dec.array()) as number[][];
    const bEnc = Array.from(await out.b_enc.data());
    for (let j = 0; j < F; j++) {
      const i = replace.indexOf(j);
      if (i >= 0) {
        const nx = Math.hypot(...inputs[i]);
        for (let k = 0; k < d; k++) expect(wDec[j][k]).toBeCloseTo(inputs[i][k] / nx, 6);
        expect(bEnc[j]).toBe(0);
      } else {
        expect(wDec[j]).toEqual(before[j]);
        expect(bEnc[j]).toBe(bBefore[j]);
      }
    }
  });
});
