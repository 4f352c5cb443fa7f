/**
 * Hook resolution: a module path a user knows from the PyTorch model (`gpt_neox.layers.3`,
 * `transformer.h.5.attn:heads`) → the ONNX value that holds it.
 *
 * @module
 */
import { DictlearnError } from '@dictlearn/core';
import { isFloatType, type OnnxModel, type OnnxNode } from './onnx.js';

/**
 * What a hook takes from its module:
 * - `'output'` (no suffix): the tensor the module returns (the first one, for a tuple);
 * - `'input'` (`:input`): the first floating-point value the module reads from outside it;
 * - `'heads'` (`:heads`, attention modules): the input of the output projection, i.e. the per-head
 *   outputs concatenated head by head, [tokens, heads·headDim];
 * - `'value'` (`value:NAME`): the ONNX value NAME itself, for graphs without module scopes.
 */
export type HookKind = 'output' | 'input' | 'heads' | 'value';

/** A hook resolved to a value of the graph. */
export interface ResolvedHook {
  /** The hook as the user wrote it. */
  readonly hook: string;
  /** The module path (empty for `value:` hooks). */
  readonly module: string;
  /** What is taken from the module. */
  readonly kind: HookKind;
  /** Name of the ONNX value that holds the activations. */
  readonly value: string;
  /** Element type of the value when known (a `TensorProto.DataType` code). */
  readonly elemType?: number;
}

/** Names of attention output projections in Hugging Face models (GPT-NeoX, GPT-2, Llama, GPT-J/OPT, …). */
export const OUTPUT_PROJECTIONS = ['dense', 'c_proj', 'o_proj', 'out_proj', 'wo', 'proj'] as const;

const KINDS: Record<string, HookKind> = { input: 'input', heads: 'heads', output: 'output' };

/** Every module path of the graph (each node's scope and the scopes above it), sorted. */
export function modulePaths(model: OnnxModel): string[] {
  const out = new Set<string>();
  for (const n of model.nodes) {
    if (!n.scope) continue;
    // Every prefix is a module: `gpt_neox`, `gpt_neox.layers`, `gpt_neox.layers.1`, …
    let at = n.scope.indexOf('.');
    while (at >= 0) {
      out.add(n.scope.slice(0, at));
      at = n.scope.indexOf('.', at + 1);
    }
    out.add(n.scope);
  }
  return [...out].sort(naturalCompare);
}

function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function inModule(node: OnnxNode, module: string): boolean {
  return node.scope === module || node.scope.startsWith(`${module}.`);
}

/** Levenshtein distance, for suggestions (module paths are short). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** The `count` known names nearest to `name` (edit distance, then natural order). */
export function nearestNames(name: string, known: readonly string[], count = 6): string[] {
  return known
    .map((k) => ({ k, d: distance(name, k) }))
    .sort((x, y) => x.d - y.d || naturalCompare(x.k, y.k))
    .slice(0, count)
    .map((x) => x.k);
}

function unknownModule(model: OnnxModel, module: string, hook: string): DictlearnError {
  const known = modulePaths(model);
  if (known.length === 0) {
    return new DictlearnError(
      model.file,
      `hook '${hook}': the graph's nodes carry no module names (node names like '/gpt_neox/layers.1/...' from torch.onnx.export(dynamo=False), or name_scopes metadata from dynamo=True); name the ONNX value instead, as 'value:NAME'`,
    );
  }
  return new DictlearnError(
    model.file,
    `hook '${hook}': the model has no module '${module}'; nearest module names: ${nearestNames(module, known).join(', ')}`,
  );
}

/** Whether a value is a constant: an initializer or the output of a `Constant` node. */
function isConstant(model: OnnxModel, value: string): boolean {
  if (model.initializers.has(value)) return true;
  const p = model.producers.get(value);
  return p !== undefined && model.nodes[p].opType === 'Constant';
}

