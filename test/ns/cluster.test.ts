// Cluster mode end to end: two node namespaces on an underlay bridge, each
// running the built `nhi-cni agent` against the Kubernetes API stand-in
// (through @kubernetes/client-node, over a relay in the node to the
// stand-in's socket), each wiring its pods with the conflist its agent wrote,
// through libcni, as kubelet would: the pod exists in the API first, the ADD
// names it in CNI_ARGS, then the pod's status gets the address. What an
// operator checks:
// - a NetworkPolicy created with the API is enforced across nodes, over VXLAN,
//   with no NAT (the server sees the client pod's own address);
// - a label edit on a pod of the other node, and the policy's deletion,
//   change the verdict within seconds, without any CNI call;
// - a pod of the other node forging the allowed pod's address gets nothing;
// - a pod the agent cannot identify is not wired.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApi, type Obj } from '../helpers/kube-api.js';
import { createNetns, deleteNetns, type Netns } from '../helpers/netns.js';
import { BINARY, ROOT } from '../helpers/paths.js';
import { Runtime, Scratch } from '../helpers/plugin.js';
import { reachesAsync as reaches, startServers } from '../helpers/traffic.js';
import { askAllAsync as askAll, startWhoami } from '../helpers/whoami.js';

const RELAY = join(ROOT, 'test/helpers/tcp-relay.mjs');
const API_PORT = 6443;
const DB_PORT = 5432;
const WHO_PORT = 7070;
const SINK_PORT = 5433;
const HTTP_PORT = 8080;

interface ClusterNode {
  name: string;
  ns: Netns;
  ip: string;
  cidr: string;
  scratch: Scratch;
  stateDir: string;
  confDir: string;
  agent?: ChildProcess;
  log: string;
  relay?: ChildProcess;
  runtime?: Runtime;
  /** The agent's flags beyond the common ones (kept across restarts). */
  extra: string[];
}

interface Pod {
  name: string;
  node: ClusterNode;
  ns: Netns;
  ip: string;
}

const run = (args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });

async function until<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, ms = 40_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** HTTP requests from a pod, in order, on one kept-alive connection (a new one after a close): [status or 'error', body or error code, local port]. */
function httpAsk(from: Pod, host: string, reqs: [string, string][]): Promise<[number | 'error', string, number | undefined][]> {
  const script = `
    const http = require('http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    (async () => {
      const out = [];
      for (const [method, path] of ${JSON.stringify(reqs)}) {
        out.push(await new Promise((done) => {
          const r = http.request({ host: '${host}', port: ${HTTP_PORT}, method, path, agent, timeout: 2000 }, (res) => {
            let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => done([res.statusCode, b.trim(), res.socket && res.socket.localPort]));
          });
          r.on('error', (e) => done(['error', e.code || e.message, undefined]));
          r.on('timeout', () => r.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
          if (method === 'POST') r.write('x');
          r.end();
        }));
      }
      console.log(JSON.stringify(out));
      process.exit(0);
    })();`;
  return new Promise((resolve, reject) => execFile('ip', ['netns', 'exec', from.ns.name, process.execPath, '-e', script], { encoding: 'utf8' }, (_e, out, err) => {
    try {
      resolve(JSON.parse(out));
    } catch {
      reject(new Error(`http client in ${from.name}: ${out}${err}`));
    }
  }));
}

