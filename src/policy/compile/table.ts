// The table the compiler owns and the fixed parts of its layout: names that
// the kernel, the state file and the CLI all agree on.

export const POLICY_TABLE = 'nhi_policy';
/**
 * The version of the table's layout (base chains, maps, naming). A state
 * compiled under another one is applied whole, never as a difference: an
 * upgraded plugin rewrites the table at its first change.
 */
export const POLICY_LAYOUT = 5;
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
