// The informer → view path with the library's own types: typed objects as
// client-node's lists return them (V1Pod…, made by its ObjectSerializer),
// turned into the wire form (toWire) and into the checked cluster view.
import type { V1Namespace, V1NetworkPolicy, V1Node, V1Pod } from '@kubernetes/client-node';
import { ObjectSerializer } from '@kubernetes/client-node/dist/serializer.js';
import { describe, expect, it } from 'vitest';
import { errorText, toWire } from '../../src/agent/informers.js';
import { buildView, type Kind } from '../../src/agent/view.js';

const typed = <T>(type: string, o: unknown): T => ObjectSerializer.deserialize(o, type) as T;

const ns = (name: string, labels: Record<string, string> = {}): V1Namespace => typed('V1Namespace', { metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } } });
const node = (name: string, podCIDRs: string[]): V1Node => typed('V1Node', { metadata: { name }, spec: { podCIDRs }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }, { type: 'InternalIP', address: 'not-an-ip' }] } });
function pod(namespace: string, name: string, nodeName: string, ips: string[], labels: Record<string, string> = {}, extra: { phase?: string; hostNetwork?: boolean; deletionTimestamp?: string; sa?: string } = {}): V1Pod {
  return typed('V1Pod', {
    metadata: { namespace, name, uid: `uid-${name}`, labels, ...(extra.deletionTimestamp ? { deletionTimestamp: extra.deletionTimestamp } : {}) },
    spec: { nodeName, hostNetwork: extra.hostNetwork, serviceAccountName: extra.sa ?? 'default', containers: [{ name: 'c', ports: [{ name: 'web', containerPort: 80 }, { containerPort: 9000 }] }] },
    status: { phase: extra.phase ?? 'Running', podIPs: ips.map((ip) => ({ ip })) },
  });
}
const np: V1NetworkPolicy = typed('V1NetworkPolicy', {
  metadata: { namespace: 'shop', name: 'web-from-lb', uid: 'np1', resourceVersion: '7', managedFields: [{ manager: 'kubectl' }] },
  spec: { podSelector: { matchLabels: { app: 'web' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'lb' } } }], ports: [{ port: 'web', protocol: 'TCP' }] }] },
});

function view(objects: Partial<Record<Kind, unknown[]>>, nodeName = 'n1') {
  const wireType: Partial<Record<Kind, string>> = { pods: 'V1Pod', namespaces: 'V1Namespace', nodes: 'V1Node', networkpolicies: 'V1NetworkPolicy' };
  const all = Object.fromEntries(
    (['pods', 'namespaces', 'nodes', 'networkpolicies', 'ciliumnetworkpolicies'] as Kind[]).map((k) => [k, (objects[k] ?? []).map((o) => (wireType[k] ? toWire(wireType[k]!, o) : o))]),
  ) as Record<Kind, unknown[]>;
  return buildView({ nodeName, trustDomain: 'example.org', objects: all, ciliumPoliciesServed: true });
}

