/**
 * File helpers (Node only). `node:fs` and `node:path` load lazily so that importing the package
 * stays safe where there is no file system; the byte-level readers and writers work anywhere.
 */
import { DictlearnError, ensureDir, readFileBytes, writeFileAtomic } from '@dictlearn/core';

type Fs = typeof import('node:fs/promises');
let fsPromise: Promise<Fs> | undefined;

async function fs(where: string): Promise<Fs> {
  fsPromise ??= import('node:fs/promises').catch((e: unknown) => {
    fsPromise = undefined;
    throw new DictlearnError(
      where,
      `file access needs Node.js (${e instanceof Error ? e.message : String(e)})`,
    );
  });
  return fsPromise;
}

/** What is at `path`: a file, a directory, or nothing. */
export async function pathKind(path: string): Promise<'file' | 'dir' | 'none'> {
  try {
    const s = await (await fs(path)).stat(path);
    return s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'none';
  } catch {
    return 'none';
  }
}

/** Names in a directory (sorted); a clear error naming it when it cannot be read. */
export async function listDirectory(path: string): Promise<string[]> {
  try {
    return (await (await fs(path)).readdir(path)).sort();
  } catch (e) {
    throw new DictlearnError(
      path,
      `could not list the directory: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

/** `a/b` joined with one slash. */
export function join(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

/** The folder part of a path (`.` for a bare name). */
export function dirname(path: string): string {
  const i = path.replace(/\/+$/, '').lastIndexOf('/');
  return i < 0 ? '.' : i === 0 ? '/' : path.slice(0, i);
}

/** The last segment of a path. */
export function basename(path: string): string {
  const s = path.replace(/\/+$/, '');
  return s.slice(s.lastIndexOf('/') + 1);
}

/** Reads and parses a JSON file; errors name the file. */
export async function readJson(path: string): Promise<unknown> {
  const bytes = await readFileBytes(path);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new DictlearnError(path, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** Writes `value` as JSON, atomically, creating the folder. */
export async function writeJson(path: string, value: unknown, indent?: number): Promise<void> {
  await ensureDir(dirname(path));
  await writeFileAtomic(path, `${JSON.stringify(value, null, indent)}${indent ? '\n' : ''}`);
}

export { ensureDir, readFileBytes, writeFileAtomic };
