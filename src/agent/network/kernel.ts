// Reading this node's networking state (links, addresses, routes, the VXLAN
// device's neighbours and FDB, the WireGuard device) and turning the
// difference to the desired state into one `ip -batch`, one `bridge -batch`
// and one `wg set`. Parsing and diffing are pure (unit-tested); only
// readKernel runs programs, through the injected exec.
import { formatIp, parseIp, type Family } from '../../net/ip.js';
import { IpBatch } from '../../sys/ip.js';
import { parseRoutes, ROUTE_PROTO, VXLAN_DEV, WG_DEV, type Desired, type KernelRoute, type RouteSpec } from './desired.js';
import type { Exec } from './types.js';

export interface LinkState {
  name: string;
  kind?: string;
  mtu: number;
  mac?: string;
  up: boolean;
  vxlan?: { id: number; port: number; local?: string; learning: boolean };
}

export interface WgState {
  publicKey?: string;
  port: number;
  peers: Map<string, { endpoint?: string; allowedIps: string[]; keepalive: number }>;
}

/**
 * Seconds between keepalives to each peer. Besides keeping NAT and conntrack
 * state warm, setting it makes WireGuard send one at once: a node whose
 * device was just (re)made handshakes with every peer right away, so the
 * peers drop the session it lost (without it, a peer that only sends would
 * wait ~15 s for WireGuard's own rekey before reaching it again: seen in
 * test/ns/multinode.test.ts with a killed wireguard-go).
 */
export const KEEPALIVE = 25;

export interface KernelState {
  links: Map<string, LinkState>;
  /** Global-scope addresses per device, as `ip/len`. */
  addresses: Map<string, string[]>;
  routes: KernelRoute[];
  neighbours: { ip: string; mac: string }[];
  fdb: { mac: string; dst: string }[];
  wireguard?: WgState;
}

const norm = (ip: string) => {
  const p = parseIp(ip);
  return p ? formatIp(p) : ip;
};

function parseLinks(json: string): Map<string, LinkState> {
  const rows = JSON.parse(json || '[]') as {
    ifname: string; mtu: number; address?: string; flags?: string[];
    linkinfo?: { info_kind?: string; info_data?: { id?: number; port?: number; local?: string; local6?: string; learning?: boolean } };
  }[];
  const out = new Map<string, LinkState>();
  for (const r of rows) {
    const l: LinkState = { name: r.ifname, mtu: r.mtu, up: (r.flags ?? []).includes('UP') };
    if (r.address) l.mac = r.address.toLowerCase();
    if (r.linkinfo?.info_kind) l.kind = r.linkinfo.info_kind;
    const i = r.linkinfo?.info_data;
    if (l.kind === 'vxlan' && i) {
      l.vxlan = { id: i.id ?? -1, port: i.port ?? -1, learning: i.learning !== false };
      const local = i.local ?? i.local6;
      if (local) l.vxlan.local = norm(local);
    }
    out.set(r.ifname, l);
  }
  return out;
}

