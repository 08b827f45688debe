// Policies enforced on real traffic: nhi-cni with a policy directory, pods
// given workload identities through the io.nhi-cni/workload capability, TCP
// and UDP between namespaces the test creates.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainConflist, direct, directAsync, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, createOutside, deleteAllNetns, ping, tryInNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { BINARY, ROOT } from '../helpers/paths.js';
import { reaches, startServers } from '../helpers/traffic.js';

const UDP_POLICY = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: reporting-udp, namespace: payments }
spec:
  podSelector: { matchLabels: { app: reporting } }
  ingress:
    - from: [{ podSelector: { matchLabels: { app: payment-service } } }]
      ports: [{ protocol: UDP, port: 5353 }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: payment-service-udp, namespace: payments }
spec:
  podSelector: { matchLabels: { app: payment-service } }
  policyTypes: [Egress]
  egress:
    - to: [{ podSelector: { matchLabels: { app: reporting } } }]
      ports: [{ protocol: UDP, port: 5353 }, { protocol: TCP, port: 8080 }]
`;

const OPEN_REPORTING = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: reporting-from-default, namespace: payments }
spec:
  podSelector: { matchLabels: { app: reporting } }
  ingress:
    - from: [{ namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: default } } }]
      ports: [{ port: 8080 }]
`;

const OPEN_API = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: api-from-default, namespace: payments }
spec:
  podSelector: { matchLabels: { app: payment-service } }
  ingress:
    - from: [{ namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: default } } }]
      ports: [{ port: 8080 }]
