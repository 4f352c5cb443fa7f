import { type Backend, readyBackend } from './backend.js';
import { DictlearnError, fmtShape } from './errors.js';
import {
  type Attrs,
  getKernel,
  type KernelOutput,
  type KernelTensor,
  type OpAttrs,
  type OpName,
} from './kernel-registry.js';
import { Storage, Tensor, tracking } from './tensor.js';
import type { DType, HostArray, Shape } from './types.js';

export {
  type Attrs,
  getKernel,
  type Kernel,
  type KernelOutput,
  type KernelTensor,
  kernelsOf,
  type NoAttrs,
  type OpAttrs,
  type OpName,
  type RegisterKernelOptions,
  registerKernel,
  unregisterKernel,
} from './kernel-registry.js';

// ---------------------------------------------------------------------------------------------
// Scopes

const scopes: Set<Tensor>[] = [];

tracking.onCreate = (t: Tensor) => {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
};

/** Collects the tensors reachable in a value (tensors, arrays, plain objects, Maps). */
export function collectTensors(value: unknown, into: Set<Tensor> = new Set()): Set<Tensor> {
  if (value instanceof Tensor) into.add(value);
  else if (Array.isArray(value)) for (const v of value) collectTensors(v, into);
  else if (value instanceof Map) for (const v of value.values()) collectTensors(v, into);
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into);
  }
  return into;
}

/**
 * Runs `fn` and disposes every tensor it created except those in its result (tensors, arrays,
 * plain objects and Maps of them are searched) and those passed to {@link keep}. Returned
 * tensors belong to the enclosing scope. `fn` must be synchronous: GPU backends queue work,
 * so nothing inside needs to await.
 */
export function scope<T>(fn: () => T): T {
  const created = new Set<Tensor>();
  scopes.push(created);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of created) if (!t.kept && !t.tapeHeld) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new DictlearnError(
      'scope',
      'the function returned a Promise; scope() takes a synchronous function',
    );
  }
  const keepSet = collectTensors(result);
  const parent = scopes[scopes.length - 1];
  for (const t of created) {
    if (keepSet.has(t)) parent?.add(t);
    else if (t.tapeHeld) parent?.add(t);
    else if (!t.kept) t.dispose();
  }
  return result;
}

/** Exempts a tensor from disposal by any scope (dispose it yourself). Returns it. */
export function keep<T extends Tensor>(t: T): T {
  t.kept = true;
  return t;
}

// ---------------------------------------------------------------------------------------------
// Autograd tape

/**
 * Computes the gradients of a node's inputs from the gradients of its outputs. `own[k]` says the
 * backward pass hands over `dys[k]`: nothing else holds it and it is freed after this call, so
 * the function may overwrite it (an op's in-place variant), never read it after that, or
 * dispose it once it has read it for the last time (to free it before its own temporaries).
 * `ownOutputs[k]` says the same of the node's forward output k: nothing reads it after this call
 * (no caller kept it, no view shares its storage), so the function may write over it once it
 * has read what it needs. `ownInputs[j]` says it of input j: an earlier node's output that no
 * other node reads, whose producer's gradient function does not read it either (its
 * {@link OpSpec.gradReadsOutputs} leave it out), that no caller kept and no view shares: the
 * function may write over it (a squared error's gradient over the reconstruction). An output no
 * gradient reached gets zeros in `dys`, or `undefined` for an op whose spec says
 * {@link OpSpec.missingGrads} (so a large one is never filled with zeros).
 */
export type GradFn = (
  dys: Tensor[],
  needs: boolean[],
  own?: readonly boolean[],
  ownOutputs?: readonly boolean[],
  ownInputs?: readonly boolean[],
) => (Tensor | null | undefined)[];

interface TapeNode {
  inputs: Tensor[];
  outputs: Tensor[];
  grad: GradFn;
  /** Outputs no gradient reached are given as `undefined`, not zeros (see {@link OpSpec.missingGrads}). */
  missingGrads: boolean;
  /** The outputs the gradient rule reads (undefined: all); see {@link OpSpec.gradReadsOutputs}. */
  gradReadsOutputs?: readonly number[];
}

