import {
  type ActivationSource,
  collectTensors,
  concat,
  DictlearnError,
  fmtShape,
  gatherRows,
  keep,
  noGrad,
  philoxWords,
  seedFor,
  Tensor,
  tensor,
} from '@dictlearn/core';

/** What a source may yield: a tensor, or a tuple (array) whose first element is one, recursively. */
export type ActivationOutput = Tensor | readonly ActivationOutput[];

/**
 * A source whose batches may be nested outputs (a model hook returning `(hidden, cache)`, say):
 * the buffer keeps the first tensor of each (see {@link takeFirst}) and disposes the rest.
 */
export interface NestedActivationSource {
  /** A short description for logs. */
  readonly name: string;
  /** Width d of each activation vector. */
  readonly dim: number;
  /** Yields batches [..., dim] (or tuples whose first element is one) until exhausted. */
  batches(options: { batchSize: number; backend?: string }): AsyncIterable<ActivationOutput>;
}

/**
 * The first element of a tuple output, recursively: `takeFirst([[a, b], c])` is `a`, and a tensor
 * is returned as is (dictionary_learning: "take the first element of tuple outputs"). Throws a
 * `DictlearnError` for an empty tuple or a value that is neither a tensor nor an array.
 */
export function takeFirst(x: ActivationOutput): Tensor {
  let v: unknown = x;
  let depth = 0;
  while (Array.isArray(v)) {
    if (v.length === 0) {
      throw new DictlearnError(
        'takeFirst',
        `the output at depth ${depth} is an empty tuple; expected a tensor first`,
      );
    }
    v = v[0];
    depth++;
  }
  if (!(v instanceof Tensor)) {
    const what = v === null ? 'null' : typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
    throw new DictlearnError(
      'takeFirst',
      `expected a tensor or a tuple whose first element is one, got ${what}`,
    );
  }
  return v;
}

/** Options of {@link ActivationBuffer}. */
export interface ActivationBufferOptions {
  /**
   * Rows (activation vectors) the reservoir holds. Default: as many as fit in 256 MiB of
   * float32 (2²⁶ / dim rows, so 262 144 rows at d = 256), and at least 4 × `batchSize`.
   * dictionary_learning keeps 30 000 contexts × 128 tokens = 3 840 000 rows; pass that to match
   * it (at d = 512 it is 7.9 GB).
   */
  capacity?: number;
  /** Rows per yielded batch (default 8192, dictionary_learning's `out_batch_size`). */
  batchSize?: number;
  /** Rows asked of the source per read while refilling (default min(8192, capacity)). */
  sourceBatchSize?: number;
  /** Seed of the row sampling (default 0); the same seed and source give the same batches. */
  seed?: number;
  /** Backend the yielded batches are created on (default: the current backend). */
  backend?: string;
  /** Backend asked of the source for its batches (default: the current backend). */
  sourceBackend?: string;
  /**
   * Keep the reservoir on the backend of the yielded batches (GPU memory on WebGPU) instead of the
   * host: a refill uploads the new rows once, and each batch is gathered there (`gatherRows`) with
   * row indices drawn on the host, so activations never travel back. The batches are the same as
   * the host reservoir's for the same source and seed. Default false.
   */
  onDevice?: boolean;
}

/** Counters of an {@link ActivationBuffer}. */
export interface ActivationBufferStats {
  /** Rows held in the reservoir now. */
  held: number;
  /** Rows the reservoir can hold. */
  capacity: number;
  /** Refills so far (the first fill included). */
  refills: number;
  /** Rows read from the source. */
  rowsRead: number;
  /** Rows yielded in batches. */
  rowsYielded: number;
  /** Batches yielded. */
  batchesYielded: number;
  /** Whether the source has ended (the buffer then drains what it holds). */
  exhausted: boolean;
}

const OP = 'ActivationBuffer';
const DEFAULT_BYTES = 256 * 2 ** 20;
const MAX_EMPTY_READS = 1000;

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new DictlearnError(OP, `option '${name}' must be a positive integer, got ${v}`);
  }
  return v;
}

