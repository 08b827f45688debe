// Leak reclaim on a node namespace: pods whose runtime never sent DEL (their
// namespace deleted, as `ctr run --cni` leaves them), a simulated reboot (an
// attachment record of another boot id), a reservation nhi-cni cannot judge,
// and live ones - `ipam check` lists exactly the dead, `ipam release
// --from-report` frees exactly those still dead, and an exhausted /29 frees
// its dead reservations for the next ADD.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainConflist, direct, directAsync, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, deleteNetns, linksOfType, recreateNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { BINARY } from '../helpers/paths.js';

const FAKE_BOOT = '00000000-0000-4000-8000-000000000000';
const NET = 'leaky';

let scratch: Scratch;
let node: Netns;
const holders: ChildProcess[] = [];
beforeEach(() => {
  scratch = new Scratch();
  node = createNetns('nhin');
});
afterEach(() => {
  for (const h of holders.splice(0)) h.kill('SIGKILL');
  deleteAllNetns();
  scratch.cleanup();
});

const list = (subnet: string) => chainConflist({ kind: 'nhi-cni', name: NET, cniVersion: '1.1.0', bridge: 'nhi0', ranges: [[subnet]], dir: scratch.dir });
const dataDir = () => `${scratch.dir}/ipam`;
const stateDir = () => `${scratch.dir}/state`;
const reserved = () => readdirSync(`${dataDir()}/${NET}`).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).sort();
const recordFile = (id: string) => `${stateDir()}/${NET}/attachments/${id}:eth0.json`;
const editRecord = (id: string, change: (r: Record<string, unknown>) => void) => {
  const r = JSON.parse(readFileSync(recordFile(id), 'utf8')) as Record<string, unknown>;
  change(r);
  writeFileSync(recordFile(id), `${JSON.stringify(r)}\n`);
};
const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();

function add(l: ReturnType<typeof list>, id: string, pod: Netns, env: Record<string, string> = {}) {
  return direct({ node, verb: 'ADD', config: pluginConfig(l, 0), containerId: id, netns: pod.path, env: { ...testEnv(scratch.dir), ...env } });
}

