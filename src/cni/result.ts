// Results (SPEC.md "Success", "Version considerations"). Inside, a result is
// always the 1.1.0 shape; it is converted down to the config's version only when
// printed, and a prevResult of any version is converted up when read.
import * as z from './zod.js';
import { parseCidr, parseIp } from '../net/ip.js';
import { CniError, Code } from './errors.js';
import { resultFamily, type CniVersion } from './version.js';

const ipString = z.string().check(z.refine((s) => parseIp(s) !== undefined, 'must be an IP address'));
const cidrString = z.string().check(z.refine((s) => parseCidr(s) !== undefined, 'must be an address with a prefix, e.g. 10.1.0.5/24'));
const count = z.optional(z.number().check(z.int(), z.nonnegative()));
const strings = z.optional(z.array(z.string()));

export const DnsSchema = z.object({
  nameservers: strings,
  domain: z.optional(z.string()),
  search: strings,
  options: strings,
});

export const InterfaceSchema = z.object({
  name: z.string(),
  mac: z.optional(z.string()),
  mtu: count,
  sandbox: z.optional(z.string()),
  socketPath: z.optional(z.string()),
  pciID: z.optional(z.string()),
});

export const IpConfigSchema = z.object({
  address: cidrString,
  gateway: z.optional(ipString),
  interface: count,
});

export const RouteSchema = z.object({
  dst: cidrString,
  gw: z.optional(ipString),
  mtu: count,
  advmss: count,
  priority: count,
  table: count,
  scope: count,
});

/** A 0.3.0 … 1.1.0 result; `ips[].version` (0.3/0.4) is accepted and dropped. */
export const ResultSchema = z.object({
  cniVersion: z.optional(z.string()),
  interfaces: z.optional(z.array(InterfaceSchema)),
  ips: z.optional(z.array(IpConfigSchema)),
  routes: z.optional(z.array(RouteSchema)),
  dns: z.optional(DnsSchema),
});

const LegacyIpSchema = z.object({
  ip: cidrString,
  gateway: z.optional(ipString),
  routes: z.optional(z.array(z.object({ dst: cidrString, gw: z.optional(ipString) }))),
});

/** A 0.1.0 / 0.2.0 result. */
export const LegacyResultSchema = z.object({
  cniVersion: z.optional(z.string()),
  ip4: z.optional(LegacyIpSchema),
  ip6: z.optional(LegacyIpSchema),
  dns: z.optional(DnsSchema),
});

export type Dns = z.infer<typeof DnsSchema>;
export type IpConfig = z.infer<typeof IpConfigSchema>;
export type Route = z.infer<typeof RouteSchema>;
export type Result = z.infer<typeof ResultSchema>;

function familyOf(cidr: string): 4 | 6 {
  return parseCidr(cidr)!.ip.family;
}

function nonEmptyDns(d: Dns | undefined): Dns | undefined {
  if (!d) return undefined;
  const out: Dns = {};
  if (d.nameservers?.length) out.nameservers = d.nameservers;
  if (d.domain) out.domain = d.domain;
  if (d.search?.length) out.search = d.search;
  if (d.options?.length) out.options = d.options;
  return Object.keys(out).length ? out : undefined;
}

function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const k of keys) if (o[k] !== undefined && o[k] !== '') out[k] = o[k];
  return out;
}

/** Converts a 1.1.0-shaped result to what a config of `version` expects to read. */
export function toVersion(r: Result, version: CniVersion): Record<string, unknown> {
  const family = resultFamily(version);
  const dns = nonEmptyDns(r.dns);
  if (family === 'legacy') {
    const out: Record<string, unknown> = { cniVersion: version };
    for (const fam of [4, 6] as const) {
      const first = r.ips?.find((ip) => familyOf(ip.address) === fam);
      if (!first) continue;
      const routes = (r.routes ?? []).filter((rt) => familyOf(rt.dst) === fam).map((rt) => pick(rt, ['dst', 'gw'] as const));
      const entry: Record<string, unknown> = { ip: first.address };
      if (first.gateway) entry.gateway = first.gateway;
      if (routes.length) entry.routes = routes;
      out[`ip${fam}`] = entry;
    }
    if (!out.ip4 && !out.ip6) {
      throw new CniError(Code.IncompatibleVersion, 'cannot convert: no valid IP addresses', `cniVersion ${version} results must carry an IP address`);
    }
    if (dns) out.dns = dns;
    return out;
  }
  const ifaceKeys = family === 'v1' && version === '1.1.0'
    ? (['name', 'mac', 'mtu', 'sandbox', 'socketPath', 'pciID'] as const)
    : (['name', 'mac', 'sandbox'] as const);
  const routeKeys = version === '1.1.0'
    ? (['dst', 'gw', 'mtu', 'advmss', 'priority', 'table', 'scope'] as const)
    : (['dst', 'gw'] as const);
  const out: Record<string, unknown> = { cniVersion: version };
  if (r.interfaces?.length) out.interfaces = r.interfaces.map((i) => pick(i, ifaceKeys));
  if (r.ips?.length) {
    out.ips = r.ips.map((ip) => {
      const e: Record<string, unknown> = {};
      if (family === 'v04') e.version = String(familyOf(ip.address));
      if (ip.interface !== undefined) e.interface = ip.interface;
      e.address = ip.address;
      if (ip.gateway) e.gateway = ip.gateway;
      return e;
    });
  }
  if (r.routes?.length) out.routes = r.routes.map((rt) => pick(rt, routeKeys));
  if (dns) out.dns = dns;
  return out;
}

/** Reads a prevResult of any supported version into the 1.1.0 shape. */
export function parsePrevResult(raw: unknown, configVersion: CniVersion): Result {
  const v = typeof raw === 'object' && raw !== null && 'cniVersion' in raw ? String(raw.cniVersion) : configVersion;
  const legacy = v === '0.1.0' || v === '0.2.0';
  const parsed = (legacy ? LegacyResultSchema : ResultSchema).safeParse(raw);
  if (!parsed.success) {
    throw new CniError(Code.DecodeFailure, 'failed to decode prevResult', formatIssues(parsed.error, 'prevResult'));
  }
  if (!legacy) return parsed.data as Result;
  const l = parsed.data as z.infer<typeof LegacyResultSchema>;
  const out: Result = { cniVersion: v, ips: [], routes: [] };
  for (const e of [l.ip4, l.ip6]) {
    if (!e) continue;
    out.ips!.push(e.gateway ? { address: e.ip, gateway: e.gateway } : { address: e.ip });
    out.routes!.push(...(e.routes ?? []));
  }
  if (l.dns) out.dns = l.dns;
  return out;
}

/** "ipam.ranges[0][0].subnet: must be …" lines from a zod error. */
export function formatIssues(err: z.core.$ZodError, root: string): string {
  return err.issues
    .map((i) => {
      const path = i.path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : `${acc}.${String(p)}`), root);
      return `${path}: ${i.message}`;
    })
    .join('; ');
}
