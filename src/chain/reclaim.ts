// Leak reclaim: IPAM reservations whose owner is proven gone. Runtimes do not
// always send DEL (`ctr run --cni` never does; after a reboot the old
// sandboxes may never be deleted, and containerd does not send GC:
// containernetworking/plugins#252, kubernetes#108121), so a range can run dry
// on addresses nobody uses. A reservation is released here only on proof:
//   previous-boot  its attachment record names another boot id: everything
//                  the ADD made in the kernel went with that boot;
//   netns-gone     same boot, but the host veth is gone, the pod's namespace
//                  path is gone (while its directory is visible to us), and
//                  the record is older than a grace period.
// A reservation without a record is never judged dead: it may belong to a
// main plugin using nhi-ipam as its delegate, or to the reference host-local
// sharing the directory, and it carries nothing to test. An attachment whose
// lock is held (an ADD, DEL or CHECK in flight) is alive. Every release is
// re-judged holding the attachment's lock, and done under the IPAM lock.
// Used by `nhi-cni ipam check|release` and by an ADD that found its range
// exhausted (src/chain/runner.ts).
import { existsSync, lstatSync } from 'node:fs';
import { dirname } from 'node:path';
import { formatIp } from '../net/ip.js';
import type { NftCommand } from '../sys/nft.js';
import { linkExists } from '../sys/sysfs.js';
import { DiskStore } from './ipam/store.js';
import { guardDel, recordedPort } from './spoofcheck.js';
import { AttachmentStore, type AttachmentRecord } from './state.js';

/** How old a record must be before "namespace gone" counts as proof (runtimes create the namespace before ADD). */
export const RECLAIM_GRACE_MS = 60_000;

export type ReservationState = 'leaked' | 'live' | 'unknown';

export interface Verdict {
  state: ReservationState;
  /** A stable word for scripts: previous-boot, netns-gone (leaked); host-veth, netns-present, recent, in-flight (live); no-record, no-owner, legacy-owner, netns-unverifiable, bad-record (unknown). */
  reason: string;
  /** The evidence, for people. */
  detail: string;
}

export interface Finding extends Verdict {
  network: string;
  ip: string;
  containerId: string;
  ifname: string;
  netns?: string;
  hostVeth?: string;
  boot?: string;
  created?: string;
}

export interface JudgeContext {
  /** This boot's id; undefined when unreadable (then no record is judged by boot). */
  bootId: string | undefined;
  now: number;
  graceMs: number;
}

const HOST_VETH = /^veth[0-9a-f]{8}$/;

/** Is the namespace at `path` gone, as far as this process can prove? */
export function netnsPathState(path: string): 'gone' | 'present' | 'unverifiable' {
  if (!path.startsWith('/') || path.includes('\0')) return 'unverifiable';
  try {
    lstatSync(path);
    return 'present';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return 'unverifiable';
  }
  // Absent from a directory we cannot see (another mount namespace, a
  // container without /run/netns mounted) proves nothing.
  const parent = /^\/proc\/[0-9]+\/ns\/net$/.test(path) ? '/proc/self/ns' : dirname(path);
  return existsSync(parent) ? 'gone' : 'unverifiable';
}

/** The verdict on one attachment, from its record and the node as this process sees it (run it in the node's namespaces). */
export function judge(rec: AttachmentRecord | undefined, ctx: JudgeContext): Verdict {
  if (!rec) {
    return { state: 'unknown', reason: 'no-record', detail: 'no nhi-cni attachment record: a delegating main plugin, the reference host-local, an ADD killed before its record, or a lost state dir; a DEL or GC from the runtime releases it' };
  }
  if (typeof rec.hostVeth !== 'string' || !HOST_VETH.test(rec.hostVeth) || typeof rec.netns !== 'string') {
    return { state: 'unknown', reason: 'bad-record', detail: 'the attachment record does not name a host veth and a namespace' };
  }
  if (typeof rec.boot === 'string' && ctx.bootId && rec.boot !== ctx.bootId) {
    return { state: 'leaked', reason: 'previous-boot', detail: `added in boot ${rec.boot}; this is boot ${ctx.bootId}` };
  }
  if (linkExists(rec.hostVeth)) return { state: 'live', reason: 'host-veth', detail: `host veth ${rec.hostVeth} exists` };
  const ns = netnsPathState(rec.netns);
  if (ns === 'present') return { state: 'live', reason: 'netns-present', detail: `namespace ${rec.netns} exists` };
  if (ns === 'unverifiable') {
    return { state: 'unknown', reason: 'netns-unverifiable', detail: `cannot tell whether namespace ${rec.netns} exists from here (run on the node, with its /run and /proc)` };
  }
  const age = ctx.now - Date.parse(rec.created);
  if (!(age >= ctx.graceMs)) {
    return { state: 'live', reason: 'recent', detail: `added ${Number.isFinite(age) ? `${Math.round(age / 1000)} s` : 'an unknown time'} ago, within the ${Math.round(ctx.graceMs / 1000)} s grace period` };
  }
  return { state: 'leaked', reason: 'netns-gone', detail: `host veth ${rec.hostVeth} and namespace ${rec.netns} are gone (added ${rec.created})` };
}

const attKey = (containerId: string, ifname: string) => `${containerId}\0${ifname}`;