`;

describe('NetworkPolicy on real traffic (payments scenario)', () => {
  const scratch = new Scratch();
  const policyDir = scratch.path('policies');
  let node: Netns;
  const pods: Record<string, Netns> = {};
  const ip: Record<string, string> = {};
  const servers: ChildProcess[] = [];
  let list: ReturnType<typeof chainConflist>;
  const gw = '10.80.0.1';

  function add(name: string, namespace: string, app: string, extra: Record<string, unknown> = {}, audit = false) {
    const pod = (pods[name] ??= createNetns('nhip'));
    const conf = pluginConfig(list, 0, undefined, {
      'io.nhi-cni/workload': { namespace, name, labels: { app }, ports: [{ name: 'postgres', containerPort: 5432, protocol: 'TCP' }] },
      ...extra,
    });
    if (audit) (conf.policy as Record<string, unknown>).audit = true;
    const r = direct({ node, verb: 'ADD', config: conf, containerId: name, netns: pod.path, env: testEnv(scratch.dir) });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    ip[name] = r.json.ips[0].address.split('/')[0];
    result[name] = r.json;
    return r;
  }
  const result: Record<string, unknown> = {};
  const check = (name: string) => direct({ node, verb: 'CHECK', config: pluginConfig(list, 0, result[name]), containerId: name, netns: pods[name]!.path, env: testEnv(scratch.dir) });

  beforeAll(async () => {
    mkdirSync(policyDir, { recursive: true });
    copyFileSync(`${ROOT}/examples/policies/payments.yaml`, `${policyDir}/payments.yaml`);
    writeFileSync(`${policyDir}/udp.yaml`, UDP_POLICY);
    node = createNetns('nhin');
    list = chainConflist({ kind: 'nhi-cni', name: 'pol', cniVersion: '1.1.0', bridge: 'nhi0', ranges: [['10.80.0.0/24']], dir: scratch.dir });
    (list.plugins[0] as Record<string, unknown>).policy = { dir: policyDir };
    add('api', 'payments', 'payment-service');
    add('db', 'payments', 'payments-db');
    add('rep', 'payments', 'reporting');
    add('ext', 'default', 'web');
    servers.push(await startServers(pods.db!, [5432, 5433]));
    servers.push(await startServers(pods.api!, [8080]));
    servers.push(await startServers(pods.rep!, [8080, 5353], [5353]));
    servers.push(await startServers(pods.ext!, [8080]));
  });
  afterAll(() => {
    for (const s of servers) s.kill();
    deleteAllNetns();
    scratch.cleanup();
  });

  it('the payment service reaches the database on TCP 5432', () => {
    expect(reaches(pods.api!, ip.db!, 5432)).toBe(true);
  });

  it('nothing else reaches the database, and not on another port', () => {
    expect(reaches(pods.rep!, ip.db!, 5432)).toBe(false);
    expect(reaches(pods.ext!, ip.db!, 5432)).toBe(false);
    expect(reaches(pods.api!, ip.db!, 5433)).toBe(false);
  });

  it('default deny: the database opens no connection, not even to the node', () => {
    expect(reaches(pods.db!, ip.api!, 8080)).toBe(false);
    expect(reaches(pods.db!, ip.ext!, 8080)).toBe(false);
    expect(ping(pods.db!, gw)).toBe(false);
  });

  it('the node reaches its pods under default deny (kubelet probes)', () => {
    expect(tryInNetns(node, process.execPath, ['-e', `require('net').connect(5432, '${ip.db}').on('data', () => process.exit(0)).on('error', () => process.exit(1)); setTimeout(() => process.exit(2), 1500)`]).status).toBe(0);
  });

  it('a pod no policy selects talks freely, but not into the isolated namespace', () => {
    expect(reaches(pods.api!, ip.ext!, 8080)).toBe(false); // api's egress allows only db and DNS
    expect(reaches(pods.ext!, ip.api!, 8080)).toBe(false); // api's ingress is default-deny
  });

  it('UDP rules allow UDP, and do not open the same port to TCP', () => {
    expect(reaches(pods.api!, ip.rep!, 5353, 'udp')).toBe(true);
    expect(reaches(pods.api!, ip.rep!, 5353, 'tcp')).toBe(false);
  });

  it('an egress allow does not skip the peer\'s ingress check', () => {
    // payment-service may send to reporting:8080 (its egress allows it), but
    // reporting's ingress admits only UDP 5353 from it.
    expect(reaches(pods.api!, ip.rep!, 8080)).toBe(false);
  });

  it('counts allowed and denied connections per policy (nft counters)', () => {
    const out = tryInNetns(node, 'nft', ['-j', 'list', 'counters', 'table', 'inet', 'nhi_policy']).stdout;
    const counters = (JSON.parse(out).nftables as { counter?: { name: string; packets: number } }[]).flatMap((x) => (x.counter ? [x.counter] : []));
    expect(counters.filter((c) => c.name.startsWith('a_')).some((c) => c.packets > 0)).toBe(true);
    expect(counters.filter((c) => c.name.startsWith('d_')).some((c) => c.packets > 0)).toBe(true);
  });

  it('observe shows a denied connection as it happens, naming both workloads and the policy; allowed ones not', async () => {
    const watcher = spawn('ip', ['netns', 'exec', node.name, BINARY, 'observe', '--state-dir', `${scratch.dir}/state`, '--count', '1', '--timeout', '30', '-o', 'json'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    watcher.stdout!.on('data', (d) => (stdout += d));
    watcher.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((res) => watcher.on('exit', (code) => res(code)));
    // The monitor subscribes shortly after it starts: allowed traffic first (never shown), then denied attempts until one is seen.
    for (let i = 0; i < 20 && watcher.exitCode === null; i++) {
      expect(reaches(pods.api!, ip.db!, 5432)).toBe(true);
      expect(reaches(pods.rep!, ip.db!, 5432)).toBe(false);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await exited, stderr).toBe(0);
    const flows = stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(flows).toHaveLength(1);
    expect(flows[0]).toMatchObject({
      verdict: 'denied', proto: 'tcp',
      src: { ip: ip.rep, workload: 'payments/rep' },
      dst: { ip: ip.db, port: 5432, workload: 'payments/db' },
    });
    // Whose policy denied it: the database's ingress profile (default-deny isolates it) or reporting's egress one.
    expect(flows[0].policies).toContain('payments/default-deny');
    expect(['ingress', 'egress']).toContain(flows[0].direction);
  });

  it('a manifest edit applies with the next ADD', () => {
    expect(reaches(pods.ext!, ip.rep!, 8080)).toBe(false);
    writeFileSync(`${policyDir}/open.yaml`, OPEN_REPORTING);
    add('trigger', 'default', 'other');
    expect(reaches(pods.ext!, ip.rep!, 8080)).toBe(true);
    expect(reaches(pods.ext!, ip.api!, 8080)).toBe(false);
  });

  it('policy sync applies a manifest change to the running pods, without any ADD, and takes it back', () => {
    const conflist = scratch.path('sync.conflist');
    writeFileSync(conflist, JSON.stringify(list));
    const sync = () => {
      const r = tryInNetns(node, BINARY, ['policy', 'sync', '--config', conflist]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      return r.stdout;
    };
    expect(reaches(pods.ext!, ip.api!, 8080)).toBe(false);
    writeFileSync(`${policyDir}/sync.yaml`, OPEN_API);
    expect(reaches(pods.ext!, ip.api!, 8080)).toBe(false); // not before the sync
    expect(sync()).toContain('added: NetworkPolicy payments/api-from-default');
    expect(reaches(pods.ext!, ip.api!, 8080)).toBe(true);
    expect(reaches(pods.rep!, ip.api!, 8080)).toBe(false); // only the namespace it names
    rmSync(`${policyDir}/sync.yaml`);
    expect(sync()).toContain('removed: NetworkPolicy payments/api-from-default');
    expect(reaches(pods.ext!, ip.api!, 8080)).toBe(false);
  });

  it('CHECK notices the table flushed by hand, and the next ADD puts back every pod\'s policy', () => {
    const first = check('db');
    expect(first.status, first.stdout).toBe(0);
    tryInNetns(node, 'nft', ['delete', 'table', 'inet', 'nhi_policy']);
    // What a firewall reload or `nft flush ruleset` does: enforcement is gone ...
    expect(reaches(pods.rep!, ip.db!, 5432)).toBe(true);
    // ... and CHECK says so.
    const r = check('db');
    expect(r.status).not.toBe(0);
    expect(r.json).toMatchObject({ code: 103, msg: 'table inet nhi_policy is missing' });
    add('healer', 'default', 'other');
    const healed = check('db');
    expect(healed.status, healed.stdout).toBe(0);
    expect(reaches(pods.rep!, ip.db!, 5432)).toBe(false);
    expect(reaches(pods.api!, ip.db!, 5432)).toBe(true);
    // One element removed by hand: CHECK names it (the next ADD, which only
    // checks the table's generation, does not see it), and policy sync heals it.
    expect(tryInNetns(node, 'nft', ['delete', 'element', 'inet', 'nhi_policy', 'in4', `{ ${ip.db} }`]).status).toBe(0);
    const partial = check('db');
    expect(partial.json).toMatchObject({ code: 103, msg: 'the pod\'s policy is not in the kernel as the policy state says' });
    expect(partial.json.details).toContain(`in4 ${ip.db} -> pr_`);
    const conflist = scratch.path('check.conflist');
    writeFileSync(conflist, JSON.stringify(list));
    expect(tryInNetns(node, BINARY, ['policy', 'sync', '--config', conflist]).status).toBe(0);
    expect(check('db').status).toBe(0);
  });

  it('a new pod that gets a released address inherits nothing of the old pod\'s access', async () => {
    const oldIp = ip.db!;
    const del = direct({ node, verb: 'DEL', config: pluginConfig(list, 0), containerId: 'db', netns: pods.db!.path, env: testEnv(scratch.dir) });
    expect(del.status, del.stdout).toBe(0);
    // A pod in a namespace without policies: its ingress is open, so only
    // api's egress (which allowed the old database address) could stop it.
    add('imposter', 'default', 'web', { ips: [`${oldIp}/24`] });
    expect(ip.imposter).toBe(oldIp);
    servers.push(await startServers(pods.imposter!, [5432]));
    expect(reaches(pods.ext!, oldIp, 5432)).toBe(true);
    expect(reaches(pods.api!, oldIp, 5432)).toBe(false);
  });

  it('an ADD killed after its policy reached the kernel but before the state was written: its DEL leaves nothing of it', () => {
    const addr = '10.80.0.77';
    const pod = (pods.crash = createNetns('nhip'));
    const conf = pluginConfig(list, 0, undefined, { 'io.nhi-cni/workload': { namespace: 'payments', name: 'crash', labels: { app: 'payments-db' } }, ips: [`${addr}/24`] });
    const env = { ...testEnv(scratch.dir), NHI_CNI_TEST_HOOKS: '1', NHI_CNI_CRASH_AFTER: 'policy-kernel' };
    const r = direct({ node, verb: 'ADD', config: conf, containerId: 'crash', netns: pod.path, env });
    expect(r.status, r.stdout + r.stderr).not.toBe(0);
    // The window is real: the kernel lists the address, the state does not.
    const table = () => tryInNetns(node, 'nft', ['list', 'table', 'inet', 'nhi_policy']).stdout;
    expect(table()).toContain(addr);
    expect(Object.values(JSON.parse(readFileSync(scratch.path('state/policy-state.json'), 'utf8')).pods).flatMap((p: any) => p.ips)).not.toContain(addr);
    // The runtime's DEL after the failed ADD: the address leaves every set and map.
    const del = direct({ node, verb: 'DEL', config: pluginConfig(list, 0), containerId: 'crash', netns: pod.path, env: testEnv(scratch.dir) });
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(table()).not.toContain(addr);
    // And enforcement is whole again: the earlier verdicts hold.
    expect(reaches(pods.api!, ip.rep!, 5353, 'udp')).toBe(true);
    expect(reaches(pods.rep!, ip.api!, 8080)).toBe(false);
  });

  it('audit mode logs what it would deny and lets it pass', () => {
    expect(reaches(pods.rep!, ip.api!, 8080)).toBe(false);
    add('trigger2', 'default', 'other', {}, true);
    expect(reaches(pods.rep!, ip.api!, 8080)).toBe(true);
    const rules = tryInNetns(node, 'nft', ['list', 'table', 'inet', 'nhi_policy']).stdout;
    // What would have been denied is logged naming the workload (api, which
    // rep may not reach) and the policy that isolates it.
    expect(rules).toMatch(/log prefix "nhi-audit in wl=payments\/payment-service pol=payments\/default-deny/);
  });

  it('the ruleset holds only our objects, named by hashes, with no label or policy text outside comments and log prefixes', () => {
    const out = JSON.parse(tryInNetns(node, 'nft', ['-j', 'list', 'table', 'inet', 'nhi_policy']).stdout).nftables as Record<string, { name?: string }>[];
    for (const item of out) {
      for (const kind of ['chain', 'set', 'map', 'counter']) {
        const name = item[kind]?.name;
        if (name) expect(name).toMatch(/^(forward|input|gen|owner|(eg|in)[46]|l7[res][46]|pr_[0-9a-f]{12}|[pnw]_[0-9a-f]{12}_[46]|[ad]_[0-9a-f]{12})$/);
      }
    }
  });
});

describe('nhi-policy chained after the reference bridge', () => {
  const scratch = new Scratch();
  let node: Netns;
  const pods: Netns[] = [];
  const servers: ChildProcess[] = [];
  afterAll(() => {
    for (const s of servers) s.kill();
    deleteAllNetns();
    scratch.cleanup();
  });

  it('enforces the policy on addresses from prevResult and passes prevResult through', async () => {
    node = createNetns('nhin');
    const policyDir = scratch.path('policies');
    mkdirSync(policyDir, { recursive: true });
    copyFileSync(`${ROOT}/examples/policies/payments.yaml`, `${policyDir}/payments.yaml`);
    const list = {
      cniVersion: '1.0.0',
      name: 'chained',
      plugins: [
        { type: 'bridge', bridge: 'cbr0', isGateway: true, ipam: { type: 'host-local', dataDir: scratch.path('ipam'), ranges: [[{ subnet: '10.81.0.0/24' }]] } },
        { type: 'nhi-policy', stateDir: scratch.path('state'), capabilities: { 'io.nhi-cni/workload': true }, policy: { dir: policyDir } },
      ],
    };
    const { libcniDriver } = await import('../helpers/driver.js');
    const drv = libcniDriver(scratch, node, list as never, testEnv(scratch.dir));
    const ips: string[] = [];
    for (const [name, app] of [['api', 'payment-service'], ['db', 'payments-db'], ['rep', 'reporting']] as const) {
      const pod = createNetns('nhip');
      pods.push(pod);
      const r = drv.add(pod, { CAP_ARGS: JSON.stringify({ 'io.nhi-cni/workload': { namespace: 'payments', name, labels: { app } } }) });
      expect(r.status, r.stderr).toBe(0);
      expect(r.json.interfaces[0].name).toBe('cbr0'); // the bridge's result, passed through
      ips.push(r.json.ips[0].address.split('/')[0]);
    }
    servers.push(await startServers(pods[1]!, [5432]));
    expect(reaches(pods[0]!, ips[1]!, 5432)).toBe(true);
    expect(reaches(pods[2]!, ips[1]!, 5432)).toBe(false);
    expect(drv.check(pods[1]!).status).toBe(0);
    for (const p of pods) expect(drv.del(p).status).toBe(0);
    const state = JSON.parse(spawnSync('cat', [scratch.path('state/policy-state.json')], { encoding: 'utf8' }).stdout);
    expect(state.pods).toEqual({});
  });
});

/**
 * A describe's world: a node namespace running nhi-cni with a policy
 * directory, pods with workload identities, servers in them; everything
 * removed after the describe.
 */
function policyWorld() {
  const scratch = new Scratch();
  const servers: ChildProcess[] = [];
  afterAll(() => {
    for (const s of servers) s.kill();
    deleteAllNetns();
    scratch.cleanup();
  });
  return {
    scratch,
    servers,
    /** The node, and a conflist whose nhi-cni enforces `manifests` (file name -> YAML). */
    setup(o: { name: string; bridge: string; ranges: string[][]; manifests: Record<string, string>; ipMasq?: boolean }) {
      const node = createNetns('nhin');
      const policyDir = scratch.path('policies');
      mkdirSync(policyDir, { recursive: true });
      for (const [file, text] of Object.entries(o.manifests)) writeFileSync(`${policyDir}/${file}`, text);
      const list = chainConflist({ kind: 'nhi-cni', name: o.name, cniVersion: '1.1.0', bridge: o.bridge, ranges: o.ranges, dir: scratch.dir, ...(o.ipMasq === undefined ? {} : { ipMasq: o.ipMasq }) });
      (list.plugins[0] as Record<string, unknown>).policy = { dir: policyDir };
      const env = testEnv(scratch.dir);
      const config = (name: string, workload: Record<string, unknown>) => pluginConfig(list, 0, undefined, { 'io.nhi-cni/workload': { name, ...workload } });
      /** ADDs a pod in a namespace of its own; its addresses, IPv4 first. */
      const add = (name: string, workload: Record<string, unknown>) => {
        const ns = createNetns('nhip');
        const r = direct({ node, verb: 'ADD', config: config(name, workload), containerId: name, netns: ns.path, env });
        expect(r.status, r.stdout + r.stderr).toBe(0);
        const ips = (r.json.ips as { address: string }[]).map((x) => x.address.split('/')[0]!).sort((a, b) => Number(a.includes(':')) - Number(b.includes(':')));
        return { ns, ip: ips[0]!, ips, result: r.json };
      };
      return { node, list, env, config, add };
    },
  };
}

const example = (file: string) => readFileSync(`${ROOT}/examples/policies/${file}`, 'utf8');

describe('CiliumNetworkPolicy at L3/L4 in the kernel: deny before allow', () => {
  const world = policyWorld();

  it('an ingressDeny wins over an allow-all, for the peers it names only', async () => {
    const { add } = world.setup({ name: 'cnp', bridge: 'nhi0', ranges: [['10.82.0.0/24']], manifests: { 'cnp.yaml': `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: model-store, namespace: ml }
