// Pod groups: the node's pods grouped by what policies can see of them, and
// which policies and peers select a group. Selectors and profiles are worked
// out once per group, not once per pod - a node's pods are mostly replicas.
import { contains, parseCidr, parseIp } from '../../net/ip.js';
import { NAMESPACE_NAME_LABEL } from '../identity.js';
import type { Identity, Peer, Policy, Selector } from '../model.js';
import { selects } from '../selector.js';
import { byText, contentHash, contentKey, workloadOf, type Hasher } from './names.js';
import { famOf, type Direction, type Fam, type LocalPod } from './types.js';

/** Pods alike for every policy: one classKey (and all local, or all remote). */
export interface PodGroup {
  key: string;
  /** Pods of other nodes: peers only, no profile. */
  remote: boolean;
  identity: Identity;
  pods: LocalPod[];
  ips: Record<Fam, string[]>;
}

export type PodPeer = Extract<Peer, { kind: 'pods' }>;
export type CidrPeer = Extract<Peer, { kind: 'cidr' }>;

/**
 * The pod label keys the policies select on (subjects and pod peers, in
 * matchLabels and matchExpressions). A label outside them cannot change any
 * verdict, so it does not make a pod a workload of its own: a StatefulSet's
 * pod-name label or a Job's controller-uid keeps its pods in one group.
 */
export function relevantLabelKeys(policies: Policy[]): string[] {
  const keys = new Set<string>();
  const add = (sel: Selector | undefined) => {
    if (!sel) return;
    for (const k of Object.keys(sel.matchLabels)) keys.add(k);
    for (const r of sel.matchExpressions) keys.add(r.key);
  };
  for (const p of policies) {
    add(p.subject);
    for (const r of [...p.ingress, ...p.egress, ...p.ingressDeny, ...p.egressDeny]) {
      for (const peer of r.peers ?? []) if (peer.kind === 'pods') add(peer.pods);
    }
  }
  return [...keys].sort(byText);
}

/**
 * What policies can see of a pod, as a short hash: its namespace, namespace
 * labels, ports, the labels of `labelKeys` (all labels when undefined), and
 * the name its deny logs give it. Pods alike have the same.
 */
export function classKey(i: Identity, labelKeys?: string[], hash: Hasher = contentHash): string {
  const sorted = (o: Record<string, string>) => Object.entries(o).sort(([a], [b]) => byText(a, b));
  const labels = labelKeys ? labelKeys.filter((k) => Object.hasOwn(i.labels, k)).map((k) => [k, i.labels[k]]) : sorted(i.labels);
  return hash(contentKey(i.namespace, labels, sorted(i.namespaceLabels), i.ports, workloadOf(i)), 16);
}

/**
 * A pod's group key: its classKey, marked for a remote pod. Local and remote
 * pods alike stay in separate groups, so a local pod never takes the index
 * entry of a remote group, which has no profile (it would be classified as
 * no policy's pod: unprotected).
 */
export function groupKey(p: LocalPod & { identity: Identity }, labelKeys: string[], hash: Hasher = contentHash): string {
  const k = classKey(p.identity, labelKeys, hash);
  return p.remote ? `r${k}` : k;
}

/** The pods with an identity, grouped by groupKey; in pod id order, so a compile does not depend on the order it is given. */
export function groupPods(pods: LocalPod[], labelKeys: string[], hash: Hasher): PodGroup[] {
  const byKey = new Map<string, PodGroup>();
  for (const p of [...pods].sort((x, y) => byText(x.id, y.id))) {
    if (!p.identity) continue;
    const key = groupKey({ ...p, identity: p.identity }, labelKeys, hash);
    let g = byKey.get(key);
    if (!g) byKey.set(key, (g = { key, remote: p.remote === true, identity: p.identity, pods: [], ips: { 4: [], 6: [] } }));
    g.pods.push(p);
    for (const ip of p.ips) g.ips[famOf(ip)].push(ip);
  }
  return [...byKey.values()];
}

/** A selector as data, the same for selectors that mean the same (key and value order aside). */
function selectorKey(s: Selector): unknown {
  const labels = Object.entries(s.matchLabels).sort(([a], [b]) => byText(a, b));
  const exprs = s.matchExpressions.map((r) => JSON.stringify([r.key, r.operator, [...r.values].sort(byText)])).sort(byText);
  return [labels, exprs];
}

/** What a pod peer selects, as text: its namespaces (the policy's own when unset) and its pods. */
export function peerKey(policy: Policy, peer: PodPeer): string {
  const ns = peer.namespaces === undefined ? ['own', policy.namespace] : ['sel', selectorKey(peer.namespaces)];
  return contentKey('pods', ns, peer.pods === undefined ? null : selectorKey(peer.pods));
}

export function inBlock(peer: CidrPeer, ip: string): boolean {
  const a = parseIp(ip)!;
  return contains(parseCidr(peer.cidr)!, a) && !peer.except.some((x) => contains(parseCidr(x)!, a));
}

function nsLabels(i: Identity): Record<string, string> {
  return { ...i.namespaceLabels, [NAMESPACE_NAME_LABEL]: i.namespace };
}

export function peerSelectsPod(policy: Policy, peer: PodPeer, id: Identity): boolean {
  if (peer.namespaces === undefined ? id.namespace !== policy.namespace : !selects(peer.namespaces, nsLabels(id))) return false;
  return peer.pods === undefined || selects(peer.pods, id.labels);
}

/** The policies acting on a pod for a direction, with the same rules as evaluate.ts. */
export function acting(policies: Policy[], id: Identity, dir: Direction) {
  const denyKey = dir === 'ingress' ? 'ingressDeny' : 'egressDeny';
  const mine = policies.filter((p) => p.namespace === id.namespace && selects(p.subject, id.labels));
  const act = mine.filter((p) => p.isolates[dir] || p[denyKey].length > 0 || (p.kind === 'CiliumNetworkPolicy' && p[dir].length > 0));
  return { act, isolated: mine.some((p) => p.isolates[dir]), denyKey } as const;
}

/**
 * The numbers a pod gives the named ports that the ingress rules of `act`
 * name (resolved on the destination, the pod itself); null for one it does
 * not have. The only thing about a pod, besides which policies act on it,
 * that its ingress rules depend on.
 */
export function namedIngressPorts(act: Policy[], self: Identity): [string, string, number | null][] {
  const out: [string, string, number | null][] = [];
  for (const p of act) {
    for (const r of [...p.ingress, ...p.ingressDeny]) {
      for (const pr of r.ports ?? []) {
        if (typeof pr.port !== 'string') continue;
        out.push([pr.port, pr.protocol, self.ports.find((x) => x.name === pr.port && x.protocol === pr.protocol)?.containerPort ?? null]);
      }
    }
  }
  return out;
}
