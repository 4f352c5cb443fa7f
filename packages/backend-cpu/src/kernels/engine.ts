/**
 * Where a WebAssembly kernel runs: the memory its operands are copied into and the way its
 * exported loops are called. A module on its own memory runs every call on the calling thread;
 * a kernel pool (Node, `kernel-pool.ts`) splits a call's parts over worker threads sharing one
 * memory.
 *
 * @module
 */

/** A module instance and its memory, as the kernels drive it. */
export interface Engine {
  /** Threads a call may be split over (1: this thread only). */
  readonly threads: number;
  /** The memory's current buffer (a fresh view is needed after `layout` grows it). */
  buffer(): ArrayBufferLike;
  /**
   * Lays out byte sizes 16-aligned from 0, growing the memory to fit; null when they do not fit
   * (the kernel then keeps its TypeScript loop).
   */
  layout(sizes: number[]): number[] | null;
  /**
   * Calls the exported loop `fn` once per part (its arguments), in any order and on any of the
   * threads, and returns when all have returned. Parts must write disjoint memory. `spinMs`: how
   * long the workers spin for their next part afterwards (default 0: they sleep at once).
   */
  run(fn: string, parts: number[][], spinMs?: number): void;
}

/** An engine whose calls can run on its workers while this thread does other work (a kernel pool). */
export interface SplitEngine extends Engine {
  /**
   * Hands `parts` to the workers (part i to worker i) and returns at once; the function it
   * returns runs the parts no worker took on this thread, then waits for the others. `spinMs` as
   * in {@link Engine.run}.
   */
  begin(fn: string, parts: number[][], spinMs?: number): () => void;
}

/** The growable memory and exports of a module instance of its own. */
interface OwnInstance {
  mem: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  [fn: string]: unknown;
}

/** An engine over a module instance of its own (one thread), whose operands fit in `maxBytes`. */
export function ownEngine(exports: OwnInstance, maxBytes: number): Engine {
  return {
    threads: 1,
    buffer: () => exports.mem.buffer,
    layout: (sizes) => growTo(sizes, maxBytes, exports.mem),
    run(fn, parts) {
      const f = exports[fn] as (...args: number[]) => void;
      for (const p of parts) f(...p);
    },
  };
}

/** Offsets of byte sizes laid out 16-aligned from 0, the memory grown to fit; null when over `maxBytes`. */
export function growTo(
  sizes: number[],
  maxBytes: number,
  mem: { readonly buffer: ArrayBufferLike; grow(pages: number): number },
): number[] | null {
  const at: number[] = [];
  let p = 0;
  for (const s of sizes) {
    at.push(p);
    p += Math.ceil(s / 16) * 16;
  }
  if (p > maxBytes) return null;
  const have = mem.buffer.byteLength;
  if (p > have) mem.grow(Math.ceil((p - have) / 65536));
  return at;
}

/**
 * Splits [0, n) into at most `parts` ranges of about equal length, the inner boundaries on
 * multiples of `align` (as many ranges as fit at least `align` each, one at the least): the
 * boundaries, from 0 to n.
 */
export function alignedBounds(n: number, parts: number, align: number): number[] {
  const count = Math.max(1, Math.min(parts, Math.floor(n / align)));
  const bounds = [0];
  for (let p = 1; p < count; p++) bounds.push(Math.round((n * p) / count / align) * align);
  bounds.push(n);
  return bounds;
}

/**
 * Splits [0, n) into at most `parts` ranges of about equal weight, where `cum(i)` is the weight
 * of [0, i) (nondecreasing, cum(0) = 0): the boundaries, from 0 to n.
 */
export function splitRanges(n: number, parts: number, cum: (i: number) => number): number[] {
  const bounds = [0];
  const total = cum(n);
  for (let p = 1; p < parts; p++) {
    const want = (total * p) / parts;
    // the first i whose cum(i) reaches want
    let lo = bounds[bounds.length - 1];
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum(mid) < want) lo = mid + 1;
      else hi = mid;
    }
    if (lo > bounds[bounds.length - 1] && lo < n) bounds.push(lo);
  }
  bounds.push(n);
  return bounds;
}
