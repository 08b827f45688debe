// The nftables redirect that takes connections to a (pod, port) an HTTP rule
// covers to the agent's listener for it: DNAT in prerouting, in a table of
// its own (inet nhi_l7). Pure: a transaction for the runner to apply.
//
// Why DNAT and not TPROXY: a TPROXY listener needs IP_TRANSPARENT on its
// socket, which Node cannot set; DNAT to one listener per (pod, port) gives
// the proxy the original destination by construction (L7Proxy.listen), and
// the original source address is left alone, so `identify` sees the pod.
//
// Fail closed: the rules live in the kernel, not in the agent. When the agent
// (and so the listener) is down, a redirected connection meets a closed port
// on the node and is refused (TCP reset): nothing reaches the pod unchecked.
// And the redirect is the only way in: the compiler never turns a clause with
// HTTP rules into an L4 allow, so a connection that escapes the redirect
// (one a Service's DNAT took first: the first DNAT of a connection wins)
// meets the pod's profile in the forward hook, closed for that port.
//
// Only prerouting is hooked: the node's own connections (the proxy's upstream
// ones, kubelet probes) are not redirected. Bridged pod-to-pod traffic meets
// prerouting through br_netfilter (bridge-nf-call-iptables), as the policy
// table's forward hook already requires.
import { l7RedirectedMatch, l7RedirectedSetType } from '../policy/compile/index.js';
import { chain, NftTransaction, rule, table, type Expr } from '../sys/nft.js';


export const L7_TABLE = 'nhi_l7';

/**
 * One redirect: connections to podIp:port go to listenIp:listenPort (an
 * address of the node); with `from`, connections FROM podIp to TCP port
 * `port` of any destination (a pod's egress HTTP rules).
 */
export interface Redirect {
  podIp: string;
  port: number;
  listenIp: string;
  listenPort: number;
  from?: boolean;
}

const v6 = (ip: string) => ip.includes(':');

function redirectRule(r: Redirect): Expr[] {
  if (v6(r.podIp) !== v6(r.listenIp)) throw new Error(`redirect ${r.podIp}:${r.port} to ${r.listenIp}: address families differ`);
  const proto = v6(r.podIp) ? 'ip6' : 'ip';
  return [
    { match: { op: '==', left: { payload: { protocol: proto, field: r.from ? 'saddr' : 'daddr' } }, right: r.podIp } },
    { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: r.port } },
    { counter: null },
    { dnat: { family: proto, addr: r.listenIp, port: r.listenPort } },
  ];
}

/**
 * The whole redirect table as one transaction: created if missing, its chain
 * emptied and refilled, so the kernel holds exactly `redirects` once it is
 * applied (all or nothing), in their order: the first rule a connection
 * matches takes it. An empty list leaves the table with no rule.
 */
export function redirectTransaction(redirects: Redirect[]): NftTransaction {
  const t = new NftTransaction('inet', L7_TABLE);
  const pre = chain('prerouting', { type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' });
  t.add(table(), pre).flush(pre);
  const seen = new Set<string>();
  for (const r of redirects) {
    const k = `${r.from ? 'from ' : ''}${r.podIp}|${r.port}`;
    if (seen.has(k)) throw new Error(`two redirects for ${r.from ? 'connections from ' : ''}${r.podIp}:${r.port}`);
    seen.add(k);
    t.add(rule('prerouting', ...redirectRule(r)));
  }
  return t;
}

/**
 * What the policy table's input chain needs once connections are redirected
 * (docs/l7.md, "How the lead wires it", 4): a redirected connection reaches
 * the input hook with the node as destination, so the source's egress
 * profile would judge it against the node's address. These expressions,
 * followed by `accept`, let through exactly the connections DNATed from a
 * redirect target (their ORIGINAL destination is in `setName`, a set of
 * (address . port) kept beside the redirect, in the same table as the rule);
 * the proxy judges L3/L4 of both ends itself. A connection sent straight to
 * the listener has no DNAT and still meets the profiles.
 */
export const redirectedExprs = l7RedirectedMatch;

/** The type of that set, per family. */
export const redirectedSetType = l7RedirectedSetType;
