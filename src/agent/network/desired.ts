// What the kernel of this node should hold, computed from the node list and a
// few facts about the node itself: pure, so every rule (who is refused and
// why, which route goes where) is unit-tested without root. The reconciler
// (node-network.ts) reads the kernel's state and applies the difference.
import { compare, contains, formatIp, overlaps, parseIp, type Cidr, type Family, type Ip } from '../../net/ip.js';
import type { Encryption, NodeInfo, Overlay, Refusal } from './types.js';
import { nodeNameProblem, parseNodeAddress, parsePodCidr, validWireguardKey } from './validate.js';
import { podMtuFor, vtepIp, vtepMac } from './vtep.js';

export const VXLAN_DEV = 'nhi-vxlan';
export const WG_DEV = 'nhi-wg';
/** The routing protocol number our routes carry (`proto 93`), so ours are told from everyone else's. */
export const ROUTE_PROTO = '93';

export interface RouteSpec {
  dst: string;
  type: 'unicast' | 'unreachable';
  gateway?: string;
  dev?: string;
  onlink?: boolean;
}

export interface PeerSpec {
  node: string;
  publicKey: string;
  endpoint: string;
  allowedIps: string[];
}

/** A route of the main table as `ip -j route` shows it, reduced to what matters here. */
export interface KernelRoute {
  dst: Cidr | 'default';
  family: Family;
  type: string;
  gateway?: string;
  dev?: string;
  protocol: string;
}

export interface LocalFacts {
  nodeIP: Ip;
  underlayDevice: string;
  underlayMtu: number;
  /** The main table's routes (for "is this node on my L2"). */
  routes: KernelRoute[];
  /** Ours, when encryption is WireGuard. */
  publicKey?: string;
}

export interface DesiredConfig {
  self: string;
  overlay: Overlay;
  encryption: Encryption;
  vxlanPort: number;
  vni: number;
  wireguardPort: number;
}

export interface Desired {
  vxlan?: { vni: number; port: number; local: string; mac: string; mtu: number };
  wireguard?: { mtu: number; port: number };
  /** Addresses (`ip/len`) per device of ours. */
  addresses: Map<string, string[]>;
  routes: RouteSpec[];
  neighbours: { ip: string; mac: string }[];
  fdb: { mac: string; dst: string }[];
  peers: PeerSpec[];
  podMtu: number;
  programmed: { node: string; nodeIP: string; podCIDRs: string[] }[];
  refused: Refusal[];
}

const cidrText = (c: Cidr) => `${formatIp(c.ip)}/${c.prefix}`;

/** The route of the main table (not ours) that the kernel would use for `ip`: longest prefix, lowest metric is not modelled (first of the longest). */
function lookup(routes: KernelRoute[], ip: Ip): KernelRoute | undefined {
  let best: KernelRoute | undefined;
  let bestLen = -1;
  for (const r of routes) {
    if (r.family !== ip.family || r.protocol === ROUTE_PROTO) continue;
    const len = r.dst === 'default' ? 0 : r.dst.prefix;
    if (r.dst !== 'default' && !contains(r.dst, ip)) continue;
    if (len > bestLen) {
      best = r;
      bestLen = len;
    }
  }
  return best;
}

/** Why `ip` is not directly reachable (same L2), or undefined when it is. */
export function notDirect(routes: KernelRoute[], ip: Ip): string | undefined {
  const r = lookup(routes, ip);
  if (!r) return `no route to ${formatIp(ip)}`;
  if (r.type !== 'unicast') return `${formatIp(ip)} is ${r.type}`;
  if (r.gateway) return `${formatIp(ip)} is reached through the router ${r.gateway}${r.dev ? ` on ${r.dev}` : ''}, not on this node's link`;
  if (r.dev === VXLAN_DEV || r.dev === WG_DEV) return `${formatIp(ip)} is routed through ${r.dev}`;
  return undefined;
}

/** Why one of `cidrs` would replace or shadow a route of the node that is not ours (the default route aside), or undefined. */
function shadowed(cidrs: Cidr[], routes: KernelRoute[]): string | undefined {
  for (const c of cidrs) {
    for (const r of routes) {
      if (r.protocol === ROUTE_PROTO || r.dst === 'default' || r.family !== c.ip.family) continue;
      if (overlaps(r.dst, c)) return `pod CIDR ${cidrText(c)} overlaps this node's route ${cidrText(r.dst)}${r.dev ? ` on ${r.dev}` : ''}`;
    }
  }
  return undefined;
}

interface Candidate {
  node: NodeInfo;
  cidrs: Cidr[];
}

function firstAddress(n: NodeInfo, family: Family): Ip | undefined {
  for (const a of Array.isArray(n.addresses) ? n.addresses : []) {
    if (a?.type !== 'InternalIP') continue;
    const ip = parseNodeAddress(a.address);
    if (ip && ip.family === family) return ip;
  }
  return undefined;
}

