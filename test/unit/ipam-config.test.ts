import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DATA_DIR,
  inRange,
  loadIpamConfig,
  rangeFor,
  rangeSetString,
  rangeString,
  type IpamConfig,
  type Range,
} from '../../src/chain/ipam/config.js';
import { CniError } from '../../src/cni/errors.js';
import type { CniVersion } from '../../src/cni/version.js';
import { formatCidr, formatIp, parseIp } from '../../src/net/ip.js';
import { caught } from '../helpers/caught.js';


const ip = (s: string) => parseIp(s)!;

interface Opts {
  version?: CniVersion;
  envIp?: string;
  extra?: Record<string, unknown>;
}

function load(ipam: Record<string, unknown> | undefined, o: Opts = {}): IpamConfig {
  const raw: Record<string, unknown> = { cniVersion: o.version ?? '1.0.0', name: 'net1', type: 'bridge', ...o.extra };
  if (ipam !== undefined) raw.ipam = { type: 'nhi-ipam', ...ipam };
  return loadIpamConfig(raw, 'net1', o.version ?? '1.0.0', o.envIp);
}

/** Expects code 7 and returns the error. */
function fails(ipam: Record<string, unknown> | undefined, o: Opts = {}): CniError {
  const e = caught(() => load(ipam, o));
  expect(e.code).toBe(7);
  return e;
}

const show = (r: Range) => ({ subnet: formatCidr(r.subnet), start: formatIp(r.start), end: formatIp(r.end), gateway: formatIp(r.gateway) });
const sets = (c: IpamConfig) => c.ranges.map((s) => s.map(show));
const one = (subnet: string, extra: Record<string, string> = {}) => ({ ranges: [[{ subnet, ...extra }]] });

