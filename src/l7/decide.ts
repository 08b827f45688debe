// The L7 proxy's verdicts: a connection (before any request) and each request
// on it, judged with the same semantics as `policy explain` (evaluate.ts), the
// HTTP rules of a port included. Pure.
//
// The proxy judges the whole connection again, L3/L4 included, for two
// reasons: a redirected connection no longer meets the pod's profile chain in
// the forward hook (it is delivered to the node, see docs/l7.md), and policies
// change while a connection stays open: each request is judged against the
// policies of the moment.
import { evaluate, type Decision, type Direction, type Endpoint } from '../policy/evaluate.js';
import { policyId, type Policy } from '../policy/model.js';
import { firstMatch, type HttpRequestInfo } from './match.js';

/** The HTTP rule that allowed a request, for counters and logs. */
export interface MatchedRule {
  policy: string;
  direction: Direction;
  /** HttpRule.at: "spec.ingress[0].toPorts[0].rules.http[1]". */
  at: string;
}

export interface L7Verdict {
  allowed: boolean;
  /** Allowed: the HTTP rules that allowed it (one per direction that has some). */
  matched: MatchedRule[];
  /** Allowed: the policies that allowed it without an HTTP rule (an L4 rule on the same port). */
  byL4: string[];
  /** Denied: the policies that denied it (a deny rule, or the isolating policies none of whose rules allow it). */
  deniedBy: string[];
  /** Denied: in which direction (the source's egress is judged first). */
  deniedIn?: Direction;
}

function deniers(d: Decision): { deniedBy: string[]; deniedIn?: Direction } {
  for (const dir of ['egress', 'ingress'] as const) {
    const x = d[dir];
    if (x.allowed) continue;
    return { deniedBy: x.denied !== undefined ? [x.denied] : x.selecting, deniedIn: dir };
  }
  return { deniedBy: [] };
}

/**
 * The verdict on a request from `src` to `dst` (TCP `port`), or, with no
 * request, whether the connection may be opened at all (some request could
 * be allowed on it).
 */
export function decide(policies: Policy[], src: Endpoint, dst: Endpoint, port: number, req?: HttpRequestInfo): L7Verdict {
  const matched: MatchedRule[] = [];
  const d = evaluate(policies, src, dst, port, 'TCP', {
    // No request yet (a new connection): could some request be allowed? Any HTTP clause may.
    http: req === undefined ? () => true : (rules, policy, direction) => {
      const r = firstMatch(rules, req);
      if (r) matched.push({ policy: policyId(policy), direction, at: r.at });
      return r !== undefined;
    },
  });
  if (!d.allowed) return { allowed: false, matched: [], byL4: [], ...deniers(d) };
  // evaluate() looks at every acting policy: a rule may have matched in a
  // policy that another one's L4 rule made moot; keep one per direction.
  const seen = new Set<string>();
  const kept = matched.filter((m) => (seen.has(m.direction) ? false : (seen.add(m.direction), true)));
  const byL4 = req === undefined ? [] : (['egress', 'ingress'] as const)
    .filter((dir) => d[dir].isolated && !kept.some((m) => m.direction === dir))
    .flatMap((dir) => d[dir].by);
  return { allowed: true, matched: kept, byL4, deniedBy: [] };
}
