// nftables through its JSON input, as data: typed objects (table, chain, rule,
// set, map, element, counter) are added to a transaction bound to one family
// and table; one `nft -j -f` runs the whole transaction, atomically; one
// function lists a table. No ruleset text is ever assembled from strings, so
// nothing a config or a manifest says can become nft syntax.
//
// Callers take an `NftRunner` (the kernel: `hostNft`; in unit tests the
// in-memory `FakeNft` of nft-fake.ts, which applies transactions with nft's
// semantics), so their logic is testable without root. Shape after
// kubernetes-sigs/knftables (Transaction, Interface, Fake).
import { rmSync, writeFileSync } from 'node:fs';
import { run, type ExecResult } from './exec.js';
import { removeStaleTemporaries, tmpName } from './files.js';
import { safeRoot } from './safe-path.js';
import { crashPoint } from './testhooks.js';

export type Family = 'ip' | 'ip6' | 'inet' | 'arp' | 'bridge' | 'netdev';

/** One command of nft's JSON schema (`{add: {chain: {...}}}`): what a transaction holds and the escape hatch takes. */
export type NftCommand = Record<string, unknown>;
/** One expression or statement of a rule, in nft's JSON schema. */
export type Expr = Record<string, unknown>;

export interface Table { kind: 'table' }
export interface Chain {
  kind: 'chain';
  name: string;
  /** A base chain has all four; a regular chain (a jump target) none. */
  type?: 'filter' | 'nat' | 'route';
  hook?: string;
  prio?: number;
  policy?: 'accept' | 'drop';
}
export interface Rule {
  kind: 'rule';
  chain: string;
  /** Empty for `delete` (which goes by handle). */
  expr: Expr[];
  comment?: string;
  /** For `delete` and `replace`, and `add`/`insert` next to a given rule. */
  handle?: number;
}
export interface NftSet {
  kind: 'set';
  name: string;
  /** A type name, or the parts of a concatenation. */
  type: string | string[];
  flags?: string[];
}
export interface NftMap {
  kind: 'map';
  name: string;
  type: string | string[];
  /** The data type: 'verdict', 'counter', or a value type. */
  map: string;
  flags?: string[];
}
/** Elements of a set or map: keys (a `{concat: [...]}` for a concatenation), or [key, value] pairs for a map. */
export interface Element {
  kind: 'element';
  set: string;
  elem: unknown[];
}
export interface Counter { kind: 'counter'; name: string }

export type NftObj = Table | Chain | Rule | NftSet | NftMap | Element | Counter;

export const table = (): Table => ({ kind: 'table' });
/** A regular chain, or a base chain when `base` is given. */
export const chain = (name: string, base?: Required<Pick<Chain, 'type' | 'hook' | 'prio' | 'policy'>>): Chain => ({ kind: 'chain', name, ...base });
export const rule = (chainName: string, ...expr: Expr[]): Rule => ({ kind: 'rule', chain: chainName, expr });
export const set = (name: string, type: string | string[], flags?: string[]): NftSet => ({ kind: 'set', name, type, ...(flags ? { flags } : {}) });
export const map = (name: string, type: string | string[], data: string, flags?: string[]): NftMap => ({ kind: 'map', name, type, map: data, ...(flags ? { flags } : {}) });
export const element = (setName: string, ...elem: unknown[]): Element => ({ kind: 'element', set: setName, elem });
export const counter = (name: string): Counter => ({ kind: 'counter', name });

export type Verb = 'add' | 'create' | 'delete' | 'flush' | 'insert' | 'replace';

/** The object's body in nft's JSON schema, in `family`/`table`. */
function body(family: Family, tableName: string, o: NftObj): Record<string, unknown> {
  const T = { family, table: tableName };
  switch (o.kind) {
    case 'table':
      return { family, name: tableName };
    case 'chain':
      return { ...T, name: o.name, ...(o.hook !== undefined ? { type: o.type, hook: o.hook, prio: o.prio, policy: o.policy } : {}) };
    case 'rule':
      return {
        ...T, chain: o.chain, ...(o.handle !== undefined ? { handle: o.handle } : {}),
        ...(o.expr.length ? { expr: o.expr } : {}), ...(o.comment !== undefined ? { comment: o.comment } : {}),
      };
    case 'set':
      return { ...T, name: o.name, type: o.type, ...(o.flags ? { flags: o.flags } : {}) };
    case 'map':
      return { ...T, name: o.name, type: o.type, map: o.map, ...(o.flags ? { flags: o.flags } : {}) };
    case 'element':
      return { ...T, name: o.set, elem: o.elem };
    case 'counter':
      return { ...T, name: o.name };
  }
}

