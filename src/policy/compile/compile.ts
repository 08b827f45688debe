// compile(): policies + the pods of this node -> one nftables transaction
// and the index the next operations start from.
import type { Policy } from '../model.js';
import { memberOf, newContext } from './context.js';
import { desiredState, fullTransaction } from './emit.js';
import { buildProfiles, placeProfiles } from './profiles.js';
import type { AuditOptions, Compiled, CompiledNames, LocalPod } from './types.js';

/**
 * The whole desired state as one transaction (see fullTransaction()), with
 * what the delta paths need to change it later without a rewrite. `remote`:
 * pods of other nodes (cluster mode), peers only (see LocalPod.remote).
 */
export function compile(policies: Policy[], pods: LocalPod[], audit: AuditOptions, previous: CompiledNames = { chains: [], sets: [] }, remote: LocalPod[] = []): Compiled {
  const ctx = newContext(policies, remote.length ? [...pods, ...remote.map((p) => ({ ...p, remote: true }))] : pods, audit);
  const placed = placeProfiles(ctx, buildProfiles(ctx));
  const commands = fullTransaction(ctx, placed, previous);
  const desired = desiredState(ctx, placed);
  // Groups no policy acts on or selects are indexed too: their pods are known, not new.
  for (const g of ctx.groups) memberOf(ctx, g.key);
  return {
    classIndex: Object.fromEntries(ctx.membership),
    labelKeys: ctx.labelKeys,
    podElems: ctx.podElems,
    commands,
    desired,
    chainRules: Object.fromEntries(ctx.chains),
    names: { chains: desired.chains, sets: Object.keys(desired.sets).sort() },
    profiles: placed.profiles,
    pods: placed.pods,
  };
}
