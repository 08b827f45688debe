import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CniError } from '../../src/cni/errors.js';
import type { Peer, Policy, PortRule, Rule, Selector, SelectorRequirement } from '../../src/policy/model.js';
import {
  validateLabelKey, validateLabelValue, validateNamespace, validatePodName, validatePortName,
} from '../../src/policy/names.js';
import { loadPolicyDir, parseManifestObjects, parseManifestText, PolicyError } from '../../src/policy/parse.js';
import { caught } from '../helpers/caught.js';

const EXAMPLES = join(import.meta.dirname, '../../examples/policies');

// ---- builders for expected values ----

const sel = (matchLabels: Record<string, string> = {}, matchExpressions: SelectorRequirement[] = []): Selector =>
  ({ matchLabels, matchExpressions });
const ALL = sel();
const nsName = (ns: string): Selector => sel({ 'kubernetes.io/metadata.name': ns });
const tcp = (port?: number | string, endPort?: number): PortRule => {
  const r: PortRule = { protocol: 'TCP' };
  if (port !== undefined) r.port = port;
  if (endPort !== undefined) r.endPort = endPort;
  return r;
};
const udp = (port?: number | string): PortRule => (port === undefined ? { protocol: 'UDP' } : { protocol: 'UDP', port });
const pods = (p?: Selector, namespaces?: Selector): Peer => {
  const peer: Peer = { kind: 'pods' };
  if (p) peer.pods = p;
  if (namespaces) peer.namespaces = namespaces;
  return peer;
};
const cidr = (c: string, except: string[] = []): Peer => ({ kind: 'cidr', cidr: c, except });

function policy(p: Partial<Policy> & Pick<Policy, 'namespace' | 'name'>): Policy {
  return {
    kind: 'NetworkPolicy',
    subject: ALL,
    isolates: { ingress: true, egress: false },
    ingress: [],
    egress: [],
    ingressDeny: [],
    egressDeny: [],
    source: { file: 'test.yaml', index: 0 },
    ...p,
  };
}

// ---- builders for manifests ----

const NP = (spec: unknown, metadata: Record<string, unknown> = { name: 'db-allow', namespace: 'prod' }) =>
  ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata, spec });
const CNP = (spec: unknown, metadata: Record<string, unknown> = { name: 'data-readers', namespace: 'ml' }) =>
  ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata, spec });
const one = (obj: unknown, file = 'test.yaml'): Policy => {
  const out = parseManifestObjects([obj], file);
  expect(out).toHaveLength(1);
  return out[0]!;
};
const refusal = (objs: unknown[], file: string): string => caught(() => parseManifestObjects(objs, file)).message;

const NP_HEAD = 'db.yaml document 0 (NetworkPolicy prod/db-allow): ';
const CNP_HEAD = 'cnp.yaml document 0 (CiliumNetworkPolicy ml/data-readers): ';

// ======================================================================

describe('names', () => {
  const keys: [string, boolean][] = [
    ['app', true], ['app.kubernetes.io/name', true], ['k8s-app', true], ['A_b.c-D', true], ['x'.repeat(63), true],
    [`${'a'.repeat(253)}/n`, true], ['', false], ['x'.repeat(64), false], ['-app', false], ['app-', false],
    ['a/b/c', false], ['/app', false], ['Example.COM/app', false], ['app name', false], ['app"', false],
    ['app}', false], ['app;', false], ['app\n', false], ['k8s:app', false], ['__proto__', false], [`${'a'.repeat(254)}/n`, false],
  ];
  it.each(keys)('validateLabelKey(%j) valid=%s', (k, ok) => {
    expect(validateLabelKey(k) === undefined).toBe(ok);
  });
  const values: [string, boolean][] = [
    ['', true], ['web', true], ['v1.2_3-x', true], ['accept', true], ['x'.repeat(63), true],
    ['x'.repeat(64), false], ['-x', false], ['x.', false], ['a b', false], ['a"b', false], ['a}', false],
    ['a;b', false], ['a\nb', false], ['web\n', false], ['a/b', false], ['é', false],
  ];
  it.each(values)('validateLabelValue(%j) valid=%s', (v, ok) => {
    expect(validateLabelValue(v) === undefined).toBe(ok);
  });
  const namespaces: [string, boolean][] = [
    ['prod', true], ['kube-system', true], ['a1', true], ['x'.repeat(63), true],
    ['x'.repeat(64), false], ['Prod', false], ['a.b', false], ['-a', false], ['a_b', false], ['', false], ['a;', false],
  ];
  it.each(namespaces)('validateNamespace(%j) valid=%s', (n, ok) => {
    expect(validateNamespace(n) === undefined).toBe(ok);
  });
  const podNames: [string, boolean][] = [
    ['web-0', true], ['a.b.c', true], ['x'.repeat(253), true],
    ['x'.repeat(254), false], ['a..b', false], ['A', false], ['a_b', false], ['.a', false], ['a"', false], ['', false],
  ];
  it.each(podNames)('validatePodName(%j) valid=%s', (n, ok) => {
    expect(validatePodName(n) === undefined).toBe(ok);
  });
  const portNames: [string, boolean][] = [
    ['http', true], ['h2c', true], ['http-alt', true], ['a'.repeat(15), true],
    ['a'.repeat(16), false], ['80', false], ['HTTP', false], ['-http', false], ['http-', false], ['ht--tp', false], ['', false], ['h;', false],
  ];
  it.each(portNames)('validatePortName(%j) valid=%s', (n, ok) => {
    expect(validatePortName(n) === undefined).toBe(ok);
  });
  it('says what is wrong, quoting the input', () => {
    expect(validateLabelValue('a;b')).toBe(
      `invalid label value "a;b": must be empty or at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit`,
    );
    expect(validateLabelKey('Bad.Prefix/app')).toBe(
      `invalid label key "Bad.Prefix/app": the prefix must be a lowercase DNS-1123 subdomain (at most 253 characters of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit)`,
    );
    expect(validateNamespace('a\nb')).toBe(
      `invalid namespace "a\\nb": must be a lowercase DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)`,
    );
  });
});

// ======================================================================

