// compile(): policies + local pods -> one nftables JSON transaction. Checked
// three ways: the shape of the transaction, that rules do not grow with pods,
// and, with a small interpreter of the nft JSON it emits, that the kernel
// would decide every connection of a grid exactly as evaluate() (the
// reference semantics) does.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { contains, parseCidr, parseIp, type Cidr } from '../../src/net/ip.js';
import { allowCounter, compile, deriveDesired, fastDelta, logPrefix, policyKey, workloadOf, POLICY_TABLE, type AuditOptions, type Compiled, type Desired, type LocalPod } from '../../src/policy/compile/index.js';
import { evaluate, type Endpoint } from '../../src/policy/evaluate.js';
import type { Identity, Policy, Protocol } from '../../src/policy/model.js';
import { parseManifestText, PolicyError } from '../../src/policy/parse.js';
import { elementKey, FakeNft, refsOf, type FakeTable } from '../../src/sys/nft-fake.js';

const EXAMPLES = join(import.meta.dirname, '../../examples/policies');
const example = (f: string) => parseManifestText(readFileSync(join(EXAMPLES, f), 'utf8'), f);
const yaml = (text: string) => parseManifestText(text, 'inline.yaml');

const NO_AUDIT: AuditOptions = { all: false, namespaces: [], policies: [] };
const ALL_AUDIT: AuditOptions = { all: true, namespaces: [], policies: [] };
const NAME = /^(pr|[pnw])_[0-9a-f]{12}(_[46])?$/;
const PROFILE = /^pr_[0-9a-f]{12}$/;
const SET = /^[pnw]_[0-9a-f]{12}_[46]$/;
const COUNTER = /^[ad]_[0-9a-f]{12}$/;
const BASE = new Set(['forward', 'input']);

// nft JSON is loosely typed; the interpreter checks every shape it meets.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

// =====================================================================
// A packet walk over the fake nftables (src/sys/nft-fake.ts) that holds
// what compile() emitted: the fake applies the transaction as nft would
// (throwing where the kernel would refuse), this walks its chains
// =====================================================================

type Nft = FakeTable;
const ipOf = (s: string) => parseIp(s);
const refs = refsOf;

interface Packet {
  src: string;
  dst: string;
  fam: 4 | 6;
  proto: 'tcp' | 'udp' | 'sctp';
  dport: number;
}
interface Trace {
  logs: string[];
  counters: string[];
  /** `meta nftrace set 1` ran: the packet is shown by `nhi-cni observe`. */
  traced?: boolean;
}
const NOMATCH = Symbol('nomatch');

function value(e: J, p: Packet): J {
  if (e?.payload) {
    const { protocol, field } = e.payload;
    if (protocol === 'ip' || protocol === 'ip6') {
      if ((protocol === 'ip') !== (p.fam === 4)) return NOMATCH; // the implicit nfproto dependency
      if (field === 'saddr') return p.src;
      if (field === 'daddr') return p.dst;
    }
    if (protocol === 'th' && field === 'dport') return p.dport;
    // The packets simulated are TCP, UDP or SCTP: an ICMPv6 match (the
    // neighbour discovery rule) never matches them (the ns tests cover it).
    if (protocol === 'icmpv6') return NOMATCH;
  }
  if (e?.meta?.key === 'l4proto') return p.proto;
  if (e?.ct?.key === 'state') return 'new';
  // The packets simulated are never DNATed: the L7 redirect's accept (ct status dnat …) never matches them.
  if (e?.ct?.key === 'status') return NOMATCH;
  if (Array.isArray(e?.concat)) {
    const vs = e.concat.map((x: J) => value(x, p));
    return vs.includes(NOMATCH) ? NOMATCH : vs;
  }
  throw new Error(`unsupported expression ${JSON.stringify(e)}`);
}

function lookup(nft: Nft, ref: string, key: J, wantMap: boolean): J {
  const s = nft.sets.get(ref.slice(1));
  if (!s) throw new Error(`lookup in missing ${ref}`);
  if ((s.map === 'verdict') !== wantMap) throw new Error(`${ref} used as a ${wantMap ? 'map' : 'set'}`);
  const e = s.elems.get(elementKey(key));
  return wantMap ? e?.value : e && true;
}

const cidrs = new Map<string, Cidr | undefined>();
function cidrOf(text: string): Cidr | undefined {
  if (!cidrs.has(text)) cidrs.set(text, parseCidr(text));
  return cidrs.get(text);
}

function matches(nft: Nft, m: J, p: Packet): boolean {
  const left = value(m.left, p);
  if (left === NOMATCH) return false;
  const r = m.right;
  let hit: boolean;
  if (typeof r === 'string' && r.startsWith('@')) hit = lookup(nft, r, left, false) !== undefined;
  else if (r?.prefix) {
    const c = cidrOf(`${r.prefix.addr}/${r.prefix.len}`);
    const a = typeof left === 'string' ? ipOf(left) : undefined;
    if (!c || !a || c.ip.family !== a.family) throw new Error(`prefix ${JSON.stringify(r)} against ${left}`);
    hit = contains(c, a);
  } else if (r?.range) hit = typeof left === 'number' && left >= r.range[0] && left <= r.range[1];
  else if (Array.isArray(r)) hit = r.includes(left);
  else if (Array.isArray(r?.set)) hit = r.set.includes(left);
  else if (typeof r === 'string' || typeof r === 'number') hit = elementKey(left) === elementKey(r);
  else throw new Error(`unsupported right side ${JSON.stringify(r)}`);
  switch (m.op) {
    case '==':
    case 'in':
      return hit;
    case '!=':
      return !hit;
    default:
      throw new Error(`unsupported op ${m.op}`);
  }
}

type Outcome = 'accept' | 'drop' | 'return' | 'next';

function verdictOf(nft: Nft, v: J, p: Packet, t: Trace, depth: number): Outcome {
  if ('accept' in v) return 'accept';
  if ('drop' in v) return 'drop';
  if ('return' in v) return 'return';
  if (v.jump) {
    const r = runChain(nft, v.jump.target, p, t, depth + 1);
    return r ?? 'next';
  }
  throw new Error(`unsupported verdict ${JSON.stringify(v)}`);
}

function runRule(nft: Nft, rule: J[], p: Packet, t: Trace, depth: number): Outcome {
  for (const e of rule) {
    const keys = Object.keys(e);
    if (keys.length !== 1) throw new Error(`expression with several keys ${JSON.stringify(e)}`);
    switch (keys[0]) {
      case 'match':
        if (!matches(nft, e.match, p)) return 'next';
        break;
      case 'counter':
        if (typeof e.counter !== 'string') throw new Error('anonymous counter');
        t.counters.push(e.counter);
        break;
      case 'log':
        t.logs.push(e.log.prefix);
        break;
      case 'limit':
        break; // treated as a no-op: the limit never runs out here
      case 'mangle':
        if (JSON.stringify(e.mangle) !== JSON.stringify({ key: { meta: { key: 'nftrace' } }, value: 1 })) throw new Error(`unsupported mangle ${JSON.stringify(e)}`);
        t.traced = true;
        break;
      case 'vmap': {
        const k = value(e.vmap.key, p);
        if (k === NOMATCH) return 'next';
        const v = lookup(nft, e.vmap.data, k, true);
        if (v === undefined) return 'next';
        return verdictOf(nft, v, p, t, depth);
      }
      case 'accept':
      case 'drop':
      case 'return':
      case 'jump':
        return verdictOf(nft, e, p, t, depth);
      default:
        throw new Error(`unsupported statement ${JSON.stringify(e)}`);
    }
  }
  return 'next';
}

/** A chain's final verdict, or undefined when it falls off the end / returns (back to the caller). */
function runChain(nft: Nft, name: string, p: Packet, t: Trace, depth = 0): 'accept' | 'drop' | undefined {
  if (depth > 16) throw new Error('jump loop');
  const ch = nft.chains.get(name);
  if (!ch) throw new Error(`no chain ${name}`);
  for (const rule of ch.rules) {
    const o = runRule(nft, rule.expr, p, t, depth);
    if (o === 'accept' || o === 'drop') return o;
    if (o === 'return') return undefined;
  }
  return undefined;
}

/** The verdict of a base chain (its policy when nothing decides) for a new connection. */
function simulate(nft: Nft, hook: 'forward' | 'input', src: string, dst: string, proto: Protocol, dport: number): { verdict: 'accept' | 'drop' } & Trace {
  const fam = ipOf(src)!.family;
  if (ipOf(dst)!.family !== fam) throw new Error('mixed families');
  const t: Trace = { logs: [], counters: [] };
  const p: Packet = { src, dst, fam, proto: proto.toLowerCase() as Packet['proto'], dport };
  const base = nft.chains.get(hook);
  if (!base || base.hook !== hook) throw new Error(`no base chain ${hook}`);
  const v = runChain(nft, hook, p, t) ?? (base.policy as 'accept' | 'drop');
  return { verdict: v, ...t };
}