/** This node's underlay address: the configured one, else its first InternalIP. */
export function selfNodeIp(self: NodeInfo | undefined, configured?: string): Ip | string {
  if (configured !== undefined) {
    const ip = parseNodeAddress(configured);
    return ip ?? `node IP ${JSON.stringify(configured)} is not a unicast address`;
  }
  if (!self) return 'this node is not in the node list, and no node IP is configured';
  return firstAddress(self, 4) ?? firstAddress(self, 6) ?? `node ${self.name} has no InternalIP address; pass --node-ip`;
}

/** The pod CIDRs of a node, or why they cannot be used. */
function podCidrsOf(n: NodeInfo): Cidr[] | string {
  if (!Array.isArray(n.podCIDRs)) return 'spec.podCIDRs is not a list';
  if (n.podCIDRs.length === 0) return 'has no pod CIDR assigned yet';
  if (n.podCIDRs.length > 2) return `has ${n.podCIDRs.length} pod CIDRs (at most one per family)`;
  const out: Cidr[] = [];
  for (const t of n.podCIDRs) {
    const c = parsePodCidr(t);
    if (typeof c === 'string') return c;
    if (out.some((o) => o.ip.family === c.ip.family)) return 'has two pod CIDRs of one family';
    out.push(c);
  }
  return out;
}

