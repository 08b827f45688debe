// The reference semantics of the policy model: one connection in, a verdict
// with its reasons out. `policy explain` prints it, and the nftables compiler
// is checked against it. Deliberately the obvious loops over every policy:
// this is the oracle, not the fast path.
import { contains, parseCidr, parseIp, type Cidr, type Ip } from '../net/ip.js';
import { policyId, type HttpRule, type Identity, type Peer, type Policy, type PortRule, type Protocol, type Rule } from './model.js';
import { NAMESPACE_NAME_LABEL } from './identity.js';
import { selects } from './selector.js';

/** One end of a connection. No identity: not a pod (the node, another host, the outside). */
export interface Endpoint {
  ip: string;
  identity?: Identity;
}

export type Direction = 'ingress' | 'egress';

export interface DirectionDecision {
  /** Some policy of the pod's namespace selects it and isolates this direction. */
  isolated: boolean;
  allowed: boolean;
  /** Policy ids that allowed the connection, or the one deny policy that denied it. */
  by: string[];
  /** The deny policy (CiliumNetworkPolicy ingressDeny/egressDeny) that denied it. */
  denied?: string;
  /** Policy ids that select this endpoint for this direction. */
  selecting: string[];
}

export interface Decision {
  allowed: boolean;
  egress: DirectionDecision;
  ingress: DirectionDecision;
}

/**
 * How port clauses with HTTP rules (PortRule.http) are judged. Without
 * `http` (the kernel's view, which the compiler implements): such a clause
 * allows nothing; connections to its port reach the pod only through the L7
 * proxy. With `http` (the proxy's view, src/l7/decide.ts): a clause of
 * either direction allows when `http` says so for the request at hand.
 */
export interface EvaluateOptions {
  http?: (rules: HttpRule[], policy: Policy, dir: Direction) => boolean;
}

interface Conn {
  from: Endpoint;
  to: Endpoint;
  fromIp: Ip;
  toIp: Ip;
  port: number;
  protocol: Protocol;
  opts: EvaluateOptions;
}

const cidrCache = new Map<string, Cidr>();

function cidr(text: string): Cidr {
  let c = cidrCache.get(text);
  if (!c) {
    c = parseCidr(text);
    if (!c) throw new Error(`policy CIDR ${JSON.stringify(text)} is not an address/prefix`);
    cidrCache.set(text, c);
  }
  return c;
}

function ip(e: Endpoint, which: string): Ip {
  const a = parseIp(e.ip);
  if (!a) throw new Error(`${which} address ${JSON.stringify(e.ip)} is not an IP address`);
  return a;
}

/** Namespace labels with kubernetes.io/metadata.name always implied, as the API server does. */
function namespaceLabels(i: Identity): Record<string, string> {
  return { ...i.namespaceLabels, [NAMESPACE_NAME_LABEL]: i.namespace };
}

function peerMatches(policy: Policy, peer: Peer, e: Endpoint, eIp: Ip): boolean {
  if (peer.kind === 'cidr') {
    // ipBlock matches any address in the block, pod addresses included
    // (upstream e2e "egress access to server in CIDR block").
    return contains(cidr(peer.cidr), eIp) && !peer.except.some((x) => contains(cidr(x), eIp));
  }
  const id = e.identity;
  if (!id) return false;
  if (peer.namespaces === undefined) {
    if (id.namespace !== policy.namespace) return false;
  } else if (!selects(peer.namespaces, namespaceLabels(id))) {
    return false;
  }
  return peer.pods === undefined || selects(peer.pods, id.labels);
}

/**
 * Named ports resolve on the destination pod: the selected pod for ingress, the
 * peer for egress; both are `to`. Towards a non-pod, or a pod without that
 * name and protocol, a named port matches nothing.
 */
function portMatches(pr: PortRule, c: Conn, policy: Policy, dir: Direction): boolean {
  if (pr.protocol !== c.protocol) return false;
  if (pr.http !== undefined) {
    // Not an L4 allow: only the proxy, which sees the request, may allow it.
    if (c.opts.http === undefined || !numberMatches(pr, c)) return false;
    return c.opts.http(pr.http, policy, dir);
  }
  return numberMatches(pr, c);
}

function numberMatches(pr: PortRule, c: Conn): boolean {
  if (pr.port === undefined) return true;
  if (typeof pr.port === 'number') {
    return pr.endPort === undefined ? c.port === pr.port : c.port >= pr.port && c.port <= pr.endPort;
  }
  const named = c.to.identity?.ports.find((p) => p.name === pr.port && p.protocol === c.protocol);
  return named !== undefined && named.containerPort === c.port;
}

