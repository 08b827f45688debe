// The port guard's nft commands, without a kernel: what an ADD adds and a DEL
// removes for one pod (the kernel's side is proven in test/ns/spoof.test.ts).
import { describe, expect, it } from 'vitest';
import { dropCounter, guardAdd, guardDel, guardElements, linkLocalOf, naChain, type GuardedPort } from '../../src/chain/spoofcheck.js';

const port: GuardedPort = { hostVeth: 'veth0a0b0c0d', mac: '0a:58:0a:5b:00:04', ips: ['10.91.0.4', 'fd91:0::4'], level: 'addresses' };
const elems = (cmds: Record<string, any>[], verb: string) => cmds.filter((c) => c[verb]?.element).map((c) => [c[verb].element.name, JSON.stringify(c[verb].element.elem[0])]);

describe('port guard', () => {
  it('the link-local address is the kernel\'s EUI-64 one for the MAC', () => {
    expect(linkLocalOf('0a:58:0a:61:00:02')).toBe('fe80::858:aff:fe61:2');
    expect(linkLocalOf('02:00:00:00:be:ef')).toBe('fe80::ff:fe00:beef');
  });

  it('a checked pod gets its port, MAC, addresses (canonical, with its link-local), advertisement chain and counter', () => {
    expect(guardElements(port).map(([s, e]) => `${s} ${JSON.stringify(e)}`)).toEqual([
      'guard_ifs "veth0a0b0c0d"',
      `guard_drops ["veth0a0b0c0d","${dropCounter('veth0a0b0c0d')}"]`,
      'spoofchk_ifs "veth0a0b0c0d"',
      'spoofchk_pairs {"concat":["veth0a0b0c0d","0a:58:0a:5b:00:04"]}',
      'ipchk_ifs "veth0a0b0c0d"',
      `ipchk_na ["veth0a0b0c0d",{"goto":{"target":"${naChain('veth0a0b0c0d')}"}}]`,
      'ipchk_v4 {"concat":["veth0a0b0c0d","10.91.0.4"]}',
      'ipchk_v6 {"concat":["veth0a0b0c0d","fd91::4"]}',
      'ipchk_v6 {"concat":["veth0a0b0c0d","fe80::858:aff:fe5b:4"]}',
    ]);
    const naRule = guardAdd(port).find((c) => (c.add as any)?.rule?.chain === naChain('veth0a0b0c0d'));
    expect(JSON.stringify(naRule)).toContain('"right":{"set":["0xfd910000000000000000000000000004","0xfe8000000000000008580afffe5b0004"]}');
  });

  it('levels: MAC only checks no address; none keeps the RA guard and the counter', () => {
    expect(guardElements({ ...port, level: 'mac' }).map(([s]) => s)).toEqual(['guard_ifs', 'guard_drops', 'spoofchk_ifs', 'spoofchk_pairs']);
    expect(guardElements({ ...port, level: 'none' }).map(([s]) => s)).toEqual(['guard_ifs', 'guard_drops']);
  });

  it('DEL deletes, at every level, exactly what it first adds (so each delete is valid), then the counter and chain', () => {
    const del = guardDel({ ...port, level: 'none' }) as Record<string, any>[];
    expect(elems(del, 'delete')).toEqual(elems(del, 'add'));
    expect(elems(del, 'delete').map(([s]) => s)).toContain('ipchk_v4');
    const last = del.slice(-2).map((c) => Object.keys(c.delete)[0]);
    expect(last).toEqual(['counter', 'chain']);
    // The advertisement chain is emptied before it is deleted.
    expect(del.some((c) => c.flush?.chain?.name === naChain('veth0a0b0c0d'))).toBe(true);
  });

  it('any interface name gives short, valid object names', () => {
    const long = 'a'.repeat(15);
    expect(dropCounter(long)).toMatch(/^drop_[0-9a-f]{12}$/);
    expect(naChain('x y"z')).toMatch(/^na_[0-9a-f]{12}$/);
  });
});
