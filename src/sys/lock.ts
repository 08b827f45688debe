// An exclusive flock(2) on a file, the same lock the reference host-local takes
// on <dataDir>/<network>/lock, so that it and nhi-ipam can share one directory.
// Node has no flock in core; Node 26's node:ffi calls libc's directly, which
// costs no extra process (flock(1) would cost one per ADD). The lock belongs to
// the open file, so it is released when the fd is closed or the process dies.
import { closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { CniError, Code } from '../cni/errors.js';
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
  // node:ffi is experimental in Node 26 and says so on stderr when loaded;
  // the binary pins its Node version, so silence that one warning.
  const emit = process.emitWarning;
  process.emitWarning = () => {};
  let ffi: typeof import('node:ffi');
  try {
    ffi = process.getBuiltinModule('node:ffi') as typeof import('node:ffi');
  } finally {
    process.emitWarning = emit;
  }
  const { functions } = ffi.dlopen('libc.so.6', {
    flock: { arguments: ['int32', 'int32'], return: 'int32' },
    __errno_location: { arguments: [], return: 'pointer' },
  }) as unknown as { functions: { flock(fd: number, op: number): number; __errno_location(): bigint } };
  libc = {
    flock: (fd, op) => functions.flock(fd, op),
    errno: () => ffi.getInt32(functions.__errno_location(), 0) as number,
  };
  return libc;
}


export interface HeldLock {
  release(): void;
}

/**
 * Takes an exclusive lock on `path` (created if missing), waiting at most
 * `timeoutMs`; a lock still busy then is a transient failure (code 11).
 */
export function lockFile(path: string, timeoutMs = 10_000): HeldLock {
  const c = loadLibc();
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw new CniError(Code.SystemFailure, `cannot open lock file ${path}`, (e as Error).message);
  }
  const deadline = Date.now() + timeoutMs;
  let pause = 1;
  for (;;) {
    if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) break;
    const errno = c.errno();
    if (errno !== EWOULDBLOCK && errno !== EINTR) {
      closeSync(fd);
      throw new CniError(Code.SystemFailure, `cannot lock ${path}`, `flock failed with errno ${errno}`);
    }
    if (Date.now() >= deadline) {
      closeSync(fd);
      throw new CniError(Code.TryAgainLater, `timed out after ${timeoutMs} ms waiting for the lock ${path}`, 'another plugin holds it; try again');
    }
    // Short, jittered waits: a holder keeps the lock for a few milliseconds.
    sleepMs(pause + Math.random() * pause);
    pause = Math.min(pause * 2, 20);
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      c.flock(fd, LOCK_UN);
      closeSync(fd);
    },
  };
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
  const lock = lockFile(path, timeoutMs);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
