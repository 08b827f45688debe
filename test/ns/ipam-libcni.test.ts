// nhi-ipam as a runtime uses it: the reference bridge, driven through libcni
// (our cni-client), delegates IPAM to nhi-ipam. Everything runs in namespaces
// the test creates; the plugins run inside the test's "node" namespace.
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressesOf, createNetns, deleteAllNetns, ping, tryInNetns, type Netns } from '../helpers/netns.js';
import { filesIn } from '../helpers/ipam.js';
import { Runtime, Scratch } from '../helpers/plugin.js';

describe.each(['0.3.1', '0.4.0', '1.0.0'])('reference bridge + nhi-ipam through libcni, cniVersion %s', (cniVersion) => {
  const scratch = new Scratch();
  let node: Netns;
  let pod: Netns;
  let rt: Runtime;
  const net = `ipamtest${cniVersion.replaceAll('.', '')}`;
  const third = { '0.3.1': 31, '0.4.0': 40, '1.0.0': 100 }[cniVersion]!;
  const subnet = `10.77.${third}.0/24`;
  const gateway = `10.77.${third}.1`;
  const dataDir = scratch.path('ipam');

  beforeAll(() => {
    node = createNetns('nhin');
    pod = createNetns('nhip');
    rt = new Runtime(scratch, node);
    rt.writeConflist({
      cniVersion,
      name: net,
      plugins: [
        {
          type: 'bridge',
          bridge: `br${third}`,
          isGateway: true,
          ipam: { type: 'nhi-ipam', dataDir, ranges: [[{ subnet }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
      ],
    });
  });
  afterAll(() => {
    deleteAllNetns();
    scratch.cleanup();
  });

  it('ADD gives the pod an address from which it reaches the gateway', () => {
    const r = rt.run('add', net, pod);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.cniVersion).toBe(cniVersion);
    const addr = r.json.ips[0].address as string;
    expect(addr).toMatch(new RegExp(`^10\\.77\\.${third}\\.\\d+/24$`));
    expect(r.json.ips[0].gateway).toBe(gateway);
    if (cniVersion !== '1.0.0') expect(r.json.ips[0].version).toBe('4');
    expect(addressesOf(pod, 'eth0')).toEqual([addr]);
    expect(ping(pod, gateway)).toBe(true);
    // The reservation is on disk in the reference layout.
    const ip = addr.split('/')[0]!;
    const content = readFileSync(`${dataDir}/${net}/${ip}`, 'utf8');
    expect(content).toMatch(/^cni-client-[0-9a-f]+\r\neth0$/);
  });

  it.skipIf(cniVersion === '0.3.1')('CHECK passes while the attachment holds its address', () => {
    const r = rt.run('check', net, pod);
    expect(r.status, r.stderr).toBe(0);
  });

  it('DEL releases the address and removes the interface', () => {
    const r = rt.run('del', net, pod);
    expect(r.status, r.stderr).toBe(0);
    expect(filesIn(`${dataDir}/${net}`).filter((f) => /^\d/.test(f))).toEqual([]);
    expect(tryInNetns(pod, 'ip', ['link', 'show', 'eth0']).status).not.toBe(0);
    expect(existsSync(`${dataDir}/${net}/lock`)).toBe(true);
  });

  it.skipIf(cniVersion === '0.3.1')('CHECK fails once the address is gone', () => {
    expect(rt.run('add', net, pod).status).toBe(0);
    const held = filesIn(`${dataDir}/${net}`).filter((f) => /^\d/.test(f));
    expect(held).toHaveLength(1);
    // Remove the reservation behind the runtime's back.
    tryInNetns(node, 'rm', ['-f', `${dataDir}/${net}/${held[0]}`]);
    const r = rt.run('check', net, pod);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/no address is reserved/);
    expect(rt.run('del', net, pod).status).toBe(0);
  });
});
