/**
 * Directory and text helpers for checkpoints and logs (Node only; `node:fs` is loaded lazily
 * through {@link nodeFs}, so importing this module stays safe in browsers).
 */
import { DictlearnError } from '../errors.js';
import { fsErrorText, nodeFs, readFileBytes, withCause, writeFileAtomic } from './fs.js';

/** Joins path segments with `/` (works for Node on every platform). */
export function joinPath(...parts: string[]): string {
  return parts
    .filter((p) => p.length > 0)
    .map((p, i) => (i === 0 ? p.replace(/\/+$/, '') : p.replace(/^\/+|\/+$/g, '')))
    .join('/');
}

/**
 * Creates a directory and its parents (no error when it exists). Directories are made one level
 * at a time rather than with `mkdir({ recursive: true })`, which loops forever where mkdir
 * answers ENOENT under an existing parent (as /proc does); each failure names the level.
 */
export async function ensureDir(dir: string): Promise<void> {
  const fs = await nodeFs(dir);
  const virtual = /^\/(proc|sys)(\/|$)/.exec(dir);
  const hint = virtual ? ` (/${virtual[1]} is a virtual file system)` : '';
  const absolute = dir.startsWith('/');
  let path = '';
  for (const part of dir.split('/').filter((p) => p.length > 0)) {
    path = path || absolute ? `${path}/${part}` : part;
    let isDir: boolean | undefined;
    try {
      isDir = (await fs.stat(path)).isDirectory();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw withCause(new DictlearnError(dir, `cannot reach ${path}: ${fsErrorText(e)}${hint}`), e);
      }
    }
    if (isDir === false) throw new DictlearnError(dir, `${path} is a file, not a directory`);
    if (isDir) continue;
    try {
      await fs.mkdir(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw withCause(
          new DictlearnError(dir, `could not create the directory ${path}: ${fsErrorText(e)}${hint}`),
          e,
        );
      }
    }
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

/** True when something (file, directory, link) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  const fs = await nodeFs(path);
  try {
    await fs.lstat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new DictlearnError(path, `could not check the path: ${fsErrorText(e)}`);
  }
}

/** Removes a file or a directory tree (nothing happens when it does not exist). */
export async function removePath(path: string): Promise<void> {
  const fs = await nodeFs(path);
  try {
    await fs.rm(path, { recursive: true, force: true });
  } catch (e) {
    throw new DictlearnError(path, `could not remove: ${fsErrorText(e)}`);
  }
}

/**
 * An append-only text file (a JSON-lines log) whose appends are all or nothing: each append is
 * one write of the whole text at the end of the file, and when a write fails part way (a full
 * disk) the file is cut back to its previous length, so it never ends in half a line.
 */
export class AppendFile {
  readonly #handle: import('node:fs/promises').FileHandle;
  #size: number;
  /** The file's path. */
  readonly path: string;
  private constructor(path: string, handle: import('node:fs/promises').FileHandle, size: number) {
    this.path = path;
    this.#handle = handle;
    this.#size = size;
  }

  /** Opens (creating it if missing) `path` for appending. */
  static async open(path: string): Promise<AppendFile> {
    const fs = await nodeFs(path);
    try {
      const handle = await fs.open(path, 'a');
      const { size } = await handle.stat();
      return new AppendFile(path, handle, size);
    } catch (e) {
      throw withCause(new DictlearnError(path, `could not open for appending: ${fsErrorText(e)}`), e);
    }
  }

  /** Appends `text` whole, or (on error) leaves the file as it was and throws naming the file. */
  async append(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    let written = 0;
    try {
      while (written < bytes.byteLength) {
        const r = await this.#handle.write(bytes, written, bytes.byteLength - written);
        written += r.bytesWritten;
      }
      this.#size += written;
    } catch (e) {
      // Undo a partial write; if even that fails the next start drops the partial last line.
      if (written > 0) await this.#handle.truncate(this.#size).catch(() => {});
      throw withCause(new DictlearnError(this.path, `could not append: ${fsErrorText(e)}`), e);
    }
  }

  /** Closes the file. */
  async close(): Promise<void> {
    await this.#handle.close().catch(() => {});
  }
}

/**
 * Rewrites a JSON-lines file keeping only the complete lines (ending in a newline, parsing as
 * JSON) for which `keep` is true, atomically (temp + rename); a file that needs no change is
 * left alone and a missing one stays missing. Returns how many lines were dropped.
 */
export async function filterJsonLines(path: string, keep: (value: unknown) => boolean): Promise<number> {
  if (!(await pathExists(path))) return 0;
  const text = await readTextFile(path);
  const lines = text.split('\n');
  // The text after the last newline is a line a killed or failed write left unfinished.
  const partial = lines.pop() ?? '';
  const kept: string[] = [];
  let dropped = partial.length > 0 ? 1 : 0;
  for (const line of lines) {
    let ok = false;
    try {
      ok = line.length > 0 && keep(JSON.parse(line));
    } catch {
      ok = false;
    }
    if (ok) kept.push(line);
    else dropped++;
  }
  if (dropped > 0) await writeFileAtomic(path, kept.map((l) => `${l}\n`).join(''));
  return dropped;
}

/** Who holds a directory lock (the JSON in `<dir>/.lock`). */
export interface LockHolder {
  /** Process id. */
  pid: number;
  /** Host name of the machine the process runs on. */
  hostname: string;
  /** When the holder took the lock (ISO 8601). */
  started: string;
}

/** A held directory lock; {@link DirLock.release} gives it back. */
export interface DirLock {
  /** The lock file, `<dir>/.lock`. */
  path: string;
  /** Who we are, as written in the lock file. */
  holder: LockHolder;
  /** Removes the lock file (only if it is still ours). */
  release(): Promise<void>;
}

/** What {@link acquireDirLock} found. */
export type LockResult =
  | { ok: true; lock: DirLock; tookOverFrom?: LockHolder }
  | { ok: false; holder: LockHolder | undefined; path: string };

/** Lock files this process holds (so a second holder in the same process is refused too). */
const heldLocks = new Set<string>();

/** The name of the lock file of a directory. */
export const LOCK_FILE = '.lock';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseHolder(text: string): LockHolder | undefined {
  try {
    const v = JSON.parse(text) as LockHolder;
    if (Number.isInteger(v.pid) && typeof v.hostname === 'string' && typeof v.started === 'string') return v;
  } catch {
    // unreadable: reported as an unknown holder
  }
  return undefined;
}

/**
 * Takes `<dir>/.lock` for this process: the file (pid, host name, start time) is written under a
 * temporary name and hard-linked into place, which fails when a lock exists, so two processes
 * can never both succeed and a reader never sees a half-written lock. A lock whose process no
 * longer runs on this host (killed) is taken over and reported in `tookOverFrom`; a live holder
 * (another process, or another run in this one) gives `{ ok: false, holder }`. The lock is
 * removed by `release()` and, should the process exit first (a second Ctrl-C), by an exit hook.
 */
export async function acquireDirLock(dir: string): Promise<LockResult> {
  const fs = await nodeFs(dir);
  const fsSync = await import('node:fs');
  const { hostname } = await import('node:os');
  const { resolve } = await import('node:path');
  const path = joinPath(dir, LOCK_FILE);
  // The same folder may be spelled differently by two runs of one process.
  const key = resolve(path);
  const holder: LockHolder = { pid: process.pid, hostname: hostname(), started: new Date().toISOString() };
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  let tookOverFrom: LockHolder | undefined;
  try {
    await fs.writeFile(tmp, `${JSON.stringify(holder)}\n`, { flag: 'wx' });
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.link(tmp, path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw e;
      }
      let text: string;
      try {
        text = await fs.readFile(path, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
        throw e;
      }
      const other = parseHolder(text);
      const stale =
        other !== undefined &&
        other.hostname === holder.hostname &&
        (other.pid === process.pid ? !heldLocks.has(key) : !isAlive(other.pid));
      if (!stale) return { ok: false, holder: other, path };
      // Move the stale lock aside and check it is still the one we judged (another process may
      // have taken it over meanwhile); then try again.
      const aside = `${path}.stale-${process.pid}-${Date.now()}`;
      try {
        await fs.rename(path, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      const moved = await fs.readFile(aside, 'utf8').catch(() => '');
      if (moved !== text) {
        await fs.link(aside, path).catch(() => {});
        await fs.rm(aside, { force: true });
        continue;
      }
      await fs.rm(aside, { force: true });
      tookOverFrom = other;
    }
  } catch (e) {
    throw withCause(new DictlearnError(path, `could not take the lock: ${fsErrorText(e)}`), e);
  } finally {
    await fs.rm(tmp, { force: true }).catch(() => {});
  }
  heldLocks.add(key);
  const mine = `${JSON.stringify(holder)}\n`;
  const removeIfMine = () => {
    try {
      if (fsSync.readFileSync(path, 'utf8') === mine) fsSync.unlinkSync(path);
    } catch {
      // already gone
    }
  };
  process.on('exit', removeIfMine);
  let released = false;
  const lock: DirLock = {
    path,
    holder,
    async release() {
      if (released) return;
      released = true;
      process.off('exit', removeIfMine);
      heldLocks.delete(key);
      removeIfMine();
    },
  };
  return { ok: true, lock, tookOverFrom };
}

/**
 * Removes what killed runs leave in an output folder: `*.tmp-<pid>-*` files and folders
 * (atomic writes and checkpoints that never reached their final name) and `*.old-<pid>-*`
 * folders (a checkpoint being replaced); an `.old-` one whose final name is missing is renamed
 * back instead, since it is then the only copy. Entries of processes still running (other than
 * this one) are left alone. Looks `depth` levels down; returns the paths it removed or restored.
 * Call it only while holding the folder's lock.
 */
export async function removeStaleTemporaries(dir: string, depth = 4): Promise<string[]> {
  const fs = await nodeFs(dir);
  const done: string[] = [];
  const walk = async (d: string, level: number): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = joinPath(d, e.name);
      const m = /^(.*)\.(tmp|old|stale)-(\d+)-[^/]*$/.exec(e.name);
      if (m) {
        const pid = Number(m[3]);
        if (pid !== process.pid && isAlive(pid)) continue;
        const target = joinPath(d, m[1]);
        try {
          if (m[2] === 'old' && !(await pathExists(target))) await fs.rename(full, target);
          else await fs.rm(full, { recursive: true, force: true });
          done.push(full);
        } catch (err) {
          throw new DictlearnError(full, `could not remove a stale temporary: ${fsErrorText(err)}`);
        }
      } else if (e.isDirectory() && level < depth) {
        await walk(full, level + 1);
      }
    }
  };
  await walk(dir, 1);
  return done;
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
      throw withCause(new DictlearnError(dir, `could not replace the directory: ${fsErrorText(e)}`), e);
    }
  }
  try {
    await fs.rename(tmp, dir);
  } catch (e) {
    if (movedOld) await fs.rename(old, dir).catch(() => {});
    throw withCause(
      new DictlearnError(dir, `could not move the new directory in place: ${fsErrorText(e)}`),
      e,
    );
  }
  if (movedOld) await fs.rm(old, { recursive: true, force: true });
}
