// evaluate() and featureDensity() against numpy (src/fixtures/evaluate.json, made by
// scripts/make-fixtures.py) and against hand-computed tiny cases, on the CPU reference backend.
import { createCpuBackend } from '@dictlearn/backend-cpu';
import {
  add,
  type DictionaryLike,
  DictlearnError,
  div,
  matmul,
  memory,
  mul,
  neg,
  registerBackend,
  relu,
  scope,
  sub,
  type Tensor,
  tensor,
  useBackend,
  zeros,
} from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { featureDensity } from './density.js';
import { type EvalMetrics, evaluate } from './evaluate.js';
import fixture from './fixtures/evaluate.json' with { type: 'json' };

beforeAll(async () => {
  registerBackend(createCpuBackend({ name: 'cpu' }));
  await useBackend('cpu');
});

const live = () => memory().backends.cpu?.tensors ?? 0;

/** A standard ReLU SAE: f = relu((x − b_dec) W_enc + b_enc), x̂ = f W_dec + b_dec. */
class StandardSae implements DictionaryLike {
  readonly activationDim: number;
  readonly dictSize: number;
  constructor(
    readonly W_enc: Tensor,
    readonly b_enc: Tensor,
    readonly W_dec: Tensor,
    readonly b_dec: Tensor,
  ) {
    [this.activationDim, this.dictSize] = W_enc.shape;
  }
  encode(x: Tensor): Tensor {
    return scope(() => relu(add(matmul(sub(x, this.b_dec), this.W_enc), this.b_enc)));
  }
  decode(f: Tensor): Tensor {
    return scope(() => add(matmul(f, this.W_dec), this.b_dec));
  }
  forward(x: Tensor): { reconstruction: Tensor; features: Tensor } {
    const features = this.encode(x);
    return { reconstruction: this.decode(features), features };
  }
  decoderRows(): Tensor {
    return add(this.W_dec, 0);
  }
  dispose(): void {
    for (const t of [this.W_enc, this.b_enc, this.W_dec, this.b_dec]) t.dispose();
  }
}

/**
 * A dictionary given by two functions: features = encode(x) (F = `dictSize`) and
 * reconstruction = decode(features, x), for hand-computed cases.
 */
function fnDictionary(
  d: number,
  F: number,
  encode: (x: Tensor) => Tensor,
  decode: (f: Tensor, x: Tensor) => Tensor,
): DictionaryLike {
  return {
    activationDim: d,
    dictSize: F,
    encode,
    decode: (f) => decode(f, f),
    forward: (x) => {
      const features = encode(x);
      return { reconstruction: decode(features, x), features };
    },
    decoderRows: () => zeros([F, d]),
  };
}

const fromFixture = (t: { shape: number[]; values: number[] }) => tensor(t.values, t.shape);
const fixtureSae = () =>
  new StandardSae(
    fromFixture(fixture.W_enc),
    fromFixture(fixture.b_enc),
    fromFixture(fixture.W_dec),
    fromFixture(fixture.b_dec),
  );
const fixtureBatches = () => fixture.batches.map(fromFixture);

async function* stream(batches: Tensor[], pulled?: { count: number; closed: boolean }) {
  try {
    for (const b of batches) {
      if (pulled) pulled.count++;
      yield b;
    }
  } finally {
    if (pulled) pulled.closed = true;
  }
}

// Tolerance against the float64 numpy reference. The inputs are the fixture's float32 values
// exactly; each op rounds to float32 (unit roundoff u = 2⁻²⁴ ≈ 6e-8) and every metric is a
// short chain of ops over at most 32 × 24 terms, so the relative error is bounded by a small
// multiple of n·u ≈ 5e-5 and is typically ~√n·u ≈ 2e-6 for a backend that sums in float32
// (measured on the CPU backend, which accumulates sums in float64: at most 6e-8). rtol 2e-5
// keeps the test valid for such backends; atol covers values near 0. Counts (l0,
// frac_alive, batches, tokens) are exact: the fixture keeps every pre-activation ≥ 1e-3 from 0.
const RTOL = 2e-5;
const ATOL = 1e-6;
function expectClose(actual: number, expected: number, what: string, rtol = RTOL, atol = ATOL): void {
  const err = Math.abs(actual - expected);
  if (!(err <= atol + rtol * Math.abs(expected))) {
    throw new Error(`${what}: got ${actual}, expected ${expected} (error ${err.toExponential(2)})`);
  }
}