describe('loadIpamConfig: defaults', () => {
  it('a minimal IPv4 config', () => {
    const c = load(one('10.1.2.0/24'));
    expect({ ...c, ranges: sets(c) }).toStrictEqual({
      network: 'net1',
      dataDir: '/var/lib/cni/networks',
      ranges: [[{ subnet: '10.1.2.0/24', start: '10.1.2.1', end: '10.1.2.254', gateway: '10.1.2.1' }]],
      routes: [],
      requested: [],
    });
    expect(DEFAULT_DATA_DIR).toBe('/var/lib/cni/networks');
  });

  it.each([
    ['10.1.2.0/24', '10.1.2.1', '10.1.2.254', '10.1.2.1'],
    ['10.1.2.128/25', '10.1.2.129', '10.1.2.254', '10.1.2.129'],
    ['10.1.2.4/30', '10.1.2.5', '10.1.2.6', '10.1.2.5'],
    ['10.0.0.0/8', '10.0.0.1', '10.255.255.254', '10.0.0.1'],
    ['2001:db8::/64', '2001:db8::1', '2001:db8::ffff:ffff:ffff:ffff', '2001:db8::1'],
    ['2001:db8::/126', '2001:db8::1', '2001:db8::3', '2001:db8::1'],
    ['fd00:10:1::/48', 'fd00:10:1::1', 'fd00:10:1:ffff:ffff:ffff:ffff:ffff', 'fd00:10:1::1'],
  ])('%s: start %s, end %s, gateway %s', (subnet, start, end, gateway) => {
    expect(sets(load(one(subnet)))).toStrictEqual([[{ subnet, start, end, gateway }]]);
  });

  it('keeps explicit rangeStart, rangeEnd and gateway', () => {
    const c = load(one('10.1.2.0/24', { rangeStart: '10.1.2.10', rangeEnd: '10.1.2.20', gateway: '10.1.2.254' }));
    expect(sets(c)).toStrictEqual([[{ subnet: '10.1.2.0/24', start: '10.1.2.10', end: '10.1.2.20', gateway: '10.1.2.254' }]]);
  });

  it('accepts rangeStart = rangeEnd', () => {
    expect(sets(load(one('10.1.2.0/24', { rangeStart: '10.1.2.9', rangeEnd: '10.1.2.9' })))[0]![0]!.end).toBe('10.1.2.9');
  });

  it('accepts the network and broadcast addresses as explicit bounds, as the reference does', () => {
    const c = load(one('10.1.2.0/24', { rangeStart: '10.1.2.0', rangeEnd: '10.1.2.255' }));
    expect(sets(c)[0]![0]).toMatchObject({ start: '10.1.2.0', end: '10.1.2.255' });
  });

  it('accepts a gateway outside the subnet, as the reference does', () => {
    expect(sets(load(one('10.1.2.0/24', { gateway: '10.9.9.9' })))[0]![0]!.gateway).toBe('10.9.9.9');
  });

  it('canonicalizes IPv6 text', () => {
    const c = load(one('2001:0DB8:0:0::/64', { rangeStart: '2001:db8:0:0:0:0:0:10', gateway: '2001:DB8::1' }));
    expect(sets(c)).toStrictEqual([[{ subnet: '2001:db8::/64', start: '2001:db8::10', end: '2001:db8::ffff:ffff:ffff:ffff', gateway: '2001:db8::1' }]]);
  });

  it('IPv6 bounds written with an embedded dotted quad stay IPv6', () => {
    const c = load(one('64:ff9b::/96', { rangeStart: '64:ff9b::10.0.0.1', rangeEnd: '64:ff9b::10.0.0.9' }));
    expect(sets(c)).toStrictEqual([[{ subnet: '64:ff9b::/96', start: '64:ff9b::a00:1', end: '64:ff9b::a00:9', gateway: '64:ff9b::1' }]]);
  });

  it('dual stack: one set per family', () => {
    const c = load({ ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '2001:db8::/64' }]] });
    expect(sets(c).map((s) => s.map((r) => r.subnet))).toStrictEqual([['10.1.2.0/24'], ['2001:db8::/64']]);
  });

  it('several ranges in one set that share a subnet but not addresses', () => {
    const c = load({
      ranges: [[
        { subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.19' },
        { subnet: '10.1.2.0/24', rangeStart: '10.1.2.20', rangeEnd: '10.1.2.29' },
        { subnet: '10.1.3.0/24' },
      ]],
    });
    expect(c.ranges[0]!.map(rangeString)).toStrictEqual(['10.1.2.10-10.1.2.19', '10.1.2.20-10.1.2.29', '10.1.3.1-10.1.3.254']);
    expect(rangeSetString(c.ranges[0]!)).toBe('10.1.2.10-10.1.2.19,10.1.2.20-10.1.2.29,10.1.3.1-10.1.3.254');
  });
});

describe('loadIpamConfig: structure errors', () => {
  it("missing 'ipam' key", () => {
    expect(fails(undefined).message).toBe("IPAM config missing 'ipam' key");
  });

  it.each([
    ['no ranges at all', {}],
    ['an empty ranges list', { ranges: [] }],
  ])('%s: no IP ranges specified', (_what, ipam) => {
    expect(fails(ipam).message).toBe('no IP ranges specified');
    expect(fails(ipam, { extra: { runtimeConfig: { ipRanges: [] } } }).message).toBe('no IP ranges specified');
  });

  it.each([
    ['ranges is a string', { ranges: '10.1.2.0/24' }, 'config.ipam.ranges'],
    ['a range set is an object', { ranges: [{ subnet: '10.1.2.0/24' }] }, 'config.ipam.ranges[0]'],
    ['subnet is missing', { ranges: [[{ gateway: '10.1.2.1' }]] }, 'config.ipam.ranges[0][0].subnet'],
    ['subnet is a number', { ranges: [[{ subnet: 10 }]] }, 'config.ipam.ranges[0][0].subnet'],
    ['dataDir is a number', { dataDir: 5, ranges: [[{ subnet: '10.1.2.0/24' }]] }, 'config.ipam.dataDir'],
    ['routes is an object', { routes: {}, ranges: [[{ subnet: '10.1.2.0/24' }]] }, 'config.ipam.routes'],
  ])('%s: invalid IPAM configuration naming the key', (_what, ipam, path) => {
    const e = fails(ipam);
    expect(e.message).toBe('invalid IPAM configuration');
    expect(e.details).toContain(`${path}: `);
  });

  it('ipam that is not an object', () => {
    const e = caught(() => loadIpamConfig({ name: 'n', ipam: 'host-local' }, 'n', '1.0.0'));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid IPAM configuration');
    expect(e.details).toContain('config.ipam: ');
  });

  it('runtimeConfig.ips that is not a list', () => {
    const e = fails(one('10.1.2.0/24'), { extra: { runtimeConfig: { ips: '10.1.2.3' } } });
    expect(e.message).toBe('invalid IPAM configuration');
    expect(e.details).toContain('config.runtimeConfig.ips: ');
  });
});

