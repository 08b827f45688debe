// `nhi-cni agent` options: flags, their environment variables, defaults, checks.
import { describe, expect, it } from 'vitest';
import { agentOptions, OptionError } from '../../src/agent/options.js';

const err = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof OptionError) return e.message;
    throw e;
  }
  throw new Error('no error');
};

describe('agent options', () => {
  it('defaults, with the node name from NODE_NAME', () => {
    expect(agentOptions({}, { NODE_NAME: 'node-a' })).toEqual({
      nodeName: 'node-a',
      stateDir: '/var/lib/nhi-cni',
      confDir: '/etc/cni/net.d',
      ipamDataDir: '/var/lib/cni/networks',
      clusterCidrs: [],
      listen: { host: '127.0.0.1', port: 9190 },
      trustDomain: 'cluster.local',
      network: { overlay: 'vxlan', vxlanPort: 4789, vni: 1, encryption: 'none' },
      staleAfterMs: 120_000,
      debounceMs: 100,
      reclaimIntervalMs: 300_000,
      socketPath: '/var/lib/nhi-cni/agent.sock',
    });
  });

  it('a flag wins over its variable; an empty variable is unset; KUBECONFIG names the file', () => {
    const o = agentOptions(
      { nodeName: 'flag-node', clusterCidr: '10.244.7.9/16, fd00:10:244::1/56', mtu: '1400', overlay: 'routes' },
      { NODE_NAME: 'env-node', KUBECONFIG: '/etc/kube/config', NHI_CNI_STATE_DIR: '/run/x/', NHI_CNI_LISTEN: '[::1]:9300', NHI_CNI_TRUST_DOMAIN: '', NHI_CNI_ENCRYPTION: 'wireguard', NHI_CNI_NODE_IP: '192.168.0.4' },
    );
    expect(o.nodeName).toBe('flag-node');
    expect(o.kubeconfig).toBe('/etc/kube/config');
    expect(o.clusterCidrs).toEqual(['10.244.0.0/16', 'fd00:10:244::/56']);
    expect(o.stateDir).toBe('/run/x');
    expect(o.socketPath).toBe('/run/x/agent.sock');
    expect(o.listen).toEqual({ host: '::1', port: 9300 });
    expect(o.trustDomain).toBe('cluster.local');
    expect(o.network).toEqual({ overlay: 'routes', vxlanPort: 4789, vni: 1, mtu: 1400, encryption: 'wireguard', nodeIp: '192.168.0.4' });
  });

  it('refuses what is wrong, naming the flag', () => {
    const env = { NODE_NAME: 'n' };
    expect(err(() => agentOptions({ nodeName: 'Node_1' }, {}))).toMatch(/^--node-name: invalid name "Node_1"/);
    expect(err(() => agentOptions({ kubeconfig: 'rel/kc' }, env))).toMatch(/^--kubeconfig "rel\/kc" /);
    expect(err(() => agentOptions({ stateDir: 'var/lib' }, env))).toMatch(/^--state-dir "var\/lib" /);
    expect(err(() => agentOptions({ clusterCidr: '10.0.0.0' }, env))).toMatch(/^--cluster-cidr "10.0.0.0": not a CIDR/);
    expect(err(() => agentOptions({ clusterCidr: 'fd00::/64,fd01::/64' }, env))).toBe('--cluster-cidr: at most one IPv6 range');
    expect(err(() => agentOptions({ listen: '9190' }, env))).toMatch(/^--listen "9190": must be ADDR:PORT/);
    expect(err(() => agentOptions({ listen: 'example.com:80' }, env))).toMatch(/is not an IP address/);
    expect(err(() => agentOptions({ listen: '127.0.0.1:70000' }, env))).toMatch(/^--listen port "70000"/);
    expect(err(() => agentOptions({ trustDomain: 'Example.org' }, env))).toMatch(/^--trust-domain "Example.org"/);
    expect(err(() => agentOptions({ overlay: 'geneve' }, env))).toBe('--overlay "geneve": must be one of vxlan, routes, none');
    expect(err(() => agentOptions({ vni: '16777216' }, env))).toMatch(/^--vni "16777216"/);
    expect(err(() => agentOptions({ mtu: '1e3' }, env))).toMatch(/^--mtu "1e3"/);
    expect(err(() => agentOptions({ nodeIp: '10.0.0.300' }, env))).toBe('--node-ip "10.0.0.300": not an IP address');
    expect(err(() => agentOptions({ staleAfter: '1' }, env))).toMatch(/^--stale-after "1": must be a whole number from 2/);
  });
});
