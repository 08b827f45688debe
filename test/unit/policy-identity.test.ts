import { describe, expect, it } from 'vitest';
import { Code } from '../../src/cni/errors.js';
import { identityFromConfig, identityKey, spiffeId, WORKLOAD_CAPABILITY } from '../../src/policy/identity.js';
import { evaluate } from '../../src/policy/evaluate.js';
import { parseManifestText } from '../../src/policy/parse.js';
import { caught } from '../helpers/caught.js';

const cap = (w: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ name: 'net1', type: 'nhi-cni', runtimeConfig: { [WORKLOAD_CAPABILITY]: w }, ...extra });
const base = { namespace: 'payments', name: 'api-7d9f' };
const argLabels = (labels: { key: string; value: string }[], extra: Record<string, unknown> = {}) => ({ args: { cni: { labels } }, ...extra });

describe('identityFromConfig', () => {
  it('is undefined when neither the capability nor args.cni.labels is present', () => {
    expect(identityFromConfig({ name: 'n', type: 'nhi-cni' })).toBeUndefined();
    expect(identityFromConfig({ runtimeConfig: { mac: '02:00:00:00:00:01' }, args: { cni: { mac: 'x' } } })).toBeUndefined();
  });

  it('fills the defaults and implies kubernetes.io/metadata.name', () => {
    expect(identityFromConfig(cap(base))).toStrictEqual({
      namespace: 'payments',
      name: 'api-7d9f',
      labels: {},
      namespaceLabels: { 'kubernetes.io/metadata.name': 'payments' },
      ports: [],
    });
  });

  it('keeps every field of a full capability', () => {
    const id = identityFromConfig(
      cap({
        ...base,
        labels: { app: 'api', 'app.kubernetes.io/part-of': 'checkout' },
        namespaceLabels: { team: 'pay' },
        serviceAccount: 'payments-api',
        ports: [
          { name: 'http', containerPort: 8080 },
          { name: 'dns', containerPort: 53, protocol: 'UDP' },
          { name: 'sig', containerPort: 9899, protocol: 'SCTP' },
          { containerPort: 9090 },
        ],
      }),
    );
    expect(id).toStrictEqual({
      namespace: 'payments',
      name: 'api-7d9f',
      labels: { app: 'api', 'app.kubernetes.io/part-of': 'checkout', 'io.cilium.k8s.policy.serviceaccount': 'payments-api' },
      namespaceLabels: { team: 'pay', 'kubernetes.io/metadata.name': 'payments' },
      serviceAccount: 'payments-api',
      ports: [
        { name: 'http', containerPort: 8080, protocol: 'TCP' },
        { name: 'dns', containerPort: 53, protocol: 'UDP' },
        { name: 'sig', containerPort: 9899, protocol: 'SCTP' },
      ],
    });
  });

  it('kubernetes.io/metadata.name overrides any other value given', () => {
    const id = identityFromConfig(cap({ ...base, namespaceLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }));
    expect(id?.namespaceLabels).toStrictEqual({ 'kubernetes.io/metadata.name': 'payments' });
  });

  it('merges args.cni.labels, the capability first', () => {
    const id = identityFromConfig(
      cap({ ...base, labels: { app: 'api', tier: 'back' } }, argLabels([
        { key: 'app', value: 'overridden' },
        { key: 'version', value: 'v2' },
        { key: 'version', value: 'v3' },
      ])),
    );
    expect(id?.labels).toStrictEqual({ app: 'api', tier: 'back', version: 'v2' });
  });

  it('args.cni.labels alone need a namespace and name from CNI_ARGS', () => {
    const cfg = argLabels([{ key: 'app', value: 'web' }]);
    const e = caught(() => identityFromConfig(cfg));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(e.details).toMatch(/K8S_POD_NAMESPACE/);
    expect(identityFromConfig(cfg, { namespace: 'shop', name: 'web-1' })).toStrictEqual({
      namespace: 'shop',
      name: 'web-1',
      labels: { app: 'web' },
      namespaceLabels: { 'kubernetes.io/metadata.name': 'shop' },
      ports: [],
    });
  });

  it('the capability names the workload over the CNI_ARGS fallback', () => {
    expect(identityFromConfig(cap(base), { namespace: 'other', name: 'x' })?.namespace).toBe('payments');
  });

  it('allows duplicate identical port entries and one name on two protocols', () => {
    const id = identityFromConfig(cap({ ...base, ports: [
      { name: 'dns', containerPort: 53, protocol: 'UDP' },
      { name: 'dns', containerPort: 53, protocol: 'TCP' },
      { name: 'dns', containerPort: 53, protocol: 'UDP' },
    ] }));
    expect(id?.ports).toHaveLength(2);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['missing namespace', cap({ name: 'a' }), /namespace/],
    ['missing name', cap({ namespace: 'a' }), /name/],
    ['namespace not a DNS label', cap({ ...base, namespace: 'Payments' }), /\.namespace: .*"Payments"/],
    ['namespace with a dot', cap({ ...base, namespace: 'a.b' }), /namespace/],
    ['pod name with upper case', cap({ ...base, name: 'API' }), /\.name/],
    ['label key with a space', cap({ ...base, labels: { 'bad key': 'x' } }), /\.labels\["bad key"\]: invalid label key/],
    ['label key prefix not a DNS subdomain', cap({ ...base, labels: { 'Ex_ample.com/a': 'x' } }), /label key/],
    ['label key name too long', cap({ ...base, labels: { ['a'.repeat(64)]: 'x' } }), /label key/],
    ['label value too long', cap({ ...base, labels: { app: 'v'.repeat(64) } }), /\.labels\["app"\]: invalid label value/],
    ['label value bad character', cap({ ...base, labels: { app: 'a b' } }), /label value "a b"/],
    ['label value not a string', cap({ ...base, labels: { app: 1 } }), /labels/],
    ['namespace label key bad', cap({ ...base, namespaceLabels: { '-x': 'y' } }), /namespaceLabels\["-x"\]/],
    ['namespace label value bad', cap({ ...base, namespaceLabels: { x: '-y' } }), /namespaceLabels/],
    ['args label key bad', cap(base, argLabels([{ key: 'a/b/c', value: 'x' }])), /args\.cni\.labels\[0\]\.key/],
    ['args label value bad', cap(base, argLabels([{ key: 'ok', value: 'x' }, { key: 'ok2', value: '!' }])), /args\.cni\.labels\[1\]\.value/],
    ['args labels not a list', cap(base, { args: { cni: { labels: { a: 'b' } } } }), /args\.cni\.labels/],
    ['service account bad', cap({ ...base, serviceAccount: 'Bad_SA' }), /serviceAccount/],
    ['port 0', cap({ ...base, ports: [{ name: 'http', containerPort: 0 }] }), /ports\[0\]\.containerPort/],
    ['port 65536', cap({ ...base, ports: [{ name: 'http', containerPort: 65536 }] }), /containerPort/],
    ['port not an integer', cap({ ...base, ports: [{ name: 'http', containerPort: 80.5 }] }), /containerPort/],
    ['protocol lower case', cap({ ...base, ports: [{ name: 'http', containerPort: 80, protocol: 'tcp' }] }), /protocol/],
    ['protocol ICMP', cap({ ...base, ports: [{ name: 'http', containerPort: 80, protocol: 'ICMP' }] }), /protocol/],
    ['port name too long', cap({ ...base, ports: [{ name: 'a'.repeat(16), containerPort: 80 }] }), /ports\[0\]\.name/],
    ['port name all digits', cap({ ...base, ports: [{ name: '8080', containerPort: 8080 }] }), /ports\[0\]\.name/],
    ['port name upper case', cap({ ...base, ports: [{ name: 'HTTP', containerPort: 80 }] }), /ports\[0\]\.name/],
    ['port name double dash', cap({ ...base, ports: [{ name: 'a--b', containerPort: 80 }] }), /ports\[0\]\.name/],
    ['port name ambiguous', cap({ ...base, ports: [{ name: 'http', containerPort: 80 }, { name: 'http', containerPort: 81 }] }), /ports\[1\].*80 and 81/],
    ['capability not an object', { runtimeConfig: { [WORKLOAD_CAPABILITY]: 'payments/api' } }, /io\.nhi-cni\/workload/],
  ];
  it.each(bad)('rejects %s with code 7 naming the field', (_n, cfg, re) => {
    const e = caught(() => identityFromConfig(cfg));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(`${e.message} ${e.details}`).toMatch(re);
  });
});

describe('the service account as the workload identity', () => {
  const reader = parseManifestText(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db-readers, namespace: payments}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress: [{fromEndpoints: [{matchLabels: {"k8s:io.cilium.k8s.policy.serviceaccount": reader}}]}]
`, 'sa.yaml');
  const db = { ip: '10.0.0.1', identity: identityFromConfig(cap({ ...base, name: 'db-0', labels: { app: 'db' } }))! };
  const as = (sa: string | undefined, labels: Record<string, string> = {}, ip = '10.0.0.2') =>
    ({ ip, identity: identityFromConfig(cap({ ...base, name: 'client', labels, ...(sa ? { serviceAccount: sa } : {}) }))! });

  it('a CiliumNetworkPolicy selects pods by service account', () => {
    expect(evaluate(reader, as('reader'), db, 5432, 'TCP').allowed).toBe(true);
    expect(evaluate(reader, as('writer'), db, 5432, 'TCP').allowed).toBe(false);
    expect(evaluate(reader, as(undefined), db, 5432, 'TCP').allowed).toBe(false);
  });

  it('a pod cannot claim a service account by labelling itself', () => {
    const forged = as('writer', { 'io.cilium.k8s.policy.serviceaccount': 'reader', 'io.cilium.k8s.policy.cluster': 'x' });
    expect(forged.identity.labels).toStrictEqual({ 'io.cilium.k8s.policy.serviceaccount': 'writer' });
    expect(evaluate(reader, forged, db, 5432, 'TCP').allowed).toBe(false);
    const noSa = as(undefined, { 'io.cilium.k8s.policy.serviceaccount': 'reader' });
    expect(noSa.identity.labels).toStrictEqual({});
    expect(evaluate(reader, noSa, db, 5432, 'TCP').allowed).toBe(false);
  });

  it('names a workload by its SPIFFE-style id', () => {
    expect(spiffeId(as('reader').identity)).toBe('spiffe://cluster.local/ns/payments/sa/reader');
    expect(spiffeId(as('reader').identity, 'prod.example')).toBe('spiffe://prod.example/ns/payments/sa/reader');
    expect(spiffeId(as(undefined).identity)).toBeUndefined();
  });
});

describe('identityKey', () => {
  it('is namespace/name', () => {
    expect(identityKey({ namespace: 'payments', name: 'api-7d9f' })).toBe('payments/api-7d9f');
  });
});
