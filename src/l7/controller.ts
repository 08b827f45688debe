// The agent's side of L7 in one call per reconcile: listeners for the
// (pod, port) pairs HTTP rules cover, and the redirect that takes their
// connections there, kept in step, in the order that never opens a pod.
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
import type { Destination, L7Proxy } from './proxy.js';
import { redirectTransaction, type Redirect } from './redirect.js';
import type { IngressTarget } from './targets.js';

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
}

const fam = (ip: string): 4 | 6 => (ip.includes(':') ? 6 : 4);
const key = (d: Destination) => `${d.ip}|${d.port}`;

export class L7Controller {
  /** Destination -> where its listener listens. */
  private readonly listening = new Map<string, { dest: Destination; port: number; host: string }>();
  private applied: Redirect[] = [];

  constructor(private readonly opts: L7ControllerOptions) {}

  /** The redirects in the kernel after the last successful sync. */
  redirects(): Redirect[] {
    return this.applied.map((r) => ({ ...r }));
  }

  /** A listener for dest: on its preferred port of the range, else the next free one. */
  private async listen(dest: Destination, host: string): Promise<{ port: number }> {
    const range = this.opts.listenPorts;
    if (!range) return this.opts.proxy.listen(dest, { host, port: 0 });
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
        return await this.opts.proxy.listen(dest, { host, port });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      }
    }
    throw new Error(`no free listener port in ${range.from}-${range.to} for ${dest.ip}:${dest.port}`);
  }

  async sync(targets: IngressTarget[]): Promise<Redirect[]> {
    const want = new Map<string, Destination>();
    for (const t of targets) want.set(key({ ip: t.ip, port: t.port }), { ip: t.ip, port: t.port });
    // 1. listeners first: a redirect to a port nobody listens on would refuse, not open,
    // but a target must not be redirected before it can be served either.
    for (const [k, dest] of want) {
      if (this.listening.has(k)) continue;
      const host = this.opts.nodeIps[fam(dest.ip)];
      if (!host) throw new Error(`no node address of IPv${fam(dest.ip)} to listen on for ${dest.ip}:${dest.port}`);
      const at = await this.listen(dest, host);
      this.listening.set(k, { dest, host, port: at.port });
    }
    // 2. the redirect for exactly the wanted targets, all or nothing.
    const redirects = [...want.keys()].map((k) => {
      const l = this.listening.get(k)!;
      return { podIp: l.dest.ip, port: l.dest.port, listenIp: l.host, listenPort: l.port };
    }).sort((a, b) => a.podIp.localeCompare(b.podIp) || a.port - b.port);
    const r = await this.opts.nft.run(redirectTransaction(redirects));
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