interface Tape {
  nodes: TapeNode[];
  requiresGrad: Set<Tensor>;
  paused: number;
}

let tape: Tape | null = null;

function record(
  inputs: Tensor[],
  outputs: Tensor[],
  grad: GradFn | undefined,
  op: string,
  spec: Pick<OpSpec, 'missingGrads' | 'gradReadsOutputs'> = {},
): void {
  if (!tape || tape.paused > 0) return;
  if (!inputs.some((t) => tape!.requiresGrad.has(t))) return;
  if (!grad) {
    // Non-differentiable ops (comparisons, argmax, casts to int...) simply stop the gradient.
    return;
  }
  for (const t of inputs) t.tapeHeld = true;
  for (const t of outputs) {
    t.tapeHeld = true;
    if (t.dtype === 'float32') tape.requiresGrad.add(t);
  }
  tape.nodes.push({
    inputs,
    outputs,
    grad,
    missingGrads: spec.missingGrads ?? false,
    gradReadsOutputs: spec.gradReadsOutputs,
  });
  void op;
}

/** Runs `fn` without recording gradients. */
export function noGrad<T>(fn: () => T): T {
  if (!tape) return fn();
  tape.paused++;
  try {
    return fn();
  } finally {
    tape.paused--;
  }
}

/** Whether an autograd tape is recording right now. */
export function isRecording(): boolean {
  return tape !== null && tape.paused === 0;
}

// ---------------------------------------------------------------------------------------------
// Dispatch

/**
 * How an op runs where a backend has no kernel for it, and how its gradient is computed.
 *
 * An op with a `composition` is a composite op: a backend may register a fused kernel for it.
 * Without a `grad` rule of its own, the fused kernel is used only where no gradient is needed:
 * while a tape records and an input needs a gradient, the composition runs instead, so the
 * gradient flows through its parts and never silently stops at the fused kernel.
 */
export interface OpSpec<A = Attrs> {
  /** Reference composition of other ops, used when the backend has no (fused) kernel. */
  composition?: (inputs: Tensor[], attrs: A) => Tensor | Tensor[];
  /**
   * Gradient of the kernel path (the composition path differentiates through its parts).
   * Without one (and without a composition) the op is not differentiable: it stops the gradient.
   */
  grad?: (inputs: Tensor[], outputs: Tensor[], attrs: A) => GradFn;
  /**
   * The gradient rule takes an output no gradient reached as `undefined` in `dys` (instead of a
   * tensor of zeros of the output's shape): for ops with a large output that is often unused.
   */
  missingGrads?: boolean;
  /**
   * The outputs (by index) the gradient rule reads; the backward pass frees the others before
   * it runs, where nothing else reads them (so a large unread output is not held through it).
   * Undefined: it may read them all.
   */
  gradReadsOutputs?: readonly number[];
}

function kernelView(t: Tensor): KernelTensor {
  return { data: t.storage.data, shape: t.shape, dtype: t.dtype, size: t.size };
}

/** Checks tensors are alive and on one backend; returns that backend. */
export function commonBackend(op: string, inputs: Tensor[]): Backend {
  for (const t of inputs) {
    if (!(t instanceof Tensor)) {
      throw new DictlearnError(op, `expected a Tensor, got ${t === null ? 'null' : typeof t}`);
    }
    t.assertAlive(op);
  }
  const backend = inputs[0].storage.backend;
  for (const t of inputs) {
    if (t.storage.backend !== backend) {
      throw new DictlearnError(
        op,
        `tensors live on different backends ('${backend.name}' and '${t.backend}'); move one with toBackend()`,
      );
    }
  }
  return backend;
}

