// deploy/nhi-cni.yaml: the one manifest for a fresh cluster. Its agent flags
// must be ones the agent accepts, its probes must reach the agent's --listen,
// and nothing may be left for a person to fill in per node.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { agentOptions } from '../../src/agent/options.js';
import { ROOT } from '../helpers/paths.js';

const text = readFileSync(join(ROOT, 'deploy/nhi-cni.yaml'), 'utf8');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const docs = parseAllDocuments(text).map((d) => d.toJS() as any);
const byKind = (k: string) => docs.filter((d) => d.kind === k);

describe('deploy/nhi-cni.yaml', () => {
  it('holds the service account, its read-only role (plus node patch) and binding, and the DaemonSet', () => {
    expect(docs.map((d) => d.kind)).toEqual(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet']);
    const rules = byKind('ClusterRole')[0].rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    const verbs = (group: string, res: string) => rules.filter((r) => r.apiGroups.includes(group) && r.resources.includes(res)).flatMap((r) => r.verbs).sort();
    for (const [g, r] of [['', 'pods'], ['', 'namespaces'], ['networking.k8s.io', 'networkpolicies'], ['cilium.io', 'ciliumnetworkpolicies']] as const) expect(verbs(g, r)).toEqual(['get', 'list', 'watch']);
    expect(verbs('', 'nodes')).toEqual(['get', 'list', 'patch', 'watch']);
    const b = byKind('ClusterRoleBinding')[0];
    expect(b.roleRef.name).toBe('nhi-cni');
    expect(b.subjects).toEqual([{ kind: 'ServiceAccount', name: 'nhi-cni', namespace: 'kube-system' }]);
  });

  it('runs the agent with flags it accepts, the node name from the downward API, probes on its listen address', () => {
    const pod = byKind('DaemonSet')[0].spec.template.spec;
    expect(pod.serviceAccountName).toBe('nhi-cni');
    expect(pod.hostNetwork).toBe(true);
    expect(pod.initContainers[0].command).toEqual(['/nhi-cni', 'install', '--bin-dir', '/host/opt/cni/bin', '--no-conflist']);
    const agent = pod.containers.find((c: { name: string }) => c.name === 'agent');
    expect(agent.command).toEqual(['/nhi-cni', 'agent']);
    expect(agent.securityContext.privileged).toBe(true);
    expect(agent.env).toContainEqual({ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
    const flags = Object.fromEntries((agent.args as string[]).map((a) => {
      const [k, v] = a.replace(/^--/, '').split('=');
      return [k!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()), v];
    }));
    const o = agentOptions(flags, { NODE_NAME: 'node-1' });
    expect(agent.readinessProbe.httpGet).toEqual({ host: o.listen.host, port: o.listen.port, path: '/readyz' });
    expect(agent.livenessProbe.httpGet).toEqual({ host: o.listen.host, port: o.listen.port, path: '/healthz' });
    const mounts = Object.fromEntries(agent.volumeMounts.map((m: { name: string; mountPath: string }) => [m.mountPath, m.name]));
    const hostPath = (name: string) => pod.volumes.find((v: { name: string }) => v.name === name).hostPath.path;
    // The conflist names <state-dir>/agent.sock: the same path on the host.
    expect(hostPath(mounts[o.stateDir])).toBe(o.stateDir);
    expect(hostPath(mounts[o.confDir])).toBe('/etc/cni/net.d');
  });

  it('leaves nothing to fill in per node', () => {
    const code = text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
    expect(code).not.toContain('POD_CIDR');
    expect(code).not.toMatch(/value: ""/);
  });
});
