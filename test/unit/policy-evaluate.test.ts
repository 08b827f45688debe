import { describe, expect, it } from 'vitest';
import { evaluate, explain, type Decision, type Endpoint } from '../../src/policy/evaluate.js';
import type { Identity, Peer, Policy, PortRule, Protocol, Rule, Selector } from '../../src/policy/model.js';

// ---- builders ---------------------------------------------------------------

const sel = (matchLabels: Record<string, string> = {}, matchExpressions: Selector['matchExpressions'] = []): Selector => ({ matchLabels, matchExpressions });
const ALL = sel();

interface PolicyOpts {
  subject?: Selector;
  ingress?: Rule[];
  egress?: Rule[];
  ingressDeny?: Rule[];
  egressDeny?: Rule[];
  isolates?: { ingress: boolean; egress: boolean };
}

/** A NetworkPolicy with the API's policyTypes defaulting: Ingress, plus Egress when egress rules are given. */
function np(ns: string, name: string, o: PolicyOpts = {}): Policy {
  return {
    kind: 'NetworkPolicy',
    namespace: ns,
    name,
    subject: o.subject ?? ALL,
    isolates: o.isolates ?? { ingress: true, egress: o.egress !== undefined },
    ingress: o.ingress ?? [],
    egress: o.egress ?? [],
    ingressDeny: [],
    egressDeny: [],
    source: { file: 'inline', index: 0 },
  };
}

/** A CiliumNetworkPolicy: isolates each direction that has allow or deny rules, unless told. */
function cnp(ns: string, name: string, o: PolicyOpts = {}): Policy {
  const ingress = o.ingress ?? [];
  const egress = o.egress ?? [];
  const ingressDeny = o.ingressDeny ?? [];
  const egressDeny = o.egressDeny ?? [];
  return {
    kind: 'CiliumNetworkPolicy',
    namespace: ns,
    name,
    subject: o.subject ?? ALL,
    isolates: o.isolates ?? { ingress: ingress.length + ingressDeny.length > 0, egress: egress.length + egressDeny.length > 0 },
    ingress,
    egress,
    ingressDeny,
    egressDeny,
    source: { file: 'inline', index: 0 },
  };
}

const pods = (p?: Record<string, string>, n?: Record<string, string>): Peer => {
  const peer: Peer = { kind: 'pods' };
  if (p) peer.pods = sel(p);
  if (n) peer.namespaces = sel(n);
  return peer;
};
const cidr = (c: string, ...except: string[]): Peer => ({ kind: 'cidr', cidr: c, except });
const tcp = (port?: number | string, endPort?: number): PortRule => ({ protocol: 'TCP', ...(port !== undefined ? { port } : {}), ...(endPort !== undefined ? { endPort } : {}) });
const udp = (port?: number | string): PortRule => ({ protocol: 'UDP', ...(port !== undefined ? { port } : {}) });
const sctp = (port?: number | string): PortRule => ({ protocol: 'SCTP', ...(port !== undefined ? { port } : {}) });
const rule = (peers?: Peer[], ports?: PortRule[]): Rule => ({ ...(peers ? { peers } : {}), ...(ports ? { ports } : {}) });
const NS = 'kubernetes.io/metadata.name';

function pod(ns: string, name: string, ip: string, labels: Record<string, string>, ports: Identity['ports'] = [], nsLabels: Record<string, string> = {}): Endpoint {
  return { ip, identity: { namespace: ns, name, labels, namespaceLabels: { [NS]: ns, ...nsLabels }, ports } };
}

// ---- the world: namespaces x, y, z x pods a, b, c, plus the node and the outside

const NSL = { x: { env: 'prod' }, y: { env: 'dev' }, z: {} } as const;
const W = {
  xa: pod('x', 'a', '10.0.0.1', { app: 'a' }, [
    { name: 'http', containerPort: 80, protocol: 'TCP' },
    { name: 'dns', containerPort: 53, protocol: 'UDP' },
  ], NSL.x),
  xb: pod('x', 'b', '10.0.0.2', { app: 'b' }, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }], NSL.x),
  xc: pod('x', 'c', '10.0.0.3', { app: 'c' }, [], NSL.x),
  ya: pod('y', 'a', '10.0.1.1', { app: 'a' }, [], NSL.y),
  yb: pod('y', 'b', '10.0.1.2', { app: 'b' }, [], NSL.y),
  za: pod('z', 'a', '10.0.2.1', { app: 'a' }, [], NSL.z),
  // An identity without the implied metadata.name label: the evaluator adds it.
  zb: { ip: '10.0.2.2', identity: { namespace: 'z', name: 'b', labels: { app: 'b' }, namespaceLabels: {}, ports: [] } } as Endpoint,
  v6: pod('x', 'v6', 'fd00::10', { app: 'v6' }, [], NSL.x),
  node: { ip: '192.168.1.10' } as Endpoint,
  out: { ip: '203.0.113.5' } as Endpoint,
  out6: { ip: '2001:db8::5' } as Endpoint,
};
type Who = keyof typeof W;

