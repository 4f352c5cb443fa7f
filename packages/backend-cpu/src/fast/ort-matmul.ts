/**
 * The Node fast path for matrix multiplication: onnxruntime-node's MLAS GEMM, called synchronously.
 *
 * onnxruntime-node is an optional dependency. {@link loadOrtMatmul} loads it on demand and reports why
 * it is unavailable instead of throwing, so the backend can fall back to its TypeScript kernels.
 *
 * Three things about onnxruntime-node 1.30.0 shape this module:
 *
 * - Its public `InferenceSession.run` is async (a synchronous native call wrapped in `setImmediate`),
 *   but backend kernels are synchronous. So this module talks to the native binding
 *   (`onnxruntime-node/dist/binding`) directly; its `run` is synchronous.
 * - The binding copies every fetched output into a fresh JS `ArrayBuffer` after the run, even when the
 *   caller pre-allocated that output. For a 4096×4096 result that is 64 MiB of page faults plus a copy
 *   per call, which measured at 2–4× the cost of the product itself. The graphs therefore have an extra
 *   first output, an empty sequence: the binding refuses to convert non-tensor outputs and throws, and it
 *   converts outputs in graph order, so the throw happens after the run has written the product into
 *   the pre-allocated buffer but before the product is copied. That throw costs a few microseconds, so
 *   small outputs take the ordinary path. Should a later binding accept sequences, the run simply
 *   returns normally and the only loss is the copy again.
 * - Each session owns its intra-op thread pool, and idle pool threads spin by default. With one session
 *   per variant, spinning threads of one session steal the cores the next session's product needs
 *   (measured: the three products of an SAE backward pass took 1.4× as long alternating as in
 *   isolation), so spinning is turned off.
 *
 * @module
 */

import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { encodeModel, type NodeSpec, ONNX_FLOAT, type ValueSpec } from './onnx-proto.js';

/** A synchronous float32 matrix product backed by a native library. */
export interface FastMatmul {
  /** Human-readable description, e.g. 'onnxruntime-node 1.30.0 (2 threads)'. */
  readonly description: string;
  /**
   * C[batch] = op(A[batch]) · op(B[batch]), row-major float32, where op transposes when the flag is set.
   * A holds batch·m·k values ([m,k], or [k,m] when transA); B holds batch·k·n ([k,n], or [n,k] when transB).
   * batch = 1 for a plain 2-D product. Writes into `out` (length batch·m·n) when given, else allocates. Returns C.
   * Synchronous.
   *
   * Lengths must match exactly and `out` must not overlap `a` or `b` (a `RangeError` otherwise). Empty
   * products (batch, m or n = 0) and k = 0 (C = 0) are handled here without a native call.
   * Small products are slower through the native call than in plain TypeScript: a fixed cost of about
   * 8 µs per 2-D call, and 10–25 µs per batched call, which wakes the thread pool to split the batch
   * (measured on a 2-core VM). Choosing the threshold is the caller's job.
   */
  matmul(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    out?: Float32Array,
  ): Float32Array;
}

/**
 * Loads onnxruntime-node synchronously. Returns the fast path, or a string saying why it is unavailable
 * (package missing, native load failed, ...). Never throws. Cached after the first call.
 *
 * `threads` is the intra-op thread count (default `os.availableParallelism()`); each distinct count gets
 * its own cached instance with its own sessions.
 */
export function loadOrtMatmul(options?: { threads?: number }): FastMatmul | string {
  let threads: number;
  try {
    threads = options?.threads ?? availableParallelism();
  } catch (e) {
    return `cannot determine the thread count: ${errorMessage(e)}`;
  }
  if (!Number.isInteger(threads) || threads < 1) {
    return `threads must be a positive integer, got ${String(threads)}`;
  }
  let cached = instances.get(threads);
  if (cached === undefined) {
    cached = create(threads);
    instances.set(threads, cached);
  }
  return cached;
}

// ---------------------------------------------------------------------------------------------------
// The slice of the native binding this module uses (see onnxruntime-node/dist/binding.d.ts and
// js/node/src/inference_session_wrap.cc in the onnxruntime repository).

