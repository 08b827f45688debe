// Applying only what changed: between two compiles (delta), or for pods
// coming and going under unchanged policies without a compile (fastDelta),
// and what the kernel holds, worked out from the pods (deriveDesired).
import type { NftCommand } from '../../sys/nft.js';
import { jump } from './expr.js';
import { groupKey } from './groups.js';
import { memoHash } from './names.js';
import { setType, TABLE, VERDICT_MAPS, type VerdictMap } from './table.js';
import { famOf, type ClassEntry, type Compiled, type CompiledIndex, type Desired, type LocalPod } from './types.js';

const parse = (e: string): unknown => JSON.parse(e);

/**
 * Only what changed between two compiles of the same policies: new counters,
 * sets and chains; added and removed set and map elements; removed chains and
 * sets. A pod's ADD thus costs its own elements (and a profile chain the first
 * time a combination of policies appears), not a rewrite of the node's state.
 * Order: create, then re-point the maps, then delete what nothing uses.
 */
export function delta(prev: Desired, next: Compiled): NftCommand[] {
  const d = next.desired;
  const cmds: NftCommand[] = [];
  for (const c of d.counters) if (!prev.counters.includes(c)) cmds.push({ add: { counter: { ...TABLE, name: c } } });
  for (const [name, st] of Object.entries(d.sets)) {
    const old = prev.sets[name];
    if (!old) {
      cmds.push({ add: { set: { ...TABLE, name, type: st.type } } });
      if (st.elems.length) cmds.push({ add: { element: { ...TABLE, name, elem: st.elems.map(parse) } } });
      continue;
    }
    const had = new Set(old.elems);
    const has = new Set(st.elems);
    const added = st.elems.filter((e) => !had.has(e));
    const removed = old.elems.filter((e) => !has.has(e));
    if (added.length) cmds.push({ add: { element: { ...TABLE, name, elem: added.map(parse) } } });
    if (removed.length) cmds.push({ delete: { element: { ...TABLE, name, elem: removed.map(parse) } } });
  }
  const prevChains = new Set(prev.chains);
  for (const name of d.chains) {
    if (prevChains.has(name)) continue;
    cmds.push({ add: { chain: { ...TABLE, name } } });
    for (const expr of next.chainRules[name] ?? []) cmds.push({ add: { rule: { ...TABLE, chain: name, expr } } });
  }
  for (const [map, elems] of Object.entries(d.vmaps)) {
    const old = prev.vmaps[map] ?? {};
    const gone = Object.keys(old).filter((ip) => elems[ip] !== old[ip]);
    const come = Object.entries(elems).filter(([ip, chain]) => old[ip] !== chain);
    if (gone.length) cmds.push({ delete: { element: { ...TABLE, name: map, elem: gone } } });
    if (come.length) cmds.push({ add: { element: { ...TABLE, name: map, elem: come.map(([ip, chain]) => [ip, jump(chain)]) } } });
  }
  const nextChains = new Set(d.chains);
  for (const name of prev.chains) if (!nextChains.has(name)) cmds.push({ delete: { chain: { ...TABLE, name } } });
  for (const name of Object.keys(prev.sets)) if (!d.sets[name]) cmds.push({ delete: { set: { ...TABLE, name } } });
  return cmds;
}

/** The set elements a pod's addresses give under a group entry: [set, element as JSON]. */
export function classElems(e: ClassEntry, ip: string): [string, string][] {
  const fam = `_${famOf(ip)}`;
  const out: [string, string][] = [];
  for (const [name, proto, port] of e.sets) {
    if (name.endsWith(fam)) out.push([name, JSON.stringify(proto ? { concat: [ip, proto, port] } : ip)]);
  }
  return out;
}

/** The verdict-map entries [map, chain] a pod's address gets under its group's entry. */
export function mapEntries(e: ClassEntry, ip: string): [string, string][] {
  const f = famOf(ip);
  const out: [VerdictMap, string][] = [];
  if (e.ingress) out.push([`in${f}`, e.ingress]);
  if (e.egress) out.push([`eg${f}`, e.egress]);
  return out;
}

