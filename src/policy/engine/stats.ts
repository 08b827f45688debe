// Per-policy counters: connections allowed and denied on this node, from the
// named counters of the kernel's policy table and the last compile's profiles.
import { allowCounter, policyKey, ruleDenyCounter } from '../compile/index.js';
import { policyId } from '../model.js';
import type { EngineContext } from './apply.js';

export interface PolicyStatsRow {
  policy: string;
  kind: string;
  allowed: number;
  denied: number;
}

export interface PolicyStats {
  /** One per policy of the last compile, sorted by policy id. */
  rows: PolicyStatsRow[];
  /** Why the table could not be listed (no policy applied in this network namespace?): the rows then count nothing. */
  unavailable?: string;
}

export async function policyStats({ store, kernel }: Pick<EngineContext, 'store' | 'kernel'>): Promise<PolicyStats> {
  const state = store.read();
  const table = await kernel.listPolicyTable();
  const counters = new Map<string, number>();
  for (const o of typeof table === 'string' ? [] : table) if (o.counter?.name) counters.set(o.counter.name, o.counter.packets ?? 0);
  const packets = (name: string) => counters.get(name) ?? 0;
  const rows = state.policies.map((p) => {
    const key = policyKey(p);
    // Its own deny rules (ruleDenyCounter), plus the default deny of every
    // profile in which it isolates that direction.
    let denied = packets(ruleDenyCounter(p));
    for (const prof of Object.values(state.profiles)) {
      if (prof.denyCounter && prof.policies.includes(key) && p.isolates[prof.direction]) denied += packets(prof.denyCounter);
    }
    return { policy: policyId(p), kind: p.kind, allowed: packets(allowCounter(key)), denied };
  }).sort((a, b) => a.policy.localeCompare(b.policy));
  return typeof table === 'string' ? { rows, unavailable: table } : { rows };
}
