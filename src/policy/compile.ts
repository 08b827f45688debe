// Policies + the pods of this node -> one nftables transaction (JSON objects,
// never ruleset text). Pure: the runner applies what this returns.
//
// Layout, in the table `inet nhi_policy`:
//   chain forward (hook forward)  ct established/related accept;
//                                 ip[6] saddr vmap @eg4/@eg6  (the source pod's egress profile)
//                                 ip[6] daddr vmap @in4/@in6  (the destination pod's ingress profile)
//   chain input   (hook input)    ct established/related accept; ip[6] saddr vmap @eg4/@eg6
//   maps eg4 eg6 in4 in6          pod address -> jump <profile chain>: ONE lookup classifies a connection
//   chains pr_<hash>              a profile: the rules of the policies that select a pod, for one
//                                 direction; pods with the same policies share one chain
//   sets p_<hash>_4/_6            addresses of the pods a rule's peer selector matches
//   sets n_<hash>_4/_6            (address . protocol . port) of egress named ports, per peer pod
//   counters a_<hash> / d_<hash>  connections allowed by a policy / denied by a profile
// Pods on the same bridge are covered by the forward hook through
// br_netfilter (bridge-nf-call-iptables), pod -> node by the input hook, and
// the node's own traffic to its pods (kubelet probes) by neither: it passes.
// Per-packet cost: one map lookup, then the rules of one profile, each a set
// lookup. Adding a pod adds set and map elements; rules change only when the
// policies (or a new combination of them) do.
import { createHash } from 'node:crypto';
import { contains, parseCidr, parseIp } from '../net/ip.js';
import type { NftCommand } from '../sys/nft.js';
import { NAMESPACE_NAME_LABEL } from './identity.js';
import { policyId, type Identity, type Peer, type Policy, type PortRule, type Protocol, type Rule, type Selector } from './model.js';
import { selects } from './selector.js';

export const POLICY_TABLE = 'nhi_policy';
/**
 * The version of the table's layout (base chains, maps, naming). A state
 * compiled under another one is applied whole, never as a difference: an
 * upgraded plugin rewrites the table at its first change.
 */
export const POLICY_LAYOUT = 3;
const F = 'inet';

/** A pod of this node as the compiler sees it. */
export interface LocalPod {
  /** "<network>/<containerID>/<ifname>". */
  id: string;
  /** Bare addresses. */
  ips: string[];
  identity?: Identity;
}

export interface AuditOptions {
  /** Everything is in audit mode: log what would be denied, let it pass. */
  all: boolean;
  namespaces: string[];
  /** Policy ids ("ns/name"). */
  policies: string[];
}

/** The names a compile created, kept in state so the next one can remove what is no longer used. */
export interface CompiledNames {
  chains: string[];
  sets: string[];
}

/**
 * What a compile wants in the kernel, kept in the node's state so the next
 * ADD or DEL can apply only the difference (see delta()). Chain names are
 * hashes of their content, so a chain is either unchanged or new.
 */
export interface Desired {
  sets: Record<string, { type: string | string[]; elems: string[] }>;
  chains: string[];
  counters: string[];
  /** map name -> address -> profile chain. */
  vmaps: Record<string, Record<string, string>>;
}

/** What a group of alike pods (classKey) is part of: set memberships and profile chains. */
export interface ClassEntry {
  /** [set] or, for (address . protocol . port) sets, [set, protocol, port]. */
  sets: [string, string?, number?][];
  /** In a named-port set through an ipBlock: membership depends on the address. */
  ipDependent: boolean;
  ingress?: string;
  egress?: string;
}

export interface Compiled {
  /** Per pod group (classKey with labelKeys), for fastDelta(). */
  classIndex: Record<string, ClassEntry>;
  /** The label keys the policies select on: the others do not tell pod groups apart. */
  labelKeys: string[];
  /** Per pod id: set elements that follow its addresses rather than its group (see ClassEntry.ipDependent). */
  podElems: Record<string, [string, string][]>;
  /** The whole state, flushed and refilled: for a first apply, a policy change, or recovery. */
  commands: NftCommand[];
  desired: Desired;
  /** The rules of every chain of this compile, for delta() to create new ones. */
  chainRules: Record<string, unknown[][]>;
  names: CompiledNames;
  /**
   * Profile chain -> the policies acting in it (policyKey: "Kind/ns/name")
   * and, when it denies, the counter of what it denied: for `policy stats`.
   */
  profiles: Record<string, { direction: Direction; policies: string[]; denyCounter?: string }>;
  /** Pod id -> its profile chains, for CHECK and explain. */
  pods: Record<string, { ingress?: string; egress?: string }>;
}

type Direction = 'ingress' | 'egress';
type Fam = 4 | 6;
/**
 * ICMPv6 types of neighbour and router discovery and multicast listener
 * discovery (RFC 4861, 2710, 3810): MLD query 130, report 131, done 132, router
 * solicitation 133 and advertisement 134, neighbour solicitation 135 and
 * advertisement 136, MLDv2 report 143.
 */
