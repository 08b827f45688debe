import { describe, expect, it } from 'vitest';
import { parsePrevResult, toVersion, type Result } from '../../src/cni/result.js';
import type { CniVersion } from '../../src/cni/version.js';
import { caught } from '../helpers/caught.js';


const clone = <T>(x: T): T => structuredClone(x);

/** A 1.1.0-shaped result using every field, two addresses of each family. */
const FULL: Result = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'eth0', mac: '0a:58:0a:01:02:05', mtu: 1450, sandbox: '/var/run/netns/ns1', socketPath: '/run/vhost-user.sock', pciID: '0000:00:1f.6' },
    { name: 'veth1234', mac: '0a:58:0a:01:02:06' },
  ],
  ips: [
    { interface: 0, address: '10.1.2.5/24', gateway: '10.1.2.1' },
    { interface: 0, address: '2001:db8::5/64', gateway: '2001:db8::1' },
    { interface: 1, address: '10.1.3.5/24', gateway: '10.1.3.1' },
    { address: '2001:db8:1::5/64' },
  ],
  routes: [
    { dst: '0.0.0.0/0', gw: '10.1.2.1', mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 0 },
    { dst: '::/0', gw: '2001:db8::1', mtu: 1380 },
    { dst: '192.168.0.0/16' },
    { dst: '2001:db8:ff::/48', table: 5 },
  ],
  dns: { nameservers: ['10.1.2.1', '2001:db8::53'], domain: 'example.org', search: ['a.example.org', 'example.org'], options: ['ndots:5'] },
};

const IFACES_NARROW = [
  { name: 'eth0', mac: '0a:58:0a:01:02:05', sandbox: '/var/run/netns/ns1' },
  { name: 'veth1234', mac: '0a:58:0a:01:02:06' },
];
const ROUTES_NARROW = [
  { dst: '0.0.0.0/0', gw: '10.1.2.1' },
  { dst: '::/0', gw: '2001:db8::1' },
  { dst: '192.168.0.0/16' },
  { dst: '2001:db8:ff::/48' },
];
const IPS_V1 = [
  { interface: 0, address: '10.1.2.5/24', gateway: '10.1.2.1' },
  { interface: 0, address: '2001:db8::5/64', gateway: '2001:db8::1' },
  { interface: 1, address: '10.1.3.5/24', gateway: '10.1.3.1' },
  { address: '2001:db8:1::5/64' },
];
const IPS_V04 = [
  { version: '4', interface: 0, address: '10.1.2.5/24', gateway: '10.1.2.1' },
  { version: '6', interface: 0, address: '2001:db8::5/64', gateway: '2001:db8::1' },
  { version: '4', interface: 1, address: '10.1.3.5/24', gateway: '10.1.3.1' },
  { version: '6', address: '2001:db8:1::5/64' },
];
const DNS = clone(FULL.dns);
const LEGACY_BODY = {
  ip4: { ip: '10.1.2.5/24', gateway: '10.1.2.1', routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }, { dst: '192.168.0.0/16' }] },
  ip6: { ip: '2001:db8::5/64', gateway: '2001:db8::1', routes: [{ dst: '::/0', gw: '2001:db8::1' }, { dst: '2001:db8:ff::/48' }] },
  dns: DNS,
};
const V04_BODY = { interfaces: IFACES_NARROW, ips: IPS_V04, routes: ROUTES_NARROW, dns: DNS };

/** What FULL looks like printed for each version. */
const PRINTED: [CniVersion, Record<string, unknown>][] = [
  ['0.1.0', { cniVersion: '0.1.0', ...LEGACY_BODY }],
  ['0.2.0', { cniVersion: '0.2.0', ...LEGACY_BODY }],
  ['0.3.0', { cniVersion: '0.3.0', ...V04_BODY }],
  ['0.3.1', { cniVersion: '0.3.1', ...V04_BODY }],
  ['0.4.0', { cniVersion: '0.4.0', ...V04_BODY }],
  ['1.0.0', { cniVersion: '1.0.0', interfaces: IFACES_NARROW, ips: IPS_V1, routes: ROUTES_NARROW, dns: DNS }],
  ['1.1.0', clone(FULL) as Record<string, unknown>],
];

