// `nhi-cni install`, run as operators and the DaemonSet run it: the built
// binary copying itself, its links and a conflist into temporary directories.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, copyFileSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Scratch } from '../helpers/plugin.js';
import { BINARY, ROOT } from '../helpers/paths.js';

let scratch: Scratch;
let bin: string;
let netd: string;
beforeEach(() => {
  scratch = new Scratch();
  bin = scratch.path('bin');
  netd = scratch.path('net.d');
});
afterEach(() => scratch.cleanup());

function install(...args: string[]) {
  const r = spawnSync(BINARY, ['install', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const standard = () => install('--bin-dir', bin, '--conf-dir', netd, '--subnet', '10.244.1.0/24');

function readConflist(name = '10-nhi-cni.conflist') {
  return JSON.parse(readFileSync(join(netd, name), 'utf8'));
}

describe('nhi-cni install', () => {
  it('installs the binary, its links and the Kubernetes conflist', () => {
    const r = standard();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`installed ${bin}/nhi-cni`);
    expect(r.stdout).toContain(`linked ${bin}/nhi-ipam -> nhi-cni`);
    expect(r.stdout).toContain(`linked ${bin}/nhi-policy -> nhi-cni`);
    expect(r.stdout).toContain(`wrote ${netd}/10-nhi-cni.conflist (network nhi-cni, subnet 10.244.1.0/24)`);

    // The binary: byte for byte dist/nhi-cni, executable, and it runs.
    const installed = join(bin, 'nhi-cni');
    expect(readFileSync(installed).equals(readFileSync(BINARY))).toBe(true);
    expect(statSync(installed).mode & 0o777).toBe(0o755);
    accessSync(installed, constants.X_OK);
    expect(spawnSync(installed, ['version'], { encoding: 'utf8' }).stdout).toMatch(/^nhi-cni \d+\.\d+\.\d+/);

    // The links: relative, resolving to the binary, answering as their type.
    for (const link of ['nhi-ipam', 'nhi-policy']) {
      expect(readlinkSync(join(bin, link))).toBe('nhi-cni');
      expect(realpathSync(join(bin, link))).toBe(realpathSync(installed));
      const v = spawnSync(join(bin, link), [], { encoding: 'utf8', env: { CNI_COMMAND: 'VERSION' } });
      expect(v.status).toBe(0);
      expect(JSON.parse(v.stdout).supportedVersions).toContain('1.0.0');
    }

    // The conflist: conflists/10-nhi-cni.conflist with the node's subnet.
    const conf = readConflist();
    expect(conf.plugins[0].ipam.ranges).toEqual([[{ subnet: '10.244.1.0/24' }]]);
    const expected = JSON.parse(readFileSync(join(ROOT, 'conflists/10-nhi-cni.conflist'), 'utf8'));
    expected.plugins[0].ipam.ranges[0][0].subnet = '10.244.1.0/24';
    expect(conf).toEqual(expected);
    expect(conf).toMatchObject({ cniVersion: '1.0.0', name: 'nhi-cni' });
    expect(conf.plugins.map((p: { type: string }) => p.type)).toEqual(['nhi-cni', 'portmap', 'bandwidth']);
    expect(statSync(join(netd, '10-nhi-cni.conflist')).mode & 0o777).toBe(0o644);

    // No temporary file is left behind.
    expect(readdirSync(bin).sort()).toEqual(['nhi-cni', 'nhi-ipam', 'nhi-policy']);
    expect(readdirSync(netd)).toEqual(['10-nhi-cni.conflist']);
  });

  it('replaces a running binary by rename: new inode, the old one intact for whoever has it', async () => {
    expect(standard().status).toBe(0);
    const installed = join(bin, 'nhi-cni');
    // Make the installed file distinguishable from what install writes, and
    // busy: a process runs it (writing into it would fail with ETXTBSY) and
    // an fd is open on it (an in-place rewrite would change what it reads).
    copyFileSync('/bin/sleep', installed);
    const old = readFileSync(installed);
    const running = spawn(installed, ['60'], { stdio: 'ignore' });
    await new Promise((resolve, reject) => running.once('spawn', resolve).once('error', reject));
    const fd = openSync(installed, 'r');
    const confFd = openSync(join(netd, '10-nhi-cni.conflist'), 'r');
    const oldConf = readFileSync(join(netd, '10-nhi-cni.conflist'));
    try {
      const inode = statSync(installed).ino;
      const confInode = statSync(join(netd, '10-nhi-cni.conflist')).ino;
      const r = install('--bin-dir', bin, '--conf-dir', netd, '--subnet', '10.244.2.0/24');
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(statSync(installed).ino).not.toBe(inode);
      expect(statSync(join(netd, '10-nhi-cni.conflist')).ino).not.toBe(confInode);
      expect(readFileSync(installed).equals(readFileSync(BINARY))).toBe(true);
      expect(readConflist().plugins[0].ipam.ranges[0][0].subnet).toBe('10.244.2.0/24');
      // The old inode still holds the old bytes.
      const buf = Buffer.alloc(old.length);
      expect(readSync(fd, buf, 0, buf.length, 0)).toBe(old.length);
      expect(buf.equals(old)).toBe(true);
      const cbuf = Buffer.alloc(oldConf.length);
      readSync(confFd, cbuf, 0, cbuf.length, 0);
      expect(cbuf.equals(oldConf)).toBe(true);
      expect(running.exitCode).toBe(null);
      for (const link of ['nhi-ipam', 'nhi-policy']) expect(realpathSync(join(bin, link))).toBe(realpathSync(installed));
      expect(readdirSync(bin).sort()).toEqual(['nhi-cni', 'nhi-ipam', 'nhi-policy']);
    } finally {
      closeSync(fd);
      closeSync(confFd);
      running.kill();
    }
  });

  it('installs a given conflist as it is, or none', () => {
    const minimal = join(ROOT, 'conflists/99-nhi-cni-minimal.conflist');
    const r = install('--bin-dir', bin, '--conf-dir', netd, '--conflist', minimal, '--name', '99-nhi-cni-minimal.conflist');
    expect(r.status).toBe(0);
    expect(readFileSync(join(netd, '99-nhi-cni-minimal.conflist'), 'utf8')).toBe(readFileSync(minimal, 'utf8'));
    expect(readConflist('99-nhi-cni-minimal.conflist').plugins[0].type).toBe('nhi-cni');

    const other = scratch.path('other');
    const n = install('--bin-dir', other, '--conf-dir', scratch.path('other.d'), '--no-conflist');
    expect(n.status).toBe(0);
    expect(n.stdout).toContain('conflist: not installed');
    expect(readdirSync(other).sort()).toEqual(['nhi-cni', 'nhi-ipam', 'nhi-policy']);
    expect(existsSync(scratch.path('other.d'))).toBe(false);
  });

  it('puts an IPv6 subnet in with an IPv6 default route', () => {
    expect(install('--bin-dir', bin, '--conf-dir', netd, '--subnet', 'fd00:10:244:1::/64').status).toBe(0);
    expect(readConflist().plugins[0].ipam).toMatchObject({ ranges: [[{ subnet: 'fd00:10:244:1::/64' }]], routes: [{ dst: '::/0' }] });
  });

  const refusals: [string, string[], RegExp][] = [
    ['a subnet with host bits set', ['--subnet', '10.244.1.5/24'], /not a network address.*did you mean 10\.244\.1\.0\/24/],
    ['a subnet that is no CIDR', ['--subnet', '10.244.1.0'], /not a subnet in CIDR notation/],
    ['a prefix too long', ['--subnet', '10.244.1.0/33'], /not a subnet in CIDR notation/],
    ['a subnet too small for pods', ['--subnet', '10.244.1.0/31'], /too small for pods/],
    ['an unexpanded variable', ['--subnet', '$(POD_CIDR)'], /variable was not expanded/],
    ['no subnet for the built-in conflist', [], /--subnet is required/],
    ['a relative bin dir', ['--bin-dir', 'bin'], /--bin-dir "bin" must be an absolute path/],
    ['a relative conf dir', ['--conf-dir', 'net.d'], /--conf-dir "net.d" must be an absolute path/],
    ['".." in the bin dir', ['--bin-dir', '/tmp/../bin'], /--bin-dir "\/tmp\/\.\.\/bin" may not contain "\.\."/],
    ['".." in the conf dir', ['--conf-dir', '/etc/cni/../net.d'], /--conf-dir "\/etc\/cni\/\.\.\/net\.d" may not contain "\.\."/],
    ['a conflist name with a path', ['--name', '../10-x.conflist'], /--name .* must be a plain file name/],
  ];
  for (const [what, args, message] of refusals) {
    it(`refuses ${what} and writes nothing`, () => {
      const defaults: Record<string, string> = { '--bin-dir': bin, '--conf-dir': netd, '--subnet': '10.244.1.0/24' };
      if (what.includes('no subnet')) delete defaults['--subnet'];
      for (let i = 0; i < args.length; i += 2) defaults[args[i]!] = args[i + 1]!;
      const r = install(...Object.entries(defaults).flat());
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^nhi-cni: install: /);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain('Nothing was changed.');
      expect(readdirSync(scratch.dir)).toEqual([]);
    });
  }

  it('refuses a conflist that is not JSON or lacks name, cniVersion or plugins', () => {
    const cases: [string, RegExp][] = [
      ['{"name":', /is not valid JSON/],
      ['{"cniVersion":"1.0.0","plugins":[{"type":"nhi-cni"}]}', /"name" must be a non-empty string/],
      ['{"name":"n","plugins":[{"type":"nhi-cni"}]}', /"cniVersion" must be one of/],
      ['{"name":"n","cniVersion":"1.0.0","plugins":[]}', /"plugins" must be a non-empty list/],
      ['{"name":"n","cniVersion":"1.0.0","plugins":[{"bridge":"x"}]}', /plugins\[0\]\.type/],
    ];
    const file = scratch.path('c.conflist');
    for (const [text, message] of cases) {
      writeFileSync(file, text);
      const r = install('--bin-dir', bin, '--conf-dir', netd, '--conflist', file);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(readdirSync(scratch.dir)).toEqual(['c.conflist']);
    }
  });

  it('explains itself with --help', () => {
    const r = install('--help');
    expect(r.status).toBe(0);
    for (const opt of ['--bin-dir <dir>', '--conf-dir <dir>', '--conflist <file>', '--no-conflist', '--subnet <cidr>', '--name <file name>', '/opt/cni/bin', '/etc/cni/net.d']) {
      expect(r.stdout).toContain(opt);
    }
  });
});
