// libuv opens every file with O_CLOEXEC, so no fd leaks into the programs we run.
// Files that are replaced whole are written to a temporary name in the same
// directory and renamed over the old one, so a reader (or a crash) never sees
// half a file.
import { closeSync, copyFileSync, fchmodSync, fsyncSync, lstatSync, openSync, readdirSync, renameSync, unlinkSync, writeSync, constants } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { crashPoint } from './testhooks.js';

/** Temporary files start with this, so directory walkers can skip them. */
export const TMP_PREFIX = '.nhi-tmp-';

/**
 * A temporary file's name: `<TMP_PREFIX><what>.<pid><suffix>`. The writer's
 * pid in the name lets a later process tell a temporary of a live writer from
 * one left by a writer that was killed (SIGKILL runs no cleanup).
 */
export function tmpName(dir: string, what: string, suffix = ''): string {
  return join(dir, `${TMP_PREFIX}${what}.${process.pid}${suffix}`);
}

/** A temporary older than this is stale whoever wrote it: writers keep one for milliseconds. */
const STALE_MS = 60_000;
const cleaned = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporaries in `dir` whose writer is dead (or that are older
 * than a minute), once per directory and process: a killed ADD's leftovers
 * go with the next call that writes there. A pid reused since only delays
 * the removal to a later call.
 */
export function removeStaleTemporaries(dir: string): void {
  if (cleaned.has(dir)) return;
  cleaned.add(dir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(TMP_PREFIX)) continue;
    const pid = Number(/\.(\d+)(?:\.[a-z]+)?$/.exec(n)?.[1]);
    const path = join(dir, n);
    try {
      const old = Date.now() - lstatSync(path).mtimeMs > STALE_MS;
      if (pid === process.pid || (!old && pid > 0 && alive(pid))) continue;
      unlinkSync(path);
    } catch {
      // gone already, or not ours to remove
    }
  }
}

export interface AtomicWriteOptions {
  /** The file's mode, set with fchmod: the umask does not change it (an executable must end up 0755). */
  mode?: number;
  /**
   * fsync before the rename, so the new content survives a power loss. It
   * costs a disk flush (over 100 ms on slow disks): only for files that are
   * not mere hints.
   */
  durable?: boolean;
}

/** The new content: bytes, or a copy of another file (the kernel copies it; a 100 MB executable never passes through this process). */
export type AtomicContent = string | Buffer | { copyOf: string };

const TMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Creates the temporary. O_EXCL (COPYFILE_EXCL is O_EXCL on the destination):
 * never through a link planted at the temporary name; the rename then
 * replaces a link at `path` itself, never its target.
 */
function createTemporary(tmp: string, data: AtomicContent, mode: number): number {
  if (typeof data === 'string' || Buffer.isBuffer(data)) return openSync(tmp, TMP_FLAGS, mode);
  copyFileSync(data.copyOf, tmp, constants.COPYFILE_EXCL);
  return openSync(tmp, constants.O_WRONLY | constants.O_NOFOLLOW);
}

/** Replaces `path` whole: a reader, or a crash, sees the old file or the new one, never half of one. */
export function writeFileAtomic(path: string, data: AtomicContent, { mode = 0o600, durable = false }: AtomicWriteOptions = {}): void {
  removeStaleTemporaries(dirname(path));
  const tmp = tmpName(dirname(path), basename(path));
  let fd: number | undefined;
  try {
    try {
      fd = createTemporary(tmp, data, mode);
    } catch (e) {
      // A leftover of a killed writer that had our pid: remove it, once.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      unlinkSync(tmp);
      fd = createTemporary(tmp, data, mode);
    }
    if (typeof data === 'string' || Buffer.isBuffer(data)) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
    }
    fchmodSync(fd, mode);
    if (durable) fsyncSync(fd);
    crashPoint(`write:${basename(dirname(path))}`);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or not ours: the first error is the one to report
    }
    throw e;
  }
}

/** Creates `path` only if it does not exist; false when it already does. */
export function createExclusive(path: string, data: string, mode = 0o600): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, data);
  } catch (e) {
    closeSync(fd);
    unlinkSync(path);
    throw e;
  }
  closeSync(fd);
  return true;
}
