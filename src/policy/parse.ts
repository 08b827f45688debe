// Manifests → the policy model (model.ts). Kubernetes NetworkPolicy v1 with the
// API server's validation and defaulting, and the L3/L4 part of
// CiliumNetworkPolicy v2. Whatever cannot be enforced exactly (L7 rules, FQDNs,
// entities, …) is refused with an error naming file, document, policy and
// field: a policy is never silently widened. Pure except loadPolicyDir.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { CniError, Code } from '../cni/errors.js';
import { contains, formatCidr, networkOf, parseCidr, parseIp, type Cidr } from '../net/ip.js';
import type { Peer, Policy, PortRule, Protocol, Rule, Selector, SelectorRequirement } from './model.js';
import {
  quote, validateLabelKey, validateLabelValue, validateNamespace, validatePodName, validatePortName,
} from './names.js';

/** A manifest that cannot be turned into policy: code 7 (invalid configuration). */
export class PolicyError extends CniError {
  constructor(msg: string, details = '') {
    super(Code.InvalidConfig, msg, details);
    this.name = 'PolicyError';
  }
}

type Path = (string | number)[];

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SAFE = /^[A-Za-z0-9._/-]{1,253}$/;
const SAFE_ID = /^[A-Za-z0-9._-]{1,253}$/;

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
function shown(s: string, safe = SAFE): string {
  return safe.test(s) ? s : quote(s);
}

/** Where in the input we are, for messages: file, document, List item, policy. */
class Doc {
  kind?: string;
  namespace?: string;
  name?: string;

  constructor(
    readonly file: string,
    readonly index: number,
    readonly prefix: Path = [],
  ) {}

  item(path: Path): Doc {
    return new Doc(this.file, this.index, [...this.prefix, ...path]);
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
    throw new PolicyError(`${this.head()}: ${where ? `${where}: ` : ''}${msg}`);
  }
}