describe('the three scenarios (examples/policies)', () => {
  const read = (f: string) => parseManifestText(readFileSync(join(EXAMPLES, f), 'utf8'), f);

  it('payments.yaml: the payment service may reach the database on TCP 5432', () => {
    const src = (index: number) => ({ file: 'payments.yaml', index });
    expect(read('payments.yaml')).toEqual([
      policy({ namespace: 'payments', name: 'default-deny', isolates: { ingress: true, egress: true }, source: src(0) }),
      policy({
        namespace: 'payments', name: 'db-allow-payment-service', subject: sel({ app: 'payments-db' }), source: src(1),
        ingress: [{ peers: [pods(sel({ app: 'payment-service' }))], ports: [tcp(5432)] }],
      }),
      policy({
        // No policyTypes and egress rules: the API server defaults to [Ingress, Egress].
        namespace: 'payments', name: 'payment-service-egress', subject: sel({ app: 'payment-service' }), source: src(2),
        isolates: { ingress: true, egress: true },
        egress: [
          { peers: [pods(sel({ app: 'payments-db' }))], ports: [tcp(5432)] },
          { peers: [pods(sel({ 'k8s-app': 'kube-dns' }), nsName('kube-system'))], ports: [udp(53), tcp(53)] },
        ],
      }),
    ]);
  });

  it('ml.yaml: the training data may be read only by the authorised service', () => {
    const src = (index: number) => ({ file: 'ml.yaml', index });
    expect(read('ml.yaml')).toEqual([
      policy({ namespace: 'ml', name: 'default-deny-ingress', source: src(0) }),
      policy({
        kind: 'CiliumNetworkPolicy', namespace: 'ml', name: 'data-readers', subject: sel({ app: 'training-data' }), source: src(1),
        ingress: [{
          peers: [pods(sel({ app: 'report-builder', 'data-access': 'authorized' }), nsName('analytics'))],
          ports: [tcp(8080)],
        }],
      }),
    ]);
  });

  it('cicd.yaml: stages isolated except as the pipeline needs', () => {
    const src = { file: 'cicd.yaml', index: 0 };
    const store = [pods(sel({ app: 'artifact-store' }))];
    expect(read('cicd.yaml')).toEqual([
      policy({ namespace: 'ci', name: 'default-deny', isolates: { ingress: true, egress: true }, source: src }),
      policy({
        namespace: 'ci', name: 'allow-dns', isolates: { ingress: false, egress: true }, source: src,
        egress: [{ peers: [pods(sel({ 'k8s-app': 'kube-dns' }), nsName('kube-system'))], ports: [udp(53), tcp(53)] }],
      }),
      policy({
        namespace: 'ci', name: 'stage-build', subject: sel({ stage: 'build' }), isolates: { ingress: false, egress: true }, source: src,
        egress: [
          { peers: [cidr('0.0.0.0/0', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'])], ports: [tcp(443)] },
          { peers: store, ports: [tcp('http-artifacts')] },
        ],
      }),
      policy({
        namespace: 'ci', name: 'stage-test-and-deploy', source: src, isolates: { ingress: false, egress: true },
        subject: sel({}, [{ key: 'stage', operator: 'In', values: ['test', 'deploy'] }]),
        egress: [{ peers: store, ports: [tcp('http-artifacts')] }],
      }),
      policy({
        namespace: 'ci', name: 'stage-deploy-registry', subject: sel({ stage: 'deploy' }), isolates: { ingress: false, egress: true }, source: src,
        egress: [{ peers: [pods(sel({ app: 'registry' }), nsName('registry'))], ports: [tcp(5000)] }],
      }),
      policy({
        namespace: 'ci', name: 'artifact-store', subject: sel({ app: 'artifact-store' }), source: src,
        ingress: [{ peers: [pods(sel({}, [{ key: 'stage', operator: 'Exists', values: [] }]))], ports: [tcp(8081, 8082)] }],
      }),
    ]);
  });

  it('ml-cilium-l7.yaml: an HTTP GET /data rule is refused, not widened to the port', () => {
    expect(caught(() => read('ml-cilium-l7.yaml')).message).toBe(
      'ml-cilium-l7.yaml document 0 (CiliumNetworkPolicy ml/data-readers): spec.ingress[0].toPorts[0].rules.http: ' +
        'L7 rules are enforced only in cluster mode, by the node agent (nhi-cni agent); refusing rather than allowing the whole port',
    );
  });

  it('loading the examples directory stops at the L7 policy', () => {
    const e = caught(() => loadPolicyDir(EXAMPLES));
    expect(e).toBeInstanceOf(PolicyError);
    expect(e.code).toBe(7);
    expect(e.message).toBe(
      `${join(EXAMPLES, 'ml-cilium-l7.yaml')} document 0 (CiliumNetworkPolicy ml/data-readers): spec.ingress[0].toPorts[0].rules.http: ` +
        'L7 rules are enforced only in cluster mode, by the node agent (nhi-cni agent); refusing rather than allowing the whole port',
    );
  });
});

// ======================================================================

describe('NetworkPolicy: semantics', () => {
  type Case = [string, unknown, Partial<Policy>];
  const cases: Case[] = [
    ['podSelector {} selects every pod; no policyTypes and no egress → Ingress only', { podSelector: {} }, {}],
    ['policyTypes [] is defaulted like an absent one', { podSelector: {}, policyTypes: [] }, {}],
    ['egress: [] has no rule, so Egress is not inferred', { podSelector: {}, egress: [] }, {}],
    ['one egress rule → Ingress and Egress', { podSelector: {}, egress: [{}] },
      { isolates: { ingress: true, egress: true }, egress: [{}] }],
    ['explicit [Egress]: ingress rules are ignored', { podSelector: {}, policyTypes: ['Egress'], ingress: [{}], egress: [] },
      { isolates: { ingress: false, egress: true } }],
    ['explicit [Ingress] with egress rules: egress ignored', { podSelector: {}, policyTypes: ['Ingress'], egress: [{}] },
      { isolates: { ingress: true, egress: false } }],
    ['ingress: [{}] allows everything', { podSelector: {}, ingress: [{}] }, { ingress: [{}] }],
    ['from/ports absent, [] or null: every peer, every port',
      { podSelector: {}, ingress: [{ from: [], ports: [] }, { from: null, ports: null }] }, { ingress: [{}, {}] }],
    ['matchLabels and matchExpressions', {
      podSelector: {
        matchLabels: { app: 'db', 'app.kubernetes.io/part-of': 'shop' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: ['a', 'b'] }, { key: 'env', operator: 'NotIn', values: ['dev'] },
          { key: 'canary', operator: 'DoesNotExist' }, { key: 'team', operator: 'Exists', values: [] },
        ],
      },
    }, {
      subject: sel({ app: 'db', 'app.kubernetes.io/part-of': 'shop' }, [
        { key: 'tier', operator: 'In', values: ['a', 'b'] }, { key: 'env', operator: 'NotIn', values: ['dev'] },
        { key: 'canary', operator: 'DoesNotExist', values: [] }, { key: 'team', operator: 'Exists', values: [] },
      ]),
    }],
    ['peers: podSelector alone, namespaceSelector alone, both (AND), {} selectors', {
      podSelector: {},
      ingress: [{
        from: [
          { podSelector: { matchLabels: { app: 'web' } } },
          { namespaceSelector: { matchLabels: { team: 'x' } } },
          { namespaceSelector: { matchLabels: { team: 'x' } }, podSelector: { matchLabels: { app: 'web' } } },
          { namespaceSelector: {} },
          { podSelector: {} },
        ],
      }],
    }, {
      ingress: [{
        peers: [
          pods(sel({ app: 'web' })), pods(undefined, sel({ team: 'x' })), pods(sel({ app: 'web' }), sel({ team: 'x' })),
          pods(undefined, ALL), pods(ALL),
        ],
      }],
    }],
    ['ipBlock: except, host bits cleared, IPv6', {
      podSelector: {},
      policyTypes: ['Egress'],
      egress: [{
        to: [
          { ipBlock: { cidr: '10.1.2.3/16', except: ['10.1.128.9/17', '10.1.0.0/32'] } },
          { ipBlock: { cidr: '2001:DB8::/32', except: ['2001:db8:0:1::/64'] } },
          { ipBlock: { cidr: '0.0.0.0/0' } },
        ],
      }],
    }, {
      isolates: { ingress: false, egress: true },
      egress: [{
        peers: [cidr('10.1.0.0/16', ['10.1.128.0/17', '10.1.0.0/32']), cidr('2001:db8::/32', ['2001:db8:0:1::/64']), cidr('0.0.0.0/0')],
      }],
    }],
    ['ports: protocol defaults to TCP; UDP, SCTP, named, range, protocol only', {
      podSelector: {},
      ingress: [{
        ports: [
          { port: 5432 }, { protocol: 'UDP', port: 53 }, { protocol: 'SCTP', port: 9999 }, { port: 'metrics' },
          { protocol: 'TCP', port: 32000, endPort: 32767 }, { protocol: 'UDP' }, { port: 80, endPort: 80 }, { port: 1 }, { port: 65535 },
        ],
      }],
    }, {
      ingress: [{
        ports: [
          tcp(5432), udp(53), { protocol: 'SCTP', port: 9999 }, tcp('metrics'), tcp(32000, 32767), udp(), tcp(80, 80), tcp(1), tcp(65535),
        ],
      }],
    }],
  ];
  it.each(cases)('%s', (_name, spec, want) => {
    expect(one(NP(spec, { name: 'p', namespace: 'ns', labels: { a: 'b' }, annotations: { x: 'y z' } }))).toEqual(
      policy({ namespace: 'ns', name: 'p', ...want }),
    );
  });

  it('other fields of the object (status, metadata.uid) are fine', () => {
    const obj = { ...NP({ podSelector: {} }, { name: 'p', namespace: 'ns', uid: 'abc', resourceVersion: '1' }), status: {} };
    expect(one(obj)).toEqual(policy({ namespace: 'ns', name: 'p' }));
  });
});

describe('NetworkPolicy: refusals', () => {
  type Case = [string, unknown, string];
  const sp = (ingressRule: unknown) => ({ podSelector: {}, ingress: [ingressRule] });
  const cases: Case[] = [
    ['no spec', undefined, 'spec: required'],
    ['no podSelector', { ingress: [] }, 'spec.podSelector: required'],
    ['podSelector null', { podSelector: null }, 'spec.podSelector: must be a map, not null'],
    ['unknown spec field', { podSelector: {}, ingres: [] }, 'spec.ingres: unknown field; refusing rather than ignoring it'],
    ['bad policyType', { podSelector: {}, policyTypes: ['ingress'] }, 'spec.policyTypes[0]: must be one of Ingress, Egress, not the string "ingress"'],
    ['three policyTypes', { podSelector: {}, policyTypes: ['Ingress', 'Egress', 'Ingress'] }, 'spec.policyTypes: may not list more than two policy types'],
    ['ipBlock with podSelector', sp({ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }] }),
      'spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector'],
    ['In without values', { podSelector: { matchExpressions: [{ key: 'a', operator: 'In', values: [] }] } },
      'spec.podSelector.matchExpressions[0].values: must be non-empty when operator is In'],
    ['NotIn without values', { podSelector: { matchExpressions: [{ key: 'a', operator: 'NotIn' }] } },
      'spec.podSelector.matchExpressions[0].values: must be non-empty when operator is NotIn'],
    ['Exists with values', { podSelector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] } },
      'spec.podSelector.matchExpressions[0].values: must be empty when operator is Exists'],
    ['DoesNotExist with values', { podSelector: { matchExpressions: [{ key: 'a', operator: 'DoesNotExist', values: ['x'] }] } },
      'spec.podSelector.matchExpressions[0].values: must be empty when operator is DoesNotExist'],
    ['bad operator', { podSelector: { matchExpressions: [{ key: 'a', operator: 'Gt', values: ['1'] }] } },
      'spec.podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist, not the string "Gt"'],
    ['label value not a string', { podSelector: { matchLabels: { replicas: 3 } } },
      'spec.podSelector.matchLabels.replicas: must be a string, not number 3'],
    ['__proto__ label key is not silently dropped', { podSelector: JSON.parse('{"matchLabels": {"__proto__": "x", "app": "db"}}') },
      `spec.podSelector.matchLabels.__proto__: invalid label key "__proto__": the name must be at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit`],
    ['peer with nothing', sp({ from: [{}] }), 'spec.ingress[0].from[0]: a peer must set podSelector and/or namespaceSelector, or ipBlock'],
    ['peer with null selectors', sp({ from: [{ podSelector: null }] }), 'spec.ingress[0].from[0]: a peer must set podSelector and/or namespaceSelector, or ipBlock'],
    ['unknown peer field', sp({ from: [{ podSelecter: {} }] }), 'spec.ingress[0].from[0].podSelecter: unknown field; refusing rather than ignoring it'],
    ['egress rule with from', { podSelector: {}, egress: [{ from: [] }] }, 'spec.egress[0].from: unknown field; refusing rather than ignoring it'],
    ['bad CIDR', sp({ from: [{ ipBlock: { cidr: '10.0.0.0' } }] }),
      'spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR "10.0.0.0": expected an address and a prefix length, e.g. 10.0.0.0/8'],
    ['CIDR prefix too long', sp({ from: [{ ipBlock: { cidr: '10.0.0.0/33' } }] }),
      'spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR "10.0.0.0/33": expected an address and a prefix length, e.g. 10.0.0.0/8'],
    ['except outside cidr', sp({ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/16'] } }] }),
      'spec.ingress[0].from[0].ipBlock.except[0]: "11.0.0.0/16" must lie strictly inside 10.0.0.0/8'],
    ['except equal to cidr', sp({ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.0.0/8'] } }] }),
      'spec.ingress[0].from[0].ipBlock.except[0]: "10.0.0.0/8" must lie strictly inside 10.0.0.0/8'],
    ['except larger than cidr', sp({ from: [{ ipBlock: { cidr: '10.1.0.0/16', except: ['10.0.0.0/8'] } }] }),
      'spec.ingress[0].from[0].ipBlock.except[0]: "10.0.0.0/8" must lie strictly inside 10.1.0.0/16'],
    ['except of another family', sp({ from: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['::1/128'] } }] }),
      'spec.ingress[0].from[0].ipBlock.except[0]: "::1/128" must lie strictly inside 0.0.0.0/0'],
    ['bad protocol', sp({ ports: [{ protocol: 'ICMP' }] }),
      'spec.ingress[0].ports[0].protocol: must be one of TCP, UDP, SCTP, not the string "ICMP"'],
    ['lowercase protocol', sp({ ports: [{ protocol: 'tcp', port: 80 }] }),
      'spec.ingress[0].ports[0].protocol: must be one of TCP, UDP, SCTP, not the string "tcp"'],
    ['port 0', sp({ ports: [{ port: 0 }] }), 'spec.ingress[0].ports[0].port: must be a port number from 1 to 65535, not number 0'],
    ['port 65536', sp({ ports: [{ port: 65536 }] }), 'spec.ingress[0].ports[0].port: must be a port number from 1 to 65535, not number 65536'],
    ['fractional port', sp({ ports: [{ port: 80.5 }] }), 'spec.ingress[0].ports[0].port: must be a port number from 1 to 65535, not number 80.5'],
    ['quoted number', sp({ ports: [{ port: '80' }] }),
      `spec.ingress[0].ports[0].port: invalid port name "80": must be an IANA service name (at most 15 characters of a-z, 0-9 and '-', at least one letter, no leading, trailing or double '-'); write a port number without quotes`],
    ['bad port name', sp({ ports: [{ port: 'Web--UI' }] }),
      `spec.ingress[0].ports[0].port: invalid port name "Web--UI": must be an IANA service name (at most 15 characters of a-z, 0-9 and '-', at least one letter, no leading, trailing or double '-')`],
    ['endPort without port', sp({ ports: [{ endPort: 90 }] }), 'spec.ingress[0].ports[0].endPort: endPort needs a port'],
    ['endPort with a named port', sp({ ports: [{ port: 'http', endPort: 90 }] }),
      'spec.ingress[0].ports[0].endPort: endPort needs a numeric port, not a named one'],
    ['endPort below port', sp({ ports: [{ port: 100, endPort: 90 }] }), 'spec.ingress[0].ports[0].endPort: must be greater than or equal to port 100'],
    ['endPort out of range', sp({ ports: [{ port: 100, endPort: 70000 }] }),
      'spec.ingress[0].ports[0].endPort: must be a port number from 1 to 65535, not number 70000'],
    ['from not a list', sp({ from: { podSelector: {} } }), 'spec.ingress[0].from: must be a list, not a map'],
  ];
  it.each(cases)('%s', (_name, spec, msg) => {
    expect(refusal([NP(spec)], 'db.yaml')).toBe(NP_HEAD + msg);
  });

  it('names the document: db.yaml document 2 (the brief example)', () => {
    const objs = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'prod' } },
      NP({ podSelector: {} }, { name: 'other', namespace: 'prod' }),
      NP({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8' }, namespaceSelector: {} }] }] }),
    ];
    expect(refusal(objs, 'db.yaml')).toBe(
      'db.yaml document 2 (NetworkPolicy prod/db-allow): spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector',
    );
  });

  type MetaCase = [string, unknown, string];
  const metaCases: MetaCase[] = [
    ['no metadata', undefined, 'test.yaml document 0 (NetworkPolicy): metadata: required'],
    ['no name', { namespace: 'prod' }, 'test.yaml document 0 (NetworkPolicy prod): metadata.name: required'],
    ['no namespace', { name: 'db' }, 'test.yaml document 0 (NetworkPolicy db): metadata.namespace: required: a policy without a namespace is refused rather than placed in "default"'],
    ['empty namespace', { name: 'db', namespace: '' }, 'test.yaml document 0 (NetworkPolicy ""/db): metadata.namespace: required: a policy without a namespace is refused rather than placed in "default"'],
    ['uppercase name', { name: 'DB', namespace: 'prod' },
      `test.yaml document 0 (NetworkPolicy prod/DB): metadata.name: invalid name "DB": must be a lowercase DNS-1123 subdomain (at most 253 characters of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit)`],
    ['namespace with a dot', { name: 'db', namespace: 'a.b' },
      `test.yaml document 0 (NetworkPolicy a.b/db): metadata.namespace: invalid namespace "a.b": must be a lowercase DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)`],
    ['name too long', { name: 'a'.repeat(254), namespace: 'prod' },
      `test.yaml document 0 (NetworkPolicy prod/"${'a'.repeat(80)}…"): metadata.name: invalid name "${'a'.repeat(80)}…": must be a lowercase DNS-1123 subdomain (at most 253 characters of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit)`],
  ];
  it.each(metaCases)('%s', (_name, metadata, msg) => {
    const obj = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata, spec: { podSelector: {} } };
    expect(refusal([obj], 'test.yaml')).toBe(msg);
  });
});