/**
 * A shuffling reservoir of activations between a source and a trainer, with the semantics of
 * dictionary_learning's `ActivationBuffer`: it holds up to `capacity` rows on the host
 * (float32), refills from the source whenever it is at most half full, and yields batches of
 * `batchSize` rows drawn uniformly at random without replacement from the rows it holds;
 * yielded rows leave the reservoir (DL's read mask). Memory is bounded by `capacity` rows plus
 * one source batch.
 *
 * Row sampling is reproducible: batch b draws its rows with
 * `philoxWords(2·batchSize, seedFor('sampling', seed), b)`
 * (core's Philox), each row index from 53 random bits. Given the same source and seed the
 * buffer yields the same batches.
 *
 * When the source ends, the buffer yields what it holds (the last batch may be smaller) and
 * then stops. Iterate it with `for await (const batch of buffer)` (leaving the loop early
 * closes the buffer and its source) or call {@link next}. The consumer disposes each batch.
 *
 * ```ts
 * const buffer = new ActivationBuffer(new SyntheticSource({ seed: 1 }), { batchSize: 4096 });
 * const x = await buffer.next(); // [4096, 256]
 * x.dispose();
 * ```
 */
export class ActivationBuffer implements AsyncIterable<Tensor> {
  /** The source it draws from. */
  readonly source: NestedActivationSource;
  /** Width d of the rows. */
  readonly dim: number;
  /** Rows the reservoir holds at most. */
  readonly capacity: number;
  /** Rows per yielded batch. */
  readonly batchSize: number;
  /** Rows asked of the source per read. */
  readonly sourceBatchSize: number;
  /** Seed of the row sampling. */
  readonly seed: number;

  readonly #backend: string | undefined;
  readonly #sourceBackend: string | undefined;
  /** The host reservoir: rows 0 … held−1 are the ones held, in sampling order (empty on device). */
  readonly #rows: Float32Array;
  /** The device reservoir ([rows, dim] on the batches' backend) and, per held row in sampling order, its row there. */
  readonly #device: { reservoir: Tensor | undefined; slots: Int32Array } | undefined;
  #held = 0;
  #iterator: AsyncIterator<ActivationOutput> | undefined;
  #pending: Float32Array | undefined;
  #pendingRow = 0;
  #exhausted = false;
  #closed = false;
  #refills = 0;
  #rowsRead = 0;
  #rowsYielded = 0;
  #batches = 0;
  #queue: Promise<unknown> = Promise.resolve();

  /** Wraps `source`; nothing is read until the first batch is asked for. */
  constructor(source: ActivationSource | NestedActivationSource, options: ActivationBufferOptions = {}) {
    if (!source || typeof (source as NestedActivationSource).batches !== 'function') {
      throw new DictlearnError(OP, 'source must be an ActivationSource (with a batches() method)');
    }
    this.source = source as NestedActivationSource;
    const dim = source.dim;
    if (!Number.isSafeInteger(dim) || dim < 1) {
      throw new DictlearnError(OP, `source '${source.name}' has dim ${dim}; expected a positive integer`);
    }
    this.dim = dim;
    this.batchSize = positiveInt('batchSize', options.batchSize ?? 8192);
    this.capacity = positiveInt(
      'capacity',
      options.capacity ?? Math.max(4 * this.batchSize, Math.floor(DEFAULT_BYTES / (4 * dim))),
    );
    if (this.batchSize > this.capacity) {
      throw new DictlearnError(
        OP,
        `batchSize ${this.batchSize} is larger than capacity ${this.capacity}; a batch must fit in the reservoir`,
      );
    }
    this.sourceBatchSize = positiveInt(
      'sourceBatchSize',
      options.sourceBatchSize ?? Math.min(8192, this.capacity),
    );
    this.seed = options.seed ?? 0;
    if (!Number.isSafeInteger(this.seed) || this.seed < 0) {
      throw new DictlearnError(OP, `option 'seed' must be a non-negative safe integer, got ${options.seed}`);
    }
    if (this.capacity * dim > 2 ** 31) {
      throw new DictlearnError(
        OP,
        `capacity ${this.capacity} × dim ${dim} = ${this.capacity * dim} floats is more than one array can hold (2^31); lower capacity`,
      );
    }
    this.#backend = options.backend;
    this.#sourceBackend = options.sourceBackend;
    if (options.onDevice) {
      this.#rows = new Float32Array(0);
      this.#device = { reservoir: undefined, slots: new Int32Array(this.capacity) };
    } else {
      this.#rows = new Float32Array(this.capacity * dim);
      this.#device = undefined;
    }
  }

