// The agent's side of L7 in one call per reconcile: listeners for the
// (pod, port) pairs HTTP rules cover, and the redirect that takes their
// connections there, kept in step, in the order that never opens a pod.
//
// Egress: the connections of a pod to a TCP port its own HTTP rules cover
// (whatever the destination) go to one listener per address family that
// reads each connection's original destination (L7Proxy.listen({ original })).
//
//   sync(targets):  1. open a listener for each new target;
//                   2. apply the redirect for ALL targets (one nft transaction);
//                   3. close the listeners of targets that are gone.
// A failure at 1 or 2 throws and leaves the previous redirect in the kernel
// (nft applies all or nothing): a new target is then not redirected, and
// its port stays closed (the compiler never allows a clause with HTTP rules
// at L4), until a later sync succeeds.
//
// When the agent dies the redirect stays and the listeners go: the covered
// ports refuse connections (test/ns/l7-redirect.test.ts).
import { createHash } from 'node:crypto';
import type { NftRunner } from '../sys/nft.js';
import type { Destination, L7Proxy, OriginalDestination } from './proxy.js';
import { redirectTransaction, type Redirect } from './redirect.js';
import type { IngressTarget, ServiceEgressTarget } from './targets.js';

/** Connections from `ip` (a pod of this node) to TCP `port` of any destination go to the proxy. */
export interface EgressRedirectTarget {
  ip: string;
  port: number;
}

export interface L7ControllerOptions {
  proxy: L7Proxy;
  nft: NftRunner;
  /** The node's addresses the listeners bind to, per family of the pods they serve. */
  nodeIps: { 4?: string; 6?: string };
  /**
   * Listener ports: a range reserved for the agent (net.ipv4.ip_local_reserved_ports,
   * or below ip_unprivileged_port_start), each target's port chosen from its
   * address and port so that a restarted agent takes the same one back, and
   * no other process is handed the connections the redirect still sends
   * there after a crash. Absent: ephemeral ports (port 0).
   */
  listenPorts?: { from: number; to: number };
  /**
   * Routes the replies to the proxy's transparent upstream sockets of a
   * family to the node (L7_DIVERT), once targets of that family exist: the
   * agent passes ensureDivertRouting (`ip rule`, `ip route`); a test, a
   * stand-in (required, so that no test routes the machine's own network).
   */
  divertRouting: (family: 4 | 6) => Promise<void>;
  /**
   * Each ingress target also gets a listener on the pod's own address (the
   * Service path: src/l7/redirect.ts), which needs CAP_NET_ADMIN. The agent
   * sets it; unit tests may leave it off.
   */
  serviceListeners?: boolean;
}

const fam = (ip: string): 4 | 6 => (ip.includes(':') ? 6 : 4);
type Served = Destination | OriginalDestination;
const key = (d: Served) => ('original' in d ? `original|${d.original}` : `${d.ip}|${d.port}`);

export class L7Controller {
  /** Destination -> where its listener listens. */
  /** 'service': only on the pod's own address, for the Service path of egress rules (no node address, no DNAT to it). */
  private readonly listening = new Map<string, { dest: Served; port: number; host: string; kind: 'ingress' | 'egress' | 'service' }>();
  private applied: Redirect[] = [];
  private readonly routed = new Set<4 | 6>();

  constructor(private readonly opts: L7ControllerOptions) {}

  /** The redirects in the kernel after the last successful sync. */
  redirects(): Redirect[] {
    return this.applied.map((r) => ({ ...r }));
  }

  /** A listener for dest: on its preferred port of the range, else the next free one. */
  private async listen(dest: Served, host: string): Promise<{ port: number }> {
    const range = this.opts.listenPorts;
    const o = { transparent: this.opts.serviceListeners === true && !('original' in dest) };
    if (!range) return this.opts.proxy.listen(dest, { host, port: 0 }, o);
    const size = range.to - range.from + 1;
    if (!Number.isInteger(range.from) || !Number.isInteger(range.to) || range.from < 1 || range.to > 65535 || size < 1) {
      throw new Error(`listenPorts ${range.from}-${range.to} is not a port range`);
    }
    const used = new Set([...this.listening.values()].filter((l) => l.host === host).map((l) => l.port));
    const start = createHash('sha256').update(key(dest)).digest().readUInt32BE(0) % size;
    for (let i = 0; i < size; i++) {
      const port = range.from + ((start + i) % size);
      if (used.has(port)) continue;
      try {
        return await this.opts.proxy.listen(dest, { host, port }, o);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      }
    }
    throw new Error(`no free listener port in ${range.from}-${range.to} for ${key(dest)}`);
  }

