// CiliumNetworkPolicy HTTP rules in the policy model (issue 13): parsed only
// when the caller says its L7 proxy enforces them (parse option l7 'proxy');
// by default refused exactly as before. Other L7 kinds stay refused, with
// the field named.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../../src/policy/evaluate.js';
import type { Identity, Policy } from '../../src/policy/model.js';
import { loadPolicyDir, parseManifestObjects, parseManifestText, parsePolicyFailClosed, PolicyError } from '../../src/policy/parse.js';
import { caught } from '../helpers/caught.js';

const EXAMPLES = join(import.meta.dirname, '../../examples/policies');
const L7_FILE = join(EXAMPLES, 'ml-cilium-l7.yaml');
const L7_TEXT = readFileSync(L7_FILE, 'utf8');
const REFUSED = 'L7 rules are enforced only in cluster mode, by the node agent (nhi-cni agent); refusing rather than allowing the whole port';

const CNP = (spec: unknown) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'data-readers', namespace: 'ml' }, spec });
const HEAD = 'cnp.yaml document 0 (CiliumNetworkPolicy ml/data-readers): ';
const port80 = { ports: [{ port: '80', protocol: 'TCP' }] };
const ingressWith = (toPort: unknown) => CNP({ endpointSelector: {}, ingress: [{ fromEndpoints: [{}], toPorts: [toPort] }] });
const proxy = (obj: unknown) => parseManifestObjects([obj], 'cnp.yaml', { l7: 'proxy' });
const refusalIn = (obj: unknown, l7?: 'refuse' | 'proxy') => caught(() => parseManifestObjects([obj], 'cnp.yaml', l7 ? { l7 } : undefined)).message;

describe('default (no L7 proxy): HTTP rules refused as before', () => {
  it('the seed example is refused with the field named, with and without an explicit refuse', () => {
    const msg = `ml-cilium-l7.yaml document 0 (CiliumNetworkPolicy ml/data-readers): spec.ingress[0].toPorts[0].rules.http: ${REFUSED}`;
    expect(caught(() => parseManifestText(L7_TEXT, 'ml-cilium-l7.yaml')).message).toBe(msg);
    expect(caught(() => parseManifestText(L7_TEXT, 'ml-cilium-l7.yaml', { l7: 'refuse' })).message).toBe(msg);
    expect(() => loadPolicyDir(EXAMPLES)).toThrow(PolicyError);
  });

  it('the agent path (fail closed) still gives the stand-in: its pods isolated, nothing allowed', () => {
    const obj = ingressWith({ ...port80, rules: { http: [{ method: 'GET' }] } });
    const r = parsePolicyFailClosed(obj, 'Kubernetes API');
    expect(r.refused?.reason).toContain('rules.http: L7 rules are enforced only in cluster mode');
    expect(r.policies).toHaveLength(1);
    expect(r.policies[0]!.ingress).toEqual([]);
    expect(r.policies[0]!.isolates).toEqual({ ingress: true, egress: true });
  });

  it('an l7 option other than refuse or proxy is a programming error, not a wider mode', () => {
    expect(() => parseManifestText(L7_TEXT, 'x.yaml', { l7: 'yes' as 'proxy' })).toThrow(/must be 'refuse' or 'proxy'/);
    expect(() => parseManifestText(L7_TEXT, 'x.yaml', { l7: 'yes' as 'proxy' })).not.toThrow(PolicyError);
  });
});