describe('cluster mode: two nodes, an agent on each, policies from the API', () => {
  let dir: string;
  let api: KubeApi;
  let ul: Netns;
  const nodes: ClusterNode[] = [];
  const pods: Pod[] = [];
  const servers: ChildProcess[] = [];

  /**
   * The agent in its node: the node's network namespace and a mount namespace
   * of its own with a private /run, because wireguard-go and wg meet at
   * /run/wireguard/<dev>.sock and two nodes on one machine would share it.
   */
  function startAgent(n: ClusterNode, extra: string[] = n.extra): void {
    n.extra = extra;
    const kc = api.kubeconfig(api.token, `https://127.0.0.1:${API_PORT}`);
    n.log = '';
    n.agent = spawn('ip', ['netns', 'exec', n.ns.name, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs nhi-run /run && exec "$@"', 'sh',
      BINARY, 'agent', '--kubeconfig', kc, '--node-name', n.name, '--state-dir', n.stateDir, '--conf-dir', n.confDir,
      '--listen', '127.0.0.1:9190', '--ipam-data-dir', n.scratch.path('ipam'), '--cluster-cidr', '10.245.0.0/16', '--overlay', 'vxlan', '--node-ip', n.ip, '--debounce', '100', ...extra], {
      stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH, NHI_CNI_LOG_LEVEL: 'info' },
    });
    n.agent.stderr!.setEncoding('utf8');
    n.agent.stderr!.on('data', (c: string) => (n.log += c));
  }

  /** As kubelet: the pod in the API, then the ADD through libcni with the agent's conflist, then the pod's status. */
  async function addPod(n: ClusterNode, name: string, labels: Record<string, string>): Promise<Pod> {
    api.create('pods', { metadata: { namespace: 'shop', name, labels }, spec: { nodeName: n.name, containers: [{ name: 'c' }] }, status: { phase: 'Pending' } });
    const ns = createNetns('nhip');
    const r = await n.runtime!.runAsync('add', 'nhi-cni', ns, { CNI_CONTAINERID: `ctr-${name}`, CNI_ARGS: `K8S_POD_NAMESPACE=shop;K8S_POD_NAME=${name}`, NHI_CNI_RUN_DIR: n.scratch.path('run') });
    if (r.status !== 0) throw new Error(`ADD of ${name} on ${n.name}: ${r.stdout}${r.stderr}`);
    const ip = (r.json.ips as { address: string }[])[0]!.address.split('/')[0]!;
    api.patch('pods', name, 'shop', { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } });
    const p = { name, node: n, ns, ip };
    pods.push(p);
    return p;
  }

  /** Both agents have applied a view that holds every pod's address (its peers known on both nodes). */
  const converged = () => until('both agents to know every pod', () => nodes.every((n) => {
    const f = join(n.stateDir, 'policy-state.json');
    if (!existsSync(f)) return false;
    const s = JSON.parse(readFileSync(f, 'utf8'));
    const known = new Set([...Object.values(s.pods as Obj).flatMap((p: Obj) => p.ips), ...((s.remote ?? []) as Obj[]).flatMap((p) => p.ips)]);
    return pods.every((p) => known.has(p.ip));
  }));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nhi-cluster-'));
    api = await KubeApi.start({ socketPath: join(dir, 'api.sock') });
    api.create('namespaces', { metadata: { name: 'shop', labels: { 'kubernetes.io/metadata.name': 'shop' } } });
    ul = createNetns('nhiu');
    run(['-n', ul.name, 'link', 'add', 'ulbr', 'type', 'bridge']);
    run(['-n', ul.name, 'link', 'set', 'ulbr', 'up']);
    for (const i of [1, 2]) {
      const ns = createNetns('nhin');
      const n: ClusterNode = { name: `node-${i}`, ns, ip: `192.168.79.1${i}`, cidr: `10.245.${i}.0/24`, scratch: new Scratch(), stateDir: '', confDir: '', log: '', extra: [] };
      n.stateDir = n.scratch.path('state');
      n.confDir = n.scratch.path('agent-net.d');
      run(['-n', ns.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `u${i}`, 'netns', ul.name]);
      run(['-n', ul.name, 'link', 'set', `u${i}`, 'master', 'ulbr', 'up']);
      run(['-n', ns.name, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
      run(['-n', ns.name, 'link', 'set', 'eth0', 'up']);
      run(['-n', ns.name, 'link', 'set', 'lo', 'up']);
      n.relay = spawn('ip', ['netns', 'exec', ns.name, process.execPath, RELAY, '127.0.0.1', String(API_PORT), join(dir, 'api.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => n.relay!.stdout!.once('data', () => resolve()));
      api.create('nodes', { metadata: { name: n.name }, spec: { podCIDRs: [n.cidr] }, status: { addresses: [{ type: 'InternalIP', address: n.ip }] } });
      nodes.push(n);
    }
    for (const n of nodes) startAgent(n);
    for (const n of nodes) {
      const conf = join(n.confDir, '10-nhi-cni.conflist');
      await until(`${n.name}'s conflist`, () => existsSync(conf), 30_000).catch((e) => { throw new Error(`${e}\n${n.log}`); });
      // The agent's conflist as kubelet reads it (its IPAM data in the test's directory: --ipam-data-dir).
      const list = JSON.parse(readFileSync(conf, 'utf8'));
      expect(list.plugins[0].ipam.dataDir).toBe(n.scratch.path('ipam'));
      n.runtime = new Runtime(n.scratch, n.ns);
      n.runtime.writeConflist(list);
    }
  }, 90_000);

  afterAll(async () => {
    for (const s of servers) s.kill();
    for (const n of nodes) {
      n.agent?.kill('SIGTERM');
      n.relay?.kill();
    }
    for (const p of pods) deleteNetns(p.ns);
    for (const n of nodes) {
      // What the agents started and left running by design (wireguard-go: the tunnel outlives an agent restart).
      for (const pid of spawnSync('ip', ['netns', 'pids', n.ns.name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
      deleteNetns(n.ns);
      n.scratch.cleanup();
    }
    if (ul) deleteNetns(ul);
    await api?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the agents turn ready and write a conflist with the VXLAN MTU, the agent socket and the cluster CIDR', () => {
    const list = JSON.parse(readFileSync(join(nodes[0]!.confDir, '10-nhi-cni.conflist'), 'utf8'));
    expect(list.plugins[0]).toMatchObject({ mtu: 1450, clusterCIDR: ['10.245.0.0/16'], policy: { agentSocket: join(nodes[0]!.stateDir, 'agent.sock') }, ipam: { ranges: [[{ subnet: '10.245.1.0/24' }]] } });
    expect(run(['-n', nodes[0]!.ns.name, 'route', 'show', '10.245.2.0/24']).stdout).toContain('dev nhi-vxlan');
  });

  it('a NetworkPolicy from the API is enforced across nodes; allowed traffic keeps the pod address (no NAT)', async () => {
    const db = await addPod(nodes[0]!, 'db-1', { app: 'db' });
    const client = await addPod(nodes[1]!, 'api-1', { app: 'api' });
    const other = await addPod(nodes[1]!, 'web-1', { app: 'web' });
    servers.push(await startServers(db.ns, [DB_PORT]), await startWhoami(db.ns, WHO_PORT));
    await converged();
    // No policy yet: everyone reaches the db, and it sees their own addresses.
    expect(await askAll(client.ns, [{ proto: 'tcp', host: db.ip, port: WHO_PORT }])).toEqual([client.ip]);
    expect(await reaches(other.ns, db.ip, DB_PORT)).toBe(true);

    api.create('networkpolicies', {
      metadata: { namespace: 'shop', name: 'db-from-api' },
      spec: { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: DB_PORT, protocol: 'TCP' }] }] },
    });
    await until('web-1 denied', async () => !(await reaches(other.ns, db.ip, DB_PORT)));
    expect(await reaches(client.ns, db.ip, DB_PORT)).toBe(true);
    // Only the port the policy names.
    expect(await askAll(client.ns, [{ proto: 'tcp', host: db.ip, port: WHO_PORT }], 'who', 1000)).toEqual([undefined]);
    // What the operator scrapes from node-1's agent: the policy's connections from the kernel's counters, the range's addresses.
    const m = await new Promise<string>((resolve) => execFile('curl', ['-s', '--unix-socket', join(nodes[0]!.stateDir, 'agent.sock'), 'http://agent/metrics'], { encoding: 'utf8' }, (_e, out) => resolve(out)));
    const sample = (re: RegExp) => Number(re.exec(m)?.[1] ?? NaN);
    expect(sample(/^nhi_policy_connections_total\{policy="shop\/db-from-api",kind="NetworkPolicy",verdict="allowed"\} (\d+)$/m)).toBeGreaterThan(0);
    expect(sample(/^nhi_policy_connections_total\{policy="shop\/db-from-api",kind="NetworkPolicy",verdict="denied"\} (\d+)$/m)).toBeGreaterThan(0);
    expect(sample(/^nhi_ipam_addresses\{range="10\.245\.1\.0\/24",state="used"\} (\d+)$/m)).toBe(1);
    expect(sample(/^nhi_ipam_addresses\{range="10\.245\.1\.0\/24",state="free"\} (\d+)$/m)).toBe(252);
  }, 150_000);

  it('label edits and the policy deleted in the API change the verdict live, without a CNI call', async () => {
    const [db, client, other] = ['db-1', 'api-1', 'web-1'].map((n) => pods.find((p) => p.name === n)!);
    api.patch('pods', 'web-1', 'shop', { metadata: { labels: { app: 'api' } } });
    await until('web-1 allowed once labelled app=api', () => reaches(other!.ns, db!.ip, DB_PORT));
    api.patch('pods', 'api-1', 'shop', { metadata: { labels: { app: 'batch' } } });
    await until('api-1 denied once labelled app=batch', async () => !(await reaches(client!.ns, db!.ip, DB_PORT)));
    api.delete('networkpolicies', 'db-from-api', 'shop');
    await until('api-1 allowed with no policy', () => reaches(client!.ns, db!.ip, DB_PORT));
  });

  it('a pod deleted in the API loses its access on the other node before any DEL; a pod forging an allowed pod\'s address gets nothing through (one-way UDP, which needs no reply)', async () => {
    const [db, client, other] = ['db-1', 'api-1', 'web-1'].map((n) => pods.find((p) => p.name === n)!);
    api.patch('pods', 'web-1', 'shop', { metadata: { labels: { app: 'web' } } });
    api.patch('pods', 'api-1', 'shop', { metadata: { labels: { app: 'api' } } });
    api.create('networkpolicies', {
      metadata: { namespace: 'shop', name: 'db-from-api' },
      spec: { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: DB_PORT, protocol: 'TCP' }, { port: SINK_PORT, protocol: 'UDP' }] }] },
    });
    await until('web-1 denied again', async () => !(await reaches(other!.ns, db!.ip, DB_PORT)));
    expect(await reaches(client!.ns, db!.ip, DB_PORT)).toBe(true);
    // A pod deleted in the API on one node loses its access on the others at once, even
    // before its own node tears it down (its sandbox still runs here: no DEL yet).
    const api2 = await addPod(nodes[1]!, 'api-2', { app: 'api' });
    await until('api-2 allowed', () => reaches(api2.ns, db!.ip, DB_PORT));
    api.delete('pods', 'api-2', 'shop');
    await until('api-2 denied once deleted in the API', async () => !(await reaches(api2.ns, db!.ip, DB_PORT)));
    const del = await nodes[1]!.runtime!.runAsync('del', 'nhi-cni', api2.ns, { CNI_CONTAINERID: 'ctr-api-2', CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api-2', NHI_CNI_RUN_DIR: nodes[1]!.scratch.path('run') });
    expect(del.status, del.stdout + del.stderr).toBe(0);
    pods.splice(pods.indexOf(api2), 1);
    deleteNetns(api2.ns);
    // A UDP sink in the db pod prints every datagram it gets: a forged
    // datagram needs no answer, so only the source check can stop it.
    const sink = spawn('ip', ['netns', 'exec', db!.ns.name, process.execPath, '-e', `
      const s = require('dgram').createSocket('udp4');
      s.on('message', (m, r) => console.log(r.address + ' ' + m));
      s.bind(${SINK_PORT}, () => console.log('ready'));
    `]);
    servers.push(sink);
    let got = '';
    sink.stdout!.setEncoding('utf8');
    sink.stdout!.on('data', (c: string) => (got += c));
    await until('the sink', () => got.includes('ready'));
    const send = (from: Pod, source: string, text: string) => spawnSync('ip', ['netns', 'exec', from.ns.name, process.execPath, '-e', `
      const s = require('dgram').createSocket('udp4');
      s.bind({ address: '${source}', port: 0 }, () => s.send('${text}', ${SINK_PORT}, '${db!.ip}', () => s.close()));
    `], { encoding: 'utf8' });
    // The allowed pod's datagram arrives (the path and the policy work)…
    expect(send(client!, client!.ip, 'from-api').status).toBe(0);
    await until('the allowed datagram', () => got.includes(`${client!.ip} from-api`));
    // …web-1 taking api-1's address as its own (root in its pod can) sends the same: dropped.
    const dev = JSON.parse(spawnSync('ip', ['-n', other!.ns.name, '-j', 'route', 'show', 'default'], { encoding: 'utf8' }).stdout)[0].dev;
    run(['-n', other!.ns.name, 'addr', 'add', `${client!.ip}/32`, 'dev', dev]);
    try {
      for (let i = 0; i < 5; i++) expect(send(other!, client!.ip, 'forged').status).toBe(0);
      // And once more as itself (denied by the policy).
      send(other!, other!.ip, 'as-itself');
      await new Promise((r) => setTimeout(r, 1500));
      expect(got).not.toContain('forged');
      expect(got).not.toContain('as-itself');
    } finally {
      run(['-n', other!.ns.name, 'addr', 'del', `${client!.ip}/32`, 'dev', dev]);
    }
  });

  it('L7: a CiliumNetworkPolicy HTTP rule (the seed\'s GET /data) is enforced by the agent\'s proxy, live, across nodes; the agent down, the port refuses', async () => {
    const [db, client, other] = ['db-1', 'api-1', 'web-1'].map((n) => pods.find((p) => p.name === n)!);
    const http = spawn('ip', ['netns', 'exec', db!.ns.name, process.execPath, '-e', `
      require('http').createServer((q, r) => { q.resume(); q.on('end', () => r.end(q.method + ' ' + q.url + ' from the pod, asked by ' + q.socket.remoteAddress.replace('::ffff:', ''))); }).listen(${HTTP_PORT}, () => console.log('ready'));
    `]);
    servers.push(http);
    await new Promise<void>((resolve) => http.stdout!.once('data', () => resolve()));
    const cnp = (path: string) => ({
      metadata: { namespace: 'shop', name: 'data-readers' },
      spec: { endpointSelector: { matchLabels: { app: 'db' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'api' } }], toPorts: [{ ports: [{ port: String(HTTP_PORT), protocol: 'TCP' }], rules: { http: [{ method: 'GET', path }] } }] }] },
    });
    api.create('ciliumnetworkpolicies', cnp('/data'));
    await until('the proxy serving GET /data', async () => (await httpAsk(client!, db!.ip, [['GET', '/data']]))[0]![0] === 200, 30_000)
      .catch((e) => { throw new Error(`${e}\n${nodes[0]!.log}`); });
    const got = await httpAsk(client!, db!.ip, [['GET', '/data'], ['GET', '/admin'], ['POST', '/data']]);
    expect(got.map((g) => g[0])).toEqual([200, 403, 403]);
    // The ingress proxy runs on db-1's node; api-1 is a pod of the other node, so the request reaches db-1 from api-1's own address.
    expect(got[0]![1]).toBe(`GET /data from the pod, asked by ${client!.ip}`);
    expect(got[1]![1]).toMatch(/shop\/data-readers/);
    // One kept-alive connection: each request judged on its own.
    const kept = await httpAsk(client!, db!.ip, [['GET', '/data'], ['GET', '/admin'], ['GET', '/data']]);
    expect(kept.map((g) => g[0])).toEqual([200, 403, 200]);
    expect(new Set(kept.map((g) => g[2])).size).toBe(1);
    // A pod no rule selects never reaches the pod, not even for GET /data.
    expect((await httpAsk(other!, db!.ip, [['GET', '/data']]))[0]![0]).not.toBe(200);
    // Through a Service address, DNATed on the client's node as kube-proxy would (a stand-in table):
    // the same verdicts, the same original source.
    const kube = client!.node.scratch.path('kubemock.json');
    writeFileSync(kube, JSON.stringify({ nftables: [
      { add: { table: { family: 'ip', name: 'kubemock' } } },
      { add: { chain: { family: 'ip', table: 'kubemock', name: 'pre', type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' } } },
      { add: { rule: { family: 'ip', table: 'kubemock', chain: 'pre', expr: [
        { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: '10.96.0.10' } },
        { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: HTTP_PORT } },
        { dnat: { family: 'ip', addr: db!.ip, port: HTTP_PORT } }] } } },
    ] }));
    const applied = run(['netns', 'exec', client!.node.ns.name, 'nft', '-j', '-f', kube]);
    expect(applied.status, applied.stderr).toBe(0);
    try {
      const viaService = await httpAsk(client!, '10.96.0.10', [['GET', '/data'], ['GET', '/admin']]);
      expect(viaService.map((g) => g[0])).toEqual([200, 403]);
      expect(viaService[0]![1]).toBe(`GET /data from the pod, asked by ${client!.ip}`);
      expect((await httpAsk(other!, '10.96.0.10', [['GET', '/data']]))[0]![0]).not.toBe(200);
    } finally {
      run(['netns', 'exec', client!.node.ns.name, 'nft', 'delete', 'table', 'ip', 'kubemock']);
    }
    // The counters in the agent's /metrics.
    const metrics = await new Promise<string>((resolve) => execFile('curl', ['-s', '--unix-socket', join(nodes[0]!.stateDir, 'agent.sock'), 'http://agent/metrics'], { encoding: 'utf8' }, (_e, out) => resolve(out)));
    expect(metrics).toMatch(/nhi_l7_requests_total\{policy="shop\/data-readers",rule="[^"]+",verdict="allowed"\} [1-9]/);
    expect(metrics).toMatch(/nhi_l7_requests_total\{policy="shop\/data-readers",rule="-",verdict="denied"\} [1-9]/);
    // The same counts in `policy stats`, which asks the agent over its socket.
    const stats = spawnSync('ip', ['netns', 'exec', nodes[0]!.ns.name, BINARY, 'policy', 'stats', '--state-dir', nodes[0]!.stateDir, '-o', 'json'], { encoding: 'utf8' });
    expect(stats.status, stats.stderr).toBe(0);
    const l7 = stats.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.l7 === true);
    expect(l7).toContainEqual(expect.objectContaining({ policy: 'shop/data-readers', rule: 'spec.ingress[0].toPorts[0].rules.http[0]', allowed: expect.any(Number) }));
    expect(l7.find((r) => r.rule === 'spec.ingress[0].toPorts[0].rules.http[0]')!.allowed).toBeGreaterThanOrEqual(2);
    expect(l7.find((r) => r.rule === '-')).toMatchObject({ policy: 'shop/data-readers', allowed: 0 });
    expect(l7.find((r) => r.rule === '-')!.denied).toBeGreaterThanOrEqual(2);
    // `policy explain --http` on node-1 tells the same, from the policies the agent applied (api-1 is a pod of the other node).
    const explain = (req: string) => spawnSync('ip', ['netns', 'exec', nodes[0]!.ns.name, BINARY, 'policy', 'explain', '--config', join(nodes[0]!.confDir, '10-nhi-cni.conflist'),
      '--from', 'shop/api-1', '--to', 'shop/db-1', '--port', `${HTTP_PORT}/tcp`, '--http', req], { encoding: 'utf8' });
    const ok = explain('GET /data');
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/HTTP GET \/data: allowed by shop\/data-readers ingress rule spec\.ingress\[0\]\.toPorts\[0\]\.rules\.http\[0\]/);
    const no = explain('POST /data');
    expect(no.status).toBe(1);
    expect(no.stdout).toMatch(/HTTP POST \/data: DENIED \(403\) by .*shop\/data-readers/);
    // A policy edit through the API changes the next request's verdict.
    api.update('ciliumnetworkpolicies', cnp('/admin'));
    await until('GET /admin allowed after the edit', async () => (await httpAsk(client!, db!.ip, [['GET', '/admin']]))[0]![0] === 200);
    expect((await httpAsk(client!, db!.ip, [['GET', '/data']]))[0]![0]).toBe(403);
    // The agent stopped (SIGTERM, as a rolling update does; it must not hang on its proxy's
    // connections): the redirected port refuses; nothing reaches the pod unchecked.
    const n = nodes[0]!;
    const exited = new Promise((r) => n.agent!.once('exit', r));
    const t0 = Date.now();
    n.agent!.kill('SIGTERM');
    await exited;
    expect(Date.now() - t0).toBeLessThan(6000);
    const down = await httpAsk(client!, db!.ip, [['GET', '/admin']]);
    expect(down[0]![0]).toBe('error');
    startAgent(n);
    await until('the proxy back', async () => (await httpAsk(client!, db!.ip, [['GET', '/admin']]))[0]![0] === 200, 30_000);
    api.delete('ciliumnetworkpolicies', 'data-readers', 'shop');
    // Egress: api-1's own HTTP rule, enforced on its node (node-2) by that node's agent, whose proxy
    // reads each redirected connection's original destination (db-1, on node-1). db-1 stays isolated
    // (db-from-api, now with the HTTP port): node-1's kernel admits only api-1's own address, so the
    // proxy must forward from it.
    api.update('networkpolicies', {
      metadata: { namespace: 'shop', name: 'db-from-api' },
      spec: { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: DB_PORT, protocol: 'TCP' }, { port: SINK_PORT, protocol: 'UDP' }, { port: HTTP_PORT, protocol: 'TCP' }] }] },
    });
    try {
      api.create('ciliumnetworkpolicies', {
        metadata: { namespace: 'shop', name: 'api-egress' },
        spec: { endpointSelector: { matchLabels: { app: 'api' } }, egress: [{ toEndpoints: [{ matchLabels: { app: 'db' } }], toPorts: [{ ports: [{ port: String(HTTP_PORT), protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/data' }] } }] }] },
      });
      // Both nodes converged: node-2 enforcing the egress rule, node-1 admitting api-1 on the HTTP port (db-from-api edited).
      await until('the egress rule enforced and db-1 admitting api-1', async () => {
        const r = await httpAsk(client!, db!.ip, [['POST', '/data'], ['GET', '/data']]);
        return r[0]![0] === 403 && r[1]![0] === 200;
      }, 30_000)
        .catch((e) => { throw new Error(`${e}\n${client!.node.log}`); });
      const out = await httpAsk(client!, db!.ip, [['GET', '/data'], ['POST', '/data'], ['GET', '/admin']]);
      expect(out.map((g) => g[0])).toEqual([200, 403, 403]);
      expect(out[0]![1]).toBe(`GET /data from the pod, asked by ${client!.ip}`);
      expect(out[1]![1]).toMatch(/shop\/api-egress/);
      // web-1 has no egress rule (not redirected), and db-1's ingress does not admit it: the kernel drops it.
      expect((await httpAsk(other!, db!.ip, [['GET', '/data']]))[0]![0]).toBe('error');
      const egressMetrics = await new Promise<string>((resolve) => execFile('curl', ['-s', '--unix-socket', join(client!.node.stateDir, 'agent.sock'), 'http://agent/metrics'], { encoding: 'utf8' }, (_e, o) => resolve(o)));
      expect(egressMetrics).toMatch(/nhi_l7_requests_total\{policy="shop\/api-egress",rule="spec\.egress\[0\]\.toPorts\[0\]\.rules\.http\[0\]",verdict="allowed"\} [1-9]/);
      // Through a Service address DNATed on api-1's node: the agent listens on db-1's address there for api-1.
      const again = run(['netns', 'exec', client!.node.ns.name, 'nft', '-j', '-f', kube]);
      expect(again.status, again.stderr).toBe(0);
      try {
        const viaService = await httpAsk(client!, '10.96.0.10', [['GET', '/data'], ['POST', '/data']]);
        expect(viaService.map((g) => g[0])).toEqual([200, 403]);
        expect(viaService[0]![1]).toBe(`GET /data from the pod, asked by ${client!.ip}`);
        expect(viaService[1]![1]).toMatch(/shop\/api-egress/);
      } finally {
        run(['netns', 'exec', client!.node.ns.name, 'nft', 'delete', 'table', 'ip', 'kubemock']);
      }
    } finally {
      // Later tests use api-1's egress.
      api.delete('ciliumnetworkpolicies', 'api-egress', 'shop');
    }
    await until('api-1 egress open again', () => reaches(client!.ns, db!.ip, DB_PORT));
  }, 180_000);

  it('--encryption wireguard: each agent publishes its key on its Node, configures the other as a peer, and pod traffic crosses the underlay encrypted', async () => {
    const [db, client] = ['db-1', 'api-1'].map((n) => pods.find((p) => p.name === n)!);
    for (const n of nodes) {
      const exited = new Promise((r) => n.agent!.once('exit', r));
      n.agent!.kill('SIGTERM');
      await exited;
      startAgent(n, ['--encryption', 'wireguard']);
    }
    const keys = await until('both keys on the Node objects', () => {
      const k = nodes.map((n) => api.get('nodes', n.name)?.metadata?.annotations?.['nhi-cni.io/wireguard-public-key'] as string | undefined);
      return k.every((x) => x !== undefined && /^[A-Za-z0-9+/]{43}=$/.test(x)) ? (k as string[]) : undefined;
    }, 30_000).catch((e) => { throw new Error(`${e}\n${nodes.map((n) => n.log).join('\n')}`); });
    // The private key stays in the state dir, 0600; each node has the other's public key as its peer.
    for (const [i, n] of nodes.entries()) {
      expect(statSync(join(n.stateDir, 'wireguard.key')).mode & 0o777).toBe(0o600);
      const peers = await until(`${n.name}'s peer`, () => {
        const r = spawnSync('nsenter', ['-t', String(n.agent!.pid), '-m', '-n', '--', 'wg', 'show', 'nhi-wg', 'peers'], { encoding: 'utf8' });
        return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined;
      });
      expect(peers).toBe(keys[1 - i]);
    }
    // Allowed traffic still flows (the policy of the test before), and the underlay never carries its payload in clear.
    await until('api-1 -> db over WireGuard', () => reaches(client!.ns, db!.ip, DB_PORT));
    const sniff = spawn('ip', ['netns', 'exec', ul.name, 'python3', join(ROOT, 'test/helpers/sniff.py'), 'any', 'MARKER-7c1e', '2']);
    let out = '';
    sniff.stdout!.on('data', (d) => (out += d));
    await new Promise<void>((resolve) => sniff.stdout!.once('data', () => resolve()));
    const sent = spawnSync('ip', ['netns', 'exec', client!.ns.name, process.execPath, '-e', `
      const s = require('dgram').createSocket('udp4');
      s.send('MARKER-7c1e', ${SINK_PORT}, '${db!.ip}', () => s.close());
    `], { encoding: 'utf8' });
    expect(sent.status).toBe(0);
    await new Promise((r) => sniff.once('exit', r));
    const counted = JSON.parse(out.split('\n').filter((l) => l.startsWith('{')).pop()!);
    expect(counted.frames).toBeGreaterThan(0);
    expect(counted.hits).toBe(0);
  }, 150_000);

  it('a pod neither the agent nor the API knows is not wired, nothing left', async () => {
    const n = nodes[0]!;
    const ns = createNetns('nhip');
    try {
      const r = await n.runtime!.runAsync('add', 'nhi-cni', ns, { CNI_CONTAINERID: 'ctr-ghost', CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=ghost', NHI_CNI_RUN_DIR: n.scratch.path('run') });
      expect(r.status).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/pod shop\/ghost not found in the Kubernetes API/);
      expect(spawnSync('ip', ['-n', ns.name, 'link', 'show', 'eth0']).status).not.toBe(0);
    } finally {
      deleteNetns(ns);
    }
  });

  it('agent down: an ADD reads the pod from the API itself and is wired under the policies last applied; agent and API down: code 11, not wired; agent back: no gap', async () => {
    const n = nodes[0]!;
    const [db, client, other] = ['db-1', 'api-1', 'web-1'].map((x) => pods.find((p) => p.name === x)!);
    const exited = new Promise((r) => n.agent!.once('exit', r));
    n.agent!.kill('SIGKILL');
    await exited;
    // The kernel keeps enforcing what the agent last applied.
    expect(await reaches(client!.ns, db!.ip, DB_PORT)).toBe(true);
    expect(await reaches(other!.ns, db!.ip, DB_PORT)).toBe(false);
    // A second db pod starts on the node while its agent is down: wired, and the policy selects it at once.
    const db2 = await addPod(n, 'db-2', { app: 'db' });
    const server = await startServers(db2.ns, [DB_PORT]);
    servers.push(server);
    const rec = JSON.parse(readFileSync(join(n.stateDir, 'policy-state.json'), 'utf8'));
    expect(Object.values(rec.pods as Obj).find((p: Obj) => p.identity?.name === 'db-2')?.identity.labels).toEqual({ app: 'db' });
    expect(await reaches(client!.ns, db2.ip, DB_PORT)).toBe(true);
    expect(await reaches(other!.ns, db2.ip, DB_PORT)).toBe(false);
    // The API down as well: nobody can tell who a new pod is, so it is not wired.
    api.setAvailable(false);
    const ns = createNetns('nhip');
    try {
      api.setAvailable(true);
      api.create('pods', { metadata: { namespace: 'shop', name: 'db-3', labels: { app: 'db' } }, spec: { nodeName: n.name, containers: [{ name: 'c' }] }, status: { phase: 'Pending' } });
      api.setAvailable(false);
      const r = await n.runtime!.runAsync('add', 'nhi-cni', ns, { CNI_CONTAINERID: 'ctr-db-3', CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=db-3', NHI_CNI_RUN_DIR: n.scratch.path('run') });
      expect(r.status).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/cannot reach the Kubernetes API/);
      expect(spawnSync('ip', ['-n', ns.name, 'link', 'show', 'eth0']).status).not.toBe(0);
    } finally {
      api.setAvailable(true);
      deleteNetns(ns);
    }
    // Meanwhile a reservation of a previous boot (a pod the reboot took, whose DEL never came): the agent back releases it.
    const leakIp = '10.245.1.200';
    const db2Record = JSON.parse(readFileSync(join(n.stateDir, 'nhi-cni', 'attachments', 'ctr-db-2:eth0.json'), 'utf8'));
    writeFileSync(join(n.stateDir, 'nhi-cni', 'attachments', 'ctr-leak:eth0.json'), JSON.stringify({
      ...db2Record, containerId: 'ctr-leak', netns: '/var/run/netns/gone-with-the-reboot', hostVeth: 'veth0badf00d', ips: [`${leakIp}/24`], boot: '00000000-0000-0000-0000-000000000000',
    }));
    writeFileSync(join(n.scratch.path('ipam'), 'nhi-cni', leakIp), 'ctr-leak\r\neth0');
    // The agent back: the allowed flow never stopped, the denied one never opened.
    startAgent(n);
    const watch = (async () => {
      const seen = { allowedFailed: 0, deniedPassed: 0 };
      const end = Date.now() + 4000;
      while (Date.now() < end) {
        const [ok, bad] = await Promise.all([reaches(client!.ns, db!.ip, DB_PORT), reaches(other!.ns, db!.ip, DB_PORT)]);
        if (!ok) seen.allowedFailed++;
        if (bad) seen.deniedPassed++;
      }
      return seen;
    })();
    expect(await watch).toEqual({ allowedFailed: 0, deniedPassed: 0 });
    await until('the restarted agent ready', () => /"msg":"ready"/.test(n.log));
    await until('the leak released', () => !existsSync(join(n.scratch.path('ipam'), 'nhi-cni', leakIp)));
    // Its log line follows the release (the log is written asynchronously).
    await until('the release logged', () => /"ip":"10\.245\.1\.200".*"reason":"previous-boot".*released a dead reservation/.test(n.log));
    // db-2, alive, kept its address.
    expect(existsSync(join(n.scratch.path('ipam'), 'nhi-cni', db2.ip))).toBe(true);
    // `ipam check` on the node asks the agent which addresses the API's pods of this node hold:
    // a reservation nobody in the API holds is a lead (listed), never released on that alone.
    const orphan = '10.245.1.201';
    writeFileSync(join(n.scratch.path('ipam'), 'nhi-cni', orphan), 'ctr-unknown\r\neth0');
    await until('the agent to know db-2\'s address', async () => {
      const c = await new Promise<string>((resolve) => execFile('ip', ['netns', 'exec', n.ns.name, BINARY, 'ipam', 'check', '--all', '--data-dir', n.scratch.path('ipam'), '--state-dir', n.stateDir, '-o', 'json'], { encoding: 'utf8' }, (_e, out) => resolve(out)));
      const byIp = Object.fromEntries((JSON.parse(c).findings as Obj[]).map((f) => [f.ip, f]));
      if (byIp[db2.ip]?.inApi !== true) return undefined;
      expect(byIp[db!.ip]).toMatchObject({ state: 'live', inApi: true });
      expect(byIp[orphan]).toMatchObject({ state: 'unknown', inApi: false });
      return true;
    });
    rmSync(join(n.scratch.path('ipam'), 'nhi-cni', orphan));
    expect(existsSync(join(n.stateDir, 'nhi-cni', 'attachments', 'ctr-leak:eth0.json'))).toBe(false);
  }, 150_000);
});
