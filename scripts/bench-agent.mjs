// npm run bench:cluster (also bench:agent; not a test): what the agent costs
// and how fast the API reaches the kernel. Starts the API stand-in
// (test/helpers/kube-api.ts, loaded through Node's type stripping) with PODS
// pods on 3 nodes, NAMESPACES namespaces and POLICIES NetworkPolicies, runs
// dist/nhi-cni agent in a network namespace of its own (it programs nftables:
// never the machine's), reaching the stand-in through a relay, and prints:
// time to ready, RSS when ready and after an idle period, idle CPU, and the
// latency from an API change (a pod relabelled on another node, a policy
// created) to the nft transaction committed (debounce included). Also the
// bundle sizes. Run as root.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { KubeApi } = await import(join(root, 'test/helpers/kube-api.ts'));
const PODS = Number(process.env.PODS ?? 1000);
const POLICIES = Number(process.env.POLICIES ?? 200);
const NAMESPACES = Number(process.env.NAMESPACES ?? 20);
const EDITS = Number(process.env.EDITS ?? 30);
const DEBOUNCE = process.env.DEBOUNCE ?? '100';

const dir = mkdtempSync(join(tmpdir(), 'nhi-bench-agent-'));
const api = await KubeApi.start({ socketPath: join(dir, 'api.sock') });
const ns = `nhibench-${process.pid.toString(36)}`;
spawnSync('ip', ['netns', 'add', ns]);
spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
const relay = spawn('ip', ['netns', 'exec', ns, process.execPath, join(root, 'test/helpers/tcp-relay.mjs'), '127.0.0.1', '6443', join(dir, 'api.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((r) => relay.stdout.once('data', r));
let agent;
const cleanup = () => {
  agent?.kill('SIGTERM');
  relay.kill();
  spawnSync('ip', ['netns', 'del', ns]);
  rmSync(dir, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { cleanup(); process.exit(130); });
for (let n = 0; n < NAMESPACES; n++) api.create('namespaces', { metadata: { name: `ns-${n}`, labels: { team: `t${n % 5}` } } });
for (let n = 1; n <= 3; n++) api.create('nodes', { metadata: { name: `n${n}` }, spec: { podCIDRs: [`10.244.${n}.0/24`] }, status: { addresses: [{ type: 'InternalIP', address: `192.168.0.${n}` }] } });
for (let i = 0; i < PODS; i++) {
  const node = (i % 3) + 1;
  api.create('pods', {
    metadata: { namespace: `ns-${i % NAMESPACES}`, name: `pod-${i}`, labels: { app: `app-${i % 50}`, tier: i % 2 ? 'web' : 'db' } },
    spec: { nodeName: `n${node}`, serviceAccountName: 'default', containers: [{ name: 'c', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] }] },
    status: { phase: 'Running', podIPs: [{ ip: `10.${244 + Math.floor(i / 65000)}.${node}.${(i % 250) + 2}` }] },
  });
}
for (let i = 0; i < POLICIES; i++) {
  api.create('networkpolicies', {
    metadata: { namespace: `ns-${i % NAMESPACES}`, name: `pol-${i}` },
    spec: { podSelector: { matchLabels: { app: `app-${i % 50}` } }, policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: `t${i % 5}` } }, podSelector: { matchLabels: { tier: 'web' } } }], ports: [{ port: 8080, protocol: 'TCP' }] }] },
  });
}

const port = 20000 + Math.floor(Math.random() * 20000);
const sock = join(dir, 'state', 'agent.sock');
const t0 = performance.now();
agent = spawn('ip', ['netns', 'exec', ns, join(root, 'dist/nhi-cni'), 'agent', '--kubeconfig', api.kubeconfig(api.token, 'https://127.0.0.1:6443'), '--node-name', 'n1', '--overlay', 'none', '--ipam-data-dir', join(dir, 'ipam'), '--state-dir', join(dir, 'state'), '--conf-dir', join(dir, 'net.d'), '--listen', `127.0.0.1:${port}`, '--debounce', DEBOUNCE], { stdio: ['ignore', 'ignore', process.env.AGENT_LOG ? 'inherit' : 'ignore'], env: { PATH: process.env.PATH, NHI_CNI_LOG_LEVEL: process.env.AGENT_LOG ?? 'warn' } });

