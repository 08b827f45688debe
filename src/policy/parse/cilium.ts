// CiliumNetworkPolicy (cilium.io/v2) -> the policy model: L3/L4, and HTTP
// rules (toPorts[].rules.http) when the caller's L7 proxy enforces them
// (Doc.l7 'proxy'). Whatever cannot be enforced exactly (other L7 rules,
// FQDNs, entities, ...) is refused with the field named. Pure.
import * as z from '../../cni/zod.js';
import type { HttpHeaderRule, HttpRule, Peer, Policy, PortRule, Protocol, Rule } from '../model.js';
import { check, cidrPeer, describe, dig, Doc, formatPath, isEmpty, isMap, type KeyMap, LabelSelector, labelSelector, type LabelSelectorIn, metadata, type Path, portName, portNumber } from './common.js';
import { quote } from '../names.js';
import { SERVICE_ACCOUNT_LABEL } from '../identity.js';
import { HEADER_NAME, httpPattern } from '../http.js';

const L7 = 'L7 rules are enforced only in cluster mode, by the node agent (nhi-cni agent); refusing rather than allowing the whole port';
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

/**
 * With the L7 proxy (Doc.l7 'proxy'): `rules.http` is parsed; the rest of L7
 * stays refused, with the field named.
 */
const L7_PROXY_REFUSED: Record<string, string> = {
  ...CILIUM_REFUSED,
  // Only deny rules still meet `rules` as an unknown key.
  rules: 'L7 rules in a deny rule are not supported (Cilium has none either); deny the port at L4 or allow only the requests wanted',
  dns: 'DNS rules need a DNS proxy, which nhi-cni does not have; refusing rather than allowing the whole port',
  kafka: 'Kafka rules are not enforced by nhi-cni (its L7 proxy speaks HTTP only); refusing rather than allowing the whole port',
  l7proto: 'generic L7 parsers are not enforced by nhi-cni (its L7 proxy speaks HTTP only); refusing rather than allowing the whole port',
  l7: 'generic L7 rules are not enforced by nhi-cni (its L7 proxy speaks HTTP only); refusing rather than allowing the whole port',
  headerMatches: 'headerMatches (secrets, mismatch actions) are not supported by nhi-cni; use headers ("X-Name" or "X-Name: value")',
};

// ---- CiliumNetworkPolicy (cilium.io/v2) ----

export const CnpPort = z.strictObject({ port: z.optional(z.unknown()), endPort: z.optional(z.unknown()), protocol: z.optional(z.unknown()) });
export const CnpHttp = z.strictObject({
  method: z.nullish(z.string()),
  path: z.nullish(z.string()),
  host: z.nullish(z.string()),
  headers: z.nullish(z.array(z.string())),
});
export const CnpL7Rules = z.strictObject({ http: z.nullish(z.array(CnpHttp)) });
export const CnpCidrSet = z.strictObject({ cidr: z.string(), except: z.nullish(z.array(z.string())) });

/** The spec schema: without L7 (`rules` an unknown, refused key) or with `rules.http` on allow rules. */
function specSchema(l7: boolean) {
  const portRule = l7
    ? z.strictObject({ ports: z.nullish(z.array(CnpPort)), rules: z.nullish(CnpL7Rules) })
    : z.strictObject({ ports: z.nullish(z.array(CnpPort)) });
  const l4PortRule = z.strictObject({ ports: z.nullish(z.array(CnpPort)) });
  const ingress = (pr: typeof l4PortRule) => z.strictObject({
    fromEndpoints: z.nullish(z.array(LabelSelector)),
    fromCIDR: z.nullish(z.array(z.string())),
    fromCIDRSet: z.nullish(z.array(CnpCidrSet)),
    toPorts: z.nullish(z.array(pr)),
  });
  const egress = (pr: typeof l4PortRule) => z.strictObject({
    toEndpoints: z.nullish(z.array(LabelSelector)),
    toCIDR: z.nullish(z.array(z.string())),
    toCIDRSet: z.nullish(z.array(CnpCidrSet)),
    toPorts: z.nullish(z.array(pr)),
  });
  return z.strictObject({
    endpointSelector: LabelSelector,
    ingress: z.nullish(z.array(ingress(portRule as typeof l4PortRule))),
    // Deny rules never carry L7 (nor does Cilium allow it).
    ingressDeny: z.nullish(z.array(ingress(l4PortRule))),
    egress: z.nullish(z.array(egress(portRule as typeof l4PortRule))),
    egressDeny: z.nullish(z.array(egress(l4PortRule))),
    enableDefaultDeny: z.nullish(z.strictObject({ ingress: z.nullish(z.boolean()), egress: z.nullish(z.boolean()) })),
    labels: z.optional(z.unknown()),
    description: z.optional(z.unknown()),
  });
}

