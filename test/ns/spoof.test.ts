// A pod cannot borrow another pod's identity: on the payments example
// (reporting must not reach payments-db), reporting - root in its pod, with
// raw sockets - forges payment-service's source every way the issue found that
// passed, and a rogue router advertisement. Each forged frame is looked for
// where it would land (a sniffer on the database's interface, the neighbour
// and route tables of the others); the same frames sent by the genuine
// payment-service arrive, so the sniffer is shown to see what passes.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainConflist, direct, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, inNetns, tryInNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { BINARY, ROOT } from '../helpers/paths.js';
import { reaches, startServers } from '../helpers/traffic.js';

const FORGE = `${ROOT}/test/helpers/forge.py`;

const UDP = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-allow-udp, namespace: payments }
spec:
  podSelector: { matchLabels: { app: payments-db } }
  policyTypes: [Ingress]
  ingress:
    - from: [{ podSelector: { matchLabels: { app: payment-service } } }]
      ports: [{ protocol: UDP, port: 5433 }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: payment-service-udp, namespace: payments }
spec:
  podSelector: { matchLabels: { app: payment-service } }
  policyTypes: [Egress]
  egress:
    - to: [{ podSelector: { matchLabels: { app: payments-db } } }]
      ports: [{ protocol: UDP, port: 5433 }]
`;

interface Pod {
  ns: Netns;
  v4: string;
  v6: string;
  mac: string;
  ll: string;
  port: string;
  result: unknown;
}

const macOf = (ns: Netns, dev = 'eth0') => (JSON.parse(inNetns(ns, 'ip', ['-j', 'link', 'show', dev])) as { address: string }[])[0]!.address;
// (iproute2's JSON can hold an empty entry before the address.)
const linkLocalOf = (ns: Netns) => (JSON.parse(inNetns(ns, 'ip', ['-j', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'])) as { addr_info: { local?: string }[] }[])[0]!.addr_info.find((a) => a.local)!.local!;

/** Sends forged frames from a pod (forge.py send). */
function forge(from: Netns, kind: string, args: Record<string, unknown>): void {
  const r = tryInNetns(from, 'python3', [FORGE, 'send', 'eth0', kind, JSON.stringify(args)]);
  expect(r.status, r.stderr).toBe(0);
}

/** Frames holding `marker` that reach `at`'s eth0 while `send` runs. */
async function arriving(at: Netns, marker: string, send: () => void): Promise<number> {
  const p = spawn('ip', ['netns', 'exec', at.name, 'python3', FORGE, 'sniff', 'eth0', marker, '10']);
  let out = '';
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const closed = new Promise((r) => p.once('close', r));
  // Bounded waits: a sniffer that never gets ready, or never goes, fails this call with what
  // it said instead of hanging the test until its timeout (seen once in a full CI run).
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`sniffer not ready after 15 s: ${out}${err}`)); }, 15_000);
    p.stdout.on('data', (d) => {
      out += d;
      if (out.includes('ready')) { clearTimeout(t); resolve(); }
    });
    p.once('exit', (c) => { clearTimeout(t); reject(new Error(`sniffer exited with ${c}: ${err}`)); });
  });
  send();
  await new Promise((r) => setTimeout(r, 300));
  p.kill('SIGTERM');
  const killer = setTimeout(() => p.kill('SIGKILL'), 5_000);
  await closed;
  clearTimeout(killer);
  return out.split('\n').filter((l) => l.startsWith('{')).length;
}

function world(o: { name: string; subnet4: string; subnet6: string; policy: boolean; extra?: Record<string, unknown> }) {
  const scratch = new Scratch();
  const node = createNetns('nhin');
  const list = chainConflist({ kind: 'nhi-cni', name: o.name, cniVersion: '1.1.0', bridge: 'nhi0', ranges: [[o.subnet4], [o.subnet6]], dir: scratch.dir, ipMasq: false });
  const main = list.plugins[0] as Record<string, unknown>;
  Object.assign(main, o.extra ?? {});
  if (o.policy) {
    const dir = scratch.path('policies');
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/payments.yaml`, readFileSync(`${ROOT}/examples/policies/payments.yaml`, 'utf8'));
    writeFileSync(`${dir}/udp.yaml`, UDP);
    main.policy = { dir };
  }
  const env = testEnv(scratch.dir);
  const pods: Record<string, Pod> = {};
  const add = (name: string, app: string) => {
    const ns = createNetns('nhip');
    const r = direct({ node, verb: 'ADD', config: pluginConfig(list, 0, undefined, { 'io.nhi-cni/workload': { namespace: 'payments', name, labels: { app } } }), containerId: name, netns: ns.path, env });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const ips = (r.json.ips as { address: string }[]).map((i) => i.address.split('/')[0]!);
    pods[name] = { ns, v4: ips.find((a) => !a.includes(':'))!, v6: ips.find((a) => a.includes(':'))!, mac: macOf(ns), ll: linkLocalOf(ns), port: r.json.interfaces[1].name, result: r.json };
  };
  const del = (name: string) => direct({ node, verb: 'DEL', config: pluginConfig(list, 0, pods[name]!.result), containerId: name, netns: pods[name]!.ns.path, env });
  const check = (name: string) => direct({ node, verb: 'CHECK', config: pluginConfig(list, 0, pods[name]!.result), containerId: name, netns: pods[name]!.ns.path, env });
  const cleanup = () => {
    deleteAllNetns();
    scratch.cleanup();
  };
  return { scratch, node, list, env, pods, add, del, check, cleanup };
}

