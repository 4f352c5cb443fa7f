import '@dictlearn/backend-cpu/register';
import { inflateSync } from 'node:zlib';
import { DictlearnError } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { encodePng, pngSize } from './png.js';
import { renderSvg } from './render.js';
import { curvePoints, frontierPoints, parseLog, parseReferencePoints, type RunData } from './run.js';
import { densityHistogram, frontierLines, trainingCurvesSpec } from './specs.js';
import { mostUsedFirst, parseImageShape, rowPixels } from './tiles.js';

const LOG = [
  { trainer: 'a', step: 10, tokens: 40, elapsed: 0.1, logs: { loss: 1.5, l0: 12, lr: 0.001 } },
  { trainer: 'b', step: 10, tokens: 40, elapsed: 0.1, logs: { loss: 2.5, l0: 20, lr: 0.002 } },
  {
    trainer: 'a',
    step: 20,
    tokens: 80,
    elapsed: 0.2,
    logs: { loss: 1.25, l0: 10, lr: 0.001, mse_loss: 0.5 },
  },
]
  .map((e) => JSON.stringify(e))
  .join('\n');

describe('log.jsonl', () => {
  it('a 3-row log gives the exact series, in log order', () => {
    const rows = parseLog(`${LOG}\n`, 'log.jsonl');
    expect(curvePoints(rows, ['loss', 'mse_loss'])).toEqual([
      { trainer: 'a', step: 10, metric: 'loss', value: 1.5 },
      { trainer: 'b', step: 10, metric: 'loss', value: 2.5 },
      { trainer: 'a', step: 20, metric: 'loss', value: 1.25 },
      { trainer: 'a', step: 20, metric: 'mse_loss', value: 0.5 },
    ]);
  });

  it('an empty log, a truncated line and a line that is no entry are errors naming the file', () => {
    expect(() => parseLog('\n', 'runs/x/log.jsonl')).toThrow(/runs\/x\/log.jsonl: holds no log entries/);
    expect(() => parseLog(`${LOG}\n{"trainer":"a","st`, 'runs/x/log.jsonl')).toThrow(
      /runs\/x\/log.jsonl: line 4 is not valid JSON \(the file ends mid-line: truncated\?\)/,
    );
    expect(() => parseLog('{"step": 3}\n', 'L')).toThrow(DictlearnError);
  });

  it('the curves plot draws one point per logged value (counted in the SVG vega renders)', async () => {
    const points = curvePoints(parseLog(LOG, 'log.jsonl'), ['loss', 'l0', 'lr', 'mse_loss']);
    const svg = await renderSvg(trainingCurvesSpec(points));
    const labels = [...svg.matchAll(/aria-label="([^"]*)"[^>]*aria-roledescription="point"/g)].map(
      (m) => m[1],
    );
    expect(labels.length).toBe(10); // 3 rows × (loss, l0, lr) + 1 mse_loss
    // vega's aria-label: x, y (under its axis title), colour, tooltip fields
    expect(labels.filter((l) => l.startsWith('step: 20; MSE: 0.5; trainer: a;'))).toHaveLength(1);
    expect(labels.filter((l) => l.startsWith('step: 10; L0: 20; trainer: b;'))).toHaveLength(1);
  });
});

describe('density histogram', () => {
  it('bins known frequencies exactly: dead bar, log10 bins of 0.25, dense from 0.1', () => {
    const h = densityHistogram([0, 0, 0.001, 0.002, 0.05, 0.1, 0.5, 1]);
    expect(h.dead).toBe(2);
    expect(h.dense).toBe(3);
    expect(h.total).toBe(8);
    // log10: −3, −2.699, −1.301, −1, −0.301, 0 → bins starting at −3, −2.75, −1.5, −1, −0.5, 0
    const nonEmpty = h.bins.filter((b) => b.count > 0);
    expect(nonEmpty).toEqual([
      { lo: -3.25, hi: -3, count: 2, kind: 'dead' },
      { lo: -3, hi: -2.75, count: 1, kind: 'alive' },
      { lo: -2.75, hi: -2.5, count: 1, kind: 'alive' },
      { lo: -1.5, hi: -1.25, count: 1, kind: 'alive' },
      { lo: -1, hi: -0.75, count: 1, kind: 'dense' },
      { lo: -0.5, hi: -0.25, count: 1, kind: 'dense' },
      { lo: 0, hi: 0.25, count: 1, kind: 'dense' },
    ]);
    expect(h.bins.length).toBe(14); // the dead bar + 13 bins from −3 to 0
    expect(h.bins.reduce((a, b) => a + b.count, 0)).toBe(8);
  });

  it('refuses a frequency outside [0, 1]', () => {
    expect(() => densityHistogram([0.5, 2])).toThrow(/density\[1\] is 2/);
  });
});