/** The policy table after applying compiled transactions to an empty ruleset; compile() may touch no other table. */
function load(...cs: Compiled[]): Nft {
  const fake = new FakeNft();
  for (const c of cs) fake.apply(c.commands);
  const tables = [...fake.tables.keys()];
  if (tables.join() !== `inet ${POLICY_TABLE}`) throw new Error(`compile() touched tables ${tables.join(', ')}`);
  return fake.table('inet', POLICY_TABLE)!;
}

// =====================================================================
// The world: pods of several namespaces, non-pods, the node
// =====================================================================

interface PodSpec {
  ns: string;
  name: string;
  labels: Record<string, string>;
  ips: string[];
  ports?: Identity['ports'];
  /** No identity: a pod the policies cannot see. */
  anonymous?: boolean;
}
const NS_LABELS: Record<string, Record<string, string>> = {
  payments: { env: 'prod' },
  analytics: { team: 'analytics', env: 'prod' },
  ci: { env: 'ci' },
  registry: { env: 'ci' },
};
const tcpPort = (name: string, containerPort: number) => ({ name, containerPort, protocol: 'TCP' as Protocol });
const udpPort = (name: string, containerPort: number) => ({ name, containerPort, protocol: 'UDP' as Protocol });

const WORLD: PodSpec[] = [
  { ns: 'payments', name: 'payment-service', labels: { app: 'payment-service' }, ips: ['10.0.1.1', 'fd00::101'] },
  { ns: 'payments', name: 'payment-service-2', labels: { app: 'payment-service' }, ips: ['10.0.1.4'] },
  { ns: 'payments', name: 'payments-db', labels: { app: 'payments-db' }, ips: ['10.0.1.2', 'fd00::102'], ports: [tcpPort('pg', 5432)] },
  { ns: 'payments', name: 'web', labels: { app: 'web' }, ips: ['10.0.1.3'], ports: [tcpPort('http', 80)] },
  { ns: 'kube-system', name: 'coredns', labels: { 'k8s-app': 'kube-dns' }, ips: ['10.0.2.1', 'fd00::201'], ports: [udpPort('dns', 53), tcpPort('dns-tcp', 53)] },
  { ns: 'ml', name: 'training-data', labels: { app: 'training-data', 'data-access': 'authorized' }, ips: ['10.0.3.1'], ports: [tcpPort('api', 8080)] },
  { ns: 'ml', name: 'notebook', labels: { app: 'notebook' }, ips: ['10.0.3.2'], ports: [tcpPort('api', 9000)] },
  { ns: 'analytics', name: 'report-builder', labels: { app: 'report-builder', 'data-access': 'authorized' }, ips: ['10.0.4.1'] },
  { ns: 'analytics', name: 'report-builder-2', labels: { app: 'report-builder' }, ips: ['10.0.4.2'] },
  { ns: 'ci', name: 'build', labels: { stage: 'build' }, ips: ['10.0.5.1', 'fd00::501'] },
  { ns: 'ci', name: 'test', labels: { stage: 'test' }, ips: ['10.0.5.2'] },
  { ns: 'ci', name: 'deploy', labels: { stage: 'deploy' }, ips: ['10.0.5.3'] },
  // The same port name, two numbers (and a name that is UDP on one, TCP on the other).
  { ns: 'ci', name: 'store', labels: { app: 'artifact-store' }, ips: ['10.0.5.4'], ports: [tcpPort('http-artifacts', 8081), udpPort('metrics', 9000)] },
  { ns: 'ci', name: 'store-2', labels: { app: 'artifact-store' }, ips: ['10.0.5.5', 'fd00::505'], ports: [tcpPort('http-artifacts', 8082), tcpPort('metrics', 9000)] },
  { ns: 'registry', name: 'registry', labels: { app: 'registry' }, ips: ['10.0.6.1'] },
  { ns: 'default', name: 'lookalike', labels: { app: 'payment-service', stage: 'build' }, ips: ['10.0.7.1'] },
  { ns: 'ci', name: 'anonymous', labels: {}, ips: ['10.0.9.1'], anonymous: true },
];
/** Not pods: the internet, private ranges, an unused address inside the pod range. */
const OUTSIDE = ['8.8.8.8', '8.1.2.3', '192.168.1.5', '10.99.0.1', '2001:db8::8', 'fd00::99'];
const NODE = { 4: '10.0.0.254', 6: 'fd00::fe' } as const;
const PROTOS: Protocol[] = ['TCP', 'UDP', 'SCTP'];
/** Ports tried per protocol: every port the policies name (and neighbours) for TCP, fewer for the others. */
const PORTS: Record<Protocol, number[]> = {
  TCP: [53, 80, 443, 5000, 5432, 8080, 8081, 8082, 9000],
  UDP: [53, 5000, 8081, 9000],
  SCTP: [53, 5000, 8081, 9000],
};

function identityOf(s: PodSpec): Identity {
  return { namespace: s.ns, name: s.name, labels: s.labels, namespaceLabels: { ...NS_LABELS[s.ns] }, ports: s.ports ?? [] };
}
const podId = (s: PodSpec) => `net/${s.ns}-${s.name}/eth0`;
function localPods(world: PodSpec[]): LocalPod[] {
  return world.map((s) => ({ id: podId(s), ips: s.ips, ...(s.anonymous ? {} : { identity: identityOf(s) }) }));
}

interface End extends Endpoint {
  label: string;
  pod?: string;
}
function endpoints(world: PodSpec[]): End[] {
  const out: End[] = [];
  for (const s of world) {
    for (const ip of s.ips) out.push({ ip, label: `${s.ns}/${s.name}(${ip})`, pod: podId(s), ...(s.anonymous ? {} : { identity: identityOf(s) }) });
  }
  for (const ip of OUTSIDE) out.push({ ip, label: ip });
  return out;
}
const famOf = (ip: string) => ipOf(ip)!.family;

interface Mismatch {
  hook: string;
  from: string;
  to: string;
  port: number;
  proto: Protocol;
  evaluate: boolean;
  nft: 'accept' | 'drop';
}

/**
 * Every (from, to, port, protocol) of the grid through forward (pod or
 * outside to pod or outside) and input (to the node): the interpreter's
 * verdict against evaluate(). Counter hits are checked too: an allowed
 * isolated direction counts on an allowing policy's a_ counter.
 */
function equivalence(policies: Policy[], world: PodSpec[] = WORLD, audit: AuditOptions = NO_AUDIT, reference: Policy[] = policies) {
  const compiled = compile(policies, localPods(world), audit);
  const nft = load(compiled);
  const ends = endpoints(world);
  const mismatches: Mismatch[] = [];
  const counterIssues: string[] = [];
  let checked = 0;
  const check = (hook: 'forward' | 'input', from: End, to: End) => {
    for (const proto of PROTOS) {
      for (const port of PORTS[proto]) {
        const want = evaluate(reference, from, to, port, proto);
        const got = simulate(nft, hook, from.ip, to.ip, proto, port);
        checked++;
        if (want.allowed !== (got.verdict === 'accept')) {
          mismatches.push({ hook, from: from.label, to: to.label, port, proto, evaluate: want.allowed, nft: got.verdict });
          continue;
        }
        // `nhi-cni observe` sees exactly the denied connections (and, audited, the would-be-denied ones).
        const wouldDeny = audit === NO_AUDIT ? !want.allowed : !evaluate(policies, from, to, port, proto).allowed;
        if (Boolean(got.traced) !== wouldDeny) {
          counterIssues.push(`${hook} ${from.label} -> ${to.label} ${proto}/${port}: ${got.traced ? 'traced but allowed' : 'denied but not traced'}`);
        }
        if (audit !== NO_AUDIT || !want.allowed) continue;
        for (const d of [want.egress, want.ingress]) {
          if (d.isolated && !d.by.some((pid) => policies.filter((p) => `${p.namespace}/${p.name}` === pid).some((p) => got.counters.includes(allowCounter(policyKey(p)))))) {
            counterIssues.push(`${hook} ${from.label} -> ${to.label} ${proto}/${port}: none of ${d.by.join(',')} counted (${got.counters.join(',')})`);
          }
        }
      }
    }
  };
  for (const from of ends) {
    for (const to of ends) if (famOf(from.ip) === famOf(to.ip)) check('forward', from, to);
    check('input', from, { ip: NODE[famOf(from.ip)], label: `node(${NODE[famOf(from.ip)]})` });
  }
  return { compiled, nft, mismatches, counterIssues, checked };
}