/**
 * One nft transaction: applied whole or not at all. Typed methods target the
 * family and table it is bound to; `on()` gives a view bound to another table
 * that adds to the same transaction (the port guard's bridge table beside the
 * masquerade's inet one, in one run); `push()` takes commands already in nft's
 * JSON (the policy compiler's output) unchanged.
 */
export class NftTransaction {
  constructor(
    readonly family?: Family,
    readonly table?: string,
    readonly commands: NftCommand[] = [],
  ) {}

  /** The same transaction, bound to another table. */
  on(family: Family, tableName: string): NftTransaction {
    return new NftTransaction(family, tableName, this.commands);
  }

  private verb(v: Verb, objs: NftObj[]): this {
    const { family, table: t } = this;
    if (!family || !t) throw new Error(`nft transaction without a table: ${v} ${objs.map((o) => o.kind).join(', ')}`);
    for (const o of objs) this.commands.push({ [v]: { [o.kind]: body(family, t, o) } });
    return this;
  }

  /** Creates, or leaves alone what exists (a rule is always appended). */
  add(...o: NftObj[]): this { return this.verb('add', o); }
  /** Creates; fails the transaction when it exists. */
  create(...o: NftObj[]): this { return this.verb('create', o); }
  /** Deletes; fails the transaction when it is missing (or, for a chain, set or counter, still in use). */
  delete(...o: NftObj[]): this { return this.verb('delete', o); }
  /** Empties a chain (its rules), a set or map (its elements), or a table (all its chains' rules). */
  flush(...o: (Table | Chain | NftSet | NftMap)[]): this { return this.verb('flush', o); }
  /** Prepends a rule to its chain (or puts it before the rule `handle`). */
  insert(...r: Rule[]): this { return this.verb('insert', r); }
  /** Replaces the rule `handle`. */
  replace(...r: Rule[]): this { return this.verb('replace', r); }

  /** The escape hatch: commands already in nft's JSON schema, in any table. */
  push(...c: NftCommand[]): this {
    this.commands.push(...c);
    return this;
  }

  get empty(): boolean {
    return this.commands.length === 0;
  }

  json(): string {
    return JSON.stringify({ nftables: [{ metainfo: { json_schema_version: 1 } }, ...this.commands] });
  }
}

/** One object of a listing (`{set: {...}}`, `{chain: {...}}`, ...), keyed by its kind. */
export type NftObject = Record<string, { name?: string; elem?: unknown[]; packets?: number } | undefined>;

/** What `nft` is to the code that drives it: the kernel, or a fake in unit tests. */
export interface NftRunner {
  /** Applies the transaction atomically: exit status 0, or nonzero and nothing changed. */
  run(tx: NftTransaction): Promise<ExecResult>;
  /** The objects of one table (`nft -j list table`, without the metainfo), or why it cannot be listed (a missing table, for one). */
  list(family: Family, tableName: string): Promise<NftObject[] | string>;
}

/**
 * nft opens its input file by name, and "/dev/stdin" cannot be opened when
 * stdin is a socket (which is what Node gives a child), so the transaction
 * goes through a private temporary file on tmpfs.
 */
export async function applyNft(t: NftTransaction, tmpDir = process.env.NHI_CNI_RUN_DIR || '/run/nhi-cni'): Promise<ExecResult> {
  safeRoot(tmpDir, 'run dir');
  // Left by a killed ADD: removed by the next transaction.
  removeStaleTemporaries(tmpDir);
  const file = tmpName(tmpDir, 'nft', '.json');
  writeFileSync(file, t.json(), { mode: 0o600 });
  try {
    crashPoint('nft-file');
    return await run('nft', ['-j', '-f', file]);
  } finally {
    rmSync(file, { force: true });
  }
}

/** The objects of one table in the kernel (nft JSON), or why it cannot be listed. */
export async function listTable(family: string, tableName: string): Promise<NftObject[] | string> {
  const r = await run('nft', ['-j', 'list', 'table', family, tableName]);
  if (r.exitCode !== 0) return r.stderr.trim() || `nft exit status ${r.exitCode}`;
  return ((JSON.parse(r.stdout) as { nftables?: NftObject[] }).nftables ?? []).filter((o) => !('metainfo' in o));
}

/** The kernel's nftables of the namespace this process runs in. */
export const hostNft: NftRunner = {
  run: (tx) => applyNft(tx),
  list: listTable,
};

/** `nft -j list <args>` as it comes (for listings other than a whole table). */
export async function listNft(args: string[]): Promise<ExecResult> {
  return run('nft', ['-j', 'list', ...args]);
}
