// The agent's sink: what makes a cluster view real on this node.
//   policy   every NetworkPolicy / CiliumNetworkPolicy of the cluster (a policy
//            that cannot be enforced exactly as its fail-closed stand-in), this
//            node's pods with the identities the API gives them now (a label
//            edit reaches the kernel), and every other node's pod as a remote
//            peer: one PolicyEngine.reconcile, one nft transaction.
//   network  the other nodes' pod CIDRs through the overlay (NodeNetwork), and
//            with WireGuard this node's public key published on its Node.
// Policy first: a view whose network part fails still has its policies
// enforced, and the whole view is applied again after a backoff.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { L7Controller, type EgressRedirectTarget } from '../l7/controller.js';
import { ensureDivertRouting } from '../l7/redirect.js';
import { L7Proxy, type DenyRecord } from '../l7/proxy.js';
import { l7Targets, serviceEgressTargets, type EgressTarget } from '../l7/targets.js';
import { gatewayOf } from '../chain/bridge.js';
import { contains, formatIp, parseCidr, parseIp } from '../net/ip.js';
import { L7_EGRESS_REDIRECTED, L7_REDIRECTED, L7_SERVICE_EGRESS, l7RedirectedSetType, l7ServiceEgressSetType, POLICY_TABLE } from '../policy/compile/index.js';
import { RECLAIM_GRACE_MS, releaseLeaked, scan } from '../chain/reclaim.js';
import { NO_AUDIT, podKey, PolicyEngine, type Pods, type RemotePeer } from '../policy/engine/index.js';
import { bootId } from '../sys/sysfs.js';
import { compilerPods } from '../policy/engine/pods.js';
import type { Identity, Policy } from '../policy/model.js';
import { hostNft, NftTransaction, type NftRunner } from '../sys/nft.js';
import { NodeNetwork } from './network/node-network.js';
import { WIREGUARD_KEY_ANNOTATION, type NodeInfo } from './network/types.js';
import type { AgentOptions } from './options.js';
import type { ApplyOutcome, ClusterSink, ClusterView, Refused } from './view.js';

export interface SinkLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

/**
 * The ports the L7 proxy's listeners take, one per served (pod, port), chosen
 * from the pair so a restarted agent takes the same one back (the redirect
 * in the kernel still names it). Below the ephemeral range: no outgoing
 * connection is ever handed one.
 */
export const L7_LISTEN_PORTS = { from: 16000, to: 16999 };

