// Multi-node pod networking (issue 10) on three node namespaces joined by an
// underlay bridge (its own namespace), with pods wired by nhi-cni through
// libcni in each node. The node programming (NodeNetwork) runs in this test
// process, its commands entering the node's namespaces with nsenter: the same
// code the agent runs, with the node list the agent would build from the API.
// Each node gets a holder process with its own mount namespace (a private
// /run), because wireguard-go and wg meet at /run/wireguard/<dev>.sock and
// three nodes on one machine would otherwise share that socket.
// One topology, the modes in turn (vxlan, routes, WireGuard), so switching
// modes is exercised too.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeNetwork } from '../../src/agent/network/node-network.js';
import type { NodeInfo, NodeNetworkOptions, Report } from '../../src/agent/network/types.js';
import { vtepMac } from '../../src/agent/network/vtep.js';
import { run } from '../../src/sys/exec.js';
import { chainConflist, testEnv } from '../helpers/chain.js';
import { libcniDriver } from '../helpers/driver.js';
import { createNetns, deleteNetns, inNetns, tryInNetns, type Netns } from '../helpers/netns.js';
import { ROOT } from '../helpers/paths.js';
import { Scratch } from '../helpers/plugin.js';
import { askAll, askAllAsync, startWhoami, type Target } from '../helpers/whoami.js';

const PORT = 7070;
const CLUSTER = ['10.244.0.0/16', 'fd00:10:244::/56'];
const EXT4 = '192.168.77.100';
const SNIFF = join(ROOT, 'test/helpers/sniff.py');

interface Node {
  i: number;
  ns: Netns;
  holder: ChildProcess;
  scratch: Scratch;
  info: NodeInfo;
  pod: Netns;
  v4: string;
  v6: string;
  nn?: NodeNetwork;
  processes: number;
}

const ip = (ns: Netns, ...args: string[]) => spawnSync('ip', ['-n', ns.name, ...args], { encoding: 'utf8' });

