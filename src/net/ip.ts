// IP addresses as (family, bigint) pairs: cheap to compare, step and mask, and
// formatted exactly as Go's net.IP.String() does (RFC 5952 for IPv6), because the
// reference host-local names its reservation files that way.
import { Address4, Address6 } from 'ip-address';

export type Family = 4 | 6;

export interface Ip {
  readonly family: Family;
  readonly value: bigint;
}

export interface Cidr {
  /** The address as written (may have host bits set). */
  readonly ip: Ip;
  readonly prefix: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

export function bits(family: Family): number {
  return BITS[family];
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Parses a bare address; returns undefined when it is not one. */
export function parseIp(text: string): Ip | undefined {
  if (IPV4.test(text)) {
    // Four checked octets: cheaper by hand than through Address4 (this runs
    // for every address of every pod when policies are compiled).
    const [a, b, c, d] = text.split('.').map(Number) as [number, number, number, number];
    return { family: 4, value: BigInt(((a << 24) >>> 0) + (b << 16) + (c << 8) + d) };
  }
  if (!text.includes(':') || text.includes('/') || text.includes('%')) return undefined;
  if (!Address6.isValid(text)) return undefined;
  const value = new Address6(text).bigInt();
  // An IPv4-mapped address (::ffff:0:0/96, however it is spelled) is IPv4 to
  // Go's net package, and so to the reference plugins' file names.
  if (value >> 32n === 0xffffn) return { family: 4, value: value & 0xffffffffn };
  return { family: 6, value };
}

/** Parses `addr/prefix`; returns undefined when it is not one. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const p = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(p)) return undefined;
  const prefix = Number(p);
  if (prefix > BITS[ip.family]) return undefined;
  return { ip, prefix };
}

/** Parses an address with an optional prefix (`10.1.2.3` or `10.1.2.3/24`). */
export function parseIpMaybeCidr(text: string): Ip | undefined {
  return text.includes('/') ? parseCidr(text)?.ip : parseIp(text);
}

export function formatIp(ip: Ip): string {
  return ip.family === 4 ? Address4.fromBigInt(ip.value).address : Address6.fromBigInt(ip.value).correctForm();
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.ip)}/${c.prefix}`;
}

function mask(family: Family, prefix: number): bigint {
  const b = BigInt(BITS[family]);
  return ((1n << b) - 1n) ^ ((1n << (b - BigInt(prefix))) - 1n);
}

export function networkOf(c: Cidr): Ip {
  return { family: c.ip.family, value: c.ip.value & mask(c.ip.family, c.prefix) };
}

export function lastOf(c: Cidr): Ip {
  const hostBits = (1n << BigInt(BITS[c.ip.family] - c.prefix)) - 1n;
  return { family: c.ip.family, value: networkOf(c).value | hostBits };
}

export function contains(c: Cidr, ip: Ip): boolean {
  return ip.family === c.ip.family && (ip.value & mask(ip.family, c.prefix)) === networkOf(c).value;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return contains(a, networkOf(b)) || contains(b, networkOf(a));
}

export function equal(a: Ip | undefined, b: Ip | undefined): boolean {
  return !!a && !!b && a.family === b.family && a.value === b.value;
}

export function compare(a: Ip, b: Ip): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

export function add(ip: Ip, n: bigint): Ip {
  return { family: ip.family, value: ip.value + n };
}
