// The host-local IPAM configuration (the reference host-local's keys, checked the
// way it checks them, with the same messages) turned into ranges of parsed
// addresses. Pure: nothing here reads the disk.
import * as z from '../../cni/zod.js';
import { CniError, Code } from '../../cni/errors.js';
import { checkedPath } from '../../cni/paths.js';
import { formatIssues, type Route } from '../../cni/result.js';
import { atLeast, type CniVersion } from '../../cni/version.js';
import {
  add, bits, compare, contains, equal, formatCidr, formatIp, lastOf, networkOf,
  parseCidr, parseIp, parseIpMaybeCidr, type Cidr, type Ip,
} from '../../net/ip.js';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';

const str = z.optional(z.string());
const RangeInput = z.object({
  subnet: z.string(),
  rangeStart: str,
  rangeEnd: str,
  gateway: str,
});
const RangeSetInput = z.array(RangeInput);

const IpamInput = z.object({
  type: str,
  subnet: str,
  rangeStart: str,
  rangeEnd: str,
  gateway: str,
  ranges: z.optional(z.array(RangeSetInput)),
  routes: z.optional(z.array(z.object({ dst: z.string(), gw: str }))),
  dataDir: str,
  resolvConf: str,
});

/** The keys of a plugin config that host-local IPAM reads. */
export const IpamNetInput = z.object({
  ipam: z.optional(IpamInput),
  runtimeConfig: z.optional(z.object({ ipRanges: z.optional(z.array(RangeSetInput)), ips: z.optional(z.array(z.string())) })),
  args: z.optional(z.object({ cni: z.optional(z.object({ ips: z.optional(z.array(z.string())) })) })),
});

export interface Range {
  subnet: Cidr;
  start: Ip;
  end: Ip;
  gateway: Ip;
}
export type RangeSet = Range[];

export interface IpamConfig {
  network: string;
  dataDir: string;
  ranges: RangeSet[];
  routes: Route[];
  resolvConf?: string;
  /** Addresses asked for through CNI_ARGS IP=, args.cni.ips or runtimeConfig.ips. */
  requested: Ip[];
}

function invalid(msg: string, details = ''): CniError {
  return new CniError(Code.InvalidConfig, msg, details);
}

export function rangeString(r: Range): string {
  return `${formatIp(r.start)}-${formatIp(r.end)}`;
}

export function rangeSetString(s: RangeSet): string {
  return s.map(rangeString).join(',');
}

export function inRange(r: Range, ip: Ip): boolean {
  return contains(r.subnet, ip) && compare(ip, r.start) >= 0 && compare(ip, r.end) <= 0;
}

export function rangeFor(s: RangeSet, ip: Ip): Range | undefined {
  return s.find((r) => inRange(r, ip));
}

function parseAddr(text: string, what: string): Ip {
  const ip = parseIp(text);
  if (!ip) throw invalid(`cannot understand ${what} ${JSON.stringify(text)}`, 'expected an IPv4 or IPv6 address');
  return ip;
}

function canonicalRange(input: z.infer<typeof RangeInput>): Range {
  const subnet = parseCidr(input.subnet);
  if (!subnet) throw invalid(`cannot understand subnet ${JSON.stringify(input.subnet)}`, 'expected an address with a prefix, e.g. 10.1.2.0/24');
  const fam = subnet.ip.family;
  // Two host bits at least: a /31 or /32 (/127, /128) has no address to give.
  if (subnet.prefix > bits(fam) - 2) throw invalid(`Network ${formatCidr(subnet)} too small to allocate from`);
  const net = networkOf(subnet);
  if (!equal(net, subnet.ip)) {
    throw invalid(`Network has host bits set. For a subnet mask of length ${subnet.prefix} the network address is ${formatIp(net)}`);
  }
  const sameFamily = (ip: Ip, what: string) => {
    if (ip.family !== fam) throw invalid(`${what} ${formatIp(ip)} is not of the family of subnet ${formatCidr(subnet)}`);
    return ip;
  };
  const gateway = input.gateway ? sameFamily(parseAddr(input.gateway, 'gateway'), 'gateway') : add(net, 1n);
  const start = input.rangeStart ? sameFamily(parseAddr(input.rangeStart, 'rangeStart'), 'rangeStart') : add(net, 1n);
  if (!contains(subnet, start)) throw invalid(`RangeStart ${formatIp(start)} not in network ${formatCidr(subnet)}`);
  // Default end: the broadcast address is never handed out in IPv4; IPv6 has none.
  const end = input.rangeEnd
    ? sameFamily(parseAddr(input.rangeEnd, 'rangeEnd'), 'rangeEnd')
    : fam === 4 ? add(lastOf(subnet), -1n) : lastOf(subnet);
  if (!contains(subnet, end)) throw invalid(`RangeEnd ${formatIp(end)} not in network ${formatCidr(subnet)}`);
  // The reference refuses this too, as "RangeEnd … not in network …"; say what is wrong.
  if (compare(start, end) > 0) throw invalid(`RangeStart ${formatIp(start)} is after RangeEnd ${formatIp(end)}`);
  return { subnet: { ip: net, prefix: subnet.prefix }, start, end, gateway };
}