export interface EnforcingSinkDeps {
  /** nft for the engine: the host's by default, a fake in unit tests. */
  nft?: NftRunner;
  /** The node programmer; undefined with --overlay none. */
  network?: NodeNetwork;
  /** Merges annotations into this node's Node object (WireGuard key); undefined: never published. */
  annotateNode?: (annotations: Record<string, string>) => Promise<void>;
  /** Makes the node ready for the engine (br_netfilter sysctls); the engine's default when undefined. */
  prepareNode?: () => void;
  /** Where the L7 proxy's deny lines go (JSON, rate-limited by the proxy). */
  onDeny?: (record: DenyRecord) => void;
  /** The routing of the proxy's transparent replies (`ip rule`/`ip route`); a stand-in in unit tests. */
  divertRouting?: (family: 4 | 6) => Promise<void>;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

type Cidrs = NonNullable<ReturnType<typeof parseCidr>>[];

/** This node's pod CIDRs, as the view gives them. */
const ownCidrsOf = (view: ClusterView): Cidrs => (view.node?.podCIDRs ?? []).map((c) => parseCidr(c)).filter((c) => c !== undefined);

/** Whether `ip` is in one of `cidrs`. */
function inCidrs(ip: string, cidrs: Cidrs): boolean {
  const a = parseIp(ip);
  return a !== undefined && cidrs.some((c) => c.ip.family === a.family && contains(c, a));
}

/** The remote peers of a view: other nodes' pods with addresses, never one claiming an address of this node's pod CIDRs. */
export function remotePeers(view: ClusterView): { peers: RemotePeer[]; refused: Refused[] } {
  const own = ownCidrsOf(view);
  const peers: RemotePeer[] = [];
  const refused: Refused[] = [];
  for (const p of view.pods) {
    if (p.local || p.ips.length === 0) continue;
    // A pod of another node whose status claims an address of this node's
    // range would, as a peer, lend its identity to whichever local pod holds
    // that address: refused, whatever the API says.
    const stolen = p.ips.find((ip) => inCidrs(ip, own));
    if (stolen) {
      refused.push({ kind: 'pods', namespace: p.namespace, name: p.name, reason: `its address ${stolen} is in this node's pod CIDR, but it runs on ${p.nodeName ?? 'no node'}: not a peer` });
      continue;
    }
    peers.push({ id: `${p.nodeName ?? '-'}/${p.namespace}/${p.name}`, ips: p.ips, identity: p.identity });
  }
  return { peers, refused };
}

/** This node's pods with the identities the view gives them now; the same object when nothing changed. */
export function refreshIdentities(pods: Pods, view: ClusterView): string[] {
  const local = new Map(view.pods.filter((p) => p.local).map((p) => [`${p.namespace}/${p.name}`, p]));
  const changed: string[] = [];
  for (const [key, rec] of Object.entries(pods)) {
    if (!rec.identity) continue;
    const now = local.get(`${rec.identity.namespace}/${rec.identity.name}`);
    // Not in the API (deleted, its DEL on the way): kept as recorded.
    if (!now || same(now.identity, rec.identity)) continue;
    pods[key] = { ...rec, identity: now.identity };
    changed.push(key);
  }
  return changed;
}

export function nodeInfos(view: ClusterView): NodeInfo[] {
  return view.nodes.map((n) => {
    const info: NodeInfo = { name: n.name, podCIDRs: n.podCIDRs, addresses: n.addresses };
    const key = n.annotations[WIREGUARD_KEY_ANNOTATION];
    if (key !== undefined) info.wireguardPublicKey = key;
    return info;
  });
}

/**
 * Egress targets with port numbers: a number as written; a port name as the
 * numbers it has (TCP) on any pod of the cluster, since it resolves on each
 * destination. A name no pod has redirects nothing (the compile never allows
 * a clause with HTTP rules, so its connections stay closed, never open).
 */
export function egressPorts(targets: EgressTarget[], pods: ClusterView['pods']): EgressRedirectTarget[] {
  const named = new Map<string, Set<number>>();
  for (const p of pods) {
    for (const port of p.identity?.ports ?? []) {
      if (port.protocol !== 'TCP' || !port.name) continue;
      const s = named.get(port.name) ?? new Set<number>();
      s.add(port.containerPort);
      named.set(port.name, s);
    }
  }
  const out = new Map<string, EgressRedirectTarget>();
  for (const t of targets) {
    const ports = typeof t.port === 'number' ? [t.port] : [...(named.get(t.port) ?? [])];
    for (const port of ports) out.set(`${t.ip}|${port}`, { ip: t.ip, port });
  }
  return [...out.values()].sort((a, b) => a.ip.localeCompare(b.ip) || a.port - b.port);
}

export class EnforcingSink implements ClusterSink {
  readonly engine: PolicyEngine;
  /** The L7 proxy and its controller, made when a policy first has HTTP rules for a pod of this node. */
  private l7?: { proxy: L7Proxy; controller: L7Controller };
  /** Read by the proxy per request: the last applied view's identities by address, and its policies. */
  private identities = new Map<string, Identity>();
  private policies: Policy[] = [];
  /** This node's pod CIDRs, from the last applied view. */
  private ownCidrs: Cidrs = [];
  private nft: NftRunner;

  constructor(
    private readonly o: Pick<AgentOptions, 'stateDir'>,
    private readonly log: SinkLog,
    private readonly deps: EnforcingSinkDeps = {},
  ) {
    this.nft = deps.nft ?? hostNft;
    this.engine = new PolicyEngine({
      // The same state dir as the plugin's conflist names, no manifests: the agent's policies are what the plugin keeps.
      config: { stateDir: o.stateDir, audit: NO_AUDIT },
      ...(deps.nft ? { nft: deps.nft } : {}),
      ...(deps.prepareNode ? { prepareNode: deps.prepareNode } : {}),
    });
  }

