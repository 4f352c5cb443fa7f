import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lista, factories as listaFactories } from '@dictlearn/arch-lista';
import { standard, factories as standardFactories } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  type ArchitecturePlugin,
  concat,
  createArchitecture,
  Dictionary,
  getKernel,
  type Params,
  registerArchitecture,
  registerBackend,
  registerKernel,
  slice,
  type Tensor,
  Trainer,
  tensor,
  useBackend,
  Variable,
  valueAndGrad,
} from '@dictlearn/core';
import { compareValues } from '@dictlearn/core/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { blockDiagonal, factories } from './blockdiag.js';

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  for (const f of [...standardFactories, ...listaFactories, ...factories]) registerArchitecture(f);
});

/** Deterministic values in [-scale, scale) (an LCG, independent of the plugins' Philox draws). */
function values(n: number, seed: number, scale = 1): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * scale;
  });
}

const TOL = { rtol: 1e-5, atol: 1e-6 };

/**
 * H separate dictionaries of `inner` (sizes d/H, F/H) with random parameters, and the stored
 * parameters of the block-diagonal wrapper holding them, assembled here by hand: matrices with
 * a feature axis are stacked along it, vectors put side by side.
 */
function heads(inner: ArchitecturePlugin<object>, H: number, dh: number, fh: number) {
  const shapes = inner.paramShapes({ activationDim: dh, dictSize: fh });
  const perHead: Params[] = [];
  for (let h = 0; h < H; h++) {
    const p: Params = {};
    for (const [name, shape] of Object.entries(shapes)) {
      const size = shape.reduce((a, b) => a * b, 1);
      let v = values(size, 100 * h + name.length + 7, 0.5);
      if (name === 'log_threshold') v = v.map((u) => Math.log(0.05 + 0.05 * u));
      p[name] = tensor(v, shape);
    }
    perHead.push(p);
  }
  return perHead;
}

function stackStandard(perHead: Params[]): Params {
  return {
    W_enc: concat(
      perHead.map((p) => p.W_enc),
      1,
    ),
    b_enc: concat(
      perHead.map((p) => p.b_enc),
      0,
    ),
    W_dec: concat(
      perHead.map((p) => p.W_dec),
      0,
    ),
    b_dec: concat(
      perHead.map((p) => p.b_dec),
      0,
    ),
  };
}

function stackLista(perHead: Params[]): Params {
  return {
    W_enc: concat(
      perHead.map((p) => p.W_enc),
      2,
    ),
    W_dec: concat(
      perHead.map((p) => p.W_dec),
      0,
    ),
    b_dec: concat(
      perHead.map((p) => p.b_dec),
      0,
    ),
    log_threshold: concat(
      perHead.map((p) => p.log_threshold),
      1,
    ),
  };
}

const block = (x: Tensor, h: number, dh: number) => slice(x, [0, h * dh], [x.shape[0], dh]);