export const CnpSpec = specSchema(false);
const CnpSpecL7 = specSchema(true);
type CnpPortRuleIn = { ports?: z.infer<typeof CnpPort>[] | null; rules?: z.infer<typeof CnpL7Rules> | null };

export const NS_LABELS = 'io.cilium.k8s.namespace.labels.';

/** Cilium selector keys: strip the k8s:/any: source; the pod's namespace label selects namespaces. */
export const ciliumKey = (doc: Doc): KeyMap => (raw, path) => {
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
  // The pod's service account: a label the identity derives from it (identity.ts).
  if (key === SERVICE_ACCOUNT_LABEL) return { ns: false, key };
  if (key.startsWith('io.cilium.')) {
    doc.fail(path, `Cilium label ${quote(key)} (cluster, …) is not supported by nhi-cni`);
  }
  return { ns: false, key };
};

export function cnpEndpoints(sel: LabelSelectorIn, doc: Doc, path: Path): Peer {
  const { pods, namespaces } = labelSelector(sel, doc, path, ciliumKey(doc));
  // Without a namespace label the selector means endpoints of the policy's namespace.
  if (!namespaces) return { kind: 'pods', pods };
  return isEmpty(pods) ? { kind: 'pods', namespaces } : { kind: 'pods', pods, namespaces };
}

