import { DictlearnError } from '@dictlearn/core';
import { describe, expect, it } from 'vitest';
import { ContextPacker, type PackerOptions, START_POSITION } from './packing.js';

// A toy tokenizer: each letter is one token (a = 1, b = 2, …); 0 is BOS and the separator.
const encode = (text: string) => [...text].map((ch) => ch.charCodeAt(0) - 96);
const docs = ['abc', 'de', 'fghij', 'k'];
const options = (o: Partial<PackerOptions> = {}): PackerOptions => ({
  contextLength: 4,
  bos: 0,
  separator: 0,
  epochs: 1,
  shuffle: false,
  seed: 0,
  ...o,
});

describe('ContextPacker', () => {
  it('packs BOS + the stream doc SEP doc SEP … and drops the last partial context', () => {
    // stream: 1 2 3 0 4 5 0 6 7 8 9 10 0 11 0
    // contexts of 4: [0 | 1 2 3], then the separator after 'abc' directly follows the context's
    // BOS and is skipped: [0 | 4 5 0], [0 | 6 7 8], [0 | 9 10 0], [0 | 11 0 -] is partial.
    const p = new ContextPacker(docs, encode, options());
    const got = p.take(START_POSITION, 10);
    expect(got.map((c) => [...c.tokens])).toEqual([
      [0, 1, 2, 3],
      [0, 4, 5, 0],
      [0, 6, 7, 8],
      [0, 9, 10, 0],
    ]);
    expect(got.map((c) => c.end)).toEqual([
      { epoch: 0, document: 0, token: 3, contexts: 1, row: 0 },
      { epoch: 0, document: 2, token: 0, contexts: 2, row: 0 },
      { epoch: 0, document: 2, token: 3, contexts: 3, row: 0 },
      { epoch: 0, document: 3, token: 0, contexts: 4, row: 0 },
    ]);
    expect(got[1].start).toEqual(got[0].end);
  });

  it('continues from any saved position exactly as an uninterrupted run', () => {
    const p = new ContextPacker(docs, encode, options({ epochs: 3, contextLength: 3 }));
    const all = p.take(START_POSITION, 100);
    for (let k = 0; k < all.length; k++) {
      const rest = new ContextPacker(docs, encode, options({ epochs: 3, contextLength: 3 })).take(
        all[k].start,
        100,
      );
      expect(rest.map((c) => [...c.tokens])).toEqual(all.slice(k).map((c) => [...c.tokens]));
    }
  });

  it('without BOS packs plain stream tokens, across epochs', () => {
    const p = new ContextPacker(
      ['ab', 'c'],
      encode,
      options({ bos: undefined, separator: undefined, epochs: 3, contextLength: 2 }),
    );
    // stream over 3 epochs: 1 2 3 | 1 2 3 | 1 2 3
    expect(p.take(START_POSITION, 10).map((c) => [...c.tokens])).toEqual([
      [1, 2],
      [3, 1],
      [2, 3],
      [1, 2],
    ]);
  });

  it('refuses a position that does not fit the corpus', () => {
    const p = new ContextPacker(docs, encode, options());
    expect(() => p.check({ ...START_POSITION, document: 9 }, 'start')).toThrow(DictlearnError);
    expect(() => p.check({ ...START_POSITION, row: -1 }, 'start')).toThrow(/'row'/);
    expect(() => p.check({ ...START_POSITION, epoch: 1, document: 1 }, 'start')).toThrow(/epoch/);
  });

  it('ends on a corpus whose documents give no tokens, even with endless epochs', () => {
    const p = new ContextPacker(
      ['', ''],
      () => [],
      options({ separator: undefined, epochs: Number.POSITIVE_INFINITY }),
    );
    expect(p.take(START_POSITION, 3)).toEqual([]);
  });
});