const guardTable = (node: Netns) => tryInNetns(node, 'nft', ['-j', 'list', 'table', 'bridge', 'nhi_cni']);

describe.each([
  ['spoofcheck (default)', {}],
  ['spoofcheck with macspoofchk', { macspoofchk: true }],
])('a denied pod cannot pose as an allowed one under the payments policies: %s', (_label, extra) => {
  let w: ReturnType<typeof world>;
  const servers: ReturnType<typeof spawn>[] = [];
  let api: Pod, db: Pod, rep: Pod;
  beforeAll(async () => {
    w = world({ name: 'spoof', subnet4: '10.91.0.0/24', subnet6: 'fd91::/64', policy: true, extra });
    w.add('api', 'payment-service');
    w.add('db', 'payments-db');
    w.add('rep', 'reporting');
    [api, db, rep] = [w.pods.api!, w.pods.db!, w.pods.rep!];
    servers.push(await startServers(db.ns, [5432]));
  });
  afterAll(() => {
    for (const s of servers) s.kill();
    w.cleanup();
  });

  it('payment-service connects to the database over IPv4 and IPv6; reporting does not', () => {
    expect(reaches(api.ns, db.v4, 5432)).toBe(true);
    expect(reaches(api.ns, db.v6, 5432)).toBe(true);
    expect(reaches(rep.ns, db.v4, 5432)).toBe(false);
    expect(reaches(rep.ns, db.v6, 5432)).toBe(false);
  });

  it('raw UDP with payment-service\'s source address is dropped; the same frame from payment-service arrives', async () => {
    const args = { src: api.v4, dst: db.v4, dstMac: db.mac, port: 5433 };
    expect(await arriving(db.ns, 'udp4-forged', () => forge(rep.ns, 'udp4', { ...args, srcMac: rep.mac, marker: 'udp4-forged' }))).toBe(0);
    expect(await arriving(db.ns, 'udp4-genuine', () => forge(api.ns, 'udp4', { ...args, srcMac: api.mac, marker: 'udp4-genuine' }))).toBeGreaterThan(0);
  });

  it('a raw TCP SYN with payment-service\'s source address is dropped', async () => {
    const args = { src: api.v4, dst: db.v4, dstMac: db.mac, port: 5432 };
    expect(await arriving(db.ns, 'syn-forged', () => forge(rep.ns, 'tcpsyn4', { ...args, srcMac: rep.mac, marker: 'syn-forged' }))).toBe(0);
    expect(await arriving(db.ns, 'syn-genuine', () => forge(api.ns, 'tcpsyn4', { ...args, srcMac: api.mac, marker: 'syn-genuine' }))).toBeGreaterThan(0);
  });

  it('forged MAC and address together are dropped', async () => {
    expect(await arriving(db.ns, 'mac-ip-forged', () => forge(rep.ns, 'udp4', { src: api.v4, dst: db.v4, dstMac: db.mac, port: 5433, srcMac: api.mac, marker: 'mac-ip-forged' }))).toBe(0);
  });

  it('raw UDP over IPv6 with payment-service\'s source address is dropped; the genuine one arrives', async () => {
    const args = { src: api.v6, dst: db.v6, dstMac: db.mac, port: 5433 };
    expect(await arriving(db.ns, 'udp6-forged', () => forge(rep.ns, 'udp6', { ...args, srcMac: rep.mac, marker: 'udp6-forged' }))).toBe(0);
    expect(await arriving(db.ns, 'udp6-genuine', () => forge(api.ns, 'udp6', { ...args, srcMac: api.mac, marker: 'udp6-genuine' }))).toBeGreaterThan(0);
  });

  it('payment-service\'s address as a secondary address on reporting: neither TCP nor UDP gets through', async () => {
    inNetns(rep.ns, 'ip', ['addr', 'add', `${api.v4}/32`, 'dev', 'eth0']);
    try {
      const bound = `require('net').connect({ port: 5432, host: '${db.v4}', localAddress: '${api.v4}' }).on('data', () => { console.log('ok'); process.exit(0); }).on('error', () => { console.log('fail'); process.exit(0); }); setTimeout(() => { console.log('fail'); process.exit(0); }, 1500)`;
      expect(inNetns(rep.ns, process.execPath, ['-e', bound]).trim()).toBe('fail');
      const udp = `const s = require('dgram').createSocket('udp4'); s.bind({ address: '${api.v4}' }, () => s.send('secondary-forged', 5433, '${db.v4}', () => setTimeout(() => process.exit(0), 100)));`;
      expect(await arriving(db.ns, 'secondary-forged', () => inNetns(rep.ns, process.execPath, ['-e', udp]))).toBe(0);
    } finally {
      inNetns(rep.ns, 'ip', ['addr', 'del', `${api.v4}/32`, 'dev', 'eth0']);
    }
    expect(reaches(api.ns, db.v4, 5432)).toBe(true);
  });

  it('an ARP reply or a neighbour advertisement claiming payment-service\'s address changes nobody\'s neighbour table', () => {
    forge(rep.ns, 'arp', { srcMac: rep.mac, dstMac: db.mac, senderMac: rep.mac, senderIp: api.v4, targetIp: db.v4 });
    forge(rep.ns, 'na', { srcMac: rep.mac, src: rep.ll, target: api.v6 });
    for (const [ns, dev] of [[db.ns, 'eth0'], [w.node, 'nhi0']] as const) {
      const neigh = JSON.parse(inNetns(ns, 'ip', ['-j', 'neigh', 'show', 'dev', dev])) as { dst: string; lladdr?: string }[];
      expect(neigh.filter((n) => (n.dst === api.v4 || n.dst === api.v6) && n.lladdr === rep.mac)).toEqual([]);
    }
    expect(reaches(api.ns, db.v4, 5432)).toBe(true);
    expect(reaches(api.ns, db.v6, 5432)).toBe(true);
  });

  it('IPv6 still works for the genuine pods: neighbour discovery, the gateway, duplicate address detection', () => {
    // The node (the pods' gateway) reaches the database over IPv6 (probes pass the default deny): NDP both ways.
    const probe = `require('net').connect(5432, '${db.v6}').on('data', () => process.exit(0)).on('error', () => process.exit(1)); setTimeout(() => process.exit(2), 1500)`;
    expect(tryInNetns(w.node, process.execPath, ['-e', probe]).status).toBe(0);
    const gw = JSON.parse(inNetns(db.ns, 'ip', ['-j', '-6', 'neigh', 'show', 'fd91::1', 'dev', 'eth0'])) as { lladdr?: string }[];
    expect(gw[0]?.lladdr).toBe(macOf(w.node, 'nhi0'));
    // An address added with DAD in a pod becomes usable (its solicitations from :: pass).
    inNetns(db.ns, 'ip', ['addr', 'add', 'fd91::d0/64', 'dev', 'eth0']);
    let tentative = true;
    for (let i = 0; i < 40 && tentative; i++) {
      tentative = inNetns(db.ns, 'ip', ['-6', 'addr', 'show', 'dev', 'eth0', 'tentative']).includes('fd91::d0');
      if (tentative) spawnSync('sleep', ['0.1']);
    }
    expect(tentative).toBe(false);
    expect(inNetns(db.ns, 'ip', ['-6', 'addr', 'show', 'dev', 'eth0', 'dadfailed'])).not.toContain('fd91::d0');
    inNetns(db.ns, 'ip', ['addr', 'del', 'fd91::d0/64', 'dev', 'eth0']);
  });

  it('policy stats counts the dropped frames of reporting, and none of payment-service', () => {
    const r = spawnSync('ip', ['netns', 'exec', w.node.name, BINARY, 'policy', 'stats', '--json', '--state-dir', w.scratch.path('state')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const rows = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { guard?: boolean; pod?: string; dropped?: number });
    const guard = Object.fromEntries(rows.filter((x) => x.guard).map((x) => [x.pod, x.dropped]));
    expect(guard['payments/rep']).toBeGreaterThanOrEqual(12);
    expect(guard['payments/api']).toBe(0);
  });

  it('CHECK passes, and names a guard element removed by hand', () => {
    expect(w.check('rep').status).toBe(0);
    inNetns(w.node, 'nft', ['delete', 'element', 'bridge', 'nhi_cni', 'ipchk_v4', `{ "${rep.port}" . ${rep.v4} }`]);
    const c = w.check('rep');
    expect(c.status).toBe(1);
    expect(c.json.code).toBe(103);
    expect(c.json.details).toContain(`ipchk_v4 {"concat":["${rep.port}","${rep.v4}"]}`);
    inNetns(w.node, 'nft', ['add', 'element', 'bridge', 'nhi_cni', 'ipchk_v4', `{ "${rep.port}" . ${rep.v4} }`]);
  });

  it('DEL takes every element, counter and chain of the pod\'s guard away', () => {
    for (const name of ['api', 'db', 'rep']) expect(w.del(name).status).toBe(0);
    const t = guardTable(w.node);
    expect(t.status).toBe(0);
    for (const p of [api, db, rep]) expect(t.stdout).not.toContain(p.port);
    expect(t.stdout).not.toMatch(/"(counter|chain)": \{[^}]*"name": "(drop|na)_/);
  });
});

describe('router advertisements from a pod', () => {
  let w: ReturnType<typeof world>;
  beforeAll(() => {
    // IPv4 pods: their IPv6 stays on, and so would autoconfiguration from a rogue router.
    w = world({ name: 'ra', subnet4: '10.92.0.0/24', subnet6: 'fd92::/64', policy: false });
    w.add('a', 'web');
    w.add('b', 'web');
    w.add('attacker', 'web');
    for (const p of Object.values(w.pods)) inNetns(p.ns, 'sysctl', ['-q', '-w', 'net.ipv6.conf.eth0.accept_ra=1']);
  });
  afterAll(() => w.cleanup());

  const takenFrom = (ns: Netns, prefix: string) => inNetns(ns, 'ip', ['-6', 'addr', 'show']).includes(prefix) || inNetns(ns, 'ip', ['-6', 'route', 'show', 'default']).includes('via fe80');

  it('are dropped at the bridge: no address, no route in other pods or on the node', async () => {
    const att = w.pods.attacker!;
    forge(att.ns, 'ra', { srcMac: att.mac, src: att.ll, prefix: '2001:db8:bad::' });
    await new Promise((r) => setTimeout(r, 500));
    for (const p of [w.pods.a!, w.pods.b!]) expect(takenFrom(p.ns, '2001:db8:bad:')).toBe(false);
    expect(takenFrom(w.node, '2001:db8:bad:')).toBe(false);
  });

  it('(the test can fail) with the attacker\'s port taken out of the guard by hand, the same advertisement is taken', async () => {
    const att = w.pods.attacker!;
    inNetns(w.node, 'nft', ['delete', 'element', 'bridge', 'nhi_cni', 'guard_ifs', `{ "${att.port}" }`]);
    inNetns(w.node, 'nft', ['delete', 'element', 'bridge', 'nhi_cni', 'ipchk_ifs', `{ "${att.port}" }`]);
    forge(att.ns, 'ra', { srcMac: att.mac, src: att.ll, prefix: '2001:db8:bad2::' });
    await new Promise((r) => setTimeout(r, 500));
    expect(takenFrom(w.pods.a!.ns, '2001:db8:bad2:')).toBe(true);
  });
});

describe('without a policy', () => {
  it('the spoof check is on by default; with "spoofcheck": false forged frames arrive (the sniffer sees them)', async () => {
    for (const [off, subnet] of [[false, '10.93.0'], [true, '10.94.0']] as const) {
      const w = world({ name: `sc${off ? 'off' : 'on'}`, subnet4: `${subnet}.0/24`, subnet6: `fd${off ? 94 : 93}::/64`, policy: false, extra: off ? { spoofcheck: false } : {} });
      try {
        w.add('x', 'web');
        w.add('y', 'web');
        const [x, y] = [w.pods.x!, w.pods.y!];
        const n = await arriving(y.ns, 'nopolicy', () => forge(x.ns, 'udp4', { src: '10.99.99.99', dst: y.v4, dstMac: y.mac, srcMac: x.mac, port: 9, marker: 'nopolicy' }));
        if (off) expect(n).toBeGreaterThan(0);
        else expect(n).toBe(0);
      } finally {
        w.cleanup();
      }
    }
  });

  it('"spoofcheck": false is refused with a policy section (code 7), before anything is touched', () => {
    const w = world({ name: 'scbad', subnet4: '10.95.0.0/24', subnet6: 'fd95::/64', policy: true, extra: { spoofcheck: false } });
    try {
      const ns = createNetns('nhip');
      const r = direct({ node: w.node, verb: 'ADD', config: pluginConfig(w.list, 0), containerId: 'bad', netns: ns.path, env: w.env });
      expect(r.status).toBe(1);
      expect(r.json.code).toBe(7);
      expect(r.json.msg).toMatch(/spoofcheck/);
      expect(tryInNetns(w.node, 'ip', ['link', 'show', 'nhi0']).status).not.toBe(0);
    } finally {
      w.cleanup();
    }
  });
});

describe.each([
  ['the reference bridge', 'bridge', 'bridge'],
  ['the reference ptp (routed: the guard is in table inet nhi_cni)', 'ptp', 'inet'],
])('nhi-policy chained after %s guards the pods\' sources too', (_label, mainType, family) => {
  const scratch = new Scratch();
  afterAll(() => {
    deleteAllNetns();
    scratch.cleanup();
  });

  it('a forged source from reporting is dropped, the genuine one arrives, and DEL leaves no guard element', async () => {
    const node = createNetns('nhin');
    const dir = scratch.path('policies');
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/payments.yaml`, readFileSync(`${ROOT}/examples/policies/payments.yaml`, 'utf8'));
    writeFileSync(`${dir}/udp.yaml`, UDP);
    const net = mainType === 'bridge' ? '10.96.0' : '10.97.0';
    const main = mainType === 'bridge'
      ? { type: 'bridge', bridge: 'cbr0', isGateway: true, ipam: { type: 'host-local', dataDir: scratch.path('ipam'), ranges: [[{ subnet: `${net}.0/24` }]] } }
      : { type: 'ptp', ipam: { type: 'host-local', dataDir: scratch.path('ipam'), ranges: [[{ subnet: `${net}.0/24` }]] } };
    const list = { cniVersion: '1.0.0', name: `chained-${mainType}`, plugins: [main, { type: 'nhi-policy', stateDir: scratch.path('state'), capabilities: { 'io.nhi-cni/workload': true }, policy: { dir } }] };
    const { libcniDriver } = await import('../helpers/driver.js');
    const drv = libcniDriver(scratch, node, list as never, testEnv(scratch.dir));
    const pods: Record<string, { ns: Netns; ip: string; mac: string; gwMac: string }> = {};
    for (const [name, app] of [['api', 'payment-service'], ['db', 'payments-db'], ['rep', 'reporting']] as const) {
      const ns = createNetns('nhip');
      const r = drv.add(ns, { CAP_ARGS: JSON.stringify({ 'io.nhi-cni/workload': { namespace: 'payments', name, labels: { app } } }) });
      expect(r.status, r.stderr).toBe(0);
      const ip = r.json.ips[0].address.split('/')[0];
      // The next hop's MAC: the other pod on a bridge, the node-side veth when routed.
      pods[name] = { ns, ip, mac: macOf(ns), gwMac: '' };
    }
    const { api, db, rep } = pods as Record<'api' | 'db' | 'rep', { ns: Netns; ip: string; mac: string; gwMac: string }>;
    const nextHop = (from: Netns) => {
      if (mainType === 'bridge') return db.mac;
      tryInNetns(from, 'ping', ['-c', '1', '-W', '1', `${net}.1`]);
      return (JSON.parse(inNetns(from, 'ip', ['-j', 'neigh', 'show', 'dev', 'eth0'])) as { lladdr?: string }[]).find((n) => n.lladdr)!.lladdr!;
    };
    const args = { src: api.ip, dst: db.ip, port: 5433 };
    expect(await arriving(db.ns, 'chained-forged', () => forge(rep.ns, 'udp4', { ...args, srcMac: rep.mac, dstMac: nextHop(rep.ns), marker: 'chained-forged' }))).toBe(0);
    expect(await arriving(db.ns, 'chained-genuine', () => forge(api.ns, 'udp4', { ...args, srcMac: api.mac, dstMac: nextHop(api.ns), marker: 'chained-genuine' }))).toBeGreaterThan(0);
    expect(drv.check(rep.ns).status).toBe(0);
    for (const p of [api, db, rep]) expect(drv.del(p.ns).status).toBe(0);
    const t = tryInNetns(node, 'nft', ['-j', 'list', 'table', family, 'nhi_cni']);
    expect(t.status).toBe(0);
    expect(t.stdout).not.toMatch(/"elem"/);
  });
});