const show = (m: Mismatch[]) => m.slice(0, 15).map((x) => `${x.hook}: ${x.from} -> ${x.to} ${x.proto}/${x.port}: evaluate ${x.evaluate ? 'allows' : 'denies'}, nft ${x.nft}s`);

// =====================================================================
// Policy sets
// =====================================================================

const payments = example('payments.yaml');
const ml = example('ml.yaml');
const cicd = example('cicd.yaml');

const IPBLOCKS = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress-cidr, namespace: payments}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24, 10.0.5.4/32]}}]
      ports: [{protocol: TCP, port: 80, endPort: 8081}]
    - to: [{ipBlock: {cidr: 'fd00::/64', except: ['fd00::500/120']}}]
    - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]}}]
      ports: [{protocol: UDP, port: 53}, {protocol: SCTP, port: 5000, endPort: 9000}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: training-from-cidr, namespace: ml}
spec:
  podSelector: {matchLabels: {app: training-data}}
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.4.0/24]}}, {ipBlock: {cidr: 8.0.0.0/8}}]
      ports: [{protocol: UDP}, {protocol: TCP, port: 8080}]
    - from: [{ipBlock: {cidr: 'fd00::/16'}}]
`);

// Named ports resolved on the destination: ingress on the selected pod,
// egress on the peer; store and store-2 map http-artifacts to 8081 and 8082.
const NAMED = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: store-ingress-named, namespace: ci}
spec:
  podSelector: {matchLabels: {app: artifact-store}}
  ingress:
    - ports: [{protocol: TCP, port: http-artifacts}, {protocol: UDP, port: metrics}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: build-egress-named, namespace: ci}
spec:
  podSelector: {matchLabels: {stage: build}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: artifact-store}}}]
      ports: [{protocol: TCP, port: http-artifacts}, {protocol: TCP, port: metrics}]
    - ports: [{protocol: UDP, port: dns}]
    - to: [{namespaceSelector: {}}]
      ports: [{protocol: TCP, port: dns-tcp}, {protocol: TCP, port: api}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: payment-to-pg, namespace: payments}
spec:
  podSelector: {matchLabels: {app: payment-service}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: payments-db}}}, {namespaceSelector: {matchLabels: {env: prod}}}]
      ports: [{port: pg}, {port: http}]
`);

const PROTOCOLS = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-protocols, namespace: payments}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - ports: [{protocol: UDP, port: 53}, {protocol: SCTP, port: 9000}]
    - from: [{namespaceSelector: {matchLabels: {env: ci}}}]
      ports: [{protocol: TCP}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: registry-any, namespace: registry}
spec:
  endpointSelector: {}
  ingress:
    - toPorts: [{ports: [{port: "5000", protocol: ANY}, {port: "8080", endPort: 8082, protocol: SCTP}]}]
`);

const CILIUM_DENY = yaml(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: test-stage, namespace: ci}
spec:
  endpointSelector: {matchLabels: {stage: test}}
  egress:
    - toEndpoints: [{}]
    - toCIDR: [8.8.8.8/32]
    - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system}}]
  egressDeny:
    - toEndpoints: [{matchLabels: {app: artifact-store}}]
      toPorts: [{ports: [{port: "8082", protocol: TCP}]}]
    - toCIDRSet: [{cidr: 8.0.0.0/8, except: [8.8.8.8/32]}]
    - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system}}]
      toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  ingress:
    - {}
  ingressDeny:
    - fromCIDR: [10.0.4.0/24]
    - fromEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": payments}}]
      toPorts: [{ports: [{port: "0", protocol: ANY}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deploy-deny-only, namespace: ci}
spec:
  endpointSelector: {matchLabels: {stage: deploy}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {stage: build}}]
  ingress:
    - fromEndpoints: [{}]
`);

// Built by hand: a deny that does not isolate, and Cilium allow rules that do
// not isolate but add to a NetworkPolicy's isolation.
const sel = (matchLabels: Record<string, string> = {}) => ({ matchLabels, matchExpressions: [] });
const base = { ingress: [], egress: [], ingressDeny: [], egressDeny: [], source: { file: 'inline', index: 0 } };
const CILIUM_NON_ISOLATING: Policy[] = [
  { ...base, kind: 'CiliumNetworkPolicy', namespace: 'payments', name: 'deny-from-ci', subject: sel(), isolates: { ingress: false, egress: false },
    ingressDeny: [{ peers: [{ kind: 'pods', namespaces: sel({ env: 'ci' }) }], ports: [{ protocol: 'TCP', port: 80 }] }],
    egressDeny: [{ peers: [{ kind: 'cidr', cidr: '8.0.0.0/8', except: [] }] }] },
  { ...base, kind: 'CiliumNetworkPolicy', namespace: 'payments', name: 'extra-allow', subject: sel({ app: 'web' }), isolates: { ingress: false, egress: false },
    ingress: [{ peers: [{ kind: 'pods', pods: sel({ app: 'payment-service' }) }] }] },
  { ...base, kind: 'NetworkPolicy', namespace: 'payments', name: 'isolate-web', subject: sel({ app: 'web' }), isolates: { ingress: true, egress: false } },
];

const UNION = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: payments}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-ingress, namespace: payments}
spec:
  podSelector: {}
  ingress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-egress-web, namespace: payments}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{}]
`);

// namespaceSelector AND podSelector in one peer, against the two as two peers (OR).
const AND_OR = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: ml}
spec:
  podSelector: {matchLabels: {app: training-data}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {team: analytics}}
          podSelector: {matchLabels: {data-access: authorized}}
      ports: [{protocol: TCP, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or, namespace: ml}
spec:
  podSelector: {matchLabels: {app: notebook}}
  ingress:
    - from:
        - namespaceSelector: {matchLabels: {team: analytics}}
        - podSelector: {matchLabels: {data-access: authorized}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: expressions, namespace: registry}
spec:
  podSelector: {}
  ingress:
    - from:
        - namespaceSelector: {matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}
          podSelector: {matchExpressions: [{key: stage, operator: DoesNotExist}]}
        - namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}
`);

/** Egress to ipBlocks on a named port: resolved on each destination pod inside the blocks. */
const NAMED_THROUGH_CIDR = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: build-named-cidr, namespace: ci}
spec:
  podSelector: {matchLabels: {stage: build}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.5.0/24, except: [10.0.5.5/32]}}, {ipBlock: {cidr: "fd00::/64"}}]
      ports: [{protocol: TCP, port: http-artifacts}]
