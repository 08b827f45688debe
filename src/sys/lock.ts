// An exclusive flock(2) on a file, the same lock the reference host-local takes
// on <dataDir>/<network>/lock, so that it and nhi-ipam can share one directory.
// Node has no flock in core; Node 26's node:ffi calls libc's directly, which
// costs no extra process (flock(1) would cost one per ADD). The lock belongs to
// the open file, so it is released when the fd is closed or the process dies.
import { closeSync, constants, fstatSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { CniError, Code } from '../cni/errors.js';
import { errnoReader, ffiModule } from './ffi.js';
import { sleepMs } from './sleep.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EINTR = 4;
const EWOULDBLOCK = 11;

interface Libc {
  flock(fd: number, op: number): number;
  errno(): number;
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  const { functions } = ffiModule().dlopen('libc.so.6', {
    flock: { arguments: ['int32', 'int32'], return: 'int32' },
  }) as unknown as { functions: { flock(fd: number, op: number): number } };
  libc = { flock: (fd, op) => functions.flock(fd, op), errno: errnoReader() };
  return libc;
}


export interface HeldLock {
  release(): void;
}

/** A lock that may also remove its file (an attachment's lock, once the attachment is gone). */
export interface RemovableLock extends HeldLock {
  /** Unlinks the lock file while still holding it, then releases. */
  releaseAndRemove(): void;
}

const busy = (path: string, timeoutMs: number) =>
  new CniError(Code.TryAgainLater, `timed out after ${timeoutMs} ms waiting for the lock ${path}`, 'another plugin holds it; try again');

function openLock(path: string): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw new CniError(Code.SystemFailure, `cannot open lock file ${path}`, (e as Error).message);
  }
}

/** One non-blocking try: true when locked; throws on an error that waiting cannot cure. */
function tryLock(c: Libc, fd: number, path: string): boolean {
  if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const errno = c.errno();
  if (errno !== EWOULDBLOCK && errno !== EINTR) {
    closeSync(fd);
    throw new CniError(Code.SystemFailure, `cannot lock ${path}`, `flock failed with errno ${errno}`);
  }
  return false;
}

/** The lock on `fd`, released once (later calls do nothing), optionally removing its file first. */
function held(c: Libc, fd: number, path: string): RemovableLock {
  let locked = true;
  const release = () => {
    if (!locked) return;
    locked = false;
    c.flock(fd, LOCK_UN);
    closeSync(fd);
  };
  return {
    release,
    releaseAndRemove() {
      if (!locked) return;
      try {
        unlinkSync(path);
      } catch {
        // gone already
      }
      release();
    },
  };
}

/** Is the locked fd still the file at `path`? A holder may have removed it (releaseAndRemove) while we waited. */
function stillLinked(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/**
 * lockFile for code that can wait without blocking the process: the waits
 * are timers, so promises already started (an nft run, a child's output) go
 * on meanwhile, and a signal or a timer is served. Same bound and code 11.
 * The file may be removed by its holder (releaseAndRemove): a waiter that
 * then gets the lock of the removed file notices and locks the new one, so
 * two processes never both believe they hold it.
 */
export async function lockFileAsync(path: string, timeoutMs = 10_000): Promise<RemovableLock> {
  const c = loadLibc();
  const deadline = Date.now() + timeoutMs;
  let pause = 1;
  for (;;) {
    const fd = openLock(path);
    let locked = tryLock(c, fd, path);
    while (!locked) {
      if (Date.now() >= deadline) {
        closeSync(fd);
        throw busy(path, timeoutMs);
      }
      await new Promise((r) => setTimeout(r, pause + Math.random() * pause));
      pause = Math.min(pause * 2, 20);
      locked = tryLock(c, fd, path);
    }
    if (!stillLinked(fd, path)) {
      c.flock(fd, LOCK_UN);
      closeSync(fd);
      continue;
    }
    return held(c, fd, path);
  }
}

/**
 * Takes an exclusive lock on `path` (created if missing), waiting at most
 * `timeoutMs`; a lock still busy then is a transient failure (code 11).
 * Synchronous: only for the IPAM lock, whose holders do nothing but a few
 * file operations (well under a millisecond) and whose callers (ipamAdd and
 * friends, shared with the nhi-ipam plugin and the CLI) are synchronous; the
 * process has no other work in flight while it waits.
 */
export function lockFile(path: string, timeoutMs = 10_000): HeldLock {
  const c = loadLibc();
  const fd = openLock(path);
  const deadline = Date.now() + timeoutMs;
  let pause = 1;
  for (;;) {
    if (tryLock(c, fd, path)) break;
    if (Date.now() >= deadline) {
      closeSync(fd);
      throw busy(path, timeoutMs);
    }
    // Short, jittered waits: a holder keeps the lock for a few milliseconds.
    sleepMs(pause + Math.random() * pause);
    pause = Math.min(pause * 2, 20);
  }
  return held(c, fd, path);
}

export function withLock<T>(path: string, fn: () => T, timeoutMs?: number): T {
  const lock = lockFile(path, timeoutMs);
  try {
    return fn();
  } finally {
    lock.release();
  }
}

/** withLock for async work; the lock file's directory is created if missing. */
export async function withLockAsync<T>(path: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const lock = await lockFileAsync(path, timeoutMs);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
