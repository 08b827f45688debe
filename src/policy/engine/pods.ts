// The pods the engine knows: this node's (recorded by ADD, keyed by
// attachment) and, from the cluster agent, other nodes' pods as peers.
import { parseIp } from '../../net/ip.js';
import type { LocalPod } from '../compile/index.js';
import type { Identity } from '../model.js';

/** A pod of this node as the state records it, under its podKey. */
export interface PodRecord {
  network: string;
  containerId: string;
  ifname: string;
  ips: string[];
  identity?: Identity;
  /**
   * nhi-policy: the port guard it installed (a GuardedPort of
   * src/chain/spoofcheck.ts; nhi-cni keeps it in the attachment record). Kept
   * as given: the engine never reads it, and does not import the chain.
   */
  port?: unknown;
}

/** This node's pods, by podKey. */
export type Pods = Record<string, PodRecord>;

/**
 * A pod of another node: only ever a peer (its addresses join the peer sets
 * that select it), never classified here (no verdict-map entry, no profile).
 * The same shape as the compiler's LocalPod; `id` names it uniquely in the
 * cluster (the agent uses "<node>/<namespace>/<name>").
 */
export type RemotePeer = LocalPod;

export const podKey = (network: string, containerId: string, ifname: string) => `${network}/${containerId}/${ifname}`;

/**
 * Puts a pod into the node's pods. An address it now holds may still be
 * listed for a pod whose DEL never came: that pod loses it, so nothing of its
 * access is inherited by the new holder.
 */
export function placePod(pods: Pods, key: string, pod: PodRecord): void {
  for (const [k, p] of Object.entries(pods)) if (k !== key && p.ips.some((a) => pod.ips.includes(a))) delete pods[k];
  pods[key] = pod;
}

/** GC: drops the network's pods that no valid attachment names. */
export function keepValid(pods: Pods, network: string, valid: { containerId: string; ifname: string }[]): void {
  const keep = new Set(valid.map((a) => podKey(network, a.containerId, a.ifname)));
  for (const [k, p] of Object.entries(pods)) if (p.network === network && !keep.has(k)) delete pods[k];
}

/** The pods as the compiler takes them (all, or those whose key `only` keeps); an address that does not parse is left out. */
export function compilerPods(pods: Pods, only: (key: string) => boolean = () => true): LocalPod[] {
  return Object.entries(pods)
    .filter(([id]) => only(id))
    .map(([id, p]) => ({ id, ips: p.ips.filter((a) => parseIp(a) !== undefined), ...(p.identity ? { identity: p.identity } : {}) }));
}

/**
 * Remote peers as validated input: an address that does not parse is left
 * out (the agent reads them from the API; nothing unchecked reaches nft), and
 * the list is sorted by id so that the same peers always compare equal.
 */
export function cleanRemote(remote: RemotePeer[]): RemotePeer[] {
  return remote
    .map((r) => ({ id: r.id, ips: r.ips.filter((a) => parseIp(a) !== undefined), ...(r.identity ? { identity: r.identity } : {}) }))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
