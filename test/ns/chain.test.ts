// nhi-cni wires pods: the same behaviour list runs against nhi-cni and against
// the reference bridge + host-local (where behaviour is meant to match), for
// cniVersion 0.3.1, 0.4.0 and 1.0.0 through libcni and 1.1.0 directly. All in
// namespaces the test creates; the plugins run in the test's node namespace.
import { existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainConflist, testEnv, type Kind } from '../helpers/chain.js';
import { directDriver, libcniDriver, type Driver } from '../helpers/driver.js';
import { addressesOf, createNetns, createOutside, deleteNetns, inNetns, linksOfType, mtuOf, ping, pingWithin, tryInNetns, type Netns } from '../helpers/netns.js';
import { filesIn } from '../helpers/ipam.js';
import { Scratch } from '../helpers/plugin.js';

const reservations = (dir: string) => filesIn(dir).filter((f) => /^[0-9a-f]+[.:]/.test(f) && !f.startsWith('last'));

const matrix: [Kind, string][] = [];
for (const kind of ['nhi-cni', 'reference'] as Kind[]) for (const v of ['0.3.1', '0.4.0', '1.0.0', '1.1.0']) matrix.push([kind, v]);
// Debian's reference plugins (1.1.1) stop at 1.0.0.
const cases = matrix.filter(([kind, v]) => !(kind === 'reference' && v === '1.1.0'));

describe.each(cases)('%s, cniVersion %s', (kind, cniVersion) => {
  const scratch = new Scratch();
  const n = cases.findIndex(([k, v]) => k === kind && v === cniVersion) + 10;
  const subnet = `10.${100 + n}.0.0/24`;
  const gw = `10.${100 + n}.0.1`;
  const bridge = `tbr${n}`;
  const name = `chain${n}`;
  let node: Netns;
  let outside: Netns;
  const pods: Netns[] = [];
  let drv: Driver;
  const addrOf: string[] = [];

  beforeAll(() => {
    node = createNetns('nhin');
    outside = createOutside(node);
    for (let i = 0; i < 3; i++) pods.push(createNetns('nhip'));
    const list = chainConflist({ kind, name, cniVersion, bridge, ranges: [[subnet]], dir: scratch.dir, mtu: 1400 });
    drv = cniVersion === '1.1.0' ? directDriver(node, list, testEnv(scratch.dir)) : libcniDriver(scratch, node, list, testEnv(scratch.dir));
  });
  afterAll(() => {
    for (const ns of [...pods, outside, node]) if (ns) deleteNetns(ns);
    scratch.cleanup();
  });

  it('ADD gives each pod an address, a result in the config version, and the bridge/veth/container interfaces', () => {
    for (const pod of pods.slice(0, 2)) {
      const r = drv.add(pod);
      expect(r.status, r.stderr || r.stdout).toBe(0);
      expect(r.json.cniVersion).toBe(cniVersion);
      expect(r.json.interfaces).toHaveLength(3);
      expect(r.json.interfaces[0].name).toBe(bridge);
      expect(r.json.interfaces[1].name).toMatch(/^veth[0-9a-f]{8}$/);
      expect(r.json.interfaces[2]).toMatchObject({ name: 'eth0', sandbox: pod.path });
      expect(r.json.ips[0]).toMatchObject({ interface: 2, gateway: gw });
      const addr = r.json.ips[0].address as string;
      expect(addressesOf(pod, 'eth0')).toEqual([addr]);
      addrOf.push(addr.split('/')[0]!);
    }
    expect(new Set(addrOf).size).toBe(2);
  });

  it('pods reach each other on the bridge, the node, and through masquerade an outside host', () => {
    expect(ping(pods[0]!, addrOf[1]!)).toBe(true);
    expect(ping(pods[1]!, addrOf[0]!)).toBe(true);
    expect(ping(pods[0]!, gw)).toBe(true);
    // The outside host has no route to the pod subnet: only a masqueraded
    // packet (source = the node's 198.51.100.1) gets an answer.
    expect(ping(pods[0]!, '198.51.100.2')).toBe(true);
    expect(tryInNetns(outside, 'ip', ['route', 'get', addrOf[0]!]).status).not.toBe(0);
  });

  it('honours the MTU on both ends of the pair', () => {
    expect(mtuOf(pods[0]!, 'eth0')).toBe(1400);
    for (const v of linksOfType(node, 'veth').filter((l) => l.startsWith('veth'))) expect(mtuOf(node, v)).toBe(1400);
  });

  it.skipIf(cniVersion === '0.3.1')('CHECK passes, and fails once the container interface is removed by hand', () => {
    expect(drv.check(pods[0]!).status).toBe(0);
    inNetns(pods[1]!, 'ip', ['link', 'del', 'eth0']);
    const r = drv.check(pods[1]!);
    expect(r.status).not.toBe(0);
  });

  it('DEL removes the veth, the reservation and the record, and DEL twice succeeds', () => {
    const before = linksOfType(node, 'veth').filter((l) => l.startsWith('veth'));
    for (const pod of pods.slice(0, 2)) {
      const r = drv.del(pod);
      expect(r.status, r.stderr || r.stdout).toBe(0);
      expect(drv.del(pod).status).toBe(0);
    }
    expect(before.length).toBeGreaterThan(0);
    expect(linksOfType(node, 'veth').filter((l) => l.startsWith('veth'))).toEqual([]);
    expect(reservations(`${scratch.dir}/ipam/${name}`)).toEqual([]);
    if (kind === 'nhi-cni') expect(readdirSync(`${scratch.dir}/state/${name}/attachments`)).toEqual([]);
    // The bridge stays for the next pod.
    expect(existsSync(`/var/run/netns/${node.name}`)).toBe(true);
    expect(tryInNetns(node, 'ip', ['link', 'show', bridge]).status).toBe(0);
  });

  it('DEL after the pod namespace was deleted succeeds and releases the address', () => {
    const pod = pods[2]!;
    expect(drv.add(pod).status).toBe(0);
    expect(reservations(`${scratch.dir}/ipam/${name}`)).toHaveLength(1);
    deleteNetns(pod);
    const r = drv.del(pod.path);
    expect(r.status, r.stderr || r.stdout).toBe(0);
    expect(reservations(`${scratch.dir}/ipam/${name}`)).toEqual([]);
    // The reference leaves the host veth to the kernel, which destroys a
    // deleted namespace (and so the pair) asynchronously: give it 3 s.
    const veths = () => linksOfType(node, 'veth').filter((l) => l.startsWith('veth'));
    for (let i = 0; i < 30 && veths().length; i++) spawnSync('sleep', ['0.1']);
    expect(veths()).toEqual([]);
  });
});

