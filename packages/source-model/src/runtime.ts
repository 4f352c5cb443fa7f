/**
 * The slice of onnxruntime this package uses, so that onnxruntime-node (loaded on demand in Node)
 * and onnxruntime-web (passed in by a browser page) are interchangeable.
 *
 * @module
 */
import { DictlearnError } from '@dictlearn/core';

/** A tensor as onnxruntime returns it. */
export interface OrtTensor {
  /** Element type, e.g. `'float32'`. */
  readonly type: string;
  /** Dimensions. */
  readonly dims: readonly number[];
  /** The values (a `Float32Array` for float32 outputs). */
  readonly data: unknown;
  /** Frees the tensor's native memory where the runtime holds any (onnxruntime ≥ 1.17). */
  dispose?(): void;
}

/** An `InferenceSession` of onnxruntime-node or onnxruntime-web. */
export interface OrtSession {
  /** Graph input names. */
  readonly inputNames: readonly string[];
  /** Graph output names. */
  readonly outputNames: readonly string[];
  /** Runs the graph and returns every output. */
  run(feeds: Record<string, OrtTensor>, fetches?: undefined): Promise<Record<string, OrtTensor>>;
  /**
   * Runs the graph; `fetches` names the outputs wanted. (Two signatures, not one with an optional
   * `fetches`: onnxruntime's own overloads take run options in the second place, and only this
   * pair lets `import * as ort from 'onnxruntime-web'` pass as an {@link OrtModule} without a cast.)
   */
  run(feeds: Record<string, OrtTensor>, fetches: readonly string[]): Promise<Record<string, OrtTensor>>;
  /** Frees the session. */
  release?(): Promise<void>;
}

/** `ort.InferenceSession`'s static side. */
export interface OrtSessionFactory {
  /** Loads a model from its bytes. */
  create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession>;
}

/** `ort.Tensor`'s constructor. */
export interface OrtTensorConstructor {
  /** A tensor of `type` over `data` with dimensions `dims`. */
  new (
    type: 'int64' | 'int32' | 'float32' | 'float16' | 'bfloat16' | 'float64',
    data: BigInt64Array | Int32Array | Float32Array | Uint16Array | Float64Array,
    dims: readonly number[],
  ): OrtTensor;
}

/**
 * The onnxruntime module: `import * as ort from 'onnxruntime-web'` in a browser; in Node the
 * package loads onnxruntime-node itself when none is given.
 */
export interface OrtModule {
  /** `ort.InferenceSession`. */
  readonly InferenceSession: OrtSessionFactory;
  /** `ort.Tensor`. */
  readonly Tensor: OrtTensorConstructor;
}

let nodeRuntime: Promise<OrtModule> | undefined;

/** onnxruntime-node, imported on first use; a `DictlearnError` saying why when it cannot load. */
export function loadNodeRuntime(): Promise<OrtModule> {
  nodeRuntime ??= (async () => {
    let mod: Record<string, unknown>;
    try {
      // A variable specifier keeps bundlers for the browser from following this import.
      const name = 'onnxruntime-node';
      mod = (await import(/* @vite-ignore */ name)) as Record<string, unknown>;
    } catch (e) {
      nodeRuntime = undefined;
      throw new DictlearnError(
        'onnxruntime',
        `could not load onnxruntime-node (${e instanceof Error ? e.message : String(e)}); install it, or pass { runtime: ort } with onnxruntime-web in a browser`,
      );
    }
    // onnxruntime-node is CommonJS: its exports arrive as the default export under some loaders.
    const ort = (mod.InferenceSession ? mod : mod.default) as OrtModule | undefined;
    if (!ort?.InferenceSession || !ort.Tensor) {
      throw new DictlearnError('onnxruntime', 'onnxruntime-node loaded but has no InferenceSession/Tensor');
    }
    return ort;
  })();
  return nodeRuntime;
}
