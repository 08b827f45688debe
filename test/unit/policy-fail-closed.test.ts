// A policy the cluster agent cannot enforce exactly harms only what it names:
// its stand-in is never more open than the refused policy, and other
// namespaces are untouched. Verdicts through evaluate(), the reference the
// compiler is proven equal to.
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { evaluate } from '../../src/policy/evaluate.js';
import type { Identity, Policy } from '../../src/policy/model.js';
import { parsePolicyFailClosed } from '../../src/policy/parse.js';

const pod = (namespace: string, name: string, labels: Record<string, string>, ip: string) => ({
  ip, identity: { namespace, name, labels, namespaceLabels: {}, ports: [] } satisfies Identity,
});
const api = pod('ml', 'api', { app: 'api' }, '10.0.0.1');
const worker = pod('ml', 'worker', { app: 'worker' }, '10.0.0.2');
const other = pod('web', 'front', { app: 'api' }, '10.0.1.1');
const outside = { ip: '192.0.2.9' };

const allowed = (ps: Policy[], from: { ip: string }, to: { ip: string }, port = 80) => evaluate(ps, from, to, port, 'TCP').allowed;
const one = (text: string) => parsePolicyFailClosed(parse(text), 'api');

const ALLOW_WORKER_TO_API = parsePolicyFailClosed(parse(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: worker-to-api, namespace: ml}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: worker}}}]}]
`), 'api').policies;

describe('parsePolicyFailClosed', () => {
  it('passes an enforceable policy through, with no refusal', () => {
    expect(ALLOW_WORKER_TO_API).toHaveLength(1);
    expect(parsePolicyFailClosed(parse(`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a, namespace: ml}, spec: {podSelector: {}}}`), 'api').refused).toBeUndefined();
  });

  it('an allow rule it cannot enforce (toFQDNs) allows nothing: its pods are isolated, other namespaces untouched', () => {
    const r = one(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-egress, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress: [{toFQDNs: [{matchName: example.com}]}]
`);
    expect(r.refused?.id).toBe('CiliumNetworkPolicy ml/api-egress');
    expect(r.refused?.reason).toMatch(/toFQDNs/);
    expect(allowed(r.policies, api, outside)).toBe(false);
    expect(allowed(r.policies, worker, api)).toBe(false);
    // Only what it names: the other pod of its namespace and the other namespace's look-alike are untouched.
    expect(allowed(r.policies, worker, outside)).toBe(true);
    expect(allowed(r.policies, other, outside)).toBe(true);
    // Another policy's allow still applies beside it, as it would beside the refused one.
    expect(allowed([...r.policies, ...ALLOW_WORKER_TO_API], worker, api)).toBe(true);
  });

  it('a deny rule it cannot enforce denies everything in that direction, whatever else allows', () => {
    const r = one(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-world, namespace: ml}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny: [{fromEntities: [world]}]
`);
    expect(r.refused).toBeDefined();
    expect(allowed([...r.policies, ...ALLOW_WORKER_TO_API], worker, api)).toBe(false);
    expect(allowed(r.policies, outside, api)).toBe(false);
    expect(allowed(r.policies, outside, worker)).toBe(true);
  });

  it('a selector that does not parse isolates the whole namespace, and only it', () => {
    const r = one(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: ml}
spec:
  podSelector: {matchLabels: {"bad key!": x}}
  ingress: [{}]
`);
    expect(r.refused).toBeDefined();
    expect(allowed(r.policies, outside, api)).toBe(false);
    expect(allowed(r.policies, outside, worker)).toBe(false);
    expect(allowed(r.policies, outside, other)).toBe(true);
  });

  it('an object with an invalid namespace cannot be placed: refused, no stand-in', () => {
    const r = one(`{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: x, namespace: "../etc"}, spec: {podSelector: {}, ingress: [{}]}}`);
    expect(r.refused).toBeDefined();
    expect(r.policies).toStrictEqual([]);
  });
});
