// The policy model: Kubernetes NetworkPolicy and CiliumNetworkPolicy (L3/L4,
// and its HTTP rules when the parser is told an L7 proxy enforces them),
// normalised into one form that the evaluator, the compiler, the L7 proxy
// and `policy explain` share. Pure data, no I/O.

/** A label selector (metav1.LabelSelector). An empty selector selects everything. */
export interface Selector {
  matchLabels: Record<string, string>;
  matchExpressions: SelectorRequirement[];
}

export interface SelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values: string[];
}

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/**
 * One port clause. `port` absent: every port of the protocol. A string port is
 * a named port, resolved on the pod that owns it (the selected pod for
 * ingress, the peer for egress). `endPort` makes a numeric port a range.
 */
export interface PortRule {
  protocol: Protocol;
  port?: number | string;
  endPort?: number;
  /**
   * CiliumNetworkPolicy `toPorts[].rules.http`: requests on this port are
   * allowed only when one of these matches (they are ORed). Present only
   * when the manifest was parsed with `l7: 'proxy'` (see parse.ts); never
   * empty. A clause that carries it is never an L4 allow: the compiler and
   * evaluate() without a request make it allow nothing; only the L7 proxy,
   * which sees each request, may allow connections to it (docs/l7.md).
   */
  http?: HttpRule[];
}

/**
 * One `rules.http[]` entry of a CiliumNetworkPolicy. `method`, `path` and
 * `host` are regular expressions as written (matched against the whole
 * value, see src/l7/match.ts); absent: any. Every header rule must hold.
 */
export interface HttpRule {
  method?: string;
  path?: string;
  host?: string;
  headers: HttpHeaderRule[];
  /** Where it is written in its policy ("spec.ingress[0].toPorts[0].rules.http[1]"): names it in counters and logs. */
  at: string;
}

/** `X-Foo`: the header is present; `X-Foo: bar`: present with exactly that value. */
export interface HttpHeaderRule {
  /** As written; compared case-insensitively. */
  name: string;
  value?: string;
}

/**
 * A peer. Pods: `namespaces` undefined means the policy's own namespace;
 * `pods` undefined means every pod of the selected namespaces. CIDR: an
 * address block minus exceptions; it matches pod addresses too.
 */
export type Peer =
  | { kind: 'pods'; pods?: Selector; namespaces?: Selector }
  | { kind: 'cidr'; cidr: string; except: string[] };

/** One rule: from/to any of `peers` (undefined: everyone) on any of `ports` (undefined: every port). */
export interface Rule {
  peers?: Peer[];
  ports?: PortRule[];
}

export type PolicyKind = 'NetworkPolicy' | 'CiliumNetworkPolicy';

export interface Policy {
  kind: PolicyKind;
  namespace: string;
  name: string;
  /** Which pods of `namespace` the policy selects. */
  subject: Selector;
  /** Directions this policy isolates (policyTypes, after the API's defaulting). */
  isolates: { ingress: boolean; egress: boolean };
  ingress: Rule[];
  egress: Rule[];
  /** CiliumNetworkPolicy ingressDeny / egressDeny: evaluated before any allow. */
  ingressDeny: Rule[];
  egressDeny: Rule[];
  /** Where it came from, for messages: file (or "inline") and document index. */
  source: { file: string; index: number };
}

/** A workload identity: what policies select on and name. */
export interface Identity {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  namespaceLabels: Record<string, string>;
  serviceAccount?: string;
  ports: { name: string; containerPort: number; protocol: Protocol }[];
}

/** "<namespace>/<name>", the way policies and workloads are named in output. */
export function policyId(p: Pick<Policy, 'namespace' | 'name'>): string {
  return `${p.namespace}/${p.name}`;
}
