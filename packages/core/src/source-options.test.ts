import { describe, expect, it } from 'vitest';
import { parseSourceOptions, type SourceOptionKind } from './source-options.js';

const FIELDS: Record<string, SourceOptionKind> = {
  n: 'number',
  i: 'integer',
  c: 'count',
  b: 'boolean',
  s: 'string',
  name: 'non-empty string',
  files: 'paths',
  hooks: 'strings',
  format: { oneOf: ['text', 'jsonl'] },
  start: { object: 'a saved position object' },
};
const parse = (o: Record<string, unknown>, required: string[] = []) =>
  parseSourceOptions('demo', o, FIELDS, required);

describe('parseSourceOptions', () => {
  it('converts each kind from config values and numeric strings', () => {
    expect(
      parse({
        n: '0.5',
        i: 3,
        c: 'Infinity',
        b: 'false',
        s: '',
        name: 'x',
        files: 'a.npy, b.npy',
        hooks: ['h1'],
        format: 'jsonl',
        start: { context: 4 },
      }),
    ).toEqual({
      n: 0.5,
      i: 3,
      c: Number.POSITIVE_INFINITY,
      b: false,
      s: '',
      name: 'x',
      files: ['a.npy', 'b.npy'],
      hooks: ['h1'],
      format: 'jsonl',
      start: { context: 4 },
    });
    expect(parse({ n: undefined })).toEqual({});
  });

  it.each([
    [{ i: 2.5 }, "option 'i' must be an integer, got 2.5"],
    [{ i: 'Infinity' }, 'option \'i\' must be an integer, got "Infinity"'],
    [{ n: '' }, 'option \'n\' must be a number, got ""'],
    [{ b: 1 }, "option 'b' must be true or false, got 1"],
    [{ s: 5 }, "option 's' must be a string, got 5"],
    [{ name: '' }, 'option \'name\' must be a non-empty string, got ""'],
    [{ files: 'a.npy,,b.npy' }, 'option \'files\' must be a path or a list of paths, got "a.npy,,b.npy"'],
    [{ hooks: [] }, "option 'hooks' must be a string or a list of strings, got []"],
    [{ format: 'csv' }, "option 'format' must be 'text' or 'jsonl', got \"csv\""],
    [{ start: [1] }, "option 'start' must be a saved position object, got [1]"],
    [{ hoks: 'h' }, "unknown option 'hoks' (did you mean 'hooks'?)"],
  ])('refuses %j naming the option', (options, message) => {
    expect(() => parse(options)).toThrow(`source 'demo': ${message}`);
  });

  it('refuses a missing required option and options that are not an object', () => {
    expect(() => parse({ n: 1 }, ['files'])).toThrow("source 'demo': option 'files' is required");
    expect(() => parseSourceOptions('demo', [] as unknown as Record<string, unknown>, FIELDS)).toThrow(
      'options must be an object, got []',
    );
  });
});
