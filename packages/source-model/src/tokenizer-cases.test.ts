import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FIXTURES } from './fixtures.js';
import { loadTokenizer } from './tokenizer.js';

// fixtures/tokenizer-cases.json: Python `tokenizers`' ids for a few texts (non-ASCII, whitespace
// runs, the special token inside text) under each model's tokenizer.json, from
// fixtures/make-tokenizer-cases.py. model.browser.test.ts checks the same list in Chromium, so Node
// and the browser tokenise alike.
const cases = JSON.parse(readFileSync(`${FIXTURES}tokenizer-cases.json`, 'utf8')) as Record<
  string,
  { text: string; ids: number[] }[]
>;

describe.each(Object.keys(cases))('%s tokenizer in Node', (name) => {
  it("gives Python tokenizers' ids for every case", async () => {
    const tokenizer = await loadTokenizer(`${FIXTURES}${name}/tokenizer.json`);
    expect(cases[name].length).toBeGreaterThan(5);
    for (const c of cases[name]) expect(tokenizer.encode(c.text), JSON.stringify(c.text)).toEqual(c.ids);
  });
});