function wrap(backend: Backend, out: KernelOutput, inputs: Tensor[]): Tensor {
  const shared = inputs.find((t) => t.storage.data === out.data);
  const storage = shared
    ? shared.storage
    : new Storage(
        backend,
        out.data,
        out.shape.reduce((a, b) => a * b, 1) * (backend.bytesPerElement?.(out.dtype) ?? 4),
      );
  return new Tensor(storage, out.shape, out.dtype);
}

/** Whether the tape would record an op on these inputs (a tape is active and one needs a gradient). */
function needsGradient(inputs: readonly Tensor[]): boolean {
  return tape !== null && tape.paused === 0 && inputs.some((t) => tape!.requiresGrad.has(t));
}

/**
 * Runs op `name` on the inputs' backend: its kernel if the backend registered one, else the
 * reference composition; records the gradient when a tape is active. A composite op without a
 * gradient rule runs its composition whenever its gradient is needed (see {@link OpSpec}).
 * Throws naming the op and the backend when neither a kernel nor a composition exists.
 */
export function runOp<Op extends OpName>(
  name: Op,
  inputs: Tensor[],
  attrs: OpAttrs[Op],
  spec: OpSpec<OpAttrs[Op]> = {},
): Tensor[] {
  const backend =
    inputs.length > 0
      ? commonBackend(name, inputs)
      : readyBackend((attrs as { backend?: string }).backend, name);
  const kernel = getKernel(name, backend);
  if (!kernel || (spec.composition && !spec.grad && needsGradient(inputs))) {
    if (spec.composition) {
      // In a scope, so the composition's intermediates are freed even when the caller has none
      // (those the tape holds for the backward pass move up to the caller's scope).
      const r = scope(() => spec.composition!(inputs, attrs));
      return Array.isArray(r) ? r : [r];
    }
    throw new DictlearnError(
      name,
      `backend '${backend.name}' has no kernel for op '${name}' and core has no composition of it`,
    );
  }
  const raw = kernel(inputs.map(kernelView), attrs, backend);
  const outs = (Array.isArray(raw) ? raw : [raw]).map((o) => wrap(backend, o, inputs));
  if (tape && tape.paused === 0 && inputs.length > 0) {
    record(inputs, outs, spec.grad?.(inputs, outs, attrs), name, spec);
  }
  return outs;
}

/** Creates a tensor on a backend from host values (copied). */
export function fromHost(values: HostArray, shape: Shape, dtype: DType, backendName?: string): Tensor {
  const backend = readyBackend(backendName, 'tensor');
  const data = backend.upload(values, dtype);
  return new Tensor(
    new Storage(backend, data, values.length * (backend.bytesPerElement?.(dtype) ?? 4)),
    shape,
    dtype,
  );
}

/** A tensor sharing `t`'s storage under a new shape of the same size (no copy). */
export function shareStorage(t: Tensor, shape: Shape): Tensor {
  return new Tensor(t.storage, shape, t.dtype);
}

/**
 * Records a custom gradient node: `outputs` were computed from `inputs` (without recording),
 * `grad` gives the inputs' gradients. Used by {@link customGrad} and by ops built in core.
 * @internal
 */
export function recordNode(inputs: Tensor[], outputs: Tensor[], grad: GradFn): void {
  record(inputs, outputs, grad, 'custom');
}

// ---------------------------------------------------------------------------------------------
// valueAndGrad

/** A trainable value: a tensor, or a {@link Variable} whose tensor an optimizer replaces. */
export type Param = Tensor | Variable;

/**
 * A named, mutable slot holding a tensor (a parameter). `assign` swaps the tensor and disposes
 * the old one, so optimizers update parameters without leaking.
 */
