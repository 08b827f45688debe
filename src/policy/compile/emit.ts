// The whole desired state as one nft transaction, and as the Desired record
// the next compile's delta() starts from.
import type { NftCommand } from '../../sys/nft.js';
import type { CompileContext } from './context.js';
import { addrField, jump, match, vmap } from './expr.js';
import { byText } from './names.js';
import type { Placed } from './profiles.js';
import { IPV6_LINK_CONTROL, L7_EGRESS_REDIRECTED, L7_REDIRECTED, L7_SERVICE_EGRESS, l7DeliveredMatch, l7RedirectedMatch, l7ServiceEgressMatch, l7ServiceEgressSetType, l7RedirectedSetType, POLICY_TABLE, setType, TABLE, VERDICT_MAPS } from './table.js';
import type { CompiledNames, Desired } from './types.js';

/**
 * The base chains, which every packet passes: established connections
 * first, then the source pod's egress profile and the destination pod's
 * ingress profile, each found by one verdict-map lookup.
 */
function baseChains(): [string, string, unknown[][]][] {
  const ct = match({ ct: { key: 'state' } }, ['established', 'related'], 'in');
  // IPv6 finds neighbours and routers with ICMPv6 (and joins the solicited-
  // node groups with MLD), which br_netfilter hands to these hooks like any
  // packet: under a default-deny egress it would be dropped and no IPv6
  // connection could start. Link-local control traffic, accepted first; no
  // data passes through it. (IPv4's ARP is not IP and never gets here.)
  const ndp = [match({ payload: { protocol: 'icmpv6', field: 'type' } }, { set: IPV6_LINK_CONTROL }), { accept: null }];
  return [
    ['forward', 'forward', [
      [ct, { accept: null }],
      ndp,
      [vmap(addrField(4, 'saddr'), 'eg4')],
      [vmap(addrField(6, 'saddr'), 'eg6')],
      [vmap(addrField(4, 'daddr'), 'in4')],
      [vmap(addrField(6, 'daddr'), 'in6')],
    ]],
    ['input', 'input', [
      [ct, { accept: null }],
      ndp,
      // A connection the L7 redirect (table inet nhi_l7) took to the agent's proxy: its
      // ORIGINAL destination is a served pod port, or its original source and port a pod's
      // egress HTTP rules cover; the proxy judges source and destination.
      ...([4, 6] as const).map((f) => [...l7RedirectedMatch(f, L7_REDIRECTED[f]), { accept: null }]),
      ...([4, 6] as const).map((f) => [...l7RedirectedMatch(f, L7_EGRESS_REDIRECTED[f], 'saddr'), { accept: null }]),
      // ...or a connection a Service DNATed to such a pod port, routed to the proxy on the pod's address.
      ...([4, 6] as const).map((f) => [...l7DeliveredMatch(f, L7_REDIRECTED[f]), { accept: null }]),
      // ...or a pod's connection a Service DNATed to another pod, delivered to the proxy on that pod's address for the source's egress rules.
      ...([4, 6] as const).map((f) => [...l7ServiceEgressMatch(f, L7_SERVICE_EGRESS[f]), { accept: null }]),
      [vmap(addrField(4, 'saddr'), 'eg4')],
      [vmap(addrField(6, 'saddr'), 'eg6')],
    ]],
  ];
}

/**
 * The whole desired state as one transaction: objects are declared (a no-op
 * when they exist), sets, maps and profile chains flushed and refilled, and
 * chains and sets the previous compile made but this one does not deleted.
 * Named counters are never flushed, so per-policy counts survive.
 */
export function fullTransaction(ctx: CompileContext, placed: Placed, previous: CompiledNames): NftCommand[] {
  const cmds: NftCommand[] = [{ add: { table: { family: TABLE.family, name: POLICY_TABLE } } }];
  for (const name of VERDICT_MAPS) {
    cmds.push({ add: { map: { ...TABLE, name, type: name.endsWith('4') ? 'ipv4_addr' : 'ipv6_addr', map: 'verdict' } } });
    cmds.push({ flush: { map: { ...TABLE, name } } });
  }
  // Declared, not flushed: the L7 controller's (see L7_REDIRECTED).
  for (const f of [4, 6] as const) {
    cmds.push({ add: { set: { ...TABLE, name: L7_REDIRECTED[f], type: l7RedirectedSetType(f) } } });
    cmds.push({ add: { set: { ...TABLE, name: L7_EGRESS_REDIRECTED[f], type: l7RedirectedSetType(f) } } });
    cmds.push({ add: { set: { ...TABLE, name: L7_SERVICE_EGRESS[f], type: l7ServiceEgressSetType(f) } } });
  }
  for (const c of [...ctx.counters].sort()) cmds.push({ add: { counter: { ...TABLE, name: c } } });
  for (const [name, s] of [...ctx.sets].sort(([x], [y]) => byText(x, y))) {
    cmds.push({ add: { set: { ...TABLE, name, type: s.type } } });
    cmds.push({ flush: { set: { ...TABLE, name } } });
    if (s.elems.length) cmds.push({ add: { element: { ...TABLE, name, elem: s.elems } } });
  }
  for (const [name, rules] of [...ctx.chains].sort(([x], [y]) => byText(x, y))) {
    cmds.push({ add: { chain: { ...TABLE, name } } });
    cmds.push({ flush: { chain: { ...TABLE, name } } });
    for (const expr of rules) cmds.push({ add: { rule: { ...TABLE, chain: name, expr } } });
  }
  // Base chains last, once everything they reference exists.
  for (const [name, hook, rules] of baseChains()) {
    cmds.push({ add: { chain: { ...TABLE, name, type: 'filter', hook, prio: 0, policy: 'accept' } } });
    cmds.push({ flush: { chain: { ...TABLE, name } } });
    for (const expr of rules) cmds.push({ add: { rule: { ...TABLE, chain: name, expr } } });
  }
  for (const [name, entries] of Object.entries(placed.vmap)) {
    if (entries.length) cmds.push({ add: { element: { ...TABLE, name, elem: entries.map(([ip, chain]) => [ip, jump(chain)]) } } });
  }
  // What the previous compile made and this one does not: added first so
  // that the delete cannot fail on an object that is already gone.
  for (const name of previous.chains.filter((c) => !ctx.chains.has(c))) {
    cmds.push({ add: { chain: { ...TABLE, name } } }, { delete: { chain: { ...TABLE, name } } });
  }
  for (const name of previous.sets.filter((s) => !ctx.sets.has(s))) {
    cmds.push({ add: { set: { ...TABLE, name, type: setType(name) } } }, { delete: { set: { ...TABLE, name } } });
  }
  return cmds;
}

/** What the compile wants in the kernel, in the form the state keeps (elements as JSON). */
export function desiredState(ctx: CompileContext, placed: Placed): Desired {
  return {
    sets: Object.fromEntries([...ctx.sets].map(([n, st]) => [n, { type: st.type, elems: st.elems.map((e) => JSON.stringify(e)) }])),
    chains: [...ctx.chains.keys()].sort(),
    counters: [...ctx.counters].sort(),
    vmaps: Object.fromEntries(Object.entries(placed.vmap).map(([m, entries]) => [m, Object.fromEntries(entries)])),
  };
}
