// IP masquerade for traffic leaving the pod subnets, in nhi-cni's own nftables
// table `inet nhi_cni`. Each (network, subnet) has one base chain holding one
// rule ("from the subnet, not to it, not multicast: masquerade"), so packets
// pay one prefix match however many pods there are, and DEL has nothing per
// pod to remove. Every ADD re-asserts the chains of its pod's subnets in its
// nft transaction (add table, add chain, flush chain, add rule): idempotent,
// never touching another subnet's chain, and self-healing after someone
// flushed the ruleset.
// With `clusterCIDR` set, destinations inside the cluster's pod networks are
// not masqueraded either (one more prefix match per cluster CIDR of the
// subnet's family): a pod on another node sees the sender's pod address,
// which is Kubernetes' network model and what a policy on that node judges.
import { createHash } from 'node:crypto';
import { formatIp, networkOf, parseCidr } from '../net/ip.js';
import type { NftCommand } from '../sys/nft.js';
import { listNft } from '../sys/nft.js';
import type { IpConfig } from '../cni/result.js';
import { CniError, Code } from '../cni/errors.js';
import { addedIps, type ChainModule } from './module.js';
import type { Plan } from './plan.js';

export const TABLE = 'nhi_cni';
const FAMILY = 'inet';

function digest(network: string, subnet: string): string {
  return createHash('sha256').update(`${network}\0${subnet}`).digest('hex');
}

/** The chain's name: a hash, so any network name (up to 255 characters) fits nft's 256-byte limit. */
export function masqChain(network: string, subnet: string): string {
  return `masq_${digest(network, subnet).slice(0, 16)}`;
}

// nft stores a rule comment as user data of at most 128 bytes (the text
// parser refuses more; the JSON parser fails the whole transaction with
// "Memory allocation failure" past 256). A network name may be 255
// characters, so a long one is cut and ended with a hash of the name and
// subnet, which keeps comments of different networks apart. Comments that
// fit are unchanged from earlier versions.
export const MAX_COMMENT = 128;

export function masqComment(network: string, subnet: string): string {
  const full = `nhi-cni masquerade ${subnet} network ${network}`;
  if (Buffer.byteLength(full) <= MAX_COMMENT) return full;
  const tail = `~${digest(network, subnet).slice(0, 8)}`;
  const head = `nhi-cni masquerade ${subnet} network `;
  let name = network.slice(0, MAX_COMMENT - head.length - tail.length);
  // Network names are ASCII (src/cni/config.ts); should one not be, cut by bytes.
  while (Buffer.byteLength(`${head}${name}${tail}`) > MAX_COMMENT) name = name.slice(0, -1);
  return `${head}${name}${tail}`;
}

/** The networks (as CIDRs) of a pod's addresses. */
export function subnetsOf(ips: IpConfig[]): string[] {
  return [...new Set(ips.map((i) => {
    const c = parseCidr(i.address)!;
    return `${formatIp(networkOf(c))}/${c.prefix}`;
  }))].sort();
}

function prefixMatch(proto: 'ip' | 'ip6', field: 'saddr' | 'daddr', op: '==' | '!=', cidr: string) {
  const [addr, len] = cidr.split('/');
  return { match: { op, left: { payload: { protocol: proto, field } }, right: { prefix: { addr, len: Number(len) } } } };
}

export function masqCommands(network: string, subnet: string, clusterCIDRs: readonly string[] = []): NftCommand[] {
  const chain = masqChain(network, subnet);
  const v6 = subnet.includes(':');
  const proto = v6 ? 'ip6' : 'ip';
  const inCluster = clusterCIDRs.filter((c) => c.includes(':') === v6).map((c) => prefixMatch(proto, 'daddr', '!=', c));
  return [
    { add: { table: { family: FAMILY, name: TABLE } } },
    { add: { chain: { family: FAMILY, table: TABLE, name: chain, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } } },
    { flush: { chain: { family: FAMILY, table: TABLE, name: chain } } },
    {
      add: {
        rule: {
          family: FAMILY, table: TABLE, chain,
          comment: masqComment(network, subnet),
          expr: [
            prefixMatch(proto, 'saddr', '==', subnet),
            prefixMatch(proto, 'daddr', '!=', subnet),
            prefixMatch(proto, 'daddr', '!=', v6 ? 'ff00::/8' : '224.0.0.0/4'),
            ...inCluster,
            { masquerade: null },
          ],
        },
      },
    },
  ];
}

export function masqAdd(network: string, ips: IpConfig[], plan: Plan, clusterCIDRs: readonly string[] = []): void {
  for (const s of subnetsOf(ips)) plan.nft.push(...masqCommands(network, s, clusterCIDRs));
}

/** Whether the masquerade chain of (network, subnet) is in the kernel. */
export async function masqInstalled(network: string, subnet: string): Promise<boolean> {
  const r = await listNft(['chain', FAMILY, TABLE, masqChain(network, subnet)]);
  return r.exitCode === 0 && r.stdout.includes('"masquerade"');
}

/** The chain's masquerade module: one chain per (network, subnet), shared by the subnet's pods, so DEL leaves it. */
export const masq: ChainModule = {
  name: 'masq',
  add(x, plan) {
    const { cfg, req } = x.c;
    if (cfg.ipMasq) masqAdd(req.config.name, addedIps(x), plan, cfg.clusterCIDRs);
  },
  del() {},
  async check({ c, prev }) {
    if (!c.cfg.ipMasq) return;
    for (const s of subnetsOf(prev.ips ?? [])) {
      if (!(await masqInstalled(c.req.config.name, s))) throw new CniError(Code.CheckFailed, `masquerade for ${s} is not installed (table inet nhi_cni)`);
    }
  },
};
