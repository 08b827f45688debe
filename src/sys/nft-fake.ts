// An in-memory nftables for unit tests: an NftRunner that applies
// transactions with the kernel's semantics as nft 1.0.6 on Linux 6.x shows
// them (test/ns/nft-fake.test.ts runs the same transactions through the real
// nft and compares the listings), and lists tables in `nft -j list table`'s
// shape. What it models:
//   add        creates, or leaves alone what exists; a rule is appended; an
//              existing set or map re-added with another type, a map element
//              re-added with other data, or a regular chain re-added as a
//              base chain (or a base chain with another hook) fail
//              (File exists / Operation not supported); a base chain re-added
//              with another policy takes it
//   create     as add, but anything that exists fails (File exists)
//   insert     prepends a rule (before the rule `handle` when given)
//   replace    the rule `handle`
//   delete     what is missing fails (No such file or directory); a chain that
//              a rule or verdict map element jumps to, a set or map a rule
//              looks up, a counter a rule or map element names fail (Device or
//              resource busy); deleting a chain takes its rules with it
//   flush      a chain's rules, a set's or map's elements, a table's rules (not
//              its elements)
//   references a rule's @set, jump/goto target and named counter, a verdict
//              map element's target and a counter map element's counter must
//              exist (No such file or directory)
//   elements   keys are compared by value (IPv6 text forms are one key); keys
//              of the types ipv4_addr, ipv6_addr, ether_addr, ifname,
//              inet_proto, inet_service are checked against the set's type;
//              an element may carry a comment ({elem: {val, comment}}), listed
//              back so; a set with a `size` refuses an element beyond it
//              (Argument list too long)
//   atomicity  a transaction that fails changes nothing
//   handles    one counter per table, in command order; an anonymous set in a
//              rule uses one, as in the kernel
// What it does not: expressions are kept as given, not type-checked (the
// kernel refuses `meta iifname @ipv4_set`, the fake does not) nor normalised
// as nft lists them; no interval sets, timeouts, flowtables, objects other
// than named counters, `reset` or `destroy`; counters never count.
import { formatIp, parseIp } from '../net/ip.js';
import type { ExecResult } from './exec.js';
import type { Family, NftCommand, NftObject, NftRunner, NftTransaction } from './nft.js';

// nft JSON is loosely typed; every shape met is checked where it matters.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

export interface FakeRule { handle: number; expr: J[]; comment?: string }
export interface FakeChain {
  name: string;
  handle: number;
  type?: string;
  hook?: string;
  prio?: number;
  policy?: string;
  rules: FakeRule[];
}
export interface FakeElement { key: J; value?: J; comment?: string }
export interface FakeSet {
  name: string;
  handle: number;
  kind: 'set' | 'map';
  type: J;
  /** The data type of a map ('verdict', 'counter', ...). */
  map?: string;
  flags?: string[];
  /** The set's maximum number of elements: an element beyond it fails the transaction (E2BIG), as in nft. */
  size?: number;
  /** By normalised key, in insertion order. */
  elems: Map<string, FakeElement>;
}
export interface FakeTable {
  family: Family;
  name: string;
  handle: number;
  nextHandle: number;
  chains: Map<string, FakeChain>;
  sets: Map<string, FakeSet>;
  counters: Map<string, { handle: number }>;
}

/** An error as nft reports it, `kernel` for the ones that come back from the kernel ("Could not process rule"). */
export class NftFakeError extends Error {
  constructor(readonly reason: 'ENOENT' | 'EEXIST' | 'EBUSY' | 'EOPNOTSUPP' | 'EINVAL' | 'E2BIG', detail: string, readonly kernel = true) {
    super(`${STRERROR[reason]} (${detail})`);
  }

  /** The stderr nft prints for it (the detail is the fake's own addition). */
  get stderr(): string {
    return `internal:0:0-0: Error: ${this.kernel ? 'Could not process rule: ' : ''}${this.message}\n`;
  }
}
const STRERROR = {
  ENOENT: 'No such file or directory', EEXIST: 'File exists', EBUSY: 'Device or resource busy',
  EOPNOTSUPP: 'Operation not supported', EINVAL: 'Invalid argument', E2BIG: 'Argument list too long',
} as const;

const key = (family: string, name: string) => `${family} ${name}`;

