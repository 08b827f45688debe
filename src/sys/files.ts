// libuv opens every file with O_CLOEXEC, so no fd leaks into the programs we run.
// Files that are replaced whole are written to a temporary name in the same
// directory and renamed over the old one, so a reader (or a crash) never sees
// half a file.
import { closeSync, fsyncSync, lstatSync, openSync, readdirSync, renameSync, unlinkSync, writeSync, constants } from 'node:fs';
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
  mode?: number;
  /**
   * fsync before the rename, so the new content survives a power loss. It
   * costs a disk flush (over 100 ms on slow disks): only for files that are
   * not mere hints.
   */
  durable?: boolean;
}

export function writeFileAtomic(path: string, data: string | Buffer, { mode = 0o600, durable = false }: AtomicWriteOptions = {}): void {
  removeStaleTemporaries(dirname(path));
  const tmp = tmpName(dirname(path), basename(path));
  // O_EXCL: never through a link planted at the temporary name (the rename
  // then replaces a link at `path` itself, never its target). A leftover of
  // a killed writer with our pid is removed first.
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let fd: number;
  try {
    fd = openSync(tmp, flags, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    unlinkSync(tmp);
    fd = openSync(tmp, flags, mode);
  }
  try {
    if (typeof data === 'string') writeSync(fd, data);
    else writeSync(fd, data);
    if (durable) fsyncSync(fd);
    crashPoint(`write:${basename(dirname(path))}`);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
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