export function computeDesired(cfg: DesiredConfig, nodes: NodeInfo[], facts: LocalFacts): Desired {
  const refused: Refusal[] = [];
  const selfNode = nodes.find((n) => n?.name === cfg.self);
  const selfCidrs = selfNode ? podCidrsOf(selfNode) : [];
  const own = typeof selfCidrs === 'string' ? [] : selfCidrs;
  if (typeof selfCidrs === 'string' && selfNode) refused.push({ node: cfg.self, reason: `this node ${selfCidrs}` });
  const family = facts.nodeIP.family;
  const tunnel = cfg.overlay !== 'none';
  const wg = tunnel && cfg.encryption === 'wireguard';
  const vxlan = cfg.overlay === 'vxlan' && !wg;
  const d: Desired = {
    addresses: new Map(),
    routes: [],
    neighbours: [],
    fdb: [],
    peers: [],
    podMtu: podMtuFor(facts.underlayMtu, cfg.overlay, cfg.encryption, family),
    programmed: [],
    refused,
  };
  const vteps = [4, 6].map((f) => vtepIp(own, f as Family)).filter((v): v is string => !!v);
  const vtepAddrs = vteps.map((v) => `${v}/${v.includes(':') ? 128 : 32}`);
  if (vxlan) {
    d.vxlan = { vni: cfg.vni, port: cfg.vxlanPort, local: formatIp(facts.nodeIP), mac: vtepMac(cfg.self), mtu: d.podMtu };
    d.addresses.set(VXLAN_DEV, vtepAddrs);
  }
  if (wg) {
    d.wireguard = { mtu: d.podMtu, port: cfg.wireguardPort };
    d.addresses.set(WG_DEV, vtepAddrs);
  }
  if (!tunnel) return d;

  const nodeIps = [facts.nodeIP, ...nodes.flatMap((n) => (n && Array.isArray(n.addresses) ? n.addresses.map((a) => parseNodeAddress(a?.address)).filter((x): x is Ip => !!x) : []))];
  // Deterministic order: the same list in any order gives the same kernel state.
  const seen = new Set<string>([cfg.self]);
  const taken: Cidr[] = [...own];
  const keys = new Set<string>(facts.publicKey ? [facts.publicKey] : []);
  const sorted = nodes
    .filter((n) => n && typeof n === 'object' && n.name !== cfg.self)
    .sort((a, b) => (String(a.name) < String(b.name) ? -1 : String(a.name) > String(b.name) ? 1 : 0));
  for (const node of sorted) {
    const label = nodeNameProblem(node.name) ? `(invalid name) ${JSON.stringify(String(node.name).slice(0, 60))}` : node.name;
    const refuse = (reason: string, c?: Candidate) => {
      refused.push({ node: label, reason });
      // Encryption fails closed: the pods of a node we cannot encrypt to are
      // unreachable, rather than sent in clear out of the default route.
      if (wg && c) for (const x of c.cidrs) if (!taken.some((t) => overlaps(t, x))) d.routes.push({ dst: cidrText(x), type: 'unreachable' });
    };
    const nameWhy = nodeNameProblem(node.name);
    if (nameWhy) {
      refuse(nameWhy);
      continue;
    }
    if (seen.has(node.name)) {
      refuse('appears twice in the node list');
      continue;
    }
    seen.add(node.name);
    const cidrs = podCidrsOf(node);
    if (typeof cidrs === 'string') {
      refuse(cidrs);
      continue;
    }
    const clash = cidrs.find((c) => taken.some((t) => overlaps(t, c)));
    if (clash) {
      refuse(`pod CIDR ${cidrText(clash)} overlaps this node's or another node's`);
      continue;
    }
    // A Node object must not be able to take over the node's own routing: a
    // pod CIDR over the underlay's network (or any route not ours) would
    // replace or shadow it, and one holding a node address would loop the
    // tunnel into itself.
    const shadow = shadowed(cidrs, facts.routes);
    if (shadow) {
      refuse(shadow);
      continue;
    }
    const held = cidrs.find((c) => nodeIps.some((ip) => contains(c, ip)));
    if (held) {
      refuse(`pod CIDR ${cidrText(held)} holds a node address`);
      continue;
    }
    const cand: Candidate = { node, cidrs };
    if (vxlan || wg) {
      const ip = firstAddress(node, family);
      if (!ip) {
        refuse(`has no IPv${family} InternalIP address to tunnel to (this node's underlay is IPv${family})`, cand);
        continue;
      }
      if (compare(ip, facts.nodeIP) === 0) {
        refuse(`has this node's own address ${formatIp(ip)}`, cand);
        continue;
      }
      const nodeIP = formatIp(ip);
      if (wg) {
        const key = node.wireguardPublicKey;
        if (!validWireguardKey(key)) {
          refuse(key === undefined ? 'has not published a WireGuard public key yet' : 'has an invalid WireGuard public key', cand);
          continue;
        }
        if (keys.has(key)) {
          refuse('publishes a WireGuard public key that another node (or this one) uses', cand);
          continue;
        }
        keys.add(key);
        d.peers.push({
          node: node.name,
          publicKey: key,
          endpoint: family === 6 ? `[${nodeIP}]:${cfg.wireguardPort}` : `${nodeIP}:${cfg.wireguardPort}`,
          allowedIps: cidrs.map(cidrText),
        });
        for (const c of cidrs) d.routes.push({ dst: cidrText(c), type: 'unicast', dev: WG_DEV });
      } else {
        const mac = vtepMac(node.name);
        d.fdb.push({ mac, dst: nodeIP });
        for (const c of cidrs) {
          const vtep = vtepIp(cidrs, c.ip.family)!;
          if (!d.neighbours.some((n) => n.ip === vtep)) d.neighbours.push({ ip: vtep, mac });
          d.routes.push({ dst: cidrText(c), type: 'unicast', gateway: vtep, dev: VXLAN_DEV, onlink: true });
        }
      }
      taken.push(...cidrs);
      d.programmed.push({ node: node.name, nodeIP, podCIDRs: cidrs.map(cidrText) });
      continue;
    }
    // routes: each pod CIDR via the node's address of that family, only on the same link.
    const hops: { c: Cidr; ip: Ip }[] = [];
    let why: string | undefined;
    for (const c of cidrs) {
      const ip = firstAddress(node, c.ip.family);
      if (!ip) {
        why = `has no IPv${c.ip.family} InternalIP address for its pod CIDR ${cidrText(c)}`;
        break;
      }
      const nd = notDirect(facts.routes, ip);
      if (nd) {
        why = `is not directly reachable (${nd}): routes mode needs every node on one L2 segment; use --overlay vxlan`;
        break;
      }
      hops.push({ c, ip });
    }
    if (why) {
      refuse(why);
      continue;
    }
    for (const h of hops) d.routes.push({ dst: cidrText(h.c), type: 'unicast', gateway: formatIp(h.ip) });
    taken.push(...cidrs);
    d.programmed.push({ node: node.name, nodeIP: hops.map((h) => formatIp(h.ip)).join(','), podCIDRs: cidrs.map(cidrText) });
  }
  return d;
}

/** Parses `ip -j route show` output of one family into KernelRoutes. */
export function parseRoutes(json: string, family: Family): KernelRoute[] {
  const rows = JSON.parse(json || '[]') as { dst: string; type?: string; gateway?: string; dev?: string; protocol?: string }[];
  const out: KernelRoute[] = [];
  for (const r of rows) {
    let dst: Cidr | 'default';
    if (r.dst === 'default') dst = 'default';
    else {
      const [a, l] = r.dst.split('/');
      const ip = parseIp(a!);
      if (!ip) continue;
      dst = { ip, prefix: l === undefined ? (ip.family === 4 ? 32 : 128) : Number(l) };
    }
    const k: KernelRoute = { dst, family, type: r.type ?? 'unicast', protocol: r.protocol ?? '' };
    if (r.gateway) k.gateway = r.gateway;
    if (r.dev) k.dev = r.dev;
    out.push(k);
  }
  return out;
}
