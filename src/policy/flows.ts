// Flow visibility: denied (and, in audit mode, would-be-denied) connections
// as events, from the text of `nft monitor trace`. The compiler marks those
// packets with `meta nftrace set 1` (compile/expr.ts TRACE) on their deny or
// audit path only, so every traced packet of our table is one of them; the
// kernel sends trace events only while a monitor listens, and in any network
// namespace (unlike the kernel log of `log` rules). Pure: lines in, events out.
//
// nft 1.0.6 prints trace events as text only (`-j` is ignored), one line each:
//   trace id 9ee29e7f inet nhi_policy pr_ab12 packet: iif "veth1" ip saddr 10.1.0.2 ip daddr 10.1.0.3 ... tcp sport 4711 tcp dport 80 ...
//   trace id 9ee29e7f inet nhi_policy pr_ab12 rule counter packets 0 bytes 0 meta nftrace set 1 (verdict continue)
//   trace id 9ee29e7f inet nhi_policy pr_ab12 rule drop (verdict drop)
//   trace id 1f00aa01 inet nhi_policy forward policy accept
import { parseIp, formatIp } from '../net/ip.js';

export type FlowVerdict = 'denied' | 'audit';

/** One traced packet of a denied or audited connection. */
export interface FlowEvent {
  /** The trace id nft gave the packet. */
  id: string;
  verdict: FlowVerdict;
  /** The profile chain (pr_…) where the packet was marked: whose policy decided. */
  chain: string;
  proto: string;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  iif?: string;
  oif?: string;
  /** Policies named by the log prefix of the rule that marked it (a CiliumNetworkPolicy deny rule), "ns/name". */
  policies: string[];
}

const LINE = /^trace id ([0-9a-f]+) (\S+) (\S+) (\S+) (packet:|rule|verdict|policy|unknown)\s?(.*)$/;
const FIELD = (name: string) => new RegExp(`(?:^| )${name} ("[^"]*"|\\S+)`);
const unquote = (s: string) => (s.startsWith('"') ? s.slice(1, -1) : s);

interface Pending {
  table: string;
  chain?: string;
  packet?: string;
  verdict?: 'drop' | 'accept';
  policies: string[];
}

/** A bare address as nft prints it, canonical; undefined when it is not one. */
function addr(text: string | undefined): string | undefined {
  const a = text === undefined ? undefined : parseIp(text);
  return a ? formatIp(a) : undefined;
}

function port(packet: string, proto: string, field: 'sport' | 'dport'): number | undefined {
  const m = FIELD(`${proto} ${field}`).exec(packet);
  const n = m ? Number(m[1]) : NaN;
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
}

/**
 * Reads trace lines of one table and yields a FlowEvent per traced packet,
 * once its verdict is known (a drop, an accept, or `flush()` for a packet
 * whose trace ended without one: an audited packet passed).
 */
export class FlowTracer {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly table: string) {}

  /** One line of `nft monitor trace`; the events it completes. */
  feed(line: string): FlowEvent[] {
    const m = LINE.exec(line.trimEnd());
    if (!m) return [];
    const [, id, , table, chain, kind, rest] = m as unknown as [string, string, string, string, string, string, string];
    if (table !== this.table) return [];
    let p = this.pending.get(id);
    if (!p) {
      // Bounded: a monitor that misses the end of many traces must not grow without limit.
      if (this.pending.size >= 4096) this.pending.delete(this.pending.keys().next().value!);
      this.pending.set(id, (p = { table, policies: [] }));
    }
    if (kind === 'packet:') {
      p.packet ??= rest;
      p.chain ??= chain;
      return [];
    }
    if (chain.startsWith('pr_')) p.chain ??= chain;
    const prefix = /log prefix "([^"]*)"/.exec(rest)?.[1];
    const pol = prefix ? /pol=(\S+?):?(?:\s|$)/.exec(prefix)?.[1] : undefined;
    if (pol) for (const x of pol.split('+')) if (/^[a-z0-9.-]+\/[A-Za-z0-9._#-]+$/.test(x) && !p.policies.includes(x)) p.policies.push(x);
    const v = /\(verdict (drop|accept)\)$|^(?:verdict |policy )?(drop|accept)$/.exec(rest.trim());
    const verdict = (v?.[1] ?? v?.[2]) as 'drop' | 'accept' | undefined;
    if (!verdict) return [];
    p.verdict = verdict;
    return this.finish(id);
  }

  /** Packets whose trace ended without a drop or accept: they passed (audit). */
  flush(): FlowEvent[] {
    return [...this.pending.keys()].flatMap((id) => this.finish(id));
  }

  private finish(id: string): FlowEvent[] {
    const p = this.pending.get(id)!;
    this.pending.delete(id);
    if (!p.packet || !p.chain) return [];
    const v6 = / ip6 saddr /.test(` ${p.packet}`);
    const src = addr(FIELD(v6 ? 'ip6 saddr' : 'ip saddr').exec(p.packet)?.[1]);
    const dst = addr(FIELD(v6 ? 'ip6 daddr' : 'ip daddr').exec(p.packet)?.[1]);
    if (!src || !dst) return [];
    const proto = FIELD(v6 ? 'ip6 nexthdr' : 'ip protocol').exec(p.packet)?.[1] ?? 'unknown';
    const e: FlowEvent = { id, verdict: p.verdict === 'drop' ? 'denied' : 'audit', chain: p.chain, proto, src, dst, policies: p.policies };
    const sport = port(p.packet, proto, 'sport');
    const dport = port(p.packet, proto, 'dport');
    if (sport !== undefined) e.sport = sport;
    if (dport !== undefined) e.dport = dport;
    const iif = FIELD('iif').exec(p.packet)?.[1];
    const oif = FIELD('oif').exec(p.packet)?.[1];
    if (iif) e.iif = unquote(iif);
    if (oif) e.oif = unquote(oif);
    return [e];
  }
}