function finding(network: string, ip: string, containerId: string, ifname: string, v: Verdict, rec?: AttachmentRecord): Finding {
  const f: Finding = { network, ip, containerId, ifname, ...v };
  if (rec) {
    f.netns = rec.netns;
    f.hostVeth = rec.hostVeth;
    if (rec.boot) f.boot = rec.boot;
    f.created = rec.created;
  }
  return f;
}

export interface ScanOptions {
  dataDir: string;
  stateDir: string;
  network: string;
  ctx: JudgeContext;
  /** Try each leaked attachment's lock (without waiting): held means in flight, so alive. */
  probeLocks?: boolean;
}

/** Every reservation of the network with its verdict, sorted by address. */
export async function scan(o: ScanOptions): Promise<Finding[]> {
  const reservations = new DiskStore(o.dataDir, o.network).list();
  const store = new AttachmentStore(o.stateDir, o.network);
  const records = new Map(store.list().map((r) => [attKey(r.containerId, r.ifname), r]));
  const out: Finding[] = [];
  for (const r of reservations) {
    const ip = formatIp(r.ip);
    const owner = r.owner;
    if (!owner) {
      out.push(finding(o.network, ip, '', '', { state: 'unknown', reason: 'no-owner', detail: 'the reservation file is empty or unreadable' }));
      continue;
    }
    if (owner.ifname === undefined) {
      out.push(finding(o.network, ip, owner.containerId, '', { state: 'unknown', reason: 'legacy-owner', detail: 'an older host-local reservation naming no interface' }));
      continue;
    }
    const rec = records.get(attKey(owner.containerId, owner.ifname));
    let v = judge(rec, o.ctx);
    if (v.state === 'leaked' && o.probeLocks) {
      const lock = await store.lock(owner.containerId, owner.ifname, 0).catch(() => undefined);
      if (lock) lock.release();
      else v = { state: 'live', reason: 'in-flight', detail: 'an ADD, DEL or CHECK of it holds its lock' };
    }
    out.push(finding(o.network, ip, owner.containerId, owner.ifname, v, rec));
  }
  return out.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

export interface ReleaseTarget {
  ip: string;
  containerId: string;
  ifname: string;
}

export interface ReleaseOutcome {
  /** Released: leaked when re-judged under the attachment's lock. */
  released: Finding[];
  /** Not released, with the reason (live or unknown now, in flight, or no longer reserved to that owner). */
  kept: Finding[];
  /** Port guard removals for the attachments removed in this boot (netns-gone); previous-boot ones have no kernel state left. */
  unguard: NftCommand[];
  /** podKeys of the attachments whose record was removed. */
  removed: { containerId: string; ifname: string }[];
}

/**
 * Releases exactly the targets still leaked. Per attachment: its lock (not
 * waited for: held means alive), its record re-read and re-judged, then under
 * the IPAM lock only the target addresses still reserved to it are removed.
 * The record goes when the attachment holds no address any more.
 */
export async function releaseLeaked(o: Omit<ScanOptions, 'probeLocks'>, targets: ReleaseTarget[]): Promise<ReleaseOutcome> {
  const out: ReleaseOutcome = { released: [], kept: [], unguard: [], removed: [] };
  const ipam = new DiskStore(o.dataDir, o.network);
  const store = new AttachmentStore(o.stateDir, o.network);
  const groups = new Map<string, ReleaseTarget[]>();
  for (const t of targets) {
    const k = attKey(t.containerId, t.ifname);
    groups.set(k, [...(groups.get(k) ?? []), t]);
  }
  for (const group of groups.values()) {
    const { containerId, ifname } = group[0]!;
    const keep = (v: Verdict, rec?: AttachmentRecord) => out.kept.push(...group.map((t) => finding(o.network, t.ip, containerId, ifname, v, rec)));
    const lock = await store.lock(containerId, ifname, 0).catch(() => undefined);
    if (!lock) {
      keep({ state: 'live', reason: 'in-flight', detail: 'an ADD, DEL or CHECK of it holds its lock' });
      continue;
    }
    let removed = false;
    try {
      const rec = store.read(containerId, ifname);
      const v = judge(rec, o.ctx);
      if (v.state !== 'leaked') {
        keep(v, rec);
        continue;
      }
      const wanted = new Set(group.map((t) => t.ip));
      const { freed, left } = ipam.locked(() => {
        const mine = ipam.list().filter((r) => r.owner?.containerId === containerId && r.owner.ifname === ifname);
        const freed = mine.filter((r) => wanted.has(formatIp(r.ip)));
        for (const r of freed) ipam.release(r);
        return { freed: freed.map((r) => formatIp(r.ip)), left: mine.length - freed.length };
      });
      for (const t of group) {
        if (freed.includes(t.ip)) out.released.push(finding(o.network, t.ip, containerId, ifname, v, rec));
        else out.kept.push(finding(o.network, t.ip, containerId, ifname, { state: 'unknown', reason: 'not-reserved', detail: 'no longer reserved to this attachment' }, rec));
      }
      if (left === 0 && rec) {
        if (v.reason === 'netns-gone') {
          out.unguard.push(...guardDel(recordedPort(rec.hostVeth, rec, undefined)));
        }
        store.remove(containerId, ifname);
        out.removed.push({ containerId, ifname });
        removed = true;
      }
    } finally {
      if (removed) lock.releaseAndRemove();
      else lock.release();
    }
  }
  return out;
}
