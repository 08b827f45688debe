// Node-local state of nhi-cni attachments: one small JSON file per attachment,
// written before the kernel is touched (an intent record), so that DEL and GC
// can undo an ADD that was killed half-way. One file per attachment keeps
// concurrent ADDs from contending on a shared file.
//   <stateDir>/<network>/attachments/<containerID>:<ifname>.json
// ":" cannot occur in a container id or an interface name, so the split is
// unambiguous. Node-local caches live under /run (gone at reboot, like the
// kernel state they describe).
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../sys/files.js';
import { readNoFollow, safeRoot, safeSubdir } from '../sys/safe-path.js';

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
    return join(this.dir, `${containerId}:${ifname}.json`);
  }

  write(r: AttachmentRecord): void {
    this.ensureDir();
    writeFileAtomic(this.file(r.containerId, r.ifname), `${JSON.stringify(r)}\n`);
  }

  read(containerId: string, ifname: string): AttachmentRecord | undefined {
    try {
      if (!this.existing()) return undefined;
      return JSON.parse(readNoFollow(this.file(containerId, ifname))) as AttachmentRecord;
    } catch {
      return undefined;
    }
  }

  remove(containerId: string, ifname: string): void {
    try {
      unlinkSync(this.file(containerId, ifname));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
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
