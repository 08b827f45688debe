// Node-local state of nhi-cni attachments: one small JSON file per attachment,
// written before the kernel is touched (an intent record), so that DEL and GC
// can undo an ADD that was killed half-way. One file per attachment keeps
// concurrent ADDs from contending on a shared file.
//   <stateDir>/<network>/attachments/<containerID>:<ifname>.json
//   <stateDir>/<network>/locks/<containerID>:<ifname>.lock
// ":" cannot occur in a container id or an interface name, so the split is
// unambiguous. A container id may be 255 characters long, which with the
// ifname overflows a file name (NAME_MAX 255): such ids are named by their
// hash, "sha256+<hex>:<ifname>" ("+" cannot occur in an id, so a hashed name
// never equals a plain one); the full id stays inside the record. Node-local
// caches live under /run (gone at reboot, like the kernel state they describe).
import { createHash } from 'node:crypto';
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Result } from '../cni/result.js';
import { removeStaleTemporaries, TMP_PREFIX, writeFileAtomic } from '../sys/files.js';
import { lockFileAsync, type RemovableLock } from '../sys/lock.js';
import { readNoFollow, safeRoot, safeSubdir } from '../sys/safe-path.js';

const NAME_MAX = 255;

/** The file name stem of an attachment: its id and ifname, or the id's hash when that would not fit. */
export function attachmentFileStem(containerId: string, ifname: string): string {
  const plain = `${containerId}:${ifname}`;
  // ".json" is the longest suffix, and writeFileAtomic's temporary adds
  // ".nhi-tmp-" and ".<pid>" (up to 7 digits).
  if (Buffer.byteLength(plain) + '.json'.length + TMP_OVERHEAD <= NAME_MAX) return plain;
  return `sha256+${createHash('sha256').update(containerId).digest('hex')}:${ifname}`;
}
const TMP_OVERHEAD = TMP_PREFIX.length + 8;

/** The stems to look for, newest layout first: a record of an older version may sit under the plain name. */
function stems(containerId: string, ifname: string): string[] {
  const s = attachmentFileStem(containerId, ifname);
  const plain = `${containerId}:${ifname}`;
  return s !== plain && Buffer.byteLength(plain) + '.json'.length <= NAME_MAX ? [s, plain] : [s];
}

export interface AttachmentRecord {
  containerId: string;
  ifname: string;
  netns: string;
  bridge: string;
  hostVeth: string;
  /** Addresses with prefix, once IPAM gave them. */
  ips: string[];
  /** The pod's MAC, recorded when macspoofchk is on (its nft elements name it). */
  mac?: string;
  created: string;
  /**
   * The boot id (src/sys/sysfs.ts bootId) of the ADD: a record of another
   * boot is proof that its kernel state is gone (leak reclaim, src/chain/reclaim.ts).
   * Absent in records of earlier versions.
   */
  boot?: string;
  /**
   * The ADD's result, written when the ADD completed. A record without it is
   * an ADD in progress or one that was killed; with it, a repeated ADD (a
   * runtime retry) gets this result back instead of a second attachment.
   */
  result?: Result;
}

export class AttachmentStore {
  readonly dir: string;

  constructor(
    private readonly stateDir: string,
    private readonly network: string,
  ) {
    this.dir = join(stateDir, network, 'attachments');
  }

  /** The directory, created without following a link (sys/safe-path.ts). */
  ensureDir(): void {
    safeRoot(this.stateDir, 'stateDir');
    safeSubdir(this.stateDir, [this.network, 'attachments']);
  }

  /** Whether the directory exists; throws when it, or the state dir, is not safe to read. */
  private existing(): boolean {
    return safeRoot(this.stateDir, 'stateDir', { create: false }) && safeSubdir(this.stateDir, [this.network, 'attachments'], { create: false }) !== undefined;
  }

  private file(containerId: string, ifname: string): string {
    return join(this.dir, `${attachmentFileStem(containerId, ifname)}.json`);
  }

  private files(containerId: string, ifname: string): string[] {
    return stems(containerId, ifname).map((s) => join(this.dir, `${s}.json`));
  }

  /**
   * The attachment's lock: ADD, DEL and CHECK of one (network, containerID,
   * ifname) hold it from start to end, so two of them never interleave (a
   * runtime's retry, or an ADD racing its DEL). Bounded wait, code 11.
   */
  async lock(containerId: string, ifname: string, timeoutMs?: number): Promise<RemovableLock> {
    safeRoot(this.stateDir, 'stateDir');
    const dir = safeSubdir(this.stateDir, [this.network, 'locks'])!;
    return lockFileAsync(join(dir, `${attachmentFileStem(containerId, ifname)}.lock`), timeoutMs);
  }

  write(r: AttachmentRecord): void {
    this.ensureDir();
    writeFileAtomic(this.file(r.containerId, r.ifname), `${JSON.stringify(r)}\n`);
  }

  read(containerId: string, ifname: string): AttachmentRecord | undefined {
    try {
      if (!this.existing()) return undefined;
    } catch {
      return undefined;
    }
    // Every verb reads its record first: a killed writer's temporary goes here.
    removeStaleTemporaries(this.dir);
    for (const f of this.files(containerId, ifname)) {
      try {
        const r = JSON.parse(readNoFollow(f)) as AttachmentRecord;
        // A hashed name is checked against the id it holds.
        if (r.containerId === containerId && r.ifname === ifname) return r;
      } catch {
        // missing or torn: try the next name
      }
    }
    return undefined;
  }

  remove(containerId: string, ifname: string): void {
    for (const f of this.files(containerId, ifname)) {
      try {
        unlinkSync(f);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
  }

  list(): AttachmentRecord[] {
    let names: string[];
    try {
      if (!this.existing()) return [];
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: AttachmentRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json') || n.startsWith('.')) continue;
      try {
        out.push(JSON.parse(readNoFollow(join(this.dir, n))) as AttachmentRecord);
      } catch {
        // a torn or foreign file: not ours to interpret
      }
    }
    return out;
  }
}

/** A small JSON cache under /run, keyed by the node namespace it describes. */
export class RunCache {
  constructor(
    private readonly dir: string,
    private readonly netnsId: string,
  ) {}

  private file(key: string): string {
    return join(this.dir, this.netnsId, `${key}.json`);
  }

  get<T>(key: string): T | undefined {
    try {
      return JSON.parse(readNoFollow(this.file(key))) as T;
    } catch {
      return undefined;
    }
  }

  set(key: string, value: unknown): void {
    safeRoot(this.dir, 'run dir');
    safeSubdir(this.dir, [this.netnsId]);
    writeFileAtomic(this.file(key), JSON.stringify(value));
  }

  delete(key: string): void {
    try {
      unlinkSync(this.file(key));
    } catch {
      // already gone
    }
  }
}