/** An element key's identity: IP addresses by value, the rest as written. */
function atom(v: J): string {
  if (typeof v === 'string') {
    const ip = parseIp(v);
    return ip ? `ip${ip.family}:${ip.value}` : `s:${v}`;
  }
  if (typeof v === 'number') return `n:${v}`;
  throw new NftFakeError('EINVAL', `unsupported element ${JSON.stringify(v)}`, false);
}
/** The key as nft lists it: IP addresses in their canonical text. */
function canonical(k: J): J {
  const one = (v: J) => {
    const ip = typeof v === 'string' ? parseIp(v) : undefined;
    return ip ? formatIp(ip) : v;
  };
  return Array.isArray(k?.concat) ? { concat: k.concat.map(one) } : one(k);
}
/** An element key's identity in a set: what two keys nft takes as one have in common. */
export function elementKey(k: J): string {
  const parts: J[] = Array.isArray(k?.concat) ? k.concat : Array.isArray(k) ? k : [k];
  return parts.map(atom).join('|');
}

const IFNAME = /^[^/\s]{1,15}$/;
const CHECKS: Record<string, (v: J) => boolean> = {
  ipv4_addr: (v) => typeof v === 'string' && parseIp(v)?.family === 4,
  ipv6_addr: (v) => typeof v === 'string' && parseIp(v)?.family === 6,
  ether_addr: (v) => typeof v === 'string' && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(v),
  ifname: (v) => typeof v === 'string' && IFNAME.test(v),
  inet_proto: (v) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 256) || ['tcp', 'udp', 'sctp', 'icmp', 'icmpv6', 'udplite'].includes(v),
  inet_service: (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535,
};
function checkKey(s: FakeSet, k: J): void {
  const types: J[] = Array.isArray(s.type) ? s.type : [s.type];
  const parts: J[] = types.length > 1 ? (Array.isArray(k?.concat) ? k.concat : []) : [k];
  if (parts.length !== types.length) throw new NftFakeError('EINVAL', `element ${JSON.stringify(k)} does not fit ${s.kind} ${s.name} of type ${JSON.stringify(s.type)}`, false);
  types.forEach((t, i) => {
    const ok = CHECKS[t];
    if (ok && !ok(parts[i])) throw new NftFakeError('EINVAL', `element ${JSON.stringify(parts[i])} is not of type ${t}`, false);
  });
}

/** Every @set, jump/goto target and named counter an expression names, and how many anonymous sets it holds. */
export function refsOf(v: J): { sets: string[]; chains: string[]; counters: string[]; anonymous: number } {
  const out = { sets: [] as string[], chains: [] as string[], counters: [] as string[], anonymous: 0 };
  const walk = (x: J): void => {
    if (typeof x === 'string') {
      if (x.startsWith('@')) out.sets.push(x.slice(1));
    } else if (Array.isArray(x)) x.forEach(walk);
    else if (x && typeof x === 'object') {
      for (const k of ['jump', 'goto'] as const) if (typeof x[k]?.target === 'string') out.chains.push(x[k].target);
      if (typeof x.counter === 'string') out.counters.push(x.counter);
      if (Array.isArray(x.set)) out.anonymous++;
      Object.values(x).forEach(walk);
    }
  };
  walk(v);
  return out;
}

/** The in-memory ruleset; `run` applies a transaction atomically, `list` and `dump` give nft's JSON. */
export class FakeNft implements NftRunner {
  tables = new Map<string, FakeTable>();
  /** Every transaction run, applied or not (what a test asserts was attempted). */
  readonly history: { commands: NftCommand[]; ok: boolean }[] = [];
  /** Makes the next `run`s fail as given, before touching anything (fault injection). */
  readonly failNext: string[] = [];
  private tableHandle = 0;

  async run(tx: NftTransaction): Promise<ExecResult> {
    const injected = this.failNext.shift();
    if (injected !== undefined) {
      this.history.push({ commands: [...tx.commands], ok: false });
      return { stdout: '', stderr: `${injected}\n`, exitCode: 1 };
    }
    try {
      this.apply(tx.commands);
      this.history.push({ commands: [...tx.commands], ok: true });
      return { stdout: '', stderr: '', exitCode: 0 };
    } catch (e) {
      this.history.push({ commands: [...tx.commands], ok: false });
      if (e instanceof NftFakeError) return { stdout: '', stderr: e.stderr, exitCode: 1 };
      throw e;
    }
  }

  /** Applies commands as one transaction; throws NftFakeError (and changes nothing) where nft would fail. */
  apply(commands: NftCommand[]): this {
    const saved = structuredClone(this.tables);
    const savedHandle = this.tableHandle;
    try {
      for (const c of commands) this.one(c as J);
    } catch (e) {
      this.tables = saved;
      this.tableHandle = savedHandle;
      throw e;
    }
    return this;
  }

