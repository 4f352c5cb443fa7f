import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureDir } from './dirs.js';

describe('ensureDir', () => {
  it('creates missing parents one level at a time and accepts an existing directory', async () => {
    const base = await mkdtemp(join(tmpdir(), 'dl-dirs-'));
    const deep = join(base, 'a', 'b', 'c');
    await ensureDir(deep);
    expect((await stat(deep)).isDirectory()).toBe(true);
    await ensureDir(deep);
    await ensureDir(`${deep}/`);
    await rm(base, { recursive: true, force: true });
  });

  it('refuses a path through a file, naming it', async () => {
    const base = await mkdtemp(join(tmpdir(), 'dl-dirs-'));
    await writeFile(join(base, 'f'), 'x');
    await expect(ensureDir(join(base, 'f', 'sub'))).rejects.toThrow(
      `${join(base, 'f')} is a file, not a directory`,
    );
    await rm(base, { recursive: true, force: true });
  });

  // Node's mkdir({ recursive: true }) never returns for such a path (mkdir answers ENOENT under
  // an existing parent); this must fail at once with the level named.
  it.skipIf(process.platform !== 'linux')(
    'fails at once under /proc, naming the level and the virtual file system',
    async () => {
      const started = Date.now();
      await expect(ensureDir('/proc/dictlearn-test/run')).rejects.toThrow(
        /could not create the directory \/proc\/dictlearn-test: .*\(\/proc is a virtual file system\)/,
      );
      expect(Date.now() - started).toBeLessThan(5000);
    },
    10_000,
  );
});