// ======================================================================

describe('CiliumNetworkPolicy: semantics', () => {
  const cnp = (spec: unknown) => CNP(spec, { name: 'c', namespace: 'ns' });
  const want = (p: Partial<Policy>) => policy({ kind: 'CiliumNetworkPolicy', namespace: 'ns', name: 'c', isolates: { ingress: false, egress: false }, ...p });
  const ep = { endpointSelector: { matchLabels: { app: 'db' } } };
  const subject = sel({ app: 'db' });
  type Case = [string, unknown, Policy];
  const cases: Case[] = [
    ['no ingress/egress key: isolates nothing', ep, want({ subject })],
    ['ingress: [{}] isolates and allows nothing', { ...ep, ingress: [{}] }, want({ subject, isolates: { ingress: true, egress: false } })],
    ['egressDeny alone isolates egress', { ...ep, egressDeny: [{ toCIDR: ['192.0.2.0/24'] }] },
      want({ subject, isolates: { ingress: false, egress: true }, egressDeny: [{ peers: [cidr('192.0.2.0/24')] }] })],
    ['source prefixes stripped; endpointSelector {} = every pod', {
      endpointSelector: {},
      ingress: [{ fromEndpoints: [{ matchLabels: { 'k8s:app': 'web', 'any:tier': 'front' }, matchExpressions: [{ key: 'k8s:env', operator: 'NotIn', values: ['dev'] }] }] }],
    }, want({
      isolates: { ingress: true, egress: false },
      ingress: [{ peers: [pods(sel({ app: 'web', tier: 'front' }, [{ key: 'env', operator: 'NotIn', values: ['dev'] }]))] }],
    })],
    ['fromEndpoints {} = every endpoint of the policy namespace', { ...ep, ingress: [{ fromEndpoints: [{}] }] },
      want({ subject, isolates: { ingress: true, egress: false }, ingress: [{ peers: [pods(ALL)] }] })],
    ['namespace label in matchLabels, In expression, and alone', {
      ...ep,
      ingress: [{
        fromEndpoints: [
          { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'analytics', app: 'reader' } },
          { matchExpressions: [{ key: 'k8s:io.kubernetes.pod.namespace', operator: 'In', values: ['a', 'b'] }] },
          { matchLabels: { 'io.kubernetes.pod.namespace': 'kube-system' } },
          { matchLabels: { 'k8s:io.cilium.k8s.namespace.labels.team': 'blue' } },
        ],
      }],
    }, want({
      subject,
      isolates: { ingress: true, egress: false },
      ingress: [{
        peers: [
          pods(sel({ app: 'reader' }), nsName('analytics')),
          pods(undefined, sel({}, [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['a', 'b'] }])),
          pods(undefined, nsName('kube-system')),
          pods(undefined, sel({ team: 'blue' })),
        ],
      }],
    })],
    ['several peer kinds in one rule are OR-ed; toPorts applies to all', {
      ...ep,
      egress: [{
        toEndpoints: [{ matchLabels: { app: 'api' } }],
        toCIDR: ['10.0.0.0/8', '192.0.2.7', '2001:db8::1'],
        toCIDRSet: [{ cidr: '172.16.0.0/12', except: ['172.16.1.0/24'] }, { cidr: '198.51.100.0/24' }],
        toPorts: [{ ports: [{ port: '443', protocol: 'TCP' }] }, { ports: [{ port: '53', protocol: 'UDP' }] }],
      }],
    }, want({
      subject,
      isolates: { ingress: false, egress: true },
      egress: [{
        peers: [
          pods(sel({ app: 'api' })), cidr('10.0.0.0/8'), cidr('192.0.2.7/32'), cidr('2001:db8::1/128'),
          cidr('172.16.0.0/12', ['172.16.1.0/24']), cidr('198.51.100.0/24'),
        ],
        ports: [tcp(443), udp(53)],
      }],
    })],
    ['toPorts only: every peer; ANY and missing protocol → TCP+UDP; "0"/absent = every port; endPort; named; SCTP', {
      ...ep,
      ingress: [{
        toPorts: [{
          ports: [
            { port: '5432' }, { port: '8000', endPort: 8080, protocol: 'TCP' }, { port: '0', protocol: 'UDP' },
            { protocol: 'ANY' }, { port: 'metrics', protocol: 'TCP' }, { port: '9999', protocol: 'SCTP' }, { port: 7000, protocol: 'TCP' },
            { port: '80', endPort: 0, protocol: 'TCP' },
          ],
        }],
      }],
    }, want({
      subject,
      isolates: { ingress: true, egress: false },
      ingress: [{
        ports: [
          tcp(5432), udp(5432), tcp(8000, 8080), udp(), tcp(), udp(), tcp('metrics'), { protocol: 'SCTP', port: 9999 }, tcp(7000), tcp(80),
        ],
      }],
    })],
    ['ingressDeny and egressDeny have the same shapes', {
      ...ep,
      ingress: [{ fromEndpoints: [{}] }],
      ingressDeny: [{ fromCIDRSet: [{ cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] }], toPorts: [{ ports: [{ port: '22', protocol: 'TCP' }] }] }],
      egressDeny: [{ toEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'secrets' } }] }],
    }, want({
      subject,
      isolates: { ingress: true, egress: true },
      ingress: [{ peers: [pods(ALL)] }],
      ingressDeny: [{ peers: [cidr('0.0.0.0/0', ['10.0.0.0/8'])], ports: [tcp(22)] }],
      egressDeny: [{ peers: [pods(undefined, nsName('secrets'))] }],
    })],
    ['endpointSelector may name its own namespace; enableDefaultDeny true is the default; labels/description ok', {
      endpointSelector: { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'ns', app: 'db' } },
      enableDefaultDeny: { ingress: true, egress: true },
      labels: [{ key: 'owner', value: 'ml' }],
      description: 'x',
      ingress: [{}],
    }, want({ subject, isolates: { ingress: true, egress: false } })],
  ];
  it.each(cases)('%s', (_name, spec, expected) => {
    expect(one(cnp(spec))).toEqual(expected);
  });

  it('specs: one Policy per rule, named <name>#<i>, after spec', () => {
    const obj = {
      apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'c', namespace: 'ns' },
      spec: { endpointSelector: {}, ingress: [{}] },
      specs: [{ endpointSelector: { matchLabels: { a: 'b' } }, egress: [{}] }, { endpointSelector: {} }],
    };
    expect(parseManifestObjects([obj], 'test.yaml')).toEqual([
      want({ isolates: { ingress: true, egress: false } }),
      want({ name: 'c#0', subject: sel({ a: 'b' }), isolates: { ingress: false, egress: true } }),
      want({ name: 'c#1' }),
    ]);
  });
});