function parseAddresses(json: string): Map<string, string[]> {
  const rows = JSON.parse(json || '[]') as { ifname: string; addr_info?: { local: string; prefixlen: number; scope: string }[] }[];
  const out = new Map<string, string[]>();
  for (const r of rows) out.set(r.ifname, (r.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${norm(a.local)}/${a.prefixlen}`));
  return out;
}

/** `wg show <dev> dump`, without keeping the private key (first field of the first line). */
export function parseWgDump(text: string): WgState {
  const lines = text.split('\n').filter((l) => l.length > 0);
  const head = (lines.shift() ?? '').split('\t');
  const st: WgState = { port: Number(head[2] ?? 0), peers: new Map() };
  if (head[1] && head[1] !== '(none)') st.publicKey = head[1];
  for (const l of lines) {
    const [key, , endpoint, allowed, , , , keepalive] = l.split('\t');
    if (!key) continue;
    const p: { endpoint?: string; allowedIps: string[]; keepalive: number } = {
      allowedIps: !allowed || allowed === '(none)' ? [] : allowed.split(',').sort(),
      keepalive: Number(keepalive) || 0,
    };
    if (endpoint && endpoint !== '(none)') p.endpoint = endpoint;
    st.peers.set(key, p);
  }
  return st;
}

async function must(exec: Exec, file: string, args: string[]): Promise<string> {
  const r = await exec(file, args);
  if (r.exitCode !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr.trim() || `exit status ${r.exitCode}`}`);
  return r.stdout;
}

export async function readKernel(exec: Exec): Promise<KernelState> {
  const [links, addrs, r4, r6] = await Promise.all([
    must(exec, 'ip', ['-j', '-d', 'link', 'show']),
    must(exec, 'ip', ['-j', 'addr', 'show']),
    must(exec, 'ip', ['-j', '-4', 'route', 'show', 'table', 'main']),
    must(exec, 'ip', ['-j', '-6', 'route', 'show', 'table', 'main']),
  ]);
  const st: KernelState = {
    links: parseLinks(links),
    addresses: parseAddresses(addrs),
    routes: [...parseRoutes(r4, 4), ...parseRoutes(r6, 6)],
    neighbours: [],
    fdb: [],
  };
  const extra: Promise<void>[] = [];
  if (st.links.get(VXLAN_DEV)?.kind === 'vxlan') {
    extra.push(must(exec, 'ip', ['-j', 'neigh', 'show', 'dev', VXLAN_DEV, 'nud', 'permanent']).then((t) => {
      st.neighbours = (JSON.parse(t || '[]') as { dst: string; lladdr?: string }[]).filter((n) => n.lladdr).map((n) => ({ ip: norm(n.dst), mac: n.lladdr!.toLowerCase() }));
    }));
    extra.push(must(exec, 'bridge', ['-j', 'fdb', 'show', 'dev', VXLAN_DEV]).then((t) => {
      st.fdb = (JSON.parse(t || '[]') as { mac: string; dst?: string; state?: string }[]).filter((f) => f.dst && f.state === 'permanent').map((f) => ({ mac: f.mac.toLowerCase(), dst: norm(f.dst!) }));
    }));
  }
  if (st.links.has(WG_DEV)) {
    extra.push(exec('wg', ['show', WG_DEV, 'dump']).then((r) => {
      // An nhi-wg that wg cannot talk to (a stale tun without its daemon) reads as unconfigured; it is recreated below.
      if (r.exitCode === 0) st.wireguard = parseWgDump(r.stdout);
    }));
  }
  await Promise.all(extra);
  return st;
}

/** What one reconcile changes: the lines of each tool, and whether the WireGuard device must be made first. */
export interface Changes {
  /** Devices of ours to delete before anything else (a VXLAN device of another identity, an nhi-wg wg cannot configure). */
  deleteFirst: string[];
  createWireguard: boolean;
  ip: IpBatch;
  bridge: IpBatch;
  /** `wg set` arguments after the device name; empty when nothing changes. */
  wg: string[];
}

const routeKey = (r: { dst: string }) => r.dst;

function sameRoute(want: RouteSpec, have: KernelRoute): boolean {
  if (want.type !== have.type) return false;
  if ((want.gateway ? norm(want.gateway) : undefined) !== (have.gateway ? norm(have.gateway) : undefined)) return false;
  if (want.dev && want.dev !== have.dev) return false;
  return true;
}

const kernelDst = (r: KernelRoute) => (r.dst === 'default' ? 'default' : `${formatIp(r.dst.ip)}/${r.dst.prefix}`);

export function diff(d: Desired, k: KernelState, underlayDevice: string, keyPath: string | undefined, ownPublicKey: string | undefined): Changes {
  const ip = new IpBatch();
  const bridge = new IpBatch();
  const gone = new Set<string>();

  // Links. A VXLAN device whose identity (VNI, port, local address, learning) differs is made anew: those cannot change in place.
  const vx = k.links.get(VXLAN_DEV);
  if (vx && (!d.vxlan || vx.kind !== 'vxlan' || !vx.vxlan || vx.vxlan.id !== d.vxlan.vni || vx.vxlan.port !== d.vxlan.port || vx.vxlan.local !== d.vxlan.local || vx.vxlan.learning)) {
    gone.add(VXLAN_DEV);
  }
  const wgl = k.links.get(WG_DEV);
  // A nhi-wg that wg cannot configure (not WireGuard, or a tun whose daemon died) is replaced too.
  if (wgl && (!d.wireguard || !k.wireguard)) {
    gone.add(WG_DEV);
  }
  if (d.vxlan) {
    const v = d.vxlan;
    if (!vx || gone.has(VXLAN_DEV)) {
      ip.add('link', 'add', VXLAN_DEV, 'address', v.mac, 'mtu', v.mtu, 'type', 'vxlan', 'id', v.vni, 'dstport', v.port, 'local', v.local, 'nolearning', 'dev', underlayDevice);
      ip.add('link', 'set', VXLAN_DEV, 'up');
    } else if (vx.mtu !== v.mtu || vx.mac !== v.mac || !vx.up) {
      ip.add('link', 'set', VXLAN_DEV, 'mtu', v.mtu, 'address', v.mac, 'up');
    }
  }
  const createWireguard = !!d.wireguard && (!wgl || gone.has(WG_DEV));
  if (d.wireguard && (createWireguard || wgl!.mtu !== d.wireguard.mtu || !wgl!.up)) ip.add('link', 'set', WG_DEV, 'mtu', d.wireguard.mtu, 'up');

  // Addresses of our devices.
  for (const [dev, want] of d.addresses) {
    const have = gone.has(dev) ? [] : (k.addresses.get(dev) ?? []);
    for (const a of have) if (!want.includes(a)) ip.add('addr', 'del', a, 'dev', dev);
    for (const a of want) if (!have.includes(a)) ip.add('addr', 'add', a, 'dev', dev, ...(a.includes(':') ? ['nodad'] : []));
  }

  // Neighbours (VXLAN: VTEP address -> VTEP MAC), only on a device that stays.
  if (d.vxlan) {
    const have = gone.has(VXLAN_DEV) || !vx ? [] : k.neighbours;
    for (const n of have) if (!d.neighbours.some((w) => w.ip === n.ip)) ip.add('neigh', 'del', n.ip, 'dev', VXLAN_DEV);
    for (const n of d.neighbours) if (!have.some((h) => h.ip === n.ip && h.mac === n.mac)) ip.add('neigh', 'replace', n.ip, 'lladdr', n.mac, 'dev', VXLAN_DEV, 'nud', 'permanent');
    const fdbHave = gone.has(VXLAN_DEV) || !vx ? [] : k.fdb;
    for (const f of fdbHave) if (!d.fdb.some((w) => w.mac === f.mac && w.dst === f.dst)) bridge.add('fdb', 'del', f.mac, 'dev', VXLAN_DEV, 'dst', f.dst, 'self');
    for (const f of d.fdb) if (!fdbHave.some((h) => h.mac === f.mac && h.dst === f.dst)) bridge.add('fdb', 'append', f.mac, 'dev', VXLAN_DEV, 'dst', f.dst, 'self', 'permanent');
  }

  // Routes carrying our protocol number. One on a device being deleted goes with it.
  const ours = k.routes.filter((r) => r.protocol === ROUTE_PROTO && !(r.dev && gone.has(r.dev)));
  const wanted = new Map(d.routes.map((r) => [routeKey(r), r]));
  for (const r of ours) {
    const dst = kernelDst(r);
    if (!wanted.has(dst)) ip.add('route', 'del', ...(r.type !== 'unicast' ? [r.type] : []), dst, 'proto', ROUTE_PROTO);
  }
  for (const w of d.routes) {
    const have = ours.find((r) => kernelDst(r) === w.dst);
    if (have && sameRoute(w, have)) continue;
    // A route of ours of another type at the same prefix is removed first: `replace` keys on the type too.
    if (have && have.type !== w.type) ip.add('route', 'del', ...(have.type !== 'unicast' ? [have.type] : []), w.dst, 'proto', ROUTE_PROTO);
    const line: (string | number)[] = ['route', 'replace'];
    if (w.type !== 'unicast') line.push(w.type);
    line.push(w.dst);
    if (w.gateway) line.push('via', w.gateway);
    if (w.dev) line.push('dev', w.dev);
    if (w.onlink) line.push('onlink');
    line.push('proto', ROUTE_PROTO);
    ip.add(...line);
  }

  // WireGuard: key, port, peers.
  const wg: string[] = [];
  if (d.wireguard) {
    const have: WgState = createWireguard || !k.wireguard ? { port: 0, peers: new Map() } : k.wireguard;
    if (have.publicKey !== ownPublicKey && keyPath) wg.push('private-key', keyPath);
    if (have.port !== d.wireguard.port) wg.push('listen-port', String(d.wireguard.port));
    for (const key of have.peers.keys()) if (!d.peers.some((p) => p.publicKey === key)) wg.push('peer', key, 'remove');
    for (const p of d.peers) {
      const h = have.peers.get(p.publicKey);
      const allowed = [...p.allowedIps].sort();
      if (h && h.endpoint === p.endpoint && h.allowedIps.join(',') === allowed.join(',') && h.keepalive === KEEPALIVE) continue;
      wg.push('peer', p.publicKey, 'endpoint', p.endpoint, 'persistent-keepalive', String(KEEPALIVE), 'allowed-ips', allowed.join(','));
    }
  }
  return { deleteFirst: [...gone], createWireguard, ip, bridge, wg };
}

/** The device holding `nodeIP`, from `ip -j addr` data. */
export function deviceOf(addresses: Map<string, string[]>, nodeIP: string): string | undefined {
  for (const [dev, list] of addresses) if (list.some((a) => a.split('/')[0] === nodeIP)) return dev;
  return undefined;
}

export type { Family };