describe('block-diagonal = H separate dictionaries given the same parameters', () => {
  const cases: [string, ArchitecturePlugin<object>, (p: Params[]) => Params][] = [
    ['standard', standard({ l1Penalty: 0.2 }), stackStandard],
    ['lista (FISTA, 3 iterations)', lista({ iterations: 3, variant: 'fista', l1Penalty: 0.2 }), stackLista],
  ];
  it.each(cases)(
    '%s: features, reconstruction, decoder rows, loss and every gradient',
    async (_, inner, stack) => {
      const H = 3;
      const dh = 4;
      const fh = 5;
      const B = 6;
      const arch = blockDiagonal(inner, { heads: H });
      const perHead = heads(inner, H, dh, fh);
      const p = stack(perHead);
      // The stored shapes are what paramShapes promises: 1/H of a dense dictionary's matrices.
      const shapes = arch.paramShapes({ activationDim: H * dh, dictSize: H * fh });
      for (const [k, t] of Object.entries(p)) expect(t.shape).toEqual(shapes[k]);
      const x = tensor(values(B * H * dh, 5, 1.2), [B, H * dh]);

      const f = arch.encode(p, x);
      const want = concat(
        perHead.map((q, h) => inner.encode(q, block(x, h, dh))),
        1,
      );
      const fv = await f.data();
      expect(Array.from(fv).filter((v) => v !== 0).length).toBeGreaterThan(B);
      expect(compareValues(fv, await want.data(), TOL)).toBeNull();
      // Each head reconstructs only its own block.
      const recon = await arch.decode(p, f).data();
      const wantRecon = concat(
        perHead.map((q, h) => inner.decode(q, slice(f, [0, h * fh], [B, fh]))),
        1,
      );
      expect(compareValues(recon, await wantRecon.data(), TOL)).toBeNull();
      const rows = arch.decoderRows(p);
      expect(rows.shape).toEqual([H * fh, H * dh]);
      const rowValues = (await rows.array()) as number[][];
      for (let j = 0; j < H * fh; j++)
        for (let i = 0; i < H * dh; i++)
          if (Math.floor(j / fh) !== Math.floor(i / dh)) expect(rowValues[j][i]).toBe(0);

      // Loss = Σ_h loss_h, and the gradient of every stored parameter is the heads' gradients.
      const ctx = { step: 0, sparsityScale: 1 };
      const vars = Object.fromEntries(Object.entries(p).map(([k, t]) => [k, new Variable(t, k)]));
      const got = valueAndGrad(
        () => arch.loss(Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, v.value])), x, ctx).loss,
        Object.values(vars),
      );
      const headVars = perHead.map((q) =>
        Object.fromEntries(Object.entries(q).map(([k, t]) => [k, new Variable(t, k)])),
      );
      const headGrads = headVars.map((hv, h) =>
        valueAndGrad(
          () =>
            inner.loss(
              Object.fromEntries(Object.entries(hv).map(([k, v]) => [k, v.value])),
              block(x, h, dh),
              ctx,
            ).loss,
          Object.values(hv),
        ),
      );
      let total = 0;
      for (const g of headGrads) total += (await g.value.data())[0];
      expect(compareValues(await got.value.data(), [total], TOL)).toBeNull();
      const stackedGrads = stack(
        headVars.map((hv, h) =>
          Object.fromEntries(Object.entries(hv).map(([k, v]) => [k, headGrads[h].grads.get(v)!])),
        ),
      );
      for (const [k, v] of Object.entries(vars)) {
        const g = await got.grads.get(v)!.data();
        expect(Array.from(g).some((e) => e !== 0)).toBe(true);
        expect(compareValues(g, await stackedGrads[k].data(), TOL, `d${k}`)).toBeNull();
      }
    },
  );
});