function ruleMatches(policy: Policy, rule: Rule, dir: Direction, c: Conn): boolean {
  const [peer, peerIp] = dir === 'ingress' ? [c.from, c.fromIp] : [c.to, c.toIp];
  // undefined = everyone / every port; an empty list matches nothing (the
  // parser turns the API's empty `from`/`ports` into undefined).
  if (rule.peers !== undefined && !rule.peers.some((p) => peerMatches(policy, p, peer, peerIp))) return false;
  if (rule.ports !== undefined && !rule.ports.some((p) => portMatches(p, c, policy, dir))) return false;
  return true;
}

/**
 * The policies that act on `self` for `dir`: those of its namespace whose
 * subject selects it and that isolate the direction or carry deny rules for it
 * (a Cilium deny applies even under enableDefaultDeny=false). For a
 * CiliumNetworkPolicy, allow rules count even when it does not isolate
 * (they add to another policy's isolation); a NetworkPolicy's rules for a
 * direction not in its policyTypes are ignored, as the API says.
 */
function decideDirection(policies: Policy[], self: Endpoint, dir: Direction, c: Conn): DirectionDecision {
  const id = self.identity;
  if (!id) return { isolated: false, allowed: true, by: [], selecting: [] };
  const allowKey = dir;
  const denyKey = dir === 'ingress' ? 'ingressDeny' : 'egressDeny';
  const mine = policies.filter((p) => p.namespace === id.namespace && selects(p.subject, id.labels));
  const isolating = mine.filter((p) => p.isolates[dir]);
  const acting = mine.filter(
    (p) => p.isolates[dir] || p[denyKey].length > 0 || (p.kind === 'CiliumNetworkPolicy' && p[allowKey].length > 0),
  );
  const selecting = acting.map(policyId);
  const isolated = isolating.length > 0;

  // Deny first: a matching deny rule wins over every allow.
  for (const p of acting) {
    if (p[denyKey].some((r) => ruleMatches(p, r, dir, c))) {
      const pid = policyId(p);
      return { isolated, allowed: false, by: [pid], denied: pid, selecting };
    }
  }
  if (!isolated) return { isolated, allowed: true, by: [], selecting };
  // Union of the allow rules of every acting policy: no precedence among them.
  const by = acting
    .filter((p) => (p.isolates[dir] || p.kind === 'CiliumNetworkPolicy') && p[allowKey].some((r) => ruleMatches(p, r, dir, c)))
    .map(policyId);
  return { isolated, allowed: by.length > 0, by, selecting };
}

/**
 * Whether `from` may open a connection to `to` on port/protocol: `from`'s
 * egress (when it is a pod) AND `to`'s ingress (when it is a pod). An egress
 * allow never skips the peer's ingress check (kube-router#916).
 */
export function evaluate(policies: Policy[], from: Endpoint, to: Endpoint, port: number, protocol: Protocol, opts: EvaluateOptions = {}): Decision {
  const c: Conn = { from, to, fromIp: ip(from, 'source'), toIp: ip(to, 'destination'), port, protocol, opts };
  const egress = decideDirection(policies, from, 'egress', c);
  const ingress = decideDirection(policies, to, 'ingress', c);
  return { allowed: egress.allowed && ingress.allowed, egress, ingress };
}

function directionText(name: string, d: DirectionDecision): string {
  const head = d.isolated
    ? `isolated by ${d.selecting.join(', ')}`
    : d.selecting.length > 0
      ? `not isolated (selected by ${d.selecting.join(', ')})`
      : 'not isolated (no policy selects it)';
  let verdict: string;
  if (d.denied !== undefined) verdict = `denied by a deny rule of ${d.denied}`;
  else if (!d.isolated) verdict = 'allowed';
  else if (d.allowed) verdict = `allowed by ${d.by.join(', ')}`;
  else verdict = 'denied: no rule of a selecting policy allows it';
  return `${name}: ${head}; ${verdict}`;
}

/** A short human account of a decision: the verdict, then each direction. */
export function explain(d: Decision): string {
  return [
    d.allowed ? 'ALLOWED' : 'DENIED',
    directionText('egress (source)', d.egress),
    directionText('ingress (destination)', d.ingress),
  ].join('\n');
}
