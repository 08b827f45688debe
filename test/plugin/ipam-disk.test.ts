// nhi-ipam against the disk, by direct invocation of the binary as a main
// plugin would run it: sharing a directory with the reference host-local,
// under concurrency, GC, STATUS and bad input. IPAM touches only files, so no
// namespace is needed here.
import { readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { filesIn, ipamConfig, NHI_IPAM, REF_HOST_LOCAL, runIpam, runIpamAsync } from '../helpers/ipam.js';
import { invoke, Scratch } from '../helpers/plugin.js';

let scratch: Scratch;
beforeEach(() => {
  scratch = new Scratch();
});
afterEach(() => scratch.cleanup());

const addressFiles = (dir: string) => filesIn(dir).filter((f) => /^[0-9a-f]*[.:]/.test(f) && !f.startsWith('last_reserved_ip'));

describe('sharing one dataDir with the reference host-local', () => {
  const conf = () => ipamConfig({ name: 'shared', dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.20.0.0/24' }]] } });

  it('an address reserved by host-local is taken for nhi-ipam and released by its DEL', () => {
    const ref = runIpam(REF_HOST_LOCAL, 'ADD', conf(), 'refctr');
    expect(ref.status, ref.stdout).toBe(0);
    expect(ref.json.ips[0].address).toBe('10.20.0.2/24');
    // nhi-ipam continues the round robin from host-local's last_reserved_ip.0.
    const ours = runIpam(NHI_IPAM, 'ADD', conf(), 'ourctr');
    expect(ours.status, ours.stdout).toBe(0);
    expect(ours.json.ips[0].address).toBe('10.20.0.3/24');
    // nhi-ipam's DEL of the container host-local served releases it.
    expect(runIpam(NHI_IPAM, 'DEL', conf(), 'refctr').status).toBe(0);
    expect(addressFiles(scratch.path('d/shared'))).toEqual(['10.20.0.3']);
  });

  it('an address reserved by nhi-ipam is taken for host-local and released by its DEL', () => {
    const ours = runIpam(NHI_IPAM, 'ADD', conf(), 'ourctr');
    expect(ours.json.ips[0].address).toBe('10.20.0.2/24');
    const content = readFileSync(scratch.path('d/shared/10.20.0.2'), 'utf8');
    expect(content).toBe('ourctr\r\neth0');
    expect(statSync(scratch.path('d/shared/10.20.0.2')).mode & 0o777).toBe(0o600);
    expect(readFileSync(scratch.path('d/shared/last_reserved_ip.0'), 'utf8')).toBe('10.20.0.2');
    const ref = runIpam(REF_HOST_LOCAL, 'ADD', conf(), 'refctr');
    expect(ref.json.ips[0].address).toBe('10.20.0.3/24');
    // host-local's CHECK sees our reservation as the attachment's.
    expect(runIpam(REF_HOST_LOCAL, 'CHECK', conf(), 'ourctr').status).toBe(0);
    expect(runIpam(REF_HOST_LOCAL, 'DEL', conf(), 'ourctr').status).toBe(0);
    expect(addressFiles(scratch.path('d/shared'))).toEqual(['10.20.0.3']);
  });

  it('legacy one-line reservation files are released by DEL', () => {
    mkdirSync(scratch.path('d/shared'), { recursive: true });
    writeFileSync(scratch.path('d/shared/10.20.0.9'), 'oldctr');
    expect(runIpam(NHI_IPAM, 'DEL', conf(), 'oldctr').status).toBe(0);
    expect(addressFiles(scratch.path('d/shared'))).toEqual([]);
  });

  it('64 parallel ADDs from both plugins into a /26 never hand out an address twice', async () => {
    const c = ipamConfig({ name: 'mixed', dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.21.0.0/26' }]] } });
    const runs = await Promise.all(
      Array.from({ length: 64 }, (_, i) => runIpamAsync(i % 2 ? REF_HOST_LOCAL : NHI_IPAM, 'ADD', c, `mix${i}`)),
    );
    const ok = runs.filter((r) => r.status === 0);
    expect(ok).toHaveLength(61);
    const addrs = ok.map((r) => r.json.ips[0].address);
    expect(new Set(addrs).size).toBe(61);
    expect(addressFiles(scratch.path('d/mixed'))).toHaveLength(61);
  });
});

describe('concurrency', () => {
  it('64 parallel ADDs into a /26 give 61 distinct addresses and three clean exhaustion errors; 64 DELs leave only lock and last_reserved_ip.*', async () => {
    const c = ipamConfig({ name: 'par', dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.22.0.0/26' }]] } });
    const adds = await Promise.all(Array.from({ length: 64 }, (_, i) => runIpamAsync(NHI_IPAM, 'ADD', c, `par${i}`)));
    const ok = adds.filter((r) => r.status === 0);
    const failed = adds.filter((r) => r.status !== 0);
    expect(ok).toHaveLength(61);
    const addrs = ok.map((r) => r.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(61);
    for (const a of addrs) expect(a).not.toMatch(/^10\.22\.0\.(0|1|63)\//);
    expect(failed).toHaveLength(3);
    for (const f of failed) {
      expect(f.json.code).toBe(101);
      expect(f.json.msg).toBe('failed to allocate for range 0: no IP addresses available in range set: 10.22.0.1-10.22.0.62');
    }
    const dels = await Promise.all(Array.from({ length: 64 }, (_, i) => runIpamAsync(NHI_IPAM, 'DEL', c, `par${i}`)));
    expect(dels.map((d) => d.status)).toEqual(Array(64).fill(0));
    expect(filesIn(scratch.path('d/par'))).toEqual(['last_reserved_ip.0', 'lock']);
  });
});

describe('ADD, DEL and CHECK semantics', () => {
  const conf = (extra: Record<string, unknown> = {}, cniVersion = '1.1.0') =>
    ipamConfig({ name: 'sem', cniVersion, dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.23.0.0/24' }], [{ subnet: 'fd23::/64' }]], ...extra } });

  it('dual stack: one address per range set, and a repeated ADD is refused as host-local refuses it, touching nothing', () => {
    const a = runIpam(NHI_IPAM, 'ADD', conf());
    expect(a.json).toEqual({
      cniVersion: '1.1.0',
      ips: [
        { address: '10.23.0.2/24', gateway: '10.23.0.1' },
        { address: 'fd23::2/64', gateway: 'fd23::1' },
      ],
    });
    const again = runIpam(NHI_IPAM, 'ADD', conf());
    expect(again.json).toMatchObject({ code: 102, msg: 'failed to allocate for range 0: 10.23.0.2 has been allocated to ctr1, duplicate allocation is not allowed' });
    expect(addressFiles(scratch.path('d/sem'))).toEqual(['10.23.0.2', 'fd23::2']);
  });

  it('requested addresses come from CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips', () => {
    const viaEnv = runIpam(NHI_IPAM, 'ADD', conf(), 'r1', 'eth0', { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.23.0.50' });
    expect(viaEnv.json.ips[0].address).toBe('10.23.0.50/24');
    const viaArgs = runIpam(NHI_IPAM, 'ADD', { ...conf(), args: { cni: { ips: ['10.23.0.51/24', 'fd23::51'] } } }, 'r2');
    expect(viaArgs.json.ips.map((i: { address: string }) => i.address)).toEqual(['10.23.0.51/24', 'fd23::51/64']);
    const viaRuntime = runIpam(NHI_IPAM, 'ADD', { ...conf(), runtimeConfig: { ips: ['10.23.0.52'] } }, 'r3');
    expect(viaRuntime.json.ips[0].address).toBe('10.23.0.52/24');
    const taken = runIpam(NHI_IPAM, 'ADD', { ...conf(), runtimeConfig: { ips: ['10.23.0.52'] } }, 'r4');
    expect(taken.json.code).toBe(102);
    expect(taken.json.msg).toMatch(/requested IP address 10\.23\.0\.52 is not available/);
    const gw = runIpam(NHI_IPAM, 'ADD', { ...conf(), runtimeConfig: { ips: ['10.23.0.1'] } }, 'r5');
    expect(gw.json.msg).toBe("requested ip 10.23.0.1 is subnet's gateway");
    const outside = runIpam(NHI_IPAM, 'ADD', { ...conf(), runtimeConfig: { ips: ['192.0.2.9'] } }, 'r6');
    expect(outside.json.msg).toBe('failed to allocate all requested IPs: 192.0.2.9');
    // r3 continued the v6 round robin after r2's fd23::51; failed ADDs (r4..r6)
    // left nothing behind, not even the v6 address they had taken first.
    expect(addressFiles(scratch.path('d/sem'))).toEqual(['10.23.0.50', '10.23.0.51', '10.23.0.52', 'fd23::2', 'fd23::51', 'fd23::52']);
  });

  it('DEL succeeds with an empty or missing CNI_NETNS and when nothing is held', () => {
    expect(runIpam(NHI_IPAM, 'ADD', conf(), 'd1').status).toBe(0);
    const del = invoke({ binary: NHI_IPAM, env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'd1', CNI_IFNAME: 'eth0', CNI_NETNS: '' }, stdin: JSON.stringify(conf()) });
    expect(del.status, del.stdout).toBe(0);
    expect(del.stdout).toBe('');
    expect(addressFiles(scratch.path('d/sem'))).toEqual([]);
    const again = invoke({ binary: NHI_IPAM, env: { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'd1', CNI_IFNAME: 'eth0' }, stdin: JSON.stringify(conf()) });
    expect(again.status).toBe(0);
  });

  it('DEL releases only the attachment named by container id and ifname', () => {
    runIpam(NHI_IPAM, 'ADD', conf(), 'multi', 'eth0');
    runIpam(NHI_IPAM, 'ADD', conf(), 'multi', 'net1');
    expect(runIpam(NHI_IPAM, 'DEL', conf(), 'multi', 'eth0').status).toBe(0);
    expect(addressFiles(scratch.path('d/sem'))).toEqual(['10.23.0.3', 'fd23::3']);
  });

  it('CHECK fails when the attachment holds no address, and when prevResult names an address it does not hold', () => {
    const none = runIpam(NHI_IPAM, 'CHECK', conf(), 'nobody');
    expect(none.status).toBe(1);
    expect(none.json.code).toBe(103);
    const add = runIpam(NHI_IPAM, 'ADD', conf(), 'c1');
    expect(runIpam(NHI_IPAM, 'CHECK', { ...conf(), prevResult: add.json }, 'c1').status).toBe(0);
    const wrong = runIpam(NHI_IPAM, 'CHECK', { ...conf(), prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.23.0.99/24' }] } }, 'c1');
    expect(wrong.json.msg).toBe('10.23.0.99 of prevResult is not reserved for container c1 interface eth0');
    const old = runIpam(NHI_IPAM, 'CHECK', conf({}, '0.3.1'), 'c1');
    expect(old.json.code).toBe(1);
    expect(old.json.msg).toBe('config version does not allow CHECK');
  });

  it('results follow the config version down to 0.1.0', () => {
    const v02 = runIpam(NHI_IPAM, 'ADD', ipamConfig({ name: 'old', cniVersion: '0.2.0', dataDir: scratch.path('d'), ipam: { subnet: '10.24.0.0/24', routes: [{ dst: '0.0.0.0/0' }] } }));
    expect(v02.json).toEqual({ cniVersion: '0.2.0', ip4: { ip: '10.24.0.2/24', gateway: '10.24.0.1', routes: [{ dst: '0.0.0.0/0' }] } });
    const v01 = runIpam(NHI_IPAM, 'ADD', { ...ipamConfig({ name: 'old', dataDir: scratch.path('d'), ipam: { subnet: '10.24.0.0/24' } }), cniVersion: undefined }, 'v01');
    expect(v01.json).toEqual({ cniVersion: '0.1.0', ip4: { ip: '10.24.0.3/24', gateway: '10.24.0.1' } });
  });
});

describe('GC', () => {
  const conf = (extra: Record<string, unknown>) => ({
    ...ipamConfig({ name: 'gc', cniVersion: '1.1.0', dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.25.0.0/24' }]] } }),
    ...extra,
  });
  const gc = (extra: Record<string, unknown>) =>
    invoke({ binary: NHI_IPAM, env: { CNI_COMMAND: 'GC', CNI_PATH: '/nonexistent' }, stdin: JSON.stringify(conf(extra)) });

  beforeEach(() => {
    for (const id of ['keep', 'drop1', 'drop2']) expect(runIpam(NHI_IPAM, 'ADD', conf({}), id).status).toBe(0);
    writeFileSync(scratch.path('d/gc/10.25.0.200'), 'legacy-keep');
    writeFileSync(scratch.path('d/gc/10.25.0.201'), '');
  });

  it('releases every reservation not in cni.dev/valid-attachments', () => {
    const r = gc({ 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }, { containerID: 'legacy-keep', ifname: 'eth0' }] });
    expect(r.status, r.stdout).toBe(0);
    expect(filesIn(scratch.path('d/gc'))).toEqual(['10.25.0.2', '10.25.0.200', 'last_reserved_ip.0', 'lock']);
  });

  it('accepts the older key cni.dev/attachments', () => {
    expect(gc({ 'cni.dev/attachments': [{ containerID: 'drop1', ifname: 'eth0' }] }).status).toBe(0);
    expect(addressFiles(scratch.path('d/gc'))).toEqual(['10.25.0.3']);
  });

  it('a missing list releases nothing; an empty list releases everything', () => {
    expect(gc({}).status).toBe(0);
    expect(addressFiles(scratch.path('d/gc'))).toHaveLength(5);
    expect(gc({ 'cni.dev/valid-attachments': [] }).status).toBe(0);
    expect(filesIn(scratch.path('d/gc'))).toEqual(['last_reserved_ip.0', 'lock']);
  });

  it('is refused below cniVersion 1.1.0', () => {
    const r = invoke({ binary: NHI_IPAM, env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, stdin: JSON.stringify({ ...conf({}), cniVersion: '1.0.0' }) });
    expect(r.json).toMatchObject({ code: 1, msg: 'config version does not allow GC' });
  });
});

describe('STATUS', () => {
  const status = (conf: object) => invoke({ binary: NHI_IPAM, env: { CNI_COMMAND: 'STATUS' }, stdin: JSON.stringify(conf) });

  it('succeeds while addresses are free, and is code 50 once the pool is exhausted', () => {
    const c = ipamConfig({ name: 'st', cniVersion: '1.1.0', dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.26.0.0/29' }]] } });
    expect(status(c).status).toBe(0);
    for (let i = 0; i < 5; i++) expect(runIpam(NHI_IPAM, 'ADD', c, `s${i}`).status).toBe(0);
    const r = status(c);
    expect(r.status).toBe(1);
    expect(r.json).toMatchObject({ code: 50, msg: 'no free address in range set 0 (10.26.0.1-10.26.0.6) of network st' });
  });

  it('is code 50 when the data directory cannot be written', () => {
    writeFileSync(scratch.path('file'), 'not a directory');
    const r = status(ipamConfig({ name: 'st', cniVersion: '1.1.0', dataDir: scratch.path('file'), ipam: { ranges: [[{ subnet: '10.26.0.0/24' }]] } }));
    expect(r.json.code).toBe(50);
    expect(r.json.msg).toMatch(/is not writable/);
  });
});

describe('bad input gets its documented code, a message naming the problem, and writes nothing', () => {
  const good = () => ipamConfig({ name: 'bad', dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.27.0.0/24' }]] } });
  const cases: [string, () => { env?: Record<string, string>; stdin: string | Buffer }, number, RegExp][] = [
    ['malformed JSON', () => ({ stdin: '{"cniVersion": "1.0.0", "name": ' }), 6, /unmarshalling network config/],
    ['a 10 MiB stdin', () => ({ stdin: Buffer.alloc(10 << 20, 0x20) }), 5, /larger than 1048576 bytes/],
    ['network name ../../etc', () => ({ stdin: JSON.stringify({ ...good(), name: '../../etc' }) }), 7, /invalid network name "\.\.\/\.\.\/etc"/],
    ['a 16-character ifname', () => ({ env: { CNI_IFNAME: 'abcdefghijklmnop' }, stdin: JSON.stringify(good()) }), 4, /CNI_IFNAME "abcdefghijklmnop" is 16 bytes long/],
    ['an ifname with /', () => ({ env: { CNI_IFNAME: 'eth/0' }, stdin: JSON.stringify(good()) }), 4, /CNI_IFNAME "eth\/0" may not contain "\/"/],
    ['a container id with spaces', () => ({ env: { CNI_CONTAINERID: 'abc def' }, stdin: JSON.stringify(good()) }), 4, /CNI_CONTAINERID "abc def"/],
    ['an unknown cniVersion', () => ({ stdin: JSON.stringify({ ...good(), cniVersion: '9.9.9' }) }), 1, /incompatible CNI versions/],
    ['a subnet with host bits set', () => ({ stdin: JSON.stringify(ipamConfig({ name: 'bad', dataDir: scratch.path('d'), ipam: { subnet: '10.27.0.5/24' } })) }), 7,
      /invalid range set 0: Network has host bits set\. For a subnet mask of length 24 the network address is 10\.27\.0\.0/],
    ['a missing CNI_CONTAINERID', () => ({ env: { CNI_CONTAINERID: '' }, stdin: JSON.stringify(good()) }), 4, /required env variables \[CNI_CONTAINERID\] missing/],
    ['an unknown CNI_ARGS key', () => ({ env: { CNI_ARGS: 'FOO=bar' }, stdin: JSON.stringify(good()) }), 4, /CNI_ARGS: unknown args \[FOO\]/],
  ];
  it.each(cases)('%s', (_name, make, code, msg) => {
    const c = make();
    const r = invoke({ binary: NHI_IPAM, env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'ctr', CNI_NETNS: '/var/run/netns/x', CNI_IFNAME: 'eth0', ...c.env }, stdin: c.stdin });
    expect(r.status).toBe(1);
    expect(r.json.code).toBe(code);
    expect(`${r.json.msg} ${r.json.details ?? ''}`).toMatch(msg);
    expect(filesIn(scratch.path('d'))).toEqual([]);
  });
});