  async list(family: Family, name: string): Promise<NftObject[] | string> {
    const t = this.tables.get(key(family, name));
    if (!t) return 'Error: No such file or directory\nlist table ' + `${family} ${name}`;
    return listing(t) as NftObject[];
  }

  /** The whole ruleset as `nft -j list ruleset` gives it (without the metainfo). */
  dump(): J[] {
    return [...this.tables.values()].flatMap(listing);
  }

  /** A table's state, for tests that look inside (undefined when missing). */
  table(family: Family, name: string): FakeTable | undefined {
    return this.tables.get(key(family, name));
  }

  private one(c: J): void {
    const verbs = Object.keys(c ?? {});
    if (verbs.length !== 1) throw new NftFakeError('EINVAL', `command with ${verbs.length} verbs: ${JSON.stringify(c)}`, false);
    const verb = verbs[0]!;
    const kinds = Object.keys(c[verb] ?? {});
    if (kinds.length !== 1) throw new NftFakeError('EINVAL', `${verb} with ${kinds.length} objects`, false);
    const kind = kinds[0]!;
    const o = c[verb][kind];
    if (typeof o?.family !== 'string') throw new NftFakeError('EINVAL', `${verb} ${kind} without a family`, false);
    if (kind === 'table') return this.onTable(verb, o);
    const t = this.tables.get(key(o.family, o.table));
    if (!t) throw new NftFakeError('ENOENT', `table ${o.family} ${o.table}`, verb === 'add' || verb === 'create' ? true : false);
    switch (kind) {
      case 'chain': return this.onChain(t, verb, o);
      case 'rule': return this.onRule(t, verb, o);
      case 'set':
      case 'map': return this.onSet(t, verb, kind, o);
      case 'element': return this.onElement(t, verb, o);
      case 'counter': return this.onCounter(t, verb, o);
      default: throw new NftFakeError('EINVAL', `unsupported object ${kind}`, false);
    }
  }

  private onTable(verb: string, o: J): void {
    const k = key(o.family, o.name);
    const t = this.tables.get(k);
    switch (verb) {
      case 'add':
      case 'create':
        if (t && verb === 'create') throw new NftFakeError('EEXIST', `table ${k}`);
        if (!t) {
          this.tables.set(k, { family: o.family, name: o.name, handle: ++this.tableHandle, nextHandle: 1, chains: new Map(), sets: new Map(), counters: new Map() });
        }
        return;
      case 'delete':
        if (!t) throw new NftFakeError('ENOENT', `table ${k}`);
        this.tables.delete(k);
        return;
      case 'flush':
        if (!t) throw new NftFakeError('ENOENT', `table ${k}`);
        for (const ch of t.chains.values()) ch.rules = [];
        return;
      default:
        throw new NftFakeError('EINVAL', `unsupported ${verb} table`, false);
    }
  }

  private chainOf(t: FakeTable, name: string, kernel = false): FakeChain {
    const ch = t.chains.get(name);
    if (!ch) throw new NftFakeError('ENOENT', `chain ${name} in table ${t.family} ${t.name}`, kernel);
    return ch;
  }

  private onChain(t: FakeTable, verb: string, o: J): void {
    const ex = t.chains.get(o.name);
    switch (verb) {
      case 'add':
      case 'create': {
        if (ex) {
          if (verb === 'create') throw new NftFakeError('EEXIST', `chain ${o.name}`);
          if (o.hook === undefined) return;
          if (ex.hook !== o.hook || ex.type !== o.type || ex.prio !== o.prio) throw new NftFakeError('EOPNOTSUPP', `chain ${o.name} re-added with another hook, type or priority`);
          if (o.policy !== undefined) ex.policy = o.policy;
          return;
        }
        const base = o.hook !== undefined ? { type: o.type ?? 'filter', hook: o.hook, prio: o.prio ?? 0, policy: o.policy ?? 'accept' } : {};
        t.chains.set(o.name, { name: o.name, handle: t.nextHandle++, ...base, rules: [] });
        return;
      }
      case 'flush':
        this.chainOf(t, o.name).rules = [];
        return;
      case 'delete': {
        this.chainOf(t, o.name);
        if (this.chainUsers(t, o.name)) throw new NftFakeError('EBUSY', `chain ${o.name} is jumped to`);
        t.chains.delete(o.name);
        return;
      }
      default:
        throw new NftFakeError('EINVAL', `unsupported ${verb} chain`, false);
    }
  }

