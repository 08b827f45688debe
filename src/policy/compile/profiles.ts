// Profiles: per pod group and direction, the rules of the policies acting on
// it, as one chain. Groups with the same rules share the chain.
import { policyId, type Identity, type Policy } from '../model.js';
import { memberOf, type CompileContext } from './context.js';
import { addrField, LOG_RATE, match, TRACE } from './expr.js';
import { acting, namedIngressPorts, type PodGroup } from './groups.js';
import { allowCounter, contentKey, logPrefix, policyKey, ruleDenyCounter, workloadOf } from './names.js';
import { ruleAlternatives } from './rules.js';
import { workloadSet } from './sets.js';
import type { VerdictMap } from './table.js';
import { famOf, type AuditOptions, type Compiled, type Direction, type Fam } from './types.js';

/** The policies' rules for some groups and a direction, before the chain's tail. */
interface Profile {
  dir: Direction;
  /** policyKey of the acting policies. */
  ids: string[];
  rules: unknown[][];
  isolated: boolean;
  audited: boolean;
  /** policyId of the policies that isolate. */
  isolating: string[];
  groups: PodGroup[];
}

/** Profile chain -> profile, pod id -> its chains, and each map's (address, chain) entries. */
export interface Placed {
  profiles: Compiled['profiles'];
  pods: Compiled['pods'];
  vmap: Record<VerdictMap, [string, string][]>;
}

function isAudited(audit: AuditOptions, pid: string, ns: string): boolean {
  return audit.all || audit.namespaces.includes(ns) || audit.policies.includes(pid);
}

/**
 * The rules of the policies acting on one group for a direction: the deny
 * rules (counted, logged and dropped), then, when isolated, what each policy
 * allows (counted per policy).
 */
function policyRules(ctx: CompileContext, act: readonly Policy[], isolated: boolean, dir: Direction, id: Identity): unknown[][] {
  const denyKey = dir === 'ingress' ? 'ingressDeny' : 'egressDeny';
  const rules: unknown[][] = [];
  const pass = dir === 'ingress' ? { accept: null } : { return: null };
  for (const p of act) {
    const pid = policyId(p);
    const audited = isAudited(ctx.audit, pid, p.namespace);
    const counter = ruleDenyCounter(p, ctx.hash);
    if (p[denyKey].length > 0 && !audited) ctx.counters.add(counter);
    for (const r of p[denyKey]) {
      for (const alt of ruleAlternatives(ctx, p, r, dir, id)) {
        // Count and log (rate-limited) in one rule, drop in the next: a
        // limit that is exhausted ends its rule, and must not end the drop.
        if (audited) {
          rules.push([...alt, TRACE, LOG_RATE, { log: { prefix: logPrefix('audit', dir, [pid]) } }]);
        } else {
          rules.push([...alt, { counter }, TRACE, LOG_RATE, { log: { prefix: logPrefix('deny', dir, [pid]) } }]);
          rules.push([...alt, { drop: null }]);
        }
      }
    }
  }
  if (isolated) {
    for (const p of act.filter((x) => x.isolates[dir] || x.kind === 'CiliumNetworkPolicy')) {
      const counter = allowCounter(policyKey(p), ctx.hash);
      ctx.counters.add(counter);
      for (const r of p[dir]) {
        for (const alt of ruleAlternatives(ctx, p, r, dir, id)) rules.push([...alt, { counter }, pass]);
      }
    }
  }
  return rules;
}

/**
 * Per group of alike pods and direction, the rules of the policies acting on
 * it; groups with the same rules share one profile (keyed by its content).
 * The rules follow from the acting policies and, for named ports on ingress,
 * the numbers the pod gives them: groups alike in those are found before any
 * rule is built, and the rules are built once per profile.
 */
export function buildProfiles(ctx: CompileContext): Map<string, Profile> {
  const profiles = new Map<string, Profile>();
  const byInputs = new Map<string, string>();
  // Remote pods are peers only: their own node enforces their policies.
  for (const g of ctx.groups.filter((x) => !x.remote)) {
    const id = g.identity;
    for (const dir of ['ingress', 'egress'] as Direction[]) {
      const { act, isolated } = acting(ctx.policies, id, dir);
      if (act.length === 0) continue;
      const ids = act.map(policyKey);
      const inputs = contentKey(dir, ids, isolated, dir === 'ingress' ? namedIngressPorts(act, id) : null);
      const known = byInputs.get(inputs);
      if (known !== undefined) {
        profiles.get(known)!.groups.push(g);
        continue;
      }
      const rules = policyRules(ctx, act, isolated, dir, id);
      const isolating = act.filter((x) => x.isolates[dir]).map(policyId);
      const key = contentKey(dir, ids, rules, isolated);
      byInputs.set(inputs, key);
      const same = profiles.get(key);
      if (same) same.groups.push(g);
      else profiles.set(key, { dir, ids, rules, isolated, isolating, audited: isolating.every((pid) => isAudited(ctx.audit, pid, pid.split('/')[0]!)), groups: [g] });
    }
  }
  return profiles;
}

/**
 * Each profile as a chain: when it isolates, it ends with what no rule
 * allowed: counted per profile, logged per workload (a rule per group of
 * alike pods, matching the group's own address set, so the log names the
 * workload although the profile is shared), then dropped - or, in audit
 * mode, passed. Plain set lookups: the kernel's validation of the table
 * stays linear in the pods (a verdict map looked up from a chain that a
 * verdict map jumps to would make it quadratic). Then the groups' pods are
 * pointed at their chains.
 */
export function placeProfiles(ctx: CompileContext, profiles: Map<string, Profile>): Placed {
  const placed: Placed = { profiles: {}, pods: {}, vmap: { eg4: [], eg6: [], in4: [], in6: [] } };
  for (const [key, pr] of profiles) {
    const rules = [...pr.rules];
    const field = pr.dir === 'ingress' ? 'daddr' : 'saddr';
    const counter = `d_${ctx.hash(key)}`;
    if (pr.isolated) {
      if (!pr.audited) ctx.counters.add(counter);
      rules.push(pr.audited ? [TRACE] : [{ counter }, TRACE]);
      for (const g of pr.groups) {
        const prefix = logPrefix(pr.audited ? 'audit' : 'deny', pr.dir, pr.isolating, workloadOf(g.identity));
        for (const fam of [4, 6] as Fam[]) rules.push([match(addrField(fam, field), `@${workloadSet(ctx, g, fam)}`), LOG_RATE, { log: { prefix } }]);
      }
      rules.push([pr.audited ? (pr.dir === 'ingress' ? { accept: null } : { return: null }) : { drop: null }]);
    }
    // Named by its content: the key holds the policies' rules, the tail the rest.
    const chain = `pr_${ctx.hash(`${key}\0${JSON.stringify(rules.slice(pr.rules.length))}`)}`;
    ctx.chains.set(chain, rules);
    placed.profiles[chain] = { direction: pr.dir, policies: pr.ids, ...(pr.isolated && !pr.audited ? { denyCounter: counter } : {}) };
    const d = pr.dir === 'ingress' ? 'in' : 'eg';
    for (const g of pr.groups) {
      memberOf(ctx, g.key)[pr.dir] = chain;
      for (const pod of g.pods) {
        placed.pods[pod.id] = { ...placed.pods[pod.id], [pr.dir]: chain };
        for (const ip of pod.ips) placed.vmap[`${d}${famOf(ip)}`].push([ip, chain]);
      }
    }
  }
  return placed;
}