// ---- the truth table ------------------------------------------------------------

interface Row {
  policies: Policy[];
  from: Who;
  to: Who;
  port?: number;
  proto?: Protocol;
  allowed: boolean;
  /** Extra expectations on the decision (toMatchObject). */
  expect?: Partial<{ egress: Partial<Decision['egress']>; ingress: Partial<Decision['ingress']> }>;
}

const denyIngressX = np('x', 'deny-ingress', { ingress: [] });
const denyEgressX = np('x', 'deny-egress', { isolates: { ingress: false, egress: true } });
const denyAllX = np('x', 'deny-all', { isolates: { ingress: true, egress: true } });
const allowAllIngressX = np('x', 'allow-all', { ingress: [{}] });
const onB = sel({ app: 'b' });

const TABLE: Record<string, Row> = {
  // no policy at all
  'no policy: pod to pod': { policies: [], from: 'xa', to: 'xb', allowed: true, expect: { ingress: { isolated: false, selecting: [] } } },
  'no policy: pod to outside': { policies: [], from: 'xa', to: 'out', allowed: true },

  // default deny ingress
  'deny ingress: pod to pod': { policies: [denyIngressX], from: 'xa', to: 'xb', allowed: false, expect: { ingress: { isolated: true, allowed: false, by: [], selecting: ['x/deny-ingress'] }, egress: { isolated: false, allowed: true } } },
  'deny ingress: egress of the same pod is free': { policies: [denyIngressX], from: 'xb', to: 'out', allowed: true },
  'deny ingress: outside in': { policies: [denyIngressX], from: 'out', to: 'xb', allowed: false },
  'deny ingress: node in (no implicit exemption in the model)': { policies: [denyIngressX], from: 'node', to: 'xb', allowed: false },
  'deny ingress: other namespace not isolated': { policies: [denyIngressX], from: 'xa', to: 'ya', allowed: true },
  'deny ingress: UDP too': { policies: [denyIngressX], from: 'xa', to: 'xb', port: 53, proto: 'UDP', allowed: false },

  // default deny egress
  'deny egress: pod to pod': { policies: [denyEgressX], from: 'xa', to: 'xb', allowed: false, expect: { egress: { isolated: true, allowed: false }, ingress: { isolated: false, allowed: true } } },
  'deny egress: to outside': { policies: [denyEgressX], from: 'xa', to: 'out', allowed: false },
  'deny egress: from outside in is free': { policies: [denyEgressX], from: 'out', to: 'xa', allowed: true },
  'deny egress: other namespace to x is free': { policies: [denyEgressX], from: 'ya', to: 'xa', allowed: true },
  'deny all: both directions': { policies: [denyAllX], from: 'xa', to: 'xb', allowed: false, expect: { egress: { allowed: false }, ingress: { allowed: false } } },

  // ingress: [{}] is allow-all, unioned with a deny-all policy: allow wins
  'allow-all rule alone': { policies: [allowAllIngressX], from: 'out', to: 'xb', allowed: true, expect: { ingress: { isolated: true, by: ['x/allow-all'] } } },
  'allow-all unioned with deny-all': { policies: [denyIngressX, allowAllIngressX], from: 'ya', to: 'xb', allowed: true, expect: { ingress: { isolated: true, by: ['x/allow-all'], selecting: ['x/deny-ingress', 'x/allow-all'] } } },
  'allow-all rule: any protocol': { policies: [denyIngressX, allowAllIngressX], from: 'ya', to: 'xb', port: 9, proto: 'SCTP', allowed: true },

  // an empty ingress list isolates and denies; only the selected pod
  'ingress []: selected pod denied': { policies: [np('x', 'b-closed', { subject: onB, ingress: [] })], from: 'xa', to: 'xb', allowed: false },
  'ingress []: unselected pod open': { policies: [np('x', 'b-closed', { subject: onB, ingress: [] })], from: 'xa', to: 'xc', allowed: true },

  // podSelector alone: the policy's own namespace
  'podSelector alone: same namespace': { policies: [np('x', 'from-a', { subject: onB, ingress: [rule([pods({ app: 'a' })])] })], from: 'xa', to: 'xb', allowed: true, expect: { ingress: { by: ['x/from-a'] } } },
  'podSelector alone: other namespace label twin': { policies: [np('x', 'from-a', { subject: onB, ingress: [rule([pods({ app: 'a' })])] })], from: 'ya', to: 'xb', allowed: false },
  'podSelector alone: wrong labels': { policies: [np('x', 'from-a', { subject: onB, ingress: [rule([pods({ app: 'a' })])] })], from: 'xc', to: 'xb', allowed: false },
  'podSelector alone: not a pod': { policies: [np('x', 'from-a', { subject: onB, ingress: [rule([pods()])] })], from: 'out', to: 'xb', allowed: false },
  'podSelector {}: every pod of the namespace': { policies: [np('x', 'from-x', { subject: onB, ingress: [rule([pods({})])] })], from: 'xc', to: 'xb', allowed: true },

  // namespaceSelector
  'namespaceSelector {}: pods of every namespace': { policies: [np('x', 'any-ns', { subject: onB, ingress: [rule([pods(undefined, {})])] })], from: 'za', to: 'xb', allowed: true },
  'namespaceSelector {}: not the outside': { policies: [np('x', 'any-ns', { subject: onB, ingress: [rule([pods(undefined, {})])] })], from: 'out', to: 'xb', allowed: false },
  'namespaceSelector by label': { policies: [np('x', 'from-dev', { subject: onB, ingress: [rule([pods(undefined, { env: 'dev' })])] })], from: 'yb', to: 'xb', allowed: true },
  'namespaceSelector by label: miss': { policies: [np('x', 'from-dev', { subject: onB, ingress: [rule([pods(undefined, { env: 'dev' })])] })], from: 'xa', to: 'xb', allowed: false },
  'namespace by kubernetes.io/metadata.name': { policies: [np('x', 'from-y', { subject: onB, ingress: [rule([pods(undefined, { [NS]: 'y' })])] })], from: 'ya', to: 'xb', allowed: true },
  'namespace by kubernetes.io/metadata.name: miss': { policies: [np('x', 'from-y', { subject: onB, ingress: [rule([pods(undefined, { [NS]: 'y' })])] })], from: 'za', to: 'xb', allowed: false },
  'metadata.name implied when the identity lacks it': { policies: [np('x', 'from-z', { subject: onB, ingress: [rule([pods(undefined, { [NS]: 'z' })])] })], from: 'zb', to: 'xb', allowed: true },
  'namespaceSelector matchExpressions NotIn': {
    policies: [np('x', 'not-dev', { subject: onB, ingress: [rule([{ kind: 'pods', namespaces: sel({}, [{ key: 'env', operator: 'NotIn', values: ['dev'] }]) }])] })],
    from: 'za', // z has no env label: NotIn matches
    to: 'xb',
    allowed: true,
  },

  // AND (one peer with both selectors) vs OR (two peers)
  'AND: right namespace and right pod': { policies: [np('x', 'and', { subject: onB, ingress: [rule([pods({ app: 'a' }, { env: 'dev' })])] })], from: 'ya', to: 'xb', allowed: true },
  'AND: right pod, wrong namespace': { policies: [np('x', 'and', { subject: onB, ingress: [rule([pods({ app: 'a' }, { env: 'dev' })])] })], from: 'xa', to: 'xb', allowed: false },
  'AND: right namespace, wrong pod': { policies: [np('x', 'and', { subject: onB, ingress: [rule([pods({ app: 'a' }, { env: 'dev' })])] })], from: 'yb', to: 'xb', allowed: false },
  'OR: pod in own namespace': { policies: [np('x', 'or', { subject: onB, ingress: [rule([pods({ app: 'a' }), pods(undefined, { env: 'dev' })])] })], from: 'xa', to: 'xb', allowed: true },
  'OR: any pod of the namespace': { policies: [np('x', 'or', { subject: onB, ingress: [rule([pods({ app: 'a' }), pods(undefined, { env: 'dev' })])] })], from: 'yb', to: 'xb', allowed: true },
  'OR: neither': { policies: [np('x', 'or', { subject: onB, ingress: [rule([pods({ app: 'a' }), pods(undefined, { env: 'dev' })])] })], from: 'za', to: 'xb', allowed: false },

  // ipBlock: except, overlap, pod IPs, IPv6
  'ipBlock matches a pod IP': { policies: [np('x', 'blk', { subject: onB, ingress: [rule([cidr('10.0.0.0/16', '10.0.1.0/24')])] })], from: 'xa', to: 'xb', allowed: true },
  'ipBlock except excludes': { policies: [np('x', 'blk', { subject: onB, ingress: [rule([cidr('10.0.0.0/16', '10.0.1.0/24')])] })], from: 'ya', to: 'xb', allowed: false },
  'ipBlock outside the block': { policies: [np('x', 'blk', { subject: onB, ingress: [rule([cidr('10.0.0.0/16', '10.0.1.0/24')])] })], from: 'out', to: 'xb', allowed: false },
  'ipBlock except overlapped by another peer': { policies: [np('x', 'blk', { subject: onB, ingress: [rule([cidr('10.0.0.0/16', '10.0.1.0/24'), cidr('10.0.1.0/25')])] })], from: 'ya', to: 'xb', allowed: true },
  'ipBlock except overlapped by another policy': {
    policies: [np('x', 'blk', { subject: onB, ingress: [rule([cidr('10.0.0.0/16', '10.0.1.0/24')])] }), np('x', 'blk2', { subject: onB, ingress: [rule([cidr('10.0.1.1/32')])] })],
    from: 'ya',
    to: 'xb',
    allowed: true,
    expect: { ingress: { by: ['x/blk2'] } },
  },
  'ipBlock egress to the outside': { policies: [np('x', 'out', { subject: sel({ app: 'a' }), ingress: [], egress: [rule([cidr('203.0.113.0/24')])] })], from: 'xa', to: 'out', allowed: true },
  'ipBlock egress: not the node': { policies: [np('x', 'out', { subject: sel({ app: 'a' }), ingress: [], egress: [rule([cidr('203.0.113.0/24')])] })], from: 'xa', to: 'node', allowed: false },
  'ipBlock /0 matches everything of its family': { policies: [np('x', 'v4', { subject: onB, ingress: [rule([cidr('0.0.0.0/0')])] })], from: 'out', to: 'xb', allowed: true },
  'ipBlock v4 does not match v6': { policies: [np('x', 'v4', { subject: onB, ingress: [rule([cidr('0.0.0.0/0')])] })], from: 'out6', to: 'xb', allowed: false },
  'ipBlock v6 with except': { policies: [np('x', 'v6', { subject: sel({ app: 'v6' }), ingress: [rule([cidr('2001:db8::/32', '2001:db8::/64')])] })], from: 'out6', to: 'v6', allowed: false },
  'ipBlock v6': { policies: [np('x', 'v6', { subject: sel({ app: 'v6' }), ingress: [rule([cidr('2001:db8::/32')])] })], from: 'out6', to: 'v6', allowed: true },

  // ports and endPort
  'port: exact hit': { policies: [np('x', 'p80', { subject: onB, ingress: [rule(undefined, [tcp(80)])] })], from: 'xa', to: 'xb', port: 80, allowed: true },
  'port: miss': { policies: [np('x', 'p80', { subject: onB, ingress: [rule(undefined, [tcp(80)])] })], from: 'xa', to: 'xb', port: 81, allowed: false },
  'port: one of several': { policies: [np('x', 'p', { subject: onB, ingress: [rule(undefined, [tcp(80), tcp(443)])] })], from: 'xa', to: 'xb', port: 443, allowed: true },
  'endPort: low bound': { policies: [np('x', 'range', { subject: onB, ingress: [rule(undefined, [tcp(8000, 8010)])] })], from: 'xa', to: 'xb', port: 8000, allowed: true },
  'endPort: high bound': { policies: [np('x', 'range', { subject: onB, ingress: [rule(undefined, [tcp(8000, 8010)])] })], from: 'xa', to: 'xb', port: 8010, allowed: true },
  'endPort: below': { policies: [np('x', 'range', { subject: onB, ingress: [rule(undefined, [tcp(8000, 8010)])] })], from: 'xa', to: 'xb', port: 7999, allowed: false },
  'endPort: above': { policies: [np('x', 'range', { subject: onB, ingress: [rule(undefined, [tcp(8000, 8010)])] })], from: 'xa', to: 'xb', port: 8011, allowed: false },
  'protocol only: any TCP port': { policies: [np('x', 'tcp', { subject: onB, ingress: [rule(undefined, [tcp()])] })], from: 'xa', to: 'xb', port: 65535, allowed: true },
  'protocol only: not UDP': { policies: [np('x', 'tcp', { subject: onB, ingress: [rule(undefined, [tcp()])] })], from: 'xa', to: 'xb', port: 53, proto: 'UDP', allowed: false },
  'peer AND port in one rule: right peer wrong port': { policies: [np('x', 'pp', { subject: onB, ingress: [rule([pods({ app: 'a' })], [tcp(80)])] })], from: 'xa', to: 'xb', port: 81, allowed: false },
  'peer AND port in one rule: wrong peer right port': { policies: [np('x', 'pp', { subject: onB, ingress: [rule([pods({ app: 'a' })], [tcp(80)])] })], from: 'xc', to: 'xb', port: 80, allowed: false },
  'two rules are OR': { policies: [np('x', 'pp', { subject: onB, ingress: [rule([pods({ app: 'a' })], [tcp(80)]), rule([pods({ app: 'c' })], [tcp(81)])] })], from: 'xc', to: 'xb', port: 81, allowed: true },

  // named ports resolve on the destination pod: "http" is 80 on x/a and 8080 on x/b
  'named ingress: http on a is 80': { policies: [np('x', 'http', { ingress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'xa', port: 80, allowed: true },
  'named ingress: 8080 is not http on a': { policies: [np('x', 'http', { ingress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'xa', port: 8080, allowed: false },
  'named ingress: http on b is 8080': { policies: [np('x', 'http', { ingress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'xb', port: 8080, allowed: true },
  'named ingress: 80 is not http on b': { policies: [np('x', 'http', { ingress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'xb', port: 80, allowed: false },
  'named ingress: pod without the name': { policies: [np('x', 'http', { ingress: [rule(undefined, [tcp('http')])] })], from: 'xa', to: 'xc', port: 80, allowed: false },
  'named egress: to a:80': { policies: [np('x', 'c-out', { subject: sel({ app: 'c' }), ingress: [], egress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'xa', port: 80, allowed: true },
  'named egress: to b:8080': { policies: [np('x', 'c-out', { subject: sel({ app: 'c' }), ingress: [], egress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'xb', port: 8080, allowed: true },
  'named egress: to b:80': { policies: [np('x', 'c-out', { subject: sel({ app: 'c' }), ingress: [], egress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'xb', port: 80, allowed: false },
  'named egress: source port names do not count': { policies: [np('x', 'a-out', { subject: sel({ app: 'a' }), ingress: [], egress: [rule(undefined, [tcp('http')])] })], from: 'xa', to: 'xc', port: 80, allowed: false },
  'named egress: towards a non-pod matches nothing': { policies: [np('x', 'c-out', { subject: sel({ app: 'c' }), ingress: [], egress: [rule(undefined, [tcp('http')])] })], from: 'xc', to: 'out', port: 80, allowed: false },
  'named port: protocol must match (TCP rule, UDP name)': { policies: [np('x', 'dns', { ingress: [rule(undefined, [tcp('dns')])] })], from: 'xc', to: 'xa', port: 53, proto: 'UDP', allowed: false },
  'named port: protocol must match (TCP rule, TCP traffic)': { policies: [np('x', 'dns', { ingress: [rule(undefined, [tcp('dns')])] })], from: 'xc', to: 'xa', port: 53, allowed: false },
  'named port: UDP rule, UDP name': { policies: [np('x', 'dns', { ingress: [rule(undefined, [udp('dns')])] })], from: 'xc', to: 'xa', port: 53, proto: 'UDP', allowed: true },

  // UDP and SCTP are not TCP
  'TCP rule: UDP same port': { policies: [np('x', 'p80', { subject: onB, ingress: [rule(undefined, [tcp(80)])] })], from: 'xa', to: 'xb', port: 80, proto: 'UDP', allowed: false },
  'TCP rule: SCTP same port': { policies: [np('x', 'p80', { subject: onB, ingress: [rule(undefined, [tcp(80)])] })], from: 'xa', to: 'xb', port: 80, proto: 'SCTP', allowed: false },
  'SCTP-only allow: SCTP': { policies: [np('x', 's80', { subject: onB, ingress: [rule(undefined, [sctp(80)])] })], from: 'xa', to: 'xb', port: 80, proto: 'SCTP', allowed: true },
  'SCTP-only allow still isolates TCP': { policies: [np('x', 's80', { subject: onB, ingress: [rule(undefined, [sctp(80)])] })], from: 'xa', to: 'xb', port: 80, allowed: false },
  'UDP-only allow still isolates TCP': { policies: [np('x', 'u53', { subject: onB, ingress: [rule(undefined, [udp(53)])] })], from: 'xa', to: 'xb', port: 53, allowed: false },

  // CiliumNetworkPolicy deny rules come before every allow
  'CNP deny beats its own allow-all': {
    policies: [cnp('x', 'cnp', { subject: onB, ingress: [{}], ingressDeny: [rule([pods({ app: 'a' })])] })],
    from: 'xa',
    to: 'xb',
    allowed: false,
    expect: { ingress: { isolated: true, allowed: false, denied: 'x/cnp', by: ['x/cnp'] } },
  },
  'CNP deny: other peers still allowed': { policies: [cnp('x', 'cnp', { subject: onB, ingress: [{}], ingressDeny: [rule([pods({ app: 'a' })])] })], from: 'xc', to: 'xb', allowed: true },
  'CNP deny beats another policy allow': {
    policies: [allowAllIngressX, cnp('x', 'no-a', { subject: onB, ingressDeny: [rule([pods({ app: 'a' })])] })],
    from: 'xa',
    to: 'xb',
    allowed: false,
    expect: { ingress: { denied: 'x/no-a' } },
  },
  'CNP deny on a port: that port': { policies: [allowAllIngressX, cnp('x', 'no-ssh', { ingressDeny: [rule(undefined, [tcp(22)])] })], from: 'out', to: 'xb', port: 22, allowed: false },
  'CNP deny on a port: other ports': { policies: [allowAllIngressX, cnp('x', 'no-ssh', { ingressDeny: [rule(undefined, [tcp(22)])] })], from: 'out', to: 'xb', port: 80, allowed: true },
  'CNP deny without default deny (enableDefaultDeny false)': {
    policies: [cnp('x', 'no-a', { subject: onB, ingressDeny: [rule([pods({ app: 'a' })])], isolates: { ingress: false, egress: false } })],
    from: 'xa',
    to: 'xb',
    allowed: false,
    expect: { ingress: { isolated: false, denied: 'x/no-a' } },
  },
  'CNP deny without default deny: others open': {
    policies: [cnp('x', 'no-a', { subject: onB, ingressDeny: [rule([pods({ app: 'a' })])], isolates: { ingress: false, egress: false } })],
    from: 'xc',
    to: 'xb',
    allowed: true,
    expect: { ingress: { isolated: false } },
  },
  'CNP egressDeny to a CIDR': {
    policies: [cnp('x', 'no-out', { egress: [{}], egressDeny: [rule([cidr('203.0.113.0/24')])] })],
    from: 'xa',
    to: 'out',
    allowed: false,
    expect: { egress: { denied: 'x/no-out' } },
  },
  'CNP non-isolating allow adds to another isolation': {
    policies: [denyIngressX, cnp('x', 'extra', { subject: onB, ingress: [rule([pods({ app: 'a' })])], isolates: { ingress: false, egress: false } })],
    from: 'xa',
    to: 'xb',
    allowed: true,
    expect: { ingress: { by: ['x/extra'] } },
  },
  'NP rules of a direction not in policyTypes are ignored': {
    policies: [denyIngressX, np('x', 'egress-only', { subject: onB, ingress: [{}], isolates: { ingress: false, egress: true }, egress: [{}] })],
    from: 'xa',
    to: 'xb',
    allowed: false,
  },

  // both sides must allow
  'egress allowed but the peer ingress denies': {
    policies: [np('x', 'a-out', { subject: sel({ app: 'a' }), isolates: { ingress: false, egress: true }, egress: [{}] }), np('x', 'b-in', { subject: onB, ingress: [] })],
    from: 'xa',
    to: 'xb',
    allowed: false,
    expect: { egress: { isolated: true, allowed: true, by: ['x/a-out'] }, ingress: { isolated: true, allowed: false } },
  },
  'ingress allowed but the source egress denies': {
    policies: [np('x', 'a-closed', { subject: sel({ app: 'a' }), isolates: { ingress: false, egress: true } }), allowAllIngressX],
    from: 'xa',
    to: 'xb',
    allowed: false,
    expect: { egress: { allowed: false }, ingress: { allowed: true } },
  },
  'both sides allow': {
    policies: [np('x', 'a-out', { subject: sel({ app: 'a' }), isolates: { ingress: false, egress: true }, egress: [rule([pods({ app: 'b' })])] }), np('x', 'b-in', { subject: onB, ingress: [rule([pods({ app: 'a' })])] })],
    from: 'xa',
    to: 'xb',
    allowed: true,
  },
  'cross-namespace: egress in x, ingress in y': {
    policies: [
      np('x', 'a-to-y', { subject: sel({ app: 'a' }), isolates: { ingress: false, egress: true }, egress: [rule([pods({ app: 'a' }, { [NS]: 'y' })])] }),
      np('y', 'from-x', { ingress: [rule([pods(undefined, { [NS]: 'x' })])] }),
    ],
    from: 'xa',
    to: 'ya',
    allowed: true,
    expect: { egress: { by: ['x/a-to-y'] }, ingress: { by: ['y/from-x'] } },
  },

  // non-pod endpoints on either side
  'node to isolated pod via ipBlock': { policies: [np('x', 'node', { subject: onB, ingress: [rule([cidr('192.168.1.10/32')])] })], from: 'node', to: 'xb', allowed: true },
  'outside to the same pod': { policies: [np('x', 'node', { subject: onB, ingress: [rule([cidr('192.168.1.10/32')])] })], from: 'out', to: 'xb', allowed: false },
  'pod to node via ipBlock': { policies: [np('x', 'to-node', { subject: sel({ app: 'a' }), isolates: { ingress: false, egress: true }, egress: [rule([cidr('192.168.0.0/16')])] })], from: 'xa', to: 'node', allowed: true },
  'node to outside: no pod, never isolated': { policies: [denyAllX, np('y', 'deny-all', { isolates: { ingress: true, egress: true } })], from: 'node', to: 'out', allowed: true, expect: { egress: { isolated: false, selecting: [] }, ingress: { isolated: false, selecting: [] } } },

  // a policy of another namespace selects nothing here
  'policy in y does not select x pods (ingress)': { policies: [np('y', 'deny-all', { isolates: { ingress: true, egress: true } })], from: 'ya', to: 'xa', allowed: false, expect: { egress: { isolated: true }, ingress: { isolated: false } } },
  'policy in y does not select x pods (x to x)': { policies: [np('y', 'deny-all', { isolates: { ingress: true, egress: true } })], from: 'xa', to: 'xb', allowed: true, expect: { egress: { selecting: [] }, ingress: { selecting: [] } } },
  'policy in y selecting app=a leaves x/a alone': { policies: [np('y', 'a-closed', { subject: sel({ app: 'a' }), ingress: [] })], from: 'xb', to: 'xa', allowed: true },
  'policy in y selecting app=a closes y/a': { policies: [np('y', 'a-closed', { subject: sel({ app: 'a' }), ingress: [] })], from: 'xb', to: 'ya', allowed: false },
};

describe('evaluate: truth table', () => {
  it.each(Object.entries(TABLE))('%s', (_name, r) => {
    const d = evaluate(r.policies, W[r.from], W[r.to], r.port ?? 80, r.proto ?? 'TCP');
    expect(d.allowed, explain(d)).toBe(r.allowed);
    expect(d.allowed).toBe(d.egress.allowed && d.ingress.allowed);
    if (r.expect) expect(d).toMatchObject(r.expect);
  });
});

describe('evaluate: bad input', () => {
  it('throws on an address that is not one', () => {
    expect(() => evaluate([], { ip: 'nope' }, W.xa, 80, 'TCP')).toThrow(/source address/);
    expect(() => evaluate([], W.xa, { ip: '10.0.0.0/8' }, 80, 'TCP')).toThrow(/destination address/);
  });
  it('throws on a policy CIDR that is not one', () => {
    expect(() => evaluate([np('x', 'bad', { ingress: [rule([cidr('10.0.0.0')])] })], W.out, W.xa, 80, 'TCP')).toThrow(/CIDR/);
  });
  it('an empty peers or ports list matches nothing (the parser maps the API empty lists to undefined)', () => {
    expect(evaluate([np('x', 'e', { ingress: [{ peers: [] }] })], W.xa, W.xb, 80, 'TCP').allowed).toBe(false);
    expect(evaluate([np('x', 'e', { ingress: [{ ports: [] }] })], W.xa, W.xb, 80, 'TCP').allowed).toBe(false);
  });
});

// ---- scenarios ------------------------------------------------------------------

interface Flow {
  from: Endpoint;
  to: Endpoint;
  port: number;
  proto?: Protocol;
  allowed: boolean;
}

function runFlows(policies: Policy[], flows: Record<string, Flow>): void {
  it.each(Object.entries(flows))('%s', (_name, f) => {
    const d = evaluate(policies, f.from, f.to, f.port, f.proto ?? 'TCP');
    expect(d.allowed, explain(d)).toBe(f.allowed);
  });
}

describe('scenario: payment service to database on TCP 5432, nothing else reaches the database', () => {
  const api = pod('payments', 'payment-api', '10.1.0.10', { app: 'payment-api' }, [], { team: 'payments' });
  const web = pod('payments', 'frontend', '10.1.0.11', { app: 'frontend' }, [], { team: 'payments' });
  const impostor = pod('dev', 'payment-api', '10.1.9.10', { app: 'payment-api' });
  const db = pod('db', 'postgres-0', '10.1.1.10', { app: 'postgres' }, [{ name: 'postgres', containerPort: 5432, protocol: 'TCP' }]);
  const cache = pod('db', 'redis-0', '10.1.1.11', { app: 'redis' });
  const policies = [
    np('db', 'postgres-from-payments', {
      subject: sel({ app: 'postgres' }),
      isolates: { ingress: true, egress: true },
      ingress: [rule([pods({ app: 'payment-api' }, { [NS]: 'payments' })], [tcp('postgres')])],
    }),
  ];
  runFlows(policies, {
    'payment-api -> postgres TCP 5432': { from: api, to: db, port: 5432, allowed: true },
    'payment-api -> postgres TCP 22': { from: api, to: db, port: 22, allowed: false },
    'payment-api -> postgres UDP 5432': { from: api, to: db, port: 5432, proto: 'UDP', allowed: false },
    'payment-api -> postgres SCTP 5432': { from: api, to: db, port: 5432, proto: 'SCTP', allowed: false },
    'frontend (same namespace) -> postgres': { from: web, to: db, port: 5432, allowed: false },
    'payment-api label in another namespace -> postgres': { from: impostor, to: db, port: 5432, allowed: false },
    'redis (db namespace) -> postgres': { from: cache, to: db, port: 5432, allowed: false },
    'node -> postgres': { from: W.node, to: db, port: 5432, allowed: false },
    'outside -> postgres': { from: W.out, to: db, port: 5432, allowed: false },
    'postgres -> outside (egress closed)': { from: db, to: W.out, port: 443, allowed: false },
    'payment-api -> outside (not isolated)': { from: api, to: W.out, port: 443, allowed: true },
    'frontend -> redis (not selected)': { from: web, to: cache, port: 6379, allowed: true },
  });
});

describe('scenario: ML workload readable only by the authorized service', () => {
  const model = pod('ml', 'model-server', '10.2.0.10', { app: 'model-server' }, [{ name: 'grpc', containerPort: 8500, protocol: 'TCP' }]);
  const notebook = pod('ml', 'notebook', '10.2.0.11', { app: 'notebook' });
  const gateway = pod('apps', 'ml-gateway', '10.2.1.10', { app: 'ml-gateway', 'ml-access': 'granted' });
  const other = pod('apps', 'shop', '10.2.1.11', { app: 'shop' });
  const rogue = pod('sandbox', 'rogue', '10.2.2.10', { app: 'rogue', 'ml-access': 'granted' });
  const dns = pod('kube-system', 'coredns', '10.2.9.53', { 'k8s-app': 'kube-dns' });
  const policies = [
    np('ml', 'model-readers', {
      subject: sel({ app: 'model-server' }),
      ingress: [rule([pods({ 'ml-access': 'granted' }, { [NS]: 'apps' })], [tcp('grpc')])],
      egress: [rule([pods({ 'k8s-app': 'kube-dns' }, { [NS]: 'kube-system' })], [udp(53), tcp(53)])],
    }),
    // Belt and braces: nothing outside the cluster ever talks to the model.
    cnp('ml', 'no-world', { subject: sel({ app: 'model-server' }), ingressDeny: [rule([cidr('0.0.0.0/0', '10.0.0.0/8')])], isolates: { ingress: true, egress: false } }),
  ];
  runFlows(policies, {
    'gateway -> model grpc': { from: gateway, to: model, port: 8500, allowed: true },
    'gateway -> model other port': { from: gateway, to: model, port: 22, allowed: false },
    'unlabelled pod of the authorized namespace': { from: other, to: model, port: 8500, allowed: false },
    'labelled pod of another namespace': { from: rogue, to: model, port: 8500, allowed: false },
    'pod of the same namespace': { from: notebook, to: model, port: 8500, allowed: false },
    'outside -> model': { from: W.out, to: model, port: 8500, allowed: false },
    'node -> model': { from: W.node, to: model, port: 8500, allowed: false },
    'model -> DNS UDP': { from: model, to: dns, port: 53, proto: 'UDP', allowed: true },
    'model -> DNS TCP': { from: model, to: dns, port: 53, allowed: true },
    'model -> outside (no exfiltration)': { from: model, to: W.out, port: 443, allowed: false },
    'model -> gateway': { from: model, to: gateway, port: 8080, allowed: false },
    'notebook -> outside (not selected)': { from: notebook, to: W.out, port: 443, allowed: true },
  });
});

describe('scenario: CI/CD stages isolated except build -> test -> deploy', () => {
  const stage = (s: string, i: number) => pod('ci', s, `10.3.0.${i}`, { stage: s }, [{ name: 'handoff', containerPort: 7000 + i, protocol: 'TCP' }]);
  const build = stage('build', 1);
  const test = stage('test', 2);
  const deploy = stage('deploy', 3);
  const registry = { ip: '198.51.100.7' } as Endpoint;
  const handoff = (from: string, to: string) => [
    np('ci', `${from}-to-${to}`, { subject: sel({ stage: from }), isolates: { ingress: false, egress: true }, egress: [rule([pods({ stage: to })], [tcp('handoff')])] }),
    np('ci', `${to}-from-${from}`, { subject: sel({ stage: to }), ingress: [rule([pods({ stage: from })], [tcp('handoff')])] }),
  ];
  const policies = [
    np('ci', 'default-deny', { isolates: { ingress: true, egress: true } }),
    ...handoff('build', 'test'),
    ...handoff('test', 'deploy'),
    np('ci', 'deploy-to-registry', { subject: sel({ stage: 'deploy' }), isolates: { ingress: false, egress: true }, egress: [rule([cidr('198.51.100.0/24')], [tcp(443)])] }),
  ];
  runFlows(policies, {
    'build -> test handoff': { from: build, to: test, port: 7002, allowed: true },
    'test -> deploy handoff': { from: test, to: deploy, port: 7003, allowed: true },
    'deploy -> registry 443': { from: deploy, to: registry, port: 443, allowed: true },
    'build -> test on the wrong port': { from: build, to: test, port: 7003, allowed: false },
    'build -> deploy (skips a stage)': { from: build, to: deploy, port: 7003, allowed: false },
    'test -> build (backwards)': { from: test, to: build, port: 7001, allowed: false },
    'deploy -> test (backwards)': { from: deploy, to: test, port: 7002, allowed: false },
    'build -> registry': { from: build, to: registry, port: 443, allowed: false },
    'test -> outside': { from: test, to: W.out, port: 443, allowed: false },
    'deploy -> registry 80': { from: deploy, to: registry, port: 80, allowed: false },
    'outside -> build': { from: W.out, to: build, port: 7001, allowed: false },
    'pod of another namespace -> test': { from: W.xa, to: test, port: 7002, allowed: false },
  });
});

describe('explain', () => {
  it('states the verdict and each direction', () => {
    const d = evaluate(TABLE['egress allowed but the peer ingress denies']!.policies, W.xa, W.xb, 80, 'TCP');
    expect(explain(d)).toBe(
      [
        'DENIED',
        'egress (source): isolated by x/a-out; allowed by x/a-out',
        'ingress (destination): isolated by x/b-in; denied: no rule of a selecting policy allows it',
      ].join('\n'),
    );
  });
  it('names the deny policy', () => {
    const d = evaluate(TABLE['CNP deny beats another policy allow']!.policies, W.xa, W.xb, 80, 'TCP');
    expect(explain(d).split('\n')).toStrictEqual([
      'DENIED',
      'egress (source): not isolated (no policy selects it); allowed',
      'ingress (destination): isolated by x/allow-all, x/no-a; denied by a deny rule of x/no-a',
    ]);
  });
  it('an open connection', () => {
    expect(explain(evaluate([], W.out, W.xa, 80, 'TCP'))).toBe(
      ['ALLOWED', 'egress (source): not isolated (no policy selects it); allowed', 'ingress (destination): not isolated (no policy selects it); allowed'].join('\n'),
    );
  });
});
