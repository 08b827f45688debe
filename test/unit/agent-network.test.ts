// The node-network programmer's pure parts: validation of what Node objects
// bring, the VTEP scheme and MTU rule, the WireGuard key file, the desired
// state (who is refused and why), and the diff against the kernel's state.
// The real kernel is exercised in test/ns/multinode.test.ts.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { computeDesired, parseRoutes, type DesiredConfig, type LocalFacts } from '../../src/agent/network/desired.js';
import { diff, parseWgDump, type KernelState } from '../../src/agent/network/kernel.js';
import { NodeNetwork } from '../../src/agent/network/node-network.js';
import type { NodeInfo } from '../../src/agent/network/types.js';
import { nodeNameProblem, parseNodeAddress, parsePodCidr, validWireguardKey } from '../../src/agent/network/validate.js';
import { podMtuFor, vtepMac } from '../../src/agent/network/vtep.js';
import { generatePrivateKey, loadOrCreateKey, publicKeyOf } from '../../src/agent/network/wireguard-key.js';
import { parseIp } from '../../src/net/ip.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'nhi-net-unit-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const node = (i: number, extra: Partial<NodeInfo> = {}): NodeInfo => ({
  name: `node-${i}`,
  podCIDRs: [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`],
  addresses: [{ type: 'InternalIP', address: `192.168.1.${i}` }, { type: 'InternalIP', address: `fd77::${i}` }],
  ...extra,
});

const KEY2 = publicKeyOf(generatePrivateKey());
const KEY3 = publicKeyOf(generatePrivateKey());
const OWN = publicKeyOf(generatePrivateKey());
const CFG: DesiredConfig = { self: 'node-1', overlay: 'vxlan', encryption: 'none', vxlanPort: 4789, vni: 1, wireguardPort: 51871 };
const connected = parseRoutes(JSON.stringify([{ dst: '192.168.1.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link' }, { dst: 'default', gateway: '192.168.1.254', dev: 'eth0', protocol: 'static' }]), 4)
  .concat(parseRoutes(JSON.stringify([{ dst: 'fd77::/64', dev: 'eth0', protocol: 'kernel' }, { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel' }]), 6));
const FACTS: LocalFacts = { nodeIP: parseIp('192.168.1.1')!, underlayDevice: 'eth0', underlayMtu: 1500, routes: connected };

describe('validation of what a Node brings', () => {
  it.each([['node-1'], ['ip-10-0-0-1.ec2.internal'], ['a']])('accepts the name %s', (n) => expect(nodeNameProblem(n)).toBeUndefined());
  it.each([[''], ['Node1'], ['-a'], ['a;rm -rf /'], ['a b'], ['a\nb'], ['x'.repeat(254)], [5], [undefined]])('refuses the name %j', (n) => expect(nodeNameProblem(n)).toBeDefined());

  it('takes pod CIDRs that are networks, and refuses host bits, junk, and anything too wide', () => {
    expect(parsePodCidr('10.244.1.0/24')).toMatchObject({ prefix: 24 });
    expect(parsePodCidr('fd00:10:244:1::/64')).toMatchObject({ prefix: 64 });
    expect(parsePodCidr('10.244.1.1/24')).toContain('host bits');
    for (const bad of ['10.244.1.0/24 dev lo', '10.244.1.0', '0.0.0.0/0', '::/0', '10.0.0.0/7', 'default', 42]) expect(typeof parsePodCidr(bad)).toBe('string');
  });

  it('takes unicast node addresses only', () => {
    expect(parseNodeAddress('192.168.1.2')).toBeDefined();
    expect(parseNodeAddress('fd77::2')).toBeDefined();
    for (const bad of ['0.0.0.0', '127.0.0.1', '224.0.0.1', '255.255.255.255', '::', '::1', 'ff02::1', '192.168.1.2/24', '192.168.1.2 dev lo', 'fe80::1%eth0', 7]) expect(parseNodeAddress(bad)).toBeUndefined();
  });

  it('takes WireGuard keys as base64 of 32 bytes only', () => {
    expect(validWireguardKey(KEY2)).toBe(true);
    for (const bad of ['', KEY2.slice(1), `${KEY2}=`, `${KEY2.slice(0, 43)}-`, `${KEY2} `, '-'.repeat(44), 'AAAA', undefined, 5]) expect(validWireguardKey(bad)).toBe(false);
  });
});

describe('VTEP scheme and MTU rule', () => {
  it('derives a stable, locally administered unicast MAC from the node name, different per node', () => {
    const m = vtepMac('node-1');
    expect(m).toBe(vtepMac('node-1'));
    expect(m).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = Number.parseInt(m.slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
    expect(new Set(Array.from({ length: 2000 }, (_, i) => vtepMac(`node-${i}`))).size).toBe(2000);
  });

  it('takes the tunnel overhead off the underlay MTU', () => {
    expect(podMtuFor(1500, 'vxlan', 'none', 4)).toBe(1450);
    expect(podMtuFor(1500, 'vxlan', 'none', 6)).toBe(1430);
    expect(podMtuFor(1500, 'vxlan', 'wireguard', 4)).toBe(1420);
    expect(podMtuFor(1500, 'routes', 'wireguard', 6)).toBe(1420);
    expect(podMtuFor(9000, 'routes', 'none', 4)).toBe(9000);
    expect(podMtuFor(1500, 'none', 'none', 4)).toBe(1500);
  });
});

describe('the WireGuard key file', () => {
  it('derives the public key exactly as wg does', () => {
    for (let i = 0; i < 3; i++) {
      const k = generatePrivateKey();
      expect(publicKeyOf(k)).toBe(execFileSync('wg', ['pubkey'], { input: `${k}\n`, encoding: 'utf8' }).trim());
    }
  });

  it('is made once (0600), then read back unchanged', () => {
    const d = tmp();
    const a = loadOrCreateKey(d);
    expect(a.created).toBe(true);
    expect(statSync(join(d, 'wireguard.key')).mode & 0o777).toBe(0o600);
    const b = loadOrCreateKey(d);
    expect(b.created).toBe(false);
    expect(b.publicKey).toBe(a.publicKey);
    expect(readFileSync(join(d, 'wireguard.key'), 'utf8').trim()).toBe(b.privateKey);
  });

  it('refuses a link, a file others can read, and content that is not a key', () => {
    const link = tmp();
    writeFileSync(join(link, 'target'), `${generatePrivateKey()}\n`, { mode: 0o600 });
    symlinkSync(join(link, 'target'), join(link, 'wireguard.key'));
    expect(() => loadOrCreateKey(link)).toThrow(/symbolic link/);
    const open = tmp();
    writeFileSync(join(open, 'wireguard.key'), `${generatePrivateKey()}\n`);
    chmodSync(join(open, 'wireguard.key'), 0o644);
    expect(() => loadOrCreateKey(open)).toThrow(/readable or writable by others/);
    const junk = tmp();
    writeFileSync(join(junk, 'wireguard.key'), 'not a key\n', { mode: 0o600 });
    expect(() => loadOrCreateKey(junk)).toThrow(/does not hold a WireGuard key/);
  });

  it('never keeps the private key read from wg show dump', () => {
    const priv = generatePrivateKey();
    const st = parseWgDump(`${priv}\t${OWN}\t51871\toff\n${KEY2}\t(none)\t192.168.1.2:51871\t10.244.2.0/24,fd00:10:244:2::/64\t0\t0\t0\toff\n`);
    expect(JSON.stringify({ ...st, peers: [...st.peers] })).not.toContain(priv);
    expect(st.publicKey).toBe(OWN);
    expect(st.peers.get(KEY2)).toEqual({ endpoint: '192.168.1.2:51871', allowedIps: ['10.244.2.0/24', 'fd00:10:244:2::/64'], keepalive: 0 });
  });
});

describe('the desired state', () => {
  it('vxlan: per remote node one FDB entry, one neighbour per family, one onlink route per pod CIDR; the same for any order of the list', () => {
    const d = computeDesired(CFG, [node(1), node(2), node(3)], FACTS);
    expect(d.vxlan).toEqual({ vni: 1, port: 4789, local: '192.168.1.1', mac: vtepMac('node-1'), mtu: 1450 });
    expect(d.addresses.get('nhi-vxlan')).toEqual(['10.244.1.0/32', 'fd00:10:244:1::/128']);
    expect(d.fdb).toEqual([{ mac: vtepMac('node-2'), dst: '192.168.1.2' }, { mac: vtepMac('node-3'), dst: '192.168.1.3' }]);
    expect(d.neighbours).toContainEqual({ ip: 'fd00:10:244:3::', mac: vtepMac('node-3') });
    expect(d.routes).toContainEqual({ dst: '10.244.2.0/24', type: 'unicast', gateway: '10.244.2.0', dev: 'nhi-vxlan', onlink: true });
    expect(d.routes).toHaveLength(4);
    expect(d.refused).toEqual([]);
    expect(computeDesired(CFG, [node(3), node(1), node(2)], FACTS)).toEqual(d);
  });

  it('refuses, by name and with the reason, a node it cannot program, and programs the others', () => {
    const nodes = [
      node(1), node(2),
      node(3, { name: 'Bad;name' }),
      node(4, { podCIDRs: ['10.244.2.0/23'] }),
      node(5, { podCIDRs: ['10.244.5.1/24'] }),
      node(6, { addresses: [{ type: 'ExternalIP', address: '203.0.113.6' }] }),
      node(7, { podCIDRs: [] }),
      node(8, { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }] }),
      node(2, { podCIDRs: ['10.244.22.0/24'] }),
      node(9, { podCIDRs: ['10.244.9.0/24', '10.244.10.0/24'] }),
      node(10, { podCIDRs: ['192.168.1.0/25'] }),
      node(11, { podCIDRs: ['10.244.11.0/24', 'fe80::/64'] }),
      node(12, { podCIDRs: ['10.244.12.0/24'], addresses: [{ type: 'InternalIP', address: '10.244.12.1' }] }),
    ];
    const d = computeDesired(CFG, nodes, FACTS);
    expect(d.programmed.map((p) => p.node)).toEqual(['node-2']);
    const why = Object.fromEntries(d.refused.map((r) => [r.node, r.reason]));
    expect(Object.keys(why).sort()).toEqual(['(invalid name) "Bad;name"', 'node-2', 'node-4', 'node-5', 'node-6', 'node-7', 'node-8', 'node-9', 'node-10', 'node-11', 'node-12'].sort());
    expect(why['node-10']).toBe("pod CIDR 192.168.1.0/25 overlaps this node's route 192.168.1.0/24 on eth0");
    expect(why['node-11']).toContain('fe80::/64');
    expect(why['node-12']).toBe('pod CIDR 10.244.12.0/24 holds a node address');
    expect(why['node-4']).toContain('overlaps');
    expect(why['node-5']).toContain('host bits');
    expect(why['node-6']).toContain('no IPv4 InternalIP');
    expect(why['node-7']).toContain('no pod CIDR');
    expect(why['node-8']).toContain('own address');
    expect(why['node-2']).toContain('twice');
    expect(why['node-9']).toContain('two pod CIDRs of one family');
    expect(JSON.stringify(d.routes)).not.toContain('Bad');
  });

  it('routes: podCIDR via the node address of its family, only for nodes on this link', () => {
    const cfg = { ...CFG, overlay: 'routes' as const };
    const far = node(4, { addresses: [{ type: 'InternalIP', address: '10.9.0.4' }, { type: 'InternalIP', address: 'fd77::4' }] });
    const d = computeDesired(cfg, [node(1), node(2), far], FACTS);
    expect(d.vxlan).toBeUndefined();
    expect(d.routes).toEqual([
      { dst: '10.244.2.0/24', type: 'unicast', gateway: '192.168.1.2' },
      { dst: 'fd00:10:244:2::/64', type: 'unicast', gateway: 'fd77::2' },
    ]);
    expect(d.refused).toEqual([{ node: 'node-4', reason: expect.stringMatching(/not directly reachable \(10\.9\.0\.4 is reached through the router 192\.168\.1\.254.*use --overlay vxlan/) }]);
    expect(d.podMtu).toBe(1500);
  });

  it('wireguard: a peer per node with its pod CIDRs; a node without a valid key gets unreachable routes (never clear text out of the default route)', () => {
    const cfg = { ...CFG, encryption: 'wireguard' as const };
    const d = computeDesired(cfg, [node(1), node(2, { wireguardPublicKey: KEY2 }), node(3), node(4, { wireguardPublicKey: OWN })], { ...FACTS, publicKey: OWN });
    expect(d.vxlan).toBeUndefined();
    expect(d.wireguard).toEqual({ mtu: 1420, port: 51871 });
    expect(d.peers).toEqual([{ node: 'node-2', publicKey: KEY2, endpoint: '192.168.1.2:51871', allowedIps: ['10.244.2.0/24', 'fd00:10:244:2::/64'] }]);
    expect(d.routes).toContainEqual({ dst: '10.244.2.0/24', type: 'unicast', dev: 'nhi-wg' });
    expect(d.routes).toContainEqual({ dst: '10.244.3.0/24', type: 'unreachable' });
    expect(d.routes).toContainEqual({ dst: 'fd00:10:244:4::/64', type: 'unreachable' });
    expect(d.refused.map((r) => r.reason)).toEqual(['has not published a WireGuard public key yet', 'publishes a WireGuard public key that another node (or this one) uses']);
    const v6 = computeDesired(cfg, [node(1), node(3, { wireguardPublicKey: KEY3 })], { ...FACTS, nodeIP: parseIp('fd77::1')!, publicKey: OWN });
    expect(v6.peers[0]!.endpoint).toBe('[fd77::3]:51871');
  });
});

const EMPTY: KernelState = { links: new Map(), addresses: new Map(), routes: [], neighbours: [], fdb: [] };

describe('the difference to the kernel', () => {
  it('from nothing: the device first, then its addresses, neighbours and routes; FDB entries through bridge', () => {
    const d = computeDesired(CFG, [node(1), node(2)], FACTS);
    const c = diff(d, EMPTY, 'eth0', undefined, undefined);
    const lines = c.ip.text().split('\n');
    expect(lines[0]).toBe(`link add nhi-vxlan address ${vtepMac('node-1')} mtu 1450 type vxlan id 1 dstport 4789 local 192.168.1.1 nolearning dev eth0`);
    expect(lines[1]).toBe('link set nhi-vxlan up');
    expect(lines).toContain('addr add fd00:10:244:1::/128 dev nhi-vxlan nodad');
    expect(lines).toContain(`neigh replace 10.244.2.0 lladdr ${vtepMac('node-2')} dev nhi-vxlan nud permanent`);
    expect(lines).toContain('route replace 10.244.2.0/24 via 10.244.2.0 dev nhi-vxlan onlink proto 93');
    expect(c.bridge.text()).toBe(`fdb append ${vtepMac('node-2')} dev nhi-vxlan dst 192.168.1.2 self permanent\n`);
  });

  const kernelOf = (extra: Partial<KernelState> = {}): KernelState => ({
    links: new Map([['nhi-vxlan', { name: 'nhi-vxlan', kind: 'vxlan', mtu: 1450, mac: vtepMac('node-1'), up: true, vxlan: { id: 1, port: 4789, local: '192.168.1.1', learning: false } }]]),
    addresses: new Map([['nhi-vxlan', ['10.244.1.0/32', 'fd00:10:244:1::/128']]]),
    routes: parseRoutes(JSON.stringify([
      { dst: '10.244.2.0/24', gateway: '10.244.2.0', dev: 'nhi-vxlan', protocol: '93', flags: ['onlink'] },
      { dst: '10.244.3.0/24', gateway: '10.244.3.0', dev: 'nhi-vxlan', protocol: '93', flags: ['onlink'] },
      { dst: '10.244.7.0/24', gateway: '192.168.1.7', dev: 'eth0', protocol: 'static' },
    ]), 4).concat(parseRoutes(JSON.stringify([{ dst: 'fd00:10:244:2::/64', gateway: 'fd00:10:244:2::', dev: 'nhi-vxlan', protocol: '93' }]), 6)),
    neighbours: [{ ip: '10.244.2.0', mac: vtepMac('node-2') }, { ip: 'fd00:10:244:2::', mac: vtepMac('node-2') }, { ip: '10.244.3.0', mac: vtepMac('node-3') }],
    fdb: [{ mac: vtepMac('node-2'), dst: '192.168.1.2' }, { mac: vtepMac('node-3'), dst: '192.168.1.3' }],
    ...extra,
  });

  it('nothing to do when the kernel holds the desired state; a departed node\'s route, neighbour and FDB entry go, nobody else\'s routes', () => {
    const d = computeDesired(CFG, [node(1), node(2)], FACTS);
    const c = diff(d, kernelOf(), 'eth0', undefined, undefined);
    expect(c.ip.text()).toBe('neigh del 10.244.3.0 dev nhi-vxlan\nroute del 10.244.3.0/24 proto 93\n');
    expect(c.bridge.text()).toBe(`fdb del ${vtepMac('node-3')} dev nhi-vxlan dst 192.168.1.3 self\n`);
    const all = diff(computeDesired(CFG, [node(1), node(2), node(3, { podCIDRs: ['10.244.3.0/24'] })], FACTS), kernelOf(), 'eth0', undefined, undefined);
    expect(all.ip.empty && all.bridge.empty).toBe(true);
  });

  it('a node that changed address gets its FDB entry moved; a device of another VNI is made anew, and its routes are not deleted one by one', () => {
    const moved = diff(computeDesired(CFG, [node(1), node(2, { addresses: [{ type: 'InternalIP', address: '192.168.1.22' }] })], FACTS), kernelOf(), 'eth0', undefined, undefined);
    expect(moved.bridge.text()).toContain(`fdb del ${vtepMac('node-2')} dev nhi-vxlan dst 192.168.1.2 self\n`);
    expect(moved.bridge.text()).toContain(`fdb append ${vtepMac('node-2')} dev nhi-vxlan dst 192.168.1.22 self permanent\n`);
    const renum = diff(computeDesired({ ...CFG, vni: 7 }, [node(1), node(2)], FACTS), kernelOf(), 'eth0', undefined, undefined);
    const lines = renum.ip.text().split('\n');
    expect(renum.deleteFirst).toEqual(['nhi-vxlan']);
    expect(lines[0]).toContain('link add nhi-vxlan');
    expect(lines[0]).toContain('type vxlan id 7');
    expect(lines.filter((l) => l.startsWith('route del'))).toEqual([]);
    expect(lines).toContain('route replace 10.244.2.0/24 via 10.244.2.0 dev nhi-vxlan onlink proto 93');
  });

  it('switching to routes removes the tunnel device and replaces its routes', () => {
    const d = computeDesired({ ...CFG, overlay: 'routes' }, [node(1), node(2)], FACTS);
    const c = diff(d, kernelOf(), 'eth0', undefined, undefined);
    const lines = c.ip.text().split('\n');
    expect(c.deleteFirst).toEqual(['nhi-vxlan']);
    expect(lines.filter((l) => l.startsWith('route del'))).toEqual([]);
    expect(lines).toContain('route replace 10.244.2.0/24 via 192.168.1.2 proto 93');
    expect(lines).toContain('route replace fd00:10:244:2::/64 via fd77::2 proto 93');
  });

  it('wireguard: the private key by file, peers added, changed and removed in one wg set', () => {
    const d = computeDesired({ ...CFG, encryption: 'wireguard' }, [node(1), node(2, { wireguardPublicKey: KEY2 })], { ...FACTS, publicKey: OWN });
    const fresh = diff(d, EMPTY, 'eth0', '/var/lib/nhi-cni/wireguard.key', OWN);
    expect(fresh.createWireguard).toBe(true);
    expect(fresh.ip.text()).toContain('link set nhi-wg mtu 1420 up');
    expect(fresh.wg).toEqual(['private-key', '/var/lib/nhi-cni/wireguard.key', 'listen-port', '51871', 'peer', KEY2, 'endpoint', '192.168.1.2:51871', 'persistent-keepalive', '25', 'allowed-ips', '10.244.2.0/24,fd00:10:244:2::/64']);
    const k: KernelState = {
      ...EMPTY,
      links: new Map([['nhi-wg', { name: 'nhi-wg', kind: 'tun', mtu: 1420, up: true }]]),
      wireguard: parseWgDump(`x\t${OWN}\t51871\toff\n${KEY3}\t(none)\t192.168.1.3:51871\t10.244.3.0/24\t0\t0\t0\toff\n${KEY2}\t(none)\t192.168.1.2:51871\t10.244.2.0/24,fd00:10:244:2::/64\t0\t0\t0\t25\n`),
    };
    expect(diff(d, k, 'eth0', '/k', OWN).wg).toEqual(['peer', KEY3, 'remove']);
    // An nhi-wg that wg cannot talk to (its daemon died, or someone else's tun) is deleted first, then made anew.
    const stale = diff(d, { ...k, wireguard: undefined }, 'eth0', '/k', OWN);
    expect(stale.deleteFirst).toEqual(['nhi-wg']);
    expect(stale.createWireguard).toBe(true);
    expect(stale.wg).toContain('private-key');
  });
});

describe('NodeNetwork', () => {
  it.each([
    [{ overlay: 'none', encryption: 'wireguard' }, /needs an overlay/],
    [{ self: 'Bad Name' }, /not a DNS subdomain/],
    [{ nodeIP: '127.0.0.1' }, /not a unicast address/],
    [{ stateDir: 'relative' }, /absolute path/],
    [{ vni: 0 }, /vni/],
    [{ vxlanPort: 70000 }, /vxlanPort/],
    [{ overlay: 'geneve' }, /overlay/],
    [{ mtu: 500 }, /mtu/],
  ])('refuses the options %j', (o, msg) => {
    const base = { self: 'node-1', overlay: 'vxlan', vxlanPort: 4789, vni: 1, encryption: 'none', stateDir: '/var/lib/nhi-cni' };
    expect(() => new NodeNetwork({ ...base, ...o } as never)).toThrow(msg);
  });

  it('knows the pod MTU up front with mtu and nodeIP, else only after a reconcile', () => {
    const base = { self: 'node-1', overlay: 'vxlan' as const, vxlanPort: 4789, vni: 1, encryption: 'none' as const, stateDir: '/var/lib/nhi-cni' };
    expect(new NodeNetwork({ ...base, mtu: 9000, nodeIP: 'fd77::1' }).podMtu()).toBe(8930);
    expect(() => new NodeNetwork(base).podMtu()).toThrow(/after the first reconcile/);
  });

  it('reports each failed line of a batch (the rest applied) and goes on to the next tool', async () => {
    const seen: string[] = [];
    const nn = new NodeNetwork({
      self: 'node-1', overlay: 'vxlan', vxlanPort: 4789, vni: 1, encryption: 'none', stateDir: '/var/lib/nhi-cni',
      exec: async (f, a) => {
        const cmd = `${f} ${a.join(' ')}`;
        seen.push(cmd);
        if (cmd === 'ip -j addr show') return { stdout: JSON.stringify([{ ifname: 'eth0', addr_info: [{ local: '192.168.1.1', prefixlen: 24, scope: 'global' }] }]), stderr: '', exitCode: 0 };
        if (cmd === 'ip -j -d link show') return { stdout: JSON.stringify([{ ifname: 'eth0', mtu: 1500, flags: ['UP'] }]), stderr: '', exitCode: 0 };
        if (cmd === 'ip -force -batch -') return { stdout: '', stderr: 'Error: Nexthop has invalid gateway.\nCommand failed -:4\n', exitCode: 1 };
        return { stdout: '[]', stderr: '', exitCode: 0 };
      },
    });
    const r = await nn.reconcile([node(1), node(2)]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^ip \S.*: Error: Nexthop has invalid gateway\.$/);
    expect(seen).toContain('bridge -force -batch -');
  });

  it('hostile node fields never reach a command, and a hostile list still programs the good nodes', async () => {
    const commands: string[] = [];
    const kernel: Record<string, string> = {
      'ip -j -d link show': JSON.stringify([{ ifname: 'eth0', mtu: 1500, flags: ['UP'] }]),
      'ip -j addr show': JSON.stringify([{ ifname: 'eth0', addr_info: [{ local: '192.168.1.1', prefixlen: 24, scope: 'global' }] }]),
      'ip -j -4 route show table main': JSON.stringify([{ dst: '192.168.1.0/24', dev: 'eth0', protocol: 'kernel' }]),
      'ip -j -6 route show table main': '[]',
    };
    const nn = new NodeNetwork({
      self: 'node-1', overlay: 'vxlan', vxlanPort: 4789, vni: 1, encryption: 'none', stateDir: '/var/lib/nhi-cni',
      exec: async (f, a, i) => {
        commands.push(`${f} ${a.join(' ')}\n${i ?? ''}`);
        return { stdout: kernel[`${f} ${a.join(' ')}`] ?? '', stderr: '', exitCode: 0 };
      },
    });
    const hostile = [
      node(1),
      node(2),
      { name: 'evil\nlink del eth0', podCIDRs: ['10.244.3.0/24'], addresses: [{ type: 'InternalIP', address: '192.168.1.3' }] },
      { name: 'evil-cidr', podCIDRs: ['10.244.4.0/24 dev eth0'], addresses: [{ type: 'InternalIP', address: '192.168.1.4' }] },
      { name: 'evil-addr', podCIDRs: ['10.244.5.0/24'], addresses: [{ type: 'InternalIP', address: '192.168.1.5 dev lo' }] },
      { name: 'evil-shape', podCIDRs: 'nope', addresses: null },
      null,
    ] as unknown as NodeInfo[];
    const r = await nn.reconcile(hostile);
    expect(r.programmed.map((p) => p.node)).toEqual(['node-2']);
    expect(r.refused).toHaveLength(4);
    const all = commands.join('\n');
    expect(all).toContain('route replace 10.244.2.0/24 via 10.244.2.0 dev nhi-vxlan onlink proto 93');
    for (const bad of ['evil', 'link del eth0', '10.244.4.0', '10.244.5.0', '192.168.1.5']) expect(all).not.toContain(bad);
    expect(r.podMtu).toBe(1450);
  });
});
