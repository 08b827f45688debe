// The cluster view: what the informers know, turned into checked data for the
// sink (the engine and the node's network). Pure: objects in, a view out.
// Every name, label, address and policy passes the project's own validation
// (policy/names.ts, identity.ts through k8s.ts identityFromApiPod, parse.ts):
// an object that fails is refused (listed with its reason), never passed on,
// so nothing hostile reaches an nft set, a route or a message.
import { createHash } from 'node:crypto';
import { formatCidr, formatIp, networkOf, parseCidr, parseIp } from '../net/ip.js';
import { identityFromApiPod } from '../policy/k8s.js';
import type { Identity, Policy, PolicyKind } from '../policy/model.js';
import { quote, validateLabelKey, validateLabelValue, validateNamespace, validatePodName } from '../policy/names.js';
import { parsePolicyFailClosed } from '../policy/parse.js';

/** The five kinds the agent watches (their API resource names). */
export const KINDS = ['pods', 'namespaces', 'nodes', 'networkpolicies', 'ciliumnetworkpolicies'] as const;
export type Kind = (typeof KINDS)[number];

/** A pod of any node, as policies see it. */
export interface ClusterPod {
  uid: string;
  namespace: string;
  name: string;
  /** spec.nodeName; undefined while unscheduled. */
  nodeName?: string;
  /** Runs on this node. */
  local: boolean;
  /** status.phase (Pending, Running, Succeeded, Failed, Unknown). */
  phase: string;
  /** metadata.deletionTimestamp is set: terminating. */
  deleting: boolean;
  hostNetwork: boolean;
  /**
   * status.podIPs, checked and canonical. Empty for host-network pods (the
   * node's address is no workload identity) and finished pods (Succeeded,
   * Failed: their addresses may already belong to a new pod).
   */
  ips: string[];
  /** Namespace, name, labels, namespace labels, service account, named ports: validated as every identity is. */
  identity: Identity;
  /** spiffe://<trust-domain>/ns/<namespace>/sa/<serviceAccount>, when the service account is known. */
  spiffeId?: string;
}

export interface ClusterNamespace {
  name: string;
  labels: Record<string, string>;
}

export interface ClusterNode {
  name: string;
  /** spec.podCIDRs (or spec.podCIDR), canonical; empty until the controller manager allocates them. */
  podCIDRs: string[];
  /** status.addresses whose type is InternalIP or ExternalIP and whose address parses. */
  addresses: { type: 'InternalIP' | 'ExternalIP'; address: string }[];
  /** metadata.annotations whose keys are valid label keys (values are free text, the sink checks what it reads). */
  annotations: Record<string, string>;
}

/** A NetworkPolicy or CiliumNetworkPolicy: the manifest as the API holds it and what parse.ts made of it. */
export interface ClusterPolicy {
  kind: PolicyKind;
  namespace: string;
  name: string;
  uid: string;
  /** The object as JSON (apiVersion, kind, metadata, spec…), managedFields and status left out. */
  manifest: Record<string, unknown>;
  /**
   * What parse.ts made of it: one Policy, or several for a CNP with `specs`;
   * for a policy that cannot be enforced exactly, its fail-closed stand-in
   * (parsePolicyFailClosed: its own pods isolated, nothing else touched).
   */
  policies: Policy[];
  /** Why it cannot be enforced exactly, when its policies are a stand-in (also listed in ClusterView.refused). */
  refusal?: string;
}

/** An object the view leaves out, and why (shown by `nhi-cni status`, counted in /metrics). */
export interface Refused {
  kind: Kind;
  namespace?: string;
  name: string;
  reason: string;
}

export interface ClusterView {
  nodeName: string;
  /** This node's object; undefined until the API has it. */
  node?: ClusterNode;
  nodes: ClusterNode[];
  namespaces: ClusterNamespace[];
  pods: ClusterPod[];
  policies: ClusterPolicy[];
  refused: Refused[];
  /** false when cilium.io/v2 CiliumNetworkPolicy is not served (the CRD is not installed). */
  ciliumPoliciesServed: boolean;
  /** sha256 of everything above: equal views are not applied twice. */
  fingerprint: string;
}

