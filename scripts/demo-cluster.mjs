// The cluster demo (the second part of `npm run demo`): two "node" network
// namespaces on an underlay bridge, each running `nhi-cni agent` (the
// DaemonSet's container) against a Kubernetes API stand-in (the tests' own,
// test/helpers/kube-api.ts: HTTPS, tokens, list+watch), reached from inside
// each node through a relay. Pods are created as kubelet does: the Pod object
// in the API, the ADD through libcni with the conflist the agent wrote, then
// the Pod's status with its address. Then a NetworkPolicy is applied through
// the API and enforced across the nodes, live, and a label edit changes it.
// Touches nothing outside its namespaces and a temp dir.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { KubeApi } = await import(join(root, 'test/helpers/kube-api.ts'));
const BIN = join(root, 'dist/nhi-cni');
const CLIENT = join(root, 'dist/cni-client');
const RELAY = join(root, 'test/helpers/tcp-relay.mjs');
const tag = process.pid.toString(36);
const work = mkdtempSync(join(tmpdir(), 'nhi-demo-cluster-'));
const children = [];
const namespaces = [];

const bold = (s) => `\n\x1b[1m== ${s}\x1b[0m`;
const sh = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' });
const ip = (...args) => sh('ip', args);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, f, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(150);
  }
}
function netns(name) {
  ip('netns', 'add', name);
  namespaces.push(name);
  return name;
}
// Asynchronous: the API stand-in runs in this process and must keep serving.
const run = (cmd, args, env) => new Promise((resolve) => execFile(cmd, args, { encoding: 'utf8', env }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
const CONNECT = `const s=require('net').connect(+process.argv[2],process.argv[1]);const t=setTimeout(()=>{console.log('DENIED');process.exit(0)},1200);s.on('data',d=>{console.log('allowed, the server saw '+String(d).replace(/^::ffff:/,''));process.exit(0)});s.on('error',()=>{console.log('DENIED');process.exit(0)})`;
const tryConnect = async (from, host, port) => (await run('ip', ['netns', 'exec', from, process.execPath, '-e', CONNECT, host, String(port)])).stdout.trim();

let api;
async function cleanup() {
  for (const c of children) c.kill('SIGTERM');
  await sleep(300);
  for (const n of namespaces.reverse()) ip('netns', 'del', n);
  await api?.stop();
  rmSync(work, { recursive: true, force: true });
}
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

try {
  api = await KubeApi.start({ socketPath: join(work, 'api.sock') });
  api.create('namespaces', { metadata: { name: 'shop' } });
  const ul = netns(`nhidemo-ul-${tag}`);
  ip('-n', ul, 'link', 'add', 'ulbr', 'type', 'bridge');
  ip('-n', ul, 'link', 'set', 'ulbr', 'up');
  const nodes = [];
  for (const i of [1, 2]) {
    const ns = netns(`nhidemo-n${i}-${tag}`);
    const n = { i, name: `node-${i}`, ns, ip: `192.168.80.1${i}`, cidr: `10.246.${i}.0/24`, dir: join(work, `node-${i}`) };
    mkdirSync(join(n.dir, 'net.d'), { recursive: true });
    ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `u${i}`, 'netns', ul);
    ip('-n', ul, 'link', 'set', `u${i}`, 'master', 'ulbr', 'up');
    ip('-n', ns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    const relay = spawn('ip', ['netns', 'exec', ns, process.execPath, RELAY, '127.0.0.1', '6443', join(work, 'api.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(relay);
    await new Promise((r) => relay.stdout.once('data', r));
    api.create('nodes', { metadata: { name: n.name }, spec: { podCIDRs: [n.cidr] }, status: { addresses: [{ type: 'InternalIP', address: n.ip }] } });
    nodes.push(n);
  }

  console.log(bold('two nodes, an agent on each (nhi-cni agent, as the DaemonSet runs it)'));
  const kc = api.kubeconfig(api.token, 'https://127.0.0.1:6443');
  for (const n of nodes) {
    const args = ['agent', '--kubeconfig', kc, '--node-name', n.name, '--state-dir', join(n.dir, 'state'), '--conf-dir', join(n.dir, 'agent-net.d'),
      '--ipam-data-dir', join(n.dir, 'ipam'), '--cluster-cidr', '10.246.0.0/16', '--overlay', 'vxlan', '--node-ip', n.ip, '--debounce', '100'];
    console.log(`  ${n.name} (${n.ip}, pods ${n.cidr}): nhi-cni ${args.join(' ').replace(kc, '<kubeconfig>').replaceAll(work, '$WORK')}`);
    const a = spawn('ip', ['netns', 'exec', n.ns, BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH, NHI_CNI_LOG_LEVEL: 'warn' } });
    a.stderr.pipe(process.stderr);
    children.push(a);
  }
  for (const n of nodes) {
    const conf = join(n.dir, 'agent-net.d', '10-nhi-cni.conflist');
    await until(`${n.name}'s conflist`, () => existsSync(conf));
    const list = JSON.parse(readFileSync(conf, 'utf8'));
    const p = list.plugins[0];
    console.log(`  ${n.name} ready: conflist written with ranges ${JSON.stringify(p.ipam.ranges)}, mtu ${p.mtu} (VXLAN), clusterCIDR ${p.clusterCIDR}, policy ${JSON.stringify(p.policy).replace(work, '$WORK')}`);
    // The agent's conflist, where this demo's "kubelet" reads it (IPAM data in the demo's directory: --ipam-data-dir).
    writeFileSync(join(n.dir, 'net.d', '10-nhi-cni.conflist'), JSON.stringify(list));
  }
  const routes = ip('-n', nodes[0].ns, 'route', 'show', 'proto', '93').stdout.trim();
  console.log(`  ${nodes[0].name}'s route to the other node's pods: ${routes}`);

  console.log(bold('pods, created as kubelet does: Pod in the API, ADD through libcni naming it, then its status'));
  const pods = {};
  const podSpec = [['db-1', nodes[0], { app: 'db' }], ['api-1', nodes[1], { app: 'api' }], ['web-1', nodes[1], { app: 'web' }]];
  for (const [name, n, labels] of podSpec) {
    api.create('pods', { metadata: { namespace: 'shop', name, labels }, spec: { nodeName: n.name, containers: [{ name: 'c' }] }, status: { phase: 'Pending' } });
    const ns = netns(`nhidemo-${name}-${tag}`);
    const t0 = performance.now();
    const r = await run('ip', ['netns', 'exec', n.ns, CLIENT, 'add', 'nhi-cni', `/var/run/netns/${ns}`], {
      PATH: process.env.PATH, NETCONFPATH: join(n.dir, 'net.d'), CNI_PATH: `${join(root, 'dist')}:/usr/lib/cni`, CNI_CACHE_DIR: join(n.dir, 'cache'),
      CNI_CONTAINERID: `ctr-${name}`, CNI_ARGS: `K8S_POD_NAMESPACE=shop;K8S_POD_NAME=${name}`, NHI_CNI_RUN_DIR: join(n.dir, 'run'), NHI_CNI_TRACE_EXEC: process.env.DEMO_TRACE ? '1' : '0',
    });
    if (r.code !== 0) throw new Error(`ADD of ${name}: ${r.stdout}${r.stderr}`);
    if (process.env.DEMO_TRACE) console.log(r.stderr);
    const addr = JSON.parse(r.stdout).ips[0].address.split('/')[0];
    api.patch('pods', name, 'shop', { status: { phase: 'Running', podIP: addr, podIPs: [{ ip: addr }] } });
    pods[name] = { ns, ip: addr };
    console.log(`  shop/${name} ${JSON.stringify(labels)} on ${n.name}: ${addr} (ADD ${Math.round(performance.now() - t0)} ms, identity from the agent)`);
  }
  // db-1 answers every connection with the address it saw (no NAT between nodes).
  const server = spawn('ip', ['netns', 'exec', pods['db-1'].ns, process.execPath, '-e', "require('net').createServer(s=>s.end(s.remoteAddress)).listen(5432,()=>console.log('up'))"]);
  children.push(server);
  await new Promise((r) => server.stdout.once('data', r));
  await until('both agents to know every pod', () => nodes.every((n) => {
    const f = join(n.dir, 'state', 'policy-state.json');
    if (!existsSync(f)) return false;
    const s = JSON.parse(readFileSync(f, 'utf8'));
    const known = new Set([...Object.values(s.pods).flatMap((p) => p.ips), ...(s.remote ?? []).flatMap((p) => p.ips)]);
    return Object.values(pods).every((p) => known.has(p.ip));
  }));

  const matrix = async (title) => {
    console.log(`  ${title}`);
    for (const from of ['api-1', 'web-1']) console.log(`    ${from} (node-2) -> db-1:5432 (node-1)   ${await tryConnect(pods[from].ns, pods['db-1'].ip, 5432)}`);
  };
  console.log(bold('across nodes over VXLAN, no policy yet'));
  await matrix('every pod reaches the db, which sees the pod\'s own address:');

  console.log(bold('kubectl apply: a NetworkPolicy through the API, enforced on every node within a second'));
  api.create('networkpolicies', {
    metadata: { namespace: 'shop', name: 'db-from-api' },
    spec: { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: 5432, protocol: 'TCP' }] }] },
  });
  console.log('  shop/db-from-api: pods app=db accept TCP 5432 from pods app=api only');
  const t0 = performance.now();
  await until('the policy', async () => (await tryConnect(pods['web-1'].ns, pods['db-1'].ip, 5432)) === 'DENIED');
  // A denied try is only known as such after its 1.2 s wait for an answer.
  console.log(`  web-1 seen denied ${Math.round(performance.now() - t0)} ms after the API write (including that try's 1.2 s wait for an answer)`);
  await matrix('now:');

  console.log(bold('kubectl label pod web-1 app=api: the verdict follows the labels, no CNI call'));
  api.patch('pods', 'web-1', 'shop', { metadata: { labels: { app: 'api' } } });
  await until('the relabel', async () => (await tryConnect(pods['web-1'].ns, pods['db-1'].ip, 5432)) !== 'DENIED');
  await matrix('now:');

  console.log(bold('L7: the seed\'s CiliumNetworkPolicy, GET /data only, enforced by the agent\'s HTTP proxy'));
  const web = spawn('ip', ['netns', 'exec', pods['db-1'].ns, process.execPath, '-e', "require('http').createServer((q,r)=>{q.resume();q.on('end',()=>r.end('the pod answered '+q.method+' '+q.url+', asked by '+q.socket.remoteAddress.replace('::ffff:','')))}).listen(8080,()=>console.log('up'))"]);
  children.push(web);
  await new Promise((r) => web.stdout.once('data', r));
  api.create('ciliumnetworkpolicies', {
    metadata: { namespace: 'shop', name: 'data-readers' },
    spec: { endpointSelector: { matchLabels: { app: 'db' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'api' } }], toPorts: [{ ports: [{ port: '8080', protocol: 'TCP' }], rules: { http: [{ method: 'GET', path: '/data' }] } }] }] },
  });
  console.log('  shop/data-readers: pods app=api may GET /data on db:8080, nothing else');
  const HTTP = `const [h, m, p] = process.argv.slice(1); const r = require('http').request({ host: h, port: 8080, method: m, path: p, timeout: 1500 }, (s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => { console.log(s.statusCode + ' ' + b.trim().split('\\n')[0]); process.exit(0); }); }); r.on('error', (e) => { console.log('refused (' + e.code + ')'); process.exit(0); }); r.on('timeout', () => r.destroy()); r.end(m === 'POST' ? 'x' : undefined);`;
  const httpTry = async (from, m, p) => (await run('ip', ['netns', 'exec', pods[from].ns, process.execPath, '-e', HTTP, pods['db-1'].ip, m, p])).stdout.trim();
  await until('the proxy', async () => (await httpTry('api-1', 'GET', '/data')).startsWith('200'));
  for (const [m, p] of [['GET', '/data'], ['POST', '/data'], ['GET', '/admin']]) console.log(`    api-1 ${m} ${p}`.padEnd(28) + await httpTry('api-1', m, p));

  console.log(bold('nhi-cni status on node-1 (asks its agent over the socket)'));
  const st = sh('ip', ['netns', 'exec', nodes[0].ns, BIN, 'status', '--state-dir', join(nodes[0].dir, 'state')]);
  console.log(st.stdout.replaceAll(work, '$WORK').split('\n').map((l) => `  ${l}`).join('\n'));

  for (const [name, n] of podSpec.map(([name, n]) => [name, n])) {
    await run('ip', ['netns', 'exec', n.ns, CLIENT, 'del', 'nhi-cni', `/var/run/netns/${pods[name].ns}`], {
      PATH: process.env.PATH, NETCONFPATH: join(n.dir, 'net.d'), CNI_PATH: `${join(root, 'dist')}:/usr/lib/cni`, CNI_CACHE_DIR: join(n.dir, 'cache'),
      CNI_CONTAINERID: `ctr-${name}`, CNI_ARGS: `K8S_POD_NAMESPACE=shop;K8S_POD_NAME=${name}`, NHI_CNI_RUN_DIR: join(n.dir, 'run'),
    });
  }
  console.log(bold('pods deleted; agents stopped; namespaces removed'));
} finally {
  await cleanup();
}
