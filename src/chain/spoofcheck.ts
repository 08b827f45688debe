// Port guard: a pod's frames must carry the pod's own identity before anything
// else sees them. nhi-cni's policy decides on source addresses, so a pod that
// could send with another pod's address (raw sockets, a secondary address, a
// forged ARP or neighbour advertisement) would borrow that pod's access; and a
// pod that could send router advertisements would reroute its neighbours
// (CVE-2020-10749). Cilium drops packets whose source does not match the
// endpoint before policy; Calico binds each workload interface to its
// addresses. We do it in one bridge-family table, at the bridge's prerouting
// hook (priority -300: before br_netfilter hands packets to the inet hooks
// where the policy runs), with set elements per pod and one rule set for all:
//
//   guard_ifs       every pod port: router advertisements, redirects and DHCP
//                   server replies from it are dropped (the RA guard)
//   spoofchk_ifs    ports whose source MAC is checked, against
//   spoofchk_pairs  ifname . MAC                      (the `macspoofchk` layout)
//   ipchk_ifs       ports whose addresses are checked, against
//   ipchk_v4        ifname . IPv4 (IP source and ARP sender), and
//   ipchk_v6        ifname . IPv6 (source; the pod's addresses and link-local)
//   ipchk_na        ifname -> goto na_<port>: a neighbour advertisement may
//                   only claim the pod's own addresses. nft 1.0.6 has no
//                   `icmpv6 taddr` and its JSON no `typeof` sets, so the
//                   target (a raw 128-bit payload) is compared with a literal
//                   set in a small chain per pod, reached by one map lookup.
//   guard_drops     ifname -> counter drop_<port>: what each pod had dropped
//
// A pod whose node-side interface is not a bridge port (nhi-policy chained
// after ptp: routed, not bridged) never crosses a bridge hook; its guard is the
// same layout in table inet nhi_cni, at the inet prerouting hook, where the
// link-layer header is still there to check (ARP never reaches it, and needs
// no check on a point-to-point link: no other pod listens there).
//
// Unspecified sources pass only where the protocols need them: ARP probes
// (sender 0.0.0.0), DHCP discovery (0.0.0.0 to port 67), and duplicate address
// detection and MLD reports (:: as source). Anything else from a checked port
// that is not the pod's - other ethertypes included - is dropped and counted.
import { createHash } from 'node:crypto';
import { CniError, Code, firstOf } from '../cni/errors.js';
import { formatIp, parseIp } from '../net/ip.js';
import { listTable, type NftCommand } from '../sys/nft.js';
import type { Result } from '../cni/result.js';
import { guardedPort, type ChainModule } from './module.js';
import type { AttachmentRecord } from './state.js';
import { macFor } from './veth.js';

export type GuardFamily = 'bridge' | 'inet';
export const GUARD_TABLE = 'nhi_cni';
const CHAIN = 'spoofchk';
const DROP = 'spoofdrop';
const tableOf = (family: GuardFamily) => ({ family, table: GUARD_TABLE });

export const SETS = {
  ports: 'guard_ifs',
  macIfs: 'spoofchk_ifs',
  macs: 'spoofchk_pairs',
  ipIfs: 'ipchk_ifs',
  v4: 'ipchk_v4',
  v6: 'ipchk_v6',
  na: 'ipchk_na',
  drops: 'guard_drops',
} as const;

/** How much of a pod's identity its port enforces. */
export type GuardLevel = 'addresses' | 'mac' | 'none';

export interface GuardedPort {
  /** The node-side interface of the pod (a port of the bridge). */
  hostVeth: string;
  /** The pod's MAC. */
  mac: string;
  /** The pod's addresses, without prefix length. */
  ips: string[];
  level: GuardLevel;
  /** Where the port's frames are seen: a bridge port (default), or a routed interface. */
  family?: GuardFamily;
}

/** Per-port object names follow a hash of the port's name, so that any interface name makes a valid, short one. */
function portId(hostVeth: string): string {
  return createHash('sha256').update(hostVeth).digest('hex').slice(0, 12);
}
export const dropCounter = (hostVeth: string) => `drop_${portId(hostVeth)}`;
export const naChain = (hostVeth: string) => `na_${portId(hostVeth)}`;