describe.each(['nhi-cni', 'reference'] as Kind[])('%s: IPv6 and dual stack', (kind) => {
  const scratch = new Scratch();
  const k = kind === 'nhi-cni' ? 1 : 2;
  let node: Netns;
  const pods: Netns[] = [];
  let drv: Driver;

  beforeAll(() => {
    node = createNetns('nhin');
    for (let i = 0; i < 2; i++) pods.push(createNetns('nhip'));
    const list = chainConflist({ kind, name: `ds${k}`, cniVersion: '1.0.0', bridge: `dsbr${k}`, ranges: [[`10.9${k}.0.0/24`], [`fd9${k}::/64`]], dir: scratch.dir });
    drv = libcniDriver(scratch, node, list, testEnv(scratch.dir));
  });
  afterAll(() => {
    for (const ns of [...pods, node]) if (ns) deleteNetns(ns);
    scratch.cleanup();
  });

  it('each pod gets one IPv4 and one IPv6 address and reaches the other over both', () => {
    const v6: string[] = [];
    const v4: string[] = [];
    for (const pod of pods) {
      const r = drv.add(pod);
      expect(r.status, r.stderr || r.stdout).toBe(0);
      const addrs = r.json.ips.map((i: { address: string }) => i.address) as string[];
      expect(addrs).toHaveLength(2);
      v4.push(addrs.find((a) => !a.includes(':'))!.split('/')[0]!);
      v6.push(addrs.find((a) => a.includes(':'))!.split('/')[0]!);
      expect(addressesOf(pod, 'eth0').sort()).toEqual([...addrs].sort());
    }
    expect(ping(pods[0]!, v4[1]!)).toBe(true);
    expect(ping(pods[0]!, v6[1]!)).toBe(true);
    // nhi-cni adds the bridge's IPv6 gateway with "nodad", so it answers at
    // once; the reference bridge leaves it in duplicate address detection for
    // a second or two after the first ADD, so the yardstick gets that long.
    if (kind === 'nhi-cni') expect(ping(pods[1]!, `fd9${k}::1`)).toBe(true);
    else expect(pingWithin(pods[1]!, `fd9${k}::1`, 5000)).toBe(true);
    // CHECK must find the IPv6 default route as well as the IPv4 one.
    for (const pod of pods) {
      const c = drv.check(pod);
      expect(c.status, c.stderr).toBe(0);
    }
    for (const pod of pods) expect(drv.del(pod).status).toBe(0);
    expect(reservations(`${scratch.dir}/ipam/ds${k}`)).toEqual([]);
  });
});