`);

const ALL_EXAMPLES = [...payments, ...ml, ...cicd];

const SCENARIOS: Record<string, Policy[]> = {
  'payments.yaml': payments,
  'ml.yaml': ml,
  'cicd.yaml': cicd,
  'all three examples together': ALL_EXAMPLES,
  'ipBlock with except, endPort ranges, IPv4 and IPv6': IPBLOCKS,
  'named ports on ingress and egress (one name, two numbers)': NAMED,
  'UDP vs TCP vs SCTP, Cilium ANY': PROTOCOLS,
  'CiliumNetworkPolicy egressDeny/ingressDeny': CILIUM_DENY,
  'Cilium deny without isolation, non-isolating Cilium allow': CILIUM_NON_ISOLATING,
  'allow-all rules unioned with a deny-all policy': UNION,
  'namespaceSelector AND podSelector vs two peers OR, expressions': AND_OR,
  'everything at once': [...ALL_EXAMPLES, ...IPBLOCKS.filter((p) => p.name !== 'training-from-cidr'), ...CILIUM_DENY, ...AND_OR],
};

// =====================================================================
// 1. Structure
// =====================================================================

const cmdsOf = (c: Compiled, verb: string, kind: string) => c.commands.filter((x) => (x as J)[verb]?.[kind]).map((x) => (x as J)[verb][kind]);
const indexOf = (c: Compiled, verb: string, kind: string, name: string) =>
  c.commands.findIndex((x) => { const o = (x as J)[verb]?.[kind]; return o && (o.name === name || (kind === 'rule' && o.chain === name)); });
const mapElems = (c: Compiled, name: string): [string, J][] => cmdsOf(c, 'add', 'element').filter((o) => o.name === name).flatMap((o) => o.elem);

describe('compile: the shape of the transaction', () => {
  const c = compile(payments, localPods(WORLD), NO_AUDIT);

  it('declares the table, the four verdict maps and the two base chains', () => {
    expect(c.commands[0]).toStrictEqual({ add: { table: { family: 'inet', name: POLICY_TABLE } } });
    for (const [name, type] of [['eg4', 'ipv4_addr'], ['eg6', 'ipv6_addr'], ['in4', 'ipv4_addr'], ['in6', 'ipv6_addr']] as const) {
      expect(cmdsOf(c, 'add', 'map').find((m) => m.name === name)).toStrictEqual({ family: 'inet', table: POLICY_TABLE, name, type, map: 'verdict' });
      expect(indexOf(c, 'flush', 'map', name)).toBeGreaterThan(indexOf(c, 'add', 'map', name));
    }
    const chains = cmdsOf(c, 'add', 'chain');
    expect(chains.find((x) => x.name === 'forward')).toStrictEqual({ family: 'inet', table: POLICY_TABLE, name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' });
    expect(chains.find((x) => x.name === 'input')).toStrictEqual({ family: 'inet', table: POLICY_TABLE, name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'accept' });
  });

  it('base chains: ct established,related accept first, IPv6 link control, then one vmap lookup per family and direction', () => {
    const rules = (chain: string) => cmdsOf(c, 'add', 'rule').filter((r) => r.chain === chain).map((r) => r.expr);
    const ct = [{ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null }];
    const vm = (protocol: string, field: string, data: string) => [{ vmap: { key: { payload: { protocol, field } }, data } }];
    // IPv6 neighbour, router and multicast listener discovery only: no echo, no errors (those are "related").
    const nd = [{ match: { op: '==', left: { payload: { protocol: 'icmpv6', field: 'type' } }, right: { set: [130, 131, 132, 133, 134, 135, 136, 143] } } }, { accept: null }];
    expect(rules('forward')).toStrictEqual([ct, nd, vm('ip', 'saddr', '@eg4'), vm('ip6', 'saddr', '@eg6'), vm('ip', 'daddr', '@in4'), vm('ip6', 'daddr', '@in6')]);
    // Before the egress lookup: connections the L7 redirect DNATed to the agent's proxy, by their original
    // destination (a served pod port), or by their original source and port (a pod's egress HTTP rules).
    const l7 = (f: 4 | 6, by: 'daddr' | 'saddr') => [
      { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } },
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
      { match: { op: '==', left: { concat: [{ ct: { key: `${f === 4 ? 'ip' : 'ip6'} ${by}`, dir: 'original' } }, { ct: { key: 'proto-dst', dir: 'original' } }] }, right: `@l7${by === 'daddr' ? 'r' : 'e'}${f}` } },
      { accept: null },
    ];
    // ...and a connection a Service DNATed to a served pod port, delivered to the node by the redirect's mark.
    const svc = (f: 4 | 6) => [
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
      { match: { op: '==', left: { concat: [{ payload: { protocol: f === 4 ? 'ip' : 'ip6', field: 'daddr' } }, { payload: { protocol: 'th', field: 'dport' } }] }, right: `@l7r${f}` } },
      { accept: null },
    ];
    // ...and the Service path of egress rules, by (source . destination . port).
    const svcEgress = (f: 4 | 6) => [
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
      { match: { op: '==', left: { concat: [f === 4 ? 'ip' : 'ip6', f === 4 ? 'ip' : 'ip6', 'th'].map((protocol, i) => ({ payload: { protocol, field: ['saddr', 'daddr', 'dport'][i] } })) }, right: `@l7s${f}` } },
      { accept: null },
    ];
    expect(rules('input')).toStrictEqual([ct, nd, l7(4, 'daddr'), l7(6, 'daddr'), l7(4, 'saddr'), l7(6, 'saddr'), svc(4), svc(6), svcEgress(4), svcEgress(6), vm('ip', 'saddr', '@eg4'), vm('ip6', 'saddr', '@eg6')]);
    // Flushed before refilled.
    for (const b of BASE) expect(indexOf(c, 'flush', 'chain', b)).toBeLessThan(indexOf(c, 'add', 'rule', b));
  });

  it('one map element per address of each selected pod, jumping to a declared pr_ chain; unselected pods get none', () => {
    const declared = new Set(cmdsOf(c, 'add', 'chain').map((x) => x.name));
    const expectFor = (dir: 'ingress' | 'egress', fam: 4 | 6) => {
      const elems = mapElems(c, `${dir === 'ingress' ? 'in' : 'eg'}${fam}`);
      const want = WORLD.filter((s) => s.ns === 'payments').flatMap((s) => s.ips.filter((ip) => famOf(ip) === fam).map((ip) => [ip, s] as const));
      expect(elems.map(([ip]) => ip).sort()).toStrictEqual(want.map(([ip]) => ip).sort());
      for (const [ip, verdict] of elems) {
        const spec = want.find(([a]) => a === ip)![1];
        expect(Object.keys(verdict)).toStrictEqual(['jump']);
        expect(verdict.jump.target).toMatch(PROFILE);
        expect(declared.has(verdict.jump.target)).toBe(true);
        expect(c.pods[podId(spec)]![dir]).toBe(verdict.jump.target);
        expect(c.profiles[verdict.jump.target]!.direction).toBe(dir);
      }
    };
    for (const dir of ['ingress', 'egress'] as const) for (const fam of [4, 6] as const) expectFor(dir, fam);
    // Only payments is selected: no other pod's address is in any map, and no other pod has profiles.
    const others = WORLD.filter((s) => s.ns !== 'payments');
    const all = ['eg4', 'eg6', 'in4', 'in6'].flatMap((m) => mapElems(c, m).map(([ip]) => ip));
    for (const s of others) {
      for (const ip of s.ips) expect(all).not.toContain(ip);
      expect(c.pods[podId(s)]).toBeUndefined();
    }
  });

  it('pods with identical acting policies share one profile chain; different ones do not', () => {
    const ps1 = c.pods[podId(WORLD[0]!)]!;
    const ps2 = c.pods[podId(WORLD[1]!)]!;
    const db = c.pods[podId(WORLD[2]!)]!;
    const web = c.pods[podId(WORLD[3]!)]!;
    expect(ps1).toStrictEqual(ps2);
    expect(new Set([ps1.ingress, db.ingress]).size).toBe(2);
    expect(new Set([ps1.egress, db.egress]).size).toBe(2);
    // db and web are selected by the same egress policy only (default-deny), and ingress differs.
    expect(db.egress).toBe(web.egress);
    expect(db.ingress).not.toBe(web.ingress);
    expect(c.profiles[ps1.egress!]).toStrictEqual({ direction: 'egress', policies: ['NetworkPolicy/payments/default-deny', 'NetworkPolicy/payments/payment-service-egress'], denyCounter: expect.stringMatching(COUNTER) });
    expect(c.profiles[db.ingress!]).toStrictEqual({ direction: 'ingress', policies: ['NetworkPolicy/payments/default-deny', 'NetworkPolicy/payments/db-allow-payment-service'], denyCounter: expect.stringMatching(COUNTER) });
    // Profiles deny into counters of their own.
    expect(new Set(Object.values(c.profiles).map((p) => p.denyCounter)).size).toBe(Object.keys(c.profiles).length);
    // One add chain per profile.
    const profiles = cmdsOf(c, 'add', 'chain').map((x) => x.name).filter((n) => PROFILE.test(n));
    expect(profiles.sort()).toStrictEqual(Object.keys(c.profiles).sort());
    expect(new Set(profiles).size).toBe(profiles.length);
    expect(profiles).toHaveLength(5); // payment-service in + eg, db in, web in, db+web eg
  });

  it('a denied connection is counted for the profile and logged naming the workload, even where workloads share the profile', () => {
    const nft = load(c);
    const db = c.pods[podId(WORLD[2]!)]!;
    const web = c.pods[podId(WORLD[3]!)]!;
    expect(db.egress).toBe(web.egress); // one profile chain ...
    const fromDb = simulate(nft, 'forward', '10.0.1.2', '10.0.2.1', 'UDP', 53);
    const fromWeb = simulate(nft, 'forward', '10.0.1.3', '10.0.2.1', 'UDP', 53);
    expect([fromDb.verdict, fromWeb.verdict]).toStrictEqual(['drop', 'drop']);
    // ... two log lines that tell the workloads apart, one counter for the profile.
    expect(fromDb.logs).toStrictEqual(['nhi-deny eg wl=payments/payments-db pol=payments/default-deny: ']);
    expect(fromWeb.logs).toStrictEqual(['nhi-deny eg wl=payments/web pol=payments/default-deny: ']);
    expect(fromDb.counters).toStrictEqual([c.profiles[db.egress!]!.denyCounter]);
    expect(fromWeb.counters).toStrictEqual(fromDb.counters);
    // An allowed connection logs nothing.
    expect(simulate(nft, 'forward', '10.0.1.1', '10.0.1.2', 'TCP', 5432).logs).toStrictEqual([]);
    // A new workload under the same policies gets a log rule of its own in a
    // new version of the profile, which keeps counting into the same counter.
    const world = [...WORLD, { ns: 'payments', name: 'cache', labels: { app: 'cache' }, ips: ['10.0.1.7'] }];
    const more = compile(payments, localPods(world), NO_AUDIT);
    const cache = more.pods[podId(world.at(-1)!)]!;
    expect(more.pods[podId(WORLD[3]!)]!.egress).toBe(cache.egress);
    expect(cache.egress).not.toBe(web.egress);
    expect(more.profiles[cache.egress!]!.denyCounter).toBe(c.profiles[web.egress!]!.denyCounter);
    expect(simulate(load(more), 'forward', '10.0.1.7', '10.0.2.1', 'UDP', 53).logs).toStrictEqual(['nhi-deny eg wl=payments/cache pol=payments/default-deny: ']);
  });

  it('the workload in a log is the app label of its namespace, else its first label, within nft\'s 127 bytes', () => {
    const id = (labels: Record<string, string>) => ({ namespace: 'ns', name: 'p', labels, namespaceLabels: {}, ports: [] });
    expect(workloadOf(id({ 'app.kubernetes.io/name': 'api', app: 'x' }))).toBe('ns/api');
    expect(workloadOf(id({ tier: 'web', app: 'shop' }))).toBe('ns/shop');
    expect(workloadOf(id({ 'k8s-app': 'kube-dns' }))).toBe('ns/kube-dns');
    expect(workloadOf(id({ zone: 'a', stage: 'build' }))).toBe('ns/stage=build');
    expect(workloadOf(id({}))).toBe('ns/-');
    const long = logPrefix('audit', 'egress', [`${'n'.repeat(63)}/${'p'.repeat(200)}`, 'x/y'], `${'n'.repeat(63)}/${'a'.repeat(63)}`);
    expect(long.length).toBeLessThanOrEqual(127);
    expect(long.startsWith('nhi-audit eg wl=')).toBe(true);
    expect(long.endsWith(': ')).toBe(true);
  });

  it('named ports resolved on the selected pod split the profile (same policies, different numbers)', () => {
    const n = compile(NAMED, localPods(WORLD), NO_AUDIT);
    const s1 = n.pods[podId(WORLD.find((s) => s.name === 'store')!)]!;
    const s2 = n.pods[podId(WORLD.find((s) => s.name === 'store-2')!)]!;
    expect(n.profiles[s1.ingress!]!.policies).toStrictEqual(n.profiles[s2.ingress!]!.policies);
    expect(s1.ingress).not.toBe(s2.ingress);
  });

  it('peer sets are named by the peers they hold: policies naming the same peers share one, the same podSelector in another namespace does not', () => {
    const ps = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: payments}
spec:
  podSelector: {matchLabels: {app: payments-db}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [payment-service, x]}, {key: stage, operator: DoesNotExist}]}}], ports: [{port: 5432}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b, namespace: payments}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: stage, operator: DoesNotExist}, {key: app, operator: In, values: [x, payment-service]}]}}], ports: [{port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c, namespace: ml}
spec:
  podSelector: {matchLabels: {app: notebook}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [payment-service, x]}, {key: stage, operator: DoesNotExist}]}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: d, namespace: ml}
spec:
  podSelector: {matchLabels: {app: training-data}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {"kubernetes.io/metadata.name": payments}}, podSelector: {matchExpressions: [{key: app, operator: In, values: [payment-service, x]}, {key: stage, operator: DoesNotExist}]}}]}]
`);
    const k = compile(ps, localPods(WORLD), NO_AUDIT);
    const setOf = (policy: string) => {
      const prof = Object.entries(k.profiles).find(([, v]) => v.policies.includes(`NetworkPolicy/${policy}`))![0];
      const used = cmdsOf(k, 'add', 'rule').filter((r) => r.chain === prof).flatMap((r) => refs(r.expr).sets).filter((n) => n.startsWith('p_') && n.endsWith('_4'));
      return [...new Set(used)];
    };
    const [a, b, c, d] = ['payments/a', 'payments/b', 'ml/c', 'ml/d'].map(setOf);
    expect(a).toHaveLength(1);
    // The order of requirements and values does not matter; the policy does not.
    expect(b).toStrictEqual(a);
    // No namespaceSelector means the policy's own namespace: ml's peers are other pods.
    expect(c).toHaveLength(1);
    expect(c).not.toStrictEqual(a);
    // A namespaceSelector is not rewritten into "the own namespace", even when it selects the same.
    expect(d).not.toStrictEqual(a);
    // Each set once in the transaction, its elements added once.
    const declared = cmdsOf(k, 'add', 'set').map((x) => x.name);
    expect(new Set(declared).size).toBe(declared.length);
    const elemAdds = cmdsOf(k, 'add', 'element').filter((x) => x.name === a![0]);
    expect(elemAdds.map((x) => [...x.elem].sort())).toStrictEqual([['10.0.1.1', '10.0.1.4']]);
  });

  it('counters are declared with add counter, never flushed, reset or deleted, and every referenced counter is declared', () => {
    const declared = cmdsOf(c, 'add', 'counter').map((x) => x.name);
    expect(declared.length).toBeGreaterThan(0);
    for (const n of declared) expect(n).toMatch(COUNTER);
    for (const cmd of c.commands) {
      const [verb] = Object.keys(cmd);
      if (verb !== 'add') expect(Object.keys((cmd as J)[verb!])).not.toContain('counter');
    }
    const used = new Set(cmdsOf(c, 'add', 'rule').flatMap((r) => refs(r.expr).counters));
    for (const u of used) expect(declared).toContain(u);
    // Allow counters per isolating policy.
    for (const p of payments) expect(declared).toContain(allowCounter(policyKey(p)));
  });

  it('sets, maps and chains are flushed before they are refilled; names have the documented form', () => {
    // The L7 controller's sets: declared with their type, never flushed (the controller owns their elements).
    const l7 = cmdsOf(c, 'add', 'set').filter((s) => /^l7[res][46]$/.test(s.name));
    expect(l7.map((s) => [s.name, s.type])).toStrictEqual([
      ['l7r4', ['ipv4_addr', 'inet_service']], ['l7e4', ['ipv4_addr', 'inet_service']], ['l7s4', ['ipv4_addr', 'ipv4_addr', 'inet_service']],
      ['l7r6', ['ipv6_addr', 'inet_service']], ['l7e6', ['ipv6_addr', 'inet_service']], ['l7s6', ['ipv6_addr', 'ipv6_addr', 'inet_service']],
    ]);
    for (const s of l7) expect(indexOf(c, 'flush', 'set', s.name)).toBe(-1);
    for (const s of cmdsOf(c, 'add', 'set').filter((x) => !l7.includes(x))) {
      expect(s.name).toMatch(SET);
      expect(s.name).toMatch(NAME);
      expect(s.type).toStrictEqual(s.name.startsWith('n_')
        ? [s.name.endsWith('_4') ? 'ipv4_addr' : 'ipv6_addr', 'inet_proto', 'inet_service']
        : s.name.endsWith('_4') ? 'ipv4_addr' : 'ipv6_addr');
      const flush = indexOf(c, 'flush', 'set', s.name);
      expect(flush).toBeGreaterThan(indexOf(c, 'add', 'set', s.name));
      const el = c.commands.findIndex((x) => (x as J).add?.element?.name === s.name);
      if (el >= 0) expect(el).toBeGreaterThan(flush);
    }
    for (const m of ['eg4', 'eg6', 'in4', 'in6']) {
      const el = c.commands.findIndex((x) => (x as J).add?.element?.name === m);
      if (el >= 0) expect(el).toBeGreaterThan(indexOf(c, 'flush', 'map', m));
    }
    for (const ch of cmdsOf(c, 'add', 'chain')) {
      if (BASE.has(ch.name)) continue;
      expect(ch.name).toMatch(PROFILE);
      expect(ch.name).toMatch(NAME);
      const flush = indexOf(c, 'flush', 'chain', ch.name);
      expect(flush).toBeGreaterThan(indexOf(c, 'add', 'chain', ch.name));
      const firstRule = indexOf(c, 'add', 'rule', ch.name);
      expect(firstRule).toBeGreaterThan(flush);
    }
    expect(c.names.chains).toStrictEqual(Object.keys(c.profiles).sort());
    expect(c.names.sets).toStrictEqual(cmdsOf(c, 'add', 'set').map((s) => s.name).filter((n) => !/^l7[res][46]$/.test(n)).sort());
    for (const n of [...c.names.chains, ...c.names.sets]) expect(n).toMatch(NAME);
  });

  it('the transaction is valid in order: everything referenced exists when used (interpreter)', () => {
    for (const ps of Object.values(SCENARIOS)) {
      expect(() => load(compile(ps, localPods(WORLD), NO_AUDIT))).not.toThrow();
      expect(() => load(compile(ps, localPods(WORLD), ALL_AUDIT))).not.toThrow();
    }
  });

  it('stale chains and sets of the previous compile are added, then deleted; current ones are kept', () => {
    const before = compile(ALL_EXAMPLES, localPods(WORLD), NO_AUDIT);
    const after = compile(payments, localPods(WORLD), NO_AUDIT, before.names);
    const staleChains = before.names.chains.filter((x) => !after.names.chains.includes(x));
    const staleSets = before.names.sets.filter((x) => !after.names.sets.includes(x));
    expect(staleChains.length).toBeGreaterThan(0);
    expect(staleSets.some((s) => s.startsWith('n_'))).toBe(true);
    for (const name of staleChains) {
      const add = c2i(after, 'add', 'chain', name);
      const del = c2i(after, 'delete', 'chain', name);
      expect(add).toBeGreaterThanOrEqual(0);
      expect(del).toBe(add + 1);
    }
    for (const name of staleSets) {
      const add = c2i(after, 'add', 'set', name);
      expect(c2i(after, 'delete', 'set', name)).toBe(add + 1);
    }
    const deleted = after.commands.filter((x) => 'delete' in x).map((x) => Object.values((x as J).delete)[0] as J).map((o) => o.name);
    expect(deleted.sort()).toStrictEqual([...staleChains, ...staleSets].sort());
    // Applied on top of the old state: exactly the new objects remain, and
    // the result decides as a fresh load does.
    const nft = load(before, after);
    const fresh = load(after);
    expect([...nft.chains.keys()].sort()).toStrictEqual([...fresh.chains.keys()].sort());
    expect([...nft.sets.keys()].sort()).toStrictEqual([...fresh.sets.keys()].sort());
    for (const [n, s] of fresh.sets) expect([...nft.sets.get(n)!.elems]).toStrictEqual([...s.elems]);
    // Counters survive (never deleted): the old ones are still there.
    for (const n of before.commands.flatMap((x) => ((x as J).add?.counter ? [(x as J).add.counter.name] : []))) expect(nft.counters.has(n)).toBe(true);
    // Names that no longer exist at all (state of an older version) are tolerated.
    const gone = compile(payments, localPods(WORLD), NO_AUDIT, { chains: ['pr_000000000000'], sets: ['p_000000000000_6', 'n_000000000000_4'] });
    expect(() => load(gone)).not.toThrow();
  });
});