spec:
  endpointSelector: { matchLabels: { app: model-store } }
  ingress:
    - toPorts: [{ ports: [{ port: "8080", protocol: TCP }] }]
  ingressDeny:
    - fromEndpoints: [{ matchLabels: { app: scraper } }]
` } });
    const [store, trainer, scraper] = (['model-store', 'trainer', 'scraper'] as const).map((app) => add(app, { namespace: 'ml', labels: { app } }));
    world.servers.push(await startServers(store!.ns, [8080, 9090]));
    expect(reaches(trainer!.ns, store!.ip, 8080)).toBe(true);
    expect(reaches(trainer!.ns, store!.ip, 9090)).toBe(false); // isolated: only 8080 is allowed
    expect(reaches(scraper!.ns, store!.ip, 8080)).toBe(false); // denied before the allow
  });
});

describe('pods added and deleted in parallel under policies', () => {
  const world = policyWorld();

  it('24 parallel ADDs of 4 workloads, a GC of half of them, then 24 parallel DELs: every pod enforced, the state and the table exact, nothing left', async () => {
    const { node, list, env, config } = world.setup({ name: 'par', bridge: 'nhi0', ranges: [['10.83.0.0/24']], manifests: { 'payments.yaml': example('payments.yaml') } });
    const state = () => JSON.parse(readFileSync(world.scratch.path('state/policy-state.json'), 'utf8'));
    // New workloads (a compile) and replicas of known ones (no compile) race for the lock.
    const apps = ['payment-service', 'payments-db', 'reporting', 'web'];
    const pods = Array.from({ length: 24 }, (_, i) => ({ ns: createNetns('nhip'), id: `p${i}`, app: apps[i % apps.length]! }));
    const adds = await Promise.all(pods.map((p) => directAsync({ node, verb: 'ADD', config: config(p.id, { namespace: 'payments', labels: { app: p.app } }), containerId: p.id, netns: p.ns.path, env })));
    for (const a of adds) expect(a.status, a.stdout + a.stderr).toBe(0);
    const ip = adds.map((a) => a.json.ips[0].address.split('/')[0] as string);

    // Every pod is in the verdict maps, each with its own workload's profile.
    const table = () => JSON.parse(tryInNetns(node, 'nft', ['-j', 'list', 'table', 'inet', 'nhi_policy']).stdout).nftables as Record<string, any>[];
    const mapped = (t: Record<string, any>[], name: string) => (t.find((o) => o.map?.name === name)?.map.elem ?? []).map((e: any) => e[0]);
    const t = table();
    expect([...mapped(t, 'in4')].sort()).toEqual([...ip].sort());
    expect([...mapped(t, 'eg4')].sort()).toEqual([...ip].sort());
    expect(Object.keys(state().pods)).toHaveLength(24);

    // Enforced on the last replicas as on the first: any payment-service reaches any database.
    const db = pods.findIndex((p, i) => p.app === 'payments-db' && i >= 20);
    world.servers.push(await startServers(pods[db]!.ns, [5432]));
    expect(reaches(pods[0]!.ns, ip[db]!, 5432)).toBe(true); // payment-service, the first ADD
    expect(reaches(pods[20]!.ns, ip[db]!, 5432)).toBe(true); // payment-service, one of the last
    expect(reaches(pods[2]!.ns, ip[db]!, 5432)).toBe(false); // reporting

    // GC keeps the valid half: the other half leaves the state, the maps and the sets.
    const valid = pods.filter((_, i) => i % 2 === 0);
    const gc = direct({ node, verb: 'GC', config: { ...pluginConfig(list, 0), 'cni.dev/valid-attachments': valid.map((p) => ({ containerID: p.id, ifname: 'eth0' })) }, containerId: '', env });
    expect(gc.status, gc.stdout + gc.stderr).toBe(0);
    const kept = ip.filter((_, i) => i % 2 === 0).sort();
    expect([...mapped(table(), 'in4')].sort()).toEqual(kept);
    expect(Object.keys(state().pods).sort()).toEqual(valid.map((p) => `par/${p.id}/eth0`).sort());
    const inSets = new Set(table().filter((o) => o.set && !['gen', 'owner'].includes(o.set.name)).flatMap((o) => (o.set.elem ?? []).map((e: any) => (typeof e === 'string' ? e : e.concat?.[0]))));
    for (const [i, a] of ip.entries()) expect(inSets.has(a), a).toBe(i % 2 === 0);

    const dels = await Promise.all(pods.map((p, i) => directAsync({ node, verb: 'DEL', config: pluginConfig(list, 0, adds[i]!.json), containerId: p.id, netns: p.ns.path, env })));
    for (const d of dels) expect(d.status, d.stdout + d.stderr).toBe(0);
    const after = table();
    for (const m of ['in4', 'eg4', 'in6', 'eg6']) expect(mapped(after, m)).toEqual([]);
    const final = state();
    // Left: the generation, and the owner (the state dir, src/policy/engine/owner.ts).
    for (const s of after.filter((o) => o.set && o.set.name !== 'owner')) expect(s.set.elem ?? [], s.set.name).toEqual(s.set.name === 'gen' ? [final.gen] : []);
    expect(after.find((o) => o.set?.name === 'owner')?.set.elem).toEqual([{ elem: { val: expect.any(Number), comment: world.scratch.path('state') } }]);
    expect(final.pods).toEqual({});
    expect(readdirSync(world.scratch.path('state')).filter((f) => f === 'policy.dirty')).toEqual([]);
  });
});

describe('dual stack under policies', () => {
  const world = policyWorld();

  it('the same verdicts over IPv6 as over IPv4: allowed, denied by ingress, denied by egress', async () => {
    const { node, add } = world.setup({ name: 'ds', bridge: 'nhids0', ranges: [['10.84.0.0/24'], ['fd84::/64']], manifests: { 'payments.yaml': example('payments.yaml') } });
    const [api, db, rep] = (['payment-service', 'payments-db', 'reporting'] as const).map((app) => add(app, { namespace: 'payments', labels: { app } }));
    for (const p of [api!, db!, rep!]) expect(p.ips[1]).toMatch(/^fd84::/);
    world.servers.push(await startServers(db!.ns, [5432]));
    world.servers.push(await startServers(api!.ns, [8080]));
    for (const [fam, i] of [['IPv4', 0], ['IPv6', 1]] as const) {
      expect(reaches(api!.ns, db!.ips[i]!, 5432), `${fam} api -> db:5432`).toBe(true);
      expect(reaches(rep!.ns, db!.ips[i]!, 5432), `${fam} rep -> db:5432`).toBe(false);
      expect(reaches(db!.ns, api!.ips[i]!, 8080), `${fam} db -> api:8080`).toBe(false);
    }
    // Only neighbour discovery is let through, not ICMPv6 at large: echo is a
    // connection like any other (the node's own ping shows it works).
    expect(ping(rep!.ns, db!.ips[1]!)).toBe(false);
    expect(tryInNetns(node, 'ping', ['-c', '1', '-W', '2', db!.ips[1]!]).status).toBe(0);
    // The IPv6 addresses are classified by the IPv6 maps.
    const t = JSON.parse(tryInNetns(node, 'nft', ['-j', 'list', 'map', 'inet', 'nhi_policy', 'in6']).stdout).nftables as Record<string, any>[];
    const in6 = t.find((o) => o.map)!.map.elem.map((e: any) => e[0]).sort();
    expect(in6).toEqual([api!, db!, rep!].map((p) => p.ips[1]).sort());
  });
});

describe('egress to hosts outside the node under policies (routed, masqueraded)', () => {
  const world = policyWorld();

  it('an ipBlock with except and a port decide what a pod may open outside; an unselected pod is not limited', async () => {
    const { node, add } = world.setup({ name: 'edge', bridge: 'nhie0', ranges: [['10.85.0.0/24']], ipMasq: true, manifests: { 'edge.yaml': `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: fetcher-out, namespace: edge }
