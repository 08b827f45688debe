// The redirect design of docs/l7.md, proven in throw-away namespaces (not yet
// the agent's wiring): a "node" namespace with a bridge and three pods; the
// nft redirect (src/l7/redirect.ts) sends connections to data:8080 to the L7
// proxy (src/l7/proxy.ts, in the node namespace, as the agent would run it).
// With the proxy: the seed's GET /data 200, POST /data and GET /admin 403, a
// stranger refused, an uncovered port on the kernel's path. Without it (the
// agent down), the covered port refuses connections: nothing reaches the pod
// unchecked; back up, it works again. Egress: a pod whose own egress HTTP
// rules cover a port has its connections to that port redirected by source
// to the proxy's egress listener, which reads each one's original
// destination from conntrack (SO_ORIGINAL_DST) and judges it there.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDivertRouting, redirectedExprs, redirectedSetType, redirectTransaction, L7_DIVERT, L7_TABLE } from '../../src/l7/redirect.js';
import { run } from '../../src/sys/exec.js';
import { chain, element, NftTransaction, rule, set, table } from '../../src/sys/nft.js';
import type { Identity } from '../../src/policy/model.js';
import { createNetns, deleteAllNetns, inNetns, type Netns } from '../helpers/netns.js';

const NODE_IP = '10.77.0.1';
const DATA = '10.77.0.2';
const READER = '10.77.0.3';
const STRANGER = '10.77.0.4';
const API = '10.77.0.5';
const OUTSIDE = '10.78.0.2';
const OUTSIDE_GW = '10.78.0.1';
const LISTEN = 15001;
const EGRESS_LISTEN = 15002;

const POLICY = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: data-readers, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: training-data}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: analytics, app: report-builder}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET, path: /data}]}}]
`;
// The reader's own egress: GET /data of the api pod, GET /v1/... of an address outside the cluster, on port 9090.
const EGRESS_POLICY = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reader-egress, namespace: analytics}
spec:
  endpointSelector: {matchLabels: {app: report-builder}}
  egress:
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ml, app: api}}]
      toPorts: [{ports: [{port: "9090", protocol: TCP}], rules: {http: [{method: GET, path: /data}]}}]
    - toCIDR: [10.78.0.0/24]
      toPorts: [{ports: [{port: "9090", protocol: TCP}], rules: {http: [{method: GET, path: "/v1/.*"}, {method: PUT, path: /v1/upload}]}}]
`;
const id = (namespace: string, name: string, app: string): Identity => ({ namespace, name, labels: { app }, namespaceLabels: {}, ports: [] });
const IDENTITIES: Record<string, Identity> = {
  [DATA]: id('ml', 'training-data', 'training-data'),
  [READER]: id('analytics', 'report-builder', 'report-builder'),
  [API]: id('ml', 'api', 'api'),
  // STRANGER: no identity (not a pod the agent knows).
};

const SERVER = `
const http = require('http');
let up = 0;
for (const port of [8080, 8081]) http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end(req.method + ' ' + req.url + ' on ' + port + ' from ' + req.socket.remoteAddress));
}).listen(port, '0.0.0.0', () => { if (++up === 2) console.log('ready'); });
`;

const SERVER_9090 = `
require('http').createServer((req, res) => {
  if (req.url === '/v1/big') {
    // 50 MB, written as the client reads it.
    res.writeHead(200, { 'content-length': 50 * 1024 * 1024 });
    const chunk = Buffer.alloc(64 * 1024, 7);
    let left = 800;
    const more = () => { while (left > 0) { left--; if (!res.write(chunk)) return res.once('drain', more); } res.end(); };
    return more();
  }
  let n = 0;
  req.on('data', (d) => { n += d.length; });
  req.on('end', () => res.end(req.url === '/v1/upload' ? 'got ' + n : req.method + ' ' + req.url + ' at ' + process.argv[1] + ' from ' + req.socket.remoteAddress));
}).listen(9090, '0.0.0.0', () => console.log('ready'));
`;