/** The value a module returns: its last floating-point value read outside it (or a graph output). */
function moduleOutput(model: OnnxModel, module: string): string | undefined {
  const graphOutputs = new Set(model.outputs.map((o) => o.name));
  let best: { value: string; index: number } | undefined;
  for (const n of model.nodes) {
    if (!inModule(n, module)) continue;
    for (const o of n.outputs) {
      if (!o) continue;
      const type = model.elemType(o);
      if (type !== undefined && !isFloatType(type)) continue;
      const escapes =
        graphOutputs.has(o) || (model.consumers.get(o) ?? []).some((c) => !inModule(model.nodes[c], module));
      // The last one produced: a tuple's extra outputs (attention weights, a cache) come before the
      // hidden states a block returns, and internal values never escape.
      if (escapes && (!best || n.index >= best.index)) best = { value: o, index: n.index };
    }
  }
  return best?.value;
}

/** The first floating-point, non-constant value that nodes of `module` read from outside it. */
function moduleInput(model: OnnxModel, module: string): string | undefined {
  for (const n of model.nodes) {
    if (!inModule(n, module)) continue;
    for (const v of n.inputs) {
      if (!v || isConstant(model, v)) continue;
      const p = model.producers.get(v);
      if (p !== undefined && inModule(model.nodes[p], module)) continue;
      const type = model.elemType(v);
      if (type !== undefined && !isFloatType(type)) continue;
      return v;
    }
  }
  return undefined;
}

/**
 * Resolves a hook name to the graph value that holds it. Syntax: `MODULE` (the module's output),
 * `MODULE:input`, `ATTENTION:heads` (per-head outputs before the output projection) or `value:NAME`.
 * Throws a `DictlearnError` naming the model file: for an unknown module it lists the nearest
 * module names.
 */
export function resolveHook(model: OnnxModel, hook: string): ResolvedHook {
  if (typeof hook !== 'string' || hook.trim() === '') {
    throw new DictlearnError(
      model.file,
      `a hook must be a module path such as 'gpt_neox.layers.3', got ${JSON.stringify(hook)}`,
    );
  }
  if (hook.startsWith('value:')) {
    const value = hook.slice('value:'.length);
    const exists =
      model.producers.has(value) ||
      model.inputs.some((i) => i.name === value) ||
      model.initializers.has(value);
    if (!exists) {
      throw new DictlearnError(model.file, `hook '${hook}': the graph has no value '${value}'`);
    }
    return { hook, module: '', kind: 'value', value, elemType: model.elemType(value) };
  }
  const colon = hook.lastIndexOf(':');
  const module = colon >= 0 ? hook.slice(0, colon) : hook;
  const suffix = colon >= 0 ? hook.slice(colon + 1) : 'output';
  const kind = KINDS[suffix];
  if (!kind) {
    throw new DictlearnError(
      model.file,
      `hook '${hook}': unknown suffix ':${suffix}'; expected MODULE, MODULE:input, ATTENTION:heads or value:NAME`,
    );
  }
  const exists = model.nodes.some((n) => inModule(n, module));
  if (!exists) throw unknownModule(model, module, hook);
  let value: string | undefined;
  if (kind === 'output') {
    value = moduleOutput(model, module);
    if (!value) {
      throw new DictlearnError(
        model.file,
        `hook '${hook}': module '${module}' produces no floating-point value used outside it`,
      );
    }
  } else if (kind === 'input') {
    value = moduleInput(model, module);
    if (!value) {
      throw new DictlearnError(
        model.file,
        `hook '${hook}': module '${module}' reads no floating-point value from outside it`,
      );
    }
  } else {
    const children = modulePaths(model).filter(
      (p) => p.startsWith(`${module}.`) && !p.slice(module.length + 1).includes('.'),
    );
    const projection = OUTPUT_PROJECTIONS.map((p) => `${module}.${p}`).find((p) => children.includes(p));
    if (!projection) {
      throw new DictlearnError(
        model.file,
        `hook '${hook}': ':heads' needs an attention module with an output projection named ${OUTPUT_PROJECTIONS.join(', ')}; '${module}' has ${children.length > 0 ? `the submodules ${children.join(', ')}` : 'no submodules'}`,
      );
    }
    value = moduleInput(model, projection);
    if (!value) {
      throw new DictlearnError(
        model.file,
        `hook '${hook}': the output projection '${projection}' reads no value from outside it`,
      );
    }
  }
  return { hook, module, kind, value, elemType: model.elemType(value) };
}