export const IPV6_LINK_CONTROL = [130, 131, 132, 133, 134, 135, 136, 143];

/** Pod address -> its egress (eg) or ingress (in) profile chain. */
const VERDICT_MAPS = ['eg4', 'eg6', 'in4', 'in6'] as const;
type VerdictMap = (typeof VERDICT_MAPS)[number];

const hashes = new Map<string, string>();
/** A short content hash for kernel names; memoised (a compile asks for the same ones per pod group). */
const hash = (s: string, n = 12): string => {
  const k = `${n}:${s}`;
  let h = hashes.get(k);
  if (h === undefined) {
    h = createHash('sha256').update(s).digest('hex').slice(0, n);
    if (hashes.size > 100_000) hashes.clear();
    hashes.set(k, h);
  }
  return h;
};
/**
 * What names a policy in the kernel: its kind too, since a NetworkPolicy and
 * a CiliumNetworkPolicy may share a namespace and name.
 */
export const policyKey = (p: Pick<Policy, 'kind' | 'namespace' | 'name'>) => `${p.kind}/${policyId(p)}`;
/** Connections a policy allowed (argument: policyKey). */
export const allowCounter = (key: string) => `a_${hash(key)}`;
/** Connections denied by a policy's own deny rules (CiliumNetworkPolicy ingressDeny/egressDeny). */
export const ruleDenyCounter = (p: Pick<Policy, 'kind' | 'namespace' | 'name'>) => `d_${hash(policyKey(p))}`;

/** Addresses reaching the compiler are validated already: the family is in the spelling. */
function famOf(ip: string): Fam {
  return ip.includes(':') ? 6 : 4;
}

const addrField = (fam: Fam, field: 'saddr' | 'daddr') => ({ payload: { protocol: fam === 4 ? 'ip' : 'ip6', field } });
const match = (left: unknown, right: unknown, op = '==') => ({ match: { op, left, right } });

function prefix(cidr: string) {
  const c = parseCidr(cidr)!;
  const [addr] = cidr.split('/');
  return { prefix: { addr, len: c.prefix } };
}

/** Code-point order: localeCompare goes through ICU and was most of a compile's time. */
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

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
export function classKey(i: Identity, labelKeys?: string[]): string {
  const sorted = (o: Record<string, string>) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const labels = labelKeys ? labelKeys.filter((k) => Object.hasOwn(i.labels, k)).map((k) => [k, i.labels[k]]) : sorted(i.labels);
  return hash(JSON.stringify([i.namespace, labels, sorted(i.namespaceLabels), i.ports, workloadOf(i)]), 16);
}

/** A selector as text, the same for selectors that mean the same (key and value order aside). */
function selectorKey(s: Selector): unknown {
  const labels = Object.entries(s.matchLabels).sort(([a], [b]) => byText(a, b));
  const exprs = s.matchExpressions.map((r) => JSON.stringify([r.key, r.operator, [...r.values].sort(byText)])).sort(byText);
  return [labels, exprs];
}

const peerKeys = new WeakMap<object, string>();
/** What a pod peer selects, as text: its namespaces (the policy's own when unset) and its pods. */
function peerKey(policy: Policy, peer: Extract<Peer, { kind: 'pods' }>): string {
  let k = peerKeys.get(peer);
  if (k === undefined) {
    const ns = peer.namespaces === undefined ? ['own', policy.namespace] : ['sel', selectorKey(peer.namespaces)];
    k = JSON.stringify(['pods', ns, peer.pods === undefined ? null : selectorKey(peer.pods)]);
    peerKeys.set(peer, k);
  }
  return k;
}

function inBlock(peer: Extract<Peer, { kind: 'cidr' }>, ip: string): boolean {
  const a = parseIp(ip)!;
  return contains(parseCidr(peer.cidr)!, a) && !peer.except.some((x) => contains(parseCidr(x)!, a));
}

function nsLabels(i: Identity): Record<string, string> {
  return { ...i.namespaceLabels, [NAMESPACE_NAME_LABEL]: i.namespace };
}

function peerSelectsPod(policy: Policy, peer: Extract<Peer, { kind: 'pods' }>, id: Identity): boolean {
  if (peer.namespaces === undefined ? id.namespace !== policy.namespace : !selects(peer.namespaces, nsLabels(id))) return false;
  return peer.pods === undefined || selects(peer.pods, id.labels);
}

/** The policies acting on a pod for a direction, with the same rules as evaluate.ts. */
function acting(policies: Policy[], id: Identity, dir: Direction) {
  const denyKey = dir === 'ingress' ? 'ingressDeny' : 'egressDeny';
  const mine = policies.filter((p) => p.namespace === id.namespace && selects(p.subject, id.labels));
  const act = mine.filter((p) => p.isolates[dir] || p[denyKey].length > 0 || (p.kind === 'CiliumNetworkPolicy' && p[dir].length > 0));
  return { act, isolated: mine.some((p) => p.isolates[dir]), denyKey } as const;
}

