// The HTTP rule matcher (src/l7/match.ts) against Cilium's documented
// semantics (Documentation/security/policy/layer7.rst; the rules reach Envoy
// as whole-value RE2 matches of :method, :path and :authority, and header
// presence or exact value, pkg/envoy/server.go getHTTPRule), and the proxy's
// verdicts over the policy model (src/l7/decide.ts).
import { describe, expect, it } from 'vitest';
import { decide } from '../../src/l7/decide.js';
import { firstMatch, ruleMatches, type HttpRequestInfo } from '../../src/l7/match.js';
import type { HttpRule, Identity } from '../../src/policy/model.js';
import { parseManifestText } from '../../src/policy/parse.js';

const rule = (r: Partial<HttpRule>): HttpRule => ({ headers: [], at: 'spec.ingress[0].toPorts[0].rules.http[0]', ...r });
const req = (method: string, path: string, headers: Record<string, string | string[]> = {}): HttpRequestInfo => ({
  method,
  path,
  headers: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v : [v]])),
});

describe('method: an anchored, case-sensitive regex', () => {
  const cases: [string, string, boolean][] = [
    ['GET', 'GET', true],
    ['GET', 'GETX', false],
    ['GET', 'XGET', false],
    ['GET', 'get', false], // methods are case-sensitive (RFC 9110 9.1); Envoy compares as sent
    ['get', 'GET', false],
    ['GET|HEAD', 'HEAD', true],
    ['GET|HEAD', 'GETX', false], // the whole alternation is anchored, not just its ends (^GET|HEAD$ would take these)
    ['GET|HEAD', 'XHEAD', false],
    ['P.*', 'PUT', true],
    ['P.*', 'PATCH', true],
    ['P.*', 'GET', false],
    ['(GET|POST)', 'POST', true],
  ];
  it.each(cases)('%s vs %s: %s', (m, method, want) => {
    expect(ruleMatches(rule({ method: m }), req(method, '/'))).toBe(want);
  });
});

describe('path: an anchored regex over the request target as sent (query included, as Envoy :path)', () => {
  const cases: [string, string, boolean][] = [
    ['/data', '/data', true],
    ['/data', '/data/', false],
    ['/data', '/data/x', false],
    ['/data', '/x/data', false],
    ['/data', '/database', false],
    ['/data', '/data?x=1', false], // Cilium/Envoy: the query is part of :path
    ['/data(\\?.*)?', '/data?x=1', true],
    ['/data(\\?.*)?', '/data', true],
    ['/data/.*', '/data/a/b', true],
    ['/data/.*', '/data', false],
    ['/api/v[0-9]+/items', '/api/v12/items', true],
    ['/api/v[0-9]+/items', '/api/v/items', false],
    ['.*', '/anything?at=all', true],
    ['/a.c', '/abc', true], // a regex: "." is any character (write \\. for a dot)
    ['/a\\.c', '/abc', false],
  ];
  it.each(cases)('%s vs %s: %s', (p, path, want) => {
    expect(ruleMatches(rule({ path: p }), req('GET', path))).toBe(want);
  });
});

describe('host: an anchored regex over the Host header as sent', () => {
  const cases: [string, Record<string, string | string[]>, boolean][] = [
    ['foo\\.com', { Host: 'foo.com' }, true],
    ['foo\\.com', { Host: 'foo.com:8080' }, false], // the port is part of the value
    ['foo\\.com(:[0-9]+)?', { Host: 'foo.com:8080' }, true],
    ['foo\\.com', { Host: 'xfoo.com' }, false],
    ['foo\\.com', { Host: 'foo.com.evil' }, false],
    ['foo\\.com', {}, false], // no Host: a host rule cannot match
    ['.*\\.example\\.com', { Host: 'api.example.com' }, true],
  ];
  it.each(cases)('%s vs %j: %s', (h, headers, want) => {
    expect(ruleMatches(rule({ host: h }), req('GET', '/', headers))).toBe(want);
  });
});

describe('headers: presence, or exactly one value; names case-insensitive, values not', () => {
  const cases: [string, HttpRule['headers'], Record<string, string | string[]>, boolean][] = [
    ['present', [{ name: 'X-Foo' }], { 'x-foo': '' }, true],
    ['present, any value', [{ name: 'X-Foo' }], { 'x-foo': 'whatever' }, true],
    ['absent', [{ name: 'X-Foo' }], { 'x-bar': '1' }, false],
    ['name case', [{ name: 'x-FOO' }], { 'X-Foo': '1' }, true],
    ['value exact', [{ name: 'X-Foo', value: 'true' }], { 'x-foo': 'true' }, true],
    ['value case-sensitive', [{ name: 'X-Foo', value: 'true' }], { 'x-foo': 'TRUE' }, false],
    ['value not a prefix', [{ name: 'X-Foo', value: 'true' }], { 'x-foo': 'trueish' }, false],
    ['value not a regex', [{ name: 'X-Foo', value: 't.ue' }], { 'x-foo': 'true' }, false],
    ['value absent header', [{ name: 'X-Foo', value: 'true' }], {}, false],
    // Repeated: compared as the values joined with "," (Envoy); a second value cannot ride along.
    ['repeated header, one matching', [{ name: 'X-Foo', value: 'true' }], { 'x-foo': ['true', 'false'] }, false],
    ['repeated header, joined', [{ name: 'X-Foo', value: 'a,b' }], { 'x-foo': ['a', 'b'] }, true],
    ['every header rule must hold', [{ name: 'X-A' }, { name: 'X-B', value: '1' }], { 'x-a': '1', 'x-b': '2' }, false],
    ['both hold', [{ name: 'X-A' }, { name: 'X-B', value: '1' }], { 'x-a': '1', 'x-b': '1' }, true],
    ['a header named like an Object property', [{ name: 'constructor' }], {}, false],
  ];
  it.each(cases)('%s', (_n, headers, sent, want) => {
    expect(ruleMatches(rule({ headers }), req('GET', '/', sent))).toBe(want);
  });
});