describe('frontier', () => {
  const run = (label: string, rows: [string, number, number][]): RunData => ({
    dir: label,
    label,
    run: {},
    log: rows.map(([trainer, l0]) => ({ trainer, step: 5, logs: { l0: l0 + 1, mse_loss: 0.1 } })),
    trainers: rows.map(([name, l0, fve]) => ({
      name,
      summary: { name, architecture: '', l0, fve, deadFraction: 0 },
    })),
  });

  it('joins each run’s points in L0 order; MSE points come from the last log line', () => {
    const points = frontierPoints([
      run('r', [
        ['x', 30, 0.9],
        ['y', 5, 0.6],
        ['z', 12, 0.8],
      ]),
    ]);
    expect(frontierLines(points, 'fve').map((p) => [p.label, p.l0])).toEqual([
      ['y', 5],
      ['z', 12],
      ['x', 30],
    ]);
    expect(frontierLines(points, 'mse').map((p) => [p.label, p.l0, p.mse])).toEqual([
      ['y', 6, 0.1],
      ['z', 13, 0.1],
      ['x', 31, 0.1],
    ]);
  });

  it('reads reference points and names the file and entry of a bad one', () => {
    expect(parseReferencePoints('[{"label":"DL topk","l0":40,"fve":0.958}]', 'ref.json')).toEqual([
      { label: 'DL topk', series: 'reference', l0: 40, fve: 0.958, reference: true },
    ]);
    expect(() => parseReferencePoints('{"pts": []}', 'ref.json')).toThrow(/ref.json: expected a JSON array/);
    expect(() => parseReferencePoints('[{"label":"a","l0":-1,"fve":1}]', 'ref.json')).toThrow(
      /ref.json: points\[0\] \("a"\) needs "l0", a positive number/,
    );
    expect(() => parseReferencePoints('{"points":[{"label":"a","l0":3}]}', 'ref.json')).toThrow(
      /needs "fve" or "mse"/,
    );
  });
});

describe('tiles and PNG', () => {
  it('a row becomes pixels scaled by its largest |value| (0 is mid-grey)', () => {
    expect([...rowPixels([0, 1, -1, 0.5], { height: 2, width: 2, channels: 1 })]).toEqual([128, 255, 0, 191]);
  });

  it('orders features most-used first, ties by id', () => {
    expect(mostUsedFirst(5, [0.1, 0.5, 0, 0.5, 0.2], 4)).toEqual([1, 3, 4, 0]);
    expect(mostUsedFirst(3, undefined, 10)).toEqual([0, 1, 2]);
  });

  it('checks --image-shape against d', () => {
    expect(parseImageShape('4,4,3', 48)).toEqual({ height: 4, width: 4, channels: 3 });
    expect(() => parseImageShape('8,8', 256)).toThrow(
      /--image-shape: 8,8 holds 64 values but the activations have d = 256/,
    );
    expect(() => parseImageShape('8x8')).toThrow(/expected H,W or H,W,C/);
  });

  it('encodes a PNG whose IHDR and pixels read back', () => {
    const px = Uint8Array.from([0, 50, 100, 150, 200, 250]);
    const png = encodePng(3, 2, 1, px);
    expect(pngSize(png)).toEqual({ width: 3, height: 2 });
    // IDAT starts after the signature (8) and IHDR (25 bytes): length, type, data.
    const len = png.readUInt32BE(33);
    const raw = inflateSync(png.subarray(41, 41 + len));
    expect([...raw]).toEqual([0, 0, 50, 100, 0, 150, 200, 250]);
  });
});