const FLOAT_KEYS = [
  'l2_loss',
  'l1_loss',
  'frac_variance_explained',
  'cossim',
  'l2_ratio',
  'relative_reconstruction_bias',
] as const;

function expectMetrics(m: EvalMetrics, expected: Record<string, number>): void {
  for (const k of FLOAT_KEYS) expectClose(m[k], expected[k], k);
  expect(m.l0).toBe(expected.l0);
}

describe('evaluate against numpy', () => {
  it('matches every metric of the numpy reference over three batches of different sizes', async () => {
    const sae = fixtureSae();
    const m = await evaluate(sae, fixtureBatches());
    expectMetrics(m, fixture.expected);
    expect(m.frac_alive).toBe(fixture.expected.frac_alive);
    expect(m.batches).toBe(3);
    expect(m.tokens).toBe(84);
    // Keys in DL's names, nothing else.
    expect(Object.keys(m).sort()).toEqual(
      [...FLOAT_KEYS, 'l0', 'frac_alive', 'batches', 'tokens'].sort() as string[],
    );
    sae.dispose();
  });

  it('implements relative_reconstruction_bias = E‖x̂‖² / E⟨x, x̂⟩, in DL’s and SAEBench’s direction', async () => {
    const sae = fixtureSae();
    const m = await evaluate(sae, fixtureBatches().slice(0, 1));
    expectClose(m.relative_reconstruction_bias, fixture.first_batch.relative_reconstruction_bias, 'bias');
    sae.dispose();
  });

  it('maxBatches stops after that many batches without pulling another, and closes the stream', async () => {
    const sae = fixtureSae();
    const pulled = { count: 0, closed: false };
    const batches = fixtureBatches();
    const m = await evaluate(sae, stream(batches, pulled), { maxBatches: 1 });
    expect(pulled).toEqual({ count: 1, closed: true });
    expect(m.batches).toBe(1);
    expect(m.tokens).toBe(32);
    expectMetrics(m, fixture.first_batch);
    for (const b of batches.slice(1)) b.dispose();
    sae.dispose();
  });

  it('maxBatches larger than the stream evaluates what there is', async () => {
    const sae = fixtureSae();
    const m = await evaluate(sae, stream(fixtureBatches()), { maxBatches: 100 });
    expect(m.batches).toBe(3);
    expectMetrics(m, fixture.expected);
    sae.dispose();
  });

  it('disposes each batch and every intermediate: live tensors stay flat', async () => {
    const sae = fixtureSae();
    const before = live();
    const bytesBefore = memory().backends.cpu.bytes;
    const batches = fixtureBatches();
    await evaluate(sae, stream(batches));
    expect(batches.every((b) => b.isDisposed)).toBe(true);
    expect(live()).toBe(before);
    expect(memory().backends.cpu.bytes).toBe(bytesBefore);
    // Many batches: still flat.
    async function* many() {
      for (let i = 0; i < 20; i++) yield fromFixture(fixture.batches[i % 3]);
    }
    const m = await evaluate(sae, many());
    expect(m.batches).toBe(20);
    expect(live()).toBe(before);
    sae.dispose();
  });

  it('disposeBatches: false keeps the batches, so two dictionaries can be compared on them', async () => {
    const sae = fixtureSae();
    const batches = fixtureBatches();
    const before = live();
    const a = await evaluate(sae, batches, { disposeBatches: false });
    const b = await evaluate(sae, batches, { disposeBatches: false });
    expect(batches.every((t) => !t.isDisposed)).toBe(true);
    expect(live()).toBe(before);
    expect(b).toEqual(a);
    for (const t of batches) t.dispose();
    sae.dispose();
  });
});