export interface ApplyOutcome {
  ok: boolean;
  /** Why not, when !ok (logged, then the view is applied again after a backoff). */
  message?: string;
  /** Policies the sink could not enforce (L7, FQDN…), with reasons: shown by `nhi-cni status`, counted in /metrics. */
  refused?: Refused[];
  /** The MTU pods must get (the underlay's minus the overlay's overhead): written into the conflist. */
  podMtu?: number;
}

/**
 * Where views go: the engine and the node's network (the lead's), a recorder in tests.
 * A view and its parts are read-only: unchanged pods and policies are the same
 * objects from one view to the next (ViewCache).
 */
export interface ClusterSink {
  apply(view: ClusterView): Promise<ApplyOutcome>;
  /** The L7 proxy's per-rule request counts ({policy, rule, verdict}), for /metrics. */
  l7Samples?(): [Record<string, string>, number][];
  /** Releases the node's reservations proven dead (periodic leak reclaim); what was released. */
  reclaim?(o: { dataDir: string; network: string }): Promise<{ ip: string; containerId: string; ifname: string; reason: string }[]>;
  /** Stops what the sink runs in this process (the L7 proxy's listeners); the kernel state stays. */
  close?(): Promise<void>;
  /** Connections allowed and denied per policy on this node (the kernel's counters), for /metrics. */
  policyCounters?(): Promise<{ policy: string; kind: string; allowed: number; denied: number }[]>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

export interface ViewInput {
  nodeName: string;
  trustDomain: string;
  /** The informers' objects per kind, as the API sent them (the library's V1Pod etc. or raw JSON). */
  objects: Record<Kind, Iterable<unknown>>;
  ciliumPoliciesServed: boolean;
}

/**
 * What the last build made of each object, keyed by kind, namespace and name,
 * valid while the object's resourceVersion (and, for a pod, its namespace's
 * labels) are the same: a burst that touches one pod re-checks one pod, not
 * the cluster (1,000 pods and 200 policies: ~150 ms a build without it).
 */
export class ViewCache {
  readonly entries = new Map<string, { sig: string; out: unknown }>();
  private seen = new Set<string>();

  get<T>(key: string, sig: string, make: () => T): T {
    this.seen.add(key);
    const hit = this.entries.get(key);
    if (hit && hit.sig === sig) return hit.out as T;
    const out = make();
    this.entries.set(key, { sig, out });
    return out;
  }

