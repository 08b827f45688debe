// The binary end to end: a strict `policy` and `log` section, the log file's
// mode, and unknown top-level keys reported at debug, not refused.
import { spawnSync } from 'node:child_process';
import { lstatSync, readFileSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { invoke, parse, Scratch } from '../helpers/plugin.js';
import { BINARY } from '../helpers/paths.js';

let scratch: Scratch;
beforeEach(() => {
  scratch = new Scratch();
});
afterEach(() => scratch.cleanup());

const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent' };
const conf = (extra: Record<string, unknown>) => JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'nhi-cni', stateDir: scratch.path('state'), ...extra });

describe('strict sections through the binary', () => {
  it('"policy": {"dirs": …} is refused with code 7, nothing written', () => {
    const r = invoke({ env: ENV, stdin: conf({ ipam: { type: 'host-local', subnet: '10.9.0.0/24', dataDir: scratch.path('ipam') }, policy: { dirs: '/etc/p' } }) });
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ code: 7, msg: 'unknown key "dirs" in policy: did you mean "dir"?' });
    expect(existsSync(scratch.path('state'))).toBe(false);
    expect(existsSync(scratch.path('ipam'))).toBe(false);
  });

  it('nhi-policy refuses the typo too', () => {
    const r = invoke({ env: ENV, stdin: conf({ type: 'nhi-policy', policy: { dirs: '/etc/p' }, prevResult: { cniVersion: '1.0.0', ips: [] } }) });
    expect(r.json).toMatchObject({ code: 7, msg: 'unknown key "dirs" in policy: did you mean "dir"?' });
  });

  it('a bad log level or relative log file is code 7; in the environment code 4', () => {
    expect(invoke({ env: ENV, stdin: conf({ log: { level: 'verbose' } }) }).json).toMatchObject({ code: 7, msg: expect.stringMatching(/^log\.level "verbose"/) });
    expect(invoke({ env: ENV, stdin: conf({ log: { file: 'nhi.log' } }) }).json).toMatchObject({ code: 7, msg: expect.stringMatching(/^log\.file "nhi.log"/) });
    expect(invoke({ env: ENV, stdin: conf({ log: { levl: 'info' } }) }).json).toMatchObject({ code: 7, msg: 'unknown key "levl" in log: did you mean "level"?' });
    expect(invoke({ env: { ...ENV, NHI_CNI_LOG_LEVEL: 'loud' }, stdin: conf({}) }).json).toMatchObject({ code: 4 });
    expect(invoke({ env: { ...ENV, NHI_CNI_LOG_FILE: 'x.log' }, stdin: conf({}) }).json).toMatchObject({ code: 4 });
  });

  it('unknown top-level keys are ignored, and reported at debug', () => {
    const log = scratch.path('debug.log');
    const r = invoke({ env: { ...ENV, NHI_CNI_LOG_FILE: log, NHI_CNI_LOG_LEVEL: 'debug' }, stdin: conf({ bridgeName: 'x' }) });
    // Fails later for the missing ipam, not for the unknown key.
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringMatching(/missing 'ipam'/) });
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.find((l) => l.msg === 'unknown top-level config keys ignored')).toMatchObject({ level: 20, keys: ['bridgeName'] });
  });
});

describe('the log file', () => {
  it('is created 0600 even under umask 000, and never through a symlink', () => {
    const log = scratch.path('logs', 'nhi.log');
    const r = spawnSync('sh', ['-c', `umask 000; exec "${BINARY}"`], {
      env: { PATH: process.env.PATH, ...ENV, NHI_CNI_LOG_FILE: log }, input: conf({}), encoding: 'utf8',
    });
    expect(parse(r.stdout)).toMatchObject({ code: 7 });
    expect(lstatSync(log).mode & 0o777).toBe(0o600);
    expect(readFileSync(log, 'utf8')).toMatch(/missing 'ipam'/);

    const target = scratch.path('elsewhere');
    writeFileSync(target, '');
    const link = scratch.path('logs', 'link.log');
    symlinkSync(target, link);
    const r2 = invoke({ env: { ...ENV, NHI_CNI_LOG_FILE: link }, stdin: conf({}) });
    expect(r2.json).toMatchObject({ code: 7 });
    expect(readFileSync(target, 'utf8')).toBe('');
  });
});
