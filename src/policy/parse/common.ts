// What the manifest parsers share: errors that name where they are
// (PolicyError, Doc, formatPath), zod plumbing that turns issues into those
// errors, label selectors as the API server validates them, CIDRs, ports and
// object metadata. Pure.
import * as z from '../../cni/zod.js';
import { CniError, Code } from '../../cni/errors.js';
import { contains, formatCidr, networkOf, parseCidr, parseIp, type Cidr } from '../../net/ip.js';
import type { Peer, Selector, SelectorRequirement } from '../model.js';
import {
  quote, validateLabelKey, validateLabelValue, validateNamespace, validatePodName, validatePortName,
} from '../names.js';

/** A manifest that cannot be turned into policy: code 7 (invalid configuration). */
export class PolicyError extends CniError {
  constructor(
    msg: string,
    details = '',
    /** Where in the object it failed, when known: what a fail-closed stand-in looks at (see parsePolicyFailClosed in parse.ts). */
    readonly path?: Path,
  ) {
    super(Code.InvalidConfig, msg, details);
    this.name = 'PolicyError';
  }
}

export type Path = (string | number)[];

export const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const SAFE = /^[A-Za-z0-9._/-]{1,253}$/;
export const SAFE_ID = /^[A-Za-z0-9._-]{1,253}$/;

/** `spec.ingress[0].from[1].podSelector.matchLabels["app.kubernetes.io/name"]`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (IDENT.test(p)) out += out ? `.${p}` : p;
    else out += `[${quote(p)}]`;
  }
  return out;
}

/** Text from a manifest, shown raw when harmless, JSON-quoted otherwise. */
export function shown(s: string, safe = SAFE): string {
  return safe.test(s) ? s : quote(s);
}

/**
 * What to do with CiliumNetworkPolicy HTTP rules (`toPorts[].rules.http`):
 * 'refuse' (the default) refuses the policy as before; 'proxy' parses them
 * into PortRule.http, for a caller whose L7 proxy enforces them. Fail
 * closed: only the agent that runs the proxy and redirects to it may ask for
 * 'proxy'; the CNI path never does.
 */
export type L7Mode = 'refuse' | 'proxy';

export interface ParseOptions {
  l7?: L7Mode;
}

/** Where in the input we are, for messages: file, document, List item, policy; and how to parse it. */
export class Doc {
  kind?: string;
  namespace?: string;
  name?: string;

  constructor(
    readonly file: string,
    readonly index: number,
    readonly prefix: Path = [],
    readonly l7: L7Mode = 'refuse',
  ) {}

  item(path: Path): Doc {
    return new Doc(this.file, this.index, [...this.prefix, ...path], this.l7);
  }

  head(): string {
    let who = '';
    if (this.kind !== undefined) {
      const id = [this.namespace, this.name].filter((s) => s !== undefined).map((s) => shown(s!, SAFE_ID)).join('/');
      who = ` (${shown(this.kind, SAFE_ID)}${id ? ` ${id}` : ''})`;
    }
    return `${this.file} document ${this.index}${who}`;
  }

  fail(path: Path, msg: string): never {
    const where = formatPath([...this.prefix, ...path]);
    throw new PolicyError(`${this.head()}: ${where ? `${where}: ` : ''}${msg}`, '', [...this.prefix, ...path]);
  }
}

// ---- zod plumbing ----

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `the string ${quote(v)}`;
  return `${typeof v} ${String(v)}`;
}

export const EXPECTED: Record<string, string> = {
  string: 'a string', number: 'a number', int: 'an integer', boolean: 'a boolean',
  array: 'a list', object: 'a map', record: 'a map',
};

export const errorMap: z.core.$ZodErrorMap = (iss) => {
  if (iss.code === 'invalid_type') {
    if (iss.input === undefined) return 'required';
    return `must be ${EXPECTED[iss.expected] ?? iss.expected}, not ${describe(iss.input)}`;
  }
  if (iss.code === 'invalid_value') {
    return `must be one of ${iss.values.map((v) => String(v)).join(', ')}, not ${describe(iss.input)}`;
  }
  return undefined;
};

export function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function dig(v: unknown, path: Path): unknown {
  for (const p of path) v = isMap(v) || Array.isArray(v) ? (v as Record<string | number, unknown>)[p] : undefined;
  return v;
}

/** Parses with zod; the first refusal (unknown key) wins over other issues. */
export function check<T>(schema: z.ZodMiniType<T>, value: unknown, doc: Doc, path: Path, refused: Record<string, string> = {}): T {
  const r = schema.safeParse(value, { error: errorMap });
  if (r.success) return r.data;
  const issues = r.error.issues;
  const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
  const at = [...path, ...issue.path.filter((p): p is string | number => typeof p !== 'symbol')];
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys.find((k) => Object.hasOwn(refused, k)) ?? issue.keys[0]!;
    const reason = Object.hasOwn(refused, key) ? refused[key]! : 'unknown field; refusing rather than ignoring it';
    const inner = dig(value, [...issue.path.filter((p): p is string | number => typeof p !== 'symbol'), key]);
    // Name the kind of L7 rule: rules.http, rules.dns, rules.kafka, …
    const sub = key === 'rules' && isMap(inner) && Object.keys(inner).length > 0 ? [Object.keys(inner)[0]!] : [];
    doc.fail([...at, key, ...sub], reason);
  }
  doc.fail(at, issue.message);
}

// ---- shared pieces: selectors, CIDRs, ports ----

