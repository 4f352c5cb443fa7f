import { readyBackend } from '../backend.js';
import { type Attrs, runOp } from '../engine.js';
import { check } from '../errors.js';
import {
  philoxNormal,
  philoxUniform,
  philoxUnitRows,
  RANDOM_PURPOSE_TAGS,
  type RandomPurpose,
  seedFor,
} from '../random.js';
import { checkShape } from '../shape.js';
import type { Tensor } from '../tensor.js';

/** Seed and stream of a random draw; the same pair gives the same values on every backend. */
export interface RandomOptions {
  /** A non-negative safe integer. */
  seed: number;
  /** Independent sub-stream for the same seed (default 0), e.g. one per parameter. */
  stream?: number;
  /**
   * What the draw is for (default `'user'`): each purpose is its own key domain, so an
   * initialisation (`'init'`) never repeats the numbers of a data or ground-truth draw made
   * with the same seed.
   */
  purpose?: RandomPurpose;
  /** Backend name (default: the current backend). */
  backend?: string;
}

function checkSeed(op: string, o: RandomOptions): void {
  check(
    Number.isSafeInteger(o.seed) && o.seed >= 0,
    op,
    () => `seed must be a non-negative safe integer, got ${o.seed}`,
  );
  check(
    o.stream === undefined || (Number.isInteger(o.stream) && o.stream >= 0 && o.stream < 2 ** 32),
    op,
    () => `stream must be an integer in [0, 2³²), got ${o.stream}`,
  );
  check(
    o.purpose === undefined || Object.hasOwn(RANDOM_PURPOSE_TAGS, o.purpose),
    op,
    () => `purpose must be one of ${Object.keys(RANDOM_PURPOSE_TAGS).join(', ')}, got ${o.purpose}`,
  );
}

/** Uniform float32 values in [low, high) from the Philox stream (see `random.ts` for the definition). */
export function randomUniform(
  shape: readonly number[],
  options: RandomOptions & { low?: number; high?: number },
): Tensor {
  checkShape('randomUniform', shape);
  checkSeed('randomUniform', options);
  return runOp('randomUniform', [], {
    shape: [...shape],
    seed: options.seed,
    stream: options.stream ?? 0,
    purpose: options.purpose ?? 'user',
    low: options.low ?? 0,
    high: options.high ?? 1,
    backend: readyBackend(options.backend, 'randomUniform').name,
  })[0];
}

/** Normal float32 values from the Philox stream (Box–Muller; see `random.ts`). */
export function randomNormal(
  shape: readonly number[],
  options: RandomOptions & { mean?: number; std?: number },
): Tensor {
  checkShape('randomNormal', shape);
  checkSeed('randomNormal', options);
  return runOp('randomNormal', [], {
    shape: [...shape],
    seed: options.seed,
    stream: options.stream ?? 0,
    purpose: options.purpose ?? 'user',
    mean: options.mean ?? 0,
    std: options.std ?? 1,
    backend: readyBackend(options.backend, 'randomNormal').name,
  })[0];
}

/**
 * `rows` random directions of length `cols`, each with L2 norm `norm` (default 1): normals from
 * the Philox stream, normalised in float64 on the host (see `philoxUnitRows`), so the result is
 * bit-identical on every backend. The usual SAE decoder initialisation.
 */
export function randomUnitRows(
  rows: number,
  cols: number,
  options: RandomOptions & { norm?: number },
): Tensor {
  checkShape('randomUnitRows', [rows, cols]);
  checkSeed('randomUnitRows', options);
  return runOp('randomUnitRows', [], {
    shape: [rows, cols],
    seed: options.seed,
    stream: options.stream ?? 0,
    purpose: options.purpose ?? 'user',
    norm: options.norm ?? 1,
    backend: readyBackend(options.backend, 'randomUnitRows').name,
  })[0];
}

/** The random ops a backend implements, by name. */
export const RANDOM_OPS = ['randomUniform', 'randomNormal', 'randomUnitRows'] as const;

/**
 * The values a random op produces for its attrs, computed on the host from the Philox stream.
 * Every backend uploads these (bit-identical across backends); GPU backends may instead
 * reproduce `randomUniform` on device from the same stream definition.
 */
export function randomValues(op: (typeof RANDOM_OPS)[number], attrs: Attrs): Float32Array {
  const shape = attrs.shape as number[];
  const seed = seedFor((attrs.purpose as RandomPurpose | undefined) ?? 'user', attrs.seed as number);
  const stream = attrs.stream as number;
  const n = shape.reduce((a, b) => a * b, 1);
  if (op === 'randomUniform')
    return philoxUniform(n, seed, stream, attrs.low as number, attrs.high as number);
  if (op === 'randomNormal') return philoxNormal(n, seed, stream, attrs.mean as number, attrs.std as number);
  return philoxUnitRows(shape[0], shape[1], seed, stream, attrs.norm as number);
}
