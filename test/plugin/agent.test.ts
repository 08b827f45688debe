// `nhi-cni agent`, the built binary, against the Kubernetes API stand-in
// (test/helpers/kube-api.ts) through @kubernetes/client-node, as against a
// real API. The agent runs inside a test network namespace (its --listen port
// is not on the host); it reaches the stand-in through a relay in that
// namespace to the stand-in's unix socket. What the agent hands its sink is
// read from its socket (GET /view, root only): the view it last applied.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApi, type Obj } from '../helpers/kube-api.js';
import { createNetns, deleteNetns, type Netns } from '../helpers/netns.js';
import { BINARY, ROOT } from '../helpers/paths.js';
import { invoke, invokeAsync } from '../helpers/plugin.js';

const RELAY = join(ROOT, 'test/helpers/tcp-relay.mjs');
const API_PORT = 6443;

let dir: string;
let api: KubeApi;
let ns: Netns;
let relay: ChildProcess;

interface Running {
  proc: ChildProcess;
  stateDir: string;
  confDir: string;
  log: () => string;
  stop: () => Promise<void>;
}
const running: Running[] = [];

function pod(namespace: string, name: string, node: string, ip: string | undefined, labels: Record<string, string> = {}, extra: Obj = {}): Obj {
  return {
    metadata: { namespace, name, labels },
    spec: { nodeName: node, serviceAccountName: 'default', containers: [{ name: 'c', image: 'x', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
    status: ip ? { phase: 'Running', podIP: ip, podIPs: [{ ip }] } : { phase: 'Pending' },
    ...extra,
  };
}

const netpol = (namespace: string, name: string, app: string): Obj => ({
  metadata: { namespace, name },
  spec: { podSelector: { matchLabels: { app } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'client' } } }], ports: [{ port: 8080, protocol: 'TCP' }] }] },
});

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function get(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const view = async (a: Running): Promise<any> => JSON.parse((await get(join(a.stateDir, 'agent.sock'), '/view')).body);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const status = async (a: Running): Promise<any> => JSON.parse((await get(join(a.stateDir, 'agent.sock'), '/status')).body);
const metrics = async (a: Running): Promise<string> => (await get(join(a.stateDir, 'agent.sock'), '/metrics')).body;

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  if (!line) throw new Error(`no ${name}${labels} in metrics`);
  return Number(line.split(' ')[1]);
}

async function startAgent(opts: { token?: string; port?: number; args?: string[] } = {}): Promise<Running> {
  const stateDir = mkdtempSync(join(dir, 'state-'));
  const confDir = join(stateDir, 'net.d');
  const kc = api.kubeconfig(opts.token ?? api.token, `https://127.0.0.1:${API_PORT}`);
  const proc = spawn('ip', ['netns', 'exec', ns.name, BINARY, 'agent', '--kubeconfig', kc, '--node-name', 'n1', '--state-dir', stateDir, '--conf-dir', confDir, '--listen', `127.0.0.1:${opts.port ?? 9190}`, '--cluster-cidr', '10.244.0.0/16,fd00:10:244::/56', '--stale-after', '3', '--debounce', '150', '--overlay', 'none', ...(opts.args ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH, NHI_CNI_LOG_LEVEL: 'info' },
  });
  let log = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (c: string) => (log += c));
  const r: Running = {
    proc,
    stateDir,
    confDir,
    log: () => log,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((res) => proc.once('exit', res));
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
  running.push(r);
  await until('the agent socket', () => existsSync(join(stateDir, 'agent.sock')) || (proc.exitCode !== null ? Promise.reject(new Error(`agent exited: ${log}`)) : undefined));
  return r;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-agent-test-'));
  api = await KubeApi.start({ socketPath: join(dir, 'api.sock') });
  ns = createNetns('nhiag');
  relay = spawn('ip', ['netns', 'exec', ns.name, process.execPath, RELAY, '127.0.0.1', String(API_PORT), join(dir, 'api.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => relay.stdout!.once('data', () => resolve()));
  for (const n of ['default', 'payments', 'ci']) api.create('namespaces', { metadata: { name: n, labels: { team: n } } });
  api.create('nodes', { metadata: { name: 'n1', annotations: { 'nhi-cni.io/vtep-mac': '02:00:00:00:00:01' } }, spec: { podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] }, status: { addresses: [{ type: 'InternalIP', address: '192.168.50.1' }, { type: 'Hostname', address: 'n1' }] } });
  api.create('nodes', { metadata: { name: 'n2' }, spec: { podCIDRs: ['10.244.2.0/24'] }, status: { addresses: [{ type: 'InternalIP', address: '192.168.50.2' }] } });
  api.create('pods', pod('payments', 'api-1', 'n1', '10.244.1.10', { app: 'api' }));
  api.create('pods', pod('payments', 'db-1', 'n2', '10.244.2.10', { app: 'db' }));
  api.create('pods', pod('payments', 'client-1', 'n2', '10.244.2.11', { app: 'client' }));
  api.create('networkpolicies', netpol('payments', 'api-ingress', 'api'));
  api.create('ciliumnetworkpolicies', {
    metadata: { namespace: 'payments', name: 'db-from-api' },
    spec: { endpointSelector: { matchLabels: { app: 'db' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'api' } }], toPorts: [{ ports: [{ port: '5432', protocol: 'TCP' }] }] }] },
  });
});

afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  relay?.kill();
  if (ns) deleteNetns(ns);
  await api?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('nhi-cni agent against the API stand-in', () => {
  let a: Running;

  it('syncs, hands the sink the whole cluster, turns ready and writes the conflist', async () => {
    a = await startAgent();
    await until('ready', async () => (await get(join(a.stateDir, 'agent.sock'), '/readyz')).status === 200);
    const v = await view(a);
    expect(v.pods.map((p: Obj) => `${p.namespace}/${p.name}:${p.local}:${p.ips.join(',')}`)).toEqual(['payments/api-1:true:10.244.1.10', 'payments/client-1:false:10.244.2.11', 'payments/db-1:false:10.244.2.10']);
    const apiPod = v.pods.find((p: Obj) => p.name === 'api-1');
    expect(apiPod.identity).toEqual({ namespace: 'payments', name: 'api-1', labels: { app: 'api', 'io.cilium.k8s.policy.serviceaccount': 'default' }, namespaceLabels: { team: 'payments', 'kubernetes.io/metadata.name': 'payments' }, serviceAccount: 'default', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] });
    expect(apiPod.spiffeId).toBe('spiffe://cluster.local/ns/payments/sa/default');
    expect(v.node).toEqual({ name: 'n1', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'], addresses: [{ type: 'InternalIP', address: '192.168.50.1' }], annotations: { 'nhi-cni.io/vtep-mac': '02:00:00:00:00:01' } });
    expect(v.policies.map((p: Obj) => `${p.kind} ${p.namespace}/${p.name} ${p.policies.length}`)).toEqual(['CiliumNetworkPolicy payments/db-from-api 1', 'NetworkPolicy payments/api-ingress 1']);
    expect(v.policies[1].manifest).toMatchObject({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', spec: { podSelector: { matchLabels: { app: 'api' } } } });
    expect(v.refused).toEqual([]);

    const conf = JSON.parse(readFileSync(join(a.confDir, '10-nhi-cni.conflist'), 'utf8'));
    expect(conf.plugins.map((p: Obj) => p.type)).toEqual(['nhi-cni', 'portmap', 'bandwidth']);
    expect(conf.plugins[0].ipam.ranges).toEqual([[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10:244:1::/64' }]]);
    expect(conf.plugins[0].ipMasq).toBe(true);
    expect(conf.plugins[0].clusterCIDR).toEqual(['10.244.0.0/16', 'fd00:10:244::/56']);
    expect(conf.plugins[0].policy).toEqual({ agentSocket: join(a.stateDir, 'agent.sock'), kubeconfig: join(a.stateDir, 'plugin.kubeconfig') });
    // The plugin's fallback credentials: the agent's, copied for the host, 0600, never in the log.
    const pkc = JSON.parse(readFileSync(join(a.stateDir, 'plugin.kubeconfig'), 'utf8'));
    expect(statSync(join(a.stateDir, 'plugin.kubeconfig')).mode & 0o777).toBe(0o600);
    expect(pkc.users[0].user.token).toBe(api.token);
    expect(pkc.clusters[0].cluster['certificate-authority-data']).toMatch(/^[A-Za-z0-9+/=]+$/);
    expect(a.log()).not.toContain(api.token);
    expect(statSync(join(a.stateDir, 'agent.sock')).mode & 0o777).toBe(0o600);

    // The TCP listener is inside the namespace, and serves the probes and metrics.
    const curl = (path: string) => spawnSync('ip', ['netns', 'exec', ns.name, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:9190${path}`], { encoding: 'utf8' }).stdout;
    expect(curl('/healthz')).toBe('200');
    expect(curl('/readyz')).toBe('200');
    expect(curl('/view')).toBe('404'); // the whole view only on the root-only socket
    const m = await metrics(a);
    expect(metric(m, 'nhi_agent_pods', '{scope="local"}')).toBe(1);
    expect(metric(m, 'nhi_agent_pods', '{scope="remote"}')).toBe(2);
    expect(metric(m, 'nhi_agent_ready')).toBe(1);
    expect(metric(m, 'nhi_agent_policies', '{kind="CiliumNetworkPolicy"}')).toBe(1);

    // `nhi-cni status` asks it over the socket.
    const s = spawnSync(BINARY, ['status', '--state-dir', a.stateDir, '-o', 'json'], { encoding: 'utf8' });
    expect(s.status).toBe(0);
    const st = JSON.parse(s.stdout);
    expect(st.agent.ready).toBe(true);
    expect(st.node.podCIDRs).toEqual(['10.244.1.0/24', 'fd00:10:244:1::/64']);
    expect(st.pods).toEqual({ local: 1, remote: 2 });
    const t = spawnSync(BINARY, ['status', '--state-dir', a.stateDir], { encoding: 'utf8' });
    expect(t.stdout).toMatch(/pods: +1 local, 2 remote/);
  });

  it('the conflist it writes is one the plugin takes: ADD and DEL of a pod with its nhi-cni config', async () => {
    const conf = JSON.parse(readFileSync(join(a.confDir, '10-nhi-cni.conflist'), 'utf8'));
    // The plugin's own section, as a runtime hands it over; IPAM kept in the test's directory.
    const config = { cniVersion: conf.cniVersion, name: conf.name, ...conf.plugins[0], ipam: { ...conf.plugins[0].ipam, dataDir: join(a.stateDir, 'ipam') } };
    const podNs = createNetns('nhiagp');
    try {
      const env = { CNI_CONTAINERID: 'c0ffee', CNI_NETNS: podNs.path, CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni', CNI_ARGS: 'K8S_POD_NAMESPACE=payments;K8S_POD_NAME=api-1' };
      const add = invoke({ node: ns, env: { ...env, CNI_COMMAND: 'ADD' }, stdin: JSON.stringify(config) });
      expect(add.stderr).toBe('');
      expect(add.status).toBe(0);
      expect(add.json.ips.map((i: Obj) => i.address)).toEqual(['10.244.1.2/24', 'fd00:10:244:1::2/64']);
      // The identity came from the agent (the pod's labels in the API), the
      // policies are the agent's, and the other node's pods are peers.
      const state = JSON.parse(readFileSync(join(a.stateDir, 'policy-state.json'), 'utf8'));
      expect(state.pods['nhi-cni/c0ffee/eth0'].identity).toMatchObject({ namespace: 'payments', name: 'api-1', labels: { app: 'api' } });
      expect(state.remote.map((r: Obj) => r.id)).toEqual(['n2/payments/client-1', 'n2/payments/db-1']);
      // api-ingress (from the API) isolates it: its address is in the ingress verdict map.
      const table = spawnSync('ip', ['netns', 'exec', ns.name, 'nft', '-j', 'list', 'map', 'inet', 'nhi_policy', 'in4'], { encoding: 'utf8' }).stdout;
      expect(table).toContain('"10.244.1.2"');
      const del = invoke({ node: ns, env: { ...env, CNI_COMMAND: 'DEL' }, stdin: JSON.stringify(config) });
      expect(del.status).toBe(0);
      // A pod neither the agent (after waiting for its watch) nor the API knows: not wired, its policies are unknown.
      const t0 = Date.now();
      const ghost = await invokeAsync({ node: ns, env: { ...env, CNI_CONTAINERID: 'deadbeef', CNI_ARGS: 'K8S_POD_NAMESPACE=payments;K8S_POD_NAME=ghost', CNI_COMMAND: 'ADD' }, stdin: JSON.stringify(config) });
      expect(ghost.status).toBe(1);
      expect(ghost.json, ghost.stdout).toMatchObject({ code: 7 });
      expect(ghost.json.msg).toMatch(/pod payments\/ghost not found in the Kubernetes API/);
      expect(Date.now() - t0).toBeGreaterThan(1900);
      expect(spawnSync('ip', ['-n', podNs.name, 'link', 'show', 'eth0']).status).not.toBe(0);
      expect(JSON.parse(readFileSync(join(a.stateDir, 'policy-state.json'), 'utf8')).pods).toEqual({});
    } finally {
      deleteNetns(podNs);
    }
  });

  it('a burst of label edits is one new view; a namespace label edit, a policy added and deleted each reach the sink', async () => {
    const before = (await status(a)).sync.applies;
    for (let i = 0; i < 20; i++) api.patch('pods', 'db-1', 'payments', { metadata: { labels: { app: 'db', rev: String(i) } } });
    await until('the relabelled pod', async () => (await view(a)).pods.find((p: Obj) => p.name === 'db-1').identity.labels.rev === '19');
    await new Promise((r) => setTimeout(r, 600));
    expect((await status(a)).sync.applies).toBe(before + 1);

    api.patch('namespaces', 'payments', undefined, { metadata: { labels: { team: 'money' } } });
    await until('the namespace label on its pods', async () => (await view(a)).pods.every((p: Obj) => p.identity.namespaceLabels.team === 'money'));

    api.create('networkpolicies', netpol('payments', 'db-ingress', 'db'));
    await until('the new policy', async () => (await view(a)).policies.some((p: Obj) => p.name === 'db-ingress'));
    api.delete('networkpolicies', 'db-ingress', 'payments');
    await until('the policy gone', async () => !(await view(a)).policies.some((p: Obj) => p.name === 'db-ingress'));
    api.delete('pods', 'client-1', 'payments');
    await until('the pod of the other node gone', async () => !(await view(a)).pods.some((p: Obj) => p.name === 'client-1'));
  });

  it('recovers a watch cut mid-stream without losing the events sent meanwhile', async () => {
    const restarts = (m: string) => ['pods', 'namespaces'].reduce((n, k) => n + metric(m, 'nhi_agent_watch_restarts_total', `{kind="${k}",reason="error"}`), 0);
    const r0 = restarts(await metrics(a));
    expect(api.cutWatches()).toBeGreaterThan(0);
    // While no watch is open: a new pod, a relabel.
    api.create('pods', pod('ci', 'build-1', 'n1', '10.244.1.20', { stage: 'build' }));
    api.patch('pods', 'api-1', 'payments', { metadata: { labels: { app: 'api', v: '2' } } });
    await until('both changes', async () => {
      const v = await view(a);
      return v.pods.some((p: Obj) => p.name === 'build-1') && v.pods.find((p: Obj) => p.name === 'api-1').identity.labels.v === '2';
    });
    expect(restarts(await metrics(a))).toBeGreaterThan(r0);
  });

  it('relists after 410 Gone: what was created and deleted meanwhile is right', async () => {
    const relists0 = metric(await metrics(a), 'nhi_agent_relists_total', '{kind="pods"}');
    api.cutWatches();
    api.create('pods', pod('ci', 'test-1', 'n2', '10.244.2.30', { stage: 'test' }));
    api.delete('pods', 'build-1', 'ci');
    api.compact(); // the agent's resourceVersion is now too old
    await until('the relisted state', async () => {
      const v = await view(a);
      return v.pods.some((p: Obj) => p.name === 'test-1') && !v.pods.some((p: Obj) => p.name === 'build-1');
    });
    expect(metric(await metrics(a), 'nhi_agent_relists_total', '{kind="pods"}')).toBeGreaterThan(relists0);
    expect(api.requests.some((r) => r.query.watch === 'true' && r.query.allowWatchBookmarks === 'true')).toBe(true);
  });

  it('API down: stale in /metrics and status, nothing applied, the conflist stays; then live again', async () => {
    const applies = (await status(a)).sync.applies;
    const fp = (await view(a)).fingerprint;
    api.setAvailable(false);
    await until('stale pods watch', async () => metric(await metrics(a), 'nhi_agent_watch_stale', '{kind="pods"}') === 1);
    const st = await status(a);
    expect(st.api.stale).toContain('pods');
    expect(st.sync.applies).toBe(applies);
    expect((await view(a)).fingerprint).toBe(fp);
    expect(existsSync(join(a.confDir, '10-nhi-cni.conflist'))).toBe(true);
    expect((await get(join(a.stateDir, 'agent.sock'), '/readyz')).status).toBe(200);
    expect(metric(await metrics(a), 'nhi_agent_watch_restarts_total', '{kind="pods",reason="stale"}')).toBeGreaterThan(0);
    api.setAvailable(true);
    api.create('pods', pod('ci', 'deploy-1', 'n1', '10.244.1.40', { stage: 'deploy' }));
    await until('live again', async () => (await view(a)).pods.some((p: Obj) => p.name === 'deploy-1'), 60_000);
    await until('not stale', async () => metric(await metrics(a), 'nhi_agent_watch_stale', '{kind="pods"}') === 0);
  });

  it('refuses hostile names and labels: listed with a reason, never passed on', async () => {
    api.create('pods', pod('ci', 'evil-1', 'n1', '10.244.1.66', { app: 'x"; flush ruleset; "' }));
    api.create('pods', pod('ci', 'evil-2', 'n2', '10.244.2.66; drop', { app: 'ok' }));
    api.create('pods', { ...pod('ci', 'evil-3', 'n1', '10.244.1.67', { app: 'ok' }), spec: { nodeName: 'n1', serviceAccountName: 'sa"x', containers: [] } });
    api.create('namespaces', { metadata: { name: 'shady', labels: { 'bad key!': 'v' } } });
    api.create('pods', pod('shady', 'inside', 'n1', '10.244.1.68', { app: 'ok' }));
    api.create('networkpolicies', { metadata: { namespace: 'ci', name: 'odd' }, spec: { podSelector: { matchLabels: { 'a b': 'c' } }, policyTypes: ['Ingress'] } });
    const v = await until('the refusals', async () => {
      const v = await view(a);
      return v.refused.length >= 6 ? v : undefined;
    });
    const names = v.refused.map((r: Obj) => `${r.kind} ${r.namespace ?? ''}/${r.name}`);
    expect(names).toEqual(expect.arrayContaining(['pods ci/evil-1', 'pods ci/evil-2', 'pods ci/evil-3', 'namespaces /shady', 'pods shady/inside', 'networkpolicies ci/odd']));
    for (const n of ['evil-1', 'evil-2', 'evil-3', 'inside']) expect(v.pods.some((p: Obj) => p.name === n)).toBe(false);
    // A policy that cannot be enforced exactly is never dropped (that would
    // open its pods): it is kept as its fail-closed stand-in, isolating both ways.
    const odd = v.policies.find((p: Obj) => p.name === 'odd');
    expect(odd.refusal).toMatch(/a b/);
    expect(odd.policies).toHaveLength(1);
    expect(odd.policies[0].isolates).toEqual({ ingress: true, egress: true });
    expect(odd.policies[0].ingress).toEqual([]);
    expect(odd.policies[0].egress).toEqual([]);
    expect(v.refused.find((r: Obj) => r.name === 'evil-1').reason).toMatch(/label value/);
    const st = spawnSync(BINARY, ['status', '--state-dir', a.stateDir], { encoding: 'utf8' }).stdout;
    expect(st).toMatch(/refused: +6/);
    expect(metric(await metrics(a), 'nhi_agent_refused_objects', '{kind="pods"}')).toBe(4);
  });

  it('a bad token: a clear error, never the token, not ready', async () => {
    const bad = await startAgent({ token: 'wrong-s3cr3t-token', port: 9191 });
    await until('the 401 in the log', () => (bad.log().includes('HTTP 401') ? true : undefined));
    expect(bad.log()).toMatch(/refused the credentials: check --kubeconfig or the service account token/);
    expect(bad.log()).not.toContain('wrong-s3cr3t-token');
    expect((await get(join(bad.stateDir, 'agent.sock'), '/readyz')).status).toBe(503);
    const st = await status(bad);
    expect(st.api.kinds.pods.lastError).toMatch(/^HTTP 401/);
    expect(existsSync(join(bad.confDir, '10-nhi-cni.conflist'))).toBe(false);
    await bad.stop();
  });

  it('without the Cilium CRD: logged once, synced without CNPs; served later: picked up', async () => {
    api.crdInstalled = false;
    // One policy table per node, owned by one state dir: the first agent's
    // node is retired before another agent (another state dir) takes it.
    await a.stop();
    spawnSync('ip', ['netns', 'exec', ns.name, 'nft', 'delete', 'table', 'inet', 'nhi_policy']);
    const b = await startAgent({ port: 9192 });
    await until('ready', async () => (await get(join(b.stateDir, 'agent.sock'), '/readyz')).status === 200);
    expect((await view(b)).policies.filter((p: Obj) => p.kind === 'CiliumNetworkPolicy')).toEqual([]);
    expect((await view(b)).ciliumPoliciesServed).toBe(false);
    const cnpLists = () => api.requests.filter((r) => r.path === '/apis/cilium.io/v2/ciliumnetworkpolicies').length;
    const n0 = cnpLists();
    await until('two more tries', () => (cnpLists() >= n0 + 2 ? true : undefined)).catch((e) => { throw new Error(`${e}\n${b.log()}`); });
    expect(b.log().split('\n').filter((l) => l.includes('CiliumNetworkPolicy is not served')).length).toBe(1);
    api.crdInstalled = true;
    await until('the CNP', async () => (await view(b)).policies.some((p: Obj) => p.kind === 'CiliumNetworkPolicy'));
    await b.stop();
  });
});