describe('blockdiag plugin', () => {
  it('stores 1/H of a dense dictionary’s matrix parameters', () => {
    const dense = standard().paramShapes({ activationDim: 64, dictSize: 256 });
    const arch = blockDiagonal(standard(), { heads: 8 });
    const shapes = arch.paramShapes({ activationDim: 64, dictSize: 256 });
    expect(shapes).toEqual({ W_enc: [8, 256], b_enc: [256], W_dec: [256, 8], b_dec: [64] });
    const count = (s: Record<string, number[]>) =>
      Object.values(s).reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
    expect(count(shapes) - 256 - 64).toBe((count(dense) - 256 - 64) / 8);
    const l = blockDiagonal(lista({ iterations: 2 }), { heads: 4 }).paramShapes({
      activationDim: 64,
      dictSize: 256,
    });
    expect(l).toEqual({ W_enc: [2, 16, 256], W_dec: [256, 16], b_dec: [64], log_threshold: [2, 256] });
  });

  it('runs one matmul per product whatever H (no per-head calls)', async () => {
    const calls: number[] = [];
    const original = getKernel('matmul', 'cpu')!;
    let n = 0;
    registerKernel(
      'matmul',
      'cpu',
      ((...args: Parameters<typeof original>) => {
        n++;
        return original(...args);
      }) as typeof original,
      { replace: true },
    );
    try {
      for (const H of [1, 2, 8]) {
        const arch = blockDiagonal(lista({ iterations: 3 }), { heads: H });
        const p = arch.init({ activationDim: 16, dictSize: 32 }, { seed: 1 });
        n = 0;
        arch.decode(p, arch.encode(p, tensor(values(4 * 16, 2), [4, 16])));
        calls.push(n);
      }
    } finally {
      registerKernel('matmul', 'cpu', original, { replace: true });
    }
    expect(calls[0]).toBeGreaterThan(0);
    expect(calls).toEqual([calls[0], calls[0], calls[0]]);
  });

  it('resampling rebuilds a dead feature inside its head: its block of the input, zeros elsewhere', async () => {
    // Standard's REFERENCE resampling on the dense layout: encoder column ← x·0.2·(mean alive
    // encoder norm), decoder row ← x/‖x‖, b_enc ← 0; the wrapper keeps each head's block and
    // makes the decoder row unit within it.
    const inner = standard();
    const arch = blockDiagonal(inner, { heads: 2 });
    const perHead = heads(inner, 2, 3, 4);
    const p = stackStandard(perHead);
    const x = values(6, 21, 1);
    const out = arch.resample!(
      p,
      { dead: Int32Array.from([5]), replace: Int32Array.from([5]) },
      tensor(x, [1, 6]),
    );
    const wEnc = (await p.W_enc.array()) as number[][]; // [3, 8]: head h's columns are 4h..4h+3
    let alive = 0;
    for (let j = 0; j < 8; j++) if (j !== 5) alive += Math.hypot(...[0, 1, 2].map((i) => wEnc[i][j]));
    alive /= 7;
    const norm = Math.hypot(x[3], x[4], x[5]);
    // Feature 5 is head 1's feature 1: it sees columns 3..5 of x.
    const enc = (await out.W_enc.array()) as number[][];
    expect(
      compareValues(
        [0, 1, 2].map((i) => enc[i][5]),
        [3, 4, 5].map((i) => x[i] * 0.2 * alive),
        TOL,
      ),
    ).toBeNull();
    expect(
      compareValues(
        [0, 1, 2].map((i) => enc[i][4]),
        [0, 1, 2].map((i) => wEnc[i][4]),
        TOL,
      ),
    ).toBeNull();
    const dec = (await out.W_dec.array()) as number[][];
    expect(
      compareValues(
        dec[5],
        [3, 4, 5].map((i) => x[i] / norm),
        TOL,
      ),
    ).toBeNull();
    expect(Math.abs((await out.b_enc.data())[5])).toBe(0);
  });

  it('init: each head is its own dictionary from seed·1024 + h', async () => {
    const inner = standard();
    const arch = blockDiagonal(inner, { heads: 2 });
    const p = arch.init({ activationDim: 6, dictSize: 8 }, { seed: 3 });
    for (let h = 0; h < 2; h++) {
      const q = inner.init({ activationDim: 3, dictSize: 4 }, { seed: 3 * 1024 + h });
      expect(Array.from(await slice(p.W_dec, [h * 4, 0], [4, 3]).data())).toEqual(
        Array.from(await q.W_dec.data()),
      );
    }
  });

  it('logs each head’s L0 and dead fraction, and trains with them', async () => {
    const arch = blockDiagonal(standard({ l1Penalty: 0.05 }), { heads: 2, deadSteps: 3 });
    const p = stackStandard(heads(standard(), 2, 3, 4));
    const x = tensor(values(16 * 6, 9, 1), [16, 6]);
    const since = Int32Array.from([0, 3, 5, 1, 9, 9, 2, 3]); // head 0: 2 of 4 dead; head 1: 3 of 4
    const out = arch.loss(p, x, { step: 0, sparsityScale: 1, withLogs: true, stepsSinceFired: since });
    const f = (await arch.encode(p, x).array()) as number[][];
    for (const h of [0, 1]) {
      const want =
        f.reduce((s, row) => s + row.slice(4 * h, 4 * h + 4).filter((v) => v !== 0).length, 0) / 16;
      expect((await out.logs[`l0_head_${h}`].data())[0]).toBeCloseTo(want, 6);
    }
    expect((await out.logs.l0_head_0.data())[0]).not.toBeCloseTo((await out.logs.l0_head_1.data())[0], 3);
    expect((await out.logs.dead_head_0.data())[0]).toBe(0.5);
    expect((await out.logs.dead_head_1.data())[0]).toBe(0.75);
    // Through the trainer: the heads' L0 add up to the logged L0.
    const trainer = new Trainer(
      { architecture: arch, dictSize: 8, lr: 1e-2, warmupSteps: 0, sparsityWarmupSteps: 0 },
      6,
      10,
    );
    await trainer.update(x, false);
    const logs = await trainer.update(x, true);
    expect(logs.l0_head_0 + logs.l0_head_1).toBeCloseTo(logs.l0, 5);
    trainer.dispose();
  });

  it('saves and loads like any dictionary, with the inner architecture rebuilt from the registry', async () => {
    const arch = createArchitecture('blockdiag', {
      heads: 2,
      inner: 'standard',
      innerConfig: { l1Penalty: 0.3 },
    });
    expect(arch.config).toEqual({
      heads: 2,
      inner: 'standard',
      innerConfig: { l1Penalty: 0.3, encoderBiasInit: 'zero' },
      deadSteps: 1000,
    });
    const sizes = { activationDim: 6, dictSize: 8 };
    const p = arch.init(sizes, { seed: 2 });
    p.b_enc = tensor(values(8, 4, 0.1), [8]);
    p.b_dec = tensor(values(6, 5, 0.3), [6]);
    const dict = Dictionary.fromTraining(arch, p, sizes, 1.5);
    const dir = await mkdtemp(join(tmpdir(), 'blockdiag-'));
    try {
      await dict.save(dir);
      const loaded = await Dictionary.load(dir);
      expect(loaded.arch.config).toEqual(arch.config);
      const x = tensor(values(12, 3, 2), [2, 6]);
      expect(
        compareValues(await loaded.encode(x).data(), await dict.encode(x).data(), { rtol: 0, atol: 0 }),
      ).toBeNull();
      // The scale was folded like the inner architecture folds it: raw = 1.5 × training space.
      const train = await arch
        .decode(
          p,
          arch.encode(
            p,
            tensor(
              (await x.data()).map((v) => v / 1.5),
              [2, 6],
            ),
          ),
        )
        .data();
      expect(
        compareValues(
          await loaded.decode(loaded.encode(x)).data(),
          Array.from(train, (v) => v * 1.5),
          TOL,
        ),
      ).toBeNull();
      loaded.dispose();
    } finally {
      dict.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('bad configs get one clear line', () => {
    expect(() => blockDiagonal(standard(), { heads: 0 })).toThrow(
      "blockdiag: field 'heads' must be a positive integer, got 0",
    );
    expect(() =>
      blockDiagonal(standard(), { heads: 4 }).paramShapes({ activationDim: 6, dictSize: 8 }),
    ).toThrow('blockdiag: 4 heads need a width and a dictionary size divisible by 4, got d = 6 and F = 8');
    expect(() => createArchitecture('blockdiag', { heads: 2 })).toThrow(
      "blockdiag: field 'inner' is required: the registry name of the heads' architecture (e.g. 'standard'), got undefined",
    );
    expect(() => createArchitecture('blockdiag', { heads: 2, inner: 'nope' })).toThrow(
      "unknown architecture 'nope'",
    );
  });
});
