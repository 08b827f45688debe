// NodeNetwork: programs this node's side of pod networking between nodes from
// the node list (VXLAN, direct routes or WireGuard), level-triggered: each
// reconcile computes the whole desired state, reads the kernel's, and applies
// only the difference, in one `ip -batch`, one `bridge -batch` and one
// `wg set` at most. Calls are serialised; a failed command is reported and
// retried by the next reconcile, which starts again from what the kernel holds.
import * as z from '../../cni/zod.js';
import { absolutePathProblem } from '../../cni/paths.js';
import { formatIp, parseIp } from '../../net/ip.js';
import { run } from '../../sys/exec.js';
import { batchFailure, IpBatch } from '../../sys/ip.js';
import { computeDesired, ROUTE_PROTO, selfNodeIp, VXLAN_DEV, WG_DEV, type DesiredConfig } from './desired.js';
import { deviceOf, diff, readKernel } from './kernel.js';
import type { Exec, NodeInfo, NodeNetworkOptions, Report } from './types.js';
import { nodeNameProblem } from './validate.js';
import { podMtuFor } from './vtep.js';
import { loadOrCreateKey } from './wireguard-key.js';

export const DEFAULT_WIREGUARD_PORT = 51871;

const port = z.number().check(z.int(), z.gte(1), z.lte(65535));
const Options = z.object({
  self: z.string(),
  overlay: z.enum(['vxlan', 'routes', 'none']),
  nodeIP: z.optional(z.string()),
  vxlanPort: port,
  vni: z.number().check(z.int(), z.gte(1), z.lte(0xffffff)),
  mtu: z.optional(z.number().check(z.int(), z.gte(1280), z.lte(65535))),
  encryption: z.enum(['none', 'wireguard']),
  wireguardPort: z.optional(port),
  stateDir: z.string(),
  exec: z.optional(z.function()),
});

export class NodeNetworkError extends Error {}

export class NodeNetwork {
  private readonly o: NodeNetworkOptions & { wireguardPort: number };
  private readonly exec: Exec;
  private queue: Promise<unknown> = Promise.resolve();
  private mtu?: number;
  private key?: { privateKey: string; publicKey: string; path: string };