describe('loadIpamConfig: range validation (reference messages)', () => {
  it.each([
    ['10.1.2.3/24', 24, '10.1.2.0'],
    ['10.1.2.255/24', 24, '10.1.2.0'],
    ['10.1.2.130/25', 25, '10.1.2.128'],
    ['10.1.2.1/16', 16, '10.1.0.0'],
    ['2001:db8::1/64', 64, '2001:db8::'],
    ['2001:db8:0:0:1::/64', 64, '2001:db8::'],
  ])('host bits set in %s', (subnet, len, net) => {
    expect(fails(one(subnet)).message).toBe(
      `invalid range set 0: Network has host bits set. For a subnet mask of length ${len} the network address is ${net}`,
    );
  });

  it('the exact message of the brief', () => {
    expect(fails(one('10.1.2.5/24')).message).toBe(
      'invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0',
    );
  });

  it.each([['10.1.2.0/31'], ['10.1.2.0/32'], ['10.1.2.3/32'], ['2001:db8::/127'], ['2001:db8::/128'], ['2001:db8::5/128']])('%s is too small', (subnet) => {
    expect(fails(one(subnet)).message).toBe(`invalid range set 0: Network ${subnet} too small to allocate from`);
  });

  it('/30 and /126 are not too small', () => {
    expect(() => load(one('10.1.2.0/30'))).not.toThrow();
    expect(() => load(one('2001:db8::/126'))).not.toThrow();
  });

  it.each([
    [{ rangeStart: '10.1.3.1' }, 'RangeStart 10.1.3.1 not in network 10.1.2.0/24'],
    [{ rangeStart: '10.1.1.255' }, 'RangeStart 10.1.1.255 not in network 10.1.2.0/24'],
    [{ rangeEnd: '10.1.3.0' }, 'RangeEnd 10.1.3.0 not in network 10.1.2.0/24'],
    [{ rangeStart: '10.1.2.5', rangeEnd: '10.9.0.1' }, 'RangeEnd 10.9.0.1 not in network 10.1.2.0/24'],
  ])('%j: %s', (extra, msg) => {
    expect(fails(one('10.1.2.0/24', extra)).message).toBe(`invalid range set 0: ${msg}`);
  });

  it('IPv6 RangeStart outside the network', () => {
    expect(fails(one('2001:db8::/64', { rangeStart: '2001:db8:1::5' })).message).toBe(
      'invalid range set 0: RangeStart 2001:db8:1::5 not in network 2001:db8::/64',
    );
  });

  it('start after end', () => {
    const e = fails(one('10.1.2.0/24', { rangeStart: '10.1.2.100', rangeEnd: '10.1.2.50' }));
    expect(e.message).toBe('invalid range set 0: RangeStart 10.1.2.100 is after RangeEnd 10.1.2.50');
  });

  it('start after the default end', () => {
    expect(fails(one('10.1.2.0/24', { rangeStart: '10.1.2.255' })).message).toBe(
      'invalid range set 0: RangeStart 10.1.2.255 is after RangeEnd 10.1.2.254',
    );
  });

  it.each([
    [{ subnet: '10.1.2.0' }, 'cannot understand subnet "10.1.2.0"'],
    [{ subnet: '10.1.2.0/33' }, 'cannot understand subnet "10.1.2.0/33"'],
    [{ subnet: 'net' }, 'cannot understand subnet "net"'],
    [{ subnet: '10.1.2.0/24', rangeStart: '10.1.2' }, 'cannot understand rangeStart "10.1.2"'],
    [{ subnet: '10.1.2.0/24', rangeEnd: '10.1.2.5/24' }, 'cannot understand rangeEnd "10.1.2.5/24"'],
    [{ subnet: '10.1.2.0/24', gateway: 'gw' }, 'cannot understand gateway "gw"'],
    [{ subnet: '10.1.2.0/24', gateway: '2001:db8::1' }, 'gateway 2001:db8::1 is not of the family of subnet 10.1.2.0/24'],
    [{ subnet: '10.1.2.0/24', rangeStart: '2001:db8::1' }, 'rangeStart 2001:db8::1 is not of the family of subnet 10.1.2.0/24'],
    [{ subnet: '2001:db8::/64', rangeEnd: '10.1.2.9' }, 'rangeEnd 10.1.2.9 is not of the family of subnet 2001:db8::/64'],
  ])('%j: %s', (range, msg) => {
    expect(fails({ ranges: [[range]] }).message).toBe(`invalid range set 0: ${msg}`);
  });

  it('names the index of the bad set', () => {
    const e = fails({ ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '2001:db8::/64' }], [{ subnet: '10.1.9.9/24' }]] });
    expect(e.message).toBe('invalid range set 2: Network has host bits set. For a subnet mask of length 24 the network address is 10.1.9.0');
  });

  it('an empty range set', () => {
    expect(fails({ ranges: [[]] }).message).toBe('invalid range set 0: empty range set');
    expect(fails({ ranges: [[{ subnet: '10.1.2.0/24' }], []] }).message).toBe('invalid range set 1: empty range set');
  });

  it('mixed families in one set', () => {
    expect(fails({ ranges: [[{ subnet: '10.1.2.0/24' }, { subnet: '2001:db8::/64' }]] }).message).toBe('invalid range set 0: mixed address families');
    expect(fails({ ranges: [[{ subnet: '2001:db8::/64' }, { subnet: '10.1.2.0/24' }]] }).message).toBe('invalid range set 0: mixed address families');
  });

  it.each([
    [[{ subnet: '10.1.2.0/24' }, { subnet: '10.1.2.0/24' }], 'subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.254 overlap'],
    [[{ subnet: '10.1.0.0/16' }, { subnet: '10.1.2.0/24' }], 'subnets 10.1.0.1-10.1.255.254 and 10.1.2.1-10.1.2.254 overlap'],
    [[{ subnet: '10.1.2.0/24' }, { subnet: '10.1.0.0/16' }], 'subnets 10.1.2.1-10.1.2.254 and 10.1.0.1-10.1.255.254 overlap'],
    [
      [{ subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.20' }, { subnet: '10.1.2.0/24', rangeStart: '10.1.2.20', rangeEnd: '10.1.2.30' }],
      'subnets 10.1.2.10-10.1.2.20 and 10.1.2.20-10.1.2.30 overlap',
    ],
    [
      [{ subnet: '10.1.3.0/24' }, { subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.20' }, { subnet: '10.1.2.0/24', rangeStart: '10.1.2.15', rangeEnd: '10.1.2.16' }],
      'subnets 10.1.2.10-10.1.2.20 and 10.1.2.15-10.1.2.16 overlap',
    ],
    [[{ subnet: '2001:db8::/64' }, { subnet: '2001:db8::/48' }], 'subnets 2001:db8::1-2001:db8::ffff:ffff:ffff:ffff and 2001:db8::1-2001:db8:0:ffff:ffff:ffff:ffff:ffff overlap'],
  ])('overlapping subnets in a set: %s', (set, msg) => {
    expect(fails({ ranges: [set] }).message).toBe(`invalid range set 0: ${msg}`);
  });

  it.each([
    [[[{ subnet: '10.1.2.0/24' }], [{ subnet: '10.1.2.0/24' }]], 'range set 0 overlaps with 1'],
    [[[{ subnet: '10.1.2.0/24' }], [{ subnet: '10.1.0.0/16' }]], 'range set 0 overlaps with 1'],
    [[[{ subnet: '10.1.2.0/24' }], [{ subnet: '10.1.3.0/24' }], [{ subnet: '10.1.2.0/25' }]], 'range set 0 overlaps with 2'],
    [[[{ subnet: '10.1.2.0/24' }], [{ subnet: '10.1.3.0/24' }], [{ subnet: '10.1.3.128/25' }]], 'range set 1 overlaps with 2'],
    [[[{ subnet: '10.1.2.0/24' }, { subnet: '10.1.5.0/24' }], [{ subnet: '10.1.4.0/24' }, { subnet: '10.1.5.0/24', rangeStart: '10.1.5.100' }]], 'range set 0 overlaps with 1'],
    [[[{ subnet: '2001:db8::/64' }], [{ subnet: '10.1.2.0/24' }], [{ subnet: '2001:db8::/120' }]], 'range set 0 overlaps with 2'],
  ])('range sets overlapping each other: %s', (ranges, msg) => {
    expect(fails({ ranges }).message).toBe(msg);
  });

  it('range sets in one subnet but with disjoint ranges do not overlap', () => {
    expect(() =>
      load({
        ranges: [
          [{ subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.19' }],
          [{ subnet: '10.1.2.0/24', rangeStart: '10.1.2.20', rangeEnd: '10.1.2.29' }],
        ],
      }),
    ).not.toThrow();
  });

  it('legacy and runtime ranges are checked against the others', () => {
    expect(fails({ subnet: '10.1.2.0/24', ranges: [[{ subnet: '10.1.2.0/24' }]] }).message).toBe('range set 0 overlaps with 1');
    expect(fails(one('10.1.2.0/24'), { extra: { runtimeConfig: { ipRanges: [[{ subnet: '10.1.0.0/16' }]] } } }).message).toBe('range set 0 overlaps with 1');
  });
});

describe('loadIpamConfig: where ranges come from', () => {
  it('the legacy top-level subnet is prepended, with its rangeStart, rangeEnd and gateway', () => {
    const c = load({
      subnet: '10.9.0.0/16',
      rangeStart: '10.9.1.0',
      rangeEnd: '10.9.1.255',
      gateway: '10.9.0.254',
      ranges: [[{ subnet: '10.1.2.0/24' }]],
    });
    expect(sets(c)).toStrictEqual([
      [{ subnet: '10.9.0.0/16', start: '10.9.1.0', end: '10.9.1.255', gateway: '10.9.0.254' }],
      [{ subnet: '10.1.2.0/24', start: '10.1.2.1', end: '10.1.2.254', gateway: '10.1.2.1' }],
    ]);
  });

  it('a legacy subnet alone is enough', () => {
    expect(sets(load({ subnet: '10.9.0.0/16' }))).toStrictEqual([[{ subnet: '10.9.0.0/16', start: '10.9.0.1', end: '10.9.255.254', gateway: '10.9.0.1' }]]);
  });

  it('legacy rangeStart without subnet is ignored', () => {
    expect(sets(load({ rangeStart: '10.9.9.9', ranges: [[{ subnet: '10.1.2.0/24' }]] }))).toHaveLength(1);
  });

  it('runtimeConfig.ipRanges come first, then the legacy subnet, then ranges', () => {
    const c = load(
      { subnet: '10.9.0.0/16', ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '2001:db8::/64' }]] },
      { extra: { runtimeConfig: { ipRanges: [[{ subnet: '10.20.0.0/24', rangeStart: '10.20.0.100' }], [{ subnet: '2001:db8:9::/64' }]] } } },
    );
    expect(sets(c).map((s) => s.map((r) => `${r.subnet} ${r.start}`))).toStrictEqual([
      ['10.20.0.0/24 10.20.0.100'],
      ['2001:db8:9::/64 2001:db8:9::1'],
      ['10.9.0.0/16 10.9.0.1'],
      ['10.1.2.0/24 10.1.2.1'],
      ['2001:db8::/64 2001:db8::1'],
    ]);
  });

  it('runtimeConfig.ipRanges alone are enough', () => {
    const c = load({}, { extra: { runtimeConfig: { ipRanges: [[{ subnet: '10.20.0.0/24' }]] } } });
    expect(sets(c)).toStrictEqual([[{ subnet: '10.20.0.0/24', start: '10.20.0.1', end: '10.20.0.254', gateway: '10.20.0.1' }]]);
  });

  it('errors in runtime ranges are numbered in the combined list', () => {
    const e = fails(one('10.1.2.0/24'), { extra: { runtimeConfig: { ipRanges: [[{ subnet: '10.20.0.0/24' }], [{ subnet: '10.30.0.0/31' }]] } } });
    expect(e.message).toBe('invalid range set 1: Network 10.30.0.0/31 too small to allocate from');
  });
});

describe('loadIpamConfig: cniVersion 0.1.0 / 0.2.0', () => {
  it.each(['0.1.0', '0.2.0'] as const)('%s refuses two IPv4 sets', (version) => {
    const e = fails({ ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '10.1.3.0/24' }]] }, { version });
    expect(e.message).toBe(`CNI version ${version} does not support more than 1 address per family`);
  });

  it.each(['0.1.0', '0.2.0'] as const)('%s refuses two IPv6 sets', (version) => {
    const e = fails({ ranges: [[{ subnet: '2001:db8::/64' }], [{ subnet: '2001:db8:1::/64' }]] }, { version });
    expect(e.message).toBe(`CNI version ${version} does not support more than 1 address per family`);
  });

  it('counts the legacy subnet too', () => {
    const e = fails({ subnet: '10.9.0.0/16', ranges: [[{ subnet: '10.1.2.0/24' }]] }, { version: '0.2.0' });
    expect(e.message).toBe('CNI version 0.2.0 does not support more than 1 address per family');
  });

  it('the version check comes before the overlap check', () => {
    const e = fails({ ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '10.1.2.0/24' }]] }, { version: '0.2.0' });
    expect(e.message).toBe('CNI version 0.2.0 does not support more than 1 address per family');
  });

  it.each(['0.1.0', '0.2.0'] as const)('%s accepts one set per family, and several ranges in one set', (version) => {
    expect(load({ ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '2001:db8::/64' }]] }, { version }).ranges).toHaveLength(2);
    expect(load({ ranges: [[{ subnet: '10.1.2.0/24' }, { subnet: '10.1.3.0/24' }]] }, { version }).ranges[0]).toHaveLength(2);
  });

  it.each(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const)('%s accepts two IPv4 sets', (version) => {
    expect(load({ ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '10.1.3.0/24' }]] }, { version }).ranges).toHaveLength(2);
  });
});

