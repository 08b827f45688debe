// `nhi-cni uninstall` on a node namespace: install, wire a pod, and take it
// all away again - the bin and conf dirs, the nftables ruleset and the links
// of the node end as they were before install; a node with pods refuses
// unless --force, naming them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { direct, pluginConfig } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, inNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { BINARY } from '../helpers/paths.js';
import { ensureDivertRouting, L7_DIVERT, redirectTransaction } from '../../src/l7/redirect.js';
import { run } from '../../src/sys/exec.js';

let scratch: Scratch;
let node: Netns;
let bin: string;
let netd: string;
beforeEach(() => {
  scratch = new Scratch();
  node = createNetns('nhin');
  bin = scratch.path('bin');
  netd = scratch.path('net.d');
  // A node already has other plugins and configs: they must survive.
  mkdirSync(bin);
  mkdirSync(netd);
  writeFileSync(`${bin}/portmap`, 'not ours');
  writeFileSync(`${netd}/99-other.conflist`, '{"name":"other","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}');
});
afterEach(() => {
  deleteAllNetns();
  scratch.cleanup();
});

const env = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', NHI_CNI_RUN_DIR: scratch.path('run') });

function conflist() {
  mkdirSync(scratch.path('policies'), { recursive: true });
  return {
    cniVersion: '1.0.0', name: 'uni',
    plugins: [{
      type: 'nhi-cni', bridge: 'nhi0', isGateway: true, ipMasq: true, stateDir: scratch.path('state'),
      ipam: { type: 'host-local', dataDir: scratch.path('ipam'), ranges: [[{ subnet: '10.71.0.0/24' }]] },
      policy: { dir: scratch.path('policies') },
    }],
  };
}

