import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../main.js';
import { captureOutput } from '../test-io.js';
import { ConfigError, readConfigFile, resolveConfig } from './train-config.js';

afterEach(() => {
  vi.restoreAllMocks();
});

const trainers = [{ architecture: 'standard' }];

async function configFile(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dl-config-'));
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('run config validation', () => {
  it('`source: npy` as a plain string means { type: npy }, never synthetic data', async () => {
    const yaml = await configFile(
      'run.yaml',
      'source: npy\ntrainers: [{ architecture: standard }]\nsteps: 5\n',
    );
    expect((await readConfigFile(yaml)).source).toEqual({ type: 'npy' });
    const io = captureOutput();
    // Without files the run is refused, naming what is missing (it used to train on synthetic data).
    expect(await main(['train', '--config', yaml])).toBe(2);
    expect(io.err.join('')).toContain('npy needs --data FILE');
    expect(io.out.join('')).toBe('');
    const json = await configFile(
      'run.json',
      '{"source": "safetensors", "trainers": [{"architecture": "standard"}]}',
    );
    expect((await readConfigFile(json)).source).toEqual({ type: 'safetensors' });
    expect(resolveConfig({ source: 'npy' as never, trainers }).source).toEqual({ type: 'npy' });
  });

  it('any source type may be written as a plain string', async () => {
    const yaml = await configFile('run.yaml', 'source: synthetic\ntrainers: [{ architecture: standard }]\n');
    expect((await readConfigFile(yaml)).source).toEqual({ type: 'synthetic' });
  });

  it.each([
    [{ source: 42, trainers }, "'source' must name a source (synthetic, npy, safetensors, model)"],
    [{ source: ['npy'], trainers }, "'source' must name a source"],
    [{ source: { files: ['a.npy'] }, trainers }, "'source' must name a source"],
    [{ source: '', trainers }, "'source' must name a source"],
    [{ trainers, backend: 5 }, "'backend' must be a non-empty string, got 5"],
    [{ trainers, resume: 'yes' }, '\'resume\' must be true or false, got "yes"'],
    [{ trainers, normalize: 1 }, "'normalize' must be true or false, got 1"],
    [{ trainers, batchSize: '4096' }, '\'batchSize\' must be an integer from 1 to 16777216, got "4096"'],
    [{ trainers, evalBatches: 2.5 }, "'evalBatches' must be an integer, got 2.5"],
    [{ trainers, logEvery: -1 }, "'logEvery' must be an integer from 0 to"],
    [{ trainers, steps: 1.5 }, "'steps' must be an integer from 1 to"],
    [{ trainers: [{ architecture: 'standard', lr: 'fast' }] }, "'trainers[0].lr' must be a number > 0"],
    [{ trainers: [{ architecture: '' }] }, "'trainers[0].architecture' must name an architecture"],
    [{ trainers: [{ architecture: 'standard', config: [0.1] }] }, "'trainers[0].config' must be an object"],
    [
      { trainers: [{ architecture: 'standard', hook: 'x' }] },
      "'trainers[0].hook' names a hook of a model source",
    ],
    [
      { trainers: [{ architecture: 'standard', learningRate: 1 }] },
      "unknown field 'trainers[0].learningRate' (did you mean 'lr'?)",
    ],
    [{ trainers, totalSteps: 10 }, "unknown field 'totalSteps' (did you mean 'steps'?)"],
  ])('refuses %j', (config, message) => {
    expect(() => resolveConfig(config as never)).toThrow(ConfigError);
    expect(() => resolveConfig(config as never)).toThrow(message);
  });

  it('unknown source options are refused by the source, naming the option', async () => {
    const yaml = await configFile(
      'run.yaml',
      'source: { type: synthetic, dims: 16 }\ntrainers: [{ architecture: standard }]\nsteps: 1\n',
    );
    const io = captureOutput();
    expect(await main(['train', '--config', yaml])).not.toBe(0);
    expect(io.err.join('')).toContain("unknown option 'dims' (did you mean 'dim'?)");
  });

  it('fills the defaults the reference states', () => {
    const c = resolveConfig({ trainers });
    expect(c).toMatchObject({
      source: { type: 'synthetic' },
      steps: 0,
      batchSize: 4096,
      backend: 'auto',
      logEvery: 100,
      saveSteps: [],
      resume: false,
      normalize: false,
      bufferRows: 0,
      evalBatches: 4,
    });
  });
});