/**
 * What the native code reads from a tensor argument: it looks up these four properties by name, so a
 * plain object works and avoids constructing onnxruntime-common `Tensor`s (which would also require
 * onnxruntime-common, a dependency of onnxruntime-node that pnpm does not expose to this package).
 */
interface NativeTensor {
  readonly data: Float32Array;
  readonly dims: number[];
  readonly type: 'float32';
  readonly location: 'cpu';
}

interface NativeSession {
  loadModel(buffer: ArrayBufferLike, byteOffset: number, byteLength: number, options: object): void;
  /** `null` in `fetches` asks the runtime to allocate that output; a tensor is written in place. */
  run(
    feeds: Record<string, NativeTensor>,
    fetches: Record<string, NativeTensor | null>,
  ): Record<string, { readonly data: Float32Array }>;
}

interface NativeBindingModule {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
}

// ---------------------------------------------------------------------------------------------------

/** Results per thread count; a failure string is cached too, since retrying a failed load never helps. */
const instances = new Map<number, FastMatmul | string>();

/** The loaded binding (shared by every thread count), or why it failed to load. */
let bindingResult: { module: NativeBindingModule; version: string } | string | undefined;

/**
 * Outputs of at most this many elements take the ordinary run, whose output copy is cheaper than the
 * exception that skips it. Measured on a 2-core AMD EPYC VM: a tiny product costs ~8 µs the ordinary
 * way and ~15 µs with the exception; at 64×64 outputs (16 KiB) both cost ~19 µs, and past that the
 * copy into freshly allocated memory grows quickly (~70 µs at 64 KiB, ~4 ms at 4 MiB).
 */
const COPY_PATH_MAX_OUTPUT = 4096;

/** Graph names. `S` is the empty sequence that stops the binding before it copies `C`. */
const IN_A = 'A';
const IN_B = 'B';
const OUT_C = 'C';
const SENTINEL = 'S';
/** The start of the binding's message for non-tensor outputs (tensor_helper.cc). */
const SENTINEL_MESSAGE = 'Non tensor type';

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function loadBinding(): { module: NativeBindingModule; version: string } | string {
  if (bindingResult !== undefined) return bindingResult;
  const require = createRequire(import.meta.url);
  let version: string;
  try {
    // onnxruntime-node has no `exports` map, so its internal files can be required by path.
    version = (require('onnxruntime-node/package.json') as { version: string }).version;
  } catch (e) {
    bindingResult = `onnxruntime-node is not installed (it is an optional dependency): ${errorMessage(e)}`;
    return bindingResult;
  }
  try {
    // Loads the platform's .node file and libonnxruntime; fails on platforms without prebuilt binaries.
    const module = require('onnxruntime-node/dist/binding') as NativeBindingModule;
    module.initOrt();
    bindingResult = { module, version };
  } catch (e) {
    bindingResult = `onnxruntime-node ${version} failed to load its native binding: ${errorMessage(e)}`;
  }
  return bindingResult;
}