spec:
  podSelector: { matchLabels: { app: fetcher } }
  policyTypes: [Egress]
  egress:
    - to: [{ ipBlock: { cidr: 198.51.100.0/24, except: [198.51.100.128/25] } }]
      ports: [{ protocol: TCP, port: 8080 }]
` } });
    const outside = createOutside(node); // 198.51.100.2, routed through the node
    tryInNetns(outside, 'ip', ['addr', 'add', '198.51.100.200/24', 'dev', 'up0']);
    world.servers.push(await startServers(outside, [8080, 8081]));
    const fetcher = add('fetcher', { namespace: 'edge', labels: { app: 'fetcher' } });
    // The same labels in another namespace: no policy selects it.
    const free = add('free', { namespace: 'default', labels: { app: 'fetcher' } });
    expect(reaches(fetcher.ns, '198.51.100.2', 8080)).toBe(true);
    expect(reaches(fetcher.ns, '198.51.100.2', 8081)).toBe(false); // another port
    expect(reaches(fetcher.ns, '198.51.100.200', 8080)).toBe(false); // in the except range
    expect(reaches(free.ns, '198.51.100.2', 8081)).toBe(true);
    expect(reaches(free.ns, '198.51.100.200', 8080)).toBe(true);
  });
});

describe('CI/CD stages (examples/policies/cicd.yaml) on real traffic', () => {
  const world = policyWorld();

  it('stages reach the artifact store on its named port as each store defines it, and never each other', async () => {
    const { add } = world.setup({ name: 'ci', bridge: 'nhici0', ranges: [['10.86.0.0/24']], manifests: { 'cicd.yaml': example('cicd.yaml') } });
    const artifacts = (port: number) => [{ name: 'http-artifacts', containerPort: port, protocol: 'TCP' }];
    const build = add('build', { namespace: 'ci', labels: { stage: 'build' } });
    const test = add('test', { namespace: 'ci', labels: { stage: 'test' } });
    const store1 = add('store1', { namespace: 'ci', labels: { app: 'artifact-store' }, ports: artifacts(8081) });
    const store2 = add('store2', { namespace: 'ci', labels: { app: 'artifact-store' }, ports: artifacts(8082) });
    world.servers.push(await startServers(store1.ns, [8081, 8082]), await startServers(store2.ns, [8081, 8082]), await startServers(test.ns, [8080]));
    // "http-artifacts" is 8081 on store1 and 8082 on store2: resolved per destination.
    expect(reaches(build.ns, store1.ip, 8081)).toBe(true);
    expect(reaches(build.ns, store1.ip, 8082)).toBe(false);
    expect(reaches(build.ns, store2.ip, 8082)).toBe(true);
    expect(reaches(build.ns, store2.ip, 8081)).toBe(false);
    expect(reaches(test.ns, store2.ip, 8082)).toBe(true);
    // Stages are isolated from one another.
    expect(reaches(build.ns, test.ip, 8080)).toBe(false);
  });
});