export const Requirement = z.strictObject({
  key: z.string(),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
  values: z.nullish(z.array(z.string())),
});
export const LabelSelector = z.strictObject({
  // Checked by hand: a zod record drops a "__proto__" key, which would widen the selector.
  matchLabels: z.optional(z.unknown()),
  matchExpressions: z.nullish(z.array(Requirement)),
});
export type LabelSelectorIn = z.infer<typeof LabelSelector>;

export const empty = (): Selector => ({ matchLabels: {}, matchExpressions: [] });
export const isEmpty = (s: Selector) => Object.keys(s.matchLabels).length === 0 && s.matchExpressions.length === 0;

/** Where a selector key goes: the pod part or the namespace part, under which key. */
export type KeyMap = (key: string, path: Path) => { ns: boolean; key: string };
export const podKey: KeyMap = (key) => ({ ns: false, key });

/** A label selector, validated as the API server does; keys may be routed to a namespace selector. */
export function labelSelector(sel: LabelSelectorIn, doc: Doc, path: Path, mapKey: KeyMap = podKey): { pods: Selector; namespaces?: Selector } {
  const pods = empty();
  let namespaces: Selector | undefined;
  const target = (ns: boolean) => (ns ? (namespaces ??= empty()) : pods);
  const ml = sel.matchLabels;
  if (ml !== undefined && ml !== null) {
    if (!isMap(ml)) doc.fail([...path, 'matchLabels'], `must be a map, not ${describe(ml)}`);
    for (const raw of Object.keys(ml)) {
      const at = [...path, 'matchLabels', raw];
      const { ns, key } = mapKey(raw, at);
      const value = ml[raw];
      const keyErr = validateLabelKey(key);
      if (keyErr) doc.fail(at, keyErr);
      if (typeof value !== 'string') doc.fail(at, `must be a string, not ${describe(value)}`);
      const valueErr = validateLabelValue(value);
      if (valueErr) doc.fail(at, valueErr);
      const t = target(ns);
      if (Object.hasOwn(t.matchLabels, key)) doc.fail(at, `label ${quote(key)} is given twice`);
      t.matchLabels[key] = value;
    }
  }
  (sel.matchExpressions ?? []).forEach((r, i) => {
    const at = [...path, 'matchExpressions', i];
    const { ns, key } = mapKey(r.key, [...at, 'key']);
    const keyErr = validateLabelKey(key);
    if (keyErr) doc.fail([...at, 'key'], keyErr);
    const values = r.values ?? [];
    if ((r.operator === 'In' || r.operator === 'NotIn') && values.length === 0) {
      doc.fail([...at, 'values'], `must be non-empty when operator is ${r.operator}`);
    }
    if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && values.length > 0) {
      doc.fail([...at, 'values'], `must be empty when operator is ${r.operator}`);
    }
    values.forEach((v, j) => {
      const err = validateLabelValue(v);
      if (err) doc.fail([...at, 'values', j], err);
    });
    const req: SelectorRequirement = { key, operator: r.operator, values: [...values] };
    target(ns).matchExpressions.push(req);
  });
  return namespaces ? { pods, namespaces } : { pods };
}

export function canonical(c: Cidr): string {
  return formatCidr({ ip: networkOf(c), prefix: c.prefix });
}

export function block(text: string, doc: Doc, path: Path, bareIp: boolean): Cidr {
  const c = parseCidr(text);
  if (c) return c;
  const ip = bareIp ? parseIp(text) : undefined;
  if (ip) return { ip, prefix: ip.family === 4 ? 32 : 128 };
  doc.fail(path, `invalid CIDR ${quote(text)}: expected an address and a prefix length, e.g. 10.0.0.0/8`);
}

/** A CIDR peer; each exception must lie strictly inside the block. Blocks are written in network form. */
export function cidrPeer(cidr: string, except: string[], doc: Doc, cidrPath: Path, exceptPath: Path, bareIp: boolean): Peer {
  const c = block(cidr, doc, cidrPath, bareIp);
  const out = except.map((e, i) => {
    const x = block(e, doc, [...exceptPath, i], bareIp);
    if (x.ip.family !== c.ip.family || x.prefix <= c.prefix || !contains(c, networkOf(x))) {
      doc.fail([...exceptPath, i], `${quote(e)} must lie strictly inside ${canonical(c)}`);
    }
    return canonical(x);
  });
  return { kind: 'cidr', cidr: canonical(c), except: out };
}

export function portNumber(v: unknown, doc: Doc, path: Path, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 65535) {
    doc.fail(path, `must be a port number from ${min} to 65535, not ${describe(v)}`);
  }
  return v;
}

export function portName(v: string, doc: Doc, path: Path): string {
  const err = validatePortName(v);
  if (err) doc.fail(path, /^\d+$/.test(v) ? `${err}; write a port number without quotes` : err);
  return v;
}

// ---- metadata ----

export const Meta = z.object({ name: z.string(), namespace: z.nullish(z.string()) });

export function metadata(obj: Record<string, unknown>, doc: Doc): { namespace: string; name: string } {
  const raw = obj.metadata;
  if (isMap(raw)) {
    if (typeof raw.name === 'string') doc.name = raw.name;
    if (typeof raw.namespace === 'string') doc.namespace = raw.namespace;
  }
  const m = check(Meta, raw, doc, ['metadata']);
  const nameErr = validatePodName(m.name);
  if (nameErr) doc.fail(['metadata', 'name'], nameErr);
  if (m.namespace === undefined || m.namespace === null || m.namespace === '') {
    doc.fail(['metadata', 'namespace'], 'required: a policy without a namespace is refused rather than placed in "default"');
  }
  const nsErr = validateNamespace(m.namespace);
  if (nsErr) doc.fail(['metadata', 'namespace'], nsErr);
  return { namespace: m.namespace, name: m.name };
}