describe('CiliumNetworkPolicy: refusals', () => {
  const ep = { endpointSelector: {} };
  const L7 = 'L7 rules are enforced only in cluster mode, by the node agent (nhi-cni agent); refusing rather than allowing the whole port';
  const PROXY = 'needs an L7 proxy, which nhi-cni does not have; refusing rather than allowing the whole port';
  const ENT = 'entities (world, cluster, host, …) are not supported by nhi-cni; use CIDR or endpoint selectors';
  const port80 = { ports: [{ port: '80', protocol: 'TCP' }] };
  const inRule = (r: unknown) => ({ ...ep, ingress: [r] });
  const outRule = (r: unknown) => ({ ...ep, egress: [r] });
  type Case = [string, unknown, string];
  const cases: Case[] = [
    ['rules.http (GET /data)', inRule({ toPorts: [{ ...port80, rules: { http: [{ method: 'GET', path: '/data' }] } }] }), `spec.ingress[0].toPorts[0].rules.http: ${L7}`],
    ['rules.dns', outRule({ toPorts: [{ ports: [{ port: '53', protocol: 'ANY' }], rules: { dns: [{ matchPattern: '*' }] } }] }), `spec.egress[0].toPorts[0].rules.dns: ${L7}`],
    ['rules.kafka', inRule({ toPorts: [{ ...port80, rules: { kafka: [{ topic: 'x' }] } }] }), `spec.ingress[0].toPorts[0].rules.kafka: ${L7}`],
    ['rules.l7proto', inRule({ toPorts: [{ ...port80, rules: { l7proto: 'envoy.redis', l7: [{}] } }] }), `spec.ingress[0].toPorts[0].rules.l7proto: ${L7}`],
    ['rules.l7', inRule({ toPorts: [{ ...port80, rules: { l7: [{ x: 'y' }] } }] }), `spec.ingress[0].toPorts[0].rules.l7: ${L7}`],
    ['rules {}', inRule({ toPorts: [{ ...port80, rules: {} }] }), `spec.ingress[0].toPorts[0].rules: ${L7}`],
    ['L7 in ingressDeny', { ...ep, ingressDeny: [{ toPorts: [{ ...port80, rules: { http: [{}] } }] }] }, `spec.ingressDeny[0].toPorts[0].rules.http: ${L7}`],
    ['terminatingTLS', inRule({ toPorts: [{ ...port80, terminatingTLS: { secret: { name: 'x' } } }] }), `spec.ingress[0].toPorts[0].terminatingTLS: TLS termination ${PROXY}`],
    ['originatingTLS', outRule({ toPorts: [{ ...port80, originatingTLS: { secret: { name: 'x' } } }] }), `spec.egress[0].toPorts[0].originatingTLS: TLS origination ${PROXY}`],
    ['serverNames', outRule({ toPorts: [{ ...port80, serverNames: ['a.example'] }] }), `spec.egress[0].toPorts[0].serverNames: SNI matching ${PROXY}`],
    ['listener', outRule({ toPorts: [{ ...port80, listener: { name: 'l' } }] }), `spec.egress[0].toPorts[0].listener: an Envoy listener ${PROXY}`],
    ['toFQDNs', outRule({ toFQDNs: [{ matchName: 'api.example.com' }] }),
      'spec.egress[0].toFQDNs: DNS-name rules need a DNS proxy, which nhi-cni does not have; refusing rather than guessing addresses'],
    ['toServices', outRule({ toServices: [{ k8sService: { serviceName: 'x' } }] }), 'spec.egress[0].toServices: service selectors are not supported by nhi-cni; use toEndpoints or toCIDR'],
    ['toEntities', outRule({ toEntities: ['world'] }), `spec.egress[0].toEntities: ${ENT}`],
    ['fromEntities', inRule({ fromEntities: ['cluster'] }), `spec.ingress[0].fromEntities: ${ENT}`],
    ['fromEntities in ingressDeny', { ...ep, ingressDeny: [{ fromEntities: ['world'] }] }, `spec.ingressDeny[0].fromEntities: ${ENT}`],
    ['toRequires', outRule({ toRequires: [{}] }), 'spec.egress[0].toRequires: requirement rules are not supported by nhi-cni; refusing rather than ignoring them'],
    ['fromRequires', inRule({ fromRequires: [{}] }), 'spec.ingress[0].fromRequires: requirement rules are not supported by nhi-cni; refusing rather than ignoring them'],
    ['toGroups', outRule({ toGroups: [{ aws: {} }] }), 'spec.egress[0].toGroups: cloud-provider groups are not supported by nhi-cni; list the CIDRs'],
    ['fromNodes', inRule({ fromNodes: [{}] }), 'spec.ingress[0].fromNodes: node selectors are not supported by nhi-cni'],
    ['icmps', inRule({ icmps: [{ fields: [{ type: 8 }] }] }), 'spec.ingress[0].icmps: ICMP rules are not supported by nhi-cni (TCP, UDP and SCTP ports only)'],
    ['authentication', inRule({ fromEndpoints: [{}], authentication: { mode: 'required' } }),
      'spec.ingress[0].authentication: mutual authentication is not enforced by nhi-cni; refusing rather than allowing unauthenticated peers'],
    ['nodeSelector', { nodeSelector: {}, ingress: [{}] }, 'spec.nodeSelector: host (node) policies are not supported by nhi-cni'],
    ['enableDefaultDeny false', { ...ep, ingress: [{}], enableDefaultDeny: { ingress: false } },
      'spec.enableDefaultDeny.ingress: false (allow rules that do not isolate) is not supported by nhi-cni'],
    ['cidrGroupRef', outRule({ toCIDRSet: [{ cidrGroupRef: 'g' }] }), 'spec.egress[0].toCIDRSet[0].cidrGroupRef: CIDR groups are not supported by nhi-cni; list the CIDRs'],
    ['unknown rule key', inRule({ fromEndpoint: [{}] }), 'spec.ingress[0].fromEndpoint: unknown field; refusing rather than ignoring it'],
    ['egress key in an ingress rule', inRule({ toEndpoints: [{}] }), 'spec.ingress[0].toEndpoints: unknown field; refusing rather than ignoring it'],
    ['unknown port key', inRule({ toPorts: [{ ports: [{ port: '80', proto: 'TCP' }] }] }), 'spec.ingress[0].toPorts[0].ports[0].proto: unknown field; refusing rather than ignoring it'],
    ['unknown spec key', { ...ep, ingres: [{}] }, 'spec.ingres: unknown field; refusing rather than ignoring it'],
    ['no endpointSelector', { ingress: [{}] }, 'spec.endpointSelector: required'],
    ['reserved: label', inRule({ fromEndpoints: [{ matchLabels: { 'reserved:host': '' } }] }),
      'spec.ingress[0].fromEndpoints[0].matchLabels["reserved:host"]: reserved: labels select Cilium entities (host, world, health, …), which nhi-cni does not support'],
    ['reserved: in an expression', inRule({ fromEndpoints: [{ matchExpressions: [{ key: 'reserved:world', operator: 'Exists' }] }] }),
      'spec.ingress[0].fromEndpoints[0].matchExpressions[0].key: reserved: labels select Cilium entities (host, world, health, …), which nhi-cni does not support'],
    ['other label source', inRule({ fromEndpoints: [{ matchLabels: { 'container:app': 'x' } }] }),
      'spec.ingress[0].fromEndpoints[0].matchLabels["container:app"]: label source "container" is not supported by nhi-cni (only k8s: and any:)'],
    ['cluster label', inRule({ fromEndpoints: [{ matchLabels: { 'k8s:io.cilium.k8s.policy.cluster': 'east' } }] }),
      'spec.ingress[0].fromEndpoints[0].matchLabels["k8s:io.cilium.k8s.policy.cluster"]: Cilium label "io.cilium.k8s.policy.cluster" (cluster, …) is not supported by nhi-cni'],
    ['same label twice after stripping', inRule({ fromEndpoints: [{ matchLabels: { 'k8s:app': 'a', 'any:app': 'b' } }] }),
      'spec.ingress[0].fromEndpoints[0].matchLabels["any:app"]: label "app" is given twice'],
    ['endpointSelector in another namespace', { endpointSelector: { matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'other' } } },
      'spec.endpointSelector: a CiliumNetworkPolicy selects endpoints of its own namespace (ml) only'],
    ['ingress: []', { ...ep, ingress: [] },
      'spec.ingress: an empty list is ambiguous (Cilium ignores it, a NetworkPolicy would deny everything); write [{}] to isolate with nothing allowed, or remove the key'],
    ['egress: null', { ...ep, egress: null },
      'spec.egress: an empty list is ambiguous (Cilium ignores it, a NetworkPolicy would deny everything); write [{}] to isolate with nothing allowed, or remove the key'],
    ['fromEndpoints: []', inRule({ fromEndpoints: [], toPorts: [port80] }),
      'spec.ingress[0].fromEndpoints: an empty list is ambiguous (Cilium reads it as absent); remove the key, or list at least one entry'],
    ['toPorts: []', outRule({ toCIDR: ['10.0.0.0/8'], toPorts: [] }),
      'spec.egress[0].toPorts: an empty list is ambiguous (Cilium reads it as absent); remove the key, or list at least one entry'],
    ['toPorts entry without ports', inRule({ toPorts: [{}] }), 'spec.ingress[0].toPorts[0].ports: required: list at least one port'],
    ['protocol ICMP', inRule({ toPorts: [{ ports: [{ port: '0', protocol: 'ICMP' }] }] }),
      'spec.ingress[0].toPorts[0].ports[0].protocol: must be one of TCP, UDP, SCTP, ANY, not the string "ICMP"'],
    ['port 65536', inRule({ toPorts: [{ ports: [{ port: '65536' }] }] }),
      'spec.ingress[0].toPorts[0].ports[0].port: must be a port number from 0 to 65535, not number 65536'],
    ['endPort with port 0', inRule({ toPorts: [{ ports: [{ port: '0', endPort: 100 }] }] }),
      'spec.ingress[0].toPorts[0].ports[0].endPort: endPort needs a port other than 0'],
    ['endPort with a named port', inRule({ toPorts: [{ ports: [{ port: 'http', endPort: 100 }] }] }),
      'spec.ingress[0].toPorts[0].ports[0].endPort: endPort needs a numeric port, not a named one'],
    ['endPort below port', inRule({ toPorts: [{ ports: [{ port: '100', endPort: 99 }] }] }),
      'spec.ingress[0].toPorts[0].ports[0].endPort: must be greater than or equal to port 100'],
    ['bad fromCIDR', inRule({ fromCIDR: ['10.0.0.0/8', 'world'] }),
      'spec.ingress[0].fromCIDR[1]: invalid CIDR "world": expected an address and a prefix length, e.g. 10.0.0.0/8'],
    ['except outside cidr', outRule({ toCIDRSet: [{ cidr: '10.0.0.0/16', except: ['10.1.0.0/24'] }] }),
      'spec.egress[0].toCIDRSet[0].except[0]: "10.1.0.0/24" must lie strictly inside 10.0.0.0/16'],
  ];
  it.each(cases)('%s', (_name, spec, msg) => {
    expect(refusal([CNP(spec)], 'cnp.yaml')).toBe(CNP_HEAD + msg);
  });

  it('refuses in specs[i] and says so', () => {
    const obj = { ...CNP(undefined), specs: [{ endpointSelector: {} }, { endpointSelector: {}, egress: [{ toFQDNs: [{ matchName: 'x' }] }] }] };
    expect(refusal([obj], 'cnp.yaml')).toBe(
      `${CNP_HEAD}specs[1].egress[0].toFQDNs: DNS-name rules need a DNS proxy, which nhi-cni does not have; refusing rather than guessing addresses`,
    );
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['no spec nor specs', {}, 'spec: required (or specs)'],
    ['specs: []', { specs: [] }, 'specs: must list at least one rule'],
    ['specs not a list', { specs: {} }, 'specs: must be a list, not a map'],
  ])('%s', (_name, extra, msg) => {
    const obj = { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'data-readers', namespace: 'ml' }, ...extra };
    expect(refusal([obj], 'cnp.yaml')).toBe(CNP_HEAD + msg);
  });

  it('metadata.namespace is required', () => {
    expect(refusal([CNP({ endpointSelector: {} }, { name: 'x' })], 'cnp.yaml')).toBe(
      'cnp.yaml document 0 (CiliumNetworkPolicy x): metadata.namespace: required: a policy without a namespace is refused rather than placed in "default"',
    );
  });
});

