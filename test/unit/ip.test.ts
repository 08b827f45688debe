import { describe, expect, it } from 'vitest';
import {
  add,
  bits,
  compare,
  contains,
  equal,
  formatCidr,
  formatIp,
  lastOf,
  networkOf,
  overlaps,
  parseCidr,
  parseIp,
  parseIpMaybeCidr,
  type Cidr,
  type Ip,
} from '../../src/net/ip.js';

const ip = (s: string): Ip => {
  const r = parseIp(s);
  if (!r) throw new Error(`test fixture ${s} does not parse`);
  return r;
};
const cidr = (s: string): Cidr => {
  const r = parseCidr(s);
  if (!r) throw new Error(`test fixture ${s} does not parse`);
  return r;
};
const fmt = (s: string) => formatIp(ip(s));

describe('bits', () => {
  it('is 32 for IPv4 and 128 for IPv6', () => {
    expect(bits(4)).toBe(32);
    expect(bits(6)).toBe(128);
  });
});

describe('parseIp: IPv4', () => {
  it.each([
    ['0.0.0.0', 0n],
    ['10.1.2.3', 0x0a010203n],
    ['192.168.0.1', 0xc0a80001n],
    ['255.255.255.255', 0xffffffffn],
    ['1.0.0.0', 0x01000000n],
    ['100.99.9.0', 0x64630900n],
  ])('parses %s', (text, value) => {
    expect(parseIp(text)).toStrictEqual({ family: 4, value });
    expect(formatIp({ family: 4, value })).toBe(text);
  });

  it.each([
    ['01.2.3.4'], ['1.2.3.04'], ['1.02.3.4'], ['00.0.0.0'], ['010.1.1.1'],
    ['256.1.1.1'], ['1.2.3.256'], ['1.2.3'], ['1.2.3.4.5'], ['1..2.3'], ['1.2.3.'], ['.1.2.3'],
    ['1.2.3.-1'], [' 1.2.3.4'], ['1.2.3.4 '], ['1.2.3.4/24'], ['0x1.2.3.4'], ['1.2.3.a'], [''], ['a.b.c.d'], ['１.2.3.4'],
  ])('refuses %j', (text) => {
    expect(parseIp(text)).toBeUndefined();
  });
});

describe('parseIp: IPv6', () => {
  it.each([
    ['::', 0n],
    ['::1', 1n],
    ['2001:db8::1', 0x20010db8000000000000000000000001n],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', (1n << 128n) - 1n],
    ['fe80::', 0xfe80n << 112n],
  ])('parses %s', (text, value) => {
    expect(parseIp(text)).toStrictEqual({ family: 6, value });
  });

  it.each([
    ['2001:db8::1%eth0'], ['fe80::1%1'], ['2001:db8::/64'], ['1::2::3'], [':::'], ['1:2:3:4:5:6:7:8:9'], ['1:2:3:4:5:6:7'],
    ['12345::1'], ['g::1'], ['2001:db8::1 '], [' ::1'], ['[::1]'], [':1'], ['1:'], ['::ffff:01.2.3.4'], ['::ffff:1.2.3.256'], ['::ffff:1.2.3'],
  ])('refuses %j', (text) => {
    expect(parseIp(text)).toBeUndefined();
  });

  // IPv4-mapped addresses are IPv4 to Go's net package, however they are written.
  it.each([
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::FFFF:10.0.0.1', '10.0.0.1'],
    ['0:0:0:0:0:ffff:10.0.0.1', '10.0.0.1'],
    ['::ffff:102:304', '1.2.3.4'],
    ['::ffff:a00:1', '10.0.0.1'],
    ['::ffff:0:0', '0.0.0.0'],
  ])('IPv4-mapped %s is IPv4 %s', (text, v4) => {
    expect(parseIp(text)).toStrictEqual(parseIp(v4));
    expect(parseIp(text)?.family).toBe(4);
    expect(fmt(text)).toBe(v4);
  });

  // An embedded dotted quad outside ::ffff:0:0/96 is just IPv6 notation.
  it.each([
    ['::1.2.3.4', '::102:304'],
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
    ['2001:db8::192.0.2.1', '2001:db8::c000:201'],
    ['::fffe:1.2.3.4', '::fffe:102:304'],
  ])('%s is IPv6 %s', (text, v6) => {
    expect(parseIp(text)?.family).toBe(6);
    expect(fmt(text)).toBe(v6);
  });
});