function c2i(c: Compiled, verb: string, kind: string, name: string): number {
  return c.commands.findIndex((x) => (x as J)[verb]?.[kind]?.name === name);
}

// =====================================================================
// 2. Rules do not grow with pods
// =====================================================================

describe('compile: rules do not grow with pods', () => {
  const many = (n: number): LocalPod[] => Array.from({ length: n }, (_, i) => {
    const app = i % 2 === 0 ? 'payment-service' : 'payments-db';
    const ips = [`10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`, ...(i % 5 === 0 ? [`fd00::1:${i.toString(16)}`] : [])];
    return { id: `net/pod-${i}/eth0`, ips, identity: { namespace: 'payments', name: `pod-${i}`, labels: { app }, namespaceLabels: {}, ports: [] } };
  });
  const count = (c: Compiled, pred: (x: J) => boolean) => c.commands.filter(pred).length;
  const elements = (c: Compiled) => cmdsOf(c, 'add', 'element').reduce((n, o) => n + o.elem.length, 0);

  it('2 pods and 500 pods: the same add rule commands; only elements grow', () => {
    const small = compile(payments, many(2), NO_AUDIT);
    const big = compile(payments, many(500), NO_AUDIT);
    const rules = (c: Compiled) => cmdsOf(c, 'add', 'rule');
    expect(rules(big).length).toBe(rules(small).length);
    expect(rules(big)).toStrictEqual(rules(small));
    expect(big.names).toStrictEqual(small.names);
    expect(count(big, (x) => !x.add?.element)).toBe(count(small, (x) => !x.add?.element));
    expect(elements(big)).toBeGreaterThan(elements(small) * 100);
    // Per direction, one element per address of the selected pods.
    expect(mapElems(big, 'in4')).toHaveLength(500);
    expect(mapElems(big, 'eg6')).toHaveLength(100);
  });
});