// ======================================================================

describe('injection attempts are refused', () => {
  const BAD_VALUE = `must be empty or at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit`;
  const BAD_KEY = `the name must be at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit`;
  type Case = [string, unknown, string];
  const cases: Case[] = [
    ['value with a quote', NP({ podSelector: { matchLabels: { app: 'web" accept' } } }),
      `${NP_HEAD}spec.podSelector.matchLabels.app: invalid label value "web\\" accept": ${BAD_VALUE}`],
    ['value with a brace', NP({ podSelector: { matchLabels: { app: 'x } accept' } } }),
      `${NP_HEAD}spec.podSelector.matchLabels.app: invalid label value "x } accept": ${BAD_VALUE}`],
    ['value with a semicolon', NP({ podSelector: { matchLabels: { app: 'x;accept' } } }),
      `${NP_HEAD}spec.podSelector.matchLabels.app: invalid label value "x;accept": ${BAD_VALUE}`],
    ['value with a newline', NP({ podSelector: { matchLabels: { app: 'x\nadd rule inet filter input accept' } } }),
      `${NP_HEAD}spec.podSelector.matchLabels.app: invalid label value "x\\nadd rule inet filter input accept": ${BAD_VALUE}`],
    ['value with a trailing newline', NP({ podSelector: {}, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'a\n' } } }] }] }),
      `${NP_HEAD}spec.ingress[0].from[0].namespaceSelector.matchLabels.team: invalid label value "a\\n": ${BAD_VALUE}`],
    ['expression value', NP({ podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['ok', '} accept'] }] } }),
      `${NP_HEAD}spec.podSelector.matchExpressions[0].values[1]: invalid label value "} accept": ${BAD_VALUE}`],
    ['key with a quote', NP({ podSelector: { matchLabels: { 'app"': 'x' } } }),
      `${NP_HEAD}spec.podSelector.matchLabels["app\\""]: invalid label key "app\\"": ${BAD_KEY}`],
    ['key with spaces and a keyword', NP({ podSelector: { matchExpressions: [{ key: 'app accept', operator: 'Exists' }] } }),
      `${NP_HEAD}spec.podSelector.matchExpressions[0].key: invalid label key "app accept": ${BAD_KEY}`],
    ['Cilium key after the prefix', CNP({ endpointSelector: { matchLabels: { 'k8s:app;drop': 'x' } } }),
      `${CNP_HEAD}spec.endpointSelector.matchLabels["k8s:app;drop"]: invalid label key "app;drop": ${BAD_KEY}`],
    ['Cilium namespace value', CNP({ endpointSelector: {}, ingress: [{ fromEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'a"}' } }] }] }),
      `${CNP_HEAD}spec.ingress[0].fromEndpoints[0].matchLabels["k8s:io.kubernetes.pod.namespace"]: invalid label value "a\\"}": ${BAD_VALUE}`],
    ['namespace', NP({ podSelector: {} }, { name: 'db-allow', namespace: 'prod"; accept' }),
      `db.yaml document 0 (NetworkPolicy "prod\\"; accept"/db-allow): metadata.namespace: invalid namespace "prod\\"; accept": must be a lowercase DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)`],
    ['name with a newline', NP({ podSelector: {} }, { name: 'x\n}', namespace: 'prod' }),
      `db.yaml document 0 (NetworkPolicy prod/"x\\n}"): metadata.name: invalid name "x\\n}": must be a lowercase DNS-1123 subdomain (at most 253 characters of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit)`],
    ['named port', NP({ podSelector: {}, ingress: [{ ports: [{ port: 'http;accept' }] }] }),
      `${NP_HEAD}spec.ingress[0].ports[0].port: invalid port name "http;accept": must be an IANA service name (at most 15 characters of a-z, 0-9 and '-', at least one letter, no leading, trailing or double '-')`],
    ['CIDR', NP({ podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8 } accept' } }] }] }),
      `${NP_HEAD}spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR "10.0.0.0/8 } accept": expected an address and a prefix length, e.g. 10.0.0.0/8`],
    ['Cilium port', CNP({ endpointSelector: {}, ingress: [{ toPorts: [{ ports: [{ port: '80;accept' }] }] }] }),
      `${CNP_HEAD}spec.ingress[0].toPorts[0].ports[0].port: invalid port name "80;accept": must be an IANA service name (at most 15 characters of a-z, 0-9 and '-', at least one letter, no leading, trailing or double '-')`],
  ];
  it.each(cases)('%s', (_name, obj, msg) => {
    const file = (obj as { kind: string }).kind === 'NetworkPolicy' ? 'db.yaml' : 'cnp.yaml';
    const got = refusal([obj], file);
    expect(got).toBe(msg);
    expect(got).not.toMatch(/[\n\r]/);
  });

  it('a "/" in a name is quoted in the header, so namespace/name stays unambiguous', () => {
    expect(refusal([NP({ podSelector: {} }, { name: 'a/b', namespace: 'prod' })], 'db.yaml')).toMatch(/^db\.yaml document 0 \(NetworkPolicy prod\/"a\/b"\): metadata\.name: invalid name "a\/b"/);
  });

  it('a bare nft keyword is a valid label value: it never reaches nft as text', () => {
    expect(one(NP({ podSelector: { matchLabels: { action: 'accept' } } }, { name: 'p', namespace: 'ns' })).subject).toEqual(sel({ action: 'accept' }));
  });

  it('unknown document kinds do not hide injected text in the message', () => {
    const msg = refusal([{ apiVersion: 'x/v1"\n', kind: 'FooNetworkPolicy' }], 'f.yaml');
    expect(msg).toBe('f.yaml document 0 (FooNetworkPolicy): "x/v1\\"\\n" FooNetworkPolicy is not supported (only networking.k8s.io/v1 NetworkPolicy and cilium.io/v2 CiliumNetworkPolicy); refusing rather than ignoring a policy');
  });
});