/** The modified EUI-64 link-local address the kernel gives an interface with this MAC. */
export function linkLocalOf(mac: string): string {
  const b = mac.split(':').map((x) => Number.parseInt(x, 16));
  const hex = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
  return formatIp(parseIp(`fe80::${hex(b[0]! ^ 0x02, b[1]!)}:${hex(b[2]!, 0xff)}:${hex(0xfe, b[3]!)}:${hex(b[4]!, b[5]!)}`)!);
}

const iif = { meta: { key: 'iifname' } };
const payload = (protocol: string, field: string) => ({ payload: { protocol, field } });
const match = (left: unknown, right: unknown, op: '==' | '!=' = '==') => ({ match: { op, left, right } });
const concat = (...c: unknown[]) => ({ concat: c });
const toDrop = { goto: { target: DROP } };
const ruleIn = (T: ReturnType<typeof tableOf>) => (chain: string, ...expr: unknown[]): NftCommand => ({ add: { rule: { ...T, chain, expr } } });
/** The NA target address: 16 bytes at offset 8 of the ICMPv6 header (RFC 4861 4.4). */
const naTarget = { payload: { base: 'th', offset: 64, len: 128 } };

/** The table, its sets and chains, and the base chain's rules, rewritten whole (idempotent, heals a flushed table). */
function skeleton(family: GuardFamily): NftCommand[] {
  const T = tableOf(family);
  const rule = ruleIn(T);
  const set = (name: string, type: string | string[]): NftCommand => ({ add: { set: { ...T, name, type } } });
  const bridge = family === 'bridge';
  return [
    { add: { table: { family, name: GUARD_TABLE } } },
    set(SETS.ports, 'ifname'),
    set(SETS.macIfs, 'ifname'),
    set(SETS.macs, ['ifname', 'ether_addr']),
    set(SETS.ipIfs, 'ifname'),
    set(SETS.v4, ['ifname', 'ipv4_addr']),
    set(SETS.v6, ['ifname', 'ipv6_addr']),
    { add: { map: { ...T, name: SETS.na, type: 'ifname', map: 'verdict' } } },
    { add: { map: { ...T, name: SETS.drops, type: 'ifname', map: 'counter' } } },
    { add: { chain: { ...T, name: DROP } } },
    { flush: { chain: { ...T, name: DROP } } },
    // A port without a counter (a lookup miss ends this rule, not the chain) is still dropped.
    rule(DROP, { counter: { map: { key: iif, data: `@${SETS.drops}` } } }),
    rule(DROP, { drop: null }),
    { add: { chain: { ...T, name: CHAIN, type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' } } },
    { flush: { chain: { ...T, name: CHAIN } } },
    // RA guard, for every pod port whatever its check level.
    rule(CHAIN, match(iif, `@${SETS.ports}`), match(payload('icmpv6', 'type'), { set: ['nd-router-advert', 'nd-redirect'] }), toDrop),
    rule(CHAIN, match(iif, `@${SETS.ports}`), match(payload('icmp', 'type'), 'redirect'), toDrop),
    rule(CHAIN, match(iif, `@${SETS.ports}`), match(payload('udp', 'sport'), { set: [67, 547] }), toDrop),
    // Source MAC.
    rule(CHAIN, match(iif, `@${SETS.macIfs}`), match(concat(iif, payload('ether', 'saddr')), `@${SETS.macs}`, '!='), toDrop),
    rule(CHAIN, match(iif, `@${SETS.ipIfs}`, '!='), { accept: null }),
    // ARP: the sender must be the pod, by MAC and by address.
    ...(bridge ? [
      rule(CHAIN, match(concat(iif, payload('arp', 'saddr ether')), `@${SETS.macs}`, '!='), toDrop),
      rule(CHAIN, match(concat(iif, payload('arp', 'saddr ip')), `@${SETS.v4}`), { accept: null }),
      rule(CHAIN, match(payload('arp', 'saddr ip'), '0.0.0.0'), { accept: null }),
    ] : []),
    // IPv4.
    rule(CHAIN, match(concat(iif, payload('ip', 'saddr')), `@${SETS.v4}`), { accept: null }),
    rule(CHAIN, match(payload('ip', 'saddr'), '0.0.0.0'), match(payload('udp', 'dport'), 67), { accept: null }),
    // IPv6: advertisements go through the port's own chain, and without one are dropped.
    rule(CHAIN, match(payload('icmpv6', 'type'), 'nd-neighbor-advert'), { vmap: { key: iif, data: `@${SETS.na}` } }),
    rule(CHAIN, match(payload('icmpv6', 'type'), 'nd-neighbor-advert'), toDrop),
    rule(CHAIN, match(concat(iif, payload('ip6', 'saddr')), `@${SETS.v6}`), { accept: null }),
    rule(CHAIN, match(payload('ip6', 'saddr'), '::'),
      match(payload('icmpv6', 'type'), { set: ['nd-neighbor-solicit', 'mld-listener-report', 'mld2-listener-report'] }), { accept: null }),
    rule(CHAIN, toDrop),
  ];
}

const familyOf = (p: GuardedPort): GuardFamily => p.family ?? 'bridge';

const hex128 = (ip: string) => `0x${parseIp(ip)!.value.toString(16).padStart(32, '0')}`;

/**
 * The port a past ADD guarded, for taking its guard away (DEL, GC, leak
 * reclaim): the record's MAC and addresses, else prevResult's (a record lost
 * with the state dir), else the MAC the addresses imply. The delete is exact
 * only for what the ADD added.
 */
export function recordedPort(hostVeth: string, rec: AttachmentRecord | undefined, prev: Result | undefined): GuardedPort {
  const cidrs = rec?.ips ?? prev?.ips?.map((i) => i.address) ?? [];
  const mac = rec?.mac ?? prev?.interfaces?.find((i) => i.sandbox)?.mac ?? macFor(cidrs.map((address) => ({ address })));
  return { hostVeth, mac, ips: cidrs.map((a) => a.split('/')[0]!), level: 'addresses' };
}

/** The port's set and map elements, as [set, element] pairs (also what CHECK looks for). */
export function guardElements(p: GuardedPort): [string, unknown][] {
  const out: [string, unknown][] = [[SETS.ports, p.hostVeth], [SETS.drops, [p.hostVeth, dropCounter(p.hostVeth)]]];
  if (p.level === 'none') return out;
  out.push([SETS.macIfs, p.hostVeth], [SETS.macs, concat(p.hostVeth, p.mac)]);
  if (p.level === 'mac') return out;
  out.push([SETS.ipIfs, p.hostVeth], [SETS.na, [p.hostVeth, { goto: { target: naChain(p.hostVeth) } }]]);
  for (const ip of v4s(p)) out.push([SETS.v4, concat(p.hostVeth, ip)]);
  for (const ip of v6s(p)) out.push([SETS.v6, concat(p.hostVeth, ip)]);
  return out;
}

const v4s = (p: GuardedPort) => p.ips.map(parseIp).filter((ip) => ip?.family === 4).map((ip) => formatIp(ip!));
/** The pod's IPv6 addresses and its link-local one (NDP needs it, also on an IPv4-only pod). */
const v6s = (p: GuardedPort) => [...new Set([...p.ips, linkLocalOf(p.mac)].map(parseIp).filter((ip) => ip?.family === 6).map((ip) => formatIp(ip!)))];

/** The objects a port's elements name: its drop counter and, for address checks, its advertisement chain. */
function portObjects(p: GuardedPort, withRules: boolean): NftCommand[] {
  const T = tableOf(familyOf(p));
  const rule = ruleIn(T);
  const out: NftCommand[] = [{ add: { counter: { ...T, name: dropCounter(p.hostVeth) } } }];
  if (p.level !== 'addresses') return out;
  const chain = naChain(p.hostVeth);
  out.push({ add: { chain: { ...T, name: chain } } }, { flush: { chain: { ...T, name: chain } } });
  if (withRules) {
    out.push(
      rule(chain, match(naTarget, { set: v6s(p).map(hex128) }, '!='), toDrop),
      rule(chain, match(concat(iif, payload('ip6', 'saddr')), `@${SETS.v6}`), { accept: null }),
      rule(chain, toDrop),
    );
  }
  return out;
}

function elements(verb: 'add' | 'delete', p: GuardedPort): NftCommand[] {
  const T = tableOf(familyOf(p));
  return guardElements(p).map(([name, elem]) => ({ [verb]: { element: { ...T, name, elem: [elem] } } }));
}

/** ADD: the port's guard, complete in one transaction. */
export function guardAdd(p: GuardedPort): NftCommand[] {
  return [...skeleton(familyOf(p)), ...portObjects(p, true), ...elements('add', p)];
}

/**
 * DEL: removes the port's elements and objects, at every level (whatever the
 * ADD used), whether or not they exist: adding first makes every delete
 * valid, so the transaction cannot fail on something already gone (nft 1.0.6
 * has no "destroy").
 */
export function guardDel(port: GuardedPort): NftCommand[] {
  const p: GuardedPort = { ...port, level: 'addresses' };
  const T = tableOf(familyOf(p));
  return [
    ...skeleton(familyOf(p)), ...portObjects(p, false), ...elements('add', p), ...elements('delete', p),
    { delete: { counter: { ...T, name: dropCounter(p.hostVeth) } } },
    { delete: { chain: { ...T, name: naChain(p.hostVeth) } } },
  ];
}

interface GuardTable {
  elems: Map<string, Set<string>>;
  counters: Map<string, number>;
}

/** The kernel's guard table: set and map elements (as JSON, the form guardElements gives) and counters; undefined when it is missing. */
async function readGuardTable(family: GuardFamily): Promise<GuardTable | undefined> {
  const objects = await listTable(family, GUARD_TABLE);
  if (typeof objects === 'string') return undefined;
  const out: GuardTable = { elems: new Map(), counters: new Map() };
  for (const o of objects) {
    const s = o.set ?? o.map;
    if (s?.name) out.elems.set(s.name, new Set((s.elem ?? []).map((e) => JSON.stringify(e))));
    if (o.counter?.name) out.counters.set(o.counter.name, o.counter.packets ?? 0);
  }
  return out;
}

/** CHECK: the port's elements are all in the kernel; code 103 naming what is missing otherwise. */
export async function checkGuard(p: GuardedPort): Promise<void> {
  const t = await readGuardTable(familyOf(p));
  const missing = t
    ? guardElements(p).filter(([name, elem]) => !t.elems.get(name)?.has(JSON.stringify(elem))).map(([name, elem]) => `${name} ${JSON.stringify(elem)}`)
    : ['the whole table'];
  if (missing.length) {
    throw new CniError(Code.CheckFailed, 'the pod\'s port guard is not in the kernel',
      `missing in table ${familyOf(p)} ${GUARD_TABLE}: ${firstOf(missing)}; the pod must be re-created (DEL and ADD)`);
  }
}

/** Frames dropped per guarded port since its ADD (`policy stats`). */
export async function guardDrops(): Promise<{ port: string; dropped: number }[]> {
  const tables = await Promise.all((['bridge', 'inet'] as const).map(readGuardTable));
  return tables.flatMap((t) => [...(t?.elems.get(SETS.drops) ?? [])].map((e) => {
    const [port, counter] = JSON.parse(e) as [string, string];
    return { port, dropped: t!.counters.get(counter) ?? 0 };
  })).sort((a, b) => a.port.localeCompare(b.port));
}

/** The chain's port guard module (macspoofchk and more): per-pod elements, added in the ADD's transaction. */
export const macspoof: ChainModule = {
  name: 'macspoof',
  add(x, plan) {
    plan.nft.push(...guardAdd(guardedPort(x)));
  },
  del(t, plan) {
    for (const p of t.ports) plan.nft.push(...guardDel(p));
  },
  async check({ c, prev, hostVeth }) {
    const mac = prev.interfaces?.find((i) => i.sandbox)?.mac;
    if (mac) await checkGuard({ hostVeth, mac, ips: (prev.ips ?? []).map((i) => i.address.split('/')[0]!), level: c.cfg.guard });
  },
};