describe('cluster view from the library types', () => {
  it('the typed models differ from the wire form: toWire undoes it', () => {
    expect((np.spec!.ingress![0] as unknown as Record<string, unknown>)._from).toBeDefined();
    const w = toWire('V1NetworkPolicy', np) as unknown as { spec: { ingress: Record<string, unknown>[] } };
    expect(w.spec.ingress[0]!.from).toEqual([{ podSelector: { matchLabels: { app: 'lb' } } }]);
    expect(w.spec.ingress[0]!._from).toBeUndefined();
  });

  it('pods of every node with their identity, nodes, namespaces and parsed policies', () => {
    const v = view({
      namespaces: [ns('shop', { tier: 'prod' })],
      nodes: [node('n1', ['10.244.1.0/24', 'fd00:0:0:1:0:0:0:0/64']), node('n2', ['10.244.2.0/24'])],
      pods: [
        pod('shop', 'web-1', 'n1', ['10.244.1.5', 'fd00:0:0:1:0:0:0:5'], { app: 'web' }, { sa: 'web-sa' }),
        pod('shop', 'lb-1', 'n2', ['10.244.2.5'], { app: 'lb' }),
        pod('shop', 'job-1', 'n2', ['10.244.2.6'], { app: 'job' }, { phase: 'Succeeded' }),
        pod('shop', 'host-1', 'n2', ['192.168.1.2'], {}, { hostNetwork: true }),
        pod('shop', 'old-1', 'n1', ['10.244.1.7'], {}, { deletionTimestamp: '2026-01-01T00:00:00Z' }),
      ],
      networkpolicies: [np],
    });
    expect(v.refused).toEqual([]);
    const byName = Object.fromEntries(v.pods.map((p) => [p.name, p]));
    expect(byName['web-1']).toEqual({
      uid: 'uid-web-1', namespace: 'shop', name: 'web-1', nodeName: 'n1', local: true, phase: 'Running', deleting: false, hostNetwork: false,
      ips: ['10.244.1.5', 'fd00:0:0:1::5'],
      identity: { namespace: 'shop', name: 'web-1', labels: { app: 'web', 'io.cilium.k8s.policy.serviceaccount': 'web-sa' }, namespaceLabels: { 'kubernetes.io/metadata.name': 'shop', tier: 'prod' }, serviceAccount: 'web-sa', ports: [{ name: 'web', containerPort: 80, protocol: 'TCP' }] },
      spiffeId: 'spiffe://example.org/ns/shop/sa/web-sa',
    });
    expect(byName['lb-1']!.local).toBe(false);
    expect(byName['job-1']!.ips).toEqual([]); // finished: its address may be someone else's now
    expect(byName['host-1']!.ips).toEqual([]); // the node's address is no workload identity
    expect(byName['old-1']!.deleting).toBe(true);
    expect(v.node).toEqual({ name: 'n1', podCIDRs: ['10.244.1.0/24', 'fd00:0:0:1::/64'], addresses: [{ type: 'InternalIP', address: '192.168.1.1' }], annotations: {} });
    expect(v.policies).toHaveLength(1);
    expect(v.policies[0]!.manifest).not.toHaveProperty('metadata.managedFields');
    expect(v.policies[0]!.policies[0]!.ingress[0]!.ports).toEqual([{ protocol: 'TCP', port: 'web' }]);
  });

  it('refuses what fails validation, and only that', () => {
    const v = view({
      namespaces: [ns('shop'), ns('Bad_NS')],
      nodes: [node('n1', ['10.244.1.0/33'])],
      pods: [
        pod('shop', 'ok', 'n1', ['10.244.1.5']),
        pod('shop', 'label', 'n1', ['10.244.1.6'], { app: 'a b' }),
        pod('shop', 'ip', 'n1', ['10.244.1.300']),
        pod('shop', 'sa', 'n1', ['10.244.1.8'], {}, { sa: 'x/y' }),
        pod('nowhere', 'orphan', 'n1', ['10.244.1.9']),
      ],
      ciliumnetworkpolicies: [{ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { namespace: 'shop', name: 'l7' }, spec: { endpointSelector: {}, egress: [{ toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }] }] } }],
    });
    expect(v.pods.map((p) => p.name)).toEqual(['ok']);
    expect(v.refused.map((r) => `${r.kind} ${r.namespace ?? ''}/${r.name}`)).toEqual([
      'ciliumnetworkpolicies shop/l7', 'namespaces /Bad_NS', 'nodes /n1', 'pods nowhere/orphan', 'pods shop/ip', 'pods shop/label', 'pods shop/sa',
    ]);
    // HTTP rules are the agent's proxy's; DNS rules stay refused (fail closed), the field named.
    expect(v.refused.find((r) => r.name === 'l7')!.reason).toMatch(/dns/);
    expect(v.node).toBeUndefined();
  });

  it('equal inputs in any order give one fingerprint; a label edit another', () => {
    const a = [pod('shop', 'a', 'n1', ['10.244.1.1'], { x: '1' }), pod('shop', 'b', 'n1', ['10.244.1.2'])];
    const v1 = view({ namespaces: [ns('shop')], pods: a });
    const v2 = view({ namespaces: [ns('shop')], pods: [...a].reverse() });
    const v3 = view({ namespaces: [ns('shop')], pods: [pod('shop', 'a', 'n1', ['10.244.1.1'], { x: '2' }), a[1]!] });
    expect(v2.fingerprint).toBe(v1.fingerprint);
    expect(v3.fingerprint).not.toBe(v1.fingerprint);
  });

  it('errors read as the API said them, without the headers the library prints', () => {
    const apiError = Object.assign(new Error('HTTP-Code: 403\nMessage: ...\nHeaders: {"authorization":"Bearer x"}'), { code: 403, body: JSON.stringify({ kind: 'Status', message: 'pods is forbidden: User "system:serviceaccount:kube-system:nhi-cni" cannot list resource "pods"' }) });
    expect(errorText(apiError).text).toBe('HTTP 403 pods is forbidden: User "system:serviceaccount:kube-system:nhi-cni" cannot list resource "pods" (the agent\'s ClusterRole lacks list/watch on it: see deploy/nhi-cni.yaml)');
    expect(errorText(Object.assign(new Error('fetch failed'), { cause: { code: 'ECONNREFUSED' } })).text).toBe('fetch failed: ECONNREFUSED');
  });
});

describe('view cache', () => {
  it('reuses what an unchanged object made, redoes a changed one and a pod whose namespace labels changed', async () => {
    const { ViewCache } = await import('../../src/agent/view.js');
    const cache = new ViewCache();
    const withRv = <T extends { metadata?: { resourceVersion?: string } }>(o: T, rv: string): T => ({ ...o, metadata: { ...o.metadata, resourceVersion: rv } });
    const input = (podRv: string, nsLabels: Record<string, string>) => ({
      nodeName: 'n1', trustDomain: 'td', ciliumPoliciesServed: true,
      objects: { namespaces: [toWire('V1Namespace', withRv(ns('shop', nsLabels), '1'))], pods: [toWire('V1Pod', withRv(pod('shop', 'a', 'n1', ['10.0.0.1']), podRv))], nodes: [], networkpolicies: [], ciliumnetworkpolicies: [] } as Record<Kind, unknown[]>,
    });
    const v1 = buildView(input('5', { x: '1' }), cache);
    const v2 = buildView(input('5', { x: '1' }), cache);
    expect(v2.pods[0]).toBe(v1.pods[0]);
    const v3 = buildView(input('6', { x: '1' }), cache);
    expect(v3.pods[0]).not.toBe(v1.pods[0]);
    const v4 = buildView({ ...input('6', { x: '2' }), objects: { ...input('6', { x: '2' }).objects, namespaces: [toWire('V1Namespace', withRv(ns('shop', { x: '2' }), '2'))] } }, cache);
    expect(v4.pods[0]!.identity.namespaceLabels.x).toBe('2');
    buildView({ ...input('6', {}), objects: { ...input('6', {}).objects, pods: [] } }, cache);
    expect([...cache.entries.keys()]).toEqual(['namespaces//shop']);
  });
});
