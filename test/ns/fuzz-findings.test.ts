// Regression tests for what `npm run fuzz` found, run against the real binary
// in the test's own node and pod namespaces: each input used to end in a
// stack trace, a code 100 or files written by a rejected call.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { direct, testEnv } from '../helpers/chain.js';
import { addressesOf, createNetns, deleteNetns, inNetns, linksOfType, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';

/** Files (not directories) under dir, relative; lock files are allowed to stay. */
function filesUnder(dir: string, base = dir): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p, base) : [p.slice(base.length + 1)];
  });
}

describe('fuzz findings', () => {
  let node: Netns;
  let pod: Netns;
  const scratch = new Scratch();
  const env = testEnv(scratch.dir);

  beforeAll(() => {
    node = createNetns('nhin');
    pod = createNetns('nhip');
  });
  afterAll(() => {
    for (const ns of [pod, node]) if (ns) deleteNetns(ns);
    scratch.cleanup();
  });

  const config = (name: string, extra: Record<string, unknown> = {}) => ({
    cniVersion: '1.1.0', name, type: 'nhi-cni', bridge: 'fzbr0', isGateway: true, ipMasq: true,
    stateDir: scratch.path(`state-${name.slice(0, 8)}`),
    ipam: { type: 'host-local', dataDir: scratch.path(`data-${name.slice(0, 8)}`), ranges: [[{ subnet: '10.123.0.0/24' }], [{ subnet: 'fd00:123::/64' }]] },
    ...extra,
  });

  it('a 255-character network name with ipMasq works end to end: ADD, masquerade, CHECK, DEL', () => {
    // It used to crash with a stack trace and no error JSON: the masquerade
    // rule's comment held the whole name and nft refused it.
    const name = `n${'a'.repeat(253)}z`;
    expect(name).toHaveLength(255);
    const c = config(name);
    const add = direct({ node, verb: 'ADD', config: c, containerId: 'longnet', netns: pod.path, env });
    expect(/^\s+at /m.test(add.stderr), 'a stack trace on stderr').toBe(false);
    expect(add.status, add.stdout).toBe(0);
    expect(addressesOf(pod, 'eth0')).toHaveLength(2);
    const ruleset = inNetns(node, 'nft', ['-j', 'list', 'table', 'inet', 'nhi_cni']);
    const comments = (JSON.parse(ruleset).nftables as { rule?: { comment?: string } }[]).flatMap((o) => (o.rule?.comment ? [o.rule.comment] : []));
    expect(comments).toHaveLength(2);
    for (const cm of comments) {
      expect(Buffer.byteLength(cm)).toBeLessThanOrEqual(128);
      expect(cm).toMatch(/^nhi-cni masquerade (10\.123\.0\.0\/24|fd00:123::\/64) network naaa+~[0-9a-f]{8}$/);
    }
    const withPrev = { ...c, prevResult: add.json };
    const check = direct({ node, verb: 'CHECK', config: withPrev, containerId: 'longnet', netns: pod.path, env });
    expect(check.status, check.stdout).toBe(0);
    const del = direct({ node, verb: 'DEL', config: withPrev, containerId: 'longnet', netns: pod.path, env });
    expect(del.status, del.stdout).toBe(0);
    expect(linksOfType(node, 'veth')).toEqual([]);
    expect(filesUnder(scratch.path('data-naaaaaaa')).filter((f) => !/(^|\/)(lock|last_reserved_ip\.\d+)$/.test(f))).toEqual([]);
    expect(filesUnder(scratch.path('state-naaaaaaa')).filter((f) => f.includes('attachments'))).toEqual([]);
  });

  it.each([
    ['stateDir', { stateDir: '/tmp/nhi-fuzz\0x' }, /^config\.stateDir contains a NUL byte$/],
    ['ipam.dataDir', { ipam: { type: 'host-local', dataDir: '/tmp/x\0', subnet: '10.124.0.0/24' } }, /^config\.ipam\.dataDir contains a NUL byte$/],
    ['policy.dir', { policy: { dir: '/etc/\0' } }, /^config\.policy\.dir contains a NUL byte$/],
    ['stateDir, a component over 255 bytes', { stateDir: `/tmp/${'s'.repeat(256)}` }, /^stateDir ".*" has a component longer than 255 bytes$/],
    ['ipam.dataDir, a control character', { ipam: { type: 'host-local', dataDir: '/tmp/a\nb', subnet: '10.124.0.0/24' } }, /^ipam\.dataDir ".*" may not contain NUL or control characters$/],
  ])('%s that the filesystem cannot take is code 7 on every verb, not an internal error', (_what, extra, msg) => {
    for (const verb of ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']) {
      const c = { ...config('fznul', extra), prevResult: { cniVersion: '1.1.0' }, 'cni.dev/valid-attachments': [] };
      const r = direct({ node, verb, config: c, containerId: 'nul', netns: pod.path, env });
      expect(r.status, `${verb}: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.json, verb).toMatchObject({ code: 7 });
      expect(r.json.msg, verb).toMatch(msg);
    }
    expect(filesUnder(scratch.path('state-fznul'))).toEqual([]);
  });

  it('an NHI_CNI_RUN_DIR the filesystem cannot take is code 4 before anything is reserved', () => {
    // It used to crash with a stack trace, leaving a reservation and a record.
    const c = config('fzrun');
    const r = direct({ node, verb: 'ADD', config: c, containerId: 'rundir', netns: pod.path, env: { NHI_CNI_RUN_DIR: scratch.path('r'.repeat(256)) } });
    expect(/^\s+at /m.test(r.stderr), 'a stack trace on stderr').toBe(false);
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ code: 4 });
    expect(r.json.msg).toMatch(/^invalid env variables: NHI_CNI_RUN_DIR ".*" has a component longer than 255 bytes$/);
    expect(filesUnder(scratch.path('state-fzrun'))).toEqual([]);
    expect(filesUnder(scratch.path('data-fzrun'))).toEqual([]);
    expect(linksOfType(node, 'veth')).toEqual([]);
  });

  it.each([
    ['CNI_IFNAME "ßtraße" (the kernel takes it, ip -batch does not)', {}, { CNI_IFNAME: 'ßtraße' }, 4, 'CNI_IFNAME "ßtraße" cannot be passed to ip'],
    ['bridge "*"', { bridge: '*' }, {}, 7, 'bridge name "*" cannot be passed to ip'],
  ])('ADD with %s is refused before IPAM and policy write anything', (_what, extra, envExtra, code, msg) => {
    // It used to fail in the ip batch, after the policy state and a compile were written.
    const c = config('fzipsafe', { ...extra, policy: { manifests: [] } });
    const r = direct({ node, verb: 'ADD', config: c, containerId: 'ipsafe', netns: pod.path, env: { ...env, ...envExtra } });
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ code, msg });
    expect(filesUnder(scratch.path('state-fzipsafe'))).toEqual([]);
    expect(filesUnder(scratch.path('data-fzipsafe'))).toEqual([]);
  });

  it('DEL with an ipam.type that is no file name fails up front and writes no policy state', () => {
    const c = config('fzdeleg', { ipam: { type: 'nhi-ip\rm' }, policy: { manifests: [] } });
    const r = direct({ node, verb: 'DEL', config: c, containerId: 'deleg', netns: '', env });
    expect(r.json).toMatchObject({ code: 7, msg: 'invalid ipam.type "nhi-ip\\rm"' });
    expect(filesUnder(scratch.path('state-fzdeleg'))).toEqual([]);
  });

  it('DEL and GC with an invalid IPAM section fail up front with code 7 and write no policy state', () => {
    // They used to write policy-state.json and a compile, then fail in IPAM.
    const c = config('fzipam', {
      ipam: { type: 'host-local', dataDir: scratch.path('data-fzipam'), ranges: [['10.125.0.0/24']] },
      policy: { manifests: [] },
      'cni.dev/valid-attachments': [],
    });
    for (const verb of ['DEL', 'GC']) {
      const r = direct({ node, verb, config: c, containerId: 'badipam', netns: '', env });
      expect(r.status, r.stdout).toBe(1);
      expect(r.json, verb).toMatchObject({ code: 7, msg: 'invalid IPAM configuration' });
    }
    expect(filesUnder(scratch.path('state-fzipam')).filter((f) => !f.endsWith('.lock'))).toEqual([]);
  });
});
