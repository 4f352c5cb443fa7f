import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bufferWasm } from './buffer-wasm.js';
import { SyntheticSource, type SyntheticSourceOptions } from './synthetic.js';

// The synthetic source's outputs are pinned bit for bit: fixtures/synthetic-golden.json holds
// SHA-256 digests of samples and sparse codes that the source computed before its speed-ups
// (scripts/make-synthetic-golden.mjs made it). Every path (WebAssembly, TypeScript) and every
// split of a range into batches must reproduce them.
interface GoldenCase {
  name: string;
  options: SyntheticSourceOptions;
  start: number;
  count: number;
  samples: string;
  head: number[];
  last: number;
  offsets: string;
  indices: string;
  values: string;
  active: number;
}

const golden: GoldenCase[] = JSON.parse(
  readFileSync(new URL('./fixtures/synthetic-golden.json', import.meta.url), 'utf8'),
);
const simd = bufferWasm() !== null;

function digest(typed: Float32Array | Int32Array): string {
  return createHash('sha256')
    .update(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength))
    .digest('hex');
}

/** Samples start … start + count − 1 asked for in batches of the given sizes (the last one takes the rest). */
function inBatches(source: SyntheticSource, start: number, count: number, sizes: number[]): Float32Array {
  const out = new Float32Array(count * source.dim);
  let done = 0;
  for (let b = 0; done < count; b++) {
    const n = b < sizes.length ? Math.min(sizes[b], count - done) : count - done;
    out.set(source.sampleHost(start + done, n), done * source.dim);
    done += n;
  }
  return out;
}

describe('synthetic source: the recorded outputs, bit for bit', () => {
  it('covers the cases the fixture script wrote', () => {
    expect(golden.length).toBeGreaterThanOrEqual(20);
  });

  for (const wasm of [true, false]) {
    const path = wasm ? 'WebAssembly' : 'TypeScript';
    it.skipIf(wasm && !simd).each(golden.map((g) => [g.name, g] as const))(`${path}: %s`, (_name, g) => {
      const source = new SyntheticSource({ ...g.options, wasm });
      const x = source.sampleHost(g.start, g.count);
      expect(Array.from(x.subarray(0, 3))).toEqual(g.head);
      expect(x[x.length - 1]).toBe(g.last);
      expect(digest(x)).toBe(g.samples);
      const codes = source.sparseCodes(g.start, g.count);
      expect(codes.indices.length).toBe(g.active);
      expect(digest(codes.offsets)).toBe(g.offsets);
      expect(digest(codes.indices)).toBe(g.indices);
      expect(digest(codes.values)).toBe(g.values);
      // whatever the batch boundaries: single rows, odd sizes, then the rest
      expect(digest(inBatches(source, g.start, g.count, [1, 7, 1, 64, 33]))).toBe(g.samples);
    });
  }
});