  /** Rules (of other chains) and verdict map elements that jump or go to the chain. */
  private chainUsers(t: FakeTable, name: string): number {
    let n = 0;
    for (const ch of t.chains.values()) {
      if (ch.name === name) continue;
      for (const r of ch.rules) n += refsOf(r.expr).chains.filter((c) => c === name).length;
    }
    for (const s of t.sets.values()) {
      if (s.map !== 'verdict') continue;
      for (const e of s.elems.values()) n += refsOf(e.value).chains.filter((c) => c === name).length;
    }
    return n;
  }

  private onRule(t: FakeTable, verb: string, o: J): void {
    const ch = this.chainOf(t, o.chain, true);
    const at = (): number => {
      const i = ch.rules.findIndex((r) => r.handle === o.handle);
      if (i < 0) throw new NftFakeError('ENOENT', `rule handle ${o.handle} in chain ${o.chain}`);
      return i;
    };
    if (verb === 'delete') {
      ch.rules.splice(at(), 1);
      return;
    }
    if (!Array.isArray(o.expr)) throw new NftFakeError('EINVAL', `${verb} rule without expr`, false);
    const r = refsOf(o.expr);
    for (const s of r.sets) if (!t.sets.has(s)) throw new NftFakeError('ENOENT', `set ${s}`);
    for (const c of r.chains) if (!t.chains.has(c)) throw new NftFakeError('ENOENT', `chain ${c}`);
    for (const c of r.counters) if (!t.counters.has(c)) throw new NftFakeError('ENOENT', `counter ${c}`);
    t.nextHandle += r.anonymous;
    const rule: FakeRule = { handle: t.nextHandle++, expr: structuredClone(o.expr), ...(o.comment !== undefined ? { comment: o.comment } : {}) };
    switch (verb) {
      case 'add':
      case 'create':
        if (o.handle !== undefined) ch.rules.splice(at() + 1, 0, rule);
        else ch.rules.push(rule);
        return;
      case 'insert':
        if (o.handle !== undefined) ch.rules.splice(at(), 0, rule);
        else ch.rules.unshift(rule);
        return;
      case 'replace':
        if (o.handle === undefined) throw new NftFakeError('EINVAL', 'replace rule without a handle', false);
        ch.rules[at()] = { ...rule, handle: o.handle };
        t.nextHandle--;
        return;
      default:
        throw new NftFakeError('EINVAL', `unsupported ${verb} rule`, false);
    }
  }

  private setOf(t: FakeTable, name: string, kind?: 'set' | 'map'): FakeSet {
    const s = t.sets.get(name);
    if (!s || (kind && s.kind !== kind)) throw new NftFakeError('ENOENT', `${kind ?? 'set'} ${name}`, false);
    return s;
  }

  private onSet(t: FakeTable, verb: string, kind: 'set' | 'map', o: J): void {
    const ex = t.sets.get(o.name);
    switch (verb) {
      case 'add':
      case 'create': {
        if (ex) {
          if (verb === 'create' || ex.kind !== kind || JSON.stringify(ex.type) !== JSON.stringify(o.type) || ex.map !== o.map) {
            throw new NftFakeError('EEXIST', `${kind} ${o.name}`);
          }
        } else {
          t.sets.set(o.name, {
            name: o.name, handle: t.nextHandle++, kind, type: o.type,
            ...(kind === 'map' ? { map: o.map } : {}), ...(o.flags ? { flags: o.flags } : {}), ...(o.size !== undefined ? { size: o.size } : {}), elems: new Map(),
          });
        }
        if (Array.isArray(o.elem)) this.onElement(t, 'add', { name: o.name, elem: o.elem });
        return;
      }
      case 'flush':
        this.setOf(t, o.name, kind).elems.clear();
        return;
      case 'delete': {
        this.setOf(t, o.name, kind);
        for (const ch of t.chains.values()) {
          for (const r of ch.rules) if (refsOf(r.expr).sets.includes(o.name)) throw new NftFakeError('EBUSY', `${kind} ${o.name} is used by a rule in chain ${ch.name}`);
        }
        t.sets.delete(o.name);
        return;
      }
      default:
        throw new NftFakeError('EINVAL', `unsupported ${verb} ${kind}`, false);
    }
  }