describe('evaluate on hand-computed cases', () => {
  // x̂ = s·x for a scalar s (features: x itself, F = d).
  const scaled = (d: number, s: number) =>
    fnDictionary(
      d,
      d,
      (x) => add(x, 0),
      (f) => mul(f, s),
    );
  // x = rows [3, 4] and [0, -1], [1, 0]: norms 5, 1, 1.
  const x3 = () =>
    tensor([
      [3, 4],
      [0, -1],
      [1, 0],
    ]);

  it('perfect reconstruction: l2_loss 0, FVE 1, cossim 1, l2_ratio 1, bias 1', async () => {
    const m = await evaluate(scaled(2, 1), [x3()]);
    expect(m.l2_loss).toBe(0);
    expect(m.frac_variance_explained).toBe(1);
    expect(m.cossim).toBeCloseTo(1, 6);
    expect(m.l2_ratio).toBe(1);
    expect(m.relative_reconstruction_bias).toBe(1);
    // features = x: ‖f‖₁ = 7, 1, 1; non-zeros 2, 1, 1.
    expect(m.l1_loss).toBeCloseTo(3, 6);
    expect(m.l0).toBeCloseTo(4 / 3, 6);
    expect(m.frac_alive).toBe(1);
    expect(m.tokens).toBe(3);
  });

  it('x̂ = x/2: FVE 3/4, cossim 1, l2_ratio 1/2, l2_loss = mean‖x‖/2, bias 1/2 (shrinkage)', async () => {
    const m = await evaluate(scaled(2, 0.5), [x3()]);
    expect(m.frac_variance_explained).toBeCloseTo(0.75, 6);
    expect(m.cossim).toBeCloseTo(1, 6);
    expect(m.l2_ratio).toBeCloseTo(0.5, 6);
    expect(m.l2_loss).toBeCloseTo(7 / 3 / 2, 6);
    expect(m.relative_reconstruction_bias).toBeCloseTo(0.5, 6);
  });

  it('x̂ = −x: FVE −3, cossim −1, l2_ratio 1, bias −1, l2_loss = 2·mean‖x‖', async () => {
    const m = await evaluate(
      fnDictionary(
        2,
        2,
        (x) => add(x, 0),
        (f) => neg(f),
      ),
      [x3()],
    );
    expect(m.frac_variance_explained).toBeCloseTo(-3, 5);
    expect(m.cossim).toBeCloseTo(-1, 6);
    expect(m.l2_ratio).toBeCloseTo(1, 6);
    expect(m.relative_reconstruction_bias).toBeCloseTo(-1, 6);
    expect(m.l2_loss).toBeCloseTo(14 / 3, 5);
  });

  it('zero reconstruction: FVE 0, l2_loss = mean‖x‖, l2_ratio 0, no feature alive; cossim and bias are 0/0 = NaN as in DL', async () => {
    const m = await evaluate(
      fnDictionary(
        2,
        5,
        (x) => zeros([x.shape[0], 5]),
        (_f, x) => mul(x, 0),
      ),
      [x3()],
    );
    expect(m.frac_variance_explained).toBe(0);
    expect(m.l2_loss).toBeCloseTo(7 / 3, 6);
    expect(m.l2_ratio).toBe(0);
    expect(m.l0).toBe(0);
    expect(m.l1_loss).toBe(0);
    expect(m.frac_alive).toBe(0);
    expect(m.cossim).toBeNaN();
    expect(m.relative_reconstruction_bias).toBeNaN();
  });

  it('a constant reconstruction (the batch mean) explains no variance: FVE 0', async () => {
    // rows [3, 4], [0, -1], [1, 0] have mean [4/3, 1].
    const m = await evaluate(
      fnDictionary(
        2,
        1,
        (x) => zeros([x.shape[0], 1]),
        (_f, x) => add(mul(x, 0), tensor([4 / 3, 1])),
      ),
      [x3()],
    );
    expect(m.frac_variance_explained).toBeCloseTo(0, 6);
  });

  it('FVE uses per-dimension variance over the batch, summed over dimensions', async () => {
    // x̂ keeps column 0 and zeroes column 1: FVE = var(x₀) / (var(x₀) + var(x₁)).
    // columns of x3: [3, 0, 1] (SS about the mean 14/3), [4, -1, 0] (SS 14).
    const m = await evaluate(
      fnDictionary(
        2,
        2,
        (x) => add(x, 0),
        (f) => mul(f, tensor([1, 0])),
      ),
      [x3()],
    );
    expect(m.frac_variance_explained).toBeCloseTo(14 / 3 / (14 / 3 + 14), 6);
  });

  it('averages over batches with equal weight, as DL does (not over rows)', async () => {
    // x̂ = x/2, so each batch's l2_loss is its mean ‖x‖ / 2: batch 1 (2 rows of norm 1) gives
    // 0.5, batch 2 (4 rows of norm 2) gives 1; the mean over batches is 0.75 (over rows, 5/6).
    const b1 = tensor([
      [1, 0],
      [0, 1],
    ]);
    const b2 = tensor([
      [2, 0],
      [0, 2],
      [-2, 0],
      [0, -2],
    ]);
    const m = await evaluate(scaled(2, 0.5), [b1, b2]);
    expect(m.l2_loss).toBeCloseTo(0.75, 6);
    expect(m.tokens).toBe(6);
    expect(m.batches).toBe(2);
  });

  it('frac_alive counts features that fired in any batch; l0 counts non-zeros of either sign', async () => {
    // features = x (F = d = 4): feature 0 fires only in batch 1, feature 1 (negative) only in
    // batch 2, feature 3 in both, feature 2 never.
    const b1 = tensor([
      [1, 0, 0, 2],
      [0, 0, 0, 1],
    ]);
    const b2 = tensor([
      [0, -3, 0, 1],
      [0, 0, 0, 1],
    ]);
    const m = await evaluate(scaled(4, 1), [b1, b2]);
    expect(m.frac_alive).toBe(3 / 4);
    expect(m.l0).toBeCloseTo((1.5 + 1.5) / 2, 6);
    expect(m.l1_loss).toBeCloseTo((2 + 2.5) / 2, 6);
  });

  it('frees the dictionary’s outputs (features and reconstruction) after each batch', async () => {
    const before = live();
    const m = await evaluate(scaled(2, 0.5), [x3(), x3()]);
    expect(m.batches).toBe(2);
    expect(live()).toBe(before);
  });

  it('accepts a plain synchronous generator', async () => {
    function* gen() {
      yield x3();
      yield x3();
    }
    const m = await evaluate(scaled(2, 1), gen());
    expect(m.batches).toBe(2);
  });
});