/** The model for one variant: 2-D Gemm, or batched MatMul with Transposes, plus the sentinel output. */
function buildModel(batched: boolean, transA: boolean, transB: boolean): Uint8Array {
  const lead = batched ? ['batch'] : [];
  const inputs: ValueSpec[] = [
    { name: IN_A, elemType: ONNX_FLOAT, dims: [...lead, ...(transA ? ['k', 'm'] : ['m', 'k'])] },
    { name: IN_B, elemType: ONNX_FLOAT, dims: [...lead, ...(transB ? ['n', 'k'] : ['k', 'n'])] },
  ];
  const outputs: ValueSpec[] = [
    // First, so that the binding reaches it before C when converting outputs.
    { name: SENTINEL, elemType: ONNX_FLOAT, sequence: true },
    { name: OUT_C, elemType: ONNX_FLOAT, dims: [...lead, 'm', 'n'] },
  ];
  const nodes: NodeSpec[] = [
    {
      opType: 'SequenceEmpty',
      inputs: [],
      outputs: [SENTINEL],
      attributes: [{ name: 'dtype', kind: 'int', value: ONNX_FLOAT }],
    },
  ];
  if (!batched) {
    // Gemm takes the transposes as attributes and hands them straight to MLAS; its C input is optional.
    nodes.push({
      opType: 'Gemm',
      inputs: [IN_A, IN_B],
      outputs: [OUT_C],
      attributes: [
        { name: 'transA', kind: 'int', value: transA ? 1 : 0 },
        { name: 'transB', kind: 'int', value: transB ? 1 : 0 },
      ],
    });
  } else {
    // Gemm is 2-D only. ORT's optimiser fuses Transpose→MatMul into FusedMatMul (com.microsoft), so the
    // transposes are never materialised; writing FusedMatMul directly measured no faster.
    const perm = { name: 'perm', kind: 'ints', value: [0, 2, 1] } as const;
    let a = IN_A;
    let b = IN_B;
    if (transA) {
      nodes.push({ opType: 'Transpose', inputs: [IN_A], outputs: ['At'], attributes: [perm] });
      a = 'At';
    }
    if (transB) {
      nodes.push({ opType: 'Transpose', inputs: [IN_B], outputs: ['Bt'], attributes: [perm] });
      b = 'Bt';
    }
    nodes.push({ opType: 'MatMul', inputs: [a, b], outputs: [OUT_C] });
  }
  return encodeModel({
    irVersion: 8,
    opsets: [{ domain: '', version: 17 }],
    producerName: '@dictlearn/backend-cpu',
    graphName: `matmul_${batched ? 'batched' : '2d'}_${transA ? 't' : 'n'}${transB ? 't' : 'n'}`,
    nodes,
    inputs,
    outputs,
  });
}

function tensor(data: Float32Array, dims: number[]): NativeTensor {
  return { data, dims, type: 'float32', location: 'cpu' };
}

function isShared(x: Float32Array): boolean {
  // The binding cannot read SharedArrayBuffer-backed arrays ("Invalid argument").
  return typeof SharedArrayBuffer !== 'undefined' && x.buffer instanceof SharedArrayBuffer;
}

function unshared(x: Float32Array): Float32Array {
  return isShared(x) ? new Float32Array(x) : x;
}

function overlaps(x: Float32Array, y: Float32Array): boolean {
  return (
    x.buffer === y.buffer &&
    x.byteOffset < y.byteOffset + y.byteLength &&
    y.byteOffset < x.byteOffset + x.byteLength
  );
}

function checkDim(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`matmul: ${name} must be a non-negative integer, got ${value}`);
  }
}

class OrtMatmul implements FastMatmul {
  readonly description: string;
  private readonly sessions = new Map<string, NativeSession>();

  constructor(
    private readonly binding: NativeBindingModule,
    version: string,
    private readonly threads: number,
  ) {
    this.description = `onnxruntime-node ${version} (${threads} thread${threads === 1 ? '' : 's'})`;
  }

  /** One session per variant; symbolic dimensions let it serve every shape. */
  private session(batched: boolean, transA: boolean, transB: boolean): NativeSession {
    const key = `${batched ? 'b' : '2'}${transA ? 't' : 'n'}${transB ? 't' : 'n'}`;
    let session = this.sessions.get(key);
    if (session === undefined) {
      const model = buildModel(batched, transA, transB);
      session = new this.binding.binding.InferenceSession();
      session.loadModel(model.buffer, model.byteOffset, model.byteLength, {
        intraOpNumThreads: this.threads,
        graphOptimizationLevel: 'all',
        // Errors reach the caller as exceptions; the runtime's own log line would only duplicate them.
        logSeverityLevel: 4,
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      });
      this.sessions.set(key, session);
    }
    return session;
  }

