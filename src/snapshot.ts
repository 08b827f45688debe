// Entry of the start-up snapshot build (sea-config "useSnapshot"). Everything
// this file imports is evaluated once, at build time, and its heap is stored in
// the binary; at run time only the deserialize-main function runs. So nothing
// at module top level may read the environment, argv, stdin, pid or clock.
import { startupSnapshot } from 'node:v8';
import { execa } from 'execa';
import { main } from './main.js';
import './plugin/ipam.js';
import './plugin/cni.js';
import './plugin/policy.js';
import { loadCniConfig } from './chain/config.js';
import { loadIpamConfig } from './chain/ipam/config.js';
import { parsePrevResult } from './cni/result.js';
import { loadPolicyConfig } from './policy/engine/index.js';
import { identityFromConfig } from './policy/identity.js';
import { identityFromApiPod } from './policy/k8s.js';
import { parseManifestObjects } from './policy/parse.js';

// Parse a typical configuration and result once at build time: zod builds
// each schema's parser on its first use (≈8 ms of an ADD on a slow hour, ≈2
// on a fast one); done here, that work is in the snapshot, not in every ADD.
// Pure functions on constants: nothing of the build machine is read.
const WARM = {
  cniVersion: '1.1.0', name: 'warm', type: 'nhi-cni', bridge: 'nhi0', isGateway: true, ipMasq: true,
  ipam: { type: 'host-local', ranges: [[{ subnet: '10.0.0.0/24', gateway: '10.0.0.1' }], [{ subnet: 'fd00::/64' }]], routes: [{ dst: '0.0.0.0/0' }] },
};
loadCniConfig(WARM);
loadIpamConfig(WARM, 'warm', '1.1.0');
parsePrevResult({
  cniVersion: '1.1.0', interfaces: [{ name: 'nhi0', mac: '0a:58:0a:00:00:01' }, { name: 'veth01234567', mac: '0a:58:0a:00:00:02' }, { name: 'eth0', mac: '0a:58:0a:00:00:05', sandbox: '/run/netns/x' }],
  ips: [{ address: '10.0.0.5/24', gateway: '10.0.0.1', interface: 2 }], routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }], dns: {},
}, '1.1.0');
// With a policy section: its config, a workload identity (from the runtime,
// and as the agent or the API gives it), and manifests of both kinds.
loadPolicyConfig({ dir: '/etc/nhi-cni/policies' }, '/var/lib/nhi-cni');
identityFromConfig({ runtimeConfig: { 'io.nhi-cni/workload': { namespace: 'ns', name: 'pod', labels: { app: 'a' } } } });
identityFromApiPod({
  apiVersion: 'v1', kind: 'Pod', metadata: { name: 'pod', namespace: 'ns', uid: '00000000-0000-0000-0000-000000000000', labels: { app: 'a' } },
  spec: { serviceAccountName: 'default', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
}, { 'kubernetes.io/metadata.name': 'ns' });
// The manifests as decoded objects: the YAML library is not in the snapshot
// (lazy bundle src/yaml/index.ts), the policy parsers' zod schemas are.
parseManifestObjects([
  {
    apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'warm', namespace: 'ns' },
    spec: {
      podSelector: { matchLabels: { app: 'a' } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ podSelector: { matchLabels: { app: 'b' } } }, { namespaceSelector: {} }], ports: [{ port: 8080, protocol: 'TCP' }] }],
      egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } }], ports: [{ port: 'http' }] }],
    },
  },
  {
    apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'warm', namespace: 'ns' },
    spec: {
      endpointSelector: { matchLabels: { app: 'a' } },
      ingress: [{ fromEndpoints: [{ matchLabels: { app: 'b' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }] }] }],
      egress: [{ toCIDR: ['10.0.0.0/8'], toPorts: [{ ports: [{ port: '53', protocol: 'UDP' }] }] }],
    },
  },
], 'warm.yaml');

// Warm execa's lazily loaded internals (and Node's child_process ones) at build time.
void execa('/bin/true').finally(() => startupSnapshot.setDeserializeMainFunction(() => main()));