  private onElement(t: FakeTable, verb: string, o: J): void {
    const s = this.setOf(t, o.name);
    if (!Array.isArray(o.elem)) throw new NftFakeError('EINVAL', 'element without elem', false);
    for (const item of o.elem) {
      // An element with a comment: {elem: {val, comment}} (nft's JSON form).
      const commented = item?.elem && typeof item.elem === 'object' && 'val' in item.elem ? item.elem : undefined;
      const e = commented ? commented.val : item;
      const isMap = s.kind === 'map';
      if (isMap && verb !== 'delete' && (!Array.isArray(e) || e.length !== 2)) throw new NftFakeError('EINVAL', `map element ${JSON.stringify(e)} is not [key, value]`, false);
      const k = isMap && Array.isArray(e) && e.length === 2 ? e[0] : e;
      checkKey(s, k);
      const id = elementKey(k);
      const ex = s.elems.get(id);
      switch (verb) {
        case 'add':
        case 'create': {
          const value = isMap ? e[1] : undefined;
          if (isMap) {
            const r = refsOf(value);
            if (s.map === 'verdict') for (const c of r.chains) if (!t.chains.has(c)) throw new NftFakeError('ENOENT', `chain ${c}`);
            if (s.map === 'counter' && (typeof value !== 'string' || !t.counters.has(value))) throw new NftFakeError('ENOENT', `counter ${JSON.stringify(value)}`);
          }
          if (ex) {
            if (verb === 'create' || JSON.stringify(ex.value) !== JSON.stringify(value)) throw new NftFakeError('EEXIST', `element ${JSON.stringify(k)} in ${s.kind} ${s.name}`);
            continue;
          }
          if (s.size !== undefined && s.elems.size >= s.size) throw new NftFakeError('E2BIG', `${s.kind} ${s.name} is full (size ${s.size})`);
          s.elems.set(id, { key: canonical(k), ...(isMap ? { value: structuredClone(value) } : {}), ...(typeof commented?.comment === 'string' ? { comment: commented.comment } : {}) });
          continue;
        }
        case 'delete':
          if (!ex) throw new NftFakeError('ENOENT', `element ${JSON.stringify(k)} in ${s.kind} ${s.name}`);
          s.elems.delete(id);
          continue;
        default:
          throw new NftFakeError('EINVAL', `unsupported ${verb} element`, false);
      }
    }
  }

  private onCounter(t: FakeTable, verb: string, o: J): void {
    const ex = t.counters.get(o.name);
    switch (verb) {
      case 'add':
      case 'create':
        if (ex && verb === 'create') throw new NftFakeError('EEXIST', `counter ${o.name}`);
        if (!ex) t.counters.set(o.name, { handle: t.nextHandle++ });
        return;
      case 'delete': {
        if (!ex) throw new NftFakeError('ENOENT', `counter ${o.name}`);
        const inRules = [...t.chains.values()].some((ch) => ch.rules.some((r) => refsOf(r.expr).counters.includes(o.name)));
        const inMaps = [...t.sets.values()].some((s) => s.map === 'counter' && [...s.elems.values()].some((e) => e.value === o.name));
        if (inRules || inMaps) throw new NftFakeError('EBUSY', `counter ${o.name} is in use`);
        t.counters.delete(o.name);
        return;
      }
      default:
        throw new NftFakeError('EINVAL', `unsupported ${verb} counter`, false);
    }
  }
}

/** A table as `nft -j list table` gives it: the table, counters, sets and maps, chains, then each chain's rules. */
function listing(t: FakeTable): J[] {
  const { family, name: table } = t;
  const out: J[] = [{ table: { family, name: table, handle: t.handle } }];
  for (const [name, c] of t.counters) out.push({ counter: { family, name, table, handle: c.handle, packets: 0, bytes: 0 } });
  for (const s of t.sets.values()) {
    const elem = [...s.elems.values()].map((e) => {
      const k = e.comment !== undefined ? { elem: { val: e.key, comment: e.comment } } : e.key;
      return s.kind === 'map' ? [k, e.value] : k;
    });
    out.push({
      [s.kind]: {
        family, name: s.name, table, type: s.type, handle: s.handle,
        ...(s.kind === 'map' ? { map: s.map } : {}), ...(s.flags ? { flags: s.flags } : {}), ...(s.size !== undefined ? { size: s.size } : {}), ...(elem.length ? { elem } : {}),
      },
    });
  }
  for (const ch of t.chains.values()) {
    out.push({ chain: { family, table, name: ch.name, handle: ch.handle, ...(ch.hook !== undefined ? { type: ch.type, hook: ch.hook, prio: ch.prio, policy: ch.policy } : {}) } });
  }
  for (const ch of t.chains.values()) {
    for (const r of ch.rules) out.push({ rule: { family, table, chain: ch.name, handle: r.handle, ...(r.comment !== undefined ? { comment: r.comment } : {}), expr: r.expr } });
  }
  return out;
}