describe('formatIp: Go net.IP.String() / RFC 5952', () => {
  it.each([
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs
    ['2001:0db8:0000:0000:0000:0000:0002:0001', '2001:db8::2:1'],
    ['2001:db8:0:0:0:1:0:0', '2001:db8::1:0:0'], // longest run wins
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['0:1:2:3:4:5:6:7', '0:1:2:3:4:5:6:7'],
    ['::1:2:3:4:5:6:7', '0:1:2:3:4:5:6:7'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['2001:DB8::ABCD', '2001:db8::abcd'],
    ['2001:db8:0000:0:0:0:0:0', '2001:db8::'],
    ['fe80:0:0:0:0204:61ff:fe9d:f156', 'fe80::204:61ff:fe9d:f156'],
    ['2001:0db8::0001', '2001:db8::1'],
  ])('%s → %s', (text, out) => {
    expect(fmt(text)).toBe(out);
  });

  it('formats from the value', () => {
    expect(formatIp({ family: 6, value: 0x20010db8000000000001000000000001n })).toBe('2001:db8::1:0:0:1');
    expect(formatIp({ family: 4, value: 0x0a0102ffn })).toBe('10.1.2.255');
  });
});

describe('parseCidr / formatCidr', () => {
  it.each([
    ['10.1.2.0/24', 4, 0x0a010200n, 24],
    ['10.1.2.3/24', 4, 0x0a010203n, 24], // host bits kept as written
    ['0.0.0.0/0', 4, 0n, 0],
    ['10.1.2.3/32', 4, 0x0a010203n, 32],
    ['::/0', 6, 0n, 0],
    ['2001:db8::/64', 6, 0x20010db8n << 96n, 64],
    ['2001:db8::1/128', 6, (0x20010db8n << 96n) + 1n, 128],
  ] as const)('parses %s', (text, family, value, prefix) => {
    expect(parseCidr(text)).toStrictEqual({ ip: { family, value }, prefix });
    expect(formatCidr(cidr(text))).toBe(text);
  });

  it('formats canonically', () => {
    expect(formatCidr(cidr('2001:0DB8:0:0:0:0:0:0/32'))).toBe('2001:db8::/32');
    expect(formatCidr(cidr('2001:db8:0:0:1:0:0:1/64'))).toBe('2001:db8::1:0:0:1/64');
  });

  it.each([
    ['10.0.0.0'], ['10.0.0.0/'], ['10.0.0.0/33'], ['10.0.0.0/-1'], ['10.0.0.0/+8'], ['10.0.0.0/ 8'], ['10.0.0.0/8 '], ['10.0.0.0/8/8'],
    ['10.0.0.0/1000'], ['10.0.0.0/a'], ['/24'], ['01.0.0.0/8'], ['::/129'], ['2001:db8::/64%eth0'], ['2001:db8::%eth0/64'], ['10.0.0.0/255.0.0.0'], [''],
  ])('refuses %j', (text) => {
    expect(parseCidr(text)).toBeUndefined();
  });
});

describe('parseIpMaybeCidr', () => {
  it.each([
    ['10.1.2.3', '10.1.2.3'],
    ['10.1.2.3/24', '10.1.2.3'],
    ['2001:db8::5', '2001:db8::5'],
    ['2001:db8::5/64', '2001:db8::5'],
  ])('%s → %s', (text, out) => {
    expect(parseIpMaybeCidr(text)).toStrictEqual(ip(out));
  });

  it.each([['10.1.2.3/33'], ['10.1.2.300'], ['10.1.2.3/'], ['x'], ['']])('refuses %j', (text) => {
    expect(parseIpMaybeCidr(text)).toBeUndefined();
  });
});

describe('networkOf / lastOf', () => {
  it.each([
    ['10.1.2.3/24', '10.1.2.0', '10.1.2.255'],
    ['10.1.2.0/24', '10.1.2.0', '10.1.2.255'],
    ['10.1.2.130/25', '10.1.2.128', '10.1.2.255'],
    ['10.1.2.5/30', '10.1.2.4', '10.1.2.7'],
    ['10.1.2.5/32', '10.1.2.5', '10.1.2.5'],
    ['10.255.1.1/8', '10.0.0.0', '10.255.255.255'],
    ['200.1.1.1/0', '0.0.0.0', '255.255.255.255'],
    ['2001:db8::5/64', '2001:db8::', '2001:db8::ffff:ffff:ffff:ffff'],
    ['2001:db8::5/126', '2001:db8::4', '2001:db8::7'],
    ['2001:db8:1:2:3:4:5:6/48', '2001:db8:1::', '2001:db8:1:ffff:ffff:ffff:ffff:ffff'],
    ['::5/0', '::', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['2001:db8::5/128', '2001:db8::5', '2001:db8::5'],
  ])('%s: %s … %s', (c, net, last) => {
    expect(networkOf(cidr(c))).toStrictEqual(ip(net));
    expect(lastOf(cidr(c))).toStrictEqual(ip(last));
  });
});

describe('contains', () => {
  it.each([
    ['10.1.2.0/24', '10.1.2.0', true],
    ['10.1.2.0/24', '10.1.2.255', true],
    ['10.1.2.0/24', '10.1.2.77', true],
    ['10.1.2.0/24', '10.1.3.0', false],
    ['10.1.2.0/24', '10.1.1.255', false],
    ['10.1.2.99/24', '10.1.2.1', true], // host bits of the CIDR do not matter
    ['0.0.0.0/0', '255.255.255.255', true],
    ['10.1.2.5/32', '10.1.2.5', true],
    ['10.1.2.5/32', '10.1.2.6', false],
    ['2001:db8::/64', '2001:db8::ffff:ffff:ffff:ffff', true],
    ['2001:db8::/64', '2001:db8:0:1::', false],
    ['::/0', '::1', true],
    ['::/0', '10.0.0.1', false], // other family
    ['0.0.0.0/0', '::1', false],
    ['0.0.0.0/0', '::', false],
    ['::/96', '0.0.0.1', false],
  ] as const)('%s ∋ %s: %s', (c, a, yes) => {
    expect(contains(cidr(c), ip(a))).toBe(yes);
  });
});

describe('overlaps', () => {
  it.each([
    ['10.1.2.0/24', '10.1.2.0/24', true],
    ['10.1.0.0/16', '10.1.2.0/24', true],
    ['10.1.2.0/24', '10.1.0.0/16', true],
    ['10.1.2.0/25', '10.1.2.128/25', false],
    ['10.1.2.0/24', '10.1.3.0/24', false],
    ['10.1.2.7/24', '10.1.2.200/30', true],
    ['0.0.0.0/0', '192.168.0.0/16', true],
    ['2001:db8::/32', '2001:db8:ffff::/48', true],
    ['2001:db8::/64', '2001:db8:0:1::/64', false],
    ['::/0', '0.0.0.0/0', false],
    ['::/96', '0.0.0.0/0', false],
  ] as const)('%s and %s: %s', (a, b, yes) => {
    expect(overlaps(cidr(a), cidr(b))).toBe(yes);
    expect(overlaps(cidr(b), cidr(a))).toBe(yes);
  });
});

describe('equal / compare / add', () => {
  it('equal needs family and value', () => {
    expect(equal(ip('10.0.0.1'), ip('10.0.0.1'))).toBe(true);
    expect(equal(ip('10.0.0.1'), ip('10.0.0.2'))).toBe(false);
    expect(equal(ip('0.0.0.1'), ip('::1'))).toBe(false);
    expect(equal(undefined, ip('::1'))).toBe(false);
    expect(equal(ip('::1'), undefined)).toBe(false);
    expect(equal(undefined, undefined)).toBe(false);
    expect(equal(ip('2001:db8::1'), ip('2001:DB8:0::0:1'))).toBe(true);
  });

  it('compare orders by family, then value', () => {
    expect(compare(ip('10.0.0.1'), ip('10.0.0.2'))).toBe(-1);
    expect(compare(ip('10.0.0.2'), ip('10.0.0.1'))).toBe(1);
    expect(compare(ip('10.0.0.2'), ip('10.0.0.2'))).toBe(0);
    expect(compare(ip('9.255.255.255'), ip('10.0.0.0'))).toBe(-1);
    expect(compare(ip('255.255.255.255'), ip('::'))).toBeLessThan(0);
    expect(compare(ip('::'), ip('255.255.255.255'))).toBeGreaterThan(0);
    expect(compare(ip('2001:db8::1:0'), ip('2001:db8::ffff'))).toBe(1);
  });

  it('add steps across octet and group boundaries', () => {
    expect(formatIp(add(ip('10.1.2.255'), 1n))).toBe('10.1.3.0');
    expect(formatIp(add(ip('10.1.3.0'), -1n))).toBe('10.1.2.255');
    expect(formatIp(add(ip('2001:db8::ffff'), 1n))).toBe('2001:db8::1:0');
    expect(formatIp(add(ip('2001:db8::1:0'), -1n))).toBe('2001:db8::ffff');
    expect(add(ip('10.0.0.1'), 0n)).toStrictEqual(ip('10.0.0.1'));
  });
});