// ---- zod plumbing ----

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `the string ${quote(v)}`;
  return `${typeof v} ${String(v)}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string', number: 'a number', int: 'an integer', boolean: 'a boolean',
  array: 'a list', object: 'a map', record: 'a map',
};

const errorMap: z.core.$ZodErrorMap = (iss) => {
  if (iss.code === 'invalid_type') {
    if (iss.input === undefined) return 'required';
    return `must be ${EXPECTED[iss.expected] ?? iss.expected}, not ${describe(iss.input)}`;
  }
  if (iss.code === 'invalid_value') {
    return `must be one of ${iss.values.map((v) => String(v)).join(', ')}, not ${describe(iss.input)}`;
  }
  return undefined;
};

const L7 = 'L7 rules are not enforced by nhi-cni; refusing rather than allowing the whole port';
const NO_PROXY = 'needs an L7 proxy, which nhi-cni does not have; refusing rather than allowing the whole port';
const ENTITIES = 'entities (world, cluster, host, …) are not supported by nhi-cni; use CIDR or endpoint selectors';

/** Cilium keys beyond L3/L4 and why they are refused. Others are "unknown field". */
const CILIUM_REFUSED: Record<string, string> = {
  rules: L7,
  terminatingTLS: `TLS termination ${NO_PROXY}`,
  originatingTLS: `TLS origination ${NO_PROXY}`,
  serverNames: `SNI matching ${NO_PROXY}`,
  listener: `an Envoy listener ${NO_PROXY}`,
  toFQDNs: 'DNS-name rules need a DNS proxy, which nhi-cni does not have; refusing rather than guessing addresses',
  toServices: 'service selectors are not supported by nhi-cni; use toEndpoints or toCIDR',
  toEntities: ENTITIES,
  fromEntities: ENTITIES,
  toRequires: 'requirement rules are not supported by nhi-cni; refusing rather than ignoring them',
  fromRequires: 'requirement rules are not supported by nhi-cni; refusing rather than ignoring them',
  toGroups: 'cloud-provider groups are not supported by nhi-cni; list the CIDRs',
  fromGroups: 'cloud-provider groups are not supported by nhi-cni; list the CIDRs',
  toNodes: 'node selectors are not supported by nhi-cni',
  fromNodes: 'node selectors are not supported by nhi-cni',
  icmps: 'ICMP rules are not supported by nhi-cni (TCP, UDP and SCTP ports only)',
  authentication: 'mutual authentication is not enforced by nhi-cni; refusing rather than allowing unauthenticated peers',
  nodeSelector: 'host (node) policies are not supported by nhi-cni',
  cidrGroupRef: 'CIDR groups are not supported by nhi-cni; list the CIDRs',
  cidrGroupSelector: 'CIDR groups are not supported by nhi-cni; list the CIDRs',
};

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function dig(v: unknown, path: Path): unknown {
  for (const p of path) v = isMap(v) || Array.isArray(v) ? (v as Record<string | number, unknown>)[p] : undefined;
  return v;
}

/** Parses with zod; the first refusal (unknown key) wins over other issues. */
function check<T>(schema: z.ZodType<T>, value: unknown, doc: Doc, path: Path, refused: Record<string, string> = {}): T {
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

const Requirement = z.strictObject({
  key: z.string(),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
  values: z.array(z.string()).nullish(),
});
const LabelSelector = z.strictObject({
  // Checked by hand: a zod record drops a "__proto__" key, which would widen the selector.
  matchLabels: z.unknown().optional(),
  matchExpressions: z.array(Requirement).nullish(),
});
type LabelSelectorIn = z.infer<typeof LabelSelector>;

const empty = (): Selector => ({ matchLabels: {}, matchExpressions: [] });
const isEmpty = (s: Selector) => Object.keys(s.matchLabels).length === 0 && s.matchExpressions.length === 0;

/** Where a selector key goes: the pod part or the namespace part, under which key. */
type KeyMap = (key: string, path: Path) => { ns: boolean; key: string };
const podKey: KeyMap = (key) => ({ ns: false, key });

/** A label selector, validated as the API server does; keys may be routed to a namespace selector. */
function labelSelector(sel: LabelSelectorIn, doc: Doc, path: Path, mapKey: KeyMap = podKey): { pods: Selector; namespaces?: Selector } {
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

function canonical(c: Cidr): string {
  return formatCidr({ ip: networkOf(c), prefix: c.prefix });
}

function block(text: string, doc: Doc, path: Path, bareIp: boolean): Cidr {
  const c = parseCidr(text);
  if (c) return c;
  const ip = bareIp ? parseIp(text) : undefined;
  if (ip) return { ip, prefix: ip.family === 4 ? 32 : 128 };
  doc.fail(path, `invalid CIDR ${quote(text)}: expected an address and a prefix length, e.g. 10.0.0.0/8`);
}

/** A CIDR peer; each exception must lie strictly inside the block. Blocks are written in network form. */
function cidrPeer(cidr: string, except: string[], doc: Doc, cidrPath: Path, exceptPath: Path, bareIp: boolean): Peer {
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

function portNumber(v: unknown, doc: Doc, path: Path, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 65535) {
    doc.fail(path, `must be a port number from ${min} to 65535, not ${describe(v)}`);
  }
  return v;
}

function portName(v: string, doc: Doc, path: Path): string {
  const err = validatePortName(v);
  if (err) doc.fail(path, /^\d+$/.test(v) ? `${err}; write a port number without quotes` : err);
  return v;
}

// ---- metadata ----

const Meta = z.object({ name: z.string(), namespace: z.string().nullish() });

function metadata(obj: Record<string, unknown>, doc: Doc): { namespace: string; name: string } {
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

// ---- NetworkPolicy (networking.k8s.io/v1) ----

const NpPort = z.strictObject({
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).nullish(),
  port: z.unknown().optional(),
  endPort: z.unknown().optional(),
});
const NpPeer = z.strictObject({
  podSelector: LabelSelector.nullish(),
  namespaceSelector: LabelSelector.nullish(),
  ipBlock: z.strictObject({ cidr: z.string(), except: z.array(z.string()).nullish() }).nullish(),
});
const NpIngress = z.strictObject({ from: z.array(NpPeer).nullish(), ports: z.array(NpPort).nullish() });
const NpEgress = z.strictObject({ to: z.array(NpPeer).nullish(), ports: z.array(NpPort).nullish() });
const NpSpec = z.strictObject({
  podSelector: LabelSelector,
  policyTypes: z.array(z.enum(['Ingress', 'Egress'])).nullish(),
  ingress: z.array(NpIngress).nullish(),
  egress: z.array(NpEgress).nullish(),
});

function npPeer(p: z.infer<typeof NpPeer>, doc: Doc, path: Path): Peer {
  if (p.ipBlock) {
    if (p.podSelector || p.namespaceSelector) {
      doc.fail(path, 'ipBlock cannot be combined with podSelector or namespaceSelector');
    }
    const at = [...path, 'ipBlock'];
    return cidrPeer(p.ipBlock.cidr, p.ipBlock.except ?? [], doc, [...at, 'cidr'], [...at, 'except'], false);
  }
  if (!p.podSelector && !p.namespaceSelector) {
    doc.fail(path, 'a peer must set podSelector and/or namespaceSelector, or ipBlock');
  }
  const peer: Peer = { kind: 'pods' };
  if (p.podSelector) peer.pods = labelSelector(p.podSelector, doc, [...path, 'podSelector']).pods;
  if (p.namespaceSelector) peer.namespaces = labelSelector(p.namespaceSelector, doc, [...path, 'namespaceSelector']).pods;
  return peer;
}

function npPort(p: z.infer<typeof NpPort>, doc: Doc, path: Path): PortRule {
  const out: PortRule = { protocol: p.protocol ?? 'TCP' };
  if (p.port !== undefined && p.port !== null) {
    out.port = typeof p.port === 'string' ? portName(p.port, doc, [...path, 'port']) : portNumber(p.port, doc, [...path, 'port'], 1);
  }
  if (p.endPort !== undefined && p.endPort !== null) {
    if (typeof out.port !== 'number') {
      doc.fail([...path, 'endPort'], out.port === undefined ? 'endPort needs a port' : 'endPort needs a numeric port, not a named one');
    }
    const end = portNumber(p.endPort, doc, [...path, 'endPort'], 1);
    if (end < out.port) doc.fail([...path, 'endPort'], `must be greater than or equal to port ${out.port}`);
    out.endPort = end;
  }
  return out;
}

type NpRuleIn = { ports?: z.infer<typeof NpPort>[] | null } & { [k in 'from' | 'to']?: z.infer<typeof NpPeer>[] | null };

function npRule(r: NpRuleIn, key: 'from' | 'to', doc: Doc, path: Path): Rule {
  const rule: Rule = {};
  const peers = r[key] ?? [];
  // Absent or empty `from`/`to`: every peer; absent or empty `ports`: every port.
  if (peers.length > 0) rule.peers = peers.map((p, i) => npPeer(p, doc, [...path, key, i]));
  if (r.ports && r.ports.length > 0) rule.ports = r.ports.map((p, i) => npPort(p, doc, [...path, 'ports', i]));
  return rule;
}

function networkPolicy(obj: Record<string, unknown>, doc: Doc): Policy {
  const { namespace, name } = metadata(obj, doc);
  const spec = check(NpSpec, obj.spec, doc, ['spec']);
  const subject = labelSelector(spec.podSelector, doc, ['spec', 'podSelector']).pods;
  const types = spec.policyTypes ?? [];
  if (types.length > 2) doc.fail(['spec', 'policyTypes'], 'may not list more than two policy types');
  // The API server's defaulting: no policyTypes → Ingress, plus Egress when egress rules exist.
  const isolates = types.length > 0
    ? { ingress: types.includes('Ingress'), egress: types.includes('Egress') }
    : { ingress: true, egress: (spec.egress?.length ?? 0) > 0 };
  const ingress = (spec.ingress ?? []).map((r, i) => npRule(r, 'from', doc, ['spec', 'ingress', i]));
  const egress = (spec.egress ?? []).map((r, i) => npRule(r, 'to', doc, ['spec', 'egress', i]));
  return {
    kind: 'NetworkPolicy',
    namespace,
    name,
    subject,
    isolates,
    // Rules of a direction the policy does not isolate are ignored, as by every implementation.
    ingress: isolates.ingress ? ingress : [],
    egress: isolates.egress ? egress : [],
    ingressDeny: [],
    egressDeny: [],
    source: { file: doc.file, index: doc.index },
  };
}

// ---- CiliumNetworkPolicy (cilium.io/v2), L3/L4 only ----

const CnpPort = z.strictObject({ port: z.unknown().optional(), endPort: z.unknown().optional(), protocol: z.unknown().optional() });
const CnpPortRule = z.strictObject({ ports: z.array(CnpPort).nullish() });
const CnpCidrSet = z.strictObject({ cidr: z.string(), except: z.array(z.string()).nullish() });
const CnpIngress = z.strictObject({
  fromEndpoints: z.array(LabelSelector).nullish(),
  fromCIDR: z.array(z.string()).nullish(),
  fromCIDRSet: z.array(CnpCidrSet).nullish(),
  toPorts: z.array(CnpPortRule).nullish(),
});
const CnpEgress = z.strictObject({
  toEndpoints: z.array(LabelSelector).nullish(),
  toCIDR: z.array(z.string()).nullish(),
  toCIDRSet: z.array(CnpCidrSet).nullish(),
  toPorts: z.array(CnpPortRule).nullish(),
});
const CnpSpec = z.strictObject({
  endpointSelector: LabelSelector,
  ingress: z.array(CnpIngress).nullish(),
  ingressDeny: z.array(CnpIngress).nullish(),
  egress: z.array(CnpEgress).nullish(),
  egressDeny: z.array(CnpEgress).nullish(),
  enableDefaultDeny: z.strictObject({ ingress: z.boolean().nullish(), egress: z.boolean().nullish() }).nullish(),
  labels: z.unknown().optional(),
  description: z.unknown().optional(),
});

const NS_LABELS = 'io.cilium.k8s.namespace.labels.';

/** Cilium selector keys: strip the k8s:/any: source; the pod's namespace label selects namespaces. */
const ciliumKey = (doc: Doc): KeyMap => (raw, path) => {
  let key = raw;
  const colon = raw.indexOf(':');
  if (colon >= 0) {
    const source = raw.slice(0, colon);
    if (source === 'reserved') {
      doc.fail(path, 'reserved: labels select Cilium entities (host, world, health, …), which nhi-cni does not support');
    }
    if (source !== 'k8s' && source !== 'any') {
      doc.fail(path, `label source ${quote(source)} is not supported by nhi-cni (only k8s: and any:)`);
    }
    key = raw.slice(colon + 1);
  }
  if (key === 'io.kubernetes.pod.namespace') return { ns: true, key: 'kubernetes.io/metadata.name' };
  if (key.startsWith(NS_LABELS)) return { ns: true, key: key.slice(NS_LABELS.length) };
  if (key.startsWith('io.cilium.')) {
    doc.fail(path, `Cilium label ${quote(key)} (service account, cluster, …) is not supported by nhi-cni`);
  }
  return { ns: false, key };
};

function cnpEndpoints(sel: LabelSelectorIn, doc: Doc, path: Path): Peer {
  const { pods, namespaces } = labelSelector(sel, doc, path, ciliumKey(doc));
  // Without a namespace label the selector means endpoints of the policy's namespace.
  if (!namespaces) return { kind: 'pods', pods };
  return isEmpty(pods) ? { kind: 'pods', namespaces } : { kind: 'pods', pods, namespaces };
}

function cnpPort(p: z.infer<typeof CnpPort>, doc: Doc, path: Path): PortRule[] {
  const proto = p.protocol ?? 'ANY';
  if (proto !== 'TCP' && proto !== 'UDP' && proto !== 'SCTP' && proto !== 'ANY') {
    doc.fail([...path, 'protocol'], `must be one of TCP, UDP, SCTP, ANY, not ${describe(proto)}`);
  }
  let port: number | string | undefined;
  const at = [...path, 'port'];
  if (typeof p.port === 'string' && /^\d+$/.test(p.port)) port = portNumber(Number(p.port), doc, at, 0);
  else if (typeof p.port === 'string') port = portName(p.port, doc, at);
  else if (p.port !== undefined && p.port !== null) port = portNumber(p.port, doc, at, 0);
  if (port === 0) port = undefined; // "0": every port
  let endPort: number | undefined;
  if (p.endPort !== undefined && p.endPort !== null && p.endPort !== 0) {
    if (typeof port !== 'number') {
      doc.fail([...path, 'endPort'], port === undefined ? 'endPort needs a port other than 0' : 'endPort needs a numeric port, not a named one');
    }
    endPort = portNumber(p.endPort, doc, [...path, 'endPort'], 1);
    if (endPort < port) doc.fail([...path, 'endPort'], `must be greater than or equal to port ${port}`);
  }
  const protocols: Protocol[] = proto === 'ANY' ? ['TCP', 'UDP'] : [proto];
  return protocols.map((protocol) => {
    const r: PortRule = { protocol };
    if (port !== undefined) r.port = port;
    if (endPort !== undefined) r.endPort = endPort;
    return r;
  });
}

const AMBIGUOUS_PEERS = 'an empty list is ambiguous (Cilium reads it as absent); remove the key, or list at least one entry';

function cnpRule(
  raw: unknown, r: Record<string, unknown>, keys: { endpoints: string; cidr: string; cidrSet: string },
  doc: Doc, path: Path,
): Rule | undefined {
  for (const k of [keys.endpoints, keys.cidr, keys.cidrSet, 'toPorts']) {
    if (isMap(raw) && Object.hasOwn(raw, k) && (raw[k] === null || (Array.isArray(raw[k]) && raw[k].length === 0))) {
      doc.fail([...path, k], AMBIGUOUS_PEERS);
    }
  }
  const peers: Peer[] = [];
  ((r[keys.endpoints] ?? []) as LabelSelectorIn[]).forEach((s, i) => peers.push(cnpEndpoints(s, doc, [...path, keys.endpoints, i])));
  ((r[keys.cidr] ?? []) as string[]).forEach((c, i) => {
    peers.push(cidrPeer(c, [], doc, [...path, keys.cidr, i], [], true));
  });
  ((r[keys.cidrSet] ?? []) as z.infer<typeof CnpCidrSet>[]).forEach((s, i) => {
    const at = [...path, keys.cidrSet, i];
    peers.push(cidrPeer(s.cidr, s.except ?? [], doc, [...at, 'cidr'], [...at, 'except'], true));
  });
  let ports: PortRule[] | undefined;
  const toPorts = r.toPorts as z.infer<typeof CnpPortRule>[] | undefined | null;
  if (toPorts) {
    ports = toPorts.flatMap((pr, i) => {
      const at = [...path, 'toPorts', i];
      if (!pr.ports || pr.ports.length === 0) doc.fail([...at, 'ports'], 'required: list at least one port');
      return pr.ports.flatMap((p, j) => cnpPort(p, doc, [...at, 'ports', j]));
    });
  }
  // `{}`: no peer at all (Cilium's default-deny idiom); it allows nothing.
  if (peers.length === 0 && ports === undefined) return undefined;
  const rule: Rule = {};
  if (peers.length > 0) rule.peers = peers; // several peer kinds: OR-ed; none: every peer
  if (ports) rule.ports = ports;
  return rule;
}

const FROM = { endpoints: 'fromEndpoints', cidr: 'fromCIDR', cidrSet: 'fromCIDRSet' };
const TO = { endpoints: 'toEndpoints', cidr: 'toCIDR', cidrSet: 'toCIDRSet' };

function cnpSpec(raw: unknown, doc: Doc, path: Path, namespace: string, name: string): Policy {
  const s = check(CnpSpec, raw, doc, path, CILIUM_REFUSED);
  const spec = raw as Record<string, unknown>;
  for (const dir of ['ingress', 'egress'] as const) {
    if (s.enableDefaultDeny?.[dir] === false) {
      doc.fail([...path, 'enableDefaultDeny', dir], 'false (allow rules that do not isolate) is not supported by nhi-cni');
    }
  }
  const sel = labelSelector(s.endpointSelector, doc, [...path, 'endpointSelector'], ciliumKey(doc));
  if (sel.namespaces) {
    const own = sel.namespaces.matchExpressions.length === 0 &&
      Object.keys(sel.namespaces.matchLabels).length === 1 &&
      sel.namespaces.matchLabels['kubernetes.io/metadata.name'] === namespace;
    if (!own) {
      doc.fail([...path, 'endpointSelector'], `a CiliumNetworkPolicy selects endpoints of its own namespace (${namespace}) only`);
    }
  }
  const directions = ['ingress', 'ingressDeny', 'egress', 'egressDeny'] as const;
  for (const k of directions) {
    if (Object.hasOwn(spec, k) && (spec[k] === null || (Array.isArray(spec[k]) && spec[k].length === 0))) {
      doc.fail([...path, k], 'an empty list is ambiguous (Cilium ignores it, a NetworkPolicy would deny everything); write [{}] to isolate with nothing allowed, or remove the key');
    }
  }
  const rules = (k: (typeof directions)[number]) => {
    const keys = k.startsWith('ingress') ? FROM : TO;
    const list = (s[k] ?? []) as Record<string, unknown>[];
    return list.flatMap((r, i) => {
      const rule = cnpRule((spec[k] as unknown[])[i], r, keys, doc, [...path, k, i]);
      return rule ? [rule] : [];
    });
  };
  return {
    kind: 'CiliumNetworkPolicy',
    namespace,
    name,
    subject: sel.pods,
    isolates: { ingress: Boolean(s.ingress || s.ingressDeny), egress: Boolean(s.egress || s.egressDeny) },
    ingress: rules('ingress'),
    egress: rules('egress'),
    ingressDeny: rules('ingressDeny'),
    egressDeny: rules('egressDeny'),
    source: { file: doc.file, index: doc.index },
  };
}

function ciliumNetworkPolicy(obj: Record<string, unknown>, doc: Doc): Policy[] {
  const { namespace, name } = metadata(obj, doc);
  const out: Policy[] = [];
  if (obj.spec !== undefined && obj.spec !== null) out.push(cnpSpec(obj.spec, doc, ['spec'], namespace, name));
  if (obj.specs !== undefined && obj.specs !== null) {
    const specs = check(z.array(z.unknown()), obj.specs, doc, ['specs']);
    if (specs.length === 0) doc.fail(['specs'], 'must list at least one rule');
    specs.forEach((s, i) => out.push(cnpSpec(s, doc, ['specs', i], namespace, `${name}#${i}`)));
  }
  if (out.length === 0) doc.fail(['spec'], 'required (or specs)');
  return out;
}

