// libuv opens every file with O_CLOEXEC, so no fd leaks into the programs we run.
// Files that are replaced whole are written to a temporary name in the same
// directory and renamed over the old one, so a reader (or a crash) never sees
// half a file.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync, constants } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Temporary files start with this, so directory walkers can skip them. */
export const TMP_PREFIX = '.nhi-tmp-';

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
  const tmp = join(dirname(path), `${TMP_PREFIX}${basename(path)}.${process.pid}`);
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
