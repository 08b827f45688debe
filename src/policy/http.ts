// The regular expressions of CiliumNetworkPolicy HTTP rules (`method`,
// `path`, `host`), checked once at parse time and compiled for the L7 proxy
// (src/l7/match.ts). Pure, except that the first use turns on V8's linear
// regular-expression engine (see linearEngine()).
//
// Cilium hands these fields to Envoy as RE2 `safe_regex` header matchers
// (pkg/envoy/server.go getHTTPRule), and Envoy's safe_regex matches the
// WHOLE value: `path: /data` allows `/data` only, not `/data/x` nor
// `/x/data`. We anchor the same way: ^(?:pattern)$.
//
// RE2 syntax is not JavaScript syntax. A pattern is accepted only when it
// means the same in both as far as we can tell, and refused otherwise with a
// reason, rather than run with another meaning:
//   - it must parse with the `u` flag, which makes escapes such as \z or \pL
//     errors instead of silently becoming the letters z and pL, and refuses
//     POSIX classes ([[:alpha:]]), RE2's (?i) flags and lone brackets;
//   - it must run on V8's linear-time engine (the `l` flag): no
//     backreferences or lookaround (RE2 has none either), and, above all, no
//     catastrophic backtracking. The request path is chosen by the client: a
//     backtracking regex would let one request stall the agent's event loop
//     and every proxied connection with it.
// The linear engine cannot be combined with `u`, so the pattern is checked
// with `u` and run with `l`; for the ASCII text of a request line and
// headers the two read the same.

export const MAX_PATTERN = 1024;

let linear: boolean | undefined;

/**
 * Whether V8's linear engine is available, enabling it on first use. It is a
 * V8 flag, not a Node option (NODE_OPTIONS cannot reach the SEA binary,
 * execArgvExtension none), so it is set here, once, before the first linear
 * regex is made; node:v8 is fetched only then, so the CNI path never loads it.
 */
function linearEngine(): boolean {
  if (linear !== undefined) return linear;
  try {
    new RegExp('a', 'l');
    return (linear = true);
  } catch {
    // not enabled yet
  }
  try {
    const v8 = process.getBuiltinModule('node:v8');
    v8.setFlagsFromString('--enable-experimental-regexp-engine');
    new RegExp('a', 'l');
    linear = true;
  } catch {
    linear = false;
  }
  return linear;
}

/** An HTTP-rule pattern compiled for matching, or why it is refused. */
export function httpPattern(source: string): { re: RegExp } | { error: string } {
  if (source.length > MAX_PATTERN) return { error: `longer than ${MAX_PATTERN} characters` };
  if (/\[:[a-z]+:\]/.test(source)) return { error: 'POSIX character classes ([[:alpha:]]) are not supported; write the class out ([a-zA-Z])' };
  const anchored = `^(?:${source})$`;
  try {
    new RegExp(anchored, 'u');
  } catch (e) {
    // V8 says "Invalid regular expression: /<our anchored form>/u: <why>": keep the why.
    const m = (e as Error).message;
    const why = m.includes('/u: ') ? m.slice(m.lastIndexOf('/u: ') + 4) : m;
    return { error: `not a regular expression nhi-cni can read the way Cilium does (${why})` };
  }
  if (!linearEngine()) return { error: 'cannot be matched: this Node has no linear-time regular-expression engine' };
  try {
    return { re: new RegExp(anchored, 'l') };
  } catch {
    return { error: 'cannot be matched in linear time (backreferences and lookaround are not RE2 syntax either)' };
  }
}

/** RFC 9110 token: what a header name may be. */
export const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$/;
