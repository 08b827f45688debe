// The reference host-local's on-disk layout, byte for byte, so the reference
// binary and nhi-ipam can share one directory:
//   <dataDir>/<network>/<ip>                  "<containerID>\r\n<ifname>", 0600, O_EXCL
//   <dataDir>/<network>/last_reserved_ip.<n>  the last address taken from range set n
//   <dataDir>/<network>/lock                  flock(2)ed around every change
// Files of older host-local versions hold only "<containerID>".
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { formatIp, parseIp, type Ip } from '../../net/ip.js';
import { createExclusive, removeStaleTemporaries, TMP_PREFIX, writeFileAtomic } from '../../sys/files.js';
import { withLock } from '../../sys/lock.js';
import { readNoFollow, safeRoot, safeSubdir } from '../../sys/safe-path.js';

/**
 * How long an ADD waits for the IPAM lock before code 11. Every ADD and DEL of
 * the network takes it, for well under a millisecond each, but the waits poll
 * (no blocking flock without a timeout): a burst of pods starting on a loaded
 * node (kubelet after a reboot) can queue dozens of processes. 30 s stays far
 * inside kubelet's CRI deadline (4 min) and only gives up on a wedged holder.
 */
export const IPAM_LOCK_MS = 30_000;

const LAST_RESERVED = 'last_reserved_ip.';
const LOCK = 'lock';
const CRLF = '\r\n';

export interface Owner {
  containerId: string;
  /** Absent in the legacy one-line format. */
  ifname?: string;
}

export interface Reservation {
  ip: Ip;
  file: string;
  /** Absent when the file is empty or unreadable: nobody can claim it. */
  owner?: Owner;
}

export function ownerContent(containerId: string, ifname: string): string {
  return `${containerId.trim()}${CRLF}${ifname}`;
}

export function parseOwner(content: string): Owner | undefined {
  const t = content.trim();
  if (!t) return undefined;
  const i = t.indexOf(CRLF);
  if (i < 0) return { containerId: t };
  return { containerId: t.slice(0, i), ifname: t.slice(i + CRLF.length) };
}

/** Does this reservation belong to (containerId, ifname)? Legacy files match on the id. */
export function ownedBy(r: Reservation, containerId: string, ifname: string): boolean {
  const o = r.owner;
  return !!o && o.containerId === containerId.trim() && (o.ifname === undefined || o.ifname === ifname);
}

export class DiskStore {
  readonly dir: string;

  constructor(
    private readonly dataDir: string,
    private readonly network: string,
  ) {
    this.dir = join(dataDir, network);
  }

  /** The network's directory, created as host-local does (0755), never through a symbolic link. */
  ensureDir(): void {
    safeRoot(this.dataDir, 'dataDir', { mode: 0o755 });
    safeSubdir(this.dataDir, [this.network], { mode: 0o755 });
  }

  /** Runs fn holding the network's lock, waited for up to IPAM_LOCK_MS (the directory is created first). */
  locked<T>(fn: () => T): T {
    this.ensureDir();
    return withLock(join(this.dir, LOCK), () => {
      removeStaleTemporaries(this.dir);
      return fn();
    }, IPAM_LOCK_MS);
  }

  /** Every reservation in the directory; a missing directory holds none. */
  list(): Reservation[] {
    let names: string[];
    try {
      if (!safeRoot(this.dataDir, 'dataDir', { create: false }) || !safeSubdir(this.dataDir, [this.network], { create: false })) return [];
      names = readdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const out: Reservation[] = [];
    for (const name of names) {
      const ip = parseIp(name);
      if (!ip) continue; // lock, last_reserved_ip.*, temporary files
      const file = join(this.dir, name);
      let content = '';
      try {
        content = readNoFollow(file);
      } catch {
        // unreadable: reported as ownerless
      }
      const owner = parseOwner(content);
      out.push(owner ? { ip, file, owner } : { ip, file });
    }
    return out;
  }

  /** Creates the reservation file; false when the address is already taken. */
  reserve(ip: Ip, containerId: string, ifname: string, rangeSetIndex: number): boolean {
    const text = formatIp(ip);
    if (!createExclusive(join(this.dir, text), ownerContent(containerId, ifname))) return false;
    // A round-robin hint: atomic, but not worth a disk flush on every ADD
    // (the reference does not flush either).
    writeFileAtomic(join(this.dir, `${LAST_RESERVED}${rangeSetIndex}`), text);
    return true;
  }

  lastReserved(rangeSetIndex: number): Ip | undefined {
    try {
      return parseIp(readNoFollow(join(this.dir, `${LAST_RESERVED}${rangeSetIndex}`)).trim());
    } catch {
      return undefined;
    }
  }

  /** Removes a reservation; one that is already gone is fine. */
  release(r: Reservation): void {
    try {
      unlinkSync(r.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }

  /** Temporary files left by a writer that died mid-write (only under the lock). */
  removeStaleTemporaries(): number {
    let n = 0;
    for (const name of safeReaddir(this.dir)) {
      if (!name.startsWith(TMP_PREFIX)) continue;
      try {
        unlinkSync(join(this.dir, name));
        n++;
      } catch {
        // gone already
      }
    }
    return n;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