function rangesOverlap(a: Range, b: Range): boolean {
  return a.start.family === b.start.family &&
    (inRange(a, b.start) || inRange(a, b.end) || inRange(b, a.start) || inRange(b, a.end));
}

function canonicalRangeSet(input: z.infer<typeof RangeSetInput>): RangeSet {
  if (input.length === 0) throw invalid('empty range set');
  const set = input.map(canonicalRange);
  if (set.some((r) => r.start.family !== set[0]!.start.family)) throw invalid('mixed address families');
  for (let i = 0; i < set.length; i++) {
    for (let j = i + 1; j < set.length; j++) {
      if (rangesOverlap(set[i]!, set[j]!)) throw invalid(`subnets ${rangeString(set[i]!)} and ${rangeString(set[j]!)} overlap`);
    }
  }
  return set;
}

function parseRoute(r: { dst: string; gw?: string | undefined }, i: number): Route {
  const dst = parseCidr(r.dst);
  if (!dst) throw invalid(`ipam.routes[${i}].dst ${JSON.stringify(r.dst)} is not an address with a prefix`);
  if (r.gw !== undefined) {
    const gw = parseIp(r.gw);
    if (!gw) throw invalid(`ipam.routes[${i}].gw ${JSON.stringify(r.gw)} is not an IP address`);
    if (gw.family !== dst.ip.family) throw invalid(`ipam.routes[${i}]: gw ${r.gw} and dst ${r.dst} are of different families`);
    return { dst: r.dst, gw: r.gw };
  }
  return { dst: r.dst };
}

/**
 * Reads the IPAM part of a plugin config. `envIp` is CNI_ARGS IP=, already
 * split out of CNI_ARGS.
 */
export function loadIpamConfig(raw: Record<string, unknown>, network: string, version: CniVersion, envIp?: string): IpamConfig {
  const parsed = IpamNetInput.safeParse(raw);
  if (!parsed.success) throw invalid('invalid IPAM configuration', formatIssues(parsed.error, 'config'));
  const { ipam, runtimeConfig, args } = parsed.data;
  if (!ipam) throw invalid("IPAM config missing 'ipam' key");

  const requestedText = [
    ...(envIp ? [envIp] : []),
    ...(args?.cni?.ips ?? []),
    ...(runtimeConfig?.ips ?? []),
  ];
  const requested = requestedText.map((t) => {
    const ip = parseIpMaybeCidr(t);
    if (!ip) throw invalid(`cannot understand ip: ${JSON.stringify(t)}`, 'requested addresses look like 10.1.2.42 or 10.1.2.42/24');
    return ip;
  });

  // Precedence as in the reference: runtimeConfig.ipRanges, then the legacy
  // single range, then `ranges`.
  const inputs: z.infer<typeof RangeSetInput>[] = [...(runtimeConfig?.ipRanges ?? [])];
  if (ipam.subnet) {
    inputs.push([{ subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway }]);
  }
  inputs.push(...(ipam.ranges ?? []));
  if (inputs.length === 0) throw invalid('no IP ranges specified', 'set ipam.ranges (or ipam.subnet)');

  const ranges = inputs.map((set, i) => {
    try {
      return canonicalRangeSet(set);
    } catch (e) {
      throw invalid(`invalid range set ${i}: ${(e as Error).message}`, (e as CniError).details);
    }
  });

  // 0.1.0 and 0.2.0 results hold one address per family.
  const fams = ranges.map((s) => s[0]!.start.family);
  if (!atLeast(version, '0.3.0') && (fams.filter((f) => f === 4).length > 1 || fams.filter((f) => f === 6).length > 1)) {
    throw invalid(`CNI version ${version} does not support more than 1 address per family`);
  }
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (ranges[i]!.some((a) => ranges[j]!.some((b) => rangesOverlap(a, b)))) throw invalid(`range set ${i} overlaps with ${j}`);
    }
  }

  const out: IpamConfig = {
    network,
    dataDir: checkedPath(ipam.dataDir || DEFAULT_DATA_DIR, 'ipam.dataDir'),
    ranges,
    routes: (ipam.routes ?? []).map(parseRoute),
    requested,
  };
  if (ipam.resolvConf) out.resolvConf = checkedPath(ipam.resolvConf, 'ipam.resolvConf');
  return out;
}