// 50 MB up (PUT, streamed from memory chunk by chunk) and down, through whatever takes the connection: "<upload answer> <bytes downloaded>".
const BIG_CLIENT = `
const http = require('http');
const [host] = [process.argv[1]];
const up = http.request({ host, port: 9090, method: 'PUT', path: '/v1/upload', agent: false, headers: { 'content-length': 50 * 1024 * 1024 } }, (res) => {
  let body = ''; res.on('data', (d) => { body += d; });
  res.on('end', () => {
    http.get({ host, port: 9090, path: '/v1/big', agent: false }, (r) => {
      let n = 0; r.on('data', (d) => { n += d.length; }); r.on('end', () => console.log(res.statusCode + ' ' + body + ' ' + r.statusCode + ' ' + n));
    }).on('error', (e) => console.log('error ' + e.code));
  });
});
up.on('error', (e) => console.log('error ' + e.code));
const chunk = Buffer.alloc(64 * 1024, 1);
let left = 800;
const more = () => { while (left > 0) { left--; if (!up.write(chunk)) return up.once('drain', more); } up.end(); };
more();
`;

const CLIENT = `
const [host, port, method, path] = [process.argv[1], Number(process.argv[2]), process.argv[3], process.argv[4]];
const req = require('http').request({ host, port, method, path, agent: false, timeout: 3000 }, (res) => {
  let body = '';
  res.on('data', (d) => { body += d; });
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
});
req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
req.on('error', (e) => console.log(JSON.stringify({ error: e.code || e.message })));
req.end();
`;

let node: Netns;
const pods: Record<string, Netns> = {};
let server: ChildProcess;
let proxy: ChildProcess | undefined;
let egressProxy: ChildProcess | undefined;
const servers: ChildProcess[] = [];
let dir: string;
let bundle: string;

function http(from: Netns, host: string, port: number, method: string, path: string): { status?: number; body?: string; error?: string } {
  const r = spawnSync('ip', ['netns', 'exec', from.name, process.execPath, '-e', CLIENT, host, String(port), method, path], { encoding: 'utf8', timeout: 10_000 });
  return JSON.parse(r.stdout.trim() || '{"error":"no output"}') as { status?: number; body?: string; error?: string };
}

