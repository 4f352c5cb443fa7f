import { type DictionaryLike, DictlearnError, fmtShape, Tensor } from '@dictlearn/core';

/** Options shared by the functions that stream batches through a dictionary. */
export interface BatchStreamOptions {
  /**
   * Stop after this many batches (a positive integer). Default: read the stream to its end —
   * pass it for a source that never ends (a synthetic one).
   */
  maxBatches?: number;
  /**
   * Dispose each batch once it has been evaluated (default `true`: an
   * `ActivationSource`'s consumer owns the batches it reads). Pass `false`
   * to evaluate tensors you keep, e.g. the same array of batches against several dictionaries.
   */
  disposeBatches?: boolean;
}

/** A stream of activation batches: `source.batches({ batchSize })`, a generator or an array. */
export type BatchStream = AsyncIterable<Tensor> | Iterable<Tensor>;

/** How many batches and rows a stream gave. @internal */
export interface StreamCounts {
  batches: number;
  tokens: number;
}

function isIterable(value: unknown): value is BatchStream {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<symbol, unknown>;
  return typeof v[Symbol.asyncIterator] === 'function' || typeof v[Symbol.iterator] === 'function';
}

/** Checks a dictionary has what evaluation calls. @internal */
export function checkDictionary(op: string, dict: DictionaryLike): void {
  if (dict === null || typeof dict !== 'object') {
    throw new DictlearnError(
      op,
      `expected a dictionary (DictionaryLike), got ${dict === null ? 'null' : typeof dict}`,
    );
  }
  for (const key of ['activationDim', 'dictSize'] as const) {
    const n = dict[key];
    if (!Number.isInteger(n) || n <= 0) {
      throw new DictlearnError(op, `dictionary.${key} must be a positive integer, got ${String(n)}`);
    }
  }
  if (typeof dict.forward !== 'function') {
    throw new DictlearnError(op, 'dictionary has no forward(x, { outputFeatures: true }) method');
  }
}

/**
 * Runs `dict.forward(x, { outputFeatures: true })` and checks what comes back: float32
 * `reconstruction` [B, d] and `features` [B, F]. Call it inside a `scope`. @internal
 */
export function forwardChecked(
  op: string,
  dict: DictionaryLike,
  x: Tensor,
  index: number,
): { reconstruction: Tensor; features: Tensor } {
  const out = dict.forward(x, { outputFeatures: true });
  const rows = x.shape[0];
  const expect = (what: string, t: unknown, width: number, name: string) => {
    if (!(t instanceof Tensor)) {
      throw new DictlearnError(op, `batch ${index}: dictionary.forward returned no ${what} tensor`);
    }
    if (t.rank !== 2 || t.shape[0] !== rows || t.shape[1] !== width || t.dtype !== 'float32') {
      throw new DictlearnError(
        op,
        `batch ${index}: dictionary.forward returned ${what} ${fmtShape(t.shape)} ${t.dtype}; expected [${rows}, ${width}] float32 (${name})`,
      );
    }
  };
  expect(
    'reconstruction',
    out?.reconstruction,
    dict.activationDim,
    `d = activationDim = ${dict.activationDim}`,
  );
  expect('features', out?.features, dict.dictSize, `F = dictSize = ${dict.dictSize}`);
  return out;
}

/**
 * Reads batches from `batches` (sync or async), checks each is a live float32 [rows, d] tensor
 * with d = `dict.activationDim` and at least `minRows` rows, hands it to `step`, and disposes it
 * afterwards when `disposeBatches` is on (also when `step` throws). Stops after `maxBatches`
 * without pulling another batch. Throws when the stream gives no batch at all. @internal
 */
export async function forEachBatch(
  op: string,
  dict: DictionaryLike,
  batches: BatchStream,
  options: BatchStreamOptions,
  minRows: number,
  step: (x: Tensor, index: number) => Promise<void>,
): Promise<StreamCounts> {
  checkDictionary(op, dict);
  if (!isIterable(batches)) {
    throw new DictlearnError(
      op,
      `expected an iterable of [rows, d] tensors (e.g. source.batches({ batchSize })), got ${batches === null ? 'null' : typeof batches}`,
    );
  }
  if (options === null || typeof options !== 'object') {
    throw new DictlearnError(
      op,
      `options must be an object, got ${options === null ? 'null' : typeof options}`,
    );
  }
  const { maxBatches, disposeBatches = true } = options;
  if (maxBatches !== undefined && (!Number.isInteger(maxBatches) || maxBatches <= 0)) {
    throw new DictlearnError(op, `options.maxBatches must be a positive integer, got ${String(maxBatches)}`);
  }
  const d = dict.activationDim;
  let count = 0;
  let tokens = 0;
  for await (const x of batches) {
    const index = count;
    try {
      if (!(x instanceof Tensor)) {
        throw new DictlearnError(
          op,
          `batch ${index} is ${x === null ? 'null' : typeof x}, expected a Tensor of shape [rows, ${d}]`,
        );
      }
      x.assertAlive(op);
      if (x.rank !== 2 || x.shape[1] !== d) {
        throw new DictlearnError(
          op,
          `batch ${index} has shape ${fmtShape(x.shape)}; expected [rows, ${d}] (the dictionary's activationDim d = ${d})`,
        );
      }
      if (x.dtype !== 'float32') {
        throw new DictlearnError(op, `batch ${index} is ${x.dtype}; expected float32 activations`);
      }
      if (x.shape[0] < minRows) {
        throw new DictlearnError(
          op,
          `batch ${index} has ${x.shape[0]} row${x.shape[0] === 1 ? '' : 's'}; ${op} needs at least ${minRows} per batch${
            minRows > 1 ? ' (frac_variance_explained is a variance over the batch rows)' : ''
          }`,
        );
      }
      await step(x, index);
      count++;
      tokens += x.shape[0];
    } finally {
      if (disposeBatches && x instanceof Tensor) x.dispose();
    }
    if (maxBatches !== undefined && count >= maxBatches) break;
  }
  if (count === 0) {
    throw new DictlearnError(op, 'the batch stream was empty; expected at least one [rows, d] tensor');
  }
  return { batches: count, tokens };
}

/** The error for a batch holding NaN or Inf, naming the first bad position. @internal */
export async function nonFiniteError(
  op: string,
  x: Tensor,
  index: number,
  count: number,
): Promise<DictlearnError> {
  const values = await x.data();
  const first = values.findIndex((v) => !Number.isFinite(v));
  const d = x.shape[1];
  return new DictlearnError(
    op,
    `batch ${index} holds ${count} NaN or Inf value${count === 1 ? '' : 's'} (first at row ${Math.floor(first / d)}, column ${first % d}: ${values[first]}); expected finite activations`,
  );
}
