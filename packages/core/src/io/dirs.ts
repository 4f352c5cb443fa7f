/**
 * Directory and text helpers for checkpoints and logs (Node only; `node:fs` is loaded lazily
 * through {@link nodeFs}, so importing this module stays safe in browsers).
 */
import { DictlearnError } from '../errors.js';
import { nodeFs, readFileBytes } from './fs.js';

/** Joins path segments with `/` (works for Node on every platform). */
export function joinPath(...parts: string[]): string {
  return parts
    .filter((p) => p.length > 0)
    .map((p, i) => (i === 0 ? p.replace(/\/+$/, '') : p.replace(/^\/+|\/+$/g, '')))
    .join('/');
}

/** Creates a directory and its parents (no error when it exists). */
export async function ensureDir(dir: string): Promise<void> {
  const fs = await nodeFs(dir);
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new DictlearnError(dir, `could not create the directory: ${(e as Error).message}`);
  }
}

/** Names in a directory; an empty list when it does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  const fs = await nodeFs(dir);
  try {
    return await fs.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new DictlearnError(dir, `could not list the directory: ${(e as Error).message}`);
  }
}

/** Reads a UTF-8 text file; missing or unreadable files are errors naming the path. */
export async function readTextFile(path: string): Promise<string> {
  return new TextDecoder().decode(await readFileBytes(path));
}

/** Appends text to a file (created if missing). */
export async function appendText(path: string, text: string): Promise<void> {
  const fs = await nodeFs(path);
  await fs.appendFile(path, text, 'utf8');
}

/**
 * Moves a fully written temporary directory to its final name. An existing directory there is
 * first renamed aside and removed only after the new one is in place, so at every moment one
 * complete version exists.
 */
export async function replaceDir(tmp: string, dir: string): Promise<void> {
  const fs = await nodeFs(dir);
  const old = `${dir}.old-${process.pid}-${Date.now()}`;
  let movedOld = false;
  try {
    await fs.rename(dir, old);
    movedOld = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new DictlearnError(dir, `could not replace the directory: ${(e as Error).message}`);
    }
  }
  try {
    await fs.rename(tmp, dir);
  } catch (e) {
    if (movedOld) await fs.rename(old, dir).catch(() => {});
    throw new DictlearnError(dir, `could not move the new directory in place: ${(e as Error).message}`);
  }
  if (movedOld) await fs.rm(old, { recursive: true, force: true });
}
