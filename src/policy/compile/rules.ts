// One policy rule as nft expressions.
import { parseCidr } from '../../net/ip.js';
import type { Identity, Peer, Policy, PortRule, Rule } from '../model.js';
import type { CompileContext } from './context.js';
import { addrField, dport, l4proto, match, prefix } from './expr.js';
import { namedPortSet, peerSet } from './sets.js';
import type { Direction, Fam } from './types.js';

/**
 * The expressions of one rule, as alternatives (each an nft rule): every
 * (peer, port) pair, per address family where the peer needs one.
 */
export function ruleAlternatives(ctx: CompileContext, policy: Policy, rule: Rule, dir: Direction, self: Identity): unknown[][] {
  const field = dir === 'ingress' ? 'saddr' : 'daddr';
  const peers: (Peer | undefined)[] = rule.peers ?? [undefined];
  const ports: (PortRule | undefined)[] = rule.ports ?? [undefined];
  const out: unknown[][] = [];
  for (const peer of peers) {
    const fams: (Fam | undefined)[] = peer === undefined ? [undefined] : peer.kind === 'cidr' ? [parseCidr(peer.cidr)!.ip.family === 4 ? 4 : 6] : [4, 6];
    for (const fam of fams) {
      for (const pr of ports) {
        // A clause with HTTP rules (parsed only for the L7 proxy) is never an
        // L4 allow: the only way to its port is the redirect to the proxy,
        // which reaches the node through the input hook, not this profile.
        // A connection that escapes the redirect (one a Service's DNAT took
        // first, docs/l7.md) meets a closed port here, not an open one.
        if (pr?.http !== undefined) continue;
        const exprs: unknown[] = [];
        const named = pr !== undefined && typeof pr.port === 'string';
        if (named && dir === 'egress') {
          // Resolved on each destination pod: one concatenated lookup of
          // (address . protocol . port) holding only the matching pods.
          for (const f of fam === undefined ? ([4, 6] as Fam[]) : [fam]) {
            const set = namedPortSet(ctx, policy, peer, pr!, f);
            const e: unknown[] = [];
            if (peer?.kind === 'pods') e.push(match(addrField(f, field), `@${peerSet(ctx, policy, peer, f)}`));
            e.push(match({ concat: [addrField(f, 'daddr'), l4proto, dport] }, `@${set}`));
            out.push(e);
          }
          continue;
        }
        if (peer?.kind === 'pods') exprs.push(match(addrField(fam!, field), `@${peerSet(ctx, policy, peer, fam!)}`));
        if (peer?.kind === 'cidr') {
          exprs.push(match(addrField(fam!, field), prefix(peer.cidr)));
          for (const x of peer.except) exprs.push(match(addrField(fam!, field), prefix(x), '!='));
        }
        if (pr) {
          let port: number | { range: [number, number] } | undefined;
          if (named) {
            // Ingress: resolved on the selected pod itself (the destination).
            const p = self.ports.find((x) => x.name === pr.port && x.protocol === pr.protocol);
            if (!p) continue; // this pod has no such port: the clause matches nothing
            port = p.containerPort;
          } else if (typeof pr.port === 'number') {
            port = pr.endPort !== undefined ? { range: [pr.port, pr.endPort] } : pr.port;
          }
          exprs.push(match(l4proto, pr.protocol.toLowerCase()));
          if (port !== undefined) exprs.push(match(dport, port));
        }
        out.push(exprs);
      }
    }
  }
  return out;
}