describe('multi-node pod networking: three nodes on one underlay', () => {
  let ul: Netns;
  let ext: Netns;
  const nodes: Node[] = [];
  const servers: ChildProcess[] = [];

  const programmer = (n: Node, o: Partial<NodeNetworkOptions>) =>
    new NodeNetwork({
      self: n.info.name, overlay: 'vxlan', vxlanPort: 4789, vni: 1, encryption: 'none', stateDir: n.scratch.path('agent'),
      // Every command of the programming runs inside the node: its network and its mount namespace.
      exec: (f, a, i) => {
        n.processes++;
        return run('nsenter', ['-t', String(n.holder.pid), '-m', '-n', '--', f, ...a], i);
      },
      ...o,
    });

  const infos = () => nodes.map((n) => n.info);

  async function reconcileAll(list = infos(), on = nodes): Promise<Report[]> {
    const reports = await Promise.all(on.map((n) => n.nn!.reconcile(list)));
    for (const r of reports) expect(r.errors).toEqual([]);
    return reports;
  }

  /** Every pod asks every other pod (TCP and UDP, IPv4 and IPv6), all pods at once; each answer must be the asker's pod address. */
  async function matrix(): Promise<string[]> {
    const wrong: string[] = [];
    await Promise.all(nodes.map(async (src) => {
      const targets: Target[] = [];
      const expected: string[] = [];
      for (const dst of nodes) {
        if (dst === src) continue;
        for (const [host, mine] of [[dst.v4, src.v4], [dst.v6, src.v6]] as const) {
          for (const proto of ['tcp', 'udp'] as const) {
            targets.push({ proto, host, port: PORT });
            expected.push(mine);
          }
        }
      }
      (await askAllAsync(src.pod, targets)).forEach((got, k) => {
        if (got !== expected[k]) wrong.push(`pod on node ${src.i} -> ${targets[k]!.proto} ${targets[k]!.host}: server saw ${got ?? 'nothing'}, expected ${expected[k]}`);
      });
    }));
    return wrong.sort();
  }

  /** Sends `marker` pod -> pod across nodes while sniffing every port of the underlay; how many frames carried it. */
  async function markerOnUnderlay(marker: string): Promise<{ frames: number; hits: number }> {
    const p = spawn('ip', ['netns', 'exec', ul.name, 'python3', SNIFF, 'any', marker, '1.5']);
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    await new Promise<void>((resolve) => p.stdout.once('data', () => resolve()));
    const got = askAll(nodes[0]!.pod, [{ proto: 'udp', host: nodes[1]!.v4, port: PORT }, { proto: 'tcp', host: nodes[2]!.v6, port: PORT }], marker);
    expect(got).toEqual([nodes[0]!.v4, nodes[0]!.v6]);
    await new Promise((resolve) => p.once('exit', resolve));
    return JSON.parse(out.split('\n').filter((l) => l.startsWith('{')).pop()!) as { frames: number; hits: number };
  }

  beforeAll(async () => {
    ul = createNetns('nhiu');
    ip(ul, 'link', 'add', 'ulbr', 'type', 'bridge');
    ip(ul, 'link', 'set', 'ulbr', 'up');
    const attach = (ns: Netns, port: string, v4: string, v6: string) => {
      ip(ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', port, 'netns', ul.name);
      ip(ul, 'link', 'set', port, 'master', 'ulbr', 'up');
      ip(ns, 'addr', 'add', `${v4}/24`, 'dev', 'eth0');
      ip(ns, 'addr', 'add', `${v6}/64`, 'dev', 'eth0', 'nodad');
      ip(ns, 'link', 'set', 'eth0', 'up');
    };
    ext = createNetns('nhix');
    attach(ext, 'uext', EXT4, 'fd77::100');
    for (let i = 1; i <= 3; i++) {
      const ns = createNetns('nhin');
      attach(ns, `u${i}`, `192.168.77.1${i}`, `fd77::1${i}`);
      const holder = spawn('ip', ['netns', 'exec', ns.name, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs nhi-run /run && exec sleep 900']);
      for (let t = 0; t < 100 && readFileSync(`/proc/${holder.pid}/comm`, 'utf8').trim() !== 'sleep'; t++) spawnSync('sleep', ['0.02']);
      const info: NodeInfo = {
        name: `node-${i}.cluster.test`,
        podCIDRs: [`10.244.${i}.0/24`, `fd00:10:244:${i}::/64`],
        addresses: [{ type: 'Hostname', address: `node-${i}` }, { type: 'InternalIP', address: `192.168.77.1${i}` }, { type: 'InternalIP', address: `fd77::1${i}` }],
      };
      nodes.push({ i, ns, holder, scratch: new Scratch(), info, pod: createNetns('nhip'), v4: '', v6: '', processes: 0 });
    }
    for (const n of nodes) n.nn = programmer(n, {});
    const reports = await reconcileAll();
    expect(reports.map((r) => r.podMtu)).toEqual([1450, 1450, 1450]);
    // The pods, wired by nhi-cni through libcni with the node's pod CIDRs and the MTU the programming gives.
    for (const n of nodes) {
      const list = chainConflist({
        kind: 'nhi-cni', name: 'k8s', cniVersion: '1.0.0', bridge: 'cni0', dir: n.scratch.dir,
        ranges: [[n.info.podCIDRs[0]!], [n.info.podCIDRs[1]!]], mtu: n.nn!.podMtu(),
      });
      (list.plugins[0] as Record<string, unknown>).clusterCIDR = CLUSTER;
      const r = libcniDriver(n.scratch, n.ns, list, testEnv(n.scratch.dir)).add(n.pod);
      expect(r.status, r.stderr || r.stdout).toBe(0);
      const addrs = (r.json.ips as { address: string }[]).map((a) => a.address.split('/')[0]!);
      n.v4 = addrs.find((a) => !a.includes(':'))!;
      n.v6 = addrs.find((a) => a.includes(':'))!;
    }
    servers.push(...(await Promise.all([ext, ...nodes.map((n) => n.pod)].map((ns) => startWhoami(ns, PORT)))));
  });

  /** The wireguard-go daemons the programming started in a node (found by its namespace). */
  function wireguardGo(n: Node): number[] {
    const pids = spawnSync('ip', ['netns', 'pids', n.ns.name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
    return pids.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'wireguard-go';
      } catch {
        return false;
      }
    });
  }

  afterAll(async () => {
    for (const n of nodes) await n.nn?.teardown().catch(() => undefined);
    for (const s of servers) s.kill();
    for (const n of nodes) {
      // Teardown deleted nhi-wg, which ends wireguard-go; any left (a failed test) is ended by pid.
      for (const pid of wireguardGo(n)) process.kill(pid);
      n.holder.kill();
      deleteNetns(n.pod);
      deleteNetns(n.ns);
      n.scratch.cleanup();
    }
    if (ext) deleteNetns(ext);
    if (ul) deleteNetns(ul);
  });

  it('vxlan: one device, and per remote node an onlink route per pod CIDR, a permanent neighbour and a permanent FDB entry; a second reconcile changes nothing', async () => {
    const n1 = nodes[0]!;
    const link = JSON.parse(inNetns(n1.ns, 'ip', ['-j', '-d', 'link', 'show', 'nhi-vxlan']))[0];
    expect(link.linkinfo.info_data).toMatchObject({ id: 1, port: 4789, local: '192.168.77.11', learning: false });
    expect(link.mtu).toBe(1450);
    expect(link.address).toBe(vtepMac(n1.info.name));
    const routes = inNetns(n1.ns, 'ip', ['route', 'show', 'proto', '93']) + inNetns(n1.ns, 'ip', ['-6', 'route', 'show', 'proto', '93']);
    for (const i of [2, 3]) {
      expect(routes).toContain(`10.244.${i}.0/24 via 10.244.${i}.0 dev nhi-vxlan onlink`);
      expect(routes).toContain(`fd00:10:244:${i}::/64 via fd00:10:244:${i}:: dev nhi-vxlan`);
    }
    const neigh = inNetns(n1.ns, 'ip', ['neigh', 'show', 'dev', 'nhi-vxlan']);
    const fdb = inNetns(n1.ns, 'bridge', ['fdb', 'show', 'dev', 'nhi-vxlan']);
    for (const n of nodes.slice(1)) {
      expect(neigh).toContain(`10.244.${n.i}.0 lladdr ${vtepMac(n.info.name)} PERMANENT`);
      expect(neigh).toContain(`fd00:10:244:${n.i}:: lladdr ${vtepMac(n.info.name)} PERMANENT`);
      expect(fdb).toContain(`${vtepMac(n.info.name)} dst 192.168.77.1${n.i} self permanent`);
    }
    expect(fdb).not.toContain('00:00:00:00:00:00');
    const before = n1.processes;
    const again = await n1.nn!.reconcile(infos());
    expect(again.changes).toBe(0);
    // Reads only: links, addresses, two route tables, neighbours, FDB.
    expect(n1.processes - before).toBe(6);
  });

  it('vxlan: every pod reaches every pod on the other nodes over TCP and UDP, IPv4 and IPv6, and the server sees the pod address', async () => {
    expect(await matrix()).toEqual([]);
  });

  it('vxlan: a 1,400-byte ping with DF passes between nodes, and so does one of the pod MTU; one byte more does not leave the pod', () => {
    const p = nodes[0]!.pod;
    expect(tryInNetns(p, 'ping', ['-c', '1', '-W', '2', '-M', 'do', '-s', String(1400 - 28), nodes[1]!.v4]).status).toBe(0);
    expect(tryInNetns(p, 'ping', ['-c', '1', '-W', '2', '-M', 'do', '-s', String(1450 - 28), nodes[2]!.v4]).status).toBe(0);
    expect(tryInNetns(p, 'ping', ['-c', '1', '-W', '2', '-M', 'do', '-s', String(1450 - 48), nodes[2]!.v6]).status).toBe(0);
    expect(tryInNetns(p, 'ping', ['-c', '1', '-W', '2', '-M', 'do', '-s', String(1451 - 28), nodes[1]!.v4]).status).not.toBe(0);
  });

  it('a pod reaches a host outside the cluster, masqueraded to its node address', () => {
    expect(askAll(nodes[1]!.pod, [{ proto: 'tcp', host: EXT4, port: PORT }, { proto: 'udp', host: EXT4, port: PORT }])).toEqual(['192.168.77.12', '192.168.77.12']);
  });

  it('vxlan without encryption: a marker sent pod -> pod is visible on the underlay', async () => {
    const seen = await markerOnUnderlay(`nhi-marker-clear-${process.pid}`);
    expect(seen.hits).toBeGreaterThan(0);
  });

  it('a node removed leaves no route, FDB or neighbour entry behind; added back, it is reachable again', async () => {
    const [n1, , n3] = nodes as [Node, Node, Node];
    const without = infos().filter((i) => i !== n3.info);
    await reconcileAll(without, nodes.slice(0, 2));
    const mac = vtepMac(n3.info.name);
    const left = [
      inNetns(n1.ns, 'ip', ['route', 'show', 'proto', '93']), inNetns(n1.ns, 'ip', ['-6', 'route', 'show', 'proto', '93']),
      inNetns(n1.ns, 'ip', ['neigh', 'show', 'dev', 'nhi-vxlan']), inNetns(n1.ns, 'bridge', ['fdb', 'show', 'dev', 'nhi-vxlan']),
    ].join('\n');
    expect(left).not.toContain('10.244.3.');
    expect(left).not.toContain('fd00:10:244:3:');
    expect(left).not.toContain(mac);
    expect(left).toContain('10.244.2.0');
    expect(askAll(n1.pod, [{ proto: 'tcp', host: n3.v4, port: PORT }, { proto: 'udp', host: n3.v6, port: PORT }], 'who', 800)).toEqual([undefined, undefined]);
    await reconcileAll();
    expect(askAll(n1.pod, [{ proto: 'tcp', host: n3.v4, port: PORT }, { proto: 'udp', host: n3.v6, port: PORT }])).toEqual([n1.v4, n1.v6]);
  });

  it('routes: the same matrix holds with no tunnel device, and a node off this L2 is refused with a reason', async () => {
    for (const n of nodes) n.nn = programmer(n, { overlay: 'routes' });
    const far: NodeInfo = { name: 'node-far', podCIDRs: ['10.244.9.0/24'], addresses: [{ type: 'InternalIP', address: '203.0.113.9' }] };
    const reports = await reconcileAll([...infos(), far]);
    expect(reports[0]!.podMtu).toBe(1500);
    expect(reports[0]!.refused).toEqual([{ node: 'node-far', reason: expect.stringContaining('not directly reachable') }]);
    for (const n of nodes) {
      expect(tryInNetns(n.ns, 'ip', ['link', 'show', 'nhi-vxlan']).status).not.toBe(0);
      expect(tryInNetns(n.ns, 'ip', ['link', 'show', 'nhi-wg']).status).not.toBe(0);
    }
    const routes = inNetns(nodes[0]!.ns, 'ip', ['route', 'show', 'proto', '93']) + inNetns(nodes[0]!.ns, 'ip', ['-6', 'route', 'show', 'proto', '93']);
    expect(routes).toContain('10.244.2.0/24 via 192.168.77.12 dev eth0');
    expect(routes).toContain('fd00:10:244:3::/64 via fd77::13 dev eth0');
    expect(routes).not.toContain('10.244.9.');
    expect(await matrix()).toEqual([]);
  });

  it('wireguard: pod traffic between nodes goes through nhi-wg, encrypted: the marker is absent from the underlay', async () => {
    for (const n of nodes) {
      n.nn = programmer(n, { encryption: 'wireguard' });
      n.info.wireguardPublicKey = n.nn.publicKey();
    }
    const reports = await reconcileAll();
    expect(reports[0]!.podMtu).toBe(1420);
    expect(reports[0]!.programmed.map((p) => p.node)).toEqual([nodes[1]!.info.name, nodes[2]!.info.name]);
    expect(tryInNetns(nodes[0]!.ns, 'ip', ['link', 'show', 'nhi-vxlan']).status).not.toBe(0);
    const n1 = nodes[0]!;
    const wg = spawnSync('nsenter', ['-t', String(n1.holder.pid), '-m', '-n', '--', 'wg', 'show', 'nhi-wg', 'allowed-ips'], { encoding: 'utf8' }).stdout;
    expect(wg).toContain(`${nodes[1]!.info.wireguardPublicKey}\t10.244.2.0/24 fd00:10:244:2::/64`);
    expect(await matrix()).toEqual([]);
    const seen = await markerOnUnderlay(`nhi-marker-secret-${process.pid}`);
    expect(seen.frames).toBeGreaterThan(0);
    expect(seen.hits).toBe(0);
  });

  it('wireguard: restarted programming keeps its key (0600 in the state dir) and finds nothing to change', async () => {
    const n1 = nodes[0]!;
    const key = n1.info.wireguardPublicKey;
    const file = n1.scratch.path('agent', 'wireguard.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    n1.nn = programmer(n1, { encryption: 'wireguard' });
    expect(n1.nn.publicKey()).toBe(key);
    expect((await n1.nn.reconcile(infos())).changes).toBe(0);
    const pub = spawnSync('nsenter', ['-t', String(n1.holder.pid), '-m', '-n', '--', 'wg', 'show', 'nhi-wg', 'public-key'], { encoding: 'utf8' }).stdout.trim();
    expect(pub).toBe(key);
    expect(askAll(n1.pod, [{ proto: 'tcp', host: nodes[1]!.v4, port: PORT }, { proto: 'udp', host: nodes[2]!.v6, port: PORT }])).toEqual([n1.v4, n1.v6]);
  });

  it('wireguard: a killed wireguard-go takes nhi-wg and its routes with it; the next reconcile brings both back', async () => {
    const n2 = nodes[1]!;
    const daemons = wireguardGo(n2);
    expect(daemons).toHaveLength(1);
    process.kill(daemons[0]!, 'SIGKILL');
    for (let t = 0; t < 100 && tryInNetns(n2.ns, 'ip', ['link', 'show', 'nhi-wg']).status === 0; t++) spawnSync('sleep', ['0.05']);
    expect(askAll(nodes[0]!.pod, [{ proto: 'tcp', host: n2.v4, port: PORT }], 'who', 800)).toEqual([undefined]);
    const r = await n2.nn!.reconcile(infos());
    expect(r.errors).toEqual([]);
    expect(r.changes).toBeGreaterThan(0);
    expect(askAll(nodes[0]!.pod, [{ proto: 'tcp', host: n2.v4, port: PORT }, { proto: 'udp', host: n2.v6, port: PORT }])).toEqual([nodes[0]!.v4, nodes[0]!.v6]);
  });

  it('vxlan over an IPv6 underlay: the device takes the node\'s IPv6 address, the pod MTU leaves 70 bytes, and the matrix holds', async () => {
    for (const n of nodes) n.nn = programmer(n, { nodeIP: `fd77::1${n.i}` });
    const reports = await reconcileAll();
    expect(reports[0]!.podMtu).toBe(1430);
    expect(tryInNetns(nodes[0]!.ns, 'ip', ['link', 'show', 'nhi-wg']).status).not.toBe(0);
    const link = JSON.parse(inNetns(nodes[0]!.ns, 'ip', ['-j', '-d', 'link', 'show', 'nhi-vxlan']))[0];
    expect(link.linkinfo.info_data).toMatchObject({ id: 1, port: 4789, local6: 'fd77::11', learning: false });
    expect(inNetns(nodes[0]!.ns, 'bridge', ['fdb', 'show', 'dev', 'nhi-vxlan'])).toContain(`${vtepMac(nodes[2]!.info.name)} dst fd77::13 self permanent`);
    expect(await matrix()).toEqual([]);
  });

  it('teardown removes the devices and every route of ours, and keeps the key', async () => {
    const n1 = nodes[0]!;
    await n1.nn!.teardown();
    expect(tryInNetns(n1.ns, 'ip', ['link', 'show', 'nhi-vxlan']).status).not.toBe(0);
    expect(inNetns(n1.ns, 'ip', ['route', 'show', 'proto', '93']) + inNetns(n1.ns, 'ip', ['-6', 'route', 'show', 'proto', '93'])).toBe('');
    expect(statSync(n1.scratch.path('agent', 'wireguard.key')).isFile()).toBe(true);
    // Its pods are cut off from the other nodes, which still route to it.
    expect(askAll(n1.pod, [{ proto: 'tcp', host: nodes[1]!.v4, port: PORT }], 'who', 800)).toEqual([undefined]);
  });
});
