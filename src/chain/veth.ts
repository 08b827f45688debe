// The veth module: the pair between the bridge and the pod, the pod's
// addresses and routes, and the sysctls the reference sets inside the pod.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { CniError, Code } from '../cni/errors.js';
import { equal, formatIp, parseCidr } from '../net/ip.js';
import { batchFailure, IpBatch, runNetnsBatch } from '../sys/ip.js';
import { ensureSysctl, linkExists, linkMac, linkMaster, netnsId, ownNetnsId } from '../sys/sysfs.js';
import type { IpConfig, Route } from '../cni/result.js';
import type { CniConfig } from './config.js';
import { addedIps, type ChainModule } from './module.js';
import type { Plan } from './plan.js';
import { gatewayOf, randomMac } from './bridge.js';

/** The reference's host-side name: "veth" + 8 hex characters. */
export function hostVethName(): string {
  return `veth${randomBytes(4).toString('hex')}`;
}

export interface VethAdd {
  hostVeth: string;
  containerMac: string;
  /** Line of the host batch that creates the pair. */
  createLine: number;
  routes: Route[];
}

const isV6 = (cidr: string) => cidr.includes(':');

/**
 * The pod's MAC when the runtime does not set one: 0a:58 and the pod's IPv4
 * address (the convention of ovn-kubernetes and Windows HNS), or the last four
 * bytes of its IPv6 address. An address reused by a new pod comes back with
 * the same MAC, so neighbours' ARP/ND caches stay right without the
 * gratuitous ARP that arp_notify would send, and without a sysctl process
 * inside the pod to enable it.
 */
