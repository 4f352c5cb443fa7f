import '@dictlearn/arch-standard/register';
import '@dictlearn/arch-topk/register';
import '@dictlearn/arch-gated/register';
import '@dictlearn/arch-jumprelu/register';
import '@dictlearn/arch-lista/register';
import '@dictlearn/arch-blockdiag/register';
import '@dictlearn/backend-cpu/register';
import { SyntheticSource } from '@dictlearn/buffer';
import { createArchitecture, DictlearnError, useBackend } from '@dictlearn/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  architectureFields,
  architectureNames,
  expandSweep,
  MAX_SETTINGS,
  parseFieldValues,
} from './fields.js';
import { curvePoints, PLOTTED_METRICS, runSweep } from './run.js';

beforeAll(() => useBackend('cpu'));

const sizes = { dim: 8, dictSize: 16, meanActive: 2 };

describe('architecture fields from the plugins', () => {
  it('lists every registered architecture', () => {
    expect(architectureNames()).toEqual(
      expect.arrayContaining([
        'standard',
        'april-update',
        'tied',
        'p-anneal',
        'topk',
        'batch-topk',
        'matryoshka-batch-topk',
        'gated',
        'gated-anneal',
        'jumprelu',
        'lista',
        'blockdiag',
      ]),
    );
  });

  it("takes keys and defaults from the plugin's resolved config", () => {
    const f = architectureFields('jumprelu', sizes);
    const defaults = createArchitecture('jumprelu', {}).config as Record<string, unknown>;
    expect(Object.fromEntries(f.map((x) => [x.key, x.value]))).toEqual(defaults);
    expect(f.every((x) => !x.required)).toBe(true);
    expect(f.find((x) => x.key === 'targetL0')).toEqual({
      key: 'targetL0',
      kind: 'number',
      value: 20,
      required: false,
    });
  });

  it('fills fields the plugin requires with a suggestion and marks them', () => {
    const topk = architectureFields('topk', sizes);
    expect(topk.find((x) => x.key === 'k')).toEqual({ key: 'k', kind: 'number', value: 2, required: true });
    expect(topk.find((x) => x.key === 'auxK')).toMatchObject({ value: 0, required: false });
    const m = architectureFields('matryoshka-batch-topk', sizes);
    expect(m.find((x) => x.key === 'groups')).toEqual({
      key: 'groups',
      kind: 'json',
      value: [4, 4, 8],
      required: true,
    });
    const b = architectureFields('blockdiag', sizes);
    expect(b.find((x) => x.key === 'inner')).toMatchObject({ value: 'standard', required: true });
    // The largest of 4, 2, 1 heads dividing both d = 8 and F = 16.
    expect(b.find((x) => x.key === 'heads')).toMatchObject({ kind: 'number', value: 4, required: true });
    expect(
      architectureFields('blockdiag', { ...sizes, dim: 6 }).find((x) => x.key === 'heads'),
    ).toMatchObject({
      value: 2,
    });
  });

  it('every architecture trains from the fields the form starts with', { timeout: 60_000 }, async () => {
    const data = new SyntheticSource({ dim: sizes.dim, numFeatures: 12, meanActive: 2, seed: 3 });
    const settings = architectureNames().map((architecture) => ({
      label: architecture,
      architecture,
      config: Object.fromEntries(architectureFields(architecture, sizes).map((f) => [f.key, f.value])),
      dictSize: sizes.dictSize,
      trainer: { lr: 1e-3, warmupSteps: 1, sparsityWarmupSteps: 1 },
    }));
    const seen: string[] = [];
    const r = await runSweep({
      data,
      settings,
      steps: 4,
      batchSize: 32,
      logEvery: 2,
      deadWindow: 2,
      backend: 'cpu',
      onLog: (points) => seen.push(...points.map((p) => `${p.trainer}@${p.step}:${p.metric}`)),
    });
    try {
      expect(r.steps).toBe(4);
      expect(r.dictionaries).toHaveLength(settings.length);
      // Every architecture logs every plotted metric at steps 2 and 4.
      for (const s of settings) {
        for (const step of [2, 4]) {
          for (const m of PLOTTED_METRICS) expect(seen).toContain(`${s.label}@${step}:${m}`);
        }
      }
    } finally {
      for (const d of r.dictionaries) d.dispose();
    }
  });
});

describe('sweeps from the form', () => {
  it('parses comma-separated values by kind, and JSON as one value', () => {
    expect(parseFieldValues('l1Penalty', 'number', '0.05, 0.3')).toEqual([0.05, 0.3]);
    expect(parseFieldValues('tied', 'boolean', 'true,false')).toEqual([true, false]);
    expect(parseFieldValues('variant', 'string', 'ista')).toEqual(['ista']);
    expect(parseFieldValues('groups', 'json', '[4, 4, 8]')).toEqual([[4, 4, 8]]);
    expect(() => parseFieldValues('k', 'number', '4, x')).toThrow(/^field 'k': 'x' is not a finite number/);
    expect(() => parseFieldValues('k', 'number', ' ')).toThrow(DictlearnError);
    expect(() => parseFieldValues('groups', 'json', '[4,')).toThrow(/^field 'groups': '\[4,' is not JSON/);
  });

  it('expands every combination, labelled by the swept keys', () => {
    const points = expandSweep(
      [
        { key: 'k', values: [2, 4] },
        { key: 'auxK', values: [0] },
        { key: 'lr', values: [0.1, 0.2] },
      ],
      'topk',
    );
    expect(points.map((p) => p.label)).toEqual(['k=2 lr=0.1', 'k=2 lr=0.2', 'k=4 lr=0.1', 'k=4 lr=0.2']);
    expect(points[1].values).toEqual({ k: 2, auxK: 0, lr: 0.2 });
    expect(expandSweep([{ key: 'k', values: [2] }], 'topk').map((p) => p.label)).toEqual(['topk']);
    expect(() => expandSweep([{ key: 'k', values: [...Array(MAX_SETTINGS + 1).keys()] }], 'topk')).toThrow(
      /k \(9\) makes 9 settings; at most 8/,
    );
  });
});

describe('curve points', () => {
  it('maps trainer logs to the plotted metrics, dead = silent for the window or longer', () => {
    const points = curvePoints(
      'a',
      10,
      { loss: 1.5, mse_loss: 1, l0: 3, frac_variance_explained: 0.25, lr: 1e-3 },
      Int32Array.from([0, 4, 5, 9]),
      5,
    );
    expect(points).toEqual([
      { trainer: 'a', step: 10, metric: 'loss', value: 1.5 },
      { trainer: 'a', step: 10, metric: 'mse_loss', value: 1 },
      { trainer: 'a', step: 10, metric: 'l0', value: 3 },
      { trainer: 'a', step: 10, metric: 'frac_variance_explained', value: 0.25 },
      { trainer: 'a', step: 10, metric: 'dead_fraction', value: 0.5 },
    ]);
    // An architecture without an MSE log has no MSE points (rather than zeros).
    expect(
      curvePoints('a', 1, { loss: 1, l0: 0, frac_variance_explained: 0 }, Int32Array.from([0]), 1).map(
        (p) => p.metric,
      ),
    ).toEqual(['loss', 'l0', 'frac_variance_explained', 'dead_fraction']);
  });
});
