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
import { contains, parseCidr, parseIp } from '../net/ip.js';
import { NO_AUDIT, PolicyEngine, type Pods, type RemotePeer } from '../policy/engine/index.js';
import type { NftRunner } from '../sys/nft.js';
import { NodeNetwork } from './network/node-network.js';
import { WIREGUARD_KEY_ANNOTATION, type NodeInfo } from './network/types.js';
import type { AgentOptions } from './options.js';
import type { ApplyOutcome, ClusterSink, ClusterView, Refused } from './view.js';

export interface SinkLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

export interface EnforcingSinkDeps {
  /** nft for the engine: the host's by default, a fake in unit tests. */
  nft?: NftRunner;
  /** The node programmer; undefined with --overlay none. */
  network?: NodeNetwork;
  /** Merges annotations into this node's Node object (WireGuard key); undefined: never published. */
  annotateNode?: (annotations: Record<string, string>) => Promise<void>;
  /** Makes the node ready for the engine (br_netfilter sysctls); the engine's default when undefined. */
  prepareNode?: () => void;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The remote peers of a view: other nodes' pods with addresses, never one claiming an address of this node's pod CIDRs. */
export function remotePeers(view: ClusterView): { peers: RemotePeer[]; refused: Refused[] } {
  const own = (view.node?.podCIDRs ?? []).map((c) => parseCidr(c)).filter((c) => c !== undefined);
  const peers: RemotePeer[] = [];
  const refused: Refused[] = [];
  for (const p of view.pods) {
    if (p.local || p.ips.length === 0) continue;
    // A pod of another node whose status claims an address of this node's
    // range would, as a peer, lend its identity to whichever local pod holds
    // that address: refused, whatever the API says.
    const stolen = p.ips.find((ip) => {
      const a = parseIp(ip);
      return a !== undefined && own.some((c) => c.ip.family === a.family && contains(c, a));
    });
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

export class EnforcingSink implements ClusterSink {
  readonly engine: PolicyEngine;

  constructor(
    private readonly o: Pick<AgentOptions, 'stateDir'>,
    private readonly log: SinkLog,
    private readonly deps: EnforcingSinkDeps = {},
  ) {
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
    const out: ApplyOutcome = { ok: true, refused };
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
