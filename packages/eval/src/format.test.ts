import { DictlearnError } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import type { EvalMetrics } from './evaluate.js';
import { formatMetrics } from './format.js';

const metrics: EvalMetrics = {
  l2_loss: 1.154152234,
  l1_loss: 1.766071916,
  l0: 5.25,
  frac_variance_explained: 0.675667002,
  cossim: 0.859850427,
  l2_ratio: 0.580501258,
  relative_reconstruction_bias: 1.156144112,
  frac_alive: 0.875,
  batches: 3,
  tokens: 84,
};

describe('formatMetrics', () => {
  it('prints one metric per line, names left-aligned, values right-aligned, counts as integers', () => {
    expect(formatMetrics(metrics)).toBe(
      [
        'metric                         value',
        '----------------------------  ------',
        'l2_loss                       1.1542',
        'l1_loss                       1.7661',
        'l0                            5.2500',
        'frac_variance_explained       0.6757',
        'cossim                        0.8599',
        'l2_ratio                      0.5805',
        'relative_reconstruction_bias  1.1561',
        'frac_alive                    0.8750',
        'batches                            3',
        'tokens                            84',
      ].join('\n'),
    );
  });

  it('puts several dictionaries side by side; missing values print as -, NaN as NaN', () => {
    const text = formatMetrics(
      [
        { label: 'standard', metrics: { l0: 12.5, cossim: Number.NaN, tokens: 4096 } },
        { label: 'topk k=32', metrics: { l0: 32, tokens: 4096, mmcs: 0.00001234, big: 123456789012 } },
      ],
      { digits: 2 },
    );
    expect(text).toBe(
      [
        'metric  standard     topk k=32',
        '------  --------  ------------',
        'l0         12.50         32.00',
        'cossim       NaN             -',
        'tokens      4096          4096',
        'mmcs           -        1.2e-5',
        'big            -  123456789012',
      ].join('\n'),
    );
  });

  it('skips entries that are not numbers (maxCos arrays)', () => {
    const text = formatMetrics({ mmcs: 0.5, maxCos: new Float32Array([0.5]), recovered: 2 });
    expect(text.split('\n').map((l) => l.split(/\s+/)[0])).toEqual([
      'metric',
      '---------',
      'mmcs',
      'recovered',
    ]);
    expect(formatMetrics({ x: Number.POSITIVE_INFINITY, y: 1e-9 })).toMatch(/x\s+Inf\ny\s+1\.000e-9$/);
  });

  it('rejects bad arguments', () => {
    expect(() => formatMetrics(null as unknown as EvalMetrics)).toThrow(DictlearnError);
    expect(() => formatMetrics(null as unknown as EvalMetrics)).toThrow(
      /formatMetrics: expected a metrics object or an array of \{ label, metrics \}, got null/,
    );
    expect(() => formatMetrics([])).toThrow(/formatMetrics: no columns to format/);
    expect(() => formatMetrics([{ label: 3 } as never])).toThrow(
      /column 0 must be \{ label: string, metrics: object \}/,
    );
    expect(() => formatMetrics(metrics, { digits: -1 })).toThrow(
      /options\.digits must be an integer in \[0, 20\]/,
    );
  });
});