function nhi(args: string[]) {
  const r = spawnSync('ip', ['netns', 'exec', node.name, BINARY, ...args], { encoding: 'utf8', env: env() });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function snapshot() {
  return {
    bin: readdirSync(bin).sort(),
    netd: readdirSync(netd).sort(),
    ruleset: inNetns(node, 'nft', ['list', 'ruleset']),
    links: (JSON.parse(inNetns(node, 'ip', ['-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname).sort(),
    sysctls: inNetns(node, 'sysctl', ['-e', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding', 'net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables']),
    rules: ['-4', '-6'].map((f) => inNetns(node, 'ip', [f, 'rule', 'list'])),
  };
}

function installAndAdd(id: string): { pod: Netns; add: ReturnType<typeof direct>; conf: ReturnType<typeof conflist> } {
  const conf = conflist();
  const file = scratch.path('my.conflist');
  writeFileSync(file, JSON.stringify(conf));
  const inst = nhi(['install', '--bin-dir', bin, '--conf-dir', netd, '--conflist', file]);
  expect(inst.status, inst.stderr).toBe(0);
  const pod = createNetns('nhip');
  const add = direct({ node, binary: `${bin}/nhi-cni`, verb: 'ADD', config: pluginConfig(conf as never, 0), containerId: id, netns: pod.path, env: { NHI_CNI_RUN_DIR: scratch.path('run') } });
  expect(add.status, add.stdout).toBe(0);
  return { pod, add, conf };
}

describe('nhi-cni uninstall', () => {
  it('refuses while a pod is attached, then --purge leaves the node as before install (the agent\'s L7 redirect and routing included)', async () => {
    const before = snapshot();
    const { pod, add, conf } = installAndAdd('pod-one');
    const during = snapshot();
    expect(during.ruleset).toContain('table bridge nhi_cni');
    expect(during.ruleset).toContain('table inet nhi_cni');
    expect(during.ruleset).toContain('table inet nhi_policy');
    expect(during.links).toContain('nhi0');
    expect(during.sysctls).toContain('net.ipv4.ip_forward = 1');
    expect(before.sysctls).toContain('net.ipv4.ip_forward = 0');

    const refused = nhi(['uninstall', '--bin-dir', bin, '--conf-dir', netd, '--purge']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/1 pod\(s\) attached/);
    expect(refused.stderr).toContain('uni container pod-one eth0');
    expect(refused.stdout).toBe('');
    expect(snapshot()).toEqual(during);

    const del = direct({ node, binary: `${bin}/nhi-cni`, verb: 'DEL', config: pluginConfig(conf as never, 0, add.json), containerId: 'pod-one', netns: pod.path, env: { NHI_CNI_RUN_DIR: scratch.path('run') } });
    expect(del.status, del.stdout).toBe(0);
    // What an agent serving L7 rules leaves in the kernel: the redirect table and the proxy's reply routing.
    writeFileSync(scratch.path('l7.json'), redirectTransaction([{ podIp: '10.71.0.9', port: 80, listenIp: '10.71.0.1', listenPort: 16001, from: true }], { divert: true }).json());
    inNetns(node, 'nft', ['-j', '-f', scratch.path('l7.json')]);
    for (const f of [4, 6] as const) await ensureDivertRouting(f, (a) => run('ip', ['-n', node.name, ...a]));
    expect(inNetns(node, 'ip', ['-6', 'rule', 'list'])).toContain(`lookup ${L7_DIVERT.table}`);
    const r = nhi(['uninstall', '--bin-dir', bin, '--conf-dir', netd, '--purge']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // The conflist goes first.
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(`removed ${netd}/10-nhi-cni.conflist`);
    expect(lines).toContain(`removed ${bin}/nhi-cni`);
    expect(lines).toContain('removed bridge nhi0');
    expect(lines).toContain('restored sysctl net.ipv4.ip_forward = 0 (nhi-cni had set 1)');
    expect(lines).toContain('removed nftables table inet nhi_l7');
    expect(lines).toContain(`removed IPv4 routing rule ${L7_DIVERT.priority} (L7 proxy replies)`);
    expect(lines).toContain(`removed IPv6 routing table ${L7_DIVERT.table} (L7 proxy replies)`);
    expect(snapshot()).toEqual(before);
    expect(existsSync(scratch.path('state'))).toBe(false);
    expect(existsSync(scratch.path('ipam', 'uni'))).toBe(false);
    expect(existsSync(scratch.path('run'))).toBe(false);
    expect(readFileSync(`${bin}/portmap`, 'utf8')).toBe('not ours');
    // Twice is fine: nothing left to do.
    expect(nhi(['uninstall', '--bin-dir', bin, '--conf-dir', netd, '--purge']).status).toBe(0);
  });

  it('--force goes on with a pod attached, keeping the bridge its port is on', () => {
    installAndAdd('pod-two');
    const r = nhi(['uninstall', '--bin-dir', bin, '--conf-dir', netd, '--purge', '--force']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/--force: going on with 1 pod\(s\) attached/);
    expect(r.stdout).toMatch(/kept bridge nhi0: 1 port\(s\) still on it/);
    const after = snapshot();
    expect(after.bin).toEqual(['portmap']);
    expect(after.netd).toEqual(['99-other.conflist']);
    expect(after.ruleset).not.toMatch(/nhi_cni|nhi_policy/);
  });

  it('keeps what install did not write, and refuses bad input changing nothing', () => {
    writeFileSync(`${netd}/10-nhi-cni.conflist`, '{"name":"x","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}');
    writeFileSync(`${bin}/nhi-cni`, 'a file of the same name');
    spawnSync('ln', ['-s', '/bin/true', `${bin}/nhi-ipam`]);
    const r = nhi(['uninstall', '--bin-dir', bin, '--conf-dir', netd]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`kept ${netd}/10-nhi-cni.conflist: none of its plugins is nhi-cni's`);
    expect(r.stdout).toContain(`kept ${bin}/nhi-ipam: not what install writes`);
    expect(existsSync(`${netd}/10-nhi-cni.conflist`)).toBe(true);
    expect(existsSync(`${bin}/nhi-ipam`)).toBe(true);
    for (const bad of [['--bin-dir', 'relative'], ['--state-dir', '/var/../etc'], ['--name', '../x.conflist'], ['--bridge', 'a b']]) {
      const x = nhi(['uninstall', '--bin-dir', bin, '--conf-dir', netd, ...bad]);
      expect(x.status, bad.join(' ')).toBe(2);
      expect(x.stderr).toMatch(/Nothing was changed/);
    }
  });

  it('--purge removes only what nhi-cni wrote in a state directory it shares', () => {
    const { pod, add, conf } = installAndAdd('pod-three');
    const del = direct({ node, binary: `${bin}/nhi-cni`, verb: 'DEL', config: pluginConfig(conf as never, 0, add.json), containerId: 'pod-three', netns: pod.path, env: { NHI_CNI_RUN_DIR: scratch.path('run') } });
    expect(del.status, del.stdout).toBe(0);
    expect(existsSync(scratch.path('state', 'ledger.jsonl'))).toBe(true);
    writeFileSync(scratch.path('state', 'notes.txt'), 'someone else\'s');
    mkdirSync(scratch.path('state', 'other'));
    writeFileSync(scratch.path('state', 'other', 'data'), 'x');
    const r = nhi(['uninstall', '--bin-dir', bin, '--conf-dir', netd, '--purge']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`kept state directory ${scratch.path('state')}: it holds what nhi-cni did not write (notes.txt, other)`);
    expect(readdirSync(scratch.path('state')).sort()).toEqual(['notes.txt', 'other']);
  });

  it('--purge empties a state directory that is a mount point (a DaemonSet hostPath) instead of failing', () => {
    installAndAdd('pod-four');
    const state = scratch.path('state');
    // A private mount namespace: the bind mount never exists outside this one command.
    const r = spawnSync('ip', ['netns', 'exec', node.name, 'unshare', '-m', '--propagation', 'private', 'sh', '-c',
      'mount --bind "$1" "$1" && exec "$2" uninstall --bin-dir "$3" --conf-dir "$4" --purge --force', 'sh', state, BINARY, bin, netd], { encoding: 'utf8', env: env() });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`emptied state directory ${state} (a mount point stays)`);
    expect(readdirSync(state)).toEqual([]);
  });
});