// ======================================================================

describe('documents, Lists and other objects', () => {
  const NS = 'apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n';
  it('reads several documents, skips empty ones and other kinds, and records the document index', () => {
    const text = [
      '# leading comment only',
      '---',
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}',
      '---',
      '',
      '---',
      '~',
      '---',
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: prod}\nspec: {podSelector: {}}',
      '---',
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}',
      '---',
      'apiVersion: v1\nkind: List\nitems:\n- apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  metadata: {name: b, namespace: prod}\n  spec: {endpointSelector: {}, egress: [{}]}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}',
    ].join('\n');
    expect(parseManifestText(text, 'm.yaml')).toEqual([
      // A comment before the first "---" opens no document of its own: documents 0-5 are
      // Namespace, empty, ~, NetworkPolicy, Deployment, List.
      policy({ namespace: 'prod', name: 'a', source: { file: 'm.yaml', index: 3 } }),
      policy({ kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'b', isolates: { ingress: false, egress: true }, source: { file: 'm.yaml', index: 5 } }),
    ]);
  });

  it('an empty text is no policy', () => {
    expect(parseManifestText('', 'e.yaml')).toEqual([]);
    expect(parseManifestText('# nothing\n', 'e.yaml')).toEqual([]);
  });

  it('reads JSON', () => {
    const text = JSON.stringify(NP({ podSelector: { matchLabels: { app: 'db' } } }, { name: 'j', namespace: 'ns' }));
    expect(parseManifestText(text, 'p.json')).toEqual([policy({ namespace: 'ns', name: 'j', subject: sel({ app: 'db' }), source: { file: 'p.json', index: 0 } })]);
  });

  it('names the List item in errors', () => {
    const text = 'apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: x, namespace: prod}\n  spec: {podSelector: {}, policyTypes: [Ingres]}\n';
    expect(caught(() => parseManifestText(text, 'l.yaml')).message).toBe(
      'l.yaml document 0 (NetworkPolicy prod/x): items[1].spec.policyTypes[0]: must be one of Ingress, Egress, not the string "Ingres"',
    );
  });

  it.each<[string, string, string]>([
    ['YAML syntax error, with the document index', `${NS}---\nb: [\n`, 's.yaml document 1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] at line 6, column 1'],
    ['nested mapping error', `${NS}---\n---\nc: d: e\n`, 's.yaml document 2: YAML syntax error: Nested mappings are not allowed in compact mappings at line 6, column 4'],
    ['duplicate keys', 'apiVersion: v1\nkind: List\nkind: Other\n', 's.yaml document 0: YAML syntax error: Map keys must be unique at line 3, column 1'],
    ['alias bomb', 'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n',
      's.yaml document 0: YAML error: Excessive alias count indicates a resource exhaustion attack'],
    ['a scalar document', 'hello\n', 's.yaml document 0: not a Kubernetes object: the string "hello"'],
    ['a list document', '- a\n- b\n', 's.yaml document 0: not a Kubernetes object: a list'],
    ['no kind', 'apiVersion: v1\nmetadata: {}\n', 's.yaml document 0: not a Kubernetes object: apiVersion and kind must be strings'],
    ['CiliumClusterwideNetworkPolicy', 'apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: deny-all}\nspec: {endpointSelector: {}, ingress: [{}]}\n',
      's.yaml document 0 (CiliumClusterwideNetworkPolicy deny-all): CiliumClusterwideNetworkPolicy is not supported yet; refusing rather than ignoring it'],
    ['NetworkPolicy of another apiVersion', 'apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: b}\n',
      's.yaml document 0 (NetworkPolicy b/a): extensions/v1beta1 NetworkPolicy is not supported (only networking.k8s.io/v1 NetworkPolicy and cilium.io/v2 CiliumNetworkPolicy); refusing rather than ignoring a policy'],
    ['AdminNetworkPolicy', 'apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\n',
      's.yaml document 0 (AdminNetworkPolicy a): policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy is not supported (only networking.k8s.io/v1 NetworkPolicy and cilium.io/v2 CiliumNetworkPolicy); refusing rather than ignoring a policy'],
    ['Calico NetworkPolicy', 'apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: a, namespace: b}\n',
      's.yaml document 0 (NetworkPolicy b/a): projectcalico.org/v3 NetworkPolicy is not supported (only networking.k8s.io/v1 NetworkPolicy and cilium.io/v2 CiliumNetworkPolicy); refusing rather than ignoring a policy'],
    ['duplicate policy', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: b}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: b}\nspec: {podSelector: {}}\n',
      's.yaml document 1 (NetworkPolicy b/a): duplicate policy; also defined in s.yaml document 0'],
  ])('%s', (_name, text, msg) => {
    const e = caught(() => parseManifestText(text, 's.yaml'));
    expect(e).toBeInstanceOf(PolicyError);
    expect(e.message).toBe(msg);
  });

  it('YAML 1.2: yes/no/on are strings, so they are valid label values', () => {
    const text = 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: b}\nspec: {podSelector: {matchLabels: {enabled: yes, x: on}}}\n';
    expect(parseManifestText(text, 'y.yaml')[0]!.subject).toEqual(sel({ enabled: 'yes', x: 'on' }));
  });

  it('inline manifests (policy.manifests) and a NetworkPolicy and CNP of the same name are distinct', () => {
    const objs = [
      NP({ podSelector: {} }, { name: 'same', namespace: 'ns' }),
      null,
      CNP({ endpointSelector: {} }, { name: 'same', namespace: 'ns' }),
    ];
    expect(parseManifestObjects(objs, 'inline')).toEqual([
      policy({ namespace: 'ns', name: 'same', source: { file: 'inline', index: 0 } }),
      policy({ kind: 'CiliumNetworkPolicy', namespace: 'ns', name: 'same', isolates: { ingress: false, egress: false }, source: { file: 'inline', index: 2 } }),
    ]);
  });

  it('inline manifests must be a list', () => {
    expect(caught(() => parseManifestObjects({ kind: 'NetworkPolicy' } as unknown as unknown[], 'inline')).message).toBe(
      'inline: manifests must be a list of objects, not a map',
    );
  });

  it('PolicyError is a CniError with code 7 (invalid configuration)', () => {
    const e = caught(() => parseManifestObjects([NP({})], 'inline'));
    expect(e).toBeInstanceOf(PolicyError);
    expect(e).toBeInstanceOf(CniError);
    expect(e.code).toBe(7);
    expect(e.name).toBe('PolicyError');
    expect(e.message).toBe('inline document 0 (NetworkPolicy prod/db-allow): spec.podSelector: required');
  });
});