describe('loadIpamConfig: requested addresses', () => {
  it('from CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips, in that order', () => {
    const c = load(
      { ranges: [[{ subnet: '10.1.2.0/24' }], [{ subnet: '2001:db8::/64' }]] },
      {
        envIp: '10.1.2.42',
        extra: { args: { cni: { ips: ['10.1.2.43', '2001:db8::43/64'] } }, runtimeConfig: { ips: ['10.1.2.44/24', '2001:db8::44'] } },
      },
    );
    expect(c.requested).toStrictEqual([ip('10.1.2.42'), ip('10.1.2.43'), ip('2001:db8::43'), ip('10.1.2.44'), ip('2001:db8::44')]);
  });

  it('accepts the /prefix form in CNI_ARGS', () => {
    expect(load(one('10.1.2.0/24'), { envIp: '10.1.2.42/24' }).requested).toStrictEqual([ip('10.1.2.42')]);
  });

  it('an empty envIp means none', () => {
    expect(load(one('10.1.2.0/24'), { envIp: '' }).requested).toStrictEqual([]);
  });

  it.each([['10.1.2.300'], ['10.1.2.4/33'], ['10.1.2'], ['host'], ['2001:db8::/129'], ['010.1.2.3']])('refuses %j from CNI_ARGS', (text) => {
    const e = fails(one('10.1.2.0/24'), { envIp: text });
    expect(e.message).toBe(`cannot understand ip: ${JSON.stringify(text)}`);
  });

  it.each([['args.cni.ips', { args: { cni: { ips: ['10.1.2.5', 'bogus'] } } }], ['runtimeConfig.ips', { runtimeConfig: { ips: ['bogus'] } }]])(
    'refuses an invalid address in %s',
    (_where, extra) => {
      expect(fails(one('10.1.2.0/24'), { extra }).message).toBe('cannot understand ip: "bogus"');
    },
  );
});

