// l7Targets(): the (pod, port) pairs the agent must redirect to its L7 proxy.
import { describe, expect, it } from 'vitest';
import { l7Targets } from '../../src/l7/targets.js';
import type { LocalPod } from '../../src/policy/compile/types.js';
import type { Identity } from '../../src/policy/model.js';
import { parseManifestText } from '../../src/policy/parse.js';

const policies = parseManifestText(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: data-readers, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: training-data}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: reader}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}, {port: api}], rules: {http: [{method: GET}]}}]
    - toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: also-8080, namespace: ml}
spec:
  endpointSelector: {}
  ingress:
    - toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{path: /health}]}}]
  egress:
    - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
`, 'l7.yaml', { l7: 'proxy' });

const id = (ns: string, name: string, app: string, ports: Identity['ports'] = []): Identity => ({ namespace: ns, name, labels: { app }, namespaceLabels: {}, ports });
const pods: LocalPod[] = [
  { id: 'net/data/eth0', ips: ['10.0.3.1', 'fd00::31'], identity: id('ml', 'training-data', 'training-data', [{ name: 'api', containerPort: 8443, protocol: 'TCP' }]) },
  { id: 'net/nb/eth0', ips: ['10.0.3.2'], identity: id('ml', 'notebook', 'notebook') },
  { id: 'net/other/eth0', ips: ['10.0.4.1'], identity: id('analytics', 'x', 'training-data') },
  { id: 'remote/data2', ips: ['10.1.3.1'], identity: id('ml', 'training-data-2', 'training-data'), remote: true },
  { id: 'net/anon/eth0', ips: ['10.0.9.1'] },
];

describe('l7Targets', () => {
  it('ingress: every address of each local pod an HTTP rule covers, named ports resolved on the pod; L4-only ports and other namespaces left alone', () => {
    const t = l7Targets(policies, pods);
    expect(t.ingress).toEqual([
      { pod: 'net/data/eth0', ip: '10.0.3.1', port: 8080, policies: ['ml/also-8080', 'ml/data-readers'] },
      { pod: 'net/data/eth0', ip: '10.0.3.1', port: 8443, policies: ['ml/data-readers'] },
      { pod: 'net/data/eth0', ip: 'fd00::31', port: 8080, policies: ['ml/also-8080', 'ml/data-readers'] },
      { pod: 'net/data/eth0', ip: 'fd00::31', port: 8443, policies: ['ml/data-readers'] },
      { pod: 'net/nb/eth0', ip: '10.0.3.2', port: 8080, policies: ['ml/also-8080'] },
    ]);
  });

  it('egress: the source pods and ports', () => {
    expect(l7Targets(policies, pods).egress.map((e) => `${e.ip}:${e.port}`)).toEqual(['10.0.3.1:80', 'fd00::31:80', '10.0.3.2:80']);
  });

  it('policies parsed without the proxy have no HTTP rules: nothing to redirect', () => {
    const l4 = parseManifestText('apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: ml}\nspec: {podSelector: {}, ingress: [{}]}\n', 'a.yaml');
    expect(l7Targets(l4, pods)).toEqual({ ingress: [], egress: [] });
  });
});
