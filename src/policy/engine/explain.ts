// explain: whether a connection between two endpoints (pods of the node's
// policy state, or addresses) would be allowed, and which policies decide it.
// The verdict comes from the reference evaluator (src/policy/evaluate.ts).
import { formatIp, parseIp } from '../../net/ip.js';
import { evaluate, explain as explainDecision, type Decision, type Endpoint } from '../evaluate.js';
import { policyId, type Identity, type Policy, type Protocol } from '../model.js';
import { STATE_FILE, type StoredState } from './store.js';

/** An endpoint the state cannot resolve, or a pair with no common address family: bad input, not a verdict. */
export class ExplainInputError extends Error {}

export interface ExplainQuery {
  /** `<namespace>/<pod>` (a pod of the node's policy state) or an IP address (the pod holding it, else a non-pod). */
  from: string;
  to: string;
  port: number;
  protocol: Protocol;
  policies: Policy[];
}

export interface ExplainedEndpoint {
  /** How to show it: "ns/pod (ip)", or the address and what holds it. */
  shown: string;
  endpoint: Endpoint;
}

export interface Explanation {
  from: ExplainedEndpoint;
  to: ExplainedEndpoint;
  decision: Decision;
  /** The evaluator's account of the verdict, one line per direction. */
  text: string;
  /** The policies that decide it (allow it, deny it, or isolate without allowing), in the order given. */
  deciding: Policy[];
}

interface Resolved {
  label: string;
  /** A fixed address (the argument was one), or the pod's addresses. */
  ips: string[];
  fixed: boolean;
  identity?: Identity;
}

function resolveEndpoint(arg: string, state: StoredState, which: string, stateDir: string): Resolved {
  const ip = parseIp(arg);
  if (ip) {
    const text = formatIp(ip);
    const holder = Object.values(state.pods).find((p) => p.ips.some((a) => {
      const x = parseIp(a);
      return x !== undefined && formatIp(x) === text;
    }));
    if (holder?.identity) {
      return { label: `${holder.identity.namespace}/${holder.identity.name} (${text})`, ips: [text], fixed: true, identity: holder.identity };
    }
    // A pod of another node (cluster mode: a peer the agent stored).
    const peer = holder ? undefined : state.remote.find((r) => r.ips.some((a) => {
      const x = parseIp(a);
      return x !== undefined && formatIp(x) === text;
    }));
    if (peer?.identity) {
      return { label: `${peer.identity.namespace}/${peer.identity.name} (${text}, on ${peer.id.split('/')[0]})`, ips: [text], fixed: true, identity: peer.identity };
    }
    const what = holder ? `pod ${holder.containerId} without a workload identity` : 'not a pod of this node, nor a known pod of another';
    return { label: `${text} (${what})`, ips: [text], fixed: true };
  }
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(arg);
  if (!m) throw new ExplainInputError(`--${which} ${JSON.stringify(arg)}: expected <namespace>/<pod> or an IP address`);
  const found: { ips: string[]; identity?: Identity }[] = Object.keys(state.pods).sort().map((k) => state.pods[k]!)
    .filter((p) => p.identity?.namespace === m[1] && p.identity?.name === m[2]);
  // Else a pod of another node (cluster mode).
  if (found.length === 0) found.push(...state.remote.filter((r) => r.identity?.namespace === m[1] && r.identity?.name === m[2]));
  if (found.length === 0) {
    throw new ExplainInputError(`--${which} ${arg}: no such pod in the policy state (${stateDir}/${STATE_FILE})`);
  }
  const ips = [...new Set(found.flatMap((p) => p.ips.flatMap((a) => {
    const x = parseIp(a);
    return x ? [formatIp(x)] : [];
  })))];
  return { label: arg, ips, fixed: false, identity: found[0]!.identity! };
}

const famOf = (a: string) => parseIp(a)!.family;

export function explainConnection(state: StoredState, stateDir: string, q: ExplainQuery): Explanation {
  const from = resolveEndpoint(q.from, state, 'from', stateDir);
  const to = resolveEndpoint(q.to, state, 'to', stateDir);
  // One address family for both ends: a fixed address decides it, else IPv4 when both have one.
  const fams = [4, 6].filter((f) => [from, to].every((e) => e.ips.some((a) => famOf(a) === f)));
  const fam = from.fixed ? famOf(from.ips[0]!) : to.fixed ? famOf(to.ips[0]!) : fams[0];
  const end = (e: Resolved, name: string): ExplainedEndpoint => {
    const ip = e.ips.find((x) => famOf(x) === fam);
    if (!ip) throw new ExplainInputError(`${name} ${e.label} has no IPv${fam ?? '4 or IPv6'} address in the policy state`);
    return { shown: e.fixed ? e.label : `${e.label} (${ip})`, endpoint: { ip, ...(e.identity ? { identity: e.identity } : {}) } };
  };
  const f = end(from, '--from');
  const t = end(to, '--to');
  const decision = evaluate(q.policies, f.endpoint, t.endpoint, q.port, q.protocol);
  const deciding = new Set<string>();
  for (const d of [decision.egress, decision.ingress]) {
    if (d.denied !== undefined) deciding.add(d.denied);
    else if (d.isolated && d.allowed) d.by.forEach((x) => deciding.add(x));
    else if (d.isolated) d.selecting.forEach((x) => deciding.add(x));
  }
  return { from: f, to: t, decision, text: explainDecision(decision), deciding: q.policies.filter((p) => deciding.has(policyId(p))) };
}