/** What parsePrevResult makes of each printed form. */
const PARSED: [CniVersion, Result][] = [
  ['0.1.0', {
    cniVersion: '0.1.0',
    ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.1' }, { address: '2001:db8::5/64', gateway: '2001:db8::1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }, { dst: '192.168.0.0/16' }, { dst: '::/0', gw: '2001:db8::1' }, { dst: '2001:db8:ff::/48' }],
    dns: DNS,
  }],
  ['0.2.0', {
    cniVersion: '0.2.0',
    ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.1' }, { address: '2001:db8::5/64', gateway: '2001:db8::1' }],
    routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }, { dst: '192.168.0.0/16' }, { dst: '::/0', gw: '2001:db8::1' }, { dst: '2001:db8:ff::/48' }],
    dns: DNS,
  }],
  ['0.3.0', { cniVersion: '0.3.0', interfaces: IFACES_NARROW, ips: IPS_V1, routes: ROUTES_NARROW, dns: DNS }],
  ['0.3.1', { cniVersion: '0.3.1', interfaces: IFACES_NARROW, ips: IPS_V1, routes: ROUTES_NARROW, dns: DNS }],
  ['0.4.0', { cniVersion: '0.4.0', interfaces: IFACES_NARROW, ips: IPS_V1, routes: ROUTES_NARROW, dns: DNS }],
  ['1.0.0', { cniVersion: '1.0.0', interfaces: IFACES_NARROW, ips: IPS_V1, routes: ROUTES_NARROW, dns: DNS }],
  ['1.1.0', clone(FULL)],
];

const ALL: CniVersion[] = PRINTED.map(([v]) => v);
const LEGACY: CniVersion[] = ['0.1.0', '0.2.0'];
const MODERN: CniVersion[] = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

describe('toVersion', () => {
  describe.each(PRINTED)('to %s', (version, expected) => {
    it('prints exactly the fields of that version', () => {
      expect(toVersion(clone(FULL), version)).toStrictEqual(expected);
    });

    it('does not change its input', () => {
      const input = clone(FULL);
      toVersion(input, version);
      expect(input).toStrictEqual(FULL);
    });

    it('uses the target version, whatever the input says', () => {
      expect(toVersion({ ...clone(FULL), cniVersion: '0.4.0' }, version).cniVersion).toBe(version);
    });

    it('omits an empty dns', () => {
      for (const dns of [{}, { nameservers: [], search: [], options: [], domain: '' }]) {
        const out = toVersion({ ...clone(FULL), dns }, version);
        expect(out).not.toHaveProperty('dns');
      }
      const out = toVersion({ ...clone(FULL), dns: undefined }, version);
      expect(out).not.toHaveProperty('dns');
    });

    it('keeps only the non-empty dns fields', () => {
      const out = toVersion({ ...clone(FULL), dns: { nameservers: ['1.1.1.1'], search: [], domain: '' } }, version);
      expect(out.dns).toStrictEqual({ nameservers: ['1.1.1.1'] });
    });
  });

  describe.each(MODERN)('to %s (0.3.0 and later)', (version) => {
    it('prints just cniVersion for an empty result', () => {
      expect(toVersion({}, version)).toStrictEqual({ cniVersion: version });
      expect(toVersion({ interfaces: [], ips: [], routes: [], dns: {} }, version)).toStrictEqual({ cniVersion: version });
    });

    it('drops empty interface strings', () => {
      const out = toVersion({ interfaces: [{ name: 'eth0', mac: '', sandbox: '' }], ips: [{ address: '10.0.0.2/8' }] }, version);
      expect(out.interfaces).toStrictEqual([{ name: 'eth0' }]);
    });
  });

  it.each(['0.3.0', '0.3.1', '0.4.0'] as const)('%s ips carry version "4"/"6"; 1.x ips do not', (version) => {
    const r: Result = { ips: [{ address: '192.0.2.1/32' }, { address: 'fe80::1/64' }, { address: '::ffff:198.51.100.1/24' }] };
    expect(toVersion(r, version).ips).toStrictEqual([
      { version: '4', address: '192.0.2.1/32' },
      { version: '6', address: 'fe80::1/64' },
      { version: '4', address: '::ffff:198.51.100.1/24' },
    ]);
    expect(toVersion(r, '1.0.0').ips).toStrictEqual([{ address: '192.0.2.1/32' }, { address: 'fe80::1/64' }, { address: '::ffff:198.51.100.1/24' }]);
  });

  it('1.1.0 keeps route scope 0 and table 0', () => {
    const out = toVersion({ ips: [{ address: '10.0.0.2/8' }], routes: [{ dst: '10.0.0.0/8', table: 0, scope: 0 }] }, '1.1.0');
    expect(out.routes).toStrictEqual([{ dst: '10.0.0.0/8', table: 0, scope: 0 }]);
  });

  describe.each(LEGACY)('to %s (legacy)', (version) => {
    it('throws code 1 when there is no IP', () => {
      for (const r of [{}, { ips: [] }, { interfaces: [{ name: 'eth0' }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['1.1.1.1'] } }] as Result[]) {
        const e = caught(() => toVersion(r, version));
        expect(e.code).toBe(1);
        expect(e.message).toBe('cannot convert: no valid IP addresses');
      }
    });

    it('prints only ip6 when there is no IPv4 address, dropping IPv4 routes', () => {
      const r: Result = {
        ips: [{ address: '2001:db8::7/64' }, { address: '2001:db8::8/64', gateway: '2001:db8::1' }],
        routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }, { dst: '::/0', gw: '2001:db8::1', mtu: 1300 }],
      };
      expect(toVersion(r, version)).toStrictEqual({ cniVersion: version, ip6: { ip: '2001:db8::7/64', routes: [{ dst: '::/0', gw: '2001:db8::1' }] } });
    });

    it('prints only ip4 when there is no IPv6 address; no routes key without routes', () => {
      const r: Result = { ips: [{ address: '10.0.0.7/8', gateway: '10.0.0.1' }], routes: [{ dst: '::/0' }] };
      expect(toVersion(r, version)).toStrictEqual({ cniVersion: version, ip4: { ip: '10.0.0.7/8', gateway: '10.0.0.1' } });
    });

    it('takes the first address of each family, wherever it is', () => {
      const r: Result = { ips: [{ address: '2001:db8::9/64' }, { address: '2001:db8::a/64' }, { address: '10.0.0.9/8' }, { address: '10.0.0.10/8' }] };
      expect(toVersion(r, version)).toStrictEqual({ cniVersion: version, ip4: { ip: '10.0.0.9/8' }, ip6: { ip: '2001:db8::9/64' } });
    });
  });
});