function cli(args: string[]) {
  const r = spawnSync('ip', ['netns', 'exec', node.name, BINARY, ...args, '--data-dir', dataDir(), '--state-dir', stateDir()], { encoding: 'utf8', env: { PATH: process.env.PATH } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Holds an attachment's lock as an ADD in flight would (flock(1) takes the same flock(2) lock). */
async function holdLock(id: string): Promise<void> {
  const p = spawn('flock', [`${stateDir()}/${NET}/locks/${id}:eth0.lock`, '-c', 'echo held; sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  holders.push(p);
  await new Promise<void>((resolve) => p.stdout!.once('data', () => resolve()));
}

describe('ipam check and release --from-report', () => {
  it('lists exactly the dead reservations, and releases exactly those still dead', async () => {
    const l = list('10.61.0.0/24');
    const pods = Object.fromEntries(['live', 'gone', 'reboot', 'busy', 'back', 'young'].map((k) => [k, createNetns('nhip')])) as Record<string, Netns>;
    const ip: Record<string, string> = {};
    for (const [id, pod] of Object.entries(pods)) {
      const r = add(l, id, pod);
      expect(r.status, r.stdout).toBe(0);
      ip[id] = r.json.ips[0].address.split('/')[0];
    }
    expect(JSON.parse(readFileSync(recordFile('live'), 'utf8')).boot).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    // ADD without DEL: the runtime removed the namespaces (and with them the veths), never sent DEL.
    for (const id of ['gone', 'reboot', 'busy', 'back', 'young']) deleteNetns(pods[id]!);
    for (const id of ['gone', 'busy', 'back']) editRecord(id, (r) => { r.created = minutesAgo(5); });
    // A record of an earlier boot, written a moment ago (the grace period does not protect it).
    editRecord('reboot', (r) => { r.boot = FAKE_BOOT; });
    // A reservation without a record (the reference host-local, a delegating plugin): never judged dead.
    writeFileSync(`${dataDir()}/${NET}/10.61.0.200`, 'someoneelse\r\neth0');
    await holdLock('busy');

    const check = cli(['ipam', 'check', '-o', 'json']);
    expect(check.status, check.stderr).toBe(0);
    const report = JSON.parse(check.stdout);
    const byIp = (f: { ip: string }[]) => Object.fromEntries(f.map((x: any) => [x.ip, `${x.state}/${x.reason}`]));
    expect(byIp(report.findings)).toEqual({
      [ip.gone!]: 'leaked/netns-gone',
      [ip.reboot!]: 'leaked/previous-boot',
      [ip.back!]: 'leaked/netns-gone',
      '10.61.0.200': 'unknown/no-record',
    });
    const all = JSON.parse(cli(['ipam', 'check', '--all', '-o', 'json']).stdout);
    expect(byIp(all.findings)).toMatchObject({ [ip.live!]: 'live/host-veth', [ip.busy!]: 'live/in-flight', [ip.young!]: 'live/recent' });
    const table = cli(['ipam', 'check']);
    expect(table.stdout).toMatch(new RegExp(`^NETWORK +ADDRESS +STATE +REASON +IFNAME +CONTAINER\\n`));
    expect(table.stdout).toContain('previous-boot');

    // Between check and release, "back"'s namespace path exists again: no longer provably dead.
    recreateNetns(pods.back!);
    const file = scratch.path('report.json');
    writeFileSync(file, check.stdout);
    const rel = cli(['ipam', 'release', '--from-report', file, '-o', 'json']);
    expect(rel.status, rel.stderr).toBe(1); // one kept
    const rows = rel.stdout.trim().split('\n').map((x) => JSON.parse(x));
    expect(Object.fromEntries(rows.map((x) => [x.ip, `${x.action}/${x.reason}`]))).toEqual({
      [ip.gone!]: 'released/netns-gone',
      [ip.reboot!]: 'released/previous-boot',
      [ip.back!]: 'kept/netns-present',
    });
    expect(reserved()).toEqual([ip.live, ip.busy, ip.back, ip.young, '10.61.0.200'].sort());
    expect(existsSync(recordFile('gone'))).toBe(false);
    expect(existsSync(recordFile('reboot'))).toBe(false);
    expect(existsSync(recordFile('live'))).toBe(true);
    expect(existsSync(`${stateDir()}/${NET}/locks/gone:eth0.lock`)).toBe(false);
    // The live pod still works; a late DEL of a released attachment is fine.
    expect(linksOfType(node, 'veth')).toHaveLength(1);
    const late = direct({ node, verb: 'DEL', config: pluginConfig(l, 0), containerId: 'gone', netns: '', env: testEnv(scratch.dir) });
    expect(late.status, late.stdout).toBe(0);
    // The same report again releases nothing: the released ones have no record any more.
    const again = cli(['ipam', 'release', '--from-report', file, '-o', 'json']);
    expect(again.status).toBe(1);
    expect(again.stdout.trim().split('\n').map((x) => JSON.parse(x).action)).toEqual(['kept', 'kept', 'kept']);
    expect(reserved()).toEqual([ip.live, ip.busy, ip.back, ip.young, '10.61.0.200'].sort());
  });

  it('refuses a hostile or foreign report and changes nothing', () => {
    const l = list('10.62.0.0/24');
    const pod = createNetns('nhip');
    expect(add(l, 'x', pod).status).toBe(0);
    deleteNetns(pod);
    editRecord('x', (r) => { r.boot = FAKE_BOOT; });
    const good = JSON.parse(cli(['ipam', 'check', '-o', 'json']).stdout);
    const cases: [string, unknown, RegExp][] = [
      ['not JSON', '{', /not JSON/],
      ['another kind', { ...good, kind: 'x' }, /not a report/],
      ['another data dir', { ...good, dataDir: '/var/lib/cni/networks' }, /report is of data dir/],
      ['a path in the network', { ...good, findings: [{ ...good.findings[0], network: '../x' }] }, /invalid network/],
      ['a path as address', { ...good, findings: [{ ...good.findings[0], ip: '../../etc/passwd' }] }, /invalid address/],
      ['a non-canonical address', { ...good, findings: [{ ...good.findings[0], ip: '010.62.0.2' }] }, /invalid address/],
      ['a bad container id', { ...good, findings: [{ ...good.findings[0], containerId: 'a\nb' }] }, /invalid containerId/],
    ];
    for (const [what, doc, msg] of cases) {
      const file = scratch.path('bad.json');
      writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
      const r = cli(['ipam', 'release', '--from-report', file]);
      expect(r.status, what).toBe(2);
      expect(r.stderr, what).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(reserved()).toHaveLength(1);
    }
    expect(cli(['ipam', 'check', '--grace', 'soon']).status).toBe(2);
  });
});

describe('automatic reclaim when a range is exhausted', () => {
  it('a full /29 gives the next ADD an address of a dead pod, never of a live or recently dead one', () => {
    const l = list('10.63.0.0/29'); // .2 to .6: five addresses
    const log = scratch.path('cni.log');
    const env = { NHI_CNI_LOG_FILE: log, NHI_CNI_LOG_LEVEL: 'info' };
    const pods: Netns[] = [];
    const ips: string[] = [];
    for (let i = 0; i < 5; i++) {
      pods.push(createNetns('nhip'));
      const r = add(l, `p${i}`, pods[i]!, env);
      expect(r.status, r.stdout).toBe(0);
      ips.push(r.json.ips[0].address.split('/')[0]);
    }
    const full = add(l, 'extra', createNetns('nhip'), env);
    expect(full.json.code).toBe(101);
    // p1: rebooted away (another boot id); p2: namespace gone 5 minutes ago; p3: namespace gone just now (in the grace period).
    for (const i of [1, 2, 3]) deleteNetns(pods[i]!);
    editRecord('p1', (r) => { r.boot = FAKE_BOOT; });
    editRecord('p2', (r) => { r.created = minutesAgo(5); });
    const a = add(l, 'new1', createNetns('nhip'), env);
    expect(a.status, a.stdout).toBe(0);
    const b = add(l, 'new2', createNetns('nhip'), env);
    expect(b.status, b.stdout).toBe(0);
    expect([a.json.ips[0].address.split('/')[0], b.json.ips[0].address.split('/')[0]].sort()).toEqual([ips[1], ips[2]].sort());
    // Only p3 (recent) and the live ones are left: the next ADD fails, and nothing live was taken.
    const c = add(l, 'new3', createNetns('nhip'), env);
    expect(c.json.code).toBe(101);
    expect(reserved()).toEqual([...ips].sort());
    for (const id of ['p0', 'p3', 'p4', 'new1', 'new2']) expect(existsSync(recordFile(id)), id).toBe(true);
    for (const id of ['p1', 'p2']) expect(existsSync(recordFile(id)), id).toBe(false);
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((x) => JSON.parse(x));
    const reclaimed = lines.filter((x) => x.msg === 'range exhausted: released a dead reservation').map((x) => `${x.reclaimed.containerId}/${x.reclaimed.reason}`);
    expect(reclaimed.sort()).toEqual(['p1/previous-boot', 'p2/netns-gone']);
  });

  it('ADDs racing on a full range with dead reservations each get one, distinct', async () => {
    const l = list('10.64.0.0/29');
    const pods: Netns[] = [];
    const ips: string[] = [];
    for (let i = 0; i < 5; i++) {
      pods.push(createNetns('nhip'));
      const r = add(l, `q${i}`, pods[i]!);
      expect(r.status, r.stdout).toBe(0);
      ips.push(r.json.ips[0].address.split('/')[0]);
    }
    for (const i of [0, 2, 4]) {
      deleteNetns(pods[i]!);
      editRecord(`q${i}`, (r) => { r.boot = FAKE_BOOT; });
    }
    const fresh = [0, 1, 2, 3].map(() => createNetns('nhip'));
    const runs = await Promise.all(fresh.map((p, i) => directAsync({ node, verb: 'ADD', config: pluginConfig(l, 0), containerId: `r${i}`, netns: p.path, env: testEnv(scratch.dir) })));
    const ok = runs.filter((r) => r.status === 0);
    expect(ok).toHaveLength(3);
    expect(runs.filter((r) => r.status !== 0).map((r) => r.json.code)).toEqual([101]);
    expect(ok.map((r) => r.json.ips[0].address.split('/')[0]).sort()).toEqual([ips[0], ips[2], ips[4]].sort());
    expect(reserved()).toEqual([...ips].sort());
  });
});
