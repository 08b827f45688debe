import { describe, expect, it } from 'vitest';
import { MAX_COMMENT, masqAdd, masqChain, masqComment, masqCommands, subnetsOf, TABLE } from '../../src/chain/masq.js';
import { Plan } from '../../src/chain/plan.js';
import { NftTransaction } from '../../src/sys/nft.js';

describe('masqChain', () => {
  it('is stable (CHECK must find the chain an earlier ADD made)', () => {
    expect(masqChain('net1', '10.1.2.0/24')).toBe('masq_7f39217fa9c7efaa');
    expect(masqChain('net1', 'fd00:1::/64')).toBe('masq_55bcf8d50622c67d');
  });

  it('is one chain per subnet, shared by every pod in it (DEL has nothing per pod to remove)', () => {
    const chainsAdded = (address: string) => {
      const p = new Plan();
      masqAdd('net1', [{ address }], p);
      return p.nft.commands.flatMap((c) => {
        const chain = (c as { add?: { chain?: { name: string } } }).add?.chain;
        return chain ? [chain.name] : [];
      });
    };
    expect(chainsAdded('10.1.2.5/24')).toStrictEqual(['masq_7f39217fa9c7efaa']);
    expect(chainsAdded('10.1.2.77/24')).toStrictEqual(['masq_7f39217fa9c7efaa']);
  });

  it('is distinct per network and per subnet', () => {
    const names = [
      masqChain('net1', '10.1.2.0/24'),
      masqChain('net2', '10.1.2.0/24'),
      masqChain('net1', '10.1.3.0/24'),
      masqChain('net1', '10.1.2.0/25'),
      masqChain('net1', 'fd00:1::/64'),
      masqChain('net1x', '10.1.2.0/24'),
    ];
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^masq_[0-9a-f]{16}$/);
  });

  it('does not confuse the split between network and subnet', () => {
    expect(masqChain('a', 'b1.0.0.0/8')).not.toBe(masqChain('ab', '1.0.0.0/8'));
  });
});

describe('subnetsOf', () => {
  it('gives the networks of the addresses, deduplicated and sorted', () => {
    expect(
      subnetsOf([{ address: 'fd00:1::5/64' }, { address: '10.1.2.5/24' }, { address: '10.1.2.77/24' }, { address: '10.1.3.130/25', gateway: '10.1.3.129' }]),
    ).toStrictEqual(['10.1.2.0/24', '10.1.3.128/25', 'fd00:1::/64']);
  });

  it('is empty without addresses', () => {
    expect(subnetsOf([])).toStrictEqual([]);
  });
});

describe('masqCommands', () => {
  it('IPv4 subnet', () => {
    const chain = masqChain('net1', '10.1.2.0/24');
    expect(masqCommands('net1', '10.1.2.0/24')).toStrictEqual([
      { add: { table: { family: 'inet', name: 'nhi_cni' } } },
      { add: { chain: { family: 'inet', table: 'nhi_cni', name: chain, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } } },
      { flush: { chain: { family: 'inet', table: 'nhi_cni', name: chain } } },
      {
        add: {
          rule: {
            family: 'inet',
            table: 'nhi_cni',
            chain,
            comment: 'nhi-cni masquerade 10.1.2.0/24 network net1',
            expr: [
              { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { prefix: { addr: '10.1.2.0', len: 24 } } } },
              { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '10.1.2.0', len: 24 } } } },
              { match: { op: '!=', left: { payload: { protocol: 'ip', field: 'daddr' } }, right: { prefix: { addr: '224.0.0.0', len: 4 } } } },
              { masquerade: null },
            ],
          },
        },
      },
    ]);
    expect(TABLE).toBe('nhi_cni');
  });

  it('IPv6 subnet', () => {
    const chain = masqChain('net1', 'fd00:1::/64');
    expect(masqCommands('net1', 'fd00:1::/64')).toStrictEqual([
      { add: { table: { family: 'inet', name: 'nhi_cni' } } },
      { add: { chain: { family: 'inet', table: 'nhi_cni', name: chain, type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } } },
      { flush: { chain: { family: 'inet', table: 'nhi_cni', name: chain } } },
      {
        add: {
          rule: {
            family: 'inet',
            table: 'nhi_cni',
            chain,
            comment: 'nhi-cni masquerade fd00:1::/64 network net1',
            expr: [
              { match: { op: '==', left: { payload: { protocol: 'ip6', field: 'saddr' } }, right: { prefix: { addr: 'fd00:1::', len: 64 } } } },
              { match: { op: '!=', left: { payload: { protocol: 'ip6', field: 'daddr' } }, right: { prefix: { addr: 'fd00:1::', len: 64 } } } },
              { match: { op: '!=', left: { payload: { protocol: 'ip6', field: 'daddr' } }, right: { prefix: { addr: 'ff00::', len: 8 } } } },
              { masquerade: null },
            ],
          },
        },
      },
    ]);
  });

  it('masqAdd pushes the commands of each subnet into the plan', () => {
    const p = new Plan();
    masqAdd('net1', [{ address: '10.1.2.5/24' }, { address: 'fd00:1::5/64' }], p);
    expect(p.nft.commands).toStrictEqual([...masqCommands('net1', '10.1.2.0/24'), ...masqCommands('net1', 'fd00:1::/64')]);
  });

  it('a hostile network name only ever lands in the comment string', () => {
    const evil = 'ZZQ"; flush ruleset; }\n{ "delete": {"table": {}}} #\'\\';
    const cmds = masqCommands(evil, '10.1.2.0/24');
    const t = new NftTransaction().push(...cmds);
    const text = t.json();
    const parsed = JSON.parse(text) as { nftables: unknown[] };
    expect(parsed.nftables).toStrictEqual([{ metainfo: { json_schema_version: 1 } }, ...cmds]);
    // collect every string value (and key) holding any part of the name
    const hits: string[] = [];
    const walk = (v: unknown, path: string) => {
      if (typeof v === 'string') {
        if (v.includes('ZZQ') || v.includes('"') || v.includes('}')) hits.push(path);
      } else if (Array.isArray(v)) {
        v.forEach((x, i) => walk(x, `${path}[${i}]`));
      } else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          expect(k).not.toContain('ZZQ');
          walk(x, `${path}.${k}`);
        }
      }
    };
    walk(parsed, '');
    expect(hits).toStrictEqual(['.nftables[4].add.rule.comment']);
    const rule = (parsed.nftables[4] as { add: { rule: { comment: string; chain: string } } }).add.rule;
    expect(rule.comment).toBe(`nhi-cni masquerade 10.1.2.0/24 network ${evil}`);
    expect(rule.chain).toMatch(/^masq_[0-9a-f]{16}$/);
    for (const c of cmds.slice(0, 3)) expect(JSON.stringify(c)).not.toContain('ZZQ');
  });
});