export function macFor(ips: IpConfig[]): string {
  const v4 = ips.find((i) => !isV6(i.address));
  const ip = parseCidr((v4 ?? ips[0])?.address ?? '')?.ip;
  if (!ip) return randomMac();
  const low = ip.value & 0xffffffffn;
  const bytes = [0x0a, 0x58, Number((low >> 24n) & 0xffn), Number((low >> 16n) & 0xffn), Number((low >> 8n) & 0xffn), Number(low & 0xffn)];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function vethAdd(cfg: CniConfig, o: { hostVeth: string; ifname: string; netns: string; ips: IpConfig[]; routes: Route[] }, plan: Plan): VethAdd {
  const mac = cfg.mac ?? macFor(o.ips);
  const mtu = cfg.mtu ? ['mtu', cfg.mtu] : [];
  const createLine = plan.host.lines.length;
  // Created on the node with its peer placed straight into the pod, already
  // enslaved: one line, no window with a half-made pair in the pod. The node
  // side stays down until the runner brings it up last (plan.up), after the
  // pod's batch and the nft transaction: a veth drops what it sends while its
  // peer is down, so the pod is configured beside the nft commit and still
  // sends nothing before its guard and policy are in place.
  plan.host.add('link', 'add', o.hostVeth, ...mtu, 'master', cfg.bridge, 'type', 'veth',
    'peer', 'name', o.ifname, ...mtu, 'address', mac, 'netns', o.netns);
  plan.host.add('link', 'set', o.hostVeth, 'type', 'bridge_slave', 'hairpin', cfg.hairpinMode ? 'on' : 'off');

  const hasV4 = o.ips.some((ip) => !isV6(ip.address));
  const hasV6 = o.ips.some((ip) => isV6(ip.address));
  // A MAC chosen by the runtime does not follow the address: then, as the
  // reference does, have the pod announce itself with a gratuitous ARP when
  // eth0 goes up (arp_notify), so neighbours drop a reused address's old MAC.
  if (hasV4 && cfg.mac) plan.podSysctls.push(`net/ipv4/conf/${o.ifname}/arp_notify=1`);
  if (hasV6) {
    plan.podSysctls.push('net/ipv6/conf/lo/disable_ipv6=0', `net/ipv6/conf/${o.ifname}/disable_ipv6=0`, `net/ipv6/conf/${o.ifname}/keep_addr_on_down=1`);
  }
  // IPv6 addresses skip duplicate address detection ("nodad", what the
  // reference gets with accept_dad=0): the address is ours by IPAM, and
  // waiting for DAD would delay the pod's network by a second or more.
  for (const ip of o.ips) plan.pod.add('addr', 'add', ip.address, 'dev', o.ifname, ...(isV6(ip.address) ? ['nodad'] : []));
  plan.pod.add('link', 'set', o.ifname, 'up');

  const routes: Route[] = [...o.routes];
  if (cfg.isDefaultGateway) {
    for (const fam of [4, 6] as const) {
      const ip = o.ips.find((i) => isV6(i.address) === (fam === 6));
      if (!ip) continue;
      // IPAM's own default route of this family (with or without gw, however
      // spelled) is kept; a second one would make the pod batch fail.
      const hasDefault = routes.some((r) => { const c = parseCidr(r.dst); return !!c && c.prefix === 0 && c.ip.family === fam; });
      if (!hasDefault) routes.push({ dst: fam === 4 ? '0.0.0.0/0' : '::/0', gw: formatIp(gatewayOf(ip).ip) });
    }
  }
  for (const r of routes) {
    const fam = parseCidr(r.dst)!.ip.family;
    const famIp = o.ips.find((i) => parseCidr(i.address)!.ip.family === fam);
    const gw = r.gw ?? (famIp ? formatIp(gatewayOf(famIp).ip) : undefined);
    plan.pod.add('route', 'add', r.dst, ...(gw ? ['via', gw] : []), 'dev', o.ifname);
  }
  plan.up.push(o.hostVeth);
  plan.after.push(() => {
    if (linkExists(o.hostVeth)) ensureSysctl(`net/ipv6/conf/${o.hostVeth}/accept_ra`, '0');
  });
  return { hostVeth: o.hostVeth, containerMac: mac, createLine, routes };
}

export function hostVethInterface(name: string): { name: string; mac?: string } {
  const mac = linkMac(name);
  return mac ? { name, mac } : { name };
}

/** Refuses a CNI_NETNS that does not exist, or that is the plugin's own namespace. */
export function checkNetns(netns: string): void {
  const id = netnsId(netns);
  if (id === undefined) throw new CniError(Code.UnknownContainer, `network namespace ${netns} does not exist`, 'CNI_NETNS must name the pod\'s namespace');
  // The reference refuses its own namespace (containernetworking/plugins#714:
  // a recycled /proc/<pid>/ns/net once made a plugin reconfigure the host).
  if (id === ownNetnsId() && !/^(1|true)$/i.test(process.env.CNI_NETNS_OVERRIDE ?? '')) {
    throw new CniError(Code.InvalidEnv, `CNI_NETNS ${netns} is the plugin's own network namespace`, 'refusing to configure the node as if it were a pod');
  }
}

/** What a failed pod-side delete may say when the interface is already gone. */
export const GONE_IN_POD = /Cannot find device|does not exist/;

/** The chain's veth module: the pair, the pod's addresses and routes. */
export const veth: ChainModule = {
  name: 'veth',
  add(x, plan) {
    const { cfg, req } = x.c;
    const v = vethAdd(cfg, { hostVeth: x.hostVeth, ifname: req.env.ifname, netns: req.env.netns, ips: addedIps(x), routes: x.ipam?.result.routes ?? [] }, plan);
    x.veth = { containerMac: v.containerMac, createLine: v.createLine, routes: v.routes };
  },
  // From the node by the host-side name when it is known and present (no
  // namespace needed), else from inside the pod by its name. Gone already is fine.
  del(t, plan) {
    const h = t.hostVeth;
    if (h && linkExists(h)) {
      plan.down.push(h);
      plan.host.add('link', 'del', h);
      plan.verify.push(() => (linkExists(h) ? `deleting ${h} failed` : undefined));
    } else if (t.netns && existsSync(t.netns)) {
      plan.pod.add('link', 'del', t.ifname);
    }
  },
  async check({ c, prev, hostVeth }) {
    const { ifname, netns } = c.req.env;
    const fail = (msg: string, details = '') => new CniError(Code.CheckFailed, msg, details);
    if (!linkExists(hostVeth)) throw fail(`host veth ${hostVeth} does not exist`);
    if (linkMaster(hostVeth) !== c.cfg.bridge) throw fail(`host veth ${hostVeth} is not attached to ${c.cfg.bridge}`);
    checkNetns(netns);
    const r = await runNetnsBatch(netns, new IpBatch().add('addr', 'show', 'dev', ifname).add('route', 'show', 'dev', ifname, 'table', 'all'), true);
    if (r.exitCode !== 0) throw fail(`interface ${ifname} is missing in ${netns}`, batchFailure(r).message);
    const [addrs, routes] = parseJsonStream(r.stdout) as [
      { addr_info?: { local: string; prefixlen: number }[] }[],
      { dst: string; gateway?: string }[],
    ];
    const have = (addrs ?? []).flatMap((l) => l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
    for (const ip of prev.ips ?? []) {
      if (ip.interface !== undefined && ip.interface !== 2) continue;
      const want = parseCidr(ip.address)!;
      if (!have.some((h) => { const c2 = parseCidr(h); return !!c2 && equal(c2.ip, want.ip) && c2.prefix === want.prefix; })) {
        throw fail(`address ${ip.address} is missing on ${ifname} in ${netns}`);
      }
    }
    for (const rt of prev.routes ?? []) {
      const dst = rt.dst === '0.0.0.0/0' || rt.dst === '::/0' ? 'default' : rt.dst;
      const found = (routes ?? []).some((x) => (x.dst === dst || x.dst === rt.dst.replace(/\/(32|128)$/, '')) && (!rt.gw || x.gateway === rt.gw));
      if (!found) throw fail(`route to ${rt.dst}${rt.gw ? ` via ${rt.gw}` : ''} is missing in ${netns}`);
    }
  },
};

/** ip -j -batch prints one JSON document per command, back to back. */
function parseJsonStream(text: string): unknown[] {
  const out: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inStr) {
      if (ch === '\\') i++;
      else if (ch === '"') inStr = false;
      continue;
    }
    if (ch === '"') inStr = true;
    else if (ch === '[' || ch === '{') {
      if (depth++ === 0) start = i;
    } else if (ch === ']' || ch === '}') {
      if (--depth === 0) out.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return out;
}
