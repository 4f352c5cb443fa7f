import { DictlearnError } from './errors.js';

/** What the plugin registry holds. */
export type PluginKind = 'backend' | 'architecture' | 'source';

interface RegistryStore {
  readonly version: 1;
  readonly entries: Record<PluginKind, Map<string, unknown>>;
}

const REGISTRY_KEY = Symbol.for('dictlearn.registry');

/**
 * The one registry, stored on `globalThis` under `Symbol.for('dictlearn.registry')` so that
 * two copies of `@dictlearn/core` in one process (a bundler duplicating it, say) share it.
 */
function store(): RegistryStore {
  const g = globalThis as unknown as Record<symbol, RegistryStore | undefined>;
  let s = g[REGISTRY_KEY];
  if (!s) {
    s = { version: 1, entries: { backend: new Map(), architecture: new Map(), source: new Map() } };
    Object.defineProperty(g, REGISTRY_KEY, {
      value: s,
      enumerable: false,
      configurable: false,
      writable: false,
    });
  }
  return s;
}

/**
 * Registers a plugin under a name. Registering the same object again is a no-op; a different
 * object under a taken name throws, naming both.
 */
export function registerPlugin<T extends object>(kind: PluginKind, name: string, plugin: T): T {
  const map = store().entries[kind];
  const existing = map.get(name);
  if (existing === plugin) return plugin;
  if (existing !== undefined) {
    throw new DictlearnError(
      'registerPlugin',
      `a different ${kind} is already registered as '${name}'; unregister it first or choose another name`,
    );
  }
  map.set(name, plugin);
  return plugin;
}

/** Removes a plugin (for tests and hot reload). Returns whether one was registered. */
export function unregisterPlugin(kind: PluginKind, name: string): boolean {
  return store().entries[kind].delete(name);
}

/** Looks a plugin up by name; `undefined` when none is registered. */
export function findPlugin<T = unknown>(kind: PluginKind, name: string): T | undefined {
  return store().entries[kind].get(name) as T | undefined;
}

/** Names of the registered plugins of one kind, in registration order. */
export function listPlugins(kind: PluginKind): string[] {
  return [...store().entries[kind].keys()];
}