  async apply(view: ClusterView): Promise<ApplyOutcome> {
    const policies = view.policies.flatMap((p) => p.policies);
    const { peers, refused } = remotePeers(view);
    let relabelled: string[] = [];
    const r = await this.engine.reconcile({ policies, remote: peers, change: (pods) => (relabelled = refreshIdentities(pods, view)) });
    this.log.info({ path: r.path, policies: policies.length, remote: peers.length, relabelled: relabelled.length }, 'policy applied');
    this.identities = new Map(view.pods.flatMap((p) => p.ips.map((ip) => [ip, p.identity] as const)));
    this.policies = policies;
    this.ownCidrs = ownCidrsOf(view);
    const out: ApplyOutcome = { ok: true, refused };
    await this.applyL7(view, policies);
    const net = this.deps.network;
    if (!net) return out;
    const report = await net.reconcile(nodeInfos(view));
    out.podMtu = report.podMtu;
    for (const n of report.refused) out.refused!.push({ kind: 'nodes', name: n.node, reason: n.reason });
    if (report.publicKey && view.node && view.node.annotations[WIREGUARD_KEY_ANNOTATION] !== report.publicKey && this.deps.annotateNode) {
      await this.deps.annotateNode({ [WIREGUARD_KEY_ANNOTATION]: report.publicKey });
      this.log.info({ node: view.node.name }, 'WireGuard public key published on the Node');
    }
    if (report.errors.length > 0) return { ...out, ok: false, message: `node network: ${report.errors.join('; ')}` };
    return out;
  }

  /**
   * L7 (docs/l7.md): the (pod, port) pairs of this node an HTTP rule covers
   * get a listener of the proxy and the redirect to it, and their original
   * destinations go into the policy table's l7r4/l7r6 sets (the input hook
   * lets redirected connections reach the proxy); the pods whose own egress
   * HTTP rules cover a port get their connections to it redirected to the
   * egress listener, and (pod . port) go into l7e4/l7e6. The compile never
   * allows those ports at L4: until this has run, they are closed, never open.
   */
  private async applyL7(view: ClusterView, policies: Policy[]): Promise<void> {
    const local = compilerPods(this.engine.state().pods);
    const all = l7Targets(policies, local);
    const targets = all.ingress;
    const egress = egressPorts(all.egress, view.pods);
    if (targets.length === 0 && egress.length === 0 && !this.l7) return;
    const viaService = egress.length === 0 ? [] : serviceEgressTargets(policies, egress, view.pods.flatMap((p) => p.ips.map((ip) => ({ ip, identity: p.identity }))));
    if (!this.l7) {
      // The bridge's address in each pod CIDR (host-local's default gateway), where the node serves its pods.
      const gateways = (view.node?.podCIDRs ?? []).map((address) => formatIp(gatewayOf({ address }).ip));
      const proxy = new L7Proxy({
        identify: (ip) => this.identities.get(ip),
        policies: () => this.policies,
        // Between pods of two nodes, requests are forwarded from the requesting pod's own address:
        // the destination's kernel judges its ingress policy by it (the node's address would be a
        // stranger there), and the pod sees who asked. Between two pods of this node the reply
        // would go straight back over the bridge, not through the node: from the node's address.
        // To addresses outside the cluster: from the node's (as masquerade would have it).
        upstreamFrom: (src, dst) => (src.identity !== undefined && dst.identity !== undefined && !(this.isOwn(src.ip) && this.isOwn(dst.ip)) ? 'source' : 'node'),
        onDeny: (rec) => {
          if (this.deps.onDeny) return this.deps.onDeny(rec);
          // The log line's own time and message are the record's: not repeated as fields.
          const { msg, time: _time, ...fields } = rec;
          this.log.warn(fields, msg);
        },
      });
      const nodeIps = { 4: gateways.find((g) => !g.includes(':')), 6: gateways.find((g) => g.includes(':')) };
      this.l7 = { proxy, controller: new L7Controller({ proxy, nft: this.nft, nodeIps, listenPorts: L7_LISTEN_PORTS, serviceListeners: true, divertRouting: this.deps.divertRouting ?? ((f) => ensureDivertRouting(f)) }) };
    }
    await this.l7.controller.sync(targets, egress, viaService);
    const tx = new NftTransaction('inet', POLICY_TABLE);
    for (const f of [4, 6] as const) {
      for (const [name, list] of [[L7_REDIRECTED[f], targets], [L7_EGRESS_REDIRECTED[f], egress]] as const) {
        const set = { family: 'inet', table: POLICY_TABLE, name };
        tx.push({ add: { set: { ...set, type: l7RedirectedSetType(f) } } }, { flush: { set } });
        const elem = list.filter((t) => t.ip.includes(':') === (f === 6)).map((t) => ({ concat: [t.ip, t.port] }));
        if (elem.length) tx.push({ add: { element: { ...set, elem } } });
      }
      const set = { family: 'inet', table: POLICY_TABLE, name: L7_SERVICE_EGRESS[f] };
      tx.push({ add: { set: { ...set, type: l7ServiceEgressSetType(f) } } }, { flush: { set } });
      const elem = viaService.filter((t) => t.ip.includes(':') === (f === 6)).map((t) => ({ concat: [t.src, t.ip, t.port] }));
      if (elem.length) tx.push({ add: { element: { ...set, elem } } });
    }
    const r = await this.nft.run(tx);
    if (r.exitCode !== 0) throw new Error(`L7: the served ports were not applied to the policy table: ${r.stderr.trim()}`);
    if (targets.length || egress.length) {
      this.log.info({ targets: targets.map((t) => `${t.ip}:${t.port}`), egress: egress.map((t) => `from ${t.ip} to port ${t.port}`), viaService: viaService.length }, 'L7 proxy serving');
    }
  }

