import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { encodeModel, ONNX_FLOAT } from './onnx-proto.js';
import { type FastMatmul, loadOrtMatmul } from './ort-matmul.js';

const loaded = loadOrtMatmul();
const unavailable = typeof loaded === 'string';
// The reason goes into the suite name, so a skip is reported together with why.
const suiteName = `onnxruntime-node fast matmul${unavailable ? ` (skipped: ${loaded})` : ''}`;
const fast = loaded as FastMatmul;

/** mulberry32: a small seeded generator, so failures reproduce. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(length: number, next: () => number): Float32Array {
  return Float32Array.from({ length }, () => next() * 2 - 1);
}

interface Reference {
  /** The exact product of the float32 inputs, in float64. */
  readonly c: Float64Array;
  /** Σ_p |a_ip|·|b_pj| for each output element: the scale the rounding error is measured against. */
  readonly scale: Float64Array;
}

/** Plain triple loop in float64 over the float32 inputs, honouring the layouts the API documents. */
function reference(
  a: Float32Array,
  b: Float32Array,
  batch: number,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
): Reference {
  const c = new Float64Array(batch * m * n);
  const scale = new Float64Array(batch * m * n);
  for (let s = 0; s < batch; s++) {
    const a0 = s * m * k;
    const b0 = s * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        let abs = 0;
        for (let p = 0; p < k; p++) {
          const x = a[a0 + (transA ? p * m + i : i * k + p)];
          const y = b[b0 + (transB ? j * k + p : p * n + j)];
          sum += x * y;
          abs += Math.abs(x * y);
        }
        c[s * m * n + i * n + j] = sum;
        scale[s * m * n + i * n + j] = abs;
      }
    }
  }
  return { c, scale };
}

/**
 * Tolerance. A float32 dot product of length k accumulated in any order (MLAS blocks and uses FMA)
 * satisfies |ĉ − c| ≤ γ_k · Σ|a_p·b_p| with γ_k = k·u/(1 − k·u) and u = 2⁻²⁴ (the standard bound,
 * Higham, "Accuracy and Stability of Numerical Algorithms", §3.1); storing the result as float32 adds
 * at most u·|c| ≤ u·Σ|a_p·b_p|. The float64 reference is exact to far below that. So each element must
 * be within (k + 2)·u·Σ|a_p·b_p| — relative to the sum of magnitudes rather than to |c|, because
 * cancellation can make |c| arbitrarily small while the rounding error stays at the scale of the terms.
 * (k + 2 leaves room for the 1/(1 − k·u) factor at these sizes.)
 */
function expectClose(actual: Float32Array, ref: Reference, k: number): void {
  expect(actual.length).toBe(ref.c.length);
  const u = 2 ** -24;
  for (let i = 0; i < actual.length; i++) {
    const error = Math.abs(actual[i] - ref.c[i]);
    const bound = (k + 2) * u * ref.scale[i];
    if (!(error <= bound)) {
      // One readable failure instead of thousands of expect calls.
      expect.fail(`element ${i}: got ${actual[i]}, expected ${ref.c[i]} (error ${error} > bound ${bound})`);
    }
  }
}

// (m, n, k): odd sizes, vectors, k = 0, empty outputs, and sizes whose outputs exceed the module's
// ordinary-run limit of 4096 elements so both run paths are covered.
const shapes: [number, number, number][] = [
  [7, 5, 3],
  [1, 5, 3],
  [7, 1, 3],
  [1, 1, 1],
  [5, 7, 1],
  [7, 5, 0],
  [0, 5, 3],
  [7, 0, 3],
  [33, 17, 129],
  [70, 71, 13],
];
const batches = [1, 3];
const flags: [boolean, boolean][] = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];

describe('loadOrtMatmul', () => {
  it('returns a fast path or a reason, never throws, and caches the result', () => {
    expect(typeof loaded === 'string' || typeof loaded.matmul === 'function').toBe(true);
    expect(loadOrtMatmul()).toBe(loaded);
    expect(loadOrtMatmul({ threads: availableParallelism() })).toBe(loaded);
  });

  it('reports an invalid thread count as a reason', () => {
    expect(loadOrtMatmul({ threads: 0 })).toMatch(/threads must be a positive integer/);
    expect(loadOrtMatmul({ threads: 1.5 })).toMatch(/threads must be a positive integer/);
  });
});

