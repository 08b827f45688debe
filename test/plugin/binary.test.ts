// The single executable itself: what it answers without a config, and what it
// refuses to let the environment inject.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { invoke, Scratch } from '../helpers/plugin.js';
import { BINARY, DIST } from '../helpers/paths.js';

let scratch: Scratch;
beforeEach(() => {
  scratch = new Scratch();
});
afterEach(() => scratch.cleanup());

describe('dist/nhi-cni', () => {
  it('answers VERSION with every supported spec version, under each of its names', () => {
    for (const name of ['nhi-cni', 'nhi-ipam', 'nhi-policy']) {
      const r = invoke({ binary: `${DIST}/${name}`, env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"1.1.0"}' });
      expect(r.status).toBe(0);
      expect(r.json).toEqual({ cniVersion: '1.1.0', supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
      expect(r.stderr).toBe('');
    }
  });

  it('does not run code injected through NODE_OPTIONS', () => {
    const marker = scratch.path('injected');
    const payload = scratch.path('payload.js');
    writeFileSync(payload, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran');`);
    // Positive control: a plain node honours it, so the marker would appear.
    const plain = spawnSync(process.execPath, ['-e', '0'], { env: { ...process.env, NODE_OPTIONS: `--require ${payload}` } });
    expect(plain.status).toBe(0);
    expect(existsSync(marker)).toBe(true);
    rmSync(marker);
    const r = invoke({ env: { CNI_COMMAND: 'VERSION', NODE_OPTIONS: `--require ${payload}` } });
    expect(r.status).toBe(0);
    expect(existsSync(marker)).toBe(false);
  });

  it('refuses an unknown CNI_COMMAND with code 4 on stdout', () => {
    const r = invoke({ env: { CNI_COMMAND: 'FROB' } });
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ code: 4, msg: 'unknown CNI_COMMAND: FROB' });
  });

  it('names its type when it cannot tell which plugin to be', () => {
    const other = scratch.path('bridge');
    symlinkSync(BINARY, other);
    const r = invoke({
      binary: other,
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0' },
      stdin: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'bridge' }),
    });
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toMatch(/config type is "bridge" and the binary is called "bridge"/);
  });

  it('is a CLI for people without CNI_COMMAND', () => {
    const r = spawnSync(BINARY, ['version'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^nhi-cni \d+\.\d+\.\d+/);
    const help = spawnSync(BINARY, ['ipam', 'ls', '--help'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--data-dir/);
  });
});