class Builder {
  readonly sets = new Map<string, { type: string | string[]; flags?: string[]; elems: unknown[] }>();
  readonly chains = new Map<string, unknown[][]>();
  readonly counters = new Set<string>();

  /**
   * Pods grouped by what policies can see of them (namespace, labels,
   * namespace labels, ports): selectors and profiles are worked out once per
   * group, not once per pod - a node's pods are mostly replicas.
   */
  readonly classes: { key: string; identity: Identity; pods: LocalPod[]; ips: Record<Fam, string[]> }[] = [];
  /** Which classes a (policy, peer) selects: shared by its IPv4 and IPv6 sets. */
  private readonly selected = new Map<string, Builder['classes']>();
  /** Per pod group: the sets its addresses are in (with the port, for named-port sets). */
  readonly membership = new Map<string, ClassEntry>();
  /** Per pod: elements that depend on its addresses, not its group (named ports through an ipBlock). */
  readonly podElems: Record<string, [string, string][]> = {};

  private member(key: string): ClassEntry {
    let m = this.membership.get(key);
    if (!m) this.membership.set(key, (m = { sets: [], ipDependent: false }));
    return m;
  }

  /** relevantLabelKeys() of the policies. */
  readonly labelKeys: string[];

  constructor(
    readonly policies: Policy[],
    pods: LocalPod[],
  ) {
    this.labelKeys = relevantLabelKeys(policies);
    const byKey = new Map<string, Builder['classes'][number]>();
    for (const p of [...pods].sort((x, y) => byText(x.id, y.id))) {
      if (!p.identity) continue;
      const key = classKey(p.identity, this.labelKeys);
      let c = byKey.get(key);
      if (!c) byKey.set(key, (c = { key, identity: p.identity, pods: [], ips: { 4: [], 6: [] } }));
      c.pods.push(p);
      for (const ip of p.ips) c.ips[famOf(ip)].push(ip);
    }
    this.classes = [...byKey.values()];
  }

  /**
   * The set of addresses of local pods a pod peer selects. Named by what the
   * peer means, not by the policy it is in: policies that name the same peers
   * share one set, so a pod's ADD adds one element where many policies agree.
   */
  peerSet(policy: Policy, peer: Extract<Peer, { kind: 'pods' }>, fam: Fam): string {
    const key = peerKey(policy, peer);
    const name = `p_${hash(key)}_${fam}`;
    if (!this.sets.has(name)) {
      let classes = this.selected.get(key);
      if (!classes) this.selected.set(key, (classes = this.classes.filter((c) => peerSelectsPod(policy, peer, c.identity))));
      const elems = classes.flatMap((c) => c.ips[fam]);
      for (const c of classes) this.member(c.key).sets.push([name]);
      this.sets.set(name, { type: fam === 4 ? 'ipv4_addr' : 'ipv6_addr', elems: [...new Set(elems)] });
    }
    return name;
  }

  /**
   * (address . protocol . port) of the node's pods that the peer matches and
   * that have the named port. An ipBlock peer matches pods by address (an
   * ipBlock matches pod addresses too); a named port never matches a non-pod.
   * Named, like peerSet, by meaning: peer, protocol and port name.
   */
  namedPortSet(policy: Policy, peer: Peer | undefined, pr: PortRule, fam: Fam): string {
    const who = peer === undefined ? null : peer.kind === 'pods' ? peerKey(policy, peer) : ['cidr', peer.cidr, [...peer.except].sort(byText)];
    const name = `n_${hash(JSON.stringify([who, pr.protocol, pr.port]))}_${fam}`;
    if (!this.sets.has(name)) {
      const elems: unknown[] = [];
      for (const c of this.classes) {
        if (peer?.kind === 'pods' && !peerSelectsPod(policy, peer, c.identity)) continue;
        const port = c.identity.ports.find((x) => x.name === pr.port && x.protocol === pr.protocol);
        if (!port) continue;
        // An ipBlock decides by address, not by group: such a group cannot take the fast path.
        if (peer?.kind === 'cidr') this.member(c.key).ipDependent = true;
        else this.member(c.key).sets.push([name, pr.protocol.toLowerCase(), port.containerPort]);
        const proto = pr.protocol.toLowerCase();
        if (peer?.kind !== 'cidr') {
          for (const ip of c.ips[fam]) elems.push({ concat: [ip, proto, port.containerPort] });
          continue;
        }
        for (const pod of c.pods) {
          for (const ip of pod.ips) {
            if (famOf(ip) !== fam || !inBlock(peer, ip)) continue;
            const elem = { concat: [ip, proto, port.containerPort] };
            elems.push(elem);
            (this.podElems[pod.id] ??= []).push([name, JSON.stringify(elem)]);
          }
        }
      }
      this.sets.set(name, { type: [fam === 4 ? 'ipv4_addr' : 'ipv6_addr', 'inet_proto', 'inet_service'], elems });
    }
    return name;
  }

