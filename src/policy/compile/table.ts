// The table the compiler owns and the fixed parts of its layout: names that
// the kernel, the state file and the CLI all agree on.
import type { Expr } from '../../sys/nft.js';

export const POLICY_TABLE = 'nhi_policy';
/**
 * The version of the table's layout (base chains, maps, naming). A state
 * compiled under another one is applied whole, never as a difference: an
 * upgraded plugin rewrites the table at its first change.
 */
export const POLICY_LAYOUT = 6;
/** The table every object of the compiler lives in, as nft JSON spells it: spread into each command. */
export const TABLE = { family: 'inet', table: POLICY_TABLE } as const;

/**
 * (address . port) of the pod ports the agent's L7 proxy serves (src/l7):
 * a connection DNATed from one of them to the proxy's listener on the node is
 * accepted in the input hook (the proxy judges both ends itself). Declared by
 * every full apply, never flushed by it: the agent's L7 controller owns the
 * elements (an engine change does not drop them).
 */
export const L7_REDIRECTED = { 4: 'l7r4', 6: 'l7r6' } as const;

/**
 * (address . port) of this node's pods whose connections to that TCP port
 * the L7 proxy takes for their own egress HTTP rules: matched by the
 * connection's ORIGINAL source and destination port. Same ownership as
 * L7_REDIRECTED.
 */
export const L7_EGRESS_REDIRECTED = { 4: 'l7e4', 6: 'l7e6' } as const;

/**
 * (source . destination . port) of the Service path of egress HTTP rules: a
 * connection of a pod of this node that a Service DNATed to another pod,
 * delivered to the node where the proxy listens on that pod's address for it.
 * Same ownership as L7_REDIRECTED.
 */
export const L7_SERVICE_EGRESS = { 4: 'l7s4', 6: 'l7s6' } as const;

export const l7ServiceEgressSetType = (fam: 4 | 6): string[] => {
  const a = fam === 4 ? 'ipv4_addr' : 'ipv6_addr';
  return [a, a, 'inet_service'];
};

/** Matches a TCP packet delivered to the node whose (source . destination . port) is in `setName` (see L7_SERVICE_EGRESS). */
export function l7ServiceEgressMatch(fam: 4 | 6, setName: string): Expr[] {
  const p = fam === 4 ? 'ip' : 'ip6';
  return [
    { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
    { match: { op: '==', left: { concat: [{ payload: { protocol: p, field: 'saddr' } }, { payload: { protocol: p, field: 'daddr' } }, { payload: { protocol: 'th', field: 'dport' } }] }, right: `@${setName}` } },
  ];
}

/** The type of such a set: (address . port) of one family. */
export const l7RedirectedSetType = (fam: 4 | 6): string[] => [fam === 4 ? 'ipv4_addr' : 'ipv6_addr', 'inet_service'];

/**
 * Matches a connection DNATed from one of the (address . port) pairs in
 * `setName`, by its ORIGINAL destination: `ct status dnat meta l4proto tcp
 * ct original ip[6] daddr . ct original proto-dst @setName`; with `by`
 * 'saddr', by its original source address and destination port (an egress
 * redirect). The policy table's input hook accepts these
 * (src/policy/compile/emit.ts); src/l7 keeps the set's elements.
 */
export function l7RedirectedMatch(fam: 4 | 6, setName: string, by: 'daddr' | 'saddr' = 'daddr'): Expr[] {
  return [
    { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } },
    { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
    { match: { op: '==', left: { concat: [{ ct: { key: `${fam === 4 ? 'ip' : 'ip6'} ${by}`, dir: 'original' } }, { ct: { key: 'proto-dst', dir: 'original' } }] }, right: `@${setName}` } },
  ];
}

/**
 * Matches a TCP packet delivered to the node whose destination is one of the
 * (address . port) pairs in `setName`, a pod's: only the L7 redirect's
 * Service path routes such a packet to the node, to the proxy listening on
 * the pod's address (src/l7/redirect.ts). The proxy judges both ends.
 */
export function l7DeliveredMatch(fam: 4 | 6, setName: string): Expr[] {
  return [
    { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } },
    { match: { op: '==', left: { concat: [{ payload: { protocol: fam === 4 ? 'ip' : 'ip6', field: 'daddr' } }, { payload: { protocol: 'th', field: 'dport' } }] }, right: `@${setName}` } },
  ];
}

/** Pod address -> its egress (eg) or ingress (in) profile chain. */
export const VERDICT_MAPS = ['eg4', 'eg6', 'in4', 'in6'] as const;
export type VerdictMap = (typeof VERDICT_MAPS)[number];

/**
 * ICMPv6 types of neighbour and router discovery and multicast listener
 * discovery (RFC 4861, 2710, 3810): MLD query 130, report 131, done 132, router
 * solicitation 133 and advertisement 134, neighbour solicitation 135 and
 * advertisement 136, MLDv2 report 143.
 */
export const IPV6_LINK_CONTROL = [130, 131, 132, 133, 134, 135, 136, 143];

/** A set's type, which its name tells: n_ sets hold (address . protocol . port), the others addresses. */
export function setType(name: string): string | string[] {
  const addr = name.endsWith('_6') ? 'ipv6_addr' : 'ipv4_addr';
  return name.startsWith('n_') ? [addr, 'inet_proto', 'inet_service'] : addr;
}
