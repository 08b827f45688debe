import { describe, expect, it } from 'vitest';
import { loadCniConfig, type CniConfig } from '../../src/chain/config.js';
import { Plan } from '../../src/chain/plan.js';
import { hostVethName, macFor, vethAdd } from '../../src/chain/veth.js';
import type { IpConfig, Route } from '../../src/cni/result.js';

const HOST = 'veth0123abcd';
const NETNS = '/var/run/netns/cni-1234';

const cfgOf = (extra: Record<string, unknown> = {}): CniConfig => loadCniConfig({ ipam: { type: 'host-local' }, ...extra });

function plan(cfg: CniConfig, ips: IpConfig[], routes: Route[] = [], ifname = 'eth0') {
  const p = new Plan();
  const r = vethAdd(cfg, { hostVeth: HOST, ifname, netns: NETNS, ips, routes }, p);
  return { p, r };
}

const isUnicastLocal = (mac: string) => {
  const first = Number.parseInt(mac.slice(0, 2), 16);
  return (first & 1) === 0 && (first & 2) === 2;
};

const V4: IpConfig = { address: '10.1.2.5/24', gateway: '10.1.2.1' };
const V6: IpConfig = { address: 'fd00:1::5/64', gateway: 'fd00:1::1' };
const V6_SYSCTLS = ['net/ipv6/conf/lo/disable_ipv6=0', 'net/ipv6/conf/eth0/disable_ipv6=0', 'net/ipv6/conf/eth0/keep_addr_on_down=1'];

describe('macFor', () => {
  it('is 0a:58 and the IPv4 address', () => {
    expect(macFor([{ address: '10.1.2.5/24' }])).toBe('0a:58:0a:01:02:05');
    expect(macFor([{ address: '192.168.255.254/16' }])).toBe('0a:58:c0:a8:ff:fe');
  });

  it('prefers IPv4 in dual stack, whatever the order', () => {
    expect(macFor([{ address: 'fd00::c0a8:102/64' }, { address: '10.1.2.5/24' }])).toBe('0a:58:0a:01:02:05');
    expect(macFor([{ address: '10.1.2.5/24' }, { address: 'fd00::c0a8:102/64' }])).toBe('0a:58:0a:01:02:05');
  });

  it('uses the low 32 bits of an IPv6-only address', () => {
    expect(macFor([{ address: 'fd00::c0a8:102/64' }])).toBe('0a:58:c0:a8:01:02');
    expect(macFor([{ address: 'fd00:1::5/64' }])).toBe('0a:58:00:00:00:05');
    expect(macFor([{ address: '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/64' }])).toBe('0a:58:ff:ff:ff:ff');
  });

  it('is stable for a reused address and a unicast locally administered MAC', () => {
    const a = macFor([{ address: '10.9.8.7/24' }]);
    expect(macFor([{ address: '10.9.8.7/24' }])).toBe(a);
    expect(a).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(isUnicastLocal(a)).toBe(true);
    expect(isUnicastLocal(macFor([{ address: 'fd00::1/64' }]))).toBe(true);
  });

  it('falls back to a random unicast local MAC without addresses', () => {
    const a = macFor([]);
    expect(a).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(isUnicastLocal(a)).toBe(true);
  });
});

describe('hostVethName', () => {
  it('is veth and 8 hex characters, random', () => {
    const names = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const n = hostVethName();
      expect(n).toMatch(/^veth[0-9a-f]{8}$/);
      names.add(n);
    }
    expect(names.size).toBeGreaterThan(45);
  });
});