  matmul(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    out?: Float32Array,
  ): Float32Array {
    checkDim('batch', batch);
    checkDim('m', m);
    checkDim('n', n);
    checkDim('k', k);
    const size = batch * m * n;
    if (a.length !== batch * m * k) {
      throw new RangeError(`matmul: a has ${a.length} elements, expected batch·m·k = ${batch * m * k}`);
    }
    if (b.length !== batch * k * n) {
      throw new RangeError(`matmul: b has ${b.length} elements, expected batch·k·n = ${batch * k * n}`);
    }
    if (out !== undefined) {
      if (out.length !== size) {
        throw new RangeError(`matmul: out has ${out.length} elements, expected batch·m·n = ${size}`);
      }
      // The runtime reads A and B while writing C, so aliasing would corrupt the result.
      if (overlaps(out, a) || overlaps(out, b)) throw new RangeError('matmul: out must not overlap a or b');
    }
    // Empty work needs no native call. k = 0 must not reach the runtime: onnxruntime 1.30's batched
    // product with transposes (fused into FusedMatMul) zeroes only the first matrix of C when k = 0.
    if (size === 0) return out ?? new Float32Array(0);
    if (k === 0) return out === undefined ? new Float32Array(size) : out.fill(0);

    // batch = 1 is a plain 2-D product: Gemm, one session fewer.
    const batched = batch > 1;
    const session = this.session(batched, transA, transB);
    const lead = batched ? [batch] : [];
    const feeds = {
      [IN_A]: tensor(unshared(a), [...lead, ...(transA ? [k, m] : [m, k])]),
      [IN_B]: tensor(unshared(b), [...lead, ...(transB ? [n, k] : [k, n])]),
    };
    const dimsC = [...lead, m, n];

    if (size <= COPY_PATH_MAX_OUTPUT) {
      // Ordinary run. Without `out`, the binding's copy of C is the result itself.
      if (out === undefined) return session.run(feeds, { [OUT_C]: null })[OUT_C].data;
      if (!isShared(out)) {
        session.run(feeds, { [OUT_C]: tensor(out, dimsC) });
        return out;
      }
      out.set(session.run(feeds, { [OUT_C]: null })[OUT_C].data);
      return out;
    }

    const target = out === undefined || isShared(out) ? new Float32Array(size) : out;
    // The binding builds an Error (with a stack trace) for the sentinel; no trace is needed.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      session.run(feeds, { [SENTINEL]: null, [OUT_C]: tensor(target, dimsC) });
    } catch (e) {
      if (!(e instanceof Error && e.message.startsWith(SENTINEL_MESSAGE))) throw e;
      // The expected refusal: the run finished and C is already in `target`.
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    if (target !== out && out !== undefined) out.set(target);
    return out ?? target;
  }
}

function create(threads: number): FastMatmul | string {
  const loaded = loadBinding();
  if (typeof loaded === 'string') return loaded;
  try {
    const fast = new OrtMatmul(loaded.module, loaded.version, threads);
    // Probe once: proves the model encoding, the session options and both run paths (the ordinary one
    // and the sentinel one, see the module comment) work here, so a broken install reports a reason now
    // rather than failing in the middle of training.
    const [a, b] = [new Float32Array([1, 2, 3, 4]), new Float32Array([5, 6, 7, 8])];
    const small = fast.matmul(a, b, 1, 2, 2, 2, false, false);
    const expected = [19, 22, 43, 50];
    if (!expected.every((v, i) => small[i] === v)) {
      return `onnxruntime-node probe product was wrong: got [${Array.from(small).join(', ')}], expected [${expected.join(', ')}]`;
    }
    // An outer product large enough for the sentinel path: C[i][j] = i·j.
    const side = 65;
    const ramp = Float32Array.from({ length: side }, (_, i) => i);
    const large = fast.matmul(ramp, ramp, 1, side, side, 1, false, false);
    for (let i = 0; i < side; i++) {
      for (let j = 0; j < side; j++) {
        if (large[i * side + j] !== i * j) {
          return `onnxruntime-node probe product was wrong at [${i}, ${j}]: got ${large[i * side + j]}, expected ${i * j}`;
        }
      }
    }
    return fast;
  } catch (e) {
    return `onnxruntime-node failed its probe product: ${errorMessage(e)}`;
  }
}