  /** The addresses of one group of alike pods (w_), for the log rule naming its workload. */
  workloadSet(cls: Builder['classes'][number], fam: Fam): string {
    const name = `w_${hash(cls.key)}_${fam}`;
    if (!this.sets.has(name)) {
      this.member(cls.key).sets.push([name]);
      this.sets.set(name, { type: fam === 4 ? 'ipv4_addr' : 'ipv6_addr', elems: [...cls.ips[fam]] });
    }
    return name;
  }

  /**
   * The expressions of one rule, as alternatives (each an nft rule): every
   * (peer, port) pair, per address family where the peer needs one.
   */
  ruleAlternatives(policy: Policy, rule: Rule, dir: Direction, self: Identity): unknown[][] {
    const field = dir === 'ingress' ? 'saddr' : 'daddr';
    const peers: (Peer | undefined)[] = rule.peers ?? [undefined];
    const ports: (PortRule | undefined)[] = rule.ports ?? [undefined];
    const out: unknown[][] = [];
    for (const peer of peers) {
      const fams: (Fam | undefined)[] = peer === undefined ? [undefined] : peer.kind === 'cidr' ? [parseCidr(peer.cidr)!.ip.family === 4 ? 4 : 6] : [4, 6];
      for (const fam of fams) {
        for (const pr of ports) {
          const exprs: unknown[] = [];
          const named = pr !== undefined && typeof pr.port === 'string';
          if (named && dir === 'egress') {
            // Resolved on each destination pod: one concatenated lookup of
            // (address . protocol . port) holding only the matching pods.
            for (const f of fam === undefined ? ([4, 6] as Fam[]) : [fam]) {
              const set = this.namedPortSet(policy, peer, pr!, f);
              const e: unknown[] = [];
              if (peer?.kind === 'pods') e.push(match(addrField(f, field), `@${this.peerSet(policy, peer, f)}`));
              e.push(match({ concat: [addrField(f, 'daddr'), { meta: { key: 'l4proto' } }, { payload: { protocol: 'th', field: 'dport' } }] }, `@${set}`));
              out.push(e);
            }
            continue;
          }
          if (peer?.kind === 'pods') exprs.push(match(addrField(fam!, field), `@${this.peerSet(policy, peer, fam!)}`));
          if (peer?.kind === 'cidr') {
            exprs.push(match(addrField(fam!, field), prefix(peer.cidr)));
            for (const x of peer.except) exprs.push(match(addrField(fam!, field), prefix(x), '!='));
          }
          if (pr) {
            let port: number | { range: [number, number] } | undefined;
            if (named) {
              // Ingress: resolved on the selected pod itself (the destination).
              const p = self.ports.find((x) => x.name === pr.port && x.protocol === pr.protocol);
              if (!p) continue; // this pod has no such port: the clause matches nothing
              port = p.containerPort;
            } else if (typeof pr.port === 'number') {
              port = pr.endPort !== undefined ? { range: [pr.port, pr.endPort] } : pr.port;
            }
            exprs.push(match({ meta: { key: 'l4proto' } }, pr.protocol.toLowerCase()));
            if (port !== undefined) exprs.push(match({ payload: { protocol: 'th', field: 'dport' } }, port));
          }
          out.push(exprs);
        }
      }
    }
    return out;
  }
}

/**
 * The numbers a pod gives the named ports that the ingress rules of `act`
 * name (resolved on the destination, the pod itself); null for one it does
 * not have. The only thing about a pod, besides which policies act on it,
 * that its ingress rules depend on.
 */
