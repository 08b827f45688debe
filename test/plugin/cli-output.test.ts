// The command line for scripts: -o json|yaml|wide parsed back, exit statuses
// (0 found, 1 nothing found, 2 bad input), and a reader that closes the pipe
// early (`| head -1`) ending the command without a stack trace.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Scratch } from '../helpers/plugin.js';
import { BINARY } from '../helpers/paths.js';

let scratch: Scratch;
beforeEach(() => {
  scratch = new Scratch();
});
afterEach(() => scratch.cleanup());

const cli = (...args: string[]) => {
  const r = spawnSync(BINARY, args, { encoding: 'utf8', env: { PATH: process.env.PATH }, maxBuffer: 1 << 26 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};
const lines = (s: string) => s.trim().split('\n').map((x) => JSON.parse(x));

function reservations(n: number): string {
  const dir = scratch.path('ipam', 'net1');
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) writeFileSync(`${dir}/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `ctr${i}\r\neth0`);
  return scratch.path('ipam');
}

describe('-o', () => {
  it('version: json and yaml documents', () => {
    const j = JSON.parse(cli('version', '-o', 'json').stdout);
    expect(j.pluginTypes).toEqual(['nhi-cni', 'nhi-ipam', 'nhi-policy']);
    expect(j.cniVersions).toContain('1.1.0');
    expect(parseYaml(cli('version', '-o', 'yaml').stdout)).toEqual(j);
  });

  it('ipam ls: json lines (= --json), yaml, wide, table', () => {
    const dataDir = reservations(3);
    const args = ['ipam', 'ls', '--data-dir', dataDir, '--state-dir', scratch.path('state')];
    const json = lines(cli(...args, '-o', 'json').stdout);
    expect(json).toEqual([0, 1, 2].map((i) => ({ network: 'net1', ip: `10.0.0.${i}`, containerId: `ctr${i}`, ifname: 'eth0' })));
    expect(lines(cli(...args, '--json').stdout)).toEqual(json);
    expect(parseYaml(cli(...args, '-o', 'yaml').stdout)).toEqual(json);
    expect(cli(...args).stdout.split('\n')[0]).toMatch(/^NETWORK +ADDRESS +IFNAME +CONTAINER$/);
    expect(cli(...args, '-o', 'wide').stdout.split('\n')[0]).toMatch(/^NETWORK +ADDRESS +IFNAME +HOSTVETH +CREATED +NETNS +CONTAINER$/);
    const bad = cli(...args, '-o', 'xml');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/argument 'xml' is invalid/);
  });

  it('a container id with a terminal escape is printed harmlessly in a table', () => {
    const dir = scratch.path('ipam', 'n');
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/10.9.0.2`, 'evil\u001b[2J\r\neth0');
    const out = cli('ipam', 'ls', '--data-dir', scratch.path('ipam')).stdout;
    expect(out).not.toContain('\u001b');
    expect(out).toContain('evil?[2J');
  });
});

describe('exit statuses', () => {
  it('who: 0 someone held it, 1 nobody, 2 bad input', () => {
    const state = scratch.path('state');
    mkdirSync(state);
    const t = '2026-11-28T07:00:00.000Z';
    writeFileSync(`${state}/ledger.jsonl`, `${JSON.stringify({ time: t, event: 'ADD', network: 'n', containerId: 'c1', ifname: 'eth0', netns: '/run/netns/x', ips: ['10.1.0.5/24'], pod: 'prod/api-0' })}\n`);
    const held = cli('who', '10.1.0.5', '--state-dir', state, '-o', 'json');
    expect(held.status).toBe(0);
    expect(lines(held.stdout)[0]).toMatchObject({ containerId: 'c1', pod: 'prod/api-0' });
    expect(parseYaml(cli('who', '10.1.0.5', '--state-dir', state, '-o', 'yaml').stdout)[0].pod).toBe('prod/api-0');
    const nobody = cli('who', '10.1.0.6', '--state-dir', state, '-o', 'json');
    expect(nobody.status).toBe(1);
    expect(nobody.stdout).toBe('');
    const bad = cli('who', 'not-an-ip', '--state-dir', state);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('nhi-cni who: "not-an-ip" is not an IPv4 or IPv6 address\n');
    expect(cli('who', '10.1.0.5', '--state-dir', state, '--at', 'yesterday').status).toBe(2);
  });

  it('usage errors exit 2, help 0', () => {
    expect(cli('ipam', 'ls', '--no-such-flag').status).toBe(2);
    expect(cli('no-such-command').status).toBe(2);
    expect(cli('ipam', 'release').status).toBe(2); // --from-report missing
    expect(cli('ipam', 'check', '--help').status).toBe(0);
  });
});

describe('a closed pipe', () => {
  it('`| head -1` ends quietly: no stack trace, no EPIPE on stderr', () => {
    const dataDir = reservations(4000); // ~200 KB of table: far more than a pipe holds
    for (const format of ['table', 'json']) {
      const r = spawnSync('bash', ['--norc', '--noprofile', '-c', `set -o pipefail; "${BINARY}" ipam ls --data-dir "${dataDir}" -o ${format} | head -1`], { encoding: 'utf8', env: { PATH: process.env.PATH } });
      expect(r.stdout.split('\n')).toHaveLength(2);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    }
  });
});
