// What exists of one attachment (containerID, ifname) of nhi-cni, read from
// the real state: the pod's interface and its host peer (ip), the IPAM
// reservation files, the attachment record, the policy state's entry and the
// kernel's policy table (nft). Races and failure tests compare these parts:
// an attachment must have all of them or none.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tryInNetns, type Netns } from './netns.js';

export interface AttachmentParts {
  /** The pod's interface (ifname) exists in its namespace. */
  podIf: boolean;
  /** Its peer exists on the node. */
  hostVeth: boolean;
  /** The pod interface's global addresses (without prefix). */
  podIps: string[];
  /** Addresses whose reservation file names this container. */
  reserved: string[];
  record: boolean;
  /** An entry in <stateDir>/policy-state.json. */
  policyState: boolean;
  /** Addresses of the kernel's verdict maps (every pod's). */
  enforced: string[];
}

function json(ns: Netns, args: string[]): any {
  const r = tryInNetns(ns, args[0]!, args.slice(1));
  if (r.status !== 0 || !r.stdout.trim()) return undefined;
  return JSON.parse(r.stdout);
}

/** Addresses listed in the verdict maps of table inet nhi_policy in the node. */
export function enforcedAddresses(node: Netns): string[] {
  const t = json(node, ['nft', '-j', 'list', 'table', 'inet', 'nhi_policy']);
  const out: string[] = [];
  for (const o of t?.nftables ?? []) {
    if (!o.map) continue;
    for (const e of o.map.elem ?? []) out.push(Array.isArray(e) ? e[0] : e);
  }
  return out.filter((a) => typeof a === 'string').sort();
}

/** The IPAM reservations of a network directory: address -> owner container id. */
export function reservations(ipamDir: string): Map<string, string> {
  const out = new Map<string, string>();
  let names: string[] = [];
  try {
    names = readdirSync(ipamDir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^[0-9a-f.:]+$/.test(n) || !/[.:]/.test(n)) continue;
    out.set(n, readFileSync(join(ipamDir, n), 'utf8').split('\r\n')[0]!);
  }
  return out;
}

export function attachmentParts(o: { node: Netns; pod: Netns; dir: string; network: string; containerId: string; ifname?: string }): AttachmentParts {
  const ifname = o.ifname ?? 'eth0';
  const link = json(o.pod, ['ip', '-j', 'addr', 'show', 'dev', ifname])?.[0];
  let hostVeth = false;
  if (link?.link_index !== undefined) {
    const peers = json(o.node, ['ip', '-j', 'link', 'show']) as { ifindex: number }[];
    hostVeth = peers.some((l) => l.ifindex === link.link_index);
  }
  const podIps = ((link?.addr_info ?? []) as { local: string; scope: string }[]).filter((a) => a.scope === 'global').map((a) => a.local);
  const reserved = [...reservations(join(o.dir, 'ipam', o.network))].filter(([, id]) => id === o.containerId).map(([ip]) => ip);
  let record = false;
  const recDir = join(o.dir, 'state', o.network, 'attachments');
  try {
    for (const n of readdirSync(recDir)) {
      if (!n.endsWith('.json') || n.startsWith('.')) continue;
      const r = JSON.parse(readFileSync(join(recDir, n), 'utf8'));
      if (r.containerId === o.containerId && r.ifname === ifname) record = true;
    }
  } catch {
    // no directory: no record
  }
  let policyState = false;
  try {
    const s = JSON.parse(readFileSync(join(o.dir, 'state', 'policy-state.json'), 'utf8'));
    policyState = `${o.network}/${o.containerId}/${ifname}` in (s.pods ?? {});
  } catch {
    // no state
  }
  return { podIf: !!link, hostVeth, podIps, reserved, record, policyState, enforced: enforcedAddresses(o.node) };
}

/**
 * "present": every part, the pod's address reserved to it and enforced;
 * "absent": no part, and none of its former addresses enforced;
 * otherwise a description of the half-configured state.
 */
export function wholeness(p: AttachmentParts, withPolicy: boolean, formerIps: string[] = []): 'present' | 'absent' | string {
  const ip = p.podIps[0];
  const parts = {
    podIf: p.podIf, hostVeth: p.hostVeth, reserved: p.reserved.length > 0, record: p.record,
    ...(withPolicy ? { policyState: p.policyState, enforced: !!ip && p.enforced.includes(ip) } : {}),
  };
  const values = Object.values(parts);
  if (values.every(Boolean) && p.reserved.length === 1 && p.reserved[0] === ip) return 'present';
  if (values.every((v) => !v) && !formerIps.some((a) => p.enforced.includes(a))) return 'absent';
  return `half-configured: ${JSON.stringify({ ...parts, podIps: p.podIps, reserved: p.reserved })}`;
}
