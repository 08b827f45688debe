// The HTTP rule matcher: one request against a port's CiliumNetworkPolicy
// HTTP rules (PortRule.http), the first rule that matches or none. Pure.
//
// Cilium's semantics, as its agent hands the rules to Envoy
// (pkg/envoy/server.go getHTTPRule; Documentation/security/policy/layer7.rst):
//   - the rules of a port are ORed; within a rule every field given must hold;
//   - `method`, `path`, `host` are RE2 regexes matched against the WHOLE
//     value (Envoy safe_regex): `GET` does not match `GETX`, `/data` does
//     not match `/data/x`. Method names are case-sensitive (RFC 9110 9.1):
//     `get` does not match a `GET` request;
//   - `path` is matched against Envoy's `:path`, the request target as sent
//     including its query: `/data` does not match `/data?x=1` (write
//     `/data(\?.*)?`);
//   - `host` against the Host header as sent (with its port, if any);
//   - `headers`: `Name` requires the header to be present, `Name: value`
//     requires exactly that value; names are case-insensitive; a header sent
//     several times is compared as its values joined with "," (Envoy's
//     getAllOfHeaderAsString).
// Patterns are checked at parse time (src/policy/http.ts); one that does not
// compile here matches nothing (fail closed).
import type { HttpRule } from '../policy/model.js';
import { httpPattern } from '../policy/http.js';

/** What the matcher sees of a request. */
export interface HttpRequestInfo {
  method: string;
  /** The request target as sent (origin form: path and query). */
  path: string;
  /** Lowercased names; each with its values in the order received. */
  headers: Record<string, string[]>;
}

interface Compiled {
  ok: boolean;
  method?: RegExp;
  path?: RegExp;
  host?: RegExp;
  headers: { name: string; value?: string }[];
}

// Keyed by the rule object: policies are immutable once parsed, and a
// replaced policy brings new objects (the old entries go with it).
const memo = new WeakMap<HttpRule, Compiled>();

function compiled(rule: HttpRule): Compiled {
  let c = memo.get(rule);
  if (c) return c;
  c = { ok: true, headers: rule.headers.map((h) => ({ name: h.name.toLowerCase(), ...(h.value !== undefined ? { value: h.value } : {}) })) };
  for (const field of ['method', 'path', 'host'] as const) {
    const src = rule[field];
    if (src === undefined) continue;
    const p = httpPattern(src);
    if ('error' in p) c.ok = false;
    else c[field] = p.re;
  }
  memo.set(rule, c);
  return c;
}

/** All values of a header joined with "," (Envoy's view of a repeated header), or undefined when absent. */
function header(req: HttpRequestInfo, name: string): string | undefined {
  const v = Object.hasOwn(req.headers, name) ? req.headers[name] : undefined;
  return v === undefined || v.length === 0 ? undefined : v.join(',');
}

/** Whether one rule matches the request. */
export function ruleMatches(rule: HttpRule, req: HttpRequestInfo): boolean {
  const c = compiled(rule);
  if (!c.ok) return false;
  if (c.method && !c.method.test(req.method)) return false;
  if (c.path && !c.path.test(req.path)) return false;
  if (c.host) {
    const host = header(req, 'host');
    if (host === undefined || !c.host.test(host)) return false;
  }
  for (const h of c.headers) {
    const v = header(req, h.name);
    if (v === undefined) return false;
    if (h.value !== undefined && v !== h.value) return false;
  }
  return true;
}

/** The first rule (in policy order) that matches the request, or undefined: deny. */
export function firstMatch(rules: readonly HttpRule[], req: HttpRequestInfo): HttpRule | undefined {
  return rules.find((r) => ruleMatches(r, req));
}
