// The configuration of plugin type `nhi-cni`: the reference bridge plugin's
// keys where they overlap, checked once, up front.
import * as z from '../cni/zod.js';
import { CniError, Code } from '../cni/errors.js';
import { validateIfname } from '../cni/env.js';
import { checkedPath } from '../cni/paths.js';
import { formatIp, networkOf, parseCidr } from '../net/ip.js';
import { DnsSchema, formatIssues, type Dns } from '../cni/result.js';
import type { GuardLevel } from './spoofcheck.js';

export const DEFAULT_BRIDGE = 'nhi0';
export const DEFAULT_STATE_DIR = '/var/lib/nhi-cni';
export const DEFAULT_RUN_DIR = '/run/nhi-cni';
/** The run dir: node-local caches and nft's input files (NHI_CNI_RUN_DIR for tests). */
export const runDir = (): string => process.env.NHI_CNI_RUN_DIR || DEFAULT_RUN_DIR;
/** ipam.type values run in-process; anything else is executed from CNI_PATH. */
export const BUILTIN_IPAM = ['host-local', 'nhi-ipam'];

const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

const bool = z.optional(z.boolean());
const macOnly = z.optional(z.looseObject({ mac: z.optional(z.string()) }));

export const CniConfigInput = z.object({
  bridge: z.optional(z.string()),
  isGateway: bool,
  isDefaultGateway: bool,
  forceAddress: bool,
  ipMasq: bool,
  clusterCIDR: z.optional(z.union([z.string(), z.array(z.string()).check(z.minLength(1), z.maxLength(16))])),
  mtu: z.optional(z.number().check(z.int(), z.gte(68), z.lte(65535))),
  hairpinMode: bool,
  promiscMode: bool,
  macspoofchk: bool,
  spoofcheck: bool,
  dns: z.optional(DnsSchema),
  ipam: z.optional(z.looseObject({ type: z.string().check(z.minLength(1)) })),
  stateDir: z.optional(z.string()),
  runtimeConfig: macOnly,
  args: z.optional(z.looseObject({ cni: macOnly })),
});

export interface CniConfig {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  /** The cluster's pod networks (normalised CIDRs): never masqueraded to (`clusterCIDR`). */
  clusterCIDRs: string[];
  mtu?: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  macspoofchk: boolean;
  /** Source validation of the pod's frames: MAC and addresses (default), MAC only, or none (the RA guard stays). */
  guard: GuardLevel;
  dns?: Dns;
  ipamType: string;
  stateDir: string;
  mac?: string;
}

/** `clusterCIDR` (one CIDR or a list, IPv4 and IPv6) as network/prefix texts, or a code-7 error naming the bad entry. */
export function parseClusterCidrs(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  const out: string[] = [];
  for (const [i, t] of (Array.isArray(v) ? v : [v]).entries()) {
    const at = Array.isArray(v) ? `clusterCIDR[${i}]` : 'clusterCIDR';
    const c = parseCidr(t);
    if (!c) throw invalid(`${at} ${JSON.stringify(t.slice(0, 60))} is not a CIDR`, 'expected e.g. "10.244.0.0/16" or "fd00:10:244::/56"');
    const net = `${formatIp(networkOf(c))}/${c.prefix}`;
    if (networkOf(c).value !== c.ip.value) throw invalid(`${at} ${t} has host bits set`, `did you mean ${net}?`);
    if (!out.includes(net)) out.push(net);
  }
  return out;
}

function invalid(msg: string, details = ''): CniError {
  return new CniError(Code.InvalidConfig, msg, details);
}

export function loadCniConfig(raw: Record<string, unknown>, envMac?: string): CniConfig {
  const p = CniConfigInput.safeParse(raw);
  if (!p.success) throw invalid('invalid nhi-cni configuration', formatIssues(p.error, 'config'));
  const c = p.data;
  const bridge = c.bridge ?? DEFAULT_BRIDGE;
  const why = validateIfname(bridge);
  if (why) throw invalid(`bridge name ${JSON.stringify(bridge)} ${why}`);
  if (!c.ipam) throw invalid("missing 'ipam': nhi-cni needs an IPAM section (type host-local or nhi-ipam runs built in)");
  if (c.hairpinMode && c.promiscMode) throw invalid('cannot set hairpin mode and promiscuous mode at the same time');
  // MAC precedence as in the reference: runtimeConfig.mac, args.cni.mac, CNI_ARGS MAC=.
  // Empty values fall through to the next source, as in the reference.
  const mac = [c.runtimeConfig?.mac, c.args?.cni?.mac, envMac].find((m) => m !== undefined && m !== '');
  if (mac !== undefined) {
    if (!MAC.test(mac)) throw invalid(`invalid MAC address ${JSON.stringify(mac)}`, 'expected six hex pairs separated by ":"');
    if (Number.parseInt(mac.slice(0, 2), 16) & 1) throw invalid(`MAC address ${mac} is a multicast address`);
  }
  const stateDir = checkedPath(c.stateDir ?? DEFAULT_STATE_DIR, 'stateDir');
  const out: CniConfig = {
    bridge,
    isGateway: c.isGateway === true || c.isDefaultGateway === true,
    isDefaultGateway: c.isDefaultGateway === true,
    forceAddress: c.forceAddress === true,
    ipMasq: c.ipMasq === true,
    clusterCIDRs: parseClusterCidrs(c.clusterCIDR),
    hairpinMode: c.hairpinMode === true,
    promiscMode: c.promiscMode === true,
    macspoofchk: c.macspoofchk === true,
    guard: c.spoofcheck !== false ? 'addresses' : c.macspoofchk === true ? 'mac' : 'none',
    ipamType: c.ipam.type,
    stateDir,
  };
  if (c.mtu !== undefined) out.mtu = c.mtu;
  if (c.dns && (c.dns.nameservers?.length || c.dns.domain || c.dns.search?.length || c.dns.options?.length)) out.dns = c.dns;
  if (mac !== undefined) out.mac = mac.toLowerCase();
  return out;
}
