import { describe, expect, it } from 'vitest';
import { findPlugin, listPlugins, registerPlugin, unregisterPlugin } from './registry.js';

describe('plugin registry', () => {
  it('lives on globalThis under Symbol.for so two copies of core share it', () => {
    const plugin = { name: 'shared' };
    registerPlugin('architecture', 'shared-test', plugin);
    const store = (globalThis as Record<symbol, { entries: Record<string, Map<string, unknown>> }>)[
      Symbol.for('dictlearn.registry')
    ];
    expect(store.entries.architecture.get('shared-test')).toBe(plugin);
    unregisterPlugin('architecture', 'shared-test');
  });

  it('registering the same object twice is a no-op; a different one under a taken name throws', () => {
    const a = { name: 'a' };
    expect(registerPlugin('source', 'dup-test', a)).toBe(a);
    expect(registerPlugin('source', 'dup-test', a)).toBe(a);
    expect(listPlugins('source').filter((n) => n === 'dup-test')).toHaveLength(1);
    expect(() => registerPlugin('source', 'dup-test', { name: 'b' })).toThrow(
      /registerPlugin: a different source is already registered as 'dup-test'/,
    );
    expect(findPlugin('source', 'dup-test')).toBe(a);
    expect(unregisterPlugin('source', 'dup-test')).toBe(true);
    expect(findPlugin('source', 'dup-test')).toBeUndefined();
  });
});