describe("l7 'proxy': HTTP rules on the port entry", () => {
  it('the seed example: GET /data on TCP 8080 from analytics/report-builder', () => {
    const [p] = parseManifestText(L7_TEXT, 'ml-cilium-l7.yaml', { l7: 'proxy' });
    expect(p!.ingress).toEqual([{
      peers: [{ kind: 'pods', pods: { matchLabels: { app: 'report-builder' }, matchExpressions: [] }, namespaces: { matchLabels: { 'kubernetes.io/metadata.name': 'analytics' }, matchExpressions: [] } }],
      ports: [{ protocol: 'TCP', port: 8080, http: [{ method: 'GET', path: '/data', headers: [], at: 'spec.ingress[0].toPorts[0].rules.http[0]' }] }],
    }]);
  });

  it('every field, both header forms, several rules ORed, egress too, named ports', () => {
    const obj = CNP({
      endpointSelector: {},
      egress: [{
        toEndpoints: [{}],
        toPorts: [{
          ports: [{ port: 'http', protocol: 'TCP' }, { port: '8080' }],
          rules: { http: [
            { method: 'GET|HEAD', path: '/api/v[0-9]+/.*', host: 'api\\.example\\.com(:[0-9]+)?', headers: ['X-Present', 'X-Token: abc def', 'X-Colons:: v'] },
            { method: 'POST', path: '' },
          ] },
        }],
      }],
    });
    const [p] = proxy(obj);
    const http = [
      { method: 'GET|HEAD', path: '/api/v[0-9]+/.*', host: 'api\\.example\\.com(:[0-9]+)?', at: 'spec.egress[0].toPorts[0].rules.http[0]',
        headers: [{ name: 'X-Present' }, { name: 'X-Token', value: 'abc def' }, { name: 'X-Colons', value: 'v' }] },
      // path "" is Cilium's "any path": absent.
      { method: 'POST', headers: [], at: 'spec.egress[0].toPorts[0].rules.http[1]' },
    ];
    // protocol omitted (ANY): HTTP only on its TCP half; no UDP port is allowed by this entry.
    expect(p!.egress[0]!.ports).toEqual([{ protocol: 'TCP', port: 'http', http }, { protocol: 'TCP', port: 8080, http }]);
  });

  it('L4-only entries beside HTTP ones keep no http field; a List names rules by their place in it', () => {
    const list = { apiVersion: 'v1', kind: 'List', items: [ingressWith({ ...port80, rules: { http: [{ path: '/x' }] } })] };
    const [p] = parseManifestObjects([list], 'cnp.yaml', { l7: 'proxy' });
    expect(p!.ingress[0]!.ports![0]!.http![0]!.at).toBe('items[0].spec.ingress[0].toPorts[0].rules.http[0]');
    const [q] = proxy(ingressWith(port80));
    expect(q!.ingress[0]!.ports).toEqual([{ protocol: 'TCP', port: 80 }]);
  });

  type Case = [string, unknown, string];
  const cases: Case[] = [
    ['rules.dns', ingressWith({ ports: [{ port: '53', protocol: 'UDP' }], rules: { dns: [{ matchPattern: '*' }] } }),
      'spec.ingress[0].toPorts[0].rules.dns: DNS rules need a DNS proxy, which nhi-cni does not have; refusing rather than allowing the whole port'],
    ['rules.kafka', ingressWith({ ...port80, rules: { kafka: [{ topic: 'x' }] } }),
      'spec.ingress[0].toPorts[0].rules.kafka: Kafka rules are not enforced by nhi-cni (its L7 proxy speaks HTTP only); refusing rather than allowing the whole port'],
    ['rules.l7proto', ingressWith({ ...port80, rules: { l7proto: 'envoy.redis', l7: [{}] } }),
      'spec.ingress[0].toPorts[0].rules.l7proto: generic L7 parsers are not enforced by nhi-cni (its L7 proxy speaks HTTP only); refusing rather than allowing the whole port'],
    ['http and dns together', ingressWith({ ...port80, rules: { http: [{ path: '/' }], dns: [{ matchName: 'x' }] } }),
      'spec.ingress[0].toPorts[0].rules.dns: DNS rules need a DNS proxy, which nhi-cni does not have; refusing rather than allowing the whole port'],
    ['headerMatches', ingressWith({ ...port80, rules: { http: [{ path: '/', headerMatches: [{ name: 'X', secret: { name: 's' } }] }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].headerMatches: headerMatches (secrets, mismatch actions) are not supported by nhi-cni; use headers ("X-Name" or "X-Name: value")'],
    ['unknown http key', ingressWith({ ...port80, rules: { http: [{ paths: '/' }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].paths: unknown field; refusing rather than ignoring it'],
    ['rules {}', ingressWith({ ...port80, rules: {} }),
      'spec.ingress[0].toPorts[0].rules: must name the L7 rules (http); an empty rules is ambiguous, remove it for an L4 allow'],
    ['rules null', ingressWith({ ...port80, rules: null }),
      'spec.ingress[0].toPorts[0].rules: must name the L7 rules (http); an empty rules is ambiguous, remove it for an L4 allow'],
    ['http []', ingressWith({ ...port80, rules: { http: [] } }),
      'spec.ingress[0].toPorts[0].rules.http: an empty list is ambiguous (Cilium reads it as no L7 rule, allowing the whole port); remove rules for an L4 allow, or list the requests allowed'],
    ['http null', ingressWith({ ...port80, rules: { http: null } }),
      'spec.ingress[0].toPorts[0].rules.http: an empty list is ambiguous (Cilium reads it as no L7 rule, allowing the whole port); remove rules for an L4 allow, or list the requests allowed'],
    ['http [{}]', ingressWith({ ...port80, rules: { http: [{}] } }),
      'spec.ingress[0].toPorts[0].rules.http[0]: an HTTP rule with no method, path, host or header matches every request; remove rules for an L4 allow, or name what is allowed'],
    ['L7 in ingressDeny', CNP({ endpointSelector: {}, ingressDeny: [{ toPorts: [{ ...port80, rules: { http: [{ path: '/' }] } }] }] }),
      'spec.ingressDeny[0].toPorts[0].rules.http: L7 rules in a deny rule are not supported (Cilium has none either); deny the port at L4 or allow only the requests wanted'],
    ['L7 in egressDeny', CNP({ endpointSelector: {}, egressDeny: [{ toPorts: [{ ...port80, rules: { http: [{ path: '/' }] } }] }] }),
      'spec.egressDeny[0].toPorts[0].rules.http: L7 rules in a deny rule are not supported (Cilium has none either); deny the port at L4 or allow only the requests wanted'],
    ['UDP', ingressWith({ ports: [{ port: '80', protocol: 'UDP' }], rules: { http: [{ path: '/' }] } }),
      'spec.ingress[0].toPorts[0].ports[0].protocol: HTTP rules need TCP, not the string "UDP"'],
    ['every port', ingressWith({ ports: [{ port: '0', protocol: 'TCP' }], rules: { http: [{ path: '/' }] } }),
      'spec.ingress[0].toPorts[0].ports[0].port: HTTP rules need a port (every port cannot be redirected to the L7 proxy)'],
    ['port range', ingressWith({ ports: [{ port: '80', endPort: 90, protocol: 'TCP' }], rules: { http: [{ path: '/' }] } }),
      'spec.ingress[0].toPorts[0].ports[0].endPort: HTTP rules on a port range are not supported by nhi-cni yet; list the ports'],
    ['bad regex', ingressWith({ ...port80, rules: { http: [{ path: '/data(' }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].path: "/data(": not a regular expression nhi-cni can read the way Cilium does (Unterminated group)'],
    ['POSIX class', ingressWith({ ...port80, rules: { http: [{ path: '/[[:alpha:]]+' }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].path: "/[[:alpha:]]+": POSIX character classes ([[:alpha:]]) are not supported; write the class out ([a-zA-Z])'],
    ['RE2-only escape \\z', ingressWith({ ...port80, rules: { http: [{ path: '/data\\z' }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].path: "/data\\\\z": not a regular expression nhi-cni can read the way Cilium does (Invalid escape)'],
    ['backreference (not RE2, not linear)', ingressWith({ ...port80, rules: { http: [{ path: '/(a)\\1' }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].path: "/(a)\\\\1": cannot be matched in linear time (backreferences and lookaround are not RE2 syntax either)'],
    ['lookahead', ingressWith({ ...port80, rules: { http: [{ method: '(?!DELETE).*' }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].method: "(?!DELETE).*": cannot be matched in linear time (backreferences and lookaround are not RE2 syntax either)'],
    ['too long', ingressWith({ ...port80, rules: { http: [{ host: 'a'.repeat(1025) }] } }),
      `spec.ingress[0].toPorts[0].rules.http[0].host: "${'a'.repeat(80)}…": longer than 1024 characters`],
    ['header name with colon, no space', ingressWith({ ...port80, rules: { http: [{ headers: ['X-Foo:bar'] }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].headers[0]: "X-Foo:bar": "X-Foo:bar" is not an HTTP header name; write "Name: value" (a space after the colon) or just "Name" for presence'],
    ['header name not a token', ingressWith({ ...port80, rules: { http: [{ headers: ['X(Foo): v'] }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].headers[0]: "X(Foo): v": "X(Foo)" is not an HTTP header name'],
    ['header value with surrounding blank', ingressWith({ ...port80, rules: { http: [{ headers: ['X-Foo:  v'] }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].headers[0]: "X-Foo:  v": the value must be non-empty, without surrounding blanks or control characters'],
    ['header value empty', ingressWith({ ...port80, rules: { http: [{ headers: ['X-Foo: '] }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].headers[0]: "X-Foo: ": the value must be non-empty, without surrounding blanks or control characters'],
    ['header value with CR LF', ingressWith({ ...port80, rules: { http: [{ headers: ['X-Foo: a\r\nX-Admin: 1'] }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].headers[0]: "X-Foo: a\\r\\nX-Admin: 1": the value must be non-empty, without surrounding blanks or control characters'],
    ['method not a string', ingressWith({ ...port80, rules: { http: [{ method: 1 }] } }),
      'spec.ingress[0].toPorts[0].rules.http[0].method: must be a string, not number 1'],
  ];
  it.each(cases)('refused: %s', (_name, obj, msg) => {
    expect(refusalIn(obj, 'proxy')).toBe(HEAD + msg);
  });

  it('a refusal under proxy still gives the agent its fail-closed stand-in (a deny rule: the direction denied)', () => {
    const obj = CNP({ endpointSelector: {}, ingressDeny: [{ toPorts: [{ ...port80, rules: { http: [{ path: '/' }] } }] }] });
    const r = parsePolicyFailClosed(obj, 'Kubernetes API', { l7: 'proxy' });
    expect(r.refused?.reason).toContain('spec.ingressDeny[0].toPorts[0].rules.http');
    expect(r.policies[0]!.ingressDeny).toEqual([{}]);
  });
});

describe('evaluate: a clause with HTTP rules is not an L4 allow; only the proxy, seeing the request, may allow', () => {
  const [p] = parseManifestText(L7_TEXT, 'ml-cilium-l7.yaml', { l7: 'proxy' }) as [Policy];
  const id = (ns: string, name: string, labels: Record<string, string>): Identity =>
    ({ namespace: ns, name, labels, namespaceLabels: {}, ports: [] });
  const reader = { ip: '10.0.4.1', identity: id('analytics', 'report-builder', { app: 'report-builder' }) };
  const data = { ip: '10.0.3.1', identity: id('ml', 'training-data', { app: 'training-data' }) };
  const other = { ip: '10.0.5.1', identity: id('analytics', 'other', { app: 'other' }) };

  it("the kernel's view (no request): denied, for the selected source too", () => {
    expect(evaluate([p], reader, data, 8080, 'TCP').allowed).toBe(false);
    expect(evaluate([p], other, data, 8080, 'TCP').allowed).toBe(false);
  });

  it("the proxy's view: the selected source when a rule matches; others, other ports, or no match: denied", () => {
    expect(evaluate([p], reader, data, 8080, 'TCP', { http: () => true }).allowed).toBe(true);
    expect(evaluate([p], other, data, 8080, 'TCP', { http: () => true }).allowed).toBe(false);
    expect(evaluate([p], reader, data, 8081, 'TCP', { http: () => true }).allowed).toBe(false);
    expect(evaluate([p], reader, data, 8080, 'TCP', { http: () => false }).allowed).toBe(false);
  });
});