describe('compile: what the kernel holds follows from the pods and the compile', () => {
  const sorted = (d: Desired) => ({
    ...d,
    sets: Object.fromEntries(Object.entries(d.sets).map(([n, st]) => [n, { type: st.type, elems: [...st.elems].sort() }])),
  });

  it.each(Object.entries(SCENARIOS))('%s: deriveDesired(pods, compile) is the compile\'s own desired state', (_, policies) => {
    const c = compile(policies, localPods(WORLD), NO_AUDIT);
    expect(sorted(deriveDesired(localPods(WORLD), c)!)).toStrictEqual(sorted(c.desired));
  });

  it('address-dependent elements (a named port through an ipBlock) are kept per pod and derived back', () => {
    const ps = NAMED_THROUGH_CIDR;
    const n = compile(ps, localPods(WORLD), NO_AUDIT);
    expect(sorted(deriveDesired(localPods(WORLD), n)!)).toStrictEqual(sorted(n.desired));
    // store (10.0.5.4) is inside the block, store-2 only by its IPv6 address: per pod, per address.
    const elems = Object.values(n.podElems).flat().map(([, e]) => JSON.parse(e).concat);
    expect(elems.sort()).toStrictEqual([['10.0.5.4', 'tcp', 8081], ['fd00::505', 'tcp', 8082]]);
    expect(Object.values(n.classIndex).filter((e) => e.ipDependent)).toHaveLength(2);
    // Such a group never takes the fast path.
    const store = localPods(WORLD).find((p) => p.id === podId(WORLD.find((w) => w.name === 'store')!))!;
    expect(fastDelta(n, [], [{ ...store, id: 'net/store-3/eth0', ips: ['10.0.5.6'] }])).toBeUndefined();
  });

  it('a label no policy selects on does not make a new group: StatefulSet replicas take the no-compile path; a selected label does', () => {
    const base = localPods(WORLD);
    const c = compile(payments, base, NO_AUDIT);
    expect(c.labelKeys).toContain('app');
    expect(c.labelKeys).not.toContain('statefulset.kubernetes.io/pod-name');
    const db = base.find((p) => p.id === podId(WORLD[2]!))!;
    const replica = (n: number, extra: Record<string, string>): LocalPod => ({
      id: `net/db-${n}/eth0`, ips: [`10.0.1.${50 + n}`], identity: { ...db.identity!, name: `db-${n}`, labels: { ...db.identity!.labels, ...extra } },
    });
    // A unique pod-name label: same group, so no compile, and the same result as a compile.
    const sts = replica(1, { 'statefulset.kubernetes.io/pod-name': 'db-1' });
    const cmds = fastDelta(c, [], [sts]);
    expect(cmds).toBeDefined();
    const after = compile(payments, [...base, sts], NO_AUDIT);
    expect(after.pods[sts.id]).toStrictEqual(c.pods[db.id]);
    expect(Object.keys(after.classIndex).sort()).toStrictEqual(Object.keys(c.classIndex).sort());
    // A label the policies select on (app), or another workload name in the logs: a new group.
    expect(fastDelta(c, [], [replica(2, { app: 'payment-service' })])).toBeUndefined();
    expect(fastDelta(c, [], [{ ...replica(3, {}), identity: { ...db.identity!, labels: { 'app.kubernetes.io/name': 'other', ...db.identity!.labels } } }])).toBeUndefined();
  });

  it('a pod whose group the compile does not know: undefined, never a guess', () => {
    const c = compile(payments, localPods(WORLD.slice(0, 3)), NO_AUDIT);
    expect(deriveDesired(localPods(WORLD.slice(0, 4)), c)).toBeUndefined();
    expect(fastDelta(c, [], localPods(WORLD.slice(3, 4)))).toBeUndefined();
  });

  it('fastDelta for replicas of known groups: the elements and map entries of the difference, nothing else', () => {
    const base = localPods(WORLD);
    const c = compile(ALL_EXAMPLES, base, NO_AUDIT);
    const ps = base.find((p) => p.id === podId(WORLD[0]!))!;
    const replica: LocalPod = { id: 'net/replica/eth0', ips: ['10.0.1.9', 'fd00::109'], identity: { ...ps.identity!, name: 'replica' } };
    const cmds = fastDelta(c, [], [replica])!;
    const after = compile(ALL_EXAMPLES, [...base, replica], NO_AUDIT);
    // Applying the commands to the derived state gives the compile of the new pods.
    const was = deriveDesired(base, c)!;
    for (const cmd of cmds as J[]) {
      const [verb, o] = Object.entries(cmd)[0] as [string, J];
      const el = o.element;
      if (el.name in was.sets) {
        const st = new Set(was.sets[el.name]!.elems);
        for (const e of el.elem) (verb === 'add' ? st.add(JSON.stringify(e)) : st.delete(JSON.stringify(e)));
        was.sets[el.name]!.elems = [...st];
      } else {
        for (const e of el.elem) {
          if (verb === 'add') was.vmaps[el.name]![e[0]] = e[1].jump.target;
          else delete was.vmaps[el.name]![e];
        }
      }
    }
    expect(sorted(was)).toStrictEqual(sorted(after.desired));
    // Removing it again, and a replaced holder of an address, net out.
    expect(fastDelta(c, [replica], [replica])).toStrictEqual([]);
    const back = fastDelta(c, [replica], []) as J[];
    expect(back.every((x) => x.delete)).toBe(true);
    expect(back.reduce((k, x) => k + x.delete.element.elem.length, 0)).toBe(cmds.reduce((k, x) => k + (x as J).add.element.elem.length, 0));
  });
});

