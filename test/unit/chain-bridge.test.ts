import { describe, expect, it } from 'vitest';
import { gatewayOf, randomMac } from '../../src/chain/bridge.js';
import { formatCidr } from '../../src/net/ip.js';

describe('gatewayOf', () => {
  it.each([
    [{ address: '10.1.2.5/24' }, '10.1.2.1/24'],
    [{ address: '10.1.2.130/25' }, '10.1.2.129/25'],
    [{ address: '10.1.2.5/24', gateway: '10.1.2.254' }, '10.1.2.254/24'],
    [{ address: '172.16.5.9/12' }, '172.16.0.1/12'],
    [{ address: 'fd00:1::5/64' }, 'fd00:1::1/64'],
    [{ address: 'fd00:1::5/64', gateway: 'fd00:1::fe' }, 'fd00:1::fe/64'],
    [{ address: '2001:db8:1:2:3:4:5:6/48' }, '2001:db8:1::1/48'],
  ])('%j -> %s', (ip, want) => {
    expect(formatCidr(gatewayOf(ip))).toBe(want);
  });

  it('gives the family of the address', () => {
    expect(gatewayOf({ address: '10.1.2.5/24' }).ip.family).toBe(4);
    expect(gatewayOf({ address: 'fd00:1::5/64' }).ip.family).toBe(6);
  });
});

describe('randomMac', () => {
  it('is unicast and locally administered, and random', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const m = randomMac();
      expect(m).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      const first = Number.parseInt(m.slice(0, 2), 16);
      expect(first & 1).toBe(0);
      expect(first & 2).toBe(2);
      seen.add(m);
    }
    expect(seen.size).toBe(200);
  });
});