  /** Whether the reservoir lives on the batches' backend ({@link ActivationBufferOptions.onDevice}). */
  get onDevice(): boolean {
    return this.#device !== undefined;
  }

  /** Counters: rows held, refills, rows read and yielded, whether the source ended. */
  get stats(): ActivationBufferStats {
    return {
      held: this.#held,
      capacity: this.capacity,
      refills: this.#refills,
      rowsRead: this.#rowsRead,
      rowsYielded: this.#rowsYielded,
      batchesYielded: this.#batches,
      exhausted: this.#exhausted,
    };
  }

  /** The next batch [batchSize, dim] (smaller at the very end); throws once the source is drained. */
  async next(): Promise<Tensor> {
    const t = await this.tryNext();
    if (!t) {
      throw new DictlearnError(
        OP,
        this.#closed && !this.#exhausted
          ? 'the buffer was closed'
          : `source '${this.source.name}' is exhausted: all ${this.#rowsYielded} rows were yielded`,
      );
    }
    return t;
  }

  /** The next batch, or `undefined` once the source is exhausted and the reservoir empty. */
  tryNext(): Promise<Tensor | undefined> {
    const run = this.#queue.then(() => this.#take());
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Stops reading: closes the source's iterator and frees the reservoir's rows. */
  async close(): Promise<void> {
    await this.#queue;
    if (this.#closed) return;
    this.#closed = true;
    this.#held = 0;
    this.#pending = undefined;
    if (this.#device) {
      this.#device.reservoir?.dispose();
      this.#device.reservoir = undefined;
    }
    const it = this.#iterator;
    this.#iterator = undefined;
    await it?.return?.();
  }

  /** Iterates the batches; leaving a `for await` loop early closes the buffer. */
  [Symbol.asyncIterator](): AsyncIterator<Tensor> {
    return {
      next: async () => {
        const value = await this.tryNext();
        return value ? { value, done: false } : { value: undefined, done: true };
      },
      return: async () => {
        await this.close();
        return { value: undefined, done: true };
      },
    };
  }

  async #take(): Promise<Tensor | undefined> {
    if (this.#closed) return undefined;
    if (this.#held <= this.capacity / 2 && !this.#exhausted) await this.#refill();
    const n = Math.min(this.batchSize, this.#held);
    if (n === 0) return undefined;
    if (this.#device) return this.#takeOnDevice(n, this.#device);
    const d = this.dim;
    const rows = this.#rows;
    const out = new Float32Array(n * d);
    const words = philoxWords(2 * n, seedFor('sampling', this.seed), this.#batches % 2 ** 32);
    let held = this.#held;
    for (let t = 0; t < n; t++) {
      const u = ((words[2 * t] >>> 0) * 2 ** 21 + (words[2 * t + 1] >>> 11)) / 2 ** 53;
      const r = Math.floor(u * held);
      out.set(rows.subarray(r * d, (r + 1) * d), t * d);
      held--;
      if (r !== held) rows.copyWithin(r * d, held * d, (held + 1) * d);
    }
    let batch: Tensor;
    try {
      batch = tensor(out, [n, d], { backend: this.#backend });
    } catch (e) {
      rows.set(out, held * d); // put the rows back (e.g. the backend is not started)
      throw e;
    }
    this.#held = held;
    this.#batches++;
    this.#rowsYielded += n;
    return batch;
  }

  /**
   * A batch gathered on the device: the same draws as the host path (row r of the held rows, then
   * the last held row takes its place), applied to the row numbers of the device reservoir.
   */
  #takeOnDevice(n: number, device: { reservoir: Tensor | undefined; slots: Int32Array }): Tensor {
    const slots = device.slots.slice(0, this.#held);
    const picked = new Int32Array(n);
    const words = philoxWords(2 * n, seedFor('sampling', this.seed), this.#batches % 2 ** 32);
    let held = this.#held;
    for (let t = 0; t < n; t++) {
      const u = ((words[2 * t] >>> 0) * 2 ** 21 + (words[2 * t + 1] >>> 11)) / 2 ** 53;
      const r = Math.floor(u * held);
      picked[t] = slots[r];
      held--;
      slots[r] = slots[held];
    }
    const reservoir = device.reservoir as Tensor;
    const indices = tensor(picked, [n], { dtype: 'int32', backend: reservoir.backend });
    let batch: Tensor;
    try {
      batch = noGrad(() => gatherRows(reservoir, indices));
    } finally {
      indices.dispose();
    }
    // Only now that the batch exists do the rows leave the reservoir.
    device.slots.set(slots.subarray(0, held));
    this.#held = held;
    this.#batches++;
    this.#rowsYielded += n;
    return batch;
  }

  async #refill(): Promise<void> {
    this.#refills++;
    if (!this.#device) {
      await this.#fill((rows, at) => this.#rows.set(rows, at * this.dim));
      return;
    }
    // Device: the new rows gather on the host, then go up in one upload, after the rows still held.
    const device = this.#device;
    const before = this.#held;
    const staged = new Float32Array((this.capacity - before) * this.dim);
    try {
      await this.#fill((rows, at) => staged.set(rows, (at - before) * this.dim));
    } finally {
      // Rows read before a failing read are held all the same, as on the host.
      this.#upload(device, staged, before);
    }
  }

  /** Puts the `held − before` staged rows on the device after the rows still held there. */
  #upload(
    device: { reservoir: Tensor | undefined; slots: Int32Array },
    staged: Float32Array,
    before: number,
  ): void {
    const added = this.#held - before;
    if (added === 0) return;
    const fresh = tensor(staged.subarray(0, added * this.dim), [added, this.dim], { backend: this.#backend });
    const old = device.reservoir;
    let next: Tensor;
    if (old && before > 0) {
      const kept = tensor(device.slots.slice(0, before), [before], { dtype: 'int32', backend: old.backend });
      try {
        next = noGrad(() => {
          const held = gatherRows(old, kept);
          try {
            return concat([held, fresh]);
          } finally {
            held.dispose();
          }
        });
      } finally {
        kept.dispose();
        fresh.dispose();
      }
    } else next = fresh;
    old?.dispose();
    device.reservoir = keep(next);
    for (let i = 0; i < this.#held; i++) device.slots[i] = i;
  }

  /**
   * Reads the source until the reservoir is full (or the source ends): `put(rows, at)` stores rows
   * as held rows `at`, `at + 1`, … in sampling order.
   */
  async #fill(put: (rows: Float32Array, at: number) => void): Promise<void> {
    const d = this.dim;
    let empty = 0;
    while (this.#held < this.capacity) {
      const pending = this.#pending;
      if (pending) {
        const available = pending.length / d - this.#pendingRow;
        const take = Math.min(available, this.capacity - this.#held);
        put(pending.subarray(this.#pendingRow * d, (this.#pendingRow + take) * d), this.#held);
        this.#held += take;
        this.#pendingRow += take;
        if (this.#pendingRow * d >= pending.length) this.#pending = undefined;
        continue;
      }
      this.#iterator ??= this.source
        .batches({ batchSize: this.sourceBatchSize, backend: this.#sourceBackend })
        [Symbol.asyncIterator]();
      const r = await this.#iterator.next();
      if (r.done) {
        this.#exhausted = true;
        this.#iterator = undefined;
        return;
      }
      const values = await this.#read(r.value);
      this.#rowsRead += values.length / d;
      if (values.length === 0) {
        if (++empty > MAX_EMPTY_READS) {
          throw new DictlearnError(
            OP,
            `source '${this.source.name}' yielded ${MAX_EMPTY_READS} empty batches in a row`,
          );
        }
        continue;
      }
      empty = 0;
      this.#pending = values;
      this.#pendingRow = 0;
    }
  }

  /** The first tensor of a source output as host float32 rows; every tensor in it is disposed. */
  async #read(output: ActivationOutput): Promise<Float32Array> {
    const all = collectTensors(output);
    try {
      const t = takeFirst(output);
      const shape = t.shape;
      if (shape.length < 1 || shape[shape.length - 1] !== this.dim) {
        throw new DictlearnError(
          OP,
          `source '${this.source.name}' yielded a batch of shape ${fmtShape(shape)}; expected [rows, ${this.dim}] (the source's dim)`,
        );
      }
      if (t.dtype !== 'float32') {
        throw new DictlearnError(
          OP,
          `source '${this.source.name}' yielded a ${t.dtype} batch; expected float32 activations`,
        );
      }
      const data = await t.data();
      return data instanceof Float32Array ? data : Float32Array.from(data);
    } finally {
      for (const t of all) t.dispose();
    }
  }
}