export class Variable {
  #value: Tensor;
  /** The parameter's name (used by optimizers and checkpoints). */
  readonly name: string;
  constructor(value: Tensor, name = `var${value.id}`) {
    this.#value = keep(value);
    this.name = name;
  }
  /** The current tensor. */
  get value(): Tensor {
    return this.#value;
  }
  /** Replaces the tensor (same shape and dtype) and disposes the previous one. */
  assign(next: Tensor): void {
    if (
      next.shape.length !== this.#value.shape.length ||
      next.shape.some((d, i) => d !== this.#value.shape[i])
    ) {
      throw new DictlearnError(
        `Variable '${this.name}'.assign`,
        `shape ${fmtShape(next.shape)} does not match the variable's ${fmtShape(this.#value.shape)}`,
      );
    }
    if (next === this.#value) return;
    const old = this.#value;
    this.#value = keep(next);
    old.dispose();
  }
  /** Frees the tensor. */
  dispose(): void {
    this.#value.dispose();
  }
}

function paramTensor(p: Param): Tensor {
  return p instanceof Variable ? p.value : p;
}

/** What {@link valueAndGrad} returns. */
export interface ValueAndGrad<A> {
  /** The scalar value `fn` returned. */
  value: Tensor;
  /** d value / d param for every param (zeros where the value does not depend on it). */
  grads: Map<Param, Tensor>;
  /** Whatever `fn` returned beside the value (tensors in it are kept alive). */
  aux: A;
}

/**
 * Evaluates `fn` while recording a tape and returns its value with the gradients of that value
 * with respect to `params`. `fn` returns the scalar loss, or `{ value, aux }` to carry logs out.
 * Every intermediate tensor is freed before this returns.
 */
export function valueAndGrad<A = undefined>(
  fn: () => Tensor | { value: Tensor; aux?: A },
  params: readonly Param[],
): ValueAndGrad<A> {
  if (tape) throw new DictlearnError('valueAndGrad', 'nested valueAndGrad is not supported');
  const startId = nextTensorId();
  const paramTensors = params.map(paramTensor);
  for (const t of paramTensors) {
    commonBackend('valueAndGrad', [t]);
    if (t.dtype !== 'float32') {
      throw new DictlearnError('valueAndGrad', `parameters must be float32, got ${t.dtype} for ${t}`);
    }
  }
  const myTape: Tape = { nodes: [], requiresGrad: new Set(paramTensors), paused: 0 };
  tape = myTape;
  let out: Tensor | { value: Tensor; aux?: A };
  try {
    out = scope(fn);
  } catch (e) {
    tape = null;
    releaseTape(myTape, new Set(), startId);
    throw e;
  }
  tape = null;
  const value = out instanceof Tensor ? out : out.value;
  const aux = (out instanceof Tensor ? undefined : out.aux) as A;
  if (!(value instanceof Tensor) || value.size !== 1 || value.dtype !== 'float32') {
    releaseTape(myTape, new Set(), startId);
    throw new DictlearnError(
      'valueAndGrad',
      `fn must return a scalar float32 tensor (or { value, aux }), got ${value instanceof Tensor ? value.toString() : typeof value}`,
    );
  }
  const keepSet = collectTensors([value, aux]);
  const grads = new Map<Param, Tensor>();
  const result = scope(() => backward(myTape, value, paramTensors, keepSet));
  params.forEach((p, i) => {
    grads.set(p, result[i]);
  });
  for (const g of result) keepSet.add(g);
  releaseTape(myTape, keepSet, startId);
  return { value, grads, aux };
}

function releaseTape(t: Tape, keepSet: Set<Tensor>, startId: number): void {
  const all = new Set<Tensor>();
  for (const n of t.nodes) {
    for (const x of n.inputs) all.add(x);
    for (const x of n.outputs) all.add(x);
  }
  for (const x of all) {
    x.tapeHeld = false;
    if (x.id >= startId && !keepSet.has(x) && !x.kept) x.dispose();
  }
}

function backward(t: Tape, value: Tensor, params: Tensor[], keepSet: Set<Tensor>): Tensor[] {
  // Only nodes on a path from a param to the value matter; walk backwards from the value.
  // Memory: each node's gradient function runs in a scope of its own (its temporaries are freed
  // when it returns), and an output's gradient is freed once its node has used it — every
  // consumer of a tensor comes later on the tape, so by then its gradient is complete. Only
  // gradients this walk made are freed (a gradient function may return a tensor from elsewhere).
  // A node's forward outputs go too, once it has run: whatever reads them (its consumers, and
  // gradient functions recorded after them) came later on the tape and has run already.
  const startId = nextTensorId();
  const made = (g: Tensor) => g.id >= startId;
  const grads = new Map<Tensor, Tensor>();
  // How many entries of `grads` hold each gradient tensor (a function may return one for several inputs).
  const holders = new Map<Tensor, number>();
  const hold = (x: Tensor, g: Tensor) => {
    grads.set(x, g);
    holders.set(g, (holders.get(g) ?? 0) + 1);
  };
  const unhold = (g: Tensor) => {
    const n = (holders.get(g) ?? 0) - 1;
    if (n > 0) holders.set(g, n);
    else holders.delete(g);
    return n <= 0;
  };
  hold(value, onesLike(value));
  // Who made each tensor on the tape (node, output slot), and how many input slots read it.
  const producer = new Map<Tensor, [TapeNode, number]>();
  const reads = new Map<Tensor, number>();
  for (const n of t.nodes) {
    n.outputs.forEach((o, k) => {
      producer.set(o, [n, k]);
    });
    for (const x of n.inputs) reads.set(x, (reads.get(x) ?? 0) + 1);
  }
  for (let i = t.nodes.length - 1; i >= 0; i--) {
    const node = t.nodes[i];
    if (!node.outputs.some((o) => grads.has(o))) continue;
    const dys = node.outputs.map((o) => grads.get(o) ?? (node.missingGrads ? undefined : zerosLikeFn(o)));
    const needs = node.inputs.map((x) => t.requiresGrad.has(x));
    // A gradient is the node's to overwrite when this walk made it, only this output holds it,
    // and no other tensor shares its storage (a reshaped view).
    const own = dys.map(
      (dy, k) =>
        dy !== undefined &&
        made(dy) &&
        (holders.get(dy) ?? 0) <= 1 &&
        dy.storage.refs === 1 &&
        dys.indexOf(dy) === k,
    );
    // A forward output is the node's to overwrite when it would be freed right after this call
    // (see below) and no view shares its storage: whatever reads it came later on the tape and
    // has run already (nodes off the gradient's path never run).
    const ownOutputs = node.outputs.map(
      (o) => !keepSet.has(o) && !o.kept && !holders.has(o) && o.storage.refs === 1 && !dys.includes(o),
    );
    if (node.gradReadsOutputs) {
      const reads = node.gradReadsOutputs;
      node.outputs.forEach((o, k) => {
        if (ownOutputs[k] && !reads.includes(k)) o.dispose();
      });
    }
    // An input is the node's to overwrite when this node is its only reader and its producer's
    // gradient function will not read it (see GradFn).
    const ownInputs = node.inputs.map((x) => {
      const made = producer.get(x);
      const reading = made?.[0].gradReadsOutputs;
      return (
        made !== undefined &&
        reading !== undefined &&
        !reading.includes(made[1]) &&
        reads.get(x) === 1 &&
        !keepSet.has(x) &&
        !x.kept &&
        !holders.has(x) &&
        x.storage.refs === 1 &&
        !dys.includes(x)
      );
    });
    const dxs = scope(() => node.grad(dys as Tensor[], needs, own, ownOutputs, ownInputs));
    // An input written over is a second name for its gradient's storage now: let it go, so the
    // gradient is the storage's only holder (and its consumer may in turn write over it).
    node.inputs.forEach((x, j) => {
      if (ownInputs[j] && dxs.some((d) => d instanceof Tensor && d !== x && d.storage === x.storage))
        x.dispose();
    });
    const returned = new Set(dxs.filter((d): d is Tensor => d instanceof Tensor));
    node.inputs.forEach((x, j) => {
      const dx = dxs[j];
      if (!needs[j] || !dx) return;
      if (dx.shape.length !== x.shape.length || dx.shape.some((d, k) => d !== x.shape[k])) {
        throw new DictlearnError(
          'backward',
          `gradient of shape ${fmtShape(dx.shape)} for an input of shape ${fmtShape(x.shape)} (an op's or customGrad's gradient function returned the wrong shape)`,
        );
      }
      const prev = grads.get(x);
      if (!prev) {
        hold(x, dx);
        return;
      }
      // The running sum is written over prev where it is the walk's own (made here, held for x
      // alone, no view of it, not this node's gradient for a later input): no second
      // gradient-sized array.
      const over =
        made(prev) &&
        (holders.get(prev) ?? 0) <= 1 &&
        prev.storage.refs === 1 &&
        !dxs.includes(prev, j + 1) &&
        prev.dtype === dx.dtype &&
        prev.shape.length === dx.shape.length &&
        prev.shape.every((d, k) => d === dx.shape[k]);
      const sum = addFn(prev, dx, over);
      // (written over, prev is only a second name for the sum's storage: let it go now, even if
      // this node returned it, so the next sum may write over the storage too)
      if (unhold(prev) && made(prev) && (over || !returned.has(prev))) prev.dispose();
      hold(x, sum);
    });
    // The outputs' gradients are used up (unless handed on as an input's). Params are leaves, never
    // a node's output, so their gradients stay.
    node.outputs.forEach((o, k) => {
      if (!grads.has(o)) return;
      grads.delete(o);
      const g = dys[k];
      if (g && unhold(g) && made(g) && !returned.has(g) && !g.isDisposed) g.dispose();
    });
    // An input's gradient summed into another and not held: the addend is garbage now.
    for (const dx of returned) if (!holders.has(dx) && made(dx) && !dx.isDisposed) dx.dispose();
    for (const o of node.outputs) if (!keepSet.has(o) && !o.kept && !holders.has(o)) o.dispose();
  }
  // Each param gets its own handle (a shared handle would die with the first dispose()).
  const seen = new Set<Tensor>();
  return params.map((p) => {
    const g = grads.get(p) ?? zerosLikeFn(p);
    if (seen.has(g)) return shareStorage(g, g.shape);
    seen.add(g);
    return g;
  });
}

// Gradient seeds and accumulation use kernels directly: engine must not import ops (a cycle),
// and a hook installed by ops/ as a side effect would be dropped by bundlers (sideEffects: false).
function fillLike(t: Tensor, value: number): Tensor {
  return runOp('fill', [], { shape: [...t.shape], value, dtype: t.dtype, backend: t.backend })[0];
}
function onesLike(t: Tensor): Tensor {
  return fillLike(t, 1);
}
function zerosLikeFn(t: Tensor): Tensor {
  return fillLike(t, 0);
}
function addFn(a: Tensor, b: Tensor, inPlace = false): Tensor {
  return runOp('add', [a, b], { shape: [...a.shape], inPlace })[0];
}

let idProbe = 0;
function nextTensorId(): number {
  // Tensor ids increase monotonically; the next id is one past the newest tensor's.
  idProbe = Tensor.nextId();
  return idProbe;
}

/**
 * Wraps a function so its gradient is the one you give (straight-through estimators, e.g. the
 * JumpReLU threshold). `f` returns `{ value, grad }`; `grad(dy, own)` returns one gradient per
 * input. The forward pass is not recorded, so `f` may use non-differentiable ops freely. `own`
 * says the backward pass hands `dy` over (nothing else holds it; see {@link GradFn}), so an
 * in-place op may overwrite it.
 */
export function customGrad<I extends Tensor[]>(
  f: (...inputs: I) => { value: Tensor; grad: (dy: Tensor, own: boolean) => (Tensor | null)[] },
): (...inputs: I) => Tensor {
  return (...inputs: I) => {
    let gradFn: ((dy: Tensor, own: boolean) => (Tensor | null)[]) | undefined;
    const value = noGrad(() => {
      const r = f(...inputs);
      gradFn = r.grad;
      return r.value;
    });
    recordNode(inputs, [value], (dys, _needs, own) => gradFn!(dys[0], own?.[0] ?? false));
    return value;
  };
}
