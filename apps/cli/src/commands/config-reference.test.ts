import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { findPlugin, type SourceFactory } from '@dictlearn/core';
import '@dictlearn/buffer/register';
import '@dictlearn/source-model/register';
import { describe, expect, it } from 'vitest';
import { CONFIG_REFERENCE_PATH, configReference } from './config-reference.js';
import { RUN_FIELDS, resolveConfig, SOURCE_OPTIONS, TRAINER_FIELDS } from './train-config.js';

const path = fileURLToPath(new URL(`../../../../${CONFIG_REFERENCE_PATH}`, import.meta.url));

describe('the config file reference', () => {
  it(`${CONFIG_REFERENCE_PATH} is what the generator prints`, () => {
    if (process.env.DICTLEARN_WRITE_REFERENCE) writeFileSync(path, configReference());
    const checkedIn = readFileSync(path, 'utf8');
    expect(
      checkedIn === configReference(),
      `${CONFIG_REFERENCE_PATH} is stale; regenerate it with: DICTLEARN_WRITE_REFERENCE=1 pnpm vitest run apps/cli/src/commands/config-reference.test.ts`,
    ).toBe(true);
  });

  it('lists every run and trainer key validation accepts, and validation refuses any other', () => {
    for (const f of RUN_FIELDS) expect(configReference()).toContain(`| \`${f.key}\` |`);
    // A key the tables do not list is refused: validation reads the same tables.
    expect(() => resolveConfig({ trainers: [{ architecture: 'standard' }], sparsity: 1 } as never)).toThrow(
      /unknown field 'sparsity'/,
    );
    expect(() => resolveConfig({ trainers: [{ architecture: 'standard', l1: 0.1 } as never] })).toThrow(
      /unknown field 'trainers\[0\]\.l1'/,
    );
    for (const f of TRAINER_FIELDS) expect(configReference()).toContain(`| \`${f.key}\` |`);
  });

  // The sources validate their own options; their refusal of an unknown option lists the ones they
  // know, which must be the reference's.
  for (const [type, options] of Object.entries(SOURCE_OPTIONS)) {
    it(`source '${type}': the reference lists exactly the options its factory accepts`, async () => {
      const factory = findPlugin<SourceFactory>('source', type);
      expect(factory, `no source '${type}' registered`).toBeDefined();
      const error = await Promise.resolve()
        .then(() => factory!.create({ notAnOption: 1 }))
        .then(
          () => undefined,
          (e: Error) => e.message,
        );
      const known = /expected one of (.*)$/.exec(error ?? '')?.[1];
      expect(known, `source '${type}' accepted an unknown option (${error})`).toBeDefined();
      const accepted = [...known!.matchAll(/'([^']+)'/g)].map((m) => m[1]).sort();
      expect(options.map((o) => o.key).sort()).toEqual(accepted);
    });
  }
});
