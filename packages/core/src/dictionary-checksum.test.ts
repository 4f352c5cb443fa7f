// Dictionary.save records the SHA-256 of sae.safetensors in config.json; Dictionary.load
// verifies it and names the file on a mismatch; configs written before checksums existed load.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { factories, standard } from '@dictlearn/arch-standard';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerArchitecture } from './arch.js';
import { findBackend, registerBackend, useBackend } from './backend.js';
import { Dictionary, sha256Hex } from './dictionary.js';

let dir: string;
beforeAll(async () => {
  if (!findBackend('cpu')) registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
  for (const f of factories) registerArchitecture(f);
  dir = await mkdtemp(join(tmpdir(), 'dl-checksum-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function saved(name: string): Promise<string> {
  const arch = standard({ l1Penalty: 0.1 });
  const sizes = { activationDim: 4, dictSize: 6 };
  const d = new Dictionary(arch, arch.init(sizes, { seed: 3 }), sizes);
  const out = join(dir, name);
  await d.save(out);
  d.dispose();
  return out;
}

describe('the weights checksum', () => {
  it('sha256Hex is SHA-256 (the FIPS 180-2 test vector and node:crypto)', async () => {
    expect(await sha256Hex(new TextEncoder().encode('abc'))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37) & 255);
    expect(await sha256Hex(bytes)).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('save records it; load verifies it and names the file when the weights changed', async () => {
    const out = await saved('a');
    const weights = await readFile(join(out, 'sae.safetensors'));
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(config.sha256).toEqual({ 'sae.safetensors': createHash('sha256').update(weights).digest('hex') });
    (await Dictionary.load(out)).dispose();

    // One flipped bit in the last float: still a valid safetensors file, a different dictionary.
    const changed = Uint8Array.from(weights);
    changed[changed.length - 1] ^= 1;
    await writeFile(join(out, 'sae.safetensors'), changed);
    await expect(Dictionary.load(out)).rejects.toThrow(
      /a\/sae\.safetensors: SHA-256 is [0-9a-f]{64} but config\.json records [0-9a-f]{64}: the file was changed or corrupted after it was saved/,
    );
  });

  it('a config without a checksum (written before checksums existed) still loads', async () => {
    const out = await saved('b');
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    delete config.sha256;
    await writeFile(join(out, 'config.json'), JSON.stringify(config));
    (await Dictionary.load(out)).dispose();
  });

  it('a malformed checksum field is an error naming the field', async () => {
    const out = await saved('c');
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    config.sha256 = { 'sae.safetensors': 'not-hex' };
    await writeFile(join(out, 'config.json'), JSON.stringify(config));
    await expect(Dictionary.load(out)).rejects.toThrow(
      /config\.json: field 'sha256' must map file names to 64 hex digits/,
    );
  });
});