describe('parsePrevResult', () => {
  describe.each(PARSED)('from %s', (version, expected) => {
    const printed = PRINTED.find(([v]) => v === version)![1];

    it('reads the printed form into the 1.1.0 shape', () => {
      expect(parsePrevResult(clone(printed), version)).toStrictEqual(expected);
    });

    it('goes by the prevResult\'s cniVersion, not the config\'s', () => {
      for (const configVersion of ALL) expect(parsePrevResult(clone(printed), configVersion)).toStrictEqual(expected);
    });

    it('round trips: toVersion(parsePrevResult(x)) is x', () => {
      expect(toVersion(parsePrevResult(clone(printed), version), version)).toStrictEqual(printed);
    });

    // A version carries less than FULL: converting its printed form to a version
    // that carries no more than it must give what FULL itself gives.
    const rank = (v: CniVersion) => (LEGACY.includes(v) ? 0 : v === '1.1.0' ? 2 : 1);
    it.each(ALL.filter((t) => rank(t) <= rank(version)))('converts to %s exactly as FULL does', (target) => {
      const up = parsePrevResult(clone(printed), version);
      expect(toVersion(up, target)).toStrictEqual(PRINTED.find(([v]) => v === target)![1]);
    });
  });

  it('without cniVersion, uses the config version to choose the shape', () => {
    const legacy = { ip4: { ip: '10.1.2.5/24', gateway: '10.1.2.1' } };
    expect(parsePrevResult(legacy, '0.2.0')).toStrictEqual({ cniVersion: '0.2.0', ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.1' }], routes: [] });
    const modern = { ips: [{ address: '10.1.2.5/24' }] };
    expect(parsePrevResult(modern, '1.0.0')).toStrictEqual({ ips: [{ address: '10.1.2.5/24' }] });
  });

  it('drops the 0.4.0 ips[].version', () => {
    const r = parsePrevResult({ cniVersion: '0.4.0', ips: [{ version: '4', address: '10.1.2.5/24' }, { version: '6', address: '2001:db8::5/64' }] }, '0.4.0');
    expect(r.ips).toStrictEqual([{ address: '10.1.2.5/24' }, { address: '2001:db8::5/64' }]);
  });

  it('converts legacy ip4/ip6 without routes or dns', () => {
    expect(parsePrevResult({ cniVersion: '0.1.0', ip6: { ip: '2001:db8::5/64' } }, '0.1.0')).toStrictEqual({
      cniVersion: '0.1.0',
      ips: [{ address: '2001:db8::5/64' }],
      routes: [],
    });
  });

  it('converts a legacy result up to 1.0.0 and 0.4.0', () => {
    const legacy = { cniVersion: '0.2.0', ...LEGACY_BODY };
    expect(toVersion(parsePrevResult(legacy, '0.2.0'), '1.0.0')).toStrictEqual({
      cniVersion: '1.0.0',
      ips: [{ address: '10.1.2.5/24', gateway: '10.1.2.1' }, { address: '2001:db8::5/64', gateway: '2001:db8::1' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.1.2.1' }, { dst: '192.168.0.0/16' }, { dst: '::/0', gw: '2001:db8::1' }, { dst: '2001:db8:ff::/48' }],
      dns: DNS,
    });
    expect(toVersion(parsePrevResult(legacy, '0.2.0'), '0.4.0').ips).toStrictEqual([
      { version: '4', address: '10.1.2.5/24', gateway: '10.1.2.1' },
      { version: '6', address: '2001:db8::5/64', gateway: '2001:db8::1' },
    ]);
  });

  it.each<[string, unknown, CniVersion, string]>([
    ['null', null, '1.0.0', 'prevResult'],
    ['a string', 'result', '1.0.0', 'prevResult'],
    ['an array', [], '1.0.0', 'prevResult'],
    ['null, legacy config', null, '0.2.0', 'prevResult'],
    ['ips not an array', { cniVersion: '1.0.0', ips: {} }, '1.0.0', 'prevResult.ips'],
    ['an address without prefix', { cniVersion: '1.0.0', ips: [{ address: '10.1.2.5' }] }, '1.0.0', 'prevResult.ips[0].address'],
    ['a non-address', { cniVersion: '1.1.0', ips: [{ address: 'nonsense/24' }] }, '1.1.0', 'prevResult.ips[0].address'],
    ['a bad gateway', { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.1.2.5/24', gateway: '10.1.2.300' }] }, '0.4.0', 'prevResult.ips[0].gateway'],
    ['a negative interface index', { cniVersion: '1.0.0', ips: [{ address: '10.1.2.5/24', interface: -1 }] }, '1.0.0', 'prevResult.ips[0].interface'],
    ['an interface without name', { cniVersion: '1.0.0', interfaces: [{ mac: '00:11:22:33:44:55' }] }, '1.0.0', 'prevResult.interfaces[0].name'],
    ['a route without prefix', { cniVersion: '1.0.0', routes: [{ dst: '0.0.0.0' }] }, '1.0.0', 'prevResult.routes[0].dst'],
    ['a bad route gw', { cniVersion: '1.1.0', routes: [{ dst: '0.0.0.0/0', gw: 'x' }] }, '1.1.0', 'prevResult.routes[0].gw'],
    ['a negative route mtu', { cniVersion: '1.1.0', routes: [{ dst: '0.0.0.0/0', mtu: -1 }] }, '1.1.0', 'prevResult.routes[0].mtu'],
    ['a non-string cniVersion', { cniVersion: 1, ips: [] }, '1.0.0', 'prevResult.cniVersion'],
    ['dns.nameservers a string', { cniVersion: '1.0.0', dns: { nameservers: '1.1.1.1' } }, '1.0.0', 'prevResult.dns.nameservers'],
    ['legacy ip4 without prefix', { cniVersion: '0.2.0', ip4: { ip: '10.1.2.5' } }, '0.2.0', 'prevResult.ip4.ip'],
    ['legacy bad route', { cniVersion: '0.1.0', ip4: { ip: '10.1.2.5/24', routes: [{ dst: 'default' }] } }, '0.1.0', 'prevResult.ip4.routes[0].dst'],
  ])('refuses %s with code 6', (_what, raw, configVersion, path) => {
    const e = caught(() => parsePrevResult(raw, configVersion));
    expect(e.code).toBe(6);
    expect(e.message).toBe('failed to decode prevResult');
    expect(e.details.startsWith(`${path}: `) || e.details.includes(`; ${path}: `)).toBe(true);
  });
});
