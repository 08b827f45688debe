// The address sets the rules look up: named by what they hold, filled from
// the pod groups, and recorded in each group's membership so a pod's ADD can
// add its own elements without a compile.
import type { Peer, Policy, PortRule } from '../model.js';
import { memberOf, type CompileContext } from './context.js';
import { addrType } from './expr.js';
import { inBlock, peerSelectsPod, type PodGroup, type PodPeer } from './groups.js';
import { byText, contentKey } from './names.js';
import { famOf, type Fam } from './types.js';

/**
 * The set of addresses of local pods a pod peer selects. Named by what the
 * peer means, not by the policy it is in: policies that name the same peers
 * share one set, so a pod's ADD adds one element where many policies agree.
 */
export function peerSet(ctx: CompileContext, policy: Policy, peer: PodPeer, fam: Fam): string {
  const key = ctx.peerKey(policy, peer);
  const name = `p_${ctx.hash(key)}_${fam}`;
  if (!ctx.sets.has(name)) {
    let groups = ctx.selected.get(key);
    if (!groups) ctx.selected.set(key, (groups = ctx.groups.filter((g) => peerSelectsPod(policy, peer, g.identity))));
    for (const g of groups) memberOf(ctx, g.key).sets.push([name]);
    ctx.sets.set(name, { type: addrType(fam), elems: [...new Set(groups.flatMap((g) => g.ips[fam]))] });
  }
  return name;
}

/**
 * (address . protocol . port) of the node's pods that the peer matches and
 * that have the named port. An ipBlock peer matches pods by address (an
 * ipBlock matches pod addresses too); a named port never matches a non-pod.
 * Named, like peerSet, by meaning: peer, protocol and port name.
 */
export function namedPortSet(ctx: CompileContext, policy: Policy, peer: Peer | undefined, pr: PortRule, fam: Fam): string {
  const who = peer === undefined ? null : peer.kind === 'pods' ? ctx.peerKey(policy, peer) : ['cidr', peer.cidr, [...peer.except].sort(byText)];
  const name = `n_${ctx.hash(contentKey(who, pr.protocol, pr.port))}_${fam}`;
  if (ctx.sets.has(name)) return name;
  const proto = pr.protocol.toLowerCase();
  const elems: unknown[] = [];
  for (const g of ctx.groups) {
    if (peer?.kind === 'pods' && !peerSelectsPod(policy, peer, g.identity)) continue;
    const port = g.identity.ports.find((x) => x.name === pr.port && x.protocol === pr.protocol);
    if (!port) continue;
    if (peer?.kind !== 'cidr') {
      memberOf(ctx, g.key).sets.push([name, proto, port.containerPort]);
      for (const ip of g.ips[fam]) elems.push({ concat: [ip, proto, port.containerPort] });
      continue;
    }
    // An ipBlock decides by address, not by group: such a group cannot take the fast path.
    memberOf(ctx, g.key).ipDependent = true;
    for (const pod of g.pods) {
      for (const ip of pod.ips) {
        if (famOf(ip) !== fam || !inBlock(peer, ip)) continue;
        const elem = { concat: [ip, proto, port.containerPort] };
        elems.push(elem);
        (ctx.podElems[pod.id] ??= []).push([name, JSON.stringify(elem)]);
      }
    }
  }
  ctx.sets.set(name, { type: [addrType(fam), 'inet_proto', 'inet_service'], elems });
  return name;
}

/** The addresses of one group of alike pods (w_), for the log rule naming its workload. */
export function workloadSet(ctx: CompileContext, g: PodGroup, fam: Fam): string {
  const name = `w_${ctx.hash(g.key)}_${fam}`;
  if (!ctx.sets.has(name)) {
    memberOf(ctx, g.key).sets.push([name]);
    ctx.sets.set(name, { type: addrType(fam), elems: [...g.ips[fam]] });
  }
  return name;
}