describe('vethAdd', () => {
  it('IPv4 only: one create line (the node side left down), hairpin off, no sysctls; the node side comes up last', () => {
    const { p, r } = plan(cfgOf(), [V4]);
    expect(p.up).toStrictEqual([HOST]);
    expect(p.host.lines).toStrictEqual([
      ['link', 'add', HOST, 'master', 'nhi0', 'type', 'veth', 'peer', 'name', 'eth0', 'address', '0a:58:0a:01:02:05', 'netns', NETNS],
      ['link', 'set', HOST, 'type', 'bridge_slave', 'hairpin', 'off'],
    ]);
    expect(p.pod.lines).toStrictEqual([
      ['addr', 'add', '10.1.2.5/24', 'dev', 'eth0'],
      ['link', 'set', 'eth0', 'up'],
    ]);
    expect(p.podSysctls).toStrictEqual([]);
    expect(p.nft.empty).toBe(true);
    expect(p.after).toHaveLength(1); // the sysfs tweak: not run here
    expect(r).toStrictEqual({ hostVeth: HOST, containerMac: '0a:58:0a:01:02:05', createLine: 0, routes: [] });
  });

  it('createLine is the index of the create line in a batch that already has lines', () => {
    const p = new Plan();
    p.host.add('link', 'add', 'nhi0', 'type', 'bridge').add('link', 'set', 'nhi0', 'up');
    const r = vethAdd(cfgOf(), { hostVeth: HOST, ifname: 'eth0', netns: NETNS, ips: [V4], routes: [] }, p);
    expect(r.createLine).toBe(2);
    expect(p.host.lines[2]!.slice(0, 3)).toStrictEqual(['link', 'add', HOST]);
  });

  it('dual stack: IPv6 sysctls, nodad on the IPv6 address, MAC from IPv4', () => {
    const { p, r } = plan(cfgOf(), [V6, V4]);
    expect(p.podSysctls).toStrictEqual(V6_SYSCTLS);
    expect(p.pod.lines).toStrictEqual([
      ['addr', 'add', 'fd00:1::5/64', 'dev', 'eth0', 'nodad'],
      ['addr', 'add', '10.1.2.5/24', 'dev', 'eth0'],
      ['link', 'set', 'eth0', 'up'],
    ]);
    expect(r.containerMac).toBe('0a:58:0a:01:02:05');
    expect(p.host.lines[0]).toContain('0a:58:0a:01:02:05');
  });

  it('IPv6 only: sysctls for the given ifname', () => {
    const { p } = plan(cfgOf(), [V6], [], 'net1');
    expect(p.podSysctls).toStrictEqual(['net/ipv6/conf/lo/disable_ipv6=0', 'net/ipv6/conf/net1/disable_ipv6=0', 'net/ipv6/conf/net1/keep_addr_on_down=1']);
    expect(p.pod.lines).toStrictEqual([
      ['addr', 'add', 'fd00:1::5/64', 'dev', 'net1', 'nodad'],
      ['link', 'set', 'net1', 'up'],
    ]);
  });

  it('a runtime MAC is used and turns on arp_notify for IPv4', () => {
    const { p, r } = plan(cfgOf({ runtimeConfig: { mac: '0E:11:22:33:44:55' } }), [V4]);
    expect(r.containerMac).toBe('0e:11:22:33:44:55');
    expect(p.host.lines[0]).toStrictEqual(['link', 'add', HOST, 'master', 'nhi0', 'type', 'veth', 'peer', 'name', 'eth0', 'address', '0e:11:22:33:44:55', 'netns', NETNS]);
    expect(p.podSysctls).toStrictEqual(['net/ipv4/conf/eth0/arp_notify=1']);
  });

  it('a runtime MAC in dual stack: arp_notify first, then the IPv6 sysctls', () => {
    const { p } = plan(cfgOf({ runtimeConfig: { mac: '0e:11:22:33:44:55' } }), [V4, V6]);
    expect(p.podSysctls).toStrictEqual(['net/ipv4/conf/eth0/arp_notify=1', ...V6_SYSCTLS]);
  });

  it('a runtime MAC with IPv6 only: no arp_notify', () => {
    const { p } = plan(cfgOf({ runtimeConfig: { mac: '0e:11:22:33:44:55' } }), [V6]);
    expect(p.podSysctls).toStrictEqual(V6_SYSCTLS);
  });

  it('mtu is set on both ends', () => {
    const { p } = plan(cfgOf({ mtu: 1450, bridge: 'br-test' }), [V4]);
    expect(p.host.lines[0]).toStrictEqual([
      'link', 'add', HOST, 'mtu', '1450', 'master', 'br-test', 'type', 'veth', 'peer', 'name', 'eth0', 'mtu', '1450', 'address', '0a:58:0a:01:02:05', 'netns', NETNS,
    ]);
  });

  it('hairpin on', () => {
    const { p } = plan(cfgOf({ hairpinMode: true }), [V4]);
    expect(p.host.lines[1]).toStrictEqual(['link', 'set', HOST, 'type', 'bridge_slave', 'hairpin', 'on']);
  });

  it('isDefaultGateway adds a default route per family via its gateway', () => {
    const { p, r } = plan(cfgOf({ isDefaultGateway: true }), [V4, V6]);
    expect(p.pod.lines.slice(3)).toStrictEqual([
      ['route', 'add', '0.0.0.0/0', 'via', '10.1.2.1', 'dev', 'eth0'],
      ['route', 'add', '::/0', 'via', 'fd00:1::1', 'dev', 'eth0'],
    ]);
    expect(r.routes).toStrictEqual([
      { dst: '0.0.0.0/0', gw: '10.1.2.1' },
      { dst: '::/0', gw: 'fd00:1::1' },
    ]);
  });

  it('isDefaultGateway uses IPAM gateway, else the first address of the network', () => {
    const { p } = plan(cfgOf({ isDefaultGateway: true }), [{ address: '10.1.2.130/25', gateway: '10.1.2.254' }, { address: 'fd00:1::5/64' }]);
    expect(p.pod.lines.slice(3)).toStrictEqual([
      ['route', 'add', '0.0.0.0/0', 'via', '10.1.2.254', 'dev', 'eth0'],
      ['route', 'add', '::/0', 'via', 'fd00:1::1', 'dev', 'eth0'],
    ]);
  });

  it('isDefaultGateway adds only the families the pod has', () => {
    const { p } = plan(cfgOf({ isDefaultGateway: true }), [{ address: '10.1.2.5/24' }]);
    expect(p.pod.lines.slice(2)).toStrictEqual([['route', 'add', '0.0.0.0/0', 'via', '10.1.2.1', 'dev', 'eth0']]);
  });

  it('isDefaultGateway keeps a default route that IPAM gave with a gw', () => {
    const { p, r } = plan(cfgOf({ isDefaultGateway: true }), [V4, V6], [{ dst: '0.0.0.0/0', gw: '10.1.2.200' }]);
    expect(p.pod.lines.slice(3)).toStrictEqual([
      ['route', 'add', '0.0.0.0/0', 'via', '10.1.2.200', 'dev', 'eth0'],
      ['route', 'add', '::/0', 'via', 'fd00:1::1', 'dev', 'eth0'],
    ]);
    expect(r.routes).toHaveLength(2);
  });

  it('without isDefaultGateway no default route is added', () => {
    const { p, r } = plan(cfgOf({ isGateway: true }), [V4, V6]);
    expect(p.pod.lines.filter((l) => l[0] === 'route')).toStrictEqual([]);
    expect(r.routes).toStrictEqual([]);
  });

  it('routes without gw go via the gateway of their family', () => {
    const routes: Route[] = [{ dst: '192.168.0.0/16' }, { dst: 'fd99::/48' }, { dst: '172.16.0.0/12', gw: '10.1.2.9' }];
    const { p, r } = plan(cfgOf(), [{ address: '10.1.2.5/24' }, { address: 'fd00:1::5/64', gateway: 'fd00:1::fe' }], routes);
    expect(p.pod.lines.slice(3)).toStrictEqual([
      ['route', 'add', '192.168.0.0/16', 'via', '10.1.2.1', 'dev', 'eth0'],
      ['route', 'add', 'fd99::/48', 'via', 'fd00:1::fe', 'dev', 'eth0'],
      ['route', 'add', '172.16.0.0/12', 'via', '10.1.2.9', 'dev', 'eth0'],
    ]);
    // the returned routes are IPAM's, not rewritten
    expect(r.routes).toStrictEqual(routes);
  });

  it('a route of a family the pod has no address in gets no via', () => {
    const { p } = plan(cfgOf(), [V4], [{ dst: 'fd99::/48' }]);
    expect(p.pod.lines.slice(2)).toStrictEqual([['route', 'add', 'fd99::/48', 'dev', 'eth0']]);
  });

  it('does not mutate the routes passed in', () => {
    const routes: Route[] = [{ dst: '192.168.0.0/16' }];
    plan(cfgOf({ isDefaultGateway: true }), [V4], routes);
    expect(routes).toStrictEqual([{ dst: '192.168.0.0/16' }]);
  });
});