  private isOwn(ip: string): boolean {
    return inCidrs(ip, this.ownCidrs);
  }

  /**
   * Leaked addresses of this node released, as an exhausted ADD would but
   * ahead of time (the agent runs it periodically): only reservations proven
   * dead (src/chain/reclaim.ts: a previous boot, or host veth and namespace
   * gone for longer than the grace period), each re-judged under its
   * attachment's lock; their port guards and policy entries go in one nft
   * transaction. Returns what was released.
   */
  async reclaim(o: { dataDir: string; network: string }): Promise<{ ip: string; containerId: string; ifname: string; reason: string }[]> {
    const where = { dataDir: o.dataDir, network: o.network, stateDir: this.o.stateDir, ctx: { bootId: bootId(), now: Date.now(), graceMs: RECLAIM_GRACE_MS } };
    const dead = (await scan({ ...where, probeLocks: true })).filter((f) => f.state === 'leaked');
    if (dead.length === 0) return [];
    const r = await releaseLeaked(where, dead);
    if (r.removed.length || r.unguard.length) {
      const keys = r.removed.map((a) => podKey(o.network, a.containerId, a.ifname));
      await this.engine.reconcile({ change: (pods) => { for (const k of keys) delete pods[k]; }, extra: r.unguard });
    }
    for (const f of r.released) this.log.warn({ ip: f.ip, containerId: f.containerId, ifname: f.ifname, reason: f.reason, detail: f.detail }, 'released a dead reservation');
    return r.released.map((f) => ({ ip: f.ip, containerId: f.containerId, ifname: f.ifname, reason: f.reason }));
  }

  /**
   * On the agent's way out: the proxy's listeners close, the redirect stays in
   * the kernel, so the served ports refuse connections until an agent is back
   * (fail closed), and the policy table stays as it is.
   */
  async close(): Promise<void> {
    await this.l7?.proxy.close();
  }

  /** Connections allowed and denied per policy on this node, from the policy table's counters. */
  async policyCounters(): Promise<{ policy: string; kind: string; allowed: number; denied: number }[]> {
    return (await this.engine.stats()).rows;
  }

  /** The L7 proxy's per-rule counters, for /metrics (nhi_l7_requests_total). */
  l7Samples(): [Record<string, string>, number][] {
    return this.l7?.proxy.metricSamples() ?? [];
  }
}

/** Merge-patches this node's annotations through the API (the ClusterRole's `patch` on nodes). */
export function nodeAnnotator(kc: KubeConfig, nodeName: string): (annotations: Record<string, string>) => Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  return async (annotations) => {
    await core.patchNode({ name: nodeName, body: { metadata: { annotations } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  };
}

export function enforcingSink(o: AgentOptions, log: SinkLog, kc: KubeConfig | undefined): EnforcingSink {
  const deps: EnforcingSinkDeps = {};
  const n = o.network;
  if (n.overlay !== 'none') {
    deps.network = new NodeNetwork({
      self: o.nodeName, overlay: n.overlay, vxlanPort: n.vxlanPort, vni: n.vni, encryption: n.encryption, stateDir: o.stateDir,
      ...(n.nodeIp !== undefined ? { nodeIP: n.nodeIp } : {}),
      ...(n.mtu !== undefined ? { mtu: n.mtu } : {}),
    });
  }
  if (kc) deps.annotateNode = nodeAnnotator(kc, o.nodeName);
  return new EnforcingSink(o, log, deps);
}
