// What goes into a compile and what comes out of it.
import type { Identity } from '../model.js';
import type { NftCommand } from '../../sys/nft.js';

/** A pod as the compiler sees it: one of this node's, or (remote) a peer on another node. */
export interface LocalPod {
  /** "<network>/<containerID>/<ifname>" for a pod of this node; unique among remote pods too. */
  id: string;
  /** Bare addresses. */
  ips: string[];
  identity?: Identity;
  /**
   * A pod of another node (cluster mode): its addresses join the peer sets
   * that select it, but it has no profile here, and no verdict-map entry:
   * its own node enforces its policies.
   */
  remote?: boolean;
}

export interface AuditOptions {
  /** Everything is in audit mode: log what would be denied, let it pass. */
  all: boolean;
  namespaces: string[];
  /** Policy ids ("ns/name"). */
  policies: string[];
}

/** The names a compile created, kept in state so the next one can remove what is no longer used. */
export interface CompiledNames {
  chains: string[];
  sets: string[];
}

/**
 * What a compile wants in the kernel, kept in the node's state so the next
 * ADD or DEL can apply only the difference (see delta()). Chain names are
 * hashes of their content, so a chain is either unchanged or new.
 */
export interface Desired {
  sets: Record<string, { type: string | string[]; elems: string[] }>;
  chains: string[];
  counters: string[];
  /** map name -> address -> profile chain. */
  vmaps: Record<string, Record<string, string>>;
}

/** What a group of alike pods (classKey) is part of: set memberships and profile chains. */
export interface ClassEntry {
  /** [set] or, for (address . protocol . port) sets, [set, protocol, port]. */
  sets: [string, string?, number?][];
  /** In a named-port set through an ipBlock: membership depends on the address. */
  ipDependent: boolean;
  ingress?: string;
  egress?: string;
}

export interface Compiled {
  /** Per pod group (classKey with labelKeys), for fastDelta(). */
  classIndex: Record<string, ClassEntry>;
  /** The label keys the policies select on: the others do not tell pod groups apart. */
  labelKeys: string[];
  /** Per pod id: set elements that follow its addresses rather than its group (see ClassEntry.ipDependent). */
  podElems: Record<string, [string, string][]>;
  /** The whole state, flushed and refilled: for a first apply, a policy change, or recovery. */
  commands: NftCommand[];
  desired: Desired;
  /** The rules of every chain of this compile, for delta() to create new ones. */
  chainRules: Record<string, unknown[][]>;
  names: CompiledNames;
  /**
   * Profile chain -> the policies acting in it (policyKey: "Kind/ns/name")
   * and, when it denies, the counter of what it denied: for `policy stats`.
   */
  profiles: Record<string, { direction: Direction; policies: string[]; denyCounter?: string }>;
  /** Pod id -> its profile chains, for CHECK and explain. */
  pods: Record<string, { ingress?: string; egress?: string }>;
}

/** What a compile leaves for the operations after it: enough to know, from the pods alone, what the kernel holds. */
export type CompiledIndex = Pick<Compiled, 'classIndex' | 'podElems' | 'names' | 'labelKeys'> & { desired: Pick<Desired, 'counters'> };

export type Direction = 'ingress' | 'egress';
export type Fam = 4 | 6;

/** Addresses reaching the compiler are validated already: the family is in the spelling. */
export function famOf(ip: string): Fam {
  return ip.includes(':') ? 6 : 4;
}