/** Applies an nft transaction in the node namespace (through a file: nft reads its JSON there). */
function apply(t: NftTransaction): void {
  const file = join(dir, `t${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, t.json());
  inNetns(node, 'nft', ['-j', '-f', file]);
}

/** kube-proxy's DNAT of a ClusterIP (`service`:80 to `pod`:`port`), in a table of its own (ip kubemock). */
function kubeProxyStandIn(service: string, pod: string, port: number, prio: number): NftTransaction {
  return new NftTransaction('ip', 'kubemock').add(table(), chain('pre', { type: 'nat', hook: 'prerouting', prio, policy: 'accept' }))
    .add(rule('pre',
      { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: service } },
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 80 } },
      { dnat: { family: 'ip', addr: pod, port } }));
}

/** An input hook that drops by default (as a pod's egress profile would), with a set of (address . port) holding `elem`. */
function dropByDefaultInput(setName: string, elem: [string, number]): void {
  const input = chain('input', { type: 'filter', hook: 'input', prio: 0, policy: 'drop' });
  const established = rule('input', { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, { accept: null });
  apply(new NftTransaction('inet', 'l7mock').add(table(), set(setName, redirectedSetType(4)), input, established).add(element(setName, { concat: elem })));
}

async function spawnProxy(cfg: object): Promise<ChildProcess> {
  const p = spawn('ip', ['netns', 'exec', node.name, process.execPath, bundle, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    p.once('exit', (c) => reject(new Error(`proxy exited ${c}`)));
    p.stdout!.once('data', () => resolve());
  });
  return p;
}

async function startProxy(transparent = false): Promise<void> {
  proxy = await spawnProxy({ policies: POLICY, identities: IDENTITIES, dest: { ip: DATA, port: 8080 }, bind: { host: NODE_IP, port: LISTEN }, transparent });
}

async function kill(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null) return;
  const gone = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGKILL'); // as a crash would: no clean-up of anything
  await gone;
}

async function stopProxy(): Promise<void> {
  const p = proxy;
  proxy = undefined;
  await kill(p);
}

async function startServer(pod: Netns, script: string, ...args: string[]): Promise<ChildProcess> {
  const p = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', script, ...args]);
  servers.push(p);
  await new Promise<void>((resolve, reject) => {
    p.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    p.stdout!.once('data', () => resolve());
  });
  return p;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-l7ns-'));
  bundle = join(dir, 'proxy.mjs');
  await build({
    entryPoints: [join(import.meta.dirname, '../helpers/l7-proxy-child.ts')], bundle: true, platform: 'node', format: 'esm',
    outfile: bundle, logLevel: 'silent', banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  });
  node = createNetns('nhil7n');
  inNetns(node, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  inNetns(node, 'ip', ['addr', 'add', `${NODE_IP}/24`, 'dev', 'br0']);
  inNetns(node, 'ip', ['link', 'set', 'br0', 'up']);
  // Same-bridge traffic meets the inet hooks only through br_netfilter (as the policy table needs too).
  inNetns(node, 'sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=1']);
  // Routed traffic (to a Service address) is forwarded by the node, as on a real one.
  inNetns(node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  for (const [name, ip] of [['data', DATA], ['reader', READER], ['stranger', STRANGER], ['api', API]] as const) {
    const pod = createNetns(`nhil7${name[0]}`);
    const host = `l7${name}${process.pid.toString(36)}`.slice(0, 15);
    inNetns(node, 'ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod.name]);
    inNetns(node, 'ip', ['link', 'set', host, 'master', 'br0', 'up']);
    inNetns(pod, 'ip', ['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    inNetns(pod, 'ip', ['link', 'set', 'eth0', 'up']);
    inNetns(pod, 'ip', ['route', 'add', 'default', 'via', NODE_IP]);
    pods[name] = pod;
  }
  // A host outside the cluster, routed through the node (as the Internet would be).
  const outside = createNetns('nhil7o');
  const ext = `l7x${process.pid.toString(36)}`.slice(0, 15);
  inNetns(node, 'ip', ['link', 'add', ext, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.name]);
  inNetns(node, 'ip', ['addr', 'add', `${OUTSIDE_GW}/24`, 'dev', ext]);
  inNetns(node, 'ip', ['link', 'set', ext, 'up']);
  inNetns(outside, 'ip', ['addr', 'add', `${OUTSIDE}/24`, 'dev', 'eth0']);
  inNetns(outside, 'ip', ['link', 'set', 'eth0', 'up']);
  inNetns(outside, 'ip', ['route', 'add', 'default', 'via', OUTSIDE_GW]);
  pods.outside = outside;
  server = await startServer(pods.data!, SERVER);
  for (const name of ['api', 'stranger', 'outside']) await startServer(pods[name]!, SERVER_9090, name);
  apply(redirectTransaction([{ podIp: DATA, port: 8080, listenIp: NODE_IP, listenPort: LISTEN }]));
}, 60_000);

afterAll(async () => {
  await stopProxy();
  await kill(egressProxy);
  for (const s of servers) s.kill('SIGKILL');
  deleteAllNetns();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the nft redirect to the L7 proxy (design check, in namespaces)', () => {
  it('the redirect is in the node namespace only; the pod serves both ports (seen from the node, which is not redirected)', () => {
    expect(inNetns(node, 'nft', ['list', 'table', 'inet', L7_TABLE])).toContain(`dnat ip to ${NODE_IP}:${LISTEN}`);
    expect(http(node, DATA, 8080, 'GET', '/admin')).toEqual({ status: 200, body: `GET /admin on 8080 from ${NODE_IP}` });
  });

  it('agent down: the covered port refuses connections; the uncovered port answers directly', () => {
    expect(http(pods.reader!, DATA, 8080, 'GET', '/data')).toEqual({ error: 'ECONNREFUSED' });
    expect(http(pods.reader!, DATA, 8081, 'GET', '/admin')).toEqual({ status: 200, body: `GET /admin on 8081 from ${READER}` });
  });

  it("proxy up: the seed's GET /data 200 (through the proxy), POST /data and GET /admin 403, a stranger reset", async () => {
    await startProxy();
    const ok = http(pods.reader!, DATA, 8080, 'GET', '/data');
    // The pod sees the node's address: the proxy connects from the node (the original source is not kept yet).
    expect(ok).toEqual({ status: 200, body: `GET /data on 8080 from ${NODE_IP}` });
    expect(http(pods.reader!, DATA, 8080, 'POST', '/data')).toEqual({ status: 403, body: 'Access denied by network policy ml/data-readers\n' });
    expect(http(pods.reader!, DATA, 8080, 'GET', '/admin')).toMatchObject({ status: 403 });
    expect(http(pods.stranger!, DATA, 8080, 'GET', '/data')).toEqual({ error: 'ECONNRESET' });
  });

  it('agent killed: refused again at once; restarted: served again', async () => {
    await stopProxy();
    expect(http(pods.reader!, DATA, 8080, 'GET', '/data')).toEqual({ error: 'ECONNREFUSED' });
    await startProxy();
    expect(http(pods.reader!, DATA, 8080, 'GET', '/data')).toMatchObject({ status: 200 });
  });

  it("an input hook that drops by default (as a pod's egress profile would) lets through exactly the redirected connections with redirectedExprs()", () => {
    dropByDefaultInput('l7t4', [DATA, 8080]);
    try {
      // Without the rule: the redirected connection dies in the input hook.
      expect(http(pods.reader!, DATA, 8080, 'GET', '/data')).toEqual({ error: 'TIMEOUT' });
      apply(new NftTransaction('inet', 'l7mock').add(rule('input', ...redirectedExprs(4, 'l7t4'), { accept: null })));
      expect(http(pods.reader!, DATA, 8080, 'GET', '/data')).toMatchObject({ status: 200 });
      // Straight to the listener, no DNAT: still dropped.
      expect(http(pods.reader!, NODE_IP, LISTEN, 'GET', '/data')).toEqual({ error: 'TIMEOUT' });
    } finally {
      apply(new NftTransaction('inet', 'l7mock').delete(table()));
    }
  });

  it('a Service address: its DNAT runs first and escapes the redirect (an L4 allow would open the pod, the closed clause keeps it shut), and the Service path takes it to the proxy on the pod\'s own address', async () => {
    const SERVICE = '10.96.0.10';
    // kube-proxy's DNAT of a ClusterIP, ordered before the redirect (priority -101 < -99).
    apply(kubeProxyStandIn(SERVICE, DATA, 8080, -101));
    try {
      // As if the HTTP clause were compiled as an L4 allow: the pod answers GET /admin to the reader itself, unchecked.
      expect(http(pods.reader!, SERVICE, 80, 'GET', '/admin')).toEqual({ status: 200, body: `GET /admin on 8080 from ${READER}` });
      // What the compiler does (the clause allows nothing; the policy isolates the pod): the forward path drops it.
      apply(new NftTransaction('inet', 'profilemock').add(table(), chain('fwd', { type: 'filter', hook: 'forward', prio: 0, policy: 'accept' }))
        .add(rule('fwd',
          { match: { op: '==', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: DATA } },
          { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 8080 } },
          { drop: null })));
      expect(http(pods.reader!, SERVICE, 80, 'GET', '/admin')).toEqual({ error: 'TIMEOUT' });
      // The pod's address still goes through the proxy (input path, not forward).
      expect(http(pods.reader!, DATA, 8080, 'GET', '/data')).toMatchObject({ status: 200 });
      expect(http(pods.reader!, DATA, 8080, 'GET', '/admin')).toMatchObject({ status: 403 });

      // The Service path: marked after the Service's DNAT, routed to the node, where the proxy
      // listens on the pod's own address (transparent): the same verdicts as the pod's address.
      await ensureDivertRouting(4, (a) => run('ip', ['-n', node.name, ...a]));
      apply(redirectTransaction([{ podIp: DATA, port: 8080, listenIp: NODE_IP, listenPort: LISTEN }], { divert: true }));
      // Agent down: routed to the node, nobody listens on the pod's address there: no connection, nothing reaches the pod.
      await stopProxy();
      expect(http(pods.reader!, SERVICE, 80, 'GET', '/admin')).toMatchObject({ error: expect.stringMatching(/TIMEOUT|ECONNREFUSED|ECONNRESET/) });
      await startProxy(true);
      expect(http(pods.reader!, SERVICE, 80, 'GET', '/data')).toEqual({ status: 200, body: `GET /data on 8080 from ${NODE_IP}` });
      expect(http(pods.reader!, SERVICE, 80, 'GET', '/admin')).toEqual({ status: 403, body: 'Access denied by network policy ml/data-readers\n' });
      expect(http(pods.stranger!, SERVICE, 80, 'GET', '/data')).toEqual({ error: 'ECONNRESET' });
      // With the profile's drop gone too (as with no policy table at all), still only through the proxy.
      spawnSync('ip', ['netns', 'exec', node.name, 'nft', 'delete', 'table', 'inet', 'profilemock']);
      expect(http(pods.reader!, SERVICE, 80, 'GET', '/admin')).toMatchObject({ status: 403 });
      // The node's own connection to the pod is not taken by the listener on the pod's address.
      expect(http(node, DATA, 8080, 'GET', '/admin')).toEqual({ status: 200, body: `GET /admin on 8080 from ${NODE_IP}` });
    } finally {
      apply(new NftTransaction('ip', 'kubemock').delete(table()));
      spawnSync('ip', ['netns', 'exec', node.name, 'nft', 'delete', 'table', 'inet', 'profilemock']);
    }
  });
});

describe("egress: a pod's own HTTP rules, its connections redirected by source to the egress listener (SO_ORIGINAL_DST)", () => {
  const startEgress = async () => {
    egressProxy = await spawnProxy({ policies: EGRESS_POLICY, identities: IDENTITIES, dest: { original: 4 }, bind: { host: NODE_IP, port: EGRESS_LISTEN } });
  };

  beforeAll(() => {
    apply(redirectTransaction([
      { podIp: DATA, port: 8080, listenIp: NODE_IP, listenPort: LISTEN },
      { podIp: READER, port: 9090, listenIp: NODE_IP, listenPort: EGRESS_LISTEN, from: true },
    ]));
    expect(inNetns(node, 'nft', ['list', 'table', 'inet', L7_TABLE])).toContain(`ip saddr ${READER} tcp dport 9090 counter packets 0 bytes 0 dnat ip to ${NODE_IP}:${EGRESS_LISTEN}`);
  });

  it('agent down: the pod\'s covered port refuses, to any destination; another pod on the same port goes straight through', () => {
    expect(http(pods.reader!, API, 9090, 'GET', '/data')).toEqual({ error: 'ECONNREFUSED' });
    expect(http(pods.reader!, OUTSIDE, 9090, 'GET', '/v1/models')).toEqual({ error: 'ECONNREFUSED' });
    expect(http(pods.stranger!, API, 9090, 'POST', '/admin')).toEqual({ status: 200, body: `POST /admin at api from ${STRANGER}` });
  });

  it('proxy up: GET /data of the api pod 200, POST 403 naming the policy; outside the cluster GET /v1/... 200, GET /admin 403; a destination no rule allows reset', async () => {
    await startEgress();
    expect(http(pods.reader!, API, 9090, 'GET', '/data')).toEqual({ status: 200, body: `GET /data at api from ${NODE_IP}` });
    expect(http(pods.reader!, API, 9090, 'POST', '/data')).toEqual({ status: 403, body: 'Access denied by network policy analytics/reader-egress\n' });
    expect(http(pods.reader!, OUTSIDE, 9090, 'GET', '/v1/models')).toEqual({ status: 200, body: `GET /v1/models at outside from ${OUTSIDE_GW}` });
    expect(http(pods.reader!, OUTSIDE, 9090, 'GET', '/admin')).toMatchObject({ status: 403 });
    expect(http(pods.reader!, STRANGER, 9090, 'GET', '/data')).toEqual({ error: 'ECONNRESET' });
    // The ingress redirect is untouched by it: the reader's connection to data:8080 still goes to the ingress listener.
    expect(http(pods.reader!, DATA, 8080, 'GET', '/data')).toEqual({ status: 200, body: `GET /data on 8080 from ${NODE_IP}` });
    expect(http(pods.reader!, DATA, 8080, 'GET', '/admin')).toMatchObject({ status: 403 });
  });

  it('50 MB up and 50 MB down through the egress listener, to a host outside the cluster', () => {
    const r = spawnSync('ip', ['netns', 'exec', pods.reader!.name, process.execPath, '-e', BIG_CLIENT, OUTSIDE], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout.trim()).toBe(`200 got ${50 * 1024 * 1024} 200 ${50 * 1024 * 1024}`);
    // PUT elsewhere is not a rule: 403 before the body is read.
    expect(http(pods.reader!, OUTSIDE, 9090, 'PUT', '/v1/other')).toMatchObject({ status: 403 });
  }, 90_000);

  it('through a Service address (DNATed by a kube-proxy stand-in before any redirect): the Service path takes the reader\'s connection to the proxy on the backend\'s address; another pod\'s goes straight on', async () => {
    const SERVICE = '10.96.0.11';
    apply(kubeProxyStandIn(SERVICE, API, 9090, -100));
    try {
      await kill(egressProxy);
      egressProxy = await spawnProxy({ policies: EGRESS_POLICY, identities: IDENTITIES, dest: { original: 4 }, bind: { host: NODE_IP, port: EGRESS_LISTEN }, onPodAddress: [{ ip: API, port: 9090 }] });
      await ensureDivertRouting(4, (a) => run('ip', ['-n', node.name, ...a]));
      apply(redirectTransaction([
        { podIp: DATA, port: 8080, listenIp: NODE_IP, listenPort: LISTEN },
        { podIp: READER, port: 9090, listenIp: NODE_IP, listenPort: EGRESS_LISTEN, from: true },
      ], { divert: true, viaService: [{ src: READER, ip: API, port: 9090 }] }));
      expect(http(pods.reader!, SERVICE, 80, 'GET', '/data')).toEqual({ status: 200, body: `GET /data at api from ${NODE_IP}` });
      expect(http(pods.reader!, SERVICE, 80, 'POST', '/data')).toEqual({ status: 403, body: 'Access denied by network policy analytics/reader-egress\n' });
      // The stranger has no egress rule: its Service connection is not marked and reaches the pod itself.
      expect(http(pods.stranger!, SERVICE, 80, 'POST', '/data')).toEqual({ status: 200, body: `POST /data at api from ${STRANGER}` });
    } finally {
      spawnSync('ip', ['netns', 'exec', node.name, 'nft', 'delete', 'table', 'ip', 'kubemock']);
    }
  });

  it('straight to the egress listener (no DNAT, so no original destination): reset, nothing forwarded', () => {
    expect(http(pods.reader!, NODE_IP, EGRESS_LISTEN, 'GET', '/data')).toEqual({ error: 'ECONNRESET' });
    expect(http(pods.stranger!, NODE_IP, EGRESS_LISTEN, 'GET', '/data')).toEqual({ error: 'ECONNRESET' });
  });

  it('an input hook that drops by default lets the redirected connections of the pod through with redirectedExprs(…, "saddr"), and nothing else', () => {
    dropByDefaultInput('l7e4', [READER, 9090]);
    try {
      expect(http(pods.reader!, API, 9090, 'GET', '/data')).toEqual({ error: 'TIMEOUT' });
      apply(new NftTransaction('inet', 'l7mock').add(rule('input', ...redirectedExprs(4, 'l7e4', 'saddr'), { accept: null })));
      expect(http(pods.reader!, API, 9090, 'GET', '/data')).toMatchObject({ status: 200 });
      expect(http(pods.reader!, NODE_IP, EGRESS_LISTEN, 'GET', '/data')).toEqual({ error: 'TIMEOUT' });
    } finally {
      apply(new NftTransaction('inet', 'l7mock').delete(table()));
    }
  });

  it('agent killed: refused at once; restarted: served again', async () => {
    await kill(egressProxy);
    expect(http(pods.reader!, API, 9090, 'GET', '/data')).toEqual({ error: 'ECONNREFUSED' });
    await startEgress();
    expect(http(pods.reader!, API, 9090, 'GET', '/data')).toMatchObject({ status: 200 });
  });

  it("a pod of another node is reached from the requesting pod's own address: without the reply routing it cannot connect; with it, the far end sees the pod", async () => {
    // The host behind the node stands for a pod of another node (its kernel judges ingress by source address).
    await kill(egressProxy);
    const remote = { ...IDENTITIES, [OUTSIDE]: id('ml', 'remote-api', 'api') };
    egressProxy = await spawnProxy({ policies: EGRESS_POLICY, identities: remote, dest: { original: 4 }, bind: { host: NODE_IP, port: EGRESS_LISTEN }, transparentTo: [OUTSIDE], connectTimeoutMs: 1000 });
    // The replies, addressed to the reader, would be forwarded to it (which knows no such connection): no answer.
    apply(redirectTransaction([
      { podIp: DATA, port: 8080, listenIp: NODE_IP, listenPort: LISTEN },
      { podIp: READER, port: 9090, listenIp: NODE_IP, listenPort: EGRESS_LISTEN, from: true },
    ]));
    expect(http(pods.reader!, OUTSIDE, 9090, 'GET', '/data')).toMatchObject({ status: 504 });
    const ip = (a: string[]) => run('ip', ['-n', node.name, ...a]);
    await ensureDivertRouting(4, ip);
    await ensureDivertRouting(4, ip); // idempotent: one rule
    expect(JSON.parse(inNetns(node, 'ip', ['-4', '-j', 'rule', 'list', 'priority', String(L7_DIVERT.priority)]))).toHaveLength(1);
    apply(redirectTransaction([
      { podIp: DATA, port: 8080, listenIp: NODE_IP, listenPort: LISTEN },
      { podIp: READER, port: 9090, listenIp: NODE_IP, listenPort: EGRESS_LISTEN, from: true },
    ], { divert: true }));
    expect(http(pods.reader!, OUTSIDE, 9090, 'GET', '/data')).toEqual({ status: 200, body: `GET /data at outside from ${READER}` });
    expect(http(pods.reader!, OUTSIDE, 9090, 'POST', '/data')).toMatchObject({ status: 403 });
    // Kept-alive pools per source: another allowed request reuses it, still as the reader.
    expect(http(pods.reader!, OUTSIDE, 9090, 'GET', '/v1/x')).toEqual({ status: 200, body: `GET /v1/x at outside from ${READER}` });
    // The node's own connections are untouched by the divert: from the node, the outside host answers the node.
    expect(http(node, OUTSIDE, 9090, 'GET', '/n')).toEqual({ status: 200, body: `GET /n at outside from ${OUTSIDE_GW}` });
  });
});