// =====================================================================
// 3. Equivalence with evaluate(), through the interpreter
// =====================================================================

describe('compile: the nft verdicts equal evaluate() on a grid', () => {
  it('the L7 example is refused, not compiled', () => {
    expect(() => example('ml-cilium-l7.yaml')).toThrow(PolicyError);
  });

  it('no policy: everything passes, no element, no profile', () => {
    const r = equivalence([]);
    expect(r.mismatches).toStrictEqual([]);
    expect(r.compiled.names).toStrictEqual({ chains: [], sets: [] });
  });

  for (const [name, policies] of Object.entries(SCENARIOS)) {
    it(name, () => {
      const r = equivalence(policies);
      expect(r.checked).toBeGreaterThan(8_000);
      expect(show(r.mismatches), `${r.mismatches.length} of ${r.checked} differ`).toStrictEqual([]);
      expect(r.counterIssues.slice(0, 5)).toStrictEqual([]);
    });
  }

  it('the grid really exercises both verdicts', () => {
    const r = { nft: load(compile(ALL_EXAMPLES, localPods(WORLD), NO_AUDIT)) };
    const ends = endpoints(WORLD);
    const ps = ends.find((e) => e.label.startsWith('payments/payment-service(10.0.1.1'))!;
    const db = ends.find((e) => e.label.startsWith('payments/payments-db(10.0.1.2'))!;
    expect(simulate(r.nft, 'forward', ps.ip, db.ip, 'TCP', 5432).verdict).toBe('accept');
    expect(simulate(r.nft, 'forward', ps.ip, db.ip, 'TCP', 5433).verdict).toBe('drop');
    expect(simulate(r.nft, 'forward', db.ip, ps.ip, 'TCP', 5432).verdict).toBe('drop');
    expect(simulate(r.nft, 'forward', ps.ip, '10.0.2.1', 'UDP', 53).verdict).toBe('accept');
    expect(simulate(r.nft, 'input', ps.ip, NODE[4], 'TCP', 10250).verdict).toBe('drop');
    // And the check sees a difference when there is one.
    const wrong = equivalence(payments, WORLD.filter((w) => w.ns === 'payments'), NO_AUDIT, []);
    expect(wrong.mismatches.length).toBeGreaterThan(100);
  });
});

// =====================================================================
// Bugs found by the equivalence check, as minimal cases. Both fail against
// the compiler (src/policy/compile/) as it was:
// - ruleAlternatives() skips an egress named port whose peer is an ipBlock
//   ("a named port never matches a non-pod"), but an ipBlock matches pod
//   addresses too, and evaluate() resolves the name on the destination pod.
// - set names hash policyId() ("ns/name") without the kind, so a
//   NetworkPolicy and a CiliumNetworkPolicy of the same ns/name (both legal,
//   parse.ts keys on kind too) share p_/n_ sets: the second one's rule looks
//   up the first one's peers.
// =====================================================================

describe('compile: minimal cases where nft and evaluate() disagree', () => {
  const two: PodSpec[] = [
    { ns: 'ci', name: 'build', labels: { stage: 'build' }, ips: ['10.0.5.1'] },
    { ns: 'ci', name: 'store', labels: { app: 'artifact-store' }, ips: ['10.0.5.4'], ports: [tcpPort('http-artifacts', 8081)] },
  ];
  const verdict = (policies: Policy[], world: PodSpec[], from: string, to: string, port: number) => {
    const ends = endpoints(world);
    const f = ends.find((e) => e.ip === from)!;
    const t = ends.find((e) => e.ip === to)!;
    return {
      evaluate: evaluate(policies, f, t, port, 'TCP').allowed,
      nft: simulate(load(compile(policies, localPods(world), NO_AUDIT)), 'forward', from, to, 'TCP', port).verdict === 'accept',
    };
  };

  it('egress to an ipBlock on a named port reaches a pod inside the block that has the port', () => {
    const ps = NAMED_THROUGH_CIDR;
    expect(verdict(ps, two, '10.0.5.1', '10.0.5.4', 8081)).toStrictEqual({ evaluate: true, nft: true });
  });

  it('a NetworkPolicy and a CiliumNetworkPolicy of the same namespace/name keep their own peer sets', () => {
    const world: PodSpec[] = [
      { ns: 'ml', name: 'training-data', labels: { app: 'training-data' }, ips: ['10.0.3.1'] },
      { ns: 'ml', name: 'notebook', labels: { app: 'notebook' }, ips: ['10.0.3.2'] },
      { ns: 'analytics', name: 'report-builder', labels: { app: 'report-builder' }, ips: ['10.0.4.1'] },
    ];
    const ps = yaml(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: readers, namespace: ml}
spec:
  podSelector: {matchLabels: {app: training-data}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: notebook}}}]
      ports: [{protocol: TCP, port: 8080}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: readers, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: training-data}}
  ingress:
    - fromEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": analytics}}]
      toPorts: [{ports: [{port: "9000", protocol: TCP}]}]
