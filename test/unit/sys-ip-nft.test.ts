import { describe, expect, it } from 'vitest';
import { CniError } from '../../src/cni/errors.js';
import { batchFailure, IpBatch } from '../../src/sys/ip.js';
import { NftTransaction } from '../../src/sys/nft.js';

describe('IpBatch', () => {
  it('joins tokens into lines, each ending in a newline', () => {
    const b = new IpBatch();
    expect(b.empty).toBe(true);
    expect(b.text()).toBe('');
    const r = b.add('link', 'add', 'veth0123abcd', 'mtu', 1450, 'type', 'veth').add('addr', 'add', 'fd00:1::5/64', 'dev', 'eth0', 'nodad');
    expect(r).toBe(b);
    expect(b.empty).toBe(false);
    expect(b.lines).toStrictEqual([
      ['link', 'add', 'veth0123abcd', 'mtu', '1450', 'type', 'veth'],
      ['addr', 'add', 'fd00:1::5/64', 'dev', 'eth0', 'nodad'],
    ]);
    expect(b.text()).toBe('link add veth0123abcd mtu 1450 type veth\naddr add fd00:1::5/64 dev eth0 nodad\n');
  });

  it('accepts the characters of names, addresses, paths and sysctls', () => {
    const b = new IpBatch().add('a-b_c.d:e/f@g+h,i%j=k', '/var/run/netns/cni-1234', '0a:58:0a:01:02:05');
    expect(b.lines).toHaveLength(1);
  });

  it.each([['a b'], ['a\tb'], ['a\nb'], ['a\rb'], ['"x"'], ["'x'"], ['#'], ['x#y'], ['a\\b'], [''], ['a;b'], ['$(x)'], ['a\0b'], ['é']])(
    'refuses %j with code 7 and adds nothing',
    (bad) => {
      const b = new IpBatch().add('link', 'set', 'eth0', 'up');
      let err: unknown;
      try {
        b.add('link', 'set', bad, 'up');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(7);
      expect((err as CniError).message).toBe(`${JSON.stringify(bad)} cannot be passed to ip`);
      expect(b.lines).toStrictEqual([['link', 'set', 'eth0', 'up']]);
      expect(b.text()).toBe('link set eth0 up\n');
    },
  );

  it('refuses a bad token even when it is the last one', () => {
    const b = new IpBatch();
    expect(() => b.add('link', 'set', 'eth0', 'alias', 'x y')).toThrow(CniError);
    expect(b.empty).toBe(true);
  });
});

describe('batchFailure', () => {
  it('parses the failing line to a 0-based index and strips it from the message', () => {
    expect(batchFailure({ stdout: '', stderr: 'RTNETLINK answers: File exists\nCommand failed -:3\n', exitCode: 1 })).toStrictEqual({
      line: 2,
      message: 'RTNETLINK answers: File exists',
    });
  });

  it('handles line 1', () => {
    expect(batchFailure({ stdout: '', stderr: 'Cannot find device "nhi0"\nCommand failed -:1', exitCode: 1 })).toStrictEqual({
      line: 0,
      message: 'Cannot find device "nhi0"',
    });
  });

  it('without a line number keeps the message only', () => {
    const f = batchFailure({ stdout: '', stderr: 'Error: something\n', exitCode: 2 });
    expect(f).toStrictEqual({ message: 'Error: something' });
    expect('line' in f).toBe(false);
  });

  it('with an empty stderr falls back to the exit status', () => {
    expect(batchFailure({ stdout: '', stderr: '', exitCode: 255 })).toStrictEqual({ message: 'exit status 255' });
    expect(batchFailure({ stdout: '', stderr: 'Command failed -:12\n', exitCode: 1 })).toStrictEqual({ line: 11, message: 'exit status 1' });
  });
});

describe('NftTransaction', () => {
  it('json() starts with metainfo and holds the commands in order', () => {
    const t = new NftTransaction();
    expect(t.empty).toBe(true);
    const a = { add: { table: { family: 'inet', name: 't' } } };
    const b = { flush: { chain: { family: 'inet', table: 't', name: 'c' } } };
    const c = { delete: { element: { family: 'inet', table: 't', name: 's', elem: ['x'] } } };
    expect(t.push(a, b)).toBe(t);
    t.push(c);
    expect(t.empty).toBe(false);
    expect(t.commands).toStrictEqual([a, b, c]);
    const parsed = JSON.parse(t.json()) as { nftables: unknown[] };
    expect(Object.keys(parsed)).toStrictEqual(['nftables']);
    expect(parsed.nftables).toStrictEqual([{ metainfo: { json_schema_version: 1 } }, a, b, c]);
  });

  it('an empty transaction is just the metainfo', () => {
    expect(JSON.parse(new NftTransaction().json())).toStrictEqual({ nftables: [{ metainfo: { json_schema_version: 1 } }] });
  });
});