// ---- objects, documents, files ----

function parseObject(obj: unknown, doc: Doc, out: Policy[]): void {
  if (obj === null || obj === undefined) return; // an empty document
  if (!isMap(obj)) doc.fail([], `not a Kubernetes object: ${describe(obj)}`);
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    doc.fail([], 'not a Kubernetes object: apiVersion and kind must be strings');
  }
  if (kind === 'List') {
    const items = check(z.array(z.unknown()), obj.items ?? [], doc, ['items']);
    items.forEach((item, i) => parseObject(item, doc.item(['items', i]), out));
    return;
  }
  doc.kind = kind;
  if (isMap(obj.metadata)) {
    if (typeof obj.metadata.name === 'string') doc.name = obj.metadata.name;
    if (typeof obj.metadata.namespace === 'string') doc.namespace = obj.metadata.namespace;
  }
  if (apiVersion === 'networking.k8s.io/v1' && kind === 'NetworkPolicy') {
    out.push(networkPolicy(obj, doc));
  } else if (apiVersion === 'cilium.io/v2' && kind === 'CiliumNetworkPolicy') {
    out.push(...ciliumNetworkPolicy(obj, doc));
  } else if (kind === 'CiliumClusterwideNetworkPolicy') {
    doc.fail([], 'CiliumClusterwideNetworkPolicy is not supported yet; refusing rather than ignoring it');
  } else if (kind.includes('NetworkPolicy')) {
    // Another policy kind or version (extensions/v1beta1, AdminNetworkPolicy, Calico, cilium.io/v2alpha1, …):
    // skipping it would leave traffic open that its author meant to restrict.
    doc.fail([], `${shown(apiVersion)} ${shown(kind)} is not supported (only networking.k8s.io/v1 NetworkPolicy and cilium.io/v2 CiliumNetworkPolicy); refusing rather than ignoring a policy`);
  }
  // Any other object (a Deployment, a Namespace, …) is not ours: skipped.
}

