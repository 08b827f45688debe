// The trace reader behind `nhi-cni observe`: lines as nft 1.0.6 prints them.
import { describe, expect, it } from 'vitest';
import { FlowTracer } from '../../src/policy/flows.js';

const T = 'nhi_policy';
const denied4 = [
  'trace id 60d51faa inet nhi_policy pr_0123456789ab packet: iif "nhiv-1" oif "nhiv-2" ether saddr 02:00:00:00:00:01 ip saddr 10.1.0.2 ip daddr 10.1.0.3 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 63396 ip protocol tcp ip length 60 tcp sport 59562 tcp dport 5432 tcp flags == syn tcp window 65495 ',
  'trace id 60d51faa inet nhi_policy pr_0123456789ab rule counter name "d_aaaaaaaaaaaa" meta nftrace set 1 (verdict continue)',
  'trace id 60d51faa inet nhi_policy pr_0123456789ab rule ip saddr @w_bbbbbbbbbbbb_4 limit rate 10/second burst 20 packets log prefix "nhi-deny eg wl=payments/reporting pol=payments/default-deny: " (verdict continue)',
  'trace id 60d51faa inet nhi_policy pr_0123456789ab rule drop (verdict drop)',
];

describe('FlowTracer', () => {
  it('turns a denied packet\'s trace into one event with addresses, ports, interfaces and the policies its log names', () => {
    const t = new FlowTracer(T);
    const events = denied4.flatMap((l) => t.feed(l));
    expect(events).toStrictEqual([{
      id: '60d51faa', verdict: 'denied', chain: 'pr_0123456789ab', proto: 'tcp', src: '10.1.0.2', dst: '10.1.0.3',
      sport: 59562, dport: 5432, iif: 'nhiv-1', oif: 'nhiv-2', policies: ['payments/default-deny'],
    }]);
    expect(t.flush()).toStrictEqual([]);
  });

  it('reads IPv6 and UDP, and events of interleaved traces apart', () => {
    const t = new FlowTracer(T);
    const lines = [
      'trace id 00000001 inet nhi_policy pr_aaaaaaaaaaaa packet: iif "v1" ip6 saddr fd00:0:0:0::2 ip6 daddr fd00::3 ip6 dscp cs0 ip6 ecn not-ect ip6 hoplimit 64 ip6 flowlabel 0 ip6 nexthdr udp ip6 length 9 udp sport 5353 udp dport 53 udp length 9',
      denied4[0]!,
      'trace id 00000001 inet nhi_policy pr_aaaaaaaaaaaa rule drop (verdict drop)',
      denied4[3]!,
    ];
    const events = lines.flatMap((l) => t.feed(l));
    expect(events.map((e) => [e.id, e.src, e.dst, e.proto, e.dport])).toStrictEqual([
      ['00000001', 'fd00::2', 'fd00::3', 'udp', 53],
      ['60d51faa', '10.1.0.2', '10.1.0.3', 'tcp', 5432],
    ]);
  });

  it('an audited packet passes: its trace ends without a drop and flush() reports it as audit', () => {
    const t = new FlowTracer(T);
    expect(t.feed(denied4[0]!)).toStrictEqual([]);
    expect(t.feed('trace id 60d51faa inet nhi_policy pr_0123456789ab rule meta nftrace set 1 (verdict continue)')).toStrictEqual([]);
    expect(t.feed('trace id 60d51faa inet nhi_policy pr_0123456789ab rule return (verdict return)')).toStrictEqual([]);
    expect(t.flush().map((e) => e.verdict)).toStrictEqual(['audit']);
    const u = new FlowTracer(T);
    u.feed(denied4[0]!);
    expect(u.feed('trace id 60d51faa inet nhi_policy forward policy accept').map((e) => e.verdict)).toStrictEqual(['audit']);
  });

  it('ignores other tables, malformed lines and hostile text in a log prefix', () => {
    const t = new FlowTracer(T);
    expect(t.feed(denied4[0]!.replace('nhi_policy', 'filter'))).toStrictEqual([]);
    expect(t.feed('garbage')).toStrictEqual([]);
    expect(t.feed('trace id zz inet nhi_policy x packet: ip saddr 1.2.3.4')).toStrictEqual([]);
    t.feed(denied4[0]!);
    const [e] = t.feed('trace id 60d51faa inet nhi_policy pr_0123456789ab rule log prefix "nhi-deny pol=../../etc;rm: " drop (verdict drop)');
    expect(e!.policies).toStrictEqual([]);
    // A packet line without addresses gives no event.
    t.feed('trace id 00000009 inet nhi_policy pr_0123456789ab packet: iif "v1" arp htype 1');
    expect(t.feed('trace id 00000009 inet nhi_policy pr_0123456789ab rule drop (verdict drop)')).toStrictEqual([]);
  });

  it('keeps at most 4096 unfinished traces', () => {
    const t = new FlowTracer(T);
    for (let i = 0; i < 5000; i++) t.feed(denied4[0]!.replace('60d51faa', i.toString(16).padStart(8, '0')));
    expect(t.flush()).toHaveLength(4096);
  });
});