  constructor(opts: NodeNetworkOptions) {
    const p = Options.safeParse(opts);
    if (!p.success) throw new NodeNetworkError(`invalid node network options: ${p.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const why = nodeNameProblem(opts.self);
    if (why) throw new NodeNetworkError(`this node's ${why}`);
    const pathWhy = absolutePathProblem(opts.stateDir);
    if (pathWhy) throw new NodeNetworkError(`stateDir ${pathWhy}`);
    if (opts.nodeIP !== undefined && typeof selfNodeIp(undefined, opts.nodeIP) === 'string') throw new NodeNetworkError(`node IP ${JSON.stringify(opts.nodeIP)} is not a unicast address`);
    if (opts.overlay === 'none' && opts.encryption === 'wireguard') {
      throw new NodeNetworkError('encryption wireguard needs an overlay (vxlan or routes): with overlay none, nhi-cni does not route between nodes');
    }
    if (opts.encryption === 'wireguard' && opts.vxlanPort === (opts.wireguardPort ?? DEFAULT_WIREGUARD_PORT)) throw new NodeNetworkError('the WireGuard and VXLAN ports must differ');
    this.o = { ...opts, wireguardPort: opts.wireguardPort ?? DEFAULT_WIREGUARD_PORT };
    this.exec = opts.exec ?? run;
    if (opts.mtu !== undefined && opts.nodeIP !== undefined) {
      this.mtu = podMtuFor(opts.mtu, opts.overlay, opts.encryption, parseIp(opts.nodeIP)!.family);
    }
  }

  /** The MTU pods must get (for the conflist): known at once when mtu and nodeIP are configured, else after the first reconcile. */
  podMtu(): number {
    if (this.mtu === undefined) throw new NodeNetworkError('the pod MTU is known after the first reconcile (or with mtu and nodeIP configured)');
    return this.mtu;
  }

  /** This node's WireGuard public key (made and kept in the state dir on first use), to publish as the Node annotation; undefined without encryption. */
  publicKey(): string | undefined {
    if (this.o.encryption !== 'wireguard') return undefined;
    return this.loadKey().publicKey;
  }

  private loadKey() {
    if (!this.key) this.key = loadOrCreateKey(this.o.stateDir);
    return this.key;
  }

  reconcile(nodes: NodeInfo[]): Promise<Report> {
    const next = this.queue.then(() => this.reconcileNow(nodes));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Removes every kernel object this programmer owns (devices, routes; FDB, neighbours and peers go with their device). The key stays. */
  teardown(): Promise<void> {
    const next = this.queue.then(async () => {
      const k = await readKernel(this.exec);
      const lines: string[][] = [];
      for (const dev of [VXLAN_DEV, WG_DEV]) if (k.links.has(dev)) lines.push(['link', 'del', dev]);
      for (const r of k.routes) {
        if (r.protocol !== ROUTE_PROTO || r.dev === VXLAN_DEV || r.dev === WG_DEV || r.dst === 'default') continue;
        lines.push(['route', 'del', ...(r.type !== 'unicast' ? [r.type] : []), `${formatIp(r.dst.ip)}/${r.dst.prefix}`, 'proto', ROUTE_PROTO]);
      }
      if (lines.length === 0) return;
      const b = new IpBatch();
      for (const l of lines) b.add(...l);
      const r = await this.exec('ip', ['-force', '-batch', '-'], b.text());
      if (r.exitCode !== 0) throw new NodeNetworkError(`teardown: ${batchFailure(r).message}`);
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async reconcileNow(nodes: NodeInfo[]): Promise<Report> {
    if (!Array.isArray(nodes)) throw new NodeNetworkError('reconcile needs the list of nodes');
    const o = this.o;
    const selfNode = nodes.find((n) => n?.name === o.self);
    const nodeIP = selfNodeIp(selfNode, o.nodeIP);
    if (typeof nodeIP === 'string') throw new NodeNetworkError(nodeIP);
    const nodeIPText = formatIp(nodeIP);
    const k = await readKernel(this.exec);
    const underlayDevice = deviceOf(k.addresses, nodeIPText);
    if (!underlayDevice) throw new NodeNetworkError(`node IP ${nodeIPText} is not an address of this node: pass --node-ip with one that is`);
    const underlayMtu = o.mtu ?? k.links.get(underlayDevice)?.mtu;
    if (!underlayMtu) throw new NodeNetworkError(`cannot read the MTU of ${underlayDevice}`);
    const wg = o.encryption === 'wireguard';
    const key = wg ? this.loadKey() : undefined;
    const cfg: DesiredConfig = { self: o.self, overlay: o.overlay, encryption: o.encryption, vxlanPort: o.vxlanPort, vni: o.vni, wireguardPort: o.wireguardPort };
    const d = computeDesired(cfg, nodes, { nodeIP, underlayDevice, underlayMtu, routes: k.routes, ...(key ? { publicKey: key.publicKey } : {}) });
    this.mtu = d.podMtu;
    const ch = diff(d, k, underlayDevice, key?.path, key?.publicKey);
    const errors: string[] = [];
    // Devices that must go come first: a replacement nhi-wg is created outside the batch.
    if (ch.deleteFirst.length > 0) {
      const del = new IpBatch();
      for (const dev of ch.deleteFirst) del.add('link', 'del', dev);
      await this.batch('ip', del, errors);
    }
    let noDevice = false;
    if (ch.createWireguard) {
      const why = await this.createWireguard();
      if (why) errors.push(why);
      noDevice = why !== undefined;
    }
    await this.batch('ip', ch.ip, errors);
    await this.batch('bridge', ch.bridge, errors);
    if (ch.wg.length > 0 && !noDevice) {
      // Public keys, a port and addresses only: the private key is named by its file, never passed.
      const r = await this.exec('wg', ['set', WG_DEV, ...ch.wg]);
      if (r.exitCode !== 0) errors.push(`wg set ${WG_DEV}: ${r.stderr.trim() || `exit status ${r.exitCode}`}`);
    }
    const report: Report = {
      overlay: o.overlay,
      encryption: o.encryption,
      nodeIP: nodeIPText,
      underlayDevice,
      underlayMtu,
      podMtu: d.podMtu,
      programmed: d.programmed,
      refused: d.refused,
      changes: ch.deleteFirst.length + ch.ip.lines.length + ch.bridge.lines.length + (ch.createWireguard ? 1 : 0) + countWg(ch.wg),
      errors,
    };
    if (key) report.publicKey = key.publicKey;
    return report;
  }

  private async batch(tool: 'ip' | 'bridge', b: IpBatch, errors: string[]): Promise<void> {
    if (b.empty) return;
    // -force: one failing line does not stop the rest; the failures are reported and the next reconcile retries.
    const r = await this.exec(tool, ['-force', '-batch', '-'], b.text());
    if (r.exitCode === 0) return;
    const lines = b.text().split('\n');
    const before = errors.length;
    for (const m of r.stderr.matchAll(/([^\n]*)\n?Command failed -:(\d+)/g)) errors.push(`${tool} ${lines[Number(m[2]) - 1] ?? '?'}: ${m[1]!.trim()}`);
    if (errors.length === before) errors.push(`${tool} -batch: ${batchFailure(r).message}`);
  }

  /** The kernel's WireGuard when it has one, else wireguard-go (a userspace daemon giving the same device and the same `wg` interface). */
  private async createWireguard(): Promise<string | undefined> {
    const k = await this.exec('ip', ['link', 'add', WG_DEV, 'type', 'wireguard']);
    if (k.exitCode === 0) return undefined;
    if (!/Unknown device type|not supported/i.test(k.stderr)) return `cannot create ${WG_DEV}: ${k.stderr.trim()}`;
    const u = await this.exec('wireguard-go', [WG_DEV]);
    if (u.exitCode !== 0) return `the kernel has no WireGuard and wireguard-go failed: ${(u.stderr || u.stdout).trim().split('\n').pop()}`;
    return undefined;
  }
}

function countWg(args: string[]): number {
  return args.filter((a) => a === 'peer' || a === 'private-key' || a === 'listen-port').length;
}