describe.skipIf(unavailable)(suiteName, () => {
  it('describes itself', () => {
    expect(fast.description).toMatch(/^onnxruntime-node \d+\.\d+\.\d+ \(\d+ threads?\)$/);
    const single = loadOrtMatmul({ threads: 1 });
    expect(typeof single).not.toBe('string');
    expect((single as FastMatmul).description).toMatch(/\(1 thread\)$/);
  });

  for (const batch of batches) {
    for (const [transA, transB] of flags) {
      const variant = `batch=${batch} transA=${transA} transB=${transB}`;
      it(`matches the float64 reference: ${variant}`, () => {
        const next = random(batch * 4 + (transA ? 2 : 0) + (transB ? 1 : 0) + 1);
        for (const [m, n, k] of shapes) {
          const a = randomArray(batch * m * k, next);
          const b = randomArray(batch * k * n, next);
          const ref = reference(a, b, batch, m, n, k, transA, transB);

          const allocated = fast.matmul(a, b, batch, m, n, k, transA, transB);
          expectClose(allocated, ref, k);

          // Pre-filled with NaN: every element must be overwritten, including when k = 0.
          const out = new Float32Array(batch * m * n).fill(Number.NaN);
          expect(fast.matmul(a, b, batch, m, n, k, transA, transB, out)).toBe(out);
          expectClose(out, ref, k);
        }
      });
    }
  }

  it('handles batch = 0', () => {
    const out = new Float32Array(0);
    expect(fast.matmul(new Float32Array(0), new Float32Array(0), 0, 3, 4, 5, false, true, out)).toBe(out);
    expect(fast.matmul(new Float32Array(0), new Float32Array(0), 0, 3, 4, 5, true, false)).toHaveLength(0);
  });

  it('reads and writes subarrays at non-zero offsets', () => {
    const next = random(99);
    for (const [m, n, k] of [
      [7, 5, 3],
      [70, 71, 13],
    ]) {
      const aBase = randomArray(m * k + 3, next);
      const bBase = randomArray(k * n + 5, next);
      const a = aBase.subarray(3);
      const b = bBase.subarray(5);
      const outBase = new Float32Array(m * n + 2).fill(-1);
      const out = outBase.subarray(1, 1 + m * n);
      fast.matmul(a, b, 1, m, n, k, false, false, out);
      expectClose(out, reference(a, b, 1, m, n, k, false, false), k);
      // The elements around the window are untouched.
      expect(outBase[0]).toBe(-1);
      expect(outBase[m * n + 1]).toBe(-1);
    }
  });

  it('accepts SharedArrayBuffer-backed arrays', () => {
    const next = random(7);
    const shared = (x: Float32Array) => {
      const y = new Float32Array(new SharedArrayBuffer(x.byteLength));
      y.set(x);
      return y;
    };
    for (const [m, n, k] of [
      [7, 5, 3],
      [70, 71, 13],
    ]) {
      const a = randomArray(2 * m * k, next);
      const b = randomArray(2 * k * n, next);
      const ref = reference(a, b, 2, m, n, k, true, false);
      const out = shared(new Float32Array(2 * m * n));
      expect(fast.matmul(shared(a), shared(b), 2, m, n, k, true, false, out)).toBe(out);
      expectClose(out, ref, k);
    }
  });

  it('reuses sessions across shapes in any order', () => {
    // One session per variant serves every shape; alternate shapes to make sure nothing is stale.
    const next = random(3);
    for (const [m, n, k] of [
      [70, 71, 13],
      [2, 3, 4],
      [70, 71, 13],
      [9, 8, 7],
    ]) {
      const a = randomArray(k * m, next);
      const b = randomArray(n * k, next);
      expectClose(fast.matmul(a, b, 1, m, n, k, true, true), reference(a, b, 1, m, n, k, true, true), k);
    }
  });

  it('rejects bad arguments with RangeError', () => {
    const a = new Float32Array(6);
    const b = new Float32Array(6);
    expect(() => fast.matmul(a, b, 1, 2, 2, 4, false, false)).toThrow(RangeError);
    expect(() => fast.matmul(a, new Float32Array(5), 1, 2, 2, 3, false, false)).toThrow(RangeError);
    expect(() => fast.matmul(a, b, 1, 2, 2, 3, false, false, new Float32Array(5))).toThrow(RangeError);
    expect(() => fast.matmul(a, b, 1, -2, -3, 3, false, false)).toThrow(RangeError);
    expect(() => fast.matmul(a, b, 1, 2, 2, 3, false, false, a.subarray(0, 4))).toThrow(/overlap/);
  });
});

describe('encodeModel', () => {
  it('writes the documented protobuf bytes for a tiny model', () => {
    const bytes = encodeModel({
      irVersion: 8,
      opsets: [{ domain: '', version: 17 }],
      graphName: 'g',
      nodes: [{ opType: 'Relu', inputs: ['x'], outputs: ['y'] }],
      inputs: [{ name: 'x', elemType: ONNX_FLOAT, dims: ['n', 2] }],
      outputs: [{ name: 'y', elemType: ONNX_FLOAT, dims: ['n', 2] }],
    });
    // biome-ignore format: one protobuf field per line
    const valueInfo = (name: number) => [
      0x0a, 1, name, // name
      0x12, 15, // type
      0x0a, 13, // tensor_type
      0x08, 1, // elem_type FLOAT
      0x12, 9, // shape
      0x0a, 3, 0x12, 1, 0x6e, // dim { dim_param 'n' }
      0x0a, 2, 0x08, 2, // dim { dim_value 2 }
    ];
    // biome-ignore format: one protobuf field per line
    const expected = [
      0x08, 8, // ir_version
      0x3a, 61, // graph
      0x0a, 12, 0x0a, 1, 0x78, 0x12, 1, 0x79, 0x22, 4, 0x52, 0x65, 0x6c, 0x75, // node: x -> Relu -> y
      0x12, 1, 0x67, // name 'g'
      0x5a, 20, ...valueInfo(0x78), // input x
      0x62, 20, ...valueInfo(0x79), // output y
      0x42, 4, 0x0a, 0, 0x10, 17, // opset_import { domain '', version 17 }
    ];
    expect(Array.from(bytes)).toEqual(expected);
  });

  it('encodes multi-byte varints and refuses negative integers', () => {
    const model = (version: number) =>
      encodeModel({
        irVersion: 8,
        opsets: [{ domain: '', version }],
        graphName: '',
        nodes: [],
        inputs: [],
        outputs: [],
      });
    // 300 = 0b10_0101100 -> 0xac 0x02.
    expect(Array.from(model(300).slice(-3))).toEqual([0x10, 0xac, 0x02]);
    expect(() => model(-1)).toThrow(RangeError);
  });
});