describe('masquerade names of long networks (fuzz finding: a 212+ character name broke the nft transaction)', () => {
  const long = (c: string, n = 255) => `n${c.repeat(n - 1)}`;

  it('keeps the comment of a short name as it always was', () => {
    expect(masqComment('net1', '10.1.2.0/24')).toBe('nhi-cni masquerade 10.1.2.0/24 network net1');
  });

  it.each([['10.1.2.0/24'], ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:0/112']])('fits nft\'s 128-byte comment for a 255-character name (%s)', (subnet) => {
    const c = masqComment(long('a'), subnet);
    expect(Buffer.byteLength(c)).toBeLessThanOrEqual(MAX_COMMENT);
    expect(c).toMatch(new RegExp(`^nhi-cni masquerade ${subnet.replace(/[.]/g, '\\.')} network naaa+~[0-9a-f]{8}$`));
  });

  it('tells apart long names that share their first 128 characters', () => {
    const a = `${long('a', 200)}x`;
    const b = `${long('a', 200)}y`;
    expect(masqComment(a, '10.1.2.0/24')).not.toBe(masqComment(b, '10.1.2.0/24'));
    expect(masqChain(a, '10.1.2.0/24')).not.toBe(masqChain(b, '10.1.2.0/24'));
  });

  it('names the chain by a hash whatever the name\'s length, so upgrades keep every chain', () => {
    expect(masqChain(long('a'), '10.1.2.0/24')).toMatch(/^masq_[0-9a-f]{16}$/);
    expect(masqChain('net1', '10.1.2.0/24')).toBe('masq_7f39217fa9c7efaa');
  });

  it('cuts a name that is not ASCII by bytes', () => {
    expect(Buffer.byteLength(masqComment('é'.repeat(200), '10.1.2.0/24'))).toBeLessThanOrEqual(MAX_COMMENT);
  });
});

describe('masquerade skips the cluster CIDRs (clusterCIDR)', () => {
  const exprOf = (cmds: ReturnType<typeof masqCommands>) => (cmds[3] as { add: { rule: { expr: unknown[] } } }).add.rule.expr;
  const daddrNot = (proto: string, addr: string, len: number) => ({ match: { op: '!=', left: { payload: { protocol: proto, field: 'daddr' } }, right: { prefix: { addr, len } } } });

  it('adds one "daddr not in" match per cluster CIDR of the subnet\'s family, before the masquerade', () => {
    const e4 = exprOf(masqCommands('net1', '10.244.1.0/24', ['10.244.0.0/16', 'fd00:10:244::/56', '10.96.0.0/12']));
    expect(e4.slice(3)).toStrictEqual([daddrNot('ip', '10.244.0.0', 16), daddrNot('ip', '10.96.0.0', 12), { masquerade: null }]);
    const e6 = exprOf(masqCommands('net1', 'fd00:10:244:1::/64', ['10.244.0.0/16', 'fd00:10:244::/56']));
    expect(e6.slice(3)).toStrictEqual([daddrNot('ip6', 'fd00:10:244::', 56), { masquerade: null }]);
  });

  it('without cluster CIDRs, the rule is the one it always was (and masqAdd passes them through)', () => {
    expect(exprOf(masqCommands('net1', '10.1.2.0/24', []))).toStrictEqual(exprOf(masqCommands('net1', '10.1.2.0/24')));
    const p = new Plan();
    masqAdd('net1', [{ address: '10.244.1.5/24' }], p, ['10.244.0.0/16']);
    expect(exprOf(p.nft.commands as ReturnType<typeof masqCommands>)).toContainEqual(daddrNot('ip', '10.244.0.0', 16));
  });
});