/**
 * What the kernel holds after the compile `k` and the fast deltas since,
 * worked out from the pods: a pod's elements and map entries follow from its
 * group's entry (and its own address-dependent elements). Undefined when a
 * pod's group is not in the index: the pods and the index do not belong
 * together, and only a full apply is safe.
 */
export function deriveDesired(pods: LocalPod[], k: CompiledIndex): Desired | undefined {
  const hash = memoHash();
  const sets: Desired['sets'] = {};
  for (const name of k.names.sets) sets[name] = { type: setType(name), elems: [] };
  const vmaps: Desired['vmaps'] = Object.fromEntries(VERDICT_MAPS.map((m) => [m, {}]));
  for (const p of pods) {
    if (!p.identity) continue;
    const e = k.classIndex[groupKey({ ...p, identity: p.identity }, k.labelKeys, hash)];
    if (!e) return undefined;
    for (const ip of p.ips) {
      for (const [name, elem] of classElems(e, ip)) {
        const st = sets[name];
        if (!st) return undefined;
        st.elems.push(elem);
      }
      for (const [map, chain] of mapEntries(e, ip)) vmaps[map]![ip] = chain;
    }
    for (const [name, elem] of k.podElems[p.id] ?? []) {
      const st = sets[name];
      if (!st) return undefined;
      st.elems.push(elem);
    }
  }
  return { sets, chains: k.names.chains, counters: k.desired.counters, vmaps };
}

/**
 * The change for pods coming and going under unchanged policies, without a
 * compile and without the node's other pods: each pod's group (classKey) says
 * which sets its addresses join and which profile chains its map entries
 * point at. Undefined when a pod's group is new, or depends on addresses
 * (ipBlock named ports): compile instead.
 */
export function fastDelta(k: Pick<CompiledIndex, 'classIndex' | 'names' | 'labelKeys'>, removed: LocalPod[], added: LocalPod[]): NftCommand[] | undefined {
  const known = new Set(k.names.sets);
  const hash = memoHash();
  /** set -> element -> +1 (added) / -1 (removed); map -> address -> [old chain, new chain]. */
  const elems = new Map<string, Map<string, number>>();
  const maps = new Map<string, Map<string, [string | undefined, string | undefined]>>();
  const walk = (pods: LocalPod[], sign: 1 | -1): boolean => {
    for (const p of pods) {
      if (!p.identity) continue;
      const e = k.classIndex[groupKey({ ...p, identity: p.identity }, k.labelKeys, hash)];
      if (!e || e.ipDependent) return false;
      for (const ip of p.ips) {
        for (const [name, elem] of classElems(e, ip)) {
          if (!known.has(name)) return false;
          let m = elems.get(name);
          if (!m) elems.set(name, (m = new Map()));
          m.set(elem, (m.get(elem) ?? 0) + sign);
        }
        for (const [name, chain] of mapEntries(e, ip)) {
          let m = maps.get(name);
          if (!m) maps.set(name, (m = new Map()));
          const v = m.get(ip) ?? [undefined, undefined];
          v[sign === -1 ? 0 : 1] = chain;
          m.set(ip, v);
        }
      }
    }
    return true;
  };
  if (!walk(removed, -1) || !walk(added, 1)) return undefined;
  const cmds: NftCommand[] = [];
  for (const [name, m] of elems) {
    const add = [...m].filter(([, n]) => n > 0).map(([e]) => parse(e));
    const del = [...m].filter(([, n]) => n < 0).map(([e]) => parse(e));
    if (add.length) cmds.push({ add: { element: { ...TABLE, name, elem: add } } });
    if (del.length) cmds.push({ delete: { element: { ...TABLE, name, elem: del } } });
  }
  for (const [name, m] of maps) {
    const gone = [...m].filter(([, [was, now]]) => was !== undefined && was !== now).map(([ip]) => ip);
    const come = [...m].filter(([, [was, now]]) => now !== undefined && was !== now).map(([ip, [, now]]) => [ip, jump(now!)]);
    if (gone.length) cmds.push({ delete: { element: { ...TABLE, name, elem: gone } } });
    if (come.length) cmds.push({ add: { element: { ...TABLE, name, elem: come } } });
  }
  return cmds;
}
