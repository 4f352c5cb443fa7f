import { fileURLToPath } from 'node:url';
import { DictlearnError, findPlugin, registerPlugin, type SourceFactory } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { npySourceFactory, syntheticSourceFactory } from './factories.js';
import { NpySource, SafetensorsSource } from './files.js';
import { registeredSources } from './register.js';
import { SyntheticSource } from './synthetic.js';

const fx = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

async function errorOf(fn: () => unknown): Promise<DictlearnError> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DictlearnError);
    return e as DictlearnError;
  }
  throw new Error('expected an error');
}

const factory = (name: string) => findPlugin<SourceFactory>('source', name)!;

describe('registered source factories', () => {
  it('register synthetic, npy and safetensors by name; registering again is a no-op', () => {
    for (const name of ['synthetic', 'npy', 'safetensors']) {
      expect(factory(name)?.name).toBe(name);
      expect(factory(name).description.length).toBeGreaterThan(20);
    }
    expect(registeredSources.synthetic).toBe(syntheticSourceFactory);
    expect(registerPlugin('source', 'npy', npySourceFactory)).toBe(npySourceFactory);
  });

  it('synthetic: builds the source from plain options, numbers given as strings too', async () => {
    const s = await factory('synthetic').create({ dim: '16', numFeatures: 32, meanActive: '2.5', seed: 3 });
    expect(s).toBeInstanceOf(SyntheticSource);
    expect(s.dim).toBe(16);
    expect((s as SyntheticSource).meanActive).toBe(2.5);
    expect((s as SyntheticSource).sampleHost(0, 2)).toEqual(
      new SyntheticSource({ dim: 16, numFeatures: 32, meanActive: 2.5, seed: 3 }).sampleHost(0, 2),
    );
  });

  it('npy and safetensors: open the files', async () => {
    const npy = await factory('npy').create({ files: `${fx('f32.npy')},${fx('v2.npy')}`, epochs: '2' });
    expect(npy).toBeInstanceOf(NpySource);
    expect((npy as NpySource).rows).toBe(7);
    expect((npy as NpySource).epochs).toBe(2);
    const st = await factory('safetensors').create({ files: [fx('multi.safetensors')], key: 'resid' });
    expect(st).toBeInstanceOf(SafetensorsSource);
    expect(st.dim).toBe(4);
    const forever = await factory('npy').create({ files: fx('f32.npy'), epochs: 'Infinity' });
    expect((forever as NpySource).epochs).toBe(Number.POSITIVE_INFINITY);
  });

  it('refuse bad options, naming the field', async () => {
    expect((await errorOf(() => factory('synthetic').create({ dimm: 3 }))).message).toBe(
      "source 'synthetic': unknown option 'dimm' (did you mean 'dim'?); expected one of 'dim', 'numFeatures', 'meanActive', 'decay', 'noise', 'correlation', 'correlationRank', 'coefficients', 'seed', 'threads'",
    );
    expect((await errorOf(() => factory('synthetic').create({ dim: 'wide' }))).message).toBe(
      "source 'synthetic': option 'dim' must be an integer, got \"wide\"",
    );
    expect((await errorOf(() => factory('synthetic').create({ noise: true }))).message).toBe(
      "source 'synthetic': option 'noise' must be a number, got true",
    );
    expect((await errorOf(() => factory('synthetic').create({ decay: 2 }))).message).toBe(
      "SyntheticSource: option 'decay' must be a number in (0, 1], got 2",
    );
    expect((await errorOf(() => factory('npy').create({}))).message).toBe(
      "source 'npy': option 'files' is required",
    );
    expect((await errorOf(() => factory('npy').create({ files: [3] }))).message).toBe(
      "source 'npy': option 'files' must be a path or a list of paths, got [3]",
    );
    expect(
      (await errorOf(() => factory('safetensors').create({ files: fx('acts.safetensors'), key: 5 }))).message,
    ).toBe("source 'safetensors': option 'key' must be a string, got 5");
    expect(
      (await errorOf(() => factory('npy').create(null as unknown as Record<string, unknown>))).message,
    ).toBe("source 'npy': options must be an object, got null");
  });
});