  async sync(targets: IngressTarget[], egress: EgressRedirectTarget[] = [], viaService: ServiceEgressTarget[] = []): Promise<Redirect[]> {
    const want = new Map<string, { dest: Served; kind: 'ingress' | 'egress' | 'service' }>();
    for (const t of targets) want.set(key({ ip: t.ip, port: t.port }), { dest: { ip: t.ip, port: t.port }, kind: 'ingress' });
    for (const t of egress) want.set(key({ original: fam(t.ip) }), { dest: { original: fam(t.ip) }, kind: 'egress' });
    // The Service path of egress rules needs listeners on pod addresses (transparent sockets).
    const service = this.opts.serviceListeners ? viaService : [];
    for (const t of service) {
      const k = key({ ip: t.ip, port: t.port });
      if (!want.has(k)) want.set(k, { dest: { ip: t.ip, port: t.port }, kind: 'service' });
    }
    // 1. listeners first: a redirect to a port nobody listens on would refuse, not open,
    // but a target must not be redirected before it can be served either.
    for (const [k, w] of want) {
      const had = this.listening.get(k);
      if (had?.kind === w.kind) continue;
      if (had) {
        // A pod port that only the Service path of egress rules served is now an ingress target (or back): opened anew.
        this.listening.delete(k);
        await this.opts.proxy.close(had.dest);
      }
      if (w.kind === 'service' && !('original' in w.dest)) {
        await this.opts.proxy.listen(w.dest, null, { transparent: true });
        this.listening.set(k, { dest: w.dest, host: w.dest.ip, port: w.dest.port, kind: 'service' });
        continue;
      }
      const f = 'original' in w.dest ? w.dest.original : fam(w.dest.ip);
      const host = this.opts.nodeIps[f];
      if (!host) throw new Error(`no node address of IPv${f} to listen on for ${k.replace('original|', 'redirected connections of IPv')}`);
      const at = await this.listen(w.dest, host);
      this.listening.set(k, { dest: w.dest, host, port: at.port, kind: w.kind });
    }
    // 2. the redirect for exactly the wanted targets, all or nothing; a
    // connection both would take goes to the destination's listener (the
    // proxy judges the source's egress rules there too).
    const byIp = (a: Redirect, b: Redirect) => a.podIp.localeCompare(b.podIp) || a.port - b.port;
    const redirects: Redirect[] = targets.map((t) => {
      const l = this.listening.get(key({ ip: t.ip, port: t.port }))!;
      return { podIp: t.ip, port: t.port, listenIp: l.host, listenPort: l.port };
    }).sort(byIp);
    const seen = new Set<string>();
    const outgoing: Redirect[] = [];
    for (const t of egress) {
      if (seen.has(`${t.ip}|${t.port}`)) continue;
      seen.add(`${t.ip}|${t.port}`);
      const l = this.listening.get(key({ original: fam(t.ip) }))!;
      outgoing.push({ podIp: t.ip, port: t.port, listenIp: l.host, listenPort: l.port, from: true });
    }
    redirects.push(...outgoing.sort(byIp));
    // The proxy forwards from the requesting pod's address when one end is on another node
    // (L7Proxy upstreamFrom): its replies must reach it, in both directions.
    for (const f of new Set(redirects.map((t) => fam(t.podIp)))) {
      if (this.routed.has(f)) continue;
      await this.opts.divertRouting(f);
      this.routed.add(f);
    }
    const r = await this.opts.nft.run(redirectTransaction(redirects, { divert: redirects.length > 0, viaService: service }));
    if (r.exitCode !== 0) throw new Error(`L7 redirect not applied: ${r.stderr.trim() || `nft exit status ${r.exitCode}`}`);
    this.applied = redirects;
    // 3. only now close what the kernel no longer sends anywhere.
    for (const [k, l] of [...this.listening]) {
      if (want.has(k)) continue;
      this.listening.delete(k);
      await this.opts.proxy.close(l.dest);
    }
    return this.redirects();
  }
}