`);
    expect(verdict(ps, world, '10.0.4.1', '10.0.3.1', 9000)).toStrictEqual({ evaluate: true, nft: true });
    expect(verdict(ps, world, '10.0.3.2', '10.0.3.1', 9000)).toStrictEqual({ evaluate: false, nft: false });
  });
});

// =====================================================================
// Audit mode
// =====================================================================

describe('compile: audit mode', () => {
  it('audit all: every connection of every scenario passes, and profiles log with prefix nhi-audit', () => {
    for (const [name, policies] of Object.entries(SCENARIOS)) {
      const c = compile(policies, localPods(WORLD), ALL_AUDIT);
      const nft = load(c);
      const ends = endpoints(WORLD);
      let drops = 0;
      for (const from of ends) {
        for (const to of [...ends, { ip: NODE[famOf(from.ip)], label: 'node' }]) {
          if (famOf(from.ip) !== famOf(to.ip)) continue;
          const hook = to.label === 'node' ? 'input' : 'forward';
          for (const proto of PROTOS) for (const port of [53, 5432, 8082]) if (simulate(nft, hook, from.ip, to.ip, proto, port).verdict !== 'accept') drops++;
        }
      }
      expect(drops, name).toBe(0);
      const rules = cmdsOf(c, 'add', 'rule').filter((r) => !BASE.has(r.chain));
      expect(JSON.stringify(rules), name).not.toContain('"drop"');
      // Every profile logs what it does not allow with nhi-audit, per workload, and lets it pass.
      for (const chain of c.names.chains) {
        const exprs = rules.filter((r) => r.chain === chain).map((r) => r.expr);
        const logs = exprs.flatMap((x) => x.filter((e: J) => e.log).map((e: J) => e.log.prefix as string));
        expect(logs.length, `${name} ${chain}`).toBeGreaterThan(0);
        for (const l of logs) expect(l.startsWith('nhi-audit '), l).toBe(true);
        // (A profile that does not isolate has only deny rules, which log in place.)
        if (JSON.stringify(exprs).includes('"@w_')) {
          expect(exprs.at(-1), `${name} ${chain}`).toStrictEqual([c.profiles[chain]!.direction === 'ingress' ? { accept: null } : { return: null }]);
        }
      }
    }
  });

  it('audit all: a connection the policy denies is logged with nhi-audit on its way through', () => {
    const nft = load(compile(payments, localPods(WORLD), ALL_AUDIT));
    const r = simulate(nft, 'forward', '10.0.1.2', '10.0.1.1', 'TCP', 80); // db -> payment-service: denied both ways
    expect(r.verdict).toBe('accept');
    expect(r.logs).toStrictEqual(['nhi-audit eg wl=payments/payments-db pol=payments/default-deny: ', 'nhi-audit in wl=payments/payment-service pol=payments/default-deny+1: ']);
    expect(r.traced).toBe(true);
    const ok = simulate(nft, 'forward', '10.0.1.1', '10.0.1.2', 'TCP', 5432);
    expect(ok.logs).toStrictEqual([]);
    expect(ok.traced).toBeUndefined();
  });

  it('audit of one namespace: its pods pass, every other namespace is enforced exactly', () => {
    const everything = SCENARIOS['everything at once']!;
    const r = equivalence(everything, WORLD, { all: false, namespaces: ['payments'], policies: [] }, everything.filter((p) => p.namespace !== 'payments'));
    expect(show(r.mismatches), `${r.mismatches.length} of ${r.checked} differ`).toStrictEqual([]);
    // Traced (for `nhi-cni observe`) exactly when the policies would deny: enforced or audited.
    expect(r.counterIssues.slice(0, 5)).toStrictEqual([]);
  });
});

// =====================================================================
// Cluster mode: pods of other nodes are peers only
// =====================================================================

describe('remote peers (cluster mode): every node enforces its own pods, the cluster enforces the policies', () => {
  // Two nodes, the world's pods alternately on each: each node compiles its
  // own pods, with the other node's as remote peers.
  const nodes: PodSpec[][] = [WORLD.filter((_, i) => i % 2 === 0), WORLD.filter((_, i) => i % 2 === 1)];
  const nodeOf = (e: End) => (e.pod === undefined ? undefined : nodes.findIndex((n) => n.some((s) => podId(s) === e.pod)));
  const compileNode = (policies: Policy[], n: number) => compile(policies, localPods(nodes[n]!), NO_AUDIT, undefined, localPods(nodes[1 - n]!));

  for (const [name, policies] of Object.entries(SCENARIOS)) {
    it(`${name}: a connection passes both nodes exactly when evaluate() over the whole cluster allows it`, () => {
      const tables = [load(compileNode(policies, 0)), load(compileNode(policies, 1))];
      const ends = endpoints(WORLD);
      const mismatches: string[] = [];
      let checked = 0;
      for (const from of ends) {
        for (const to of ends) {
          if (famOf(from.ip) !== famOf(to.ip)) continue;
          // The nodes a connection passes through: the source pod's, then the destination pod's.
          const path = [...new Set([nodeOf(from), nodeOf(to)].filter((n) => n !== undefined))];
          if (!path.length) continue;
          for (const proto of PROTOS) {
            for (const port of PORTS[proto]) {
              const want = evaluate(policies, from, to, port, proto).allowed;
              const got = path.every((n) => simulate(tables[n]!, 'forward', from.ip, to.ip, proto, port).verdict === 'accept');
              checked++;
              if (want !== got) mismatches.push(`${from.label} -> ${to.label} ${proto}/${port} via node ${path.join('+')}: evaluate ${want ? 'allows' : 'denies'}`);
            }
          }
        }
      }
      expect(checked).toBeGreaterThan(1000);
      expect(mismatches.slice(0, 15), `${mismatches.length} of ${checked} differ`).toStrictEqual([]);
    });
  }

  it('a remote pod joins peer sets but gets no profile and no verdict-map entry', () => {
    const c = compileNode(payments, 0);
    const remoteIps = nodes[1]!.flatMap((s) => s.ips);
    for (const m of ['in4', 'in6', 'eg4', 'eg6']) for (const [ip] of mapElems(c, m)) expect(remoteIps).not.toContain(ip);
    for (const s of nodes[1]!) expect(c.pods[podId(s)]).toBeUndefined();
    // payments-db (node 0, index 2) lets payment-service in; payment-service-2 (index 1) is on node 1.
    const peers = Object.entries(c.desired.sets).filter(([n]) => n.startsWith('p_')).flatMap(([, s]) => s.elems);
    expect(peers).toContain(JSON.stringify('10.0.1.4'));
  });

  it('a local pod alike a remote one still gets its profile (separate groups), also on the fast path', () => {
    const remote = localPods([WORLD[0]!]).map((p) => ({ ...p, id: 'remote/a', ips: ['10.0.1.8'] }));
    const c = compile(payments, [], NO_AUDIT, undefined, remote);
    // The same identity as a local pod: the remote group's entry has no profile, so the index must not serve it.
    expect(fastDelta(c, [], localPods([WORLD[0]!]))).toBeUndefined();
    // payment-service and payments-db here, a payment-service replica on another node.
    const local = localPods([WORLD[0]!, WORLD[2]!]);
    const both = compile(payments, local, NO_AUDIT, undefined, remote);
    expect(both.pods[podId(WORLD[0]!)]?.egress).toMatch(PROFILE);
    // A second remote replica: it joins the database's peer set, and nothing else.
    const more = fastDelta(both, [], [{ id: 'remote/b', ips: ['10.0.1.9'], identity: identityOf(WORLD[0]!), remote: true }])!;
    expect(more).toHaveLength(1);
    expect(more[0]).toMatchObject({ add: { element: { name: expect.stringMatching(/^p_/), elem: ['10.0.1.9'] } } });
    const derived = deriveDesired([...local, ...remote.map((p) => ({ ...p, remote: true }))], both);
    expect(derived).toStrictEqual(both.desired);
    // A remote replica that goes away leaves the peer set.
    expect(fastDelta(both, remote.map((p) => ({ ...p, remote: true })), [])).toStrictEqual([{ delete: { element: { family: 'inet', table: POLICY_TABLE, name: (more[0] as J).add.element.name, elem: ['10.0.1.8'] } } }]);
  });
});

// =====================================================================
// HTTP rules (issue 13): parsed only for the L7 proxy; never an L4 allow in
// the kernel (the redirect to the proxy is the only way to such a port)
// =====================================================================

describe('compile: a clause with HTTP rules allows nothing in the kernel', () => {
  const l7Text = readFileSync(join(EXAMPLES, 'ml-cilium-l7.yaml'), 'utf8');
  const l7 = parseManifestText(l7Text, 'ml-cilium-l7.yaml', { l7: 'proxy' });
  // The same policy with its HTTP rules taken away: the L4 allow it would widen to.
  const l4 = l7.map((p) => ({ ...p, ingress: p.ingress.map((r) => ({ ...r, ports: r.ports?.map(({ http: _h, ...pr }) => pr) })) }));
  const reader = '10.0.4.1';
  const data = '10.0.3.1';

  it('nft equals evaluate() on the grid, and even the authorised reader cannot reach :8080 past the proxy (narrower, never wider)', () => {
    const r = equivalence(l7);
    expect(show(r.mismatches)).toStrictEqual([]);
    expect(r.counterIssues.slice(0, 5)).toStrictEqual([]);
    expect(simulate(r.nft, 'forward', reader, data, 'TCP', 8080).verdict).toBe('drop');
    // The L4 form would let it through: the HTTP rules are what keep it out of the forward path.
    expect(simulate(load(compile(l4, localPods(WORLD), NO_AUDIT)), 'forward', reader, data, 'TCP', 8080).verdict).toBe('accept');
    // The policy still isolates its pod: other ports closed, as without the HTTP rules.
    expect(simulate(r.nft, 'forward', reader, data, 'TCP', 9000).verdict).toBe('drop');
  });

  it('egress HTTP clauses too', () => {
    const egress = parseManifestText(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reader-out, namespace: analytics}
spec:
  endpointSelector: {matchLabels: {app: report-builder}}
  egress:
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ml, app: training-data}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET, path: /data}]}}]
`, 'egress.yaml', { l7: 'proxy' });
    const r = equivalence(egress);
    expect(show(r.mismatches)).toStrictEqual([]);
    expect(simulate(r.nft, 'forward', reader, data, 'TCP', 8080).verdict).toBe('drop');
    const ends = endpoints(WORLD);
    // The proxy, which sees the request, may allow it.
    expect(evaluate(egress, ends.find((e) => e.ip === reader)!, ends.find((e) => e.ip === data)!, 8080, 'TCP', { http: () => true }).allowed).toBe(true);
  });
});
