// Every failure path ends in error JSON and a rollback: lock holders stopped
// with SIGSTOP (IPAM and policy lock), ADDs killed with temporaries on disk,
// 255-character container ids, and a DEL whose policy state disappeared.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainConflist, direct, directAsync, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, linksOfType, tryInNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { attachmentParts, enforcedAddresses, reservations, wholeness } from '../helpers/attachment.js';
import { reaches, startServers } from '../helpers/traffic.js';

const PAYMENTS = [
  { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'default-deny', namespace: 'payments' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
  {
    apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'db-allow-api', namespace: 'payments' },
    spec: { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ protocol: 'TCP', port: 5432 }] }] },
  },
];

/** Every file under dir whose name marks it a temporary. */
function temporaries(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (n.startsWith('.nhi-tmp-')) out.push(p);
      else if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

let scratch: Scratch;
let node: Netns;
const holders: ChildProcess[] = [];
beforeEach(() => {
  scratch = new Scratch();
  node = createNetns('nhin');
});
afterEach(() => {
  for (const h of holders.splice(0)) if (h.pid) try { process.kill(-h.pid, 'SIGKILL'); } catch { /* gone */ }
  deleteAllNetns();
  scratch.cleanup();
});

function list(name: string, subnet: string, policy: boolean, dir = scratch.dir) {
  const l = chainConflist({ kind: 'nhi-cni', name, cniVersion: '1.1.0', bridge: `b${name}`.slice(0, 15), ranges: [[subnet]], dir, ipMasq: false });
  if (policy) (l.plugins[0] as Record<string, unknown>).policy = { manifests: PAYMENTS };
  return l;
}
const workload = (name: string, app: string) => ({ 'io.nhi-cni/workload': { namespace: 'payments', name, labels: { app } } });

/** Holds an flock on `path` from a process that is then stopped (SIGSTOP), as a plugin frozen mid-change would. */
async function stoppedHolder(path: string): Promise<ChildProcess> {
  mkdirSync(join(path, '..'), { recursive: true });
  const h = spawn('flock', [path, 'sh', '-c', 'echo locked; exec sleep 600'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  holders.push(h);
  await new Promise<void>((resolve) => h.stdout!.once('data', () => resolve()));
  process.kill(-h.pid!, 'SIGSTOP');
  return h;
}

/**
 * One stopped holder, in its own node and state and data directories (the
 * two cases run at once and must not share a lock).
 */
async function stuckLock(which: 'ipam' | 'policy'): Promise<void> {
  // Its own node too: a node has one policy table, owned by one state directory.
  const node = createNetns('nhin');
  const net = `stop${which}`;
  const dir = join(scratch.dir, which);
  const l = list(net, which === 'ipam' ? '10.92.0.0/24' : '10.93.0.0/24', true, dir);
  const env = testEnv(dir);
  const [podA, podB] = [createNetns('nhip'), createNetns('nhip')];
  const first = await directAsync({ node, verb: 'ADD', config: pluginConfig(l, 0, undefined, workload('a', 'api')), containerId: `${net}a`, netns: podA.path, env });
  expect(first.status, first.stdout).toBe(0);
  const veths = linksOfType(node, 'veth');
  const holder = await stoppedHolder(which === 'ipam' ? `${dir}/ipam/${net}/lock` : `${dir}/state/policy.lock`);

  const t0 = Date.now();
  const [add, del] = await Promise.all([
    directAsync({ node, verb: 'ADD', config: pluginConfig(l, 0, undefined, workload('b', 'db')), containerId: `${net}b`, netns: podB.path, env }),
    directAsync({ node, verb: 'DEL', config: pluginConfig(l, 0, first.json), containerId: `${net}a`, netns: podA.path, env }),
  ]);
  const elapsed = Date.now() - t0;
  for (const r of [add, del]) {
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.json, r.stdout + r.stderr).toMatchObject({ code: 11 });
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }
  // The bounds: 10 s for the policy lock, 30 s for the IPAM lock (IPAM_LOCK_MS).
  expect(elapsed).toBeLessThan(which === 'ipam' ? 45_000 : 25_000);
  // The ADD left nothing: no link, reservation, record or policy entry.
  const b = attachmentParts({ node, pod: podB, dir, network: net, containerId: `${net}b` });
  expect(wholeness(b, true)).toBe('absent');
  expect(linksOfType(node, 'veth').filter((v) => !veths.includes(v))).toEqual([]);
  expect(temporaries(dir)).toEqual([]);
  // Once the holder is gone, the DEL's retry completes.
  process.kill(-holder.pid!, 'SIGKILL');
  const again = await directAsync({ node, verb: 'DEL', config: pluginConfig(l, 0, first.json), containerId: `${net}a`, netns: podA.path, env });
  expect(again.status, again.stdout).toBe(0);
  expect(wholeness(attachmentParts({ node, pod: podA, dir, network: net, containerId: `${net}a` }), true, [first.json.ips[0].address.split('/')[0]])).toBe('absent');
}

describe('a lock holder stopped with SIGSTOP', () => {
  // Both at once: each waits out its bound (10 s policy, 30 s IPAM).
  it('the IPAM lock and the policy lock: ADD and DEL end with code 11 within the bound and leave nothing', async () => {
    await Promise.all([stuckLock('ipam'), stuckLock('policy')]);
  }, 90_000);
});

describe('killed ADDs leave no temporary file once the next call has run', () => {
  it.each([
    ['the nft transaction file (run dir)', 'nft-file'],
    ['a record being written (state dir)', 'write:attachments'],
    ['the policy state being written (state dir)', 'write:state'],
    ['the round-robin hint being written (IPAM dir)', 'write:tmpk'],
  ])('%s', (_, point) => {
    const l = list('tmpk', '10.94.0.0/24', true);
    const pod = createNetns('nhip');
    const env = testEnv(scratch.dir);
    const conf = pluginConfig(l, 0, undefined, workload('k', 'api'));
    const add = direct({ node, verb: 'ADD', config: conf, containerId: 'killed', netns: pod.path, env: { ...env, NHI_CNI_TEST_HOOKS: '1', NHI_CNI_CRASH_AFTER: point } });
    expect(add.signal ?? add.status).toBe('SIGKILL');
    expect(temporaries(scratch.dir), 'the killed ADD left its temporary').toHaveLength(1);
    const del = direct({ node, verb: 'DEL', config: conf, containerId: 'killed', netns: pod.path, env });
    expect(del.status, del.stdout).toBe(0);
    expect(temporaries(scratch.dir)).toEqual([]);
    expect(wholeness(attachmentParts({ node, pod, dir: scratch.dir, network: 'tmpk', containerId: 'killed' }), true)).toBe('absent');
  });
});

describe('a 255-character container id', () => {
  it('works end to end: ADD, CHECK, GC keeping it, DEL; then GC removes an abandoned one', () => {
    const l = list('longid', '10.95.0.0/24', true);
    const pod = createNetns('nhip');
    const env = testEnv(scratch.dir);
    const id = `c${'0123456789abcdef'.repeat(16)}`.slice(0, 255);
    expect(id).toHaveLength(255);
    const conf = pluginConfig(l, 0, undefined, workload('long', 'api'));
    const parts = () => attachmentParts({ node, pod, dir: scratch.dir, network: 'longid', containerId: id });
    const add = direct({ node, verb: 'ADD', config: conf, containerId: id, netns: pod.path, env });
    expect(add.status, add.stdout).toBe(0);
    expect(wholeness(parts(), true)).toBe('present');
    const check = direct({ node, verb: 'CHECK', config: pluginConfig(l, 0, add.json), containerId: id, netns: pod.path, env });
    expect(check.status, check.stdout).toBe(0);
    const keep = direct({ node, verb: 'GC', config: { ...pluginConfig(l, 0), 'cni.dev/valid-attachments': [{ containerID: id, ifname: 'eth0' }] }, containerId: '', env });
    expect(keep.status, keep.stdout).toBe(0);
    expect(wholeness(parts(), true)).toBe('present');
    const del = direct({ node, verb: 'DEL', config: pluginConfig(l, 0, add.json), containerId: id, netns: pod.path, env });
    expect(del.status, del.stdout).toBe(0);
    expect(wholeness(parts(), true, [add.json.ips[0].address.split('/')[0]])).toBe('absent');

    const again = direct({ node, verb: 'ADD', config: conf, containerId: id, netns: pod.path, env });
    expect(again.status, again.stdout).toBe(0);
    tryInNetns(pod, 'ip', ['link', 'del', 'eth0']); // the pod went away without a DEL
    const gc = direct({ node, verb: 'GC', config: { ...pluginConfig(l, 0), 'cni.dev/valid-attachments': [] }, containerId: '', env });
    expect(gc.status, gc.stdout).toBe(0);
    expect(wholeness(parts(), true, [again.json.ips[0].address.split('/')[0]])).toBe('absent');
    expect(readdirSync(`${scratch.dir}/state/longid/attachments`)).toEqual([]);
  });
});

describe('DEL with policy after the state directory disappeared', () => {
  it('takes the pod\'s addresses out of the kernel; the other pods stay enforced; an ADD is refused', async () => {
    const l = list('gone', '10.96.0.0/24', true);
    const env = testEnv(scratch.dir);
    const pods: Record<string, Netns> = {};
    const res: Record<string, any> = {};
    for (const [name, app] of [['api', 'api'], ['db', 'db'], ['rep', 'rep'], ['rep2', 'rep']] as const) {
      pods[name] = createNetns('nhip');
      const r = direct({ node, verb: 'ADD', config: pluginConfig(l, 0, undefined, workload(name, app)), containerId: name, netns: pods[name]!.path, env });
      expect(r.status, r.stdout).toBe(0);
      res[name] = r.json;
    }
    const ip = (n: string) => res[n].ips[0].address.split('/')[0] as string;
    const server = await startServers(pods.db!, [5432]);
    try {
      expect(reaches(pods.api!, ip('db'), 5432)).toBe(true);
      expect(reaches(pods.rep!, ip('db'), 5432)).toBe(false);
      rmSync(`${scratch.dir}/state`, { recursive: true, force: true });

      const del = direct({ node, verb: 'DEL', config: pluginConfig(l, 0, res.rep2), containerId: 'rep2', netns: pods.rep2!.path, env });
      expect(del.status, del.stdout).toBe(0);
      const table = tryInNetns(node, 'nft', ['-j', 'list', 'table', 'inet', 'nhi_policy']).stdout;
      expect(table).not.toContain(`"${ip('rep2')}"`);
      expect(enforcedAddresses(node)).toEqual([ip('api'), ip('db'), ip('rep')].sort());
      expect(reaches(pods.rep!, ip('db'), 5432)).toBe(false);
      expect(reaches(pods.api!, ip('db'), 5432)).toBe(true);

      // With no state, an ADD cannot place a pod without dropping the others: refused, rolled back.
      const pod = createNetns('nhip');
      const add = direct({ node, verb: 'ADD', config: pluginConfig(l, 0, undefined, workload('new', 'rep')), containerId: 'new', netns: pod.path, env });
      expect(add.status).toBe(1);
      expect(add.json.msg).toMatch(/policy state .* is missing/);
      expect(reservations(`${scratch.dir}/ipam/gone`).size).toBe(3);
      expect(tryInNetns(pod, 'ip', ['link', 'show', 'eth0']).status).not.toBe(0);
      expect(reaches(pods.rep!, ip('db'), 5432)).toBe(false);
    } finally {
      server.kill();
    }
  });
});

describe('nhi-ipam under a main plugin that runs IPAM first (the reference ptp)', () => {
  it('a repeated ADD fails without releasing the address the first one holds', () => {
    const pod = createNetns('nhip');
    const conf = { cniVersion: '1.0.0', name: 'ptpretry', type: 'ptp', ipam: { type: 'nhi-ipam', dataDir: `${scratch.dir}/ipam`, ranges: [[{ subnet: '10.97.0.0/24' }]] } };
    const run = () => direct({ node, verb: 'ADD', config: conf, containerId: 'ptpctr', netns: pod.path, binary: '/usr/lib/cni/ptp' });
    const first = run();
    expect(first.status, first.stdout).toBe(0);
    const again = run();
    expect(again.status).toBe(1);
    const ip = first.json.ips[0].address.split('/')[0];
    expect(reservations(`${scratch.dir}/ipam/ptpretry`).get(ip)).toBe('ptpctr');
  });
});