// ======================================================================

describe('loadPolicyDir', () => {
  const root = mkdtempSync(join(tmpdir(), 'nhi-policy-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const np = (name: string) =>
    `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ${name}, namespace: ns}\nspec: {podSelector: {}}\n`;

  it('reads *.yaml, *.yml and *.json in sorted order, not recursively, following symlinks', () => {
    const dir = join(root, 'ok');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    mkdirSync(join(dir, '..data'));
    writeFileSync(join(dir, 'b.yml'), np('b'));
    writeFileSync(join(dir, 'a.yaml'), `${np('a1')}---\n${np('a2')}`);
    writeFileSync(join(dir, 'c.json'), JSON.stringify(NP({ podSelector: {} }, { name: 'c', namespace: 'ns' })));
    writeFileSync(join(dir, 'd.txt'), 'not yaml: [');
    writeFileSync(join(dir, 'sub', 'e.yaml'), np('e'));
    writeFileSync(join(dir, '..data', 'f.yaml'), np('f'));
    symlinkSync('..data/f.yaml', join(dir, 'f.yaml')); // the way a ConfigMap volume lays files out
    mkdirSync(join(dir, 'dir.yaml'));
    const got = loadPolicyDir(dir);
    expect(got.map((p) => [p.name, p.source.file, p.source.index])).toEqual([
      ['a1', join(dir, 'a.yaml'), 0],
      ['a2', join(dir, 'a.yaml'), 1],
      ['b', join(dir, 'b.yml'), 0],
      ['c', join(dir, 'c.json'), 0],
      ['f', join(dir, 'f.yaml'), 0],
    ]);
  });

  it('fails on the first bad manifest', () => {
    const dir = join(root, 'bad');
    mkdirSync(dir);
    writeFileSync(join(dir, '1.yaml'), np('one'));
    writeFileSync(join(dir, '2.yaml'), np('Two'));
    writeFileSync(join(dir, '3.yaml'), 'x: [');
    expect(caught(() => loadPolicyDir(dir)).message).toBe(
      `${join(dir, '2.yaml')} document 0 (NetworkPolicy ns/Two): metadata.name: invalid name "Two": must be a lowercase DNS-1123 subdomain (at most 253 characters of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit)`,
    );
  });

  it('refuses the same policy in two files', () => {
    const dir = join(root, 'dup');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a.yaml'), np('x'));
    writeFileSync(join(dir, 'b.yaml'), np('x'));
    expect(caught(() => loadPolicyDir(dir)).message).toBe(
      `${join(dir, 'b.yaml')} document 0 (NetworkPolicy ns/x): duplicate policy; also defined in ${join(dir, 'a.yaml')} document 0`,
    );
  });

  it('a missing directory or a dangling link is an error', () => {
    const missing = join(root, 'missing');
    expect(caught(() => loadPolicyDir(missing)).message).toMatch(new RegExp(`^cannot read policy directory ${missing}: ENOENT`));
    const dir = join(root, 'dangling');
    mkdirSync(dir);
    symlinkSync('nowhere.yaml', join(dir, 'x.yaml'));
    expect(caught(() => loadPolicyDir(dir)).message).toMatch(new RegExp(`^cannot read ${join(dir, 'x.yaml')}: ENOENT`));
  });

  it('an empty directory is no policy', () => {
    const dir = join(root, 'empty');
    mkdirSync(dir);
    expect(loadPolicyDir(dir)).toEqual([]);
  });
});