export function cnpPort(p: z.infer<typeof CnpPort>, doc: Doc, path: Path): PortRule[] {
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

export const AMBIGUOUS_PEERS = 'an empty list is ambiguous (Cilium reads it as absent); remove the key, or list at least one entry';

export function cnpRule(
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
  const toPorts = r.toPorts as CnpPortRuleIn[] | undefined | null;
  if (toPorts) {
    ports = toPorts.flatMap((pr, i) => {
      const at = [...path, 'toPorts', i];
      if (!pr.ports || pr.ports.length === 0) doc.fail([...at, 'ports'], 'required: list at least one port');
      const rawPr = dig(raw, ['toPorts', i]);
      // Only reachable with Doc.l7 'proxy': otherwise the schema refused `rules`.
      const http = isMap(rawPr) && Object.hasOwn(rawPr, 'rules') ? httpRules(rawPr.rules, doc, [...at, 'rules']) : undefined;
      return pr.ports.flatMap((p, j) => {
        const rules = cnpPort(p, doc, [...at, 'ports', j]);
        return http ? httpPorts(rules, p, http, doc, [...at, 'ports', j]) : rules;
      });
    });
  }
  // `{}`: no peer at all (Cilium's default-deny idiom); it allows nothing.
  if (peers.length === 0 && ports === undefined) return undefined;
  const rule: Rule = {};
  if (peers.length > 0) rule.peers = peers; // several peer kinds: OR-ed; none: every peer
  if (ports) rule.ports = ports;
  return rule;
}

// ---- HTTP rules (Doc.l7 'proxy' only) ----

const AMBIGUOUS_HTTP = 'an empty list is ambiguous (Cilium reads it as no L7 rule, allowing the whole port); remove rules for an L4 allow, or list the requests allowed';

/** `rules` of one toPorts entry: its HTTP rules, never empty. */
function httpRules(raw: unknown, doc: Doc, path: Path): HttpRule[] {
  if (!isMap(raw) || !Object.hasOwn(raw, 'http')) {
    doc.fail(path, 'must name the L7 rules (http); an empty rules is ambiguous, remove it for an L4 allow');
  }
  const list = raw.http;
  if (!Array.isArray(list) || list.length === 0) doc.fail([...path, 'http'], AMBIGUOUS_HTTP);
  return list.map((h, k) => httpRule(h as z.infer<typeof CnpHttp>, doc, [...path, 'http', k]));
}

function httpRule(h: z.infer<typeof CnpHttp>, doc: Doc, path: Path): HttpRule {
  const rule: HttpRule = { headers: [], at: formatPath([...doc.prefix, ...path]) };
  for (const field of ['method', 'path', 'host'] as const) {
    const v = h[field];
    if (v === undefined || v === null || v === '') continue; // Cilium: omitted or empty, anything
    const p = httpPattern(v);
    if ('error' in p) doc.fail([...path, field], `${quote(v)}: ${p.error}`);
    rule[field] = v;
  }
  (h.headers ?? []).forEach((text, i) => rule.headers.push(headerRule(text, doc, [...path, 'headers', i])));
  if (rule.method === undefined && rule.path === undefined && rule.host === undefined && rule.headers.length === 0) {
    doc.fail(path, 'an HTTP rule with no method, path, host or header matches every request; remove rules for an L4 allow, or name what is allowed');
  }
  return rule;
}

/**
 * Cilium's two header forms (pkg/envoy/server.go getHTTPRule): `Name` for
 * presence, `Name: value` (split at the first space, trailing colons dropped
 * from the name) for exactly that value. Anything else is refused: a name
 * that is not an HTTP token, or a value with surrounding blanks, could never
 * match, and silently never matching is not what its author meant either.
 */
function headerRule(text: string, doc: Doc, path: Path): HttpHeaderRule {
  const sp = text.indexOf(' ');
  const name = sp < 0 ? text : text.slice(0, sp).replace(/:+$/, '');
  const value = sp < 0 ? undefined : text.slice(sp + 1);
  if (!HEADER_NAME.test(name)) {
    const hint = sp < 0 && text.includes(':') ? '; write "Name: value" (a space after the colon) or just "Name" for presence' : '';
    doc.fail(path, `${quote(text)}: ${quote(name)} is not an HTTP header name${hint}`);
  }
  if (value === undefined) return { name };
  // eslint-disable-next-line no-control-regex
  if (value === '' || value !== value.trim() || /[\x00-\x1f\x7f]/.test(value)) {
    doc.fail(path, `${quote(text)}: the value must be non-empty, without surrounding blanks or control characters`);
  }
  return { name, value };
}

/** The port clauses of a toPorts entry with HTTP rules: TCP only, one port each (one redirect per pod and port). */
function httpPorts(rules: PortRule[], p: z.infer<typeof CnpPort>, http: HttpRule[], doc: Doc, path: Path): PortRule[] {
  const proto = p.protocol ?? 'ANY';
  if (proto !== 'TCP' && proto !== 'ANY') doc.fail([...path, 'protocol'], `HTTP rules need TCP, not ${describe(proto)}`);
  const first = rules[0]!;
  if (first.port === undefined) doc.fail([...path, 'port'], 'HTTP rules need a port (every port cannot be redirected to the L7 proxy)');
  if (first.endPort !== undefined) doc.fail([...path, 'endPort'], 'HTTP rules on a port range are not supported by nhi-cni yet; list the ports');
  // ANY: only its TCP half can carry HTTP; the UDP half allows nothing (narrower, never wider).
  return rules.filter((r) => r.protocol === 'TCP').map((r) => ({ ...r, http }));
}

export const FROM = { endpoints: 'fromEndpoints', cidr: 'fromCIDR', cidrSet: 'fromCIDRSet' };
export const TO = { endpoints: 'toEndpoints', cidr: 'toCIDR', cidrSet: 'toCIDRSet' };

export function cnpSpec(raw: unknown, doc: Doc, path: Path, namespace: string, name: string): Policy {
  const s = doc.l7 === 'proxy' ? check(CnpSpecL7, raw, doc, path, L7_PROXY_REFUSED) : check(CnpSpec, raw, doc, path, CILIUM_REFUSED);
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

export function ciliumNetworkPolicy(obj: Record<string, unknown>, doc: Doc): Policy[] {
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