function namedIngressPorts(act: Policy[], self: Identity): [string, string, number | null][] {
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

/** The label that names a workload in logs: the usual app labels, else the first label, else "-". */
const WORKLOAD_LABELS = ['app.kubernetes.io/name', 'app', 'k8s-app', 'name'];
export function workloadOf(i: Identity): string {
  for (const k of WORKLOAD_LABELS) if (Object.hasOwn(i.labels, k)) return `${i.namespace}/${i.labels[k]}`;
  const first = Object.keys(i.labels).sort(byText)[0];
  return first === undefined ? `${i.namespace}/-` : `${i.namespace}/${first}=${i.labels[first]}`;
}

/**
 * A log prefix: "nhi-deny in wl=<ns>/<app> pol=<policy>[+n]: ", the workload
 * left out for a deny rule of a policy (its chain is shared by workloads; the
 * logged address names the pod: `nhi-cni who`). Names and labels are
 * validated (no quote or space can reach here); nft allows 127 bytes.
 */
export function logPrefix(kind: 'deny' | 'audit', dir: Direction, policies: string[], workload?: string): string {
  const pol = policies.length > 1 ? `${policies[0]}+${policies.length - 1}` : (policies[0] ?? '-');
  const head = `nhi-${kind} ${dir === 'ingress' ? 'in' : 'eg'}${workload ? ` wl=${workload}` : ''} pol=${pol}`;
  return `${head.slice(0, 118)}: `;
}

function isAudited(audit: AuditOptions, pid: string, ns: string): boolean {
  return audit.all || audit.namespaces.includes(ns) || audit.policies.includes(pid);
}

/**
 * The whole desired state as one transaction: objects are declared (a no-op
 * when they exist), sets, maps and profile chains flushed and refilled, and
 * chains and sets the previous compile made but this one does not deleted.
 * Named counters are never flushed, so per-policy counts survive.
 */
export function compile(policies: Policy[], pods: LocalPod[], audit: AuditOptions, previous: CompiledNames = { chains: [], sets: [] }): Compiled {
  const b = new Builder(policies, pods);
  const vmap: Record<VerdictMap, unknown[]> = Object.fromEntries(VERDICT_MAPS.map((m) => [m, []])) as unknown as Record<VerdictMap, unknown[]>;
  const profiles: Compiled['profiles'] = {};
  const podProfiles: Compiled['pods'] = {};

  // Pass 1: per group of alike pods and direction, the rules of the policies
  // acting on it. Groups with the same rules share one profile. The rules
  // follow from the acting policies and, for named ports on ingress, the
  // numbers the pod gives them: groups alike in those are found before any
  // rule is built, and the rules are built once per profile.
  const groups = new Map<string, { dir: Direction; ids: string[]; rules: unknown[][]; isolated: boolean; audited: boolean; isolating: string[]; classes: Builder['classes'] }>();
  const byInputs = new Map<string, string>();
  const rate = { limit: { rate: 10, per: 'second', burst: 20 } };
  for (const cls of b.classes) {
    const id = cls.identity;
    for (const dir of ['ingress', 'egress'] as Direction[]) {
      const { act, isolated, denyKey } = acting(policies, id, dir);
      if (act.length === 0) continue;
      const ids = act.map(policyKey);
      const inputs = JSON.stringify([dir, ids, isolated, dir === 'ingress' ? namedIngressPorts(act, id) : null]);
      const known = byInputs.get(inputs);
      if (known !== undefined) {
        groups.get(known)!.classes.push(cls);
        continue;
      }
      const rules: unknown[][] = [];
      const pass = dir === 'ingress' ? { accept: null } : { return: null };
      for (const p of act) {
        const pid = policyId(p);
        const audited = isAudited(audit, pid, p.namespace);
        if (p[denyKey].length > 0 && !audited) b.counters.add(ruleDenyCounter(p));
        for (const r of p[denyKey]) {
          for (const alt of b.ruleAlternatives(p, r, dir, id)) {
            // Count and log (rate-limited) in one rule, drop in the next: a
            // limit that is exhausted ends its rule, and must not end the drop.
            if (audited) {
              rules.push([...alt, rate, { log: { prefix: logPrefix('audit', dir, [pid]) } }]);
            } else {
              rules.push([...alt, { counter: ruleDenyCounter(p) }, rate, { log: { prefix: logPrefix('deny', dir, [pid]) } }]);
              rules.push([...alt, { drop: null }]);
            }
          }
        }
      }
      if (isolated) {
        for (const p of act.filter((x) => x.isolates[dir] || x.kind === 'CiliumNetworkPolicy')) {
          const counter = allowCounter(policyKey(p));
          b.counters.add(counter);
          for (const r of p[dir]) {
            for (const alt of b.ruleAlternatives(p, r, dir, id)) rules.push([...alt, { counter }, pass]);
          }
        }
      }
      const isolating = act.filter((x) => x.isolates[dir]).map(policyId);
      const key = JSON.stringify([dir, ids, rules, isolated]);
      byInputs.set(inputs, key);
      const g = groups.get(key);
      if (g) g.classes.push(cls);
      else groups.set(key, { dir, ids, rules, isolated, isolating, audited: isolating.every((pid) => isAudited(audit, pid, pid.split('/')[0]!)), classes: [cls] });
    }
  }

  // Pass 2: each profile chain ends, when it isolates, with what no rule
  // allowed: counted per profile, logged per workload (a rule per group of
  // alike pods, matching the group's own address set, so the log names the
  // workload although the profile is shared), then dropped - or, in audit
  // mode, passed. Plain set lookups: the kernel's validation of the table
  // stays linear in the pods (a verdict map looked up from a chain that a
  // verdict map jumps to would make it quadratic).
  for (const [key, g] of groups) {
    const rules = [...g.rules];
    const field = g.dir === 'ingress' ? 'daddr' : 'saddr';
    const counter = `d_${hash(key)}`;
    if (g.isolated) {
      if (!g.audited) {
        b.counters.add(counter);
        rules.push([{ counter }]);
      }
      for (const cls of g.classes) {
        const prefix = logPrefix(g.audited ? 'audit' : 'deny', g.dir, g.isolating, workloadOf(cls.identity));
        for (const fam of [4, 6] as Fam[]) rules.push([match(addrField(fam, field), `@${b.workloadSet(cls, fam)}`), rate, { log: { prefix } }]);
      }
      rules.push([g.audited ? (g.dir === 'ingress' ? { accept: null } : { return: null }) : { drop: null }]);
    }
    // Named by its content: the key holds the policies' rules, the tail the rest.
    const chain = `pr_${hash(`${key}\0${JSON.stringify(rules.slice(g.rules.length))}`)}`;
    b.chains.set(chain, rules);
    profiles[chain] = { direction: g.dir, policies: g.ids, ...(g.isolated && !g.audited ? { denyCounter: counter } : {}) };
    const d = g.dir === 'ingress' ? 'in' : 'eg';
    for (const cls of g.classes) {
      const m = b.membership.get(cls.key) ?? { sets: [], ipDependent: false };
      m[g.dir] = chain;
      b.membership.set(cls.key, m);
      for (const pod of cls.pods) {
        podProfiles[pod.id] = { ...podProfiles[pod.id], [g.dir]: chain };
        for (const ip of pod.ips) vmap[`${d}${famOf(ip)}`].push([ip, { jump: { target: chain } }]);
      }
    }
  }

  const cmds: NftCommand[] = [{ add: { table: { family: F, name: POLICY_TABLE } } }];
  for (const name of VERDICT_MAPS) {
    cmds.push({ add: { map: { family: F, table: POLICY_TABLE, name, type: name.endsWith('4') ? 'ipv4_addr' : 'ipv6_addr', map: 'verdict' } } });
    cmds.push({ flush: { map: { family: F, table: POLICY_TABLE, name } } });
  }
  for (const c of [...b.counters].sort()) cmds.push({ add: { counter: { family: F, table: POLICY_TABLE, name: c } } });
  for (const [name, s] of [...b.sets].sort(([x], [y]) => byText(x, y))) {
    cmds.push({ add: { set: { family: F, table: POLICY_TABLE, name, type: s.type } } });
    cmds.push({ flush: { set: { family: F, table: POLICY_TABLE, name } } });
    if (s.elems.length) cmds.push({ add: { element: { family: F, table: POLICY_TABLE, name, elem: s.elems } } });
  }
  for (const [name, rules] of [...b.chains].sort(([x], [y]) => byText(x, y))) {
    cmds.push({ add: { chain: { family: F, table: POLICY_TABLE, name } } });
    cmds.push({ flush: { chain: { family: F, table: POLICY_TABLE, name } } });
    for (const expr of rules) cmds.push({ add: { rule: { family: F, table: POLICY_TABLE, chain: name, expr } } });
  }
  // Base chains last, once everything they reference exists.
  const ct = match({ ct: { key: 'state' } }, ['established', 'related'], 'in');
  // IPv6 finds neighbours and routers with ICMPv6 (and joins the solicited-
  // node groups with MLD), which br_netfilter hands to these hooks like any
  // packet: under a default-deny egress it would be dropped and no IPv6
  // connection could start. Link-local control traffic, accepted first; no
  // data passes through it. (IPv4's ARP is not IP and never gets here.)
  const ndp = [match({ payload: { protocol: 'icmpv6', field: 'type' } }, { set: IPV6_LINK_CONTROL }), { accept: null }];
  const base: [string, string, unknown[][]][] = [
    ['forward', 'forward', [
      [ct, { accept: null }],
      ndp,
      [match(addrField(4, 'saddr'), '@eg4', 'vmap')],
      [match(addrField(6, 'saddr'), '@eg6', 'vmap')],
      [match(addrField(4, 'daddr'), '@in4', 'vmap')],
      [match(addrField(6, 'daddr'), '@in6', 'vmap')],
    ]],
    ['input', 'input', [
      [ct, { accept: null }],
      ndp,
      [match(addrField(4, 'saddr'), '@eg4', 'vmap')],
      [match(addrField(6, 'saddr'), '@eg6', 'vmap')],
    ]],
  ];
  for (const [name, hook, rules] of base) {
    cmds.push({ add: { chain: { family: F, table: POLICY_TABLE, name, type: 'filter', hook, prio: 0, policy: 'accept' } } });
    cmds.push({ flush: { chain: { family: F, table: POLICY_TABLE, name } } });
    for (const expr of rules) cmds.push({ add: { rule: { family: F, table: POLICY_TABLE, chain: name, expr: expr.map(vmapFix) } } });
  }
  for (const [name, elems] of Object.entries(vmap)) {
    if (elems.length) cmds.push({ add: { element: { family: F, table: POLICY_TABLE, name, elem: elems } } });
  }
  // What the previous compile made and this one does not: added first so
  // that the delete cannot fail on an object that is already gone.
  for (const name of previous.chains.filter((c) => !b.chains.has(c))) {
    cmds.push({ add: { chain: { family: F, table: POLICY_TABLE, name } } }, { delete: { chain: { family: F, table: POLICY_TABLE, name } } });
  }
  for (const name of previous.sets.filter((s) => !b.sets.has(s))) {
    cmds.push({ add: { set: { family: F, table: POLICY_TABLE, name, type: setType(name) } } }, { delete: { set: { family: F, table: POLICY_TABLE, name } } });
  }
  const desired: Desired = {
    sets: Object.fromEntries([...b.sets].map(([n, st]) => [n, { type: st.type, elems: st.elems.map((e) => JSON.stringify(e)) }])),
    chains: [...b.chains.keys()].sort(),
    counters: [...b.counters].sort(),
    vmaps: Object.fromEntries(Object.entries(vmap).map(([m, elems]) => [m, Object.fromEntries(elems.map((e) => {
      const [ip, v] = e as [string, { jump: { target: string } }];
      return [ip, v.jump.target];
    }))])),
  };
  for (const c of b.classes) if (!b.membership.has(c.key)) b.membership.set(c.key, { sets: [], ipDependent: false });
  return {
    classIndex: Object.fromEntries(b.membership),
    labelKeys: b.labelKeys,
    podElems: b.podElems,
    commands: cmds,
    desired,
    chainRules: Object.fromEntries(b.chains),
    names: { chains: desired.chains, sets: Object.keys(desired.sets).sort() },
    profiles,
    pods: podProfiles,
  };
}

/**
 * Only what changed between two compiles of the same policies: new counters,
 * sets and chains; added and removed set and map elements; removed chains and
 * sets. A pod's ADD thus costs its own elements (and a profile chain the first
 * time a combination of policies appears), not a rewrite of the node's state.
 * Order: create, then re-point the maps, then delete what nothing uses.
 */
export function delta(prev: Desired, next: Compiled): NftCommand[] {
  const T = { family: F, table: POLICY_TABLE };
  const d = next.desired;
  const cmds: NftCommand[] = [];
  const parse = (e: string): unknown => JSON.parse(e);
  for (const c of d.counters) if (!prev.counters.includes(c)) cmds.push({ add: { counter: { ...T, name: c } } });
  for (const [name, st] of Object.entries(d.sets)) {
    const old = prev.sets[name];
    if (!old) {
      cmds.push({ add: { set: { ...T, name, type: st.type } } });
      if (st.elems.length) cmds.push({ add: { element: { ...T, name, elem: st.elems.map(parse) } } });
      continue;
    }
    const had = new Set(old.elems);
    const has = new Set(st.elems);
    const added = st.elems.filter((e) => !had.has(e));
    const removed = old.elems.filter((e) => !has.has(e));
    if (added.length) cmds.push({ add: { element: { ...T, name, elem: added.map(parse) } } });
    if (removed.length) cmds.push({ delete: { element: { ...T, name, elem: removed.map(parse) } } });
  }
  const prevChains = new Set(prev.chains);
  for (const name of d.chains) {
    if (prevChains.has(name)) continue;
    cmds.push({ add: { chain: { ...T, name } } });
    for (const expr of next.chainRules[name] ?? []) cmds.push({ add: { rule: { ...T, chain: name, expr } } });
  }
  for (const [map, elems] of Object.entries(d.vmaps)) {
    const old = prev.vmaps[map] ?? {};
    const gone = Object.keys(old).filter((ip) => elems[ip] !== old[ip]);
    const come = Object.entries(elems).filter(([ip, chain]) => old[ip] !== chain);
    if (gone.length) cmds.push({ delete: { element: { ...T, name: map, elem: gone } } });
    if (come.length) cmds.push({ add: { element: { ...T, name: map, elem: come.map(([ip, chain]) => [ip, { jump: { target: chain } }]) } } });
  }
  const nextChains = new Set(d.chains);
  for (const name of prev.chains) if (!nextChains.has(name)) cmds.push({ delete: { chain: { ...T, name } } });
  for (const name of Object.keys(prev.sets)) if (!d.sets[name]) cmds.push({ delete: { set: { ...T, name } } });
  return cmds;
}

/** What a compile leaves for the operations after it: enough to know, from the pods alone, what the kernel holds. */
export type CompiledIndex = Pick<Compiled, 'classIndex' | 'podElems' | 'names' | 'labelKeys'> & { desired: Pick<Desired, 'counters'> };

/** A set's type, which its name tells: n_ sets hold (address . protocol . port), the others addresses. */
export function setType(name: string): string | string[] {
  const addr = name.endsWith('_6') ? 'ipv6_addr' : 'ipv4_addr';
  return name.startsWith('n_') ? [addr, 'inet_proto', 'inet_service'] : addr;
}

/** The set elements a pod's addresses give under a group entry: [set, element as JSON]. */
export function classElems(e: ClassEntry, ip: string): [string, string][] {
  const fam = `_${famOf(ip)}`;
  const out: [string, string][] = [];
  for (const [name, proto, port] of e.sets) {
    if (name.endsWith(fam)) out.push([name, JSON.stringify(proto ? { concat: [ip, proto, port] } : ip)]);
  }
  return out;
}

/** The verdict-map entries [map, chain] a pod's address gets under its group's entry. */
export function mapEntries(e: ClassEntry, ip: string): [string, string][] {
  const f = famOf(ip);
  const out: [VerdictMap, string][] = [];
  if (e.ingress) out.push([`in${f}`, e.ingress]);
  if (e.egress) out.push([`eg${f}`, e.egress]);
  return out;
}

/**
 * What the kernel holds after the compile `k` and the fast deltas since,
 * worked out from the pods: a pod's elements and map entries follow from its
 * group's entry (and its own address-dependent elements). Undefined when a
 * pod's group is not in the index: the pods and the index do not belong
 * together, and only a full apply is safe.
 */
export function deriveDesired(pods: LocalPod[], k: CompiledIndex): Desired | undefined {
  const sets: Desired['sets'] = {};
  for (const name of k.names.sets) sets[name] = { type: setType(name), elems: [] };
  const vmaps: Desired['vmaps'] = Object.fromEntries(VERDICT_MAPS.map((m) => [m, {}]));
  for (const p of pods) {
    if (!p.identity) continue;
    const e = k.classIndex[classKey(p.identity, k.labelKeys)];
    if (!e) return undefined;
    for (const ip of p.ips) {
      for (const [name, elem] of classElems(e, ip)) {
        const st = sets[name];
        if (!st) return undefined;
        st.elems.push(elem);
      }
      for (const [map, chain] of mapEntries(e, ip)) vmaps[map]![ip] = chain;
    }
    for (const [name, elem] of k.podElems[p.id] ?? []) {
      const st = sets[name];
      if (!st) return undefined;
      st.elems.push(elem);
    }
  }
  return { sets, chains: k.names.chains, counters: k.desired.counters, vmaps };
}

/**
 * The change for pods coming and going under unchanged policies, without a
 * compile and without the node's other pods: each pod's group (classKey) says
 * which sets its addresses join and which profile chains its map entries
 * point at. Undefined when a pod's group is new, or depends on addresses
 * (ipBlock named ports): compile instead.
 */
export function fastDelta(k: Pick<CompiledIndex, 'classIndex' | 'names' | 'labelKeys'>, removed: LocalPod[], added: LocalPod[]): NftCommand[] | undefined {
  const known = new Set(k.names.sets);
  const T = { family: F, table: POLICY_TABLE };
  /** set -> element -> +1 (added) / -1 (removed); map -> address -> [old chain, new chain]. */
  const elems = new Map<string, Map<string, number>>();
  const maps = new Map<string, Map<string, [string | undefined, string | undefined]>>();
  const walk = (pods: LocalPod[], sign: 1 | -1): boolean => {
    for (const p of pods) {
      if (!p.identity) continue;
      const e = k.classIndex[classKey(p.identity, k.labelKeys)];
      if (!e || e.ipDependent) return false;
      for (const ip of p.ips) {
        for (const [name, elem] of classElems(e, ip)) {
          if (!known.has(name)) return false;
          let m = elems.get(name);
          if (!m) elems.set(name, (m = new Map()));
          m.set(elem, (m.get(elem) ?? 0) + sign);
        }
        for (const [name, chain] of mapEntries(e, ip)) {
          let m = maps.get(name);
          if (!m) maps.set(name, (m = new Map()));
          const v = m.get(ip) ?? [undefined, undefined];
          v[sign === -1 ? 0 : 1] = chain;
          m.set(ip, v);
        }
      }
    }
    return true;
  };
  if (!walk(removed, -1) || !walk(added, 1)) return undefined;
  const cmds: NftCommand[] = [];
  const parse = (e: string): unknown => JSON.parse(e);
  for (const [name, m] of elems) {
    const add = [...m].filter(([, n]) => n > 0).map(([e]) => parse(e));
    const del = [...m].filter(([, n]) => n < 0).map(([e]) => parse(e));
    if (add.length) cmds.push({ add: { element: { ...T, name, elem: add } } });
    if (del.length) cmds.push({ delete: { element: { ...T, name, elem: del } } });
  }
  for (const [name, m] of maps) {
    const gone = [...m].filter(([, [was, now]]) => was !== undefined && was !== now).map(([ip]) => ip);
    const come = [...m].filter(([, [was, now]]) => now !== undefined && was !== now).map(([ip, [, now]]) => [ip, { jump: { target: now } }]);
    if (gone.length) cmds.push({ delete: { element: { ...T, name, elem: gone } } });
    if (come.length) cmds.push({ add: { element: { ...T, name, elem: come } } });
  }
  return cmds;
}

/** `ip saddr vmap @eg4` in nft JSON is a `vmap` statement, not a match. */
function vmapFix(e: unknown): unknown {
  const m = (e as { match?: { op: string; left: unknown; right: unknown } }).match;
  if (m?.op === 'vmap') return { vmap: { key: m.left, data: m.right } };
  return e;
}

export type { Protocol };
