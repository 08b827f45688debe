// sync: the manifests re-read and applied to every pod of the node's state,
// the whole table rewritten (it heals a kernel that drifted), and what changed.
import type { Compiled } from '../compile/index.js';
import { policyId, type Policy } from '../model.js';
import { reconcile, type EngineContext } from './apply.js';

export interface SyncReport {
  policies: { now: number; was: number; added: string[]; removed: string[]; changed: string[] };
  pods: { total: number; withIdentity: number; underProfile: number };
  profiles: { now: number; was: number; added: number; removed: number };
  compiled: Compiled;
}

const strip = (p: Policy) => JSON.stringify({ ...p, source: undefined });
const byName = (l: Policy[]) => new Map(l.map((p) => [`${p.kind} ${policyId(p)}`, p]));

export async function syncAll(ctx: EngineContext, policies: Policy[]): Promise<SyncReport> {
  const before = ctx.store.read();
  // Read now: the apply replaces the files they come from.
  const old = byName(before.policies);
  const oldProfiles = new Set(Object.keys(before.profiles));
  const { compiled } = await reconcile(ctx, { policies, full: true });
  // full: always compiled, never the fast path.
  if (!compiled) throw new Error('policy sync: the full apply returned no compile');
  const after = ctx.store.read();
  const now = byName(after.policies);
  const pods = Object.values(after.pods);
  const newProfiles = Object.keys(compiled.profiles);
  return {
    policies: {
      now: now.size,
      was: old.size,
      added: [...now.keys()].filter((k) => !old.has(k)),
      removed: [...old.keys()].filter((k) => !now.has(k)),
      changed: [...now.keys()].filter((k) => old.has(k) && strip(old.get(k)!) !== strip(now.get(k)!)),
    },
    pods: { total: pods.length, withIdentity: pods.filter((p) => p.identity).length, underProfile: Object.keys(compiled.pods).length },
    profiles: {
      now: newProfiles.length,
      was: oldProfiles.size,
      added: newProfiles.filter((p) => !oldProfiles.has(p)).length,
      removed: [...oldProfiles].filter((p) => !(p in compiled.profiles)).length,
    },
    compiled,
  };
}