describe('rules: fields ANDed, rules ORed, the first match named', () => {
  const rules = [
    rule({ method: 'GET', path: '/path1', at: 'r0' }),
    rule({ method: 'PUT', path: '/path2', headers: [{ name: 'X-My-Header', value: 'true' }], at: 'r1' }),
  ];
  it("Cilium's example: GET /path1, and PUT /path2 only with X-My-Header: true", () => {
    expect(firstMatch(rules, req('GET', '/path1'))?.at).toBe('r0');
    expect(firstMatch(rules, req('PUT', '/path2', { 'X-My-Header': 'true' }))?.at).toBe('r1');
    expect(firstMatch(rules, req('PUT', '/path2'))).toBeUndefined();
    expect(firstMatch(rules, req('PUT', '/path1', { 'X-My-Header': 'true' }))).toBeUndefined();
    expect(firstMatch(rules, req('GET', '/path2'))).toBeUndefined();
  });
  it('no rules: nothing matches (the port entry then allows no request)', () => {
    expect(firstMatch([], req('GET', '/'))).toBeUndefined();
  });
  it('a pattern that does not compile matches nothing (fail closed)', () => {
    expect(ruleMatches(rule({ path: '/(' }), req('GET', '/('))).toBe(false);
    expect(ruleMatches(rule({ method: 'GET', path: '(a)\\1' }), req('GET', 'aa'))).toBe(false);
  });
  it('hostile input does not stall the matcher: linear-time regexes only', () => {
    const evil = rule({ path: '(a+)+b', host: '(x|xx)*y' });
    const t = performance.now();
    expect(ruleMatches(evil, req('GET', 'a'.repeat(100_000) + 'c', { host: 'x'.repeat(100_000) }))).toBe(false);
    expect(performance.now() - t).toBeLessThan(500);
  });
});

describe('decide: the whole verdict (L3/L4 and HTTP, both directions) over the policy model', () => {
  const policies = parseManifestText(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: data-readers, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: training-data}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: analytics, app: report-builder}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET, path: /data}, {method: PUT, path: /data, headers: ["X-Role: writer"]}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ops, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: training-data}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ml, app: ops}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: auditor-out, namespace: analytics}
spec:
  endpointSelector: {matchLabels: {app: auditor}}
  egress:
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ml}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: HEAD}, {method: GET, path: /data}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: auditor-in, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: training-data}}
  ingress:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: analytics, app: auditor}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: "GET|HEAD"}]}}]
`, 'l7.yaml', { l7: 'proxy' });
  const id = (ns: string, name: string, app: string): Identity => ({ namespace: ns, name, labels: { app }, namespaceLabels: {}, ports: [] });
  const data = { ip: '10.0.3.1', identity: id('ml', 'training-data', 'training-data') };
  const reader = { ip: '10.0.4.1', identity: id('analytics', 'report-builder', 'report-builder') };
  const ops = { ip: '10.0.3.9', identity: id('ml', 'ops', 'ops') };
  const auditor = { ip: '10.0.4.7', identity: id('analytics', 'auditor', 'auditor') };
  const stranger = { ip: '10.0.9.9' };

  it('the seed: GET /data allowed by its rule; POST /data and GET /admin denied, naming the policies', () => {
    expect(decide(policies, reader, data, 8080, req('GET', '/data'))).toEqual({
      allowed: true, matched: [{ policy: 'ml/data-readers', direction: 'ingress', at: 'spec.ingress[0].toPorts[0].rules.http[0]' }], byL4: [], deniedBy: [],
    });
    for (const r of [req('POST', '/data'), req('GET', '/admin'), req('PUT', '/data')]) {
      const v = decide(policies, reader, data, 8080, r);
      expect(v.allowed).toBe(false);
      expect(v.deniedIn).toBe('ingress');
      expect(v.deniedBy).toEqual(['ml/data-readers', 'ml/ops', 'ml/auditor-in']);
    }
    expect(decide(policies, reader, data, 8080, req('PUT', '/data', { 'X-Role': 'writer' })).matched[0]!.at).toBe('spec.ingress[0].toPorts[0].rules.http[1]');
  });

  it('a connection: the selected source may open one; a stranger or another port may not', () => {
    expect(decide(policies, reader, data, 8080).allowed).toBe(true);
    expect(decide(policies, stranger, data, 8080).allowed).toBe(false);
    expect(decide(policies, reader, data, 8081).allowed).toBe(false);
  });

  it('an L4 rule for the same port makes the HTTP rules moot for its peers (Cilium layer7.rst)', () => {
    const v = decide(policies, ops, data, 8080, req('DELETE', '/admin'));
    expect(v).toEqual({ allowed: true, matched: [], byL4: ['ml/ops'], deniedBy: [] });
  });

  it("both ends' HTTP rules apply: the source's egress and the destination's ingress", () => {
    expect(decide(policies, auditor, data, 8080, req('HEAD', '/x')).allowed).toBe(true);
    // Ingress allows GET anything, egress only GET /data.
    expect(decide(policies, auditor, data, 8080, req('GET', '/data')).matched.map((m) => m.direction)).toEqual(['egress', 'ingress']);
    const v = decide(policies, auditor, data, 8080, req('GET', '/other'));
    expect(v).toMatchObject({ allowed: false, deniedIn: 'egress', deniedBy: ['analytics/auditor-out'] });
    // Egress allows PUT? No: neither.
    expect(decide(policies, auditor, data, 8080, req('PUT', '/data')).allowed).toBe(false);
  });
});
