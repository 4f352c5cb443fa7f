/**
 * File-system helpers (Node only). The `node:` modules are loaded lazily, inside the functions,
 * so importing this module (and `@dictlearn/core`) stays safe in browsers; calling these
 * functions outside Node rejects with a clear error.
 */
import { DictlearnError } from '../errors.js';

type FsPromises = typeof import('node:fs/promises');

let fsPromise: Promise<FsPromises> | undefined;

/** `node:fs/promises`, imported on first use; a clear error where there is no file system. */
export async function nodeFs(op: string): Promise<FsPromises> {
  fsPromise ??= import('node:fs/promises').catch((e: unknown) => {
    fsPromise = undefined;
    throw new DictlearnError(
      op,
      `file access needs Node.js (node:fs/promises could not be loaded: ${e instanceof Error ? e.message : String(e)})`,
    );
  });
  return fsPromise;
}

function randomSuffix(): string {
  const bytes = new Uint8Array(6);
  const c = (globalThis as { crypto?: { getRandomValues(a: Uint8Array): Uint8Array } }).crypto;
  if (c) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function dirOf(path: string): string {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  if (i < 0) return '.';
  return i === 0 ? path.slice(0, 1) : path.slice(0, i);
}

/**
 * Writes `data` to `path` atomically: the bytes go to `path.tmp-<pid>-<random>` in the same
 * directory, which is flushed to disk (fsync) and then renamed over `path`, and the directory
 * is flushed too where the platform allows it. Readers see either the old file or the whole
 * new one, never a half-written file under the final name; on failure the temporary file is
 * removed and the error is rethrown as a {@link DictlearnError} naming `path`.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const fs = await nodeFs(path);
  const pid = typeof process !== 'undefined' ? process.pid : 0;
  const tmp = `${path}.tmp-${pid}-${randomSuffix()}`;
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  let handle: Awaited<ReturnType<FsPromises['open']>> | undefined;
  try {
    handle = await fs.open(tmp, 'wx');
    let written = 0;
    while (written < bytes.byteLength) {
      const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written);
      written += bytesWritten;
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.rename(tmp, path);
  } catch (e) {
    if (handle) await handle.close().catch(() => {});
    await fs.rm(tmp, { force: true }).catch(() => {});
    if (e instanceof DictlearnError) throw e;
    throw withCause(new DictlearnError(path, `could not write the file atomically: ${fsErrorText(e)}`), e);
  }
  // Make the rename itself durable. Some platforms (Windows) cannot open a directory: ignore.
  try {
    const dir = await fs.open(dirOf(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    // best effort
  }
}

/** Reads a whole file; a missing or unreadable file is a {@link DictlearnError} naming `path`. */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  const fs = await nodeFs(path);
  try {
    const buf = await fs.readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw new DictlearnError(path, `could not read the file: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Attaches the underlying error as `cause`, so callers can still read its errno `code`. */
export function withCause<E extends Error>(error: E, cause: unknown): E {
  (error as { cause?: unknown }).cause = cause;
  return error;
}

/** The errno code (`ENOSPC`, `ENOENT`...) of an error or of the first error in its `cause` chain. */
export function fsErrorCode(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; cur && depth < 8; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A file-system error as one readable phrase. A full disk (ENOSPC, or EDQUOT for a quota) is
 * said in words, since Node's own message for it ("ENOSPC: no space left on device, write")
 * reads like a crash.
 */
export function fsErrorText(e: unknown): string {
  const code = fsErrorCode(e);
  if (code === 'ENOSPC') return 'the disk is full (ENOSPC: no space left on the device)';
  if (code === 'EDQUOT') return 'the disk quota is exhausted (EDQUOT)';
  return e instanceof Error ? e.message : String(e);
}
