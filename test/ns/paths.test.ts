// Symbolic links in nhi-cni's directories: a link where the plugin writes is
// refused with code 7 and nothing is written through it; the configured
// directory may be a link to a root-owned directory only its owner can write
// (/var/lib on another disk). Real ADDs in a node namespace the test creates.
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chainConflist, direct, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, linksOfType, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';

describe('symbolic links in the state, data and run directories', () => {
  let node: Netns;
  let scratch: Scratch;
  let n = 0;
  beforeAll(() => {
    node = createNetns('nhin');
  });
  afterAll(() => deleteAllNetns());
  afterEach(() => scratch?.cleanup());

  /** A fresh base directory, an attacker-writable directory, and a conflist rooted in the base. */
  function world(policy = false) {
    scratch = new Scratch();
    const base = scratch.path('base');
    mkdirSync(base, { mode: 0o755 });
    const attacker = scratch.path('attacker');
    mkdirSync(attacker);
    chownSync(attacker, 65534, 65534);
    chmodSync(attacker, 0o777);
    const list = chainConflist({ kind: 'nhi-cni', name: `paths${++n}`, cniVersion: '1.0.0', bridge: `nhp${n}`, ranges: [['10.81.0.0/24']], dir: base });
    if (policy) (list.plugins[0] as Record<string, unknown>).policy = { manifests: [] };
    return { base, attacker, list };
  }
  const add = (list: ReturnType<typeof chainConflist>, base: string) => {
    const pod = createNetns('nhip');
    return { pod, r: direct({ node, verb: 'ADD', config: pluginConfig(list, 0), containerId: `c${n}`, netns: pod.path, env: testEnv(base) }) };
  };
  const tree = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String).sort();

  function refused(list: ReturnType<typeof chainConflist>, base: string, attacker: string, names: RegExp) {
    const before = tree(attacker);
    const { pod, r } = add(list, base);
    expect(r.json, r.stdout + r.stderr).toMatchObject({ code: 7, msg: expect.stringMatching(names) });
    expect(tree(attacker)).toEqual(before);
    for (const f of before) if (lstatSync(join(attacker, f)).isFile()) expect(readFileSync(join(attacker, f), 'utf8')).toBe('');
    expect(linksOfType(pod, 'veth')).toEqual([]);
    expect(linksOfType(node, 'veth')).toEqual([]);
  }

  it('stateDir linked to an attacker-writable directory: code 7, nothing written there', () => {
    const { base, attacker, list } = world();
    symlinkSync(attacker, join(base, 'state'));
    refused(list, base, attacker, /^stateDir .*\/state is a symbolic link to a directory that is not root-owned or that group or others can write$/);
  });

  it('<stateDir>/<network> and its attachments directory as links: code 7', () => {
    const w1 = world();
    mkdirSync(join(w1.base, 'state'), { mode: 0o700 });
    symlinkSync(w1.attacker, join(w1.base, 'state', w1.list.name));
    refused(w1.list, w1.base, w1.attacker, /\/state\/paths\d+ is a symbolic link/);
    scratch.cleanup();
    const w2 = world();
    mkdirSync(join(w2.base, 'state', w2.list.name), { recursive: true, mode: 0o700 });
    symlinkSync(w2.attacker, join(w2.base, 'state', w2.list.name, 'attachments'));
    refused(w2.list, w2.base, w2.attacker, /\/attachments is a symbolic link/);
  });

  it('ledger.jsonl linked to a file elsewhere: code 7, the file untouched', () => {
    const { base, attacker, list } = world();
    mkdirSync(join(base, 'state'), { mode: 0o700 });
    writeFileSync(join(attacker, 'target'), '');
    symlinkSync(join(attacker, 'target'), join(base, 'state', 'ledger.jsonl'));
    refused(list, base, attacker, /ledger\.jsonl is a symbolic link/);
  });

  it('policy-state.json linked to a file elsewhere: code 7, the file untouched', () => {
    const { base, attacker, list } = world(true);
    mkdirSync(join(base, 'state'), { mode: 0o700 });
    writeFileSync(join(attacker, 'target'), '');
    symlinkSync(join(attacker, 'target'), join(base, 'state', 'policy-state.json'));
    refused(list, base, attacker, /policy-state\.json is a symbolic link/);
  });

  it('dataDir and <dataDir>/<network> linked to an attacker-writable directory: code 7', () => {
    const w1 = world();
    symlinkSync(w1.attacker, join(w1.base, 'ipam'));
    refused(w1.list, w1.base, w1.attacker, /^dataDir .*\/ipam is a symbolic link to a directory that is not root-owned/);
    expect(existsSync(join(w1.base, 'state', w1.list.name, 'attachments'))).toBe(true);
    expect(readdirSync(join(w1.base, 'state', w1.list.name, 'attachments'))).toEqual([]);
    scratch.cleanup();
    const w2 = world();
    mkdirSync(join(w2.base, 'ipam'), { mode: 0o755 });
    symlinkSync(w2.attacker, join(w2.base, 'ipam', w2.list.name));
    refused(w2.list, w2.base, w2.attacker, /\/ipam\/paths\d+ is a symbolic link/);
  });

  it('the run dir linked to an attacker-writable directory: code 7', () => {
    const { base, attacker, list } = world();
    symlinkSync(attacker, join(base, 'run'));
    refused(list, base, attacker, /^run dir .*\/run is a symbolic link/);
  });

  it('stateDir and dataDir linked to root-owned 0755 directories: the ADD works and writes there', () => {
    const { base, list } = world();
    const disk = scratch.path('otherdisk');
    for (const d of ['state', 'ipam']) {
      mkdirSync(join(disk, d), { recursive: true, mode: 0o755 });
      chmodSync(join(disk, d), 0o755);
      symlinkSync(join(disk, d), join(base, d));
    }
    const { pod, r } = add(list, base);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(linksOfType(pod, 'veth')).toEqual(['eth0']);
    expect(readdirSync(join(disk, 'state', list.name, 'attachments'))).toEqual([`c${n}:eth0.json`]);
    expect(readFileSync(join(disk, 'state', 'ledger.jsonl'), 'utf8')).toMatch(/"event":"ADD"/);
    expect(readdirSync(join(disk, 'ipam', list.name))).toContain(r.json.ips[0].address.split('/')[0]);
    const del = direct({ node, verb: 'DEL', config: pluginConfig(list, 0), containerId: `c${n}`, netns: pod.path, env: testEnv(base) });
    expect(del.status, del.stdout).toBe(0);
    expect(readdirSync(join(disk, 'state', list.name, 'attachments'))).toEqual([]);
  });
});
