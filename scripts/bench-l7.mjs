#!/usr/bin/env node
// npm run bench:l7 — requests/s and p50/p99 latency of HTTP through the L7
// proxy (src/l7/proxy.ts) against the same server directly, kept-alive and
// one connection per request, in one run. Loopback only (127.0.0.x), no root:
// the proxy and the server each run in their own process, as the agent and
// the pod would; the client is this process. Not a test: numbers for the
// README. Issue 13's target: p50 overhead <= 1 ms, and >= 50 % of direct
// kept-alive throughput.
//
//   node scripts/bench-l7.mjs [--requests N] [--concurrency C] [--json]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const ROOT = join(fileURLToPath(import.meta.url), '../..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const N = opt('requests', 4000);
const C = opt('concurrency', 8);
const JSON_OUT = args.includes('--json');
const CLIENT_IP = '127.0.0.2';

const SERVER = `
require('http').createServer((req, res) => { req.resume(); req.on('end', () => res.end('data')); })
  .listen(0, '127.0.0.1', function () { console.log(JSON.stringify({ port: this.address().port })); });
`;

function child(cmd, argv) {
  const p = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    p.once('exit', (c) => reject(new Error(`${argv[0]} exited ${c}`)));
    p.stdout.once('data', (d) => resolve({ p, port: JSON.parse(d.toString()).port }));
  });
}

function once(port, agent) {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    const req = request({ host: '127.0.0.1', port, path: '/data', localAddress: CLIENT_IP, agent }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - t) / 1e6) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** n requests over `conns` parallel lanes (kept-alive: one socket each; otherwise a new connection per request). */
async function run(port, n, conns, keepAlive) {
  const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: conns }) : false;
  const lat = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conns }, async () => {
    while (next < n) {
      next++;
      lat.push(await once(port, agent));
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  if (agent) agent.destroy();
  lat.sort((a, b) => a - b);
  const q = (f) => lat[Math.min(lat.length - 1, Math.floor(f * lat.length))];
  return { rps: Math.round(n / secs), p50: q(0.5), p99: q(0.99) };
}

const dir = mkdtempSync(join(tmpdir(), 'nhi-bench-l7-'));
const kids = [];
try {
  const bundle = join(dir, 'proxy.mjs');
  await build({
    entryPoints: [join(ROOT, 'test/helpers/l7-proxy-child.ts')], bundle: true, platform: 'node', format: 'esm',
    outfile: bundle, logLevel: 'silent', banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  });
  const server = await child(process.execPath, ['-e', SERVER]);
  kids.push(server.p);
  const id = (namespace, name, app) => ({ namespace, name, labels: { app }, namespaceLabels: {}, ports: [] });
  const policies = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: data-readers, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: training-data}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: analytics, app: report-builder}}]
      toPorts: [{ports: [{port: "${server.port}", protocol: TCP}], rules: {http: [{method: GET, path: /data}]}}]
`;
  const cfg = { policies, identities: { '127.0.0.1': id('ml', 'training-data', 'training-data'), [CLIENT_IP]: id('analytics', 'report-builder', 'report-builder') }, dest: { ip: '127.0.0.1', port: server.port } };
  const proxy = await child(process.execPath, [bundle, JSON.stringify(cfg)]);
  kids.push(proxy.p);

  const rows = [];
  for (const [mode, conns, keepAlive] of [['kept-alive, 1 connection', 1, true], [`kept-alive, ${C} connections`, C, true], ['new connection each, 1 at a time', 1, false]]) {
    const n = keepAlive ? N : Math.ceil(N / 4);
    await run(server.port, Math.min(200, n), conns, keepAlive); // warm-up
    await run(proxy.port, Math.min(200, n), conns, keepAlive);
    const direct = await run(server.port, n, conns, keepAlive);
    const proxied = await run(proxy.port, n, conns, keepAlive);
    rows.push({ mode, direct, proxied, p50Overhead: proxied.p50 - direct.p50, throughput: proxied.rps / direct.rps });
  }
  if (JSON_OUT) {
    console.log(JSON.stringify(rows, null, 2));
  } else {
    const f = (x) => x.toFixed(2);
    console.log(`L7 proxy vs direct, ${N} requests (GET /data, 4-byte body), Node ${process.version}, ${(await import('node:os')).cpus().length} CPUs`);
    console.log('| mode | direct req/s | proxy req/s | proxy/direct | direct p50 / p99 ms | proxy p50 / p99 ms | p50 overhead ms |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rows) {
      console.log(`| ${r.mode} | ${r.direct.rps} | ${r.proxied.rps} | ${Math.round(r.throughput * 100)} % | ${f(r.direct.p50)} / ${f(r.direct.p99)} | ${f(r.proxied.p50)} / ${f(r.proxied.p99)} | ${f(r.p50Overhead)} |`);
    }
  }
} finally {
  for (const k of kids) k.kill();
  rmSync(dir, { recursive: true, force: true });
}
