// Kernel names (content hashes) and log prefixes. A name is a hash of what
// the object means, so two compiles that mean the same produce the same names.
import { createHash } from 'node:crypto';
import { policyId, type Identity, type Policy } from '../model.js';
import type { Direction } from './types.js';

/** A short content hash for kernel names. */
export type Hasher = (s: string, n?: number) => string;

export const contentHash: Hasher = (s, n = 12) => createHash('sha256').update(s).digest('hex').slice(0, n);

/**
 * A contentHash remembering its answers, for one compile: it asks for the
 * same names once per pod group. Made per compile, so nothing outlives it.
 */
export function memoHash(): Hasher {
  const seen = new Map<string, string>();
  return (s, n = 12) => {
    const k = `${n}:${s}`;
    let h = seen.get(k);
    if (h === undefined) seen.set(k, (h = contentHash(s, n)));
    return h;
  };
}

/** The text a content name is the hash of: its parts as JSON (the spelling names already in kernels depend on). */
export const contentKey = (...parts: unknown[]): string => JSON.stringify(parts);

/** Code-point order: localeCompare goes through ICU and was most of a compile's time. */
export const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * What names a policy in the kernel: its kind too, since a NetworkPolicy and
 * a CiliumNetworkPolicy may share a namespace and name.
 */
export const policyKey = (p: Pick<Policy, 'kind' | 'namespace' | 'name'>) => `${p.kind}/${policyId(p)}`;
/** Connections a policy allowed (argument: policyKey). */
export const allowCounter = (key: string, hash: Hasher = contentHash) => `a_${hash(key)}`;
/** Connections denied by a policy's own deny rules (CiliumNetworkPolicy ingressDeny/egressDeny). */
export const ruleDenyCounter = (p: Pick<Policy, 'kind' | 'namespace' | 'name'>, hash: Hasher = contentHash) => `d_${hash(policyKey(p))}`;

/** The label that names a workload in logs: the usual app labels, else the first label, else "-". */
const WORKLOAD_LABELS = ['app.kubernetes.io/name', 'app', 'k8s-app', 'name'];
export function workloadOf(i: Identity): string {
  for (const k of WORKLOAD_LABELS) if (Object.hasOwn(i.labels, k)) return `${i.namespace}/${i.labels[k]}`;
  const first = Object.keys(i.labels).sort(byText)[0];
  return first === undefined ? `${i.namespace}/-` : `${i.namespace}/${first}=${i.labels[first]}`;
}

/**
 * A log prefix: "nhi-deny in wl=<ns>/<app> pol=<policy>[+n]: ", the workload
 * left out for a deny rule of a policy (its chain is shared by workloads; the
 * logged address names the pod: `nhi-cni who`). Names and labels are
 * validated (no quote or space can reach here); nft allows 127 bytes.
 */
export function logPrefix(kind: 'deny' | 'audit', dir: Direction, policies: string[], workload?: string): string {
  const pol = policies.length > 1 ? `${policies[0]}+${policies.length - 1}` : (policies[0] ?? '-');
  const head = `nhi-${kind} ${dir === 'ingress' ? 'in' : 'eg'}${workload ? ` wl=${workload}` : ''} pol=${pol}`;
  return `${head.slice(0, 118)}: `;
}