  /** Drops what the last build did not ask for (deleted objects). */
  sweep(): void {
    for (const k of this.entries.keys()) if (!this.seen.has(k)) this.entries.delete(k);
    this.seen = new Set();
  }
}

type Made<T> = { ok: T } | { refused: string };

function attempt<T>(f: () => T): Made<T> {
  try {
    return { ok: f() };
  } catch (e) {
    return { refused: e instanceof Error ? e.message : String(e) };
  }
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The wire form of an object: the library's typed models (V1Pod…) carry Date
 * objects and undefined keys; a JSON round trip makes them what the API sent.
 */
export function plain(o: unknown): Obj {
  return JSON.parse(JSON.stringify(o)) as Obj;
}

function meta(o: Obj): { name: string; namespace?: string; uid: string } {
  const m = isObj(o.metadata) ? o.metadata : {};
  const out: { name: string; namespace?: string; uid: string } = { name: typeof m.name === 'string' ? m.name : '', uid: typeof m.uid === 'string' ? m.uid : '' };
  if (typeof m.namespace === 'string') out.namespace = m.namespace;
  return out;
}

function checkLabels(labels: unknown, where: string): Record<string, string> {
  if (labels === undefined || labels === null) return {};
  if (!isObj(labels)) throw new Error(`${where}: not a map`);
  for (const [k, v] of Object.entries(labels)) {
    const why = validateLabelKey(k) ?? (typeof v === 'string' ? validateLabelValue(v) : 'invalid label value: not a string');
    if (why) throw new Error(`${where}: ${why}`);
  }
  return { ...(labels as Record<string, string>) };
}

function canonicalIp(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  const ip = parseIp(text);
  return ip ? formatIp(ip) : undefined;
}

function canonicalCidr(text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  const c = parseCidr(text);
  return c ? formatCidr({ ip: networkOf(c), prefix: c.prefix }) : undefined;
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

function namespaceOf(raw: Obj): ClusterNamespace {
  const { name } = meta(raw);
  const why = validateNamespace(name);
  if (why) throw new Error(why);
  return { name, labels: checkLabels(raw.metadata?.labels, 'metadata.labels') };
}

function nodeOf(raw: Obj): ClusterNode {
  const { name } = meta(raw);
  const why = validatePodName(name);
  if (why) throw new Error(why);
  const spec = isObj(raw.spec) ? raw.spec : {};
  const cidrTexts: unknown[] = Array.isArray(spec.podCIDRs) ? spec.podCIDRs : spec.podCIDR ? [spec.podCIDR] : [];
  const podCIDRs: string[] = [];
  for (const t of cidrTexts) {
    const c = canonicalCidr(t);
    if (!c) throw new Error(`spec.podCIDRs: ${quote(String(t))} is not a CIDR`);
    if (!podCIDRs.includes(c)) podCIDRs.push(c);
  }
  const addresses: ClusterNode['addresses'] = [];
  for (const a of Array.isArray(raw.status?.addresses) ? raw.status.addresses : []) {
    if (!isObj(a) || (a.type !== 'InternalIP' && a.type !== 'ExternalIP')) continue;
    const ip = canonicalIp(a.address);
    if (ip) addresses.push({ type: a.type, address: ip });
  }
  const annotations: Record<string, string> = {};
  if (isObj(raw.metadata?.annotations)) {
    for (const [k, v] of Object.entries(raw.metadata.annotations as Obj)) if (typeof v === 'string' && !validateLabelKey(k)) annotations[k] = v;
  }
  return { name, podCIDRs, addresses, annotations };
}

function podOf(raw: Obj, nsLabels: Record<string, string> | undefined, input: ViewInput): ClusterPod {
  const m = meta(raw);
  if (m.namespace === undefined) throw new Error('metadata.namespace missing');
  if (nsLabels === undefined) throw new Error(`its namespace ${quote(m.namespace)} is not known (or was refused)`);
  // identityFromApiPod checks the names, labels, namespace labels, service account and named ports.
  const identity = identityFromApiPod(raw, nsLabels);
  const spec = isObj(raw.spec) ? raw.spec : {};
  const status = isObj(raw.status) ? raw.status : {};
  const phase = typeof status.phase === 'string' ? status.phase : 'Pending';
  const hostNetwork = spec.hostNetwork === true;
  const ips: string[] = [];
  if (!hostNetwork && phase !== 'Succeeded' && phase !== 'Failed') {
    const texts: unknown[] = Array.isArray(status.podIPs) ? status.podIPs.map((p: unknown) => (isObj(p) ? p.ip : p)) : status.podIP ? [status.podIP] : [];
    for (const t of texts) {
      const ip = canonicalIp(t);
      if (!ip) throw new Error(`status.podIPs: ${quote(String(t))} is not an IP address`);
      if (!ips.includes(ip)) ips.push(ip);
    }
  }
  const nodeName = typeof spec.nodeName === 'string' && spec.nodeName !== '' ? spec.nodeName : undefined;
  if (nodeName !== undefined) {
    const why = validatePodName(nodeName);
    if (why) throw new Error(`spec.nodeName: ${why}`);
  }
  const pod: ClusterPod = {
    uid: m.uid,
    namespace: identity.namespace,
    name: identity.name,
    local: nodeName === input.nodeName,
    phase,
    deleting: raw.metadata?.deletionTimestamp !== undefined && raw.metadata?.deletionTimestamp !== null,
    hostNetwork,
    ips,
    identity,
  };
  if (nodeName !== undefined) pod.nodeName = nodeName;
  if (identity.serviceAccount !== undefined) pod.spiffeId = spiffeId(input.trustDomain, identity.namespace, identity.serviceAccount);
  return pod;
}

const POLICY_KIND: Partial<Record<Kind, { apiVersion: string; kind: PolicyKind }>> = {
  networkpolicies: { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy' },
  ciliumnetworkpolicies: { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy' },
};

function policyOf(kind: Kind, raw: Obj): ClusterPolicy {
  const info = POLICY_KIND[kind]!;
  const m = meta(raw);
  // List items come without apiVersion and kind: the informer's kind says what they are.
  const { managedFields: _mf, ...metadata } = isObj(raw.metadata) ? raw.metadata : {};
  const { status: _st, ...rest } = raw;
  const manifest: Obj = { ...rest, apiVersion: info.apiVersion, kind: info.kind, metadata };
  // HTTP rules are the agent's L7 proxy's to enforce (src/agent/enforce.ts): kept, never an L4 allow.
  const { policies, refused } = parsePolicyFailClosed(manifest, 'Kubernetes API', { l7: 'proxy' });
  const out: ClusterPolicy = { kind: info.kind, namespace: m.namespace ?? '', name: m.name, uid: m.uid, manifest, policies };
  if (refused) out.refusal = refused.reason;
  return out;
}

const byKey = (a: { namespace?: string; name: string }, b: { namespace?: string; name: string }) =>
  `${a.namespace ?? ''}/${a.name}`.localeCompare(`${b.namespace ?? ''}/${b.name}`);

/** The view of what the informers hold. Sorted, so equal inputs give equal fingerprints. */
export function buildView(input: ViewInput, cache: ViewCache = new ViewCache()): ClusterView {
  const refused: Refused[] = [];
  // An object without a resourceVersion (a test's literal) is never taken from the cache.
  const rvOf = (raw: Obj) => (typeof raw.metadata?.resourceVersion === 'string' && raw.metadata.resourceVersion !== '' ? raw.metadata.resourceVersion : `nocache-${Math.random()}`);
  function convert<T>(kind: Kind, raw: Obj, extraSig: string, f: (plainObj: Obj) => T, out: T[]): void {
    const m = meta(raw);
    const made = cache.get(`${kind}/${m.namespace ?? ''}/${m.name}`, `${m.uid}|${rvOf(raw)}|${extraSig}`, () => attempt(() => f(plain(raw))));
    if ('ok' in made) {
      out.push(made.ok);
      return;
    }
    const r: Refused = { kind, name: m.name, reason: made.refused };
    if (m.namespace !== undefined) r.namespace = m.namespace;
    refused.push(r);
  }
  const each = (kind: Kind) => [...input.objects[kind]].filter(isObj);

  const namespaces: ClusterNamespace[] = [];
  for (const raw of each('namespaces')) convert('namespaces', raw, '', namespaceOf, namespaces);
  const nsLabels = new Map(namespaces.map((n) => [n.name, n.labels]));

  const nodes: ClusterNode[] = [];
  for (const raw of each('nodes')) convert('nodes', raw, '', nodeOf, nodes);

  const pods: ClusterPod[] = [];
  const podSig = `${input.nodeName}|${input.trustDomain}`;
  for (const raw of each('pods')) {
    const labels = nsLabels.get(meta(raw).namespace ?? '');
    convert('pods', raw, `${podSig}|${labels ? JSON.stringify(labels) : '-'}`, (p) => podOf(p, labels, input), pods);
  }

  const policies: ClusterPolicy[] = [];
  for (const kind of ['networkpolicies', 'ciliumnetworkpolicies'] as const) {
    for (const raw of each(kind)) convert(kind, raw, '', (p) => policyOf(kind, p), policies);
  }
  // A policy that cannot be enforced exactly is refused (status, metrics) and
  // enforced through its fail-closed stand-in: dropping it would open its pods.
  for (const p of policies) {
    if (p.refusal !== undefined) refused.push({ kind: p.kind === 'NetworkPolicy' ? 'networkpolicies' : 'ciliumnetworkpolicies', namespace: p.namespace, name: p.name, reason: p.refusal });
  }
  cache.sweep();

  namespaces.sort(byKey);
  nodes.sort(byKey);
  pods.sort(byKey);
  policies.sort((a, b) => a.kind.localeCompare(b.kind) || byKey(a, b));
  refused.sort((a, b) => a.kind.localeCompare(b.kind) || byKey(a, b));
  const body = { nodeName: input.nodeName, nodes, namespaces, pods, policies: policies.map((p) => ({ kind: p.kind, manifest: p.manifest })), refused, ciliumPoliciesServed: input.ciliumPoliciesServed };
  const fingerprint = createHash('sha256').update(JSON.stringify(body)).digest('hex');
  const view: ClusterView = { nodeName: input.nodeName, nodes, namespaces, pods, policies, refused, ciliumPoliciesServed: input.ciliumPoliciesServed, fingerprint };
  const node = nodes.find((n) => n.name === input.nodeName);
  if (node) view.node = node;
  return view;
}
