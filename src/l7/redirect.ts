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
import { run } from '../sys/exec.js';
import { chain, NftTransaction, rule, table, type Expr } from '../sys/nft.js';


export const L7_TABLE = 'nhi_l7';

/**
 * The L7 proxy's connections to pods of other nodes carry the source pod's
 * address (src/sys/transparent.ts); their replies, addressed to that pod,
 * are marked in prerouting when they belong to such a socket (`socket
 * transparent 1`) and routed by this mark to the local table, so the node
 * delivers them to the proxy instead of forwarding them to the pod. One bit,
 * clear of kube-proxy's 0x4000 and 0x8000; the routing table and rule
 * priority are ours too. `nhi-cni uninstall --purge` removes them.
 */
export const L7_DIVERT = { mark: 0x00800000, table: 7700, priority: 7700 } as const;

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
const proto = (ip: string) => (v6(ip) ? 'ip6' : 'ip');

/** `<protocol> <field> == value` (`ip daddr 10.0.3.1`, `tcp dport 8080`). */
const is = (protocol: string, field: string, value: string | number): Expr => ({ match: { op: '==', left: { payload: { protocol, field } }, right: value } });
/** `ct status dnat`: the connection was DNATed (by a Service, or by us). */
const DNATED: Expr = { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } };

function redirectRule(r: Redirect): Expr[] {
  if (v6(r.podIp) !== v6(r.listenIp)) throw new Error(`redirect ${r.podIp}:${r.port} to ${r.listenIp}: address families differ`);
  return [
    is(proto(r.podIp), r.from ? 'saddr' : 'daddr', r.podIp),
    is('tcp', 'dport', r.port),
    { counter: null },
    { dnat: { family: proto(r.podIp), addr: r.listenIp, port: r.listenPort } },
  ];
}

/**
 * The whole redirect table as one transaction: created if missing, its chain
 * emptied and refilled, so the kernel holds exactly `redirects` once it is
 * applied (all or nothing), in their order: the first rule a connection
 * matches takes it. An empty list leaves the table with no rule.
 */
export function redirectTransaction(redirects: Redirect[], o: { divert?: boolean; viaService?: { src: string; ip: string; port: number }[] } = {}): NftTransaction {
  const t = new NftTransaction('inet', L7_TABLE);
  // After kube-proxy's DNAT (dstnat, -100): a connection to a Service address is
  // DNATed by it first, never by this chain (the first DNAT of a connection wins).
  const pre = chain('prerouting', { type: 'nat', hook: 'prerouting', prio: -99, policy: 'accept' });
  t.add(table(), pre).flush(pre);
  // After both DNATs, before routing: packets marked here are routed to the node (L7_DIVERT).
  const divert = chain('divert', { type: 'filter', hook: 'prerouting', prio: -98, policy: 'accept' });
  t.add(divert).flush(divert);
  const mark = { mangle: { key: { meta: { key: 'mark' } }, value: { '|': [{ meta: { key: 'mark' } }, L7_DIVERT.mark] } } };
  if (o.divert) {
    // Replies to the proxy's transparent upstream sockets (src/sys/transparent.ts).
    // Reply direction only: `socket` also finds the proxy's transparent
    // LISTENING sockets on pod addresses, and a new connection to such an
    // address (from another node, say) must keep its own path.
    t.add(rule('divert',
      { match: { op: '==', left: { ct: { key: 'direction' } }, right: 'reply' } },
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
      { match: { op: '==', left: { socket: { key: 'transparent' } }, right: 1 } },
      mark));
    // The Service path: a connection a Service DNATed to a served (pod, port)
    // is delivered to the node, where the proxy listens on the pod's own
    // address (L7Proxy.listen(…, { transparent })); unserved, it finds no
    // socket there and no connection is made.
    for (const r of redirects) {
      if (r.from) continue;
      t.add(rule('divert', DNATED, is(proto(r.podIp), 'daddr', r.podIp), is('tcp', 'dport', r.port), { counter: null }, mark));
    }
    // The Service path of egress rules: a connection of `src` that a Service DNATed to
    // `ip`:`port`, to the proxy listening on that pod's address for it.
    for (const v of o.viaService ?? []) {
      t.add(rule('divert', DNATED, is(proto(v.src), 'saddr', v.src), is(proto(v.src), 'daddr', v.ip), is('tcp', 'dport', v.port), { counter: null }, mark));
    }
  }
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

type IpRunner = (args: string[]) => Promise<{ exitCode: number; stdout: string; stderr: string }>;

/** Whether the routing rule of L7_DIVERT is there for a family (`ip -j rule list priority …`). */
export async function hasDivertRule(family: 4 | 6, ip: IpRunner = (a) => run('ip', a)): Promise<boolean> {
  const listed = await ip([family === 4 ? '-4' : '-6', '-j', 'rule', 'list', 'priority', String(L7_DIVERT.priority)]);
  return listed.exitCode === 0 && (JSON.parse(listed.stdout || '[]') as unknown[]).length > 0;
}

/** The `ip` commands that route L7_DIVERT-marked packets of a family to the local table (idempotent: the rule is added only when missing). */
export async function ensureDivertRouting(family: 4 | 6, ip: IpRunner = (a) => run('ip', a)): Promise<void> {
  const f = family === 4 ? '-4' : '-6';
  const mark = `0x${L7_DIVERT.mark.toString(16)}/0x${L7_DIVERT.mark.toString(16)}`;
  const route = await ip([f, 'route', 'replace', 'local', family === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', String(L7_DIVERT.table)]);
  if (route.exitCode !== 0) throw new Error(`L7: the local route of table ${L7_DIVERT.table} was not set: ${route.stderr.trim()}`);
  if (await hasDivertRule(family, ip)) return;
  const added = await ip([f, 'rule', 'add', 'priority', String(L7_DIVERT.priority), 'fwmark', mark, 'lookup', String(L7_DIVERT.table)]);
  if (added.exitCode !== 0) throw new Error(`L7: the routing rule for the proxy's replies was not added: ${added.stderr.trim()}`);
}
