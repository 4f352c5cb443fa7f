// The README's command table is checked against the command list, so it cannot drift.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from './main.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
/** The command named by each row of the README's table (`| \`dictlearn NAME ...\` | ... |`). */
const rows = [...readme.matchAll(/^\| `dictlearn ([a-z-]+)[^`]*` \|/gm)].map((m) => m[1]);

describe('apps/cli/README.md', () => {
  it('has a row for every command of COMMANDS', () => {
    const missing = Object.keys(COMMANDS).filter((c) => !rows.includes(c));
    expect(missing, `commands missing from the README's table: ${missing.join(', ')}`).toEqual([]);
  });

  it('names no command that does not exist', () => {
    const unknown = rows.filter((c) => !Object.hasOwn(COMMANDS, c));
    expect(unknown, `README rows for unknown commands: ${unknown.join(', ')}`).toEqual([]);
  });

  it('links only to files inside the repository', () => {
    for (const [, target] of readme.matchAll(/\]\(([^)]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue;
      expect(target.startsWith('../../../'), target).toBe(false);
      expect(target, target).not.toMatch(/shared\//);
    }
  });
});
