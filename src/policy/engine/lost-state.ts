// A node's policy state file gone (a state directory removed or lost) while
// the kernel's table still enforces pods: what a change may still do without
// lifting everyone's isolation (see withoutState). Kept apart from policy.ts,
// the normal path (apply.ts), which calls it only when the state file is missing.
import { CniError, Code } from '../../cni/errors.js';
import { formatIp, parseIp } from '../../net/ip.js';
import type { NftCommand, NftObject } from '../../sys/nft.js';
import { POLICY_TABLE } from '../compile/index.js';
import type { PolicyKernel } from './kernel.js';

const canonical = (a: string) => {
  const ip = parseIp(a);
  return ip ? formatIp(ip) : a;
};

/** A set or map element's key as nft lists it (maps list [key, value]; counters wrap it in {elem: {val}}). */
function elementKey(e: unknown): unknown {
  const k = Array.isArray(e) ? e[0] : e;
  const w = (k as { elem?: { val?: unknown } } | null)?.elem;
  return w && typeof w === 'object' && 'val' in w ? w.val : k;
}

function keyHolds(key: unknown, ips: Set<string>): boolean {
  if (typeof key === 'string') return ips.has(canonical(key));
  const parts = (key as { concat?: unknown[] } | null)?.concat;
  return Array.isArray(parts) && parts.some((p) => typeof p === 'string' && ips.has(canonical(p)));
}

/**
 * The state file is missing while the kernel's table may still enforce pods
 * (a state directory removed or lost). Applying the pods we know - none -
 * would flush every verdict map and lift every pod's isolation, so:
 *   - no table, or one without pods: false, the normal path starts afresh;
 *   - a DEL (`forget` given): its addresses' elements are deleted from the
 *     table and nothing else changes; true;
 *   - anything else (ADD, GC, sync): refused, failing closed.
 */
export async function withoutState(kernel: PolicyKernel, stateFile: string, table: NftObject[] | string, forget: string[] | undefined, extra: NftCommand[] = []): Promise<boolean> {
  if (typeof table === 'string') return false;
  const elements: { name: string; key: unknown; map: boolean }[] = [];
  for (const o of table) {
    const map = o.map !== undefined;
    const s = o.map ?? o.set;
    // Set `gen` holds a number, never an address: no need to skip it.
    if (!s?.name) continue;
    for (const e of s.elem ?? []) elements.push({ name: s.name, key: elementKey(e), map });
  }
  if (!elements.some((e) => e.map)) return false;
  if (!forget) {
    throw new CniError(Code.SystemFailure, `the policy state ${stateFile} is missing, but table inet ${POLICY_TABLE} still enforces pods`,
      `refusing to apply an empty state over them (it would lift every pod's isolation): restore the state directory, or delete the table (nft delete table inet ${POLICY_TABLE}) and add the pods again`);
  }
  const ips = new Set(forget.map(canonical));
  const mine = elements.filter((e) => keyHolds(e.key, ips));
  if (!mine.length && !extra.length) return true;
  // The caller's own commands (a port guard to remove) go in the same transaction.
  const r = await kernel.apply([...extra, ...mine.map((e) => ({ delete: { element: { family: 'inet', table: POLICY_TABLE, name: e.name, elem: [e.key] } } }))]);
  if (!r.ok) throw new CniError(Code.SystemFailure, 'removing the pod\'s addresses from the policy table failed', r.error);
  return true;
}