const policyKey = (p: Policy) => `${p.kind}\0${p.namespace}\0${p.name}`;

/** Refuses a policy defined twice (same kind, namespace and name): the API server would hold only one. */
function unique(policies: Policy[]): Policy[] {
  const seen = new Map<string, Policy>();
  for (const p of policies) {
    const first = seen.get(policyKey(p));
    if (first) {
      throw new PolicyError(
        `${p.source.file} document ${p.source.index} (${p.kind} ${p.namespace}/${p.name}): duplicate policy; also defined in ${first.source.file} document ${first.source.index}`,
      );
    }
    seen.set(policyKey(p), p);
  }
  return policies;
}

/** Every policy in a YAML (or JSON) text of one or more documents. */
export function parseManifestText(text: string, file: string): Policy[] {
  const out: Policy[] = [];
  const docs = parseAllDocuments(text);
  for (let i = 0; i < docs.length; i++) {
    const d = docs[i]!;
    const err = d.errors[0];
    if (err) throw new PolicyError(`${file} document ${i}: YAML syntax error: ${err.message.split('\n')[0]!.replace(/:$/, '')}`);
    let value: unknown;
    try {
      value = d.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new PolicyError(`${file} document ${i}: YAML error: ${e instanceof Error ? e.message : String(e)}`);
    }
    parseObject(value, new Doc(file, i), out);
  }
  return unique(out);
}

/** Every policy among already-decoded objects (a plugin config's `policy.manifests`, file "inline"). */
export function parseManifestObjects(objs: unknown[], file: string): Policy[] {
  if (!Array.isArray(objs)) throw new PolicyError(`${file}: manifests must be a list of objects, not ${describe(objs)}`);
  const out: Policy[] = [];
  objs.forEach((o, i) => parseObject(o, new Doc(file, i), out));
  return unique(out);
}

/** Every policy in dir/*.yaml, *.yml and *.json (sorted, not recursive); the first bad manifest fails it all. */
export function loadPolicyDir(dir: string): Policy[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new PolicyError(`cannot read policy directory ${dir}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const out: Policy[] = [];
  for (const name of names.filter((n) => /\.(ya?ml|json)$/.test(n)).sort()) {
    const file = join(dir, name);
    let text: string;
    try {
      // stat follows symlinks: a ConfigMap volume's files are links into ..data/.
      if (!statSync(file).isFile()) continue;
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new PolicyError(`cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
    out.push(...parseManifestText(text, file));
  }
  return unique(out);
}