describe('evaluate rejects bad input with a clear DictlearnError', () => {
  const sae = () => fixtureSae();

  // `consumed`: tensors made before the call that evaluate disposes (it owns the batches it reads).
  async function rejects(run: () => Promise<unknown>, message: RegExp, consumed = 0): Promise<void> {
    const before = live() - consumed;
    const err = await run().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DictlearnError);
    expect((err as Error).message).toMatch(message);
    expect(live()).toBe(before);
  }

  it('a batch of the wrong width names the expected d', async () => {
    const s = sae();
    await rejects(
      () =>
        evaluate(s, [
          tensor([
            [1, 2, 3, 4, 5],
            [1, 2, 3, 4, 5],
          ]),
        ]),
      /evaluate: batch 0 has shape \[2, 5\]; expected \[rows, 8\] \(the dictionary's activationDim d = 8\)/,
    );
    // The second batch: the first one was evaluated and disposed, the bad one too.
    const good = fromFixture(fixture.batches[0]);
    const bad = tensor(new Float32Array(12), [2, 6]);
    await rejects(() => evaluate(s, [good, bad]), /batch 1 has shape \[2, 6\]; expected \[rows, 8\]/, 2);
    expect(good.isDisposed && bad.isDisposed).toBe(true);
    // An error closes an async stream too (its finally block runs).
    const pulled = { count: 0, closed: false };
    const third = fromFixture(fixture.batches[2]);
    await rejects(
      () => evaluate(s, stream([tensor(new Float32Array(8), [1, 8]), third], pulled)),
      /batch 0 has 1 row/,
    );
    expect(pulled).toEqual({ count: 1, closed: true });
    third.dispose();
    s.dispose();
  });

  it('batches of the wrong rank or dtype', async () => {
    const s = sae();
    await rejects(
      () => evaluate(s, [tensor(new Float32Array(8), [8])]),
      /batch 0 has shape \[8\]; expected \[rows, 8\]/,
    );
    await rejects(() => evaluate(s, [tensor(new Float32Array(16), [1, 2, 8])]), /shape \[1, 2, 8\]/);
    await rejects(
      () => evaluate(s, [tensor(new Int32Array(16), [2, 8])]),
      /batch 0 is int32; expected float32 activations/,
    );
    s.dispose();
  });

  it('an empty stream (array, generator, async generator)', async () => {
    const s = sae();
    await rejects(() => evaluate(s, []), /evaluate: the batch stream was empty/);
    await rejects(() => evaluate(s, (function* () {})()), /the batch stream was empty/);
    await rejects(() => evaluate(s, stream([])), /the batch stream was empty/);
    s.dispose();
  });

  it('batches with fewer than 2 rows (the variance needs two)', async () => {
    const s = sae();
    await rejects(
      () => evaluate(s, [tensor(new Float32Array(8), [1, 8])]),
      /batch 0 has 1 row; evaluate needs at least 2 per batch \(frac_variance_explained is a variance/,
    );
    await rejects(() => evaluate(s, [tensor(new Float32Array(0), [0, 8])]), /batch 0 has 0 rows/);
    s.dispose();
  });

  it('NaN or Inf in a batch, naming where', async () => {
    const s = sae();
    const values = Float32Array.from(fixture.batches[0].values);
    values[2 * 8 + 5] = Number.NaN;
    values[3 * 8] = Number.POSITIVE_INFINITY;
    const bad = tensor(values, [32, 8]);
    await rejects(
      () => evaluate(s, [bad]),
      /evaluate: batch 0 holds 2 NaN or Inf values \(first at row 2, column 5: NaN\); expected finite activations/,
      1,
    );
    expect(bad.isDisposed).toBe(true);
    s.dispose();
  });

  it('items that are not tensors, and disposed tensors', async () => {
    const s = sae();
    await rejects(
      () => evaluate(s, [42 as unknown as Tensor]),
      /batch 0 is number, expected a Tensor of shape \[rows, 8\]/,
    );
    const gone = fromFixture(fixture.batches[0]);
    gone.dispose();
    await rejects(() => evaluate(s, [gone]), /was disposed/);
    s.dispose();
  });

  it('a stream that is not iterable, and bad options', async () => {
    const s = sae();
    const single = fromFixture(fixture.batches[0]);
    await rejects(
      () => evaluate(s, single as unknown as Tensor[]),
      /expected an iterable of \[rows, d\] tensors \(e\.g\. source\.batches\(\{ batchSize \}\)\), got object/,
    );
    single.dispose();
    for (const maxBatches of [0, -1, 1.5, Number.NaN]) {
      await rejects(() => evaluate(s, [], { maxBatches }), /options\.maxBatches must be a positive integer/);
    }
    s.dispose();
  });

  it('a dictionary that is not one, or returns tensors of the wrong shape', async () => {
    await rejects(
      () => evaluate(null as unknown as DictionaryLike, []),
      /expected a dictionary \(DictionaryLike\), got null/,
    );
    await rejects(
      () => evaluate({ activationDim: 8, dictSize: 0 } as unknown as DictionaryLike, []),
      /dictionary\.dictSize must be a positive integer, got 0/,
    );
    await rejects(
      () => evaluate({ activationDim: 8, dictSize: 4 } as unknown as DictionaryLike, []),
      /dictionary has no forward/,
    );
    const wrongF = fnDictionary(
      2,
      3,
      (x) => add(x, 0),
      (f) => add(f, 0),
    );
    await rejects(
      () =>
        evaluate(wrongF, [
          tensor([
            [1, 2],
            [3, 4],
          ]),
        ]),
      /batch 0: dictionary\.forward returned features \[2, 2\] float32; expected \[2, 3\] float32 \(F = dictSize = 3\)/,
    );
    const wrongD = fnDictionary(
      2,
      2,
      (x) => add(x, 0),
      (f) =>
        div(
          matmul(
            f,
            tensor([
              [1, 0, 0],
              [0, 1, 0],
            ]),
          ),
          1,
        ),
    );
    await rejects(
      () =>
        evaluate(wrongD, [
          tensor([
            [1, 2],
            [3, 4],
          ]),
        ]),
      /returned reconstruction \[2, 3\] float32; expected \[2, 2\] float32 \(d = activationDim = 2\)/,
    );
  });
});

describe('featureDensity', () => {
  it('matches the numpy firing frequencies; 1 − deadFraction equals frac_alive', async () => {
    const s = fixtureSae();
    const before = live();
    const { density, deadFraction, dead, batches, tokens } = await featureDensity(
      s,
      stream(fixtureBatches()),
    );
    expect(density).toBeInstanceOf(Float64Array);
    expect(Array.from(density)).toEqual(fixture.density);
    expect(dead).toBe(3);
    expect(deadFraction).toBe(3 / 24);
    expect(1 - deadFraction).toBe(fixture.expected.frac_alive);
    expect([batches, tokens]).toEqual([3, 84]);
    expect(live()).toBe(before);
    s.dispose();
  });

  it('counts non-zeros per feature over all rows, one-row batches included', async () => {
    const identity = fnDictionary(
      3,
      3,
      (x) => add(x, 0),
      (f) => add(f, 0),
    );
    const r = await featureDensity(
      identity,
      [
        tensor([[1, 0, 0]]),
        tensor([
          [2, -1, 0],
          [0, 0, 0],
          [5, 0, 0],
        ]),
      ],
      {
        maxBatches: 2,
      },
    );
    expect(Array.from(r.density)).toEqual([3 / 4, 1 / 4, 0]);
    expect(r.deadFraction).toBe(1 / 3);
  });

  it('rejects an empty stream, a wrong width, a zero-row batch and NaN', async () => {
    const s = fixtureSae();
    await expect(featureDensity(s, [])).rejects.toThrow(/featureDensity: the batch stream was empty/);
    await expect(featureDensity(s, [tensor([[1, 2]])])).rejects.toThrow(
      /featureDensity: batch 0 has shape \[1, 2\]; expected \[rows, 8\]/,
    );
    await expect(featureDensity(s, [tensor(new Float32Array(0), [0, 8])])).rejects.toThrow(
      /batch 0 has 0 rows; featureDensity needs at least 1 per batch$/,
    );
    const v = new Float32Array(16);
    v[9] = Number.NaN;
    await expect(featureDensity(s, [tensor(v, [2, 8])])).rejects.toThrow(
      /featureDensity: batch 0 holds 1 NaN or Inf value \(first at row 1, column 1: NaN\)/,
    );
    s.dispose();
  });
});