const get = (path) => new Promise((resolve, reject) => {
  const req = request({ socketPath: sock, path }, (res) => {
    let body = '';
    res.on('data', (c) => (body += c));
    res.on('end', () => resolve({ status: res.statusCode, body }));
  });
  req.on('error', reject);
  req.end();
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// `ip netns exec` execs the agent: the pid is the agent's.
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))[1]) / 1024;
const cpu = () => {
  const f = readFileSync(`/proc/${agent.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, clock ticks of 10 ms
};

for (;;) {
  try {
    if ((await get('/readyz')).status === 200) break;
  } catch {}
  await sleep(10);
}
const readyMs = performance.now() - t0;
const rssReady = rss();
const cpu0 = cpu();
await sleep(10_000);
const idleCpu = (cpu() - cpu0) / 10;
const rssIdle = rss();

const applies = async () => JSON.parse((await get('/status')).body).sync.applies;
const lat = [];
for (let e = 0; e < EDITS; e++) {
  const before = await applies();
  const t = performance.now();
  api.patch('pods', `pod-${e}`, `ns-${e % NAMESPACES}`, { metadata: { labels: { edit: String(e) } } });
  while ((await applies()) === before) await sleep(2);
  lat.push(performance.now() - t);
  await sleep(50);
}
const polLat = [];
for (let e = 0; e < Math.min(EDITS, 20); e++) {
  const before = await applies();
  const t = performance.now();
  api.create('networkpolicies', {
    metadata: { namespace: `ns-${e % NAMESPACES}`, name: `bench-${e}` },
    spec: { podSelector: { matchLabels: { app: `app-${e % 50}` } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { tier: 'db' } } }] }] },
  });
  while ((await applies()) === before) await sleep(2);
  polLat.push(performance.now() - t);
  await sleep(50);
}
// ADD with the agent (identity asked over its socket, the agent's policies and peers in the
// transaction) against the same conflist without its policy section (no enforcement), alternated,
// through libcni as a runtime calls it; each pod exists in the API before its ADD, as with kubelet.
const ADDS = Number(process.env.ADDS ?? 20);
const conf = JSON.parse(readFileSync(join(dir, 'net.d', '10-nhi-cni.conflist'), 'utf8'));
const plain = structuredClone(conf);
delete plain.plugins[0].policy;
plain.name = 'plain';
plain.plugins[0].bridge = 'nhi1';
plain.plugins[0].ipam.ranges = [[{ subnet: '10.99.0.0/24' }]];
const lists = { agent: join(dir, 'lists-agent'), plain: join(dir, 'lists-plain') };
mkdirSync(lists.agent, { recursive: true });
mkdirSync(lists.plain, { recursive: true });
writeFileSync(join(lists.agent, '10-nhi-cni.conflist'), JSON.stringify(conf));
writeFileSync(join(lists.plain, '10-plain.conflist'), JSON.stringify(plain));
const cni = (verb, list, network, pod, name) => new Promise((resolve) => {
  const t = performance.now();
  execFile('ip', ['netns', 'exec', ns, join(root, 'dist/cni-client'), verb, network, `/var/run/netns/${pod}`], {
    env: { PATH: process.env.PATH, NETCONFPATH: list, CNI_PATH: `${join(root, 'dist')}:/usr/lib/cni`, CNI_CACHE_DIR: join(dir, 'cache'), CNI_CONTAINERID: `bench-${name}`, CNI_ARGS: `K8S_POD_NAMESPACE=ns-0;K8S_POD_NAME=${name}`, NHI_CNI_RUN_DIR: join(dir, 'run') },
  }, (err, _o, stderr) => resolve({ ms: performance.now() - t, ok: !err, stderr }));
});
const addMs = { agent: [], plain: [] };
for (let i = 0; i < ADDS; i++) {
  for (const mode of i % 2 ? ['plain', 'agent'] : ['agent', 'plain']) {
    const name = `add-${mode}-${i}`;
    const pod = `nhibp-${process.pid.toString(36)}-${i}-${mode}`;
    spawnSync('ip', ['netns', 'add', pod]);
    if (mode === 'agent') api.create('pods', { metadata: { namespace: 'ns-0', name, labels: { app: 'app-0', tier: 'db' } }, spec: { nodeName: 'n1', containers: [{ name: 'c' }] }, status: { phase: 'Pending' } });
    const net = mode === 'agent' ? 'nhi-cni' : 'plain';
    const r = await cni('add', lists[mode], net, pod, name);
    if (!r.ok) throw new Error(`ADD (${mode}) failed: ${r.stderr}`);
    addMs[mode].push(r.ms);
    await cni('del', lists[mode], net, pod, name);
    spawnSync('ip', ['netns', 'del', pod]);
  }
}
const sorted = (l) => [...l].sort((a, b) => a - b);
const pctOf = (l, p) => sorted(l)[Math.min(l.length - 1, Math.ceil((p / 100) * l.length) - 1)];
const pct = (p) => pctOf(lat, p);
const tableSize = spawnSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'inet', 'nhi_policy'], { encoding: 'utf8' }).stdout.split('\n').length;
const size = (f) => (statSync(join(root, 'dist', f)).size / 1e6).toFixed(2);
console.log(`agent bench: ${PODS} pods on 3 nodes, ${NAMESPACES} namespaces, ${POLICIES} NetworkPolicies, debounce ${DEBOUNCE} ms`);
console.log(`  bundles: main.cjs ${size('main.cjs')} MB, lazy/agent.cjs ${size('lazy/agent.cjs')} MB (SEA asset), binary ${size('nhi-cni')} MB`);
console.log(`  start to ready (lists, first view, conflist): ${readyMs.toFixed(0)} ms`);
console.log(`  RSS: ${rssReady.toFixed(0)} MB when ready, ${rssIdle.toFixed(0)} MB after 10 s idle; idle CPU ${(idleCpu * 100).toFixed(1)} %`);
console.log(`  API change -> nft transaction committed (debounce included):`);
console.log(`    ${EDITS} relabels of pods (on any node): p50 ${pct(50).toFixed(0)} ms, p99 ${pct(99).toFixed(0)} ms`);
console.log(`    ${polLat.length} NetworkPolicies created: p50 ${pctOf(polLat, 50).toFixed(0)} ms, p99 ${pctOf(polLat, 99).toFixed(0)} ms`);
console.log(`  the policy table: ${tableSize} lines (nft list table inet nhi_policy)`);
console.log(`  ADD through libcni (nhi-cni + portmap + bandwidth), ${ADDS} each, alternated:`);
console.log(`    cluster mode (identity from the agent, ${POLICIES} policies and the peers in the transaction): p50 ${pctOf(addMs.agent, 50).toFixed(0)} ms, p90 ${pctOf(addMs.agent, 90).toFixed(0)} ms`);
console.log(`    the same conflist without its policy section (no enforcement):                p50 ${pctOf(addMs.plain, 50).toFixed(0)} ms, p90 ${pctOf(addMs.plain, 90).toFixed(0)} ms`);
agent.kill('SIGTERM');
await new Promise((r) => agent.once('exit', r));
relay.kill();
spawnSync('ip', ['netns', 'del', ns]);
await api.stop();
rmSync(dir, { recursive: true, force: true });
