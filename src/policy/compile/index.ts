// The policy compiler: policies + the pods of this node -> one nftables
// transaction (JSON objects, never ruleset text). Pure: the runner applies
// what it returns.
//
// Layout, in the table `inet nhi_policy`:
//   chain forward (hook forward)  ct established/related accept;
//                                 ip[6] saddr vmap @eg4/@eg6  (the source pod's egress profile)
//                                 ip[6] daddr vmap @in4/@in6  (the destination pod's ingress profile)
//   chain input   (hook input)    ct established/related accept; ip[6] saddr vmap @eg4/@eg6
//   maps eg4 eg6 in4 in6          pod address -> jump <profile chain>: ONE lookup classifies a connection
//   chains pr_<hash>              a profile: the rules of the policies that select a pod, for one
//                                 direction; pods with the same policies share one chain
//   sets p_<hash>_4/_6            addresses of the pods a rule's peer selector matches
//   sets n_<hash>_4/_6            (address . protocol . port) of egress named ports, per peer pod
//   sets w_<hash>_4/_6            addresses of one pod group, for the deny log naming its workload
//   counters a_<hash> / d_<hash>  connections allowed by a policy / denied by a profile
// Pods on the same bridge are covered by the forward hook through
// br_netfilter (bridge-nf-call-iptables), pod -> node by the input hook, and
// the node's own traffic to its pods (kubelet probes) by neither: it passes.
// Per-packet cost: one map lookup, then the rules of one profile, each a set
// lookup. Adding a pod adds set and map elements; rules change only when the
// policies (or a new combination of them) do.
//
// Files, one step each:
//   groups.ts    pods grouped by what policies see of them; who selects whom
//   sets.ts      the address sets rules look up (p_, n_, w_)
//   rules.ts     one policy rule as nft expressions
//   profiles.ts  per group and direction, the profile chain; groups alike share it
//   emit.ts      the full transaction and the Desired state
//   diff.ts      delta, fastDelta, deriveDesired: only what changed
//   compile.ts   compile(): those steps in order
//   context.ts   the per-compile state and memo; names.ts, expr.ts, table.ts, types.ts: vocabulary
export { compile } from './compile.js';
export { classElems, delta, deriveDesired, fastDelta, mapEntries } from './diff.js';
export { classKey, groupKey } from './groups.js';
export { allowCounter, logPrefix, policyKey, ruleDenyCounter, workloadOf } from './names.js';
export { L7_EGRESS_REDIRECTED, L7_REDIRECTED, L7_SERVICE_EGRESS, l7DeliveredMatch, l7RedirectedMatch, l7ServiceEgressMatch, l7ServiceEgressSetType, l7RedirectedSetType, POLICY_LAYOUT, POLICY_TABLE } from './table.js';
export type { AuditOptions, ClassEntry, Compiled, CompiledIndex, CompiledNames, Desired, LocalPod } from './types.js';