describe('loadIpamConfig: dataDir, resolvConf, routes', () => {
  it.each([[undefined, '/var/lib/cni/networks'], ['', '/var/lib/cni/networks'], ['/tmp/ipam', '/tmp/ipam'], ['/run/nhi/..data', '/run/nhi/..data']])(
    'dataDir %j → %s',
    (dataDir, out) => {
      expect(load({ ...one('10.1.2.0/24'), dataDir }).dataDir).toBe(out);
    },
  );

  it.each([['var/lib/cni'], ['./data'], ['/var/lib/../../etc'], ['/var/lib/cni/..']])('refuses dataDir %j', (dataDir) => {
    expect(fails({ ...one('10.1.2.0/24'), dataDir }).message).toMatch(/^ipam\.dataDir ".*" (must be an absolute path|may not contain "\.\.")$/);
  });

  it('resolvConf kept when absolute, absent when unset', () => {
    expect(load({ ...one('10.1.2.0/24'), resolvConf: '/etc/resolv.conf' }).resolvConf).toBe('/etc/resolv.conf');
    expect(load(one('10.1.2.0/24'))).not.toHaveProperty('resolvConf');
  });

  it.each([['resolv.conf'], ['/etc/../resolv.conf']])('refuses resolvConf %j', (resolvConf) => {
    expect(fails({ ...one('10.1.2.0/24'), resolvConf }).message).toMatch(/^ipam\.resolvConf ".*" (must be an absolute path|may not contain "\.\.")$/);
  });

  it('keeps routes as written', () => {
    const routes = [{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.1.2.254' }, { dst: '::/0', gw: '2001:db8::1' }];
    expect(load({ ...one('10.1.2.0/24'), routes }).routes).toStrictEqual(routes);
  });

  it.each([
    [[{ dst: '0.0.0.0' }], 'ipam.routes[0].dst "0.0.0.0" is not an address with a prefix'],
    [[{ dst: '0.0.0.0/0' }, { dst: '10.0.0.0/8', gw: '10.1.2' }], 'ipam.routes[1].gw "10.1.2" is not an IP address'],
    [[{ dst: '0.0.0.0/0', gw: '2001:db8::1' }], 'ipam.routes[0]: gw 2001:db8::1 and dst 0.0.0.0/0 are of different families'],
  ])('refuses routes %j', (routes, msg) => {
    expect(fails({ ...one('10.1.2.0/24'), routes }).message).toBe(msg);
  });
});

describe('inRange / rangeFor', () => {
  const c = load({
    ranges: [[
      { subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.20' },
      { subnet: '10.1.3.0/24' },
    ]],
  });
  const set = c.ranges[0]!;

  it.each([
    ['10.1.2.10', 0], ['10.1.2.20', 0], ['10.1.2.15', 0], ['10.1.2.9', undefined], ['10.1.2.21', undefined],
    ['10.1.3.1', 1], ['10.1.3.254', 1], ['10.1.3.255', undefined], ['10.1.3.0', undefined], ['::1', undefined],
  ] as const)('%s is in range %s', (addr, idx) => {
    expect(rangeFor(set, ip(addr))).toBe(idx === undefined ? undefined : set[idx]);
    expect(inRange(set[0]!, ip(addr))).toBe(idx === 0);
  });
});
