// The state of one compile: what it has built so far and what it remembers
// while building. Made per compile and dropped with it (no module-level
// cache: a long-running caller would keep every answer forever).
import type { Policy } from '../model.js';
import { groupPods, peerKey, relevantLabelKeys, type PodGroup, type PodPeer } from './groups.js';
import { memoHash, type Hasher } from './names.js';
import type { AuditOptions, ClassEntry, LocalPod } from './types.js';

export interface NftSet {
  type: string | string[];
  elems: unknown[];
}

export interface CompileContext {
  readonly policies: Policy[];
  readonly audit: AuditOptions;
  /** relevantLabelKeys() of the policies. */
  readonly labelKeys: string[];
  readonly groups: PodGroup[];
  readonly hash: Hasher;
  /** peerKey(), remembered per peer. */
  readonly peerKey: (policy: Policy, peer: PodPeer) => string;
  /** Which groups a pod peer (peerKey) selects: shared by its IPv4 and IPv6 sets. */
  readonly selected: Map<string, PodGroup[]>;
  readonly sets: Map<string, NftSet>;
  /** Profile chain -> its rules. */
  readonly chains: Map<string, unknown[][]>;
  readonly counters: Set<string>;
  /** Per pod group: the sets its addresses are in (with the port, for named-port sets), and its profiles. */
  readonly membership: Map<string, ClassEntry>;
  /** Per pod: elements that depend on its addresses, not its group (named ports through an ipBlock). */
  readonly podElems: Record<string, [string, string][]>;
}

export function newContext(policies: Policy[], pods: LocalPod[], audit: AuditOptions): CompileContext {
  const hash = memoHash();
  const labelKeys = relevantLabelKeys(policies);
  const peerKeys = new WeakMap<PodPeer, string>();
  return {
    policies,
    audit,
    labelKeys,
    groups: groupPods(pods, labelKeys, hash),
    hash,
    peerKey: (policy, peer) => {
      let k = peerKeys.get(peer);
      if (k === undefined) peerKeys.set(peer, (k = peerKey(policy, peer)));
      return k;
    },
    selected: new Map(),
    sets: new Map(),
    chains: new Map(),
    counters: new Set(),
    membership: new Map(),
    podElems: {},
  };
}

/** A group's entry in the membership index, made empty on first use. */
export function memberOf(ctx: CompileContext, key: string): ClassEntry {
  let m = ctx.membership.get(key);
  if (!m) ctx.membership.set(key, (m = { sets: [], ipDependent: false }));
  return m;
}
