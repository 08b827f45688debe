// The bridge module: the node's bridge, its gateway addresses, forwarding.
// The bridge is created once and never deleted by DEL (other pods use it).
import { randomBytes } from 'node:crypto';
import { CniError, Code } from '../cni/errors.js';
import { add as addIp, formatCidr, networkOf, overlaps, parseCidr, type Cidr } from '../net/ip.js';
import { isBridge, linkExists, linkIndex, linkMac, ensureSysctl } from '../sys/sysfs.js';
import { runHostBatch, IpBatch } from '../sys/ip.js';
import { sleepMs } from '../sys/sleep.js';
import type { IpConfig } from '../cni/result.js';
import type { CniConfig } from './config.js';
import { addedIps, type ChainModule } from './module.js';
import type { Plan } from './plan.js';
import type { RunCache } from './state.js';

/**
 * Whether an existing link is a bridge. A bridge another ADD is creating at
 * this moment is in /sys/class/net a moment before its bridge/ directory is:
 * give it up to 100 ms before calling the name taken by something else (only
 * this error path waits).
 */
export function settledBridge(name: string): boolean {
  for (let waited = 0; ; waited += 5) {
    if (isBridge(name)) return true;
    if (waited >= 100 || !linkExists(name)) return false;
    sleepMs(5);
  }
}

/** A locally administered unicast MAC. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The gateway of each address: IPAM's, or the network's first address. */
export function gatewayOf(ip: IpConfig): Cidr {
  const c = parseCidr(ip.address)!;
  const gw = ip.gateway ? parseCidr(`${ip.gateway}/${c.prefix}`)! : { ip: addIp(networkOf(c), 1n), prefix: c.prefix };
  return gw;
}

/**
 * What this plugin knows it has put on the bridge. It is trusted only while
 * the bridge is the same one: same ifindex and same MAC (a bridge we create
 * gets a random MAC, so a re-created one never matches, even where a namespace
 * inode and an ifindex are reused).
 */
interface BridgeMarker {
  ifindex: number;
  mac: string;
  gateways: string[];
}

export interface BridgeAdd {
  created: boolean;
  /** Line of the host batch that creates the bridge (to recognise a creation race). */
  createLine?: number;
}

/**
 * Adds the bridge's part to the plan. Reads only sysfs and a /run cache, so
 * that an ADD on a bridge already set up costs no extra process; the one case
 * that needs to read the bridge's addresses (a bridge this plugin did not set
 * up) spends one `ip -j addr show`.
 */
export async function bridgeAdd(cfg: CniConfig, ips: IpConfig[], plan: Plan, cache: RunCache, assumeExists = false): Promise<BridgeAdd> {
  const br = cfg.bridge;
  const out: BridgeAdd = { created: false };
  const exists = assumeExists || linkExists(br);
  if (exists && !settledBridge(br)) {
    throw new CniError(Code.SystemFailure, `"${br}" already exists but is not a bridge`, 'choose another bridge name in the config');
  }
  if (!exists) {
    out.created = true;
    out.createLine = plan.host.lines.length;
    // An explicit MAC pins the bridge's address; otherwise it would follow the
    // lowest MAC among its ports and change as pods come and go.
    plan.host.add('link', 'add', br, 'address', randomMac(), ...(cfg.mtu ? ['mtu', cfg.mtu] : []), 'type', 'bridge');
    plan.host.add('link', 'set', br, 'up');
  }
  if (cfg.promiscMode) plan.host.add('link', 'set', br, 'promisc', 'on');

  const gateways = cfg.isGateway ? [...new Set(ips.map((ip) => formatCidr(gatewayOf(ip))))] : [];
  const key = `bridge-${br}`;
  const marker = exists ? cache.get<BridgeMarker>(key) : undefined;
  const same = marker && marker.ifindex === linkIndex(br) && marker.mac === linkMac(br);
  const known = same ? new Set(marker.gateways) : new Set<string>();
  const missing = gateways.filter((g) => !known.has(g));
  if (missing.length > 0) {
    if (exists) await checkBridgeAddresses(cfg, missing, plan);
    for (const g of missing) {
      const v6 = g.includes(':');
      plan.host.add('addr', 'replace', g, 'dev', br, ...(v6 ? ['nodad'] : []));
    }
  }
  plan.after.push(() => {
    const all = [...new Set([...known, ...gateways])];
    const ifindex = linkIndex(br);
    const mac = linkMac(br);
    if (ifindex !== undefined && mac) cache.set(key, { ifindex, mac, gateways: all } satisfies BridgeMarker);
    if (cfg.isGateway) {
      if (gateways.some((g) => !g.includes(':'))) ensureSysctl('net/ipv4/ip_forward', '1');
      if (gateways.some((g) => g.includes(':'))) ensureSysctl('net/ipv6/conf/all/forwarding', '1');
    }
    // The bridge must not take router advertisements from pods.
    ensureSysctl(`net/ipv6/conf/${br}/accept_ra`, '0');
  });
  return out;
}

/**
 * The reference bridge's rule: an IPv4 address on the bridge other than the
 * gateway, or an IPv6 one whose prefix overlaps, is a conflict; forceAddress
 * replaces it, otherwise the ADD fails.
 */
async function checkBridgeAddresses(cfg: CniConfig, wanted: string[], plan: Plan): Promise<void> {
  const r = await runHostBatch(new IpBatch().add('addr', 'show', 'dev', cfg.bridge), true);
  if (r.exitCode !== 0) return; // vanished meanwhile: the batch will recreate or fail clearly
  const links = JSON.parse(r.stdout || '[]') as { addr_info?: { family: string; local: string; prefixlen: number; scope: string }[] }[];
  const have = links.flatMap((l) => l.addr_info ?? []).filter((a) => a.scope === 'global');
  for (const w of wanted) {
    const want = parseCidr(w)!;
    for (const a of have) {
      const cidr = `${a.local}/${a.prefixlen}`;
      if (cidr === w) continue;
      const got = parseCidr(cidr);
      if (!got || got.ip.family !== want.ip.family) continue;
      const conflict = want.ip.family === 4 || overlaps(got, want);
      if (!conflict || wanted.includes(cidr)) continue;
      if (!cfg.forceAddress) {
        throw new CniError(Code.SystemFailure, `"${cfg.bridge}" already has an IP address different from ${w}`,
          `it has ${cidr}; set "forceAddress": true to replace it, or use another bridge`);
      }
      plan.host.add('addr', 'del', cidr, 'dev', cfg.bridge);
    }
  }
}

export function bridgeInterface(cfg: CniConfig): { name: string; mac?: string } {
  const mac = linkMac(cfg.bridge);
  return mac ? { name: cfg.bridge, mac } : { name: cfg.bridge };
}

/** The chain's bridge module: shared by every pod, so DEL leaves it. */
export const bridge: ChainModule = {
  name: 'bridge',
  async add(x, plan) {
    x.bridgeCreateLine = (await bridgeAdd(x.c.cfg, addedIps(x), plan, x.cache, x.bridgeSeen)).createLine;
  },
  del() {},
  async check({ c }) {
    if (!isBridge(c.cfg.bridge)) throw new CniError(Code.CheckFailed, `bridge ${c.cfg.bridge} does not exist`);
  },
};
