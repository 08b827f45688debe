// Paths inside our directories (the state dir, the IPAM data dir, the run dir)
// are never followed through a symbolic link: a link planted there by whoever
// can write the directory would make a root process write where the link
// points (a sudoers file, another network's reservations). So:
//   - the configured directory itself may be a link (so /var/lib on another
//     disk keeps working), but only to a root-owned directory that group and
//     others cannot write; a real directory must meet the same test;
//   - subdirectories are created one component at a time and lstat'ed: a link
//     or a non-directory there is refused;
//   - files are opened with O_NOFOLLOW (created ones also O_EXCL or O_APPEND).
// Refusals are code 7 naming the path: the configuration (or the directory
// it names) is what the operator must fix.
// Cost: one lstat (and a stat for a link) per configured directory and
// process, one lstat per subdirectory; nothing else on the way of an ADD.
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { CniError, Code } from '../cni/errors.js';

const checkedRoots = new Set<string>();

function refuse(msg: string, details = ''): CniError {
  return new CniError(Code.InvalidConfig, msg, details);
}

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;

/** Root or the user we run as, and no write bit for group and others. */
function trusted(st: Stats): boolean {
  const uid = process.geteuid?.() ?? 0;
  return (st.uid === 0 || st.uid === uid) && (st.mode & 0o022) === 0;
}

const FIX = 'use a directory owned by root that only root can write (mode 0755 or stricter), or a symbolic link to one';

/**
 * Checks (and with `create`, creates if missing) a configured directory:
 * `what` names the setting ("stateDir", "dataDir", "run dir") in the error.
 * Checked once per process and path. False when it is missing and not created.
 */
export function safeRoot(dir: string, what: string, { create = true, mode = 0o700 } = {}): boolean {
  if (checkedRoots.has(dir)) return true;
  let st: Stats;
  try {
    st = lstatSync(dir);
  } catch (e) {
    if (errno(e) !== 'ENOENT') throw refuse(`${what} ${dir} cannot be examined`, (e as Error).message);
    if (!create) return false;
    try {
      mkdirSync(dir, { recursive: true, mode });
      st = lstatSync(dir);
    } catch (e2) {
      throw new CniError(Code.SystemFailure, `cannot create ${what} ${dir}`, (e2 as Error).message);
    }
  }
  if (st.isSymbolicLink()) {
    let target: Stats;
    try {
      target = statSync(dir);
    } catch (e) {
      throw refuse(`${what} ${dir} is a symbolic link that leads nowhere usable`, `${(e as Error).message}; ${FIX}`);
    }
    if (!target.isDirectory() || !trusted(target)) {
      throw refuse(`${what} ${dir} is a symbolic link to a directory that is not root-owned or that group or others can write`, FIX);
    }
  } else if (!st.isDirectory()) {
    throw refuse(`${what} ${dir} is not a directory`);
  } else if (!trusted(st)) {
    throw refuse(`${what} ${dir} is not root-owned or group or others can write it`, FIX);
  }
  checkedRoots.add(dir);
  return true;
}

/**
 * `root/parts...` as a directory, each component created if missing (with
 * `create`) and none of them a symbolic link. Returns the path, or undefined
 * when a component is missing and `create` is false.
 */
export function safeSubdir(root: string, parts: string[], { create = true, mode = 0o700 } = {}): string | undefined {
  let dir = root;
  for (const p of parts) {
    dir = join(dir, p);
    if (create) {
      try {
        mkdirSync(dir, { mode });
      } catch (e) {
        if (errno(e) !== 'EEXIST') throw new CniError(Code.SystemFailure, `cannot create ${dir}`, (e as Error).message);
      }
    }
    let st: Stats;
    try {
      st = lstatSync(dir);
    } catch (e) {
      if (!create && errno(e) === 'ENOENT') return undefined;
      throw new CniError(Code.SystemFailure, `cannot examine ${dir}`, (e as Error).message);
    }
    if (st.isSymbolicLink()) throw refuse(`${dir} is a symbolic link: nhi-cni does not follow links inside its directories`, 'remove it; the next call recreates the directory');
    if (!st.isDirectory()) throw refuse(`${dir} is not a directory`, 'remove it; the next call recreates the directory');
  }
  return dir;
}

/** openSync with O_NOFOLLOW; a link at `path` is code 7 naming it. */
export function openNoFollow(path: string, flags: number, mode = 0o600): number {
  try {
    return openSync(path, flags | constants.O_NOFOLLOW, mode);
  } catch (e) {
    if (errno(e) === 'ELOOP') throw refuse(`${path} is a symbolic link: nhi-cni does not follow links inside its directories`, 'remove it');
    throw e;
  }
}

/** A regular file's text, never through a link (ENOENT passes through as is). */
export function readNoFollow(path: string): string {
  const fd = openNoFollow(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw refuse(`${path} is not a regular file`);
    const chunks: Buffer[] = [];
    const buf = Buffer.allocUnsafe(64 * 1024);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) chunks.push(Buffer.from(buf.subarray(0, n)));
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** True when `path` exists as anything (a link counts; it is not followed). */
export function existsNoFollow(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
