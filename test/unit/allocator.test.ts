import { describe, expect, it } from 'vitest';
import { candidates, capacity } from '../../src/chain/ipam/allocator.js';
import { loadIpamConfig, type RangeSet } from '../../src/chain/ipam/config.js';
import { formatIp, parseIp, type Ip } from '../../src/net/ip.js';

const ip = (s: string): Ip => parseIp(s)!;

/** A range set built the way the plugin builds it, from host-local range JSON. */
function rangeSet(...ranges: Record<string, string>[]): RangeSet {
  return loadIpamConfig({ name: 'n', ipam: { ranges: [ranges] } }, 'n', '1.0.0').ranges[0]!;
}

/** The candidates as text, with a hard stop so that a looping generator fails instead of hanging. */
function order(set: RangeSet, last?: string, limit = 10_000): string[] {
  const out: string[] = [];
  for (const c of candidates(set, last === undefined ? undefined : ip(last))) {
    out.push(formatIp(c.ip));
    if (out.length > limit) throw new Error(`more than ${limit} candidates`);
  }
  return out;
}

const seq = (prefix: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${prefix}${from + i}`);

describe('candidates: one range', () => {
  // 10.1.2.0/29: start .1 (the gateway), end .6.
  const set = rangeSet({ subnet: '10.1.2.0/29' });

  it('starts at rangeStart and skips the gateway when nothing was reserved yet', () => {
    expect(order(set)).toStrictEqual(['10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6']);
  });

  it('starts after the last reserved address and wraps around, ending with it', () => {
    expect(order(set, '10.1.2.4')).toStrictEqual(['10.1.2.5', '10.1.2.6', '10.1.2.2', '10.1.2.3', '10.1.2.4']);
  });

  it('last reserved = rangeEnd wraps straight to rangeStart', () => {
    expect(order(set, '10.1.2.6')).toStrictEqual(['10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6']);
  });

  it('last reserved = first address after the gateway', () => {
    expect(order(set, '10.1.2.2')).toStrictEqual(['10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6', '10.1.2.2']);
  });

  it('last reserved = the gateway (inside the range): one cycle, the gateway never offered', () => {
    expect(order(set, '10.1.2.1')).toStrictEqual(['10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6']);
  });

  it.each([['10.1.2.7'], ['10.1.2.0'], ['10.1.3.4'], ['2001:db8::4'], ['0.0.0.0']])('a last reserved %s outside the set means start over', (last) => {
    expect(order(set, last)).toStrictEqual(order(set));
  });

  it('reports the range of each candidate', () => {
    for (const c of candidates(set)) expect(c.range).toBe(set[0]);
  });

  it('a gateway in the middle is skipped', () => {
    const s = rangeSet({ subnet: '10.1.2.0/29', gateway: '10.1.2.3' });
    expect(order(s)).toStrictEqual(['10.1.2.1', '10.1.2.2', '10.1.2.4', '10.1.2.5', '10.1.2.6']);
    expect(order(s, '10.1.2.2')).toStrictEqual(['10.1.2.4', '10.1.2.5', '10.1.2.6', '10.1.2.1', '10.1.2.2']);
    expect(capacity(s)).toBe(5n);
  });

  it('last reserved right before the gateway: the cycle still stops', () => {
    const s = rangeSet({ subnet: '10.1.2.0/29', gateway: '10.1.2.3' });
    // The cycle starts at .3 (the gateway), so it ends when it comes back to .3.
    expect(order(s, '10.1.2.2')).toHaveLength(5);
  });

  it('a gateway outside the range costs nothing', () => {
    const s = rangeSet({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.10', rangeEnd: '10.1.2.12' });
    expect(order(s)).toStrictEqual(['10.1.2.10', '10.1.2.11', '10.1.2.12']);
    expect(capacity(s)).toBe(3n);
  });

  it('a range holding only its gateway yields nothing and ends', () => {
    const s = rangeSet({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.1', rangeEnd: '10.1.2.1' });
    expect(order(s)).toStrictEqual([]);
    expect(order(s, '10.1.2.1')).toStrictEqual([]);
    expect(capacity(s)).toBe(0n);
  });

  it('a range of one address that is not the gateway', () => {
    const s = rangeSet({ subnet: '10.1.2.0/24', rangeStart: '10.1.2.9', rangeEnd: '10.1.2.9' });
    expect(order(s)).toStrictEqual(['10.1.2.9']);
    expect(order(s, '10.1.2.9')).toStrictEqual(['10.1.2.9']);
    expect(capacity(s)).toBe(1n);
  });

  it('crosses octet boundaries', () => {
    const s = rangeSet({ subnet: '10.1.0.0/16', rangeStart: '10.1.2.254', rangeEnd: '10.1.3.1' });
    expect(order(s)).toStrictEqual(['10.1.2.254', '10.1.2.255', '10.1.3.0', '10.1.3.1']);
  });

  it('IPv6, default range of a /125: ::1 is the gateway, the end is all-ones', () => {
    const s = rangeSet({ subnet: '2001:db8::/125' });
    expect(order(s)).toStrictEqual(['2001:db8::2', '2001:db8::3', '2001:db8::4', '2001:db8::5', '2001:db8::6', '2001:db8::7']);
    expect(order(s, '2001:db8::5')).toStrictEqual(['2001:db8::6', '2001:db8::7', '2001:db8::2', '2001:db8::3', '2001:db8::4', '2001:db8::5']);
    expect(capacity(s)).toBe(6n);
  });

  it('a default /24 offers .2 … .254', () => {
    const s = rangeSet({ subnet: '10.1.2.0/24' });
    expect(order(s)).toStrictEqual(seq('10.1.2.', 2, 254));
    expect(capacity(s)).toBe(253n);
  });

  it('is lazy: a huge IPv6 range yields its first candidates at once', () => {
    const s = rangeSet({ subnet: '2001:db8::/64' });
    const it = candidates(s, ip('2001:db8::ffff:ffff:ffff:fffe'));
    expect([it.next().value, it.next().value, it.next().value].map((c) => formatIp(c!.ip))).toStrictEqual([
      '2001:db8::ffff:ffff:ffff:ffff',
      '2001:db8::2',
      '2001:db8::3',
    ]);
    expect(capacity(s)).toBe((1n << 64n) - 2n);
  });
});

describe('candidates: several ranges in a set', () => {
  // Range 0: 10.1.2.1-10.1.2.6 (gw .1); range 1: 10.1.3.1-10.1.3.2 (gw .1); range 2: 10.1.4.10-10.1.4.11 (gw 10.1.4.1, outside).
  const set = rangeSet({ subnet: '10.1.2.0/29' }, { subnet: '10.1.3.0/30' }, { subnet: '10.1.4.0/24', rangeStart: '10.1.4.10', rangeEnd: '10.1.4.11' });
  const all = ['10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6', '10.1.3.2', '10.1.4.10', '10.1.4.11'];

  it('walks the ranges in order from the first rangeStart', () => {
    expect(order(set)).toStrictEqual(all);
  });

  it('reports the range each candidate came from', () => {
    const ranges = [...candidates(set)].map((c) => set.indexOf(c.range));
    expect(ranges).toStrictEqual([0, 0, 0, 0, 0, 1, 2, 2]);
  });

  it.each(all.map((last, i) => [last, [...all.slice(i + 1), ...all.slice(0, i + 1)]] as const))(
    'after %s: the next address, wrapping across ranges, one full cycle',
    (last, expected) => {
      expect(order(set, last)).toStrictEqual(expected);
    },
  );

  it('after the gateway of the second range', () => {
    expect(order(set, '10.1.3.1')).toStrictEqual(['10.1.3.2', '10.1.4.10', '10.1.4.11', '10.1.2.2', '10.1.2.3', '10.1.2.4', '10.1.2.5', '10.1.2.6']);
  });

  it('an address between two ranges means start over', () => {
    expect(order(set, '10.1.4.5')).toStrictEqual(all);
  });

  it('capacity counts every range, less the gateways inside them', () => {
    expect(capacity(set)).toBe(8n);
    expect(BigInt(order(set).length)).toBe(capacity(set));
  });

  it('every start yields each address of the set exactly once', () => {
    const sorted = [...all].sort();
    for (const last of [undefined, ...all, '10.1.2.1', '10.1.3.1', '10.9.9.9']) {
      const got = order(set, last);
      expect(new Set(got).size).toBe(got.length);
      expect([...got].sort()).toStrictEqual(sorted);
    }
  });

  it('ranges in one subnet', () => {
    const s = rangeSet(
      { subnet: '10.1.2.0/24', rangeStart: '10.1.2.20', rangeEnd: '10.1.2.21' },
      { subnet: '10.1.2.0/24', rangeStart: '10.1.2.1', rangeEnd: '10.1.2.3' },
    );
    expect(order(s)).toStrictEqual(['10.1.2.20', '10.1.2.21', '10.1.2.2', '10.1.2.3']);
    expect(order(s, '10.1.2.21')).toStrictEqual(['10.1.2.2', '10.1.2.3', '10.1.2.20', '10.1.2.21']);
    expect(order(s, '10.1.2.3')).toStrictEqual(['10.1.2.20', '10.1.2.21', '10.1.2.2', '10.1.2.3']);
    expect(capacity(s)).toBe(4n);
  });

  it('wrapping onto a first range whose start is the gateway', () => {
    const s = rangeSet({ subnet: '10.1.2.0/30' }, { subnet: '10.1.3.0/30' });
    // Range 0: .2.1 (gw) .2.2; range 1: .3.1 (gw) .3.2.
    expect(order(s)).toStrictEqual(['10.1.2.2', '10.1.3.2']);
    expect(order(s, '10.1.2.2')).toStrictEqual(['10.1.3.2', '10.1.2.2']);
    expect(order(s, '10.1.3.2')).toStrictEqual(['10.1.2.2', '10.1.3.2']);
  });
});
