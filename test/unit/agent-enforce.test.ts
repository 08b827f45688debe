// The agent's sink (src/agent/enforce.ts) against the in-memory nft, without
// root: cluster views in, the policy table out. What a user checks: a pod of
// this node selected by a policy from the API is isolated, a peer on another
// node is admitted by its labels, a label edit in the API moves a pod of this
// node between groups, and a pod of another node claiming an address of this
// node's range is never a peer.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EnforcingSink, remotePeers } from '../../src/agent/enforce.js';
import { buildView, type Kind } from '../../src/agent/view.js';
import { POLICY_TABLE } from '../../src/policy/compile/index.js';
import { placePod, podKey } from '../../src/policy/engine/index.js';
import { FakeNft } from '../../src/sys/nft-fake.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const nsObj = (name: string): Obj => ({ metadata: { name, labels: { 'kubernetes.io/metadata.name': name } } });
const nodeObj = (name: string, cidr: string): Obj => ({ metadata: { name }, spec: { podCIDRs: [cidr] }, status: { addresses: [{ type: 'InternalIP', address: '192.168.1.1' }] } });
const podObj = (name: string, node: string, ip: string, labels: Record<string, string>): Obj => ({
  metadata: { namespace: 'shop', name, uid: `uid-${name}`, labels },
  spec: { nodeName: node, containers: [] },
  status: { phase: 'Running', podIPs: [{ ip }] },
});
const DB_FROM_API: Obj = {
  metadata: { namespace: 'shop', name: 'db-from-api' },
  spec: { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchLabels: { app: 'api' } } }], ports: [{ port: 5432, protocol: 'TCP' }] }] },
};

function view(pods: Obj[], policies: Obj[] = [DB_FROM_API]) {
  const objects: Record<Kind, unknown[]> = {
    pods, namespaces: [nsObj('shop')], nodes: [nodeObj('n1', '10.244.1.0/24'), nodeObj('n2', '10.244.2.0/24')], networkpolicies: policies, ciliumnetworkpolicies: [],
  };
  return buildView({ nodeName: 'n1', trustDomain: 'cluster.local', objects, ciliumPoliciesServed: true });
}

/** Names of the sets (and maps) holding an address. */
function holding(f: FakeNft, ip: string): string[] {
  const out: string[] = [];
  for (const [name, s] of f.table('inet', POLICY_TABLE)?.sets ?? []) {
    if ([...s.elems.values()].some((e) => JSON.stringify(e.key).includes(`"${ip}"`))) out.push(name);
  }
  return out.sort();
}

let dir: string;
let nft: FakeNft;
let sink: EnforcingSink;
const log = { info() {}, warn() {}, error() {} };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-enforce-'));
  nft = new FakeNft();
  sink = new EnforcingSink({ stateDir: dir }, log, { nft, prepareNode: () => {} });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** This node's db pod, as the plugin's ADD records it (identity from the agent). */
async function addLocalDb(v: ReturnType<typeof view>) {
  const db = v.pods.find((p) => p.name === 'db-1')!;
  await sink.engine.reconcile({ change: (pods) => placePod(pods, podKey('k8s', 'c1', 'eth0'), { network: 'k8s', containerId: 'c1', ifname: 'eth0', ips: db.ips, identity: db.identity }) });
}

describe('EnforcingSink', () => {
  it('enforces the API policy on this node, admitting the peer of another node by its labels', async () => {
    const v = view([podObj('db-1', 'n1', '10.244.1.5', { app: 'db' }), podObj('api-1', 'n2', '10.244.2.7', { app: 'api' }), podObj('web-1', 'n2', '10.244.2.8', { app: 'web' })]);
    expect(await sink.apply(v)).toMatchObject({ ok: true, refused: [] });
    await addLocalDb(v);
    // db is isolated (an ingress verdict-map entry), api-1 on n2 is in a peer set, web-1 is in none.
    expect(holding(nft, '10.244.1.5')).toContain('in4');
    expect(holding(nft, '10.244.2.7').filter((n) => n !== 'in4' && n !== 'eg4')).not.toEqual([]);
    expect(holding(nft, '10.244.2.8')).toEqual([]);
    expect(sink.engine.state().remote.map((r) => r.id)).toEqual(['n2/shop/api-1', 'n2/shop/web-1']);
  });

  it('a label edit in the API reaches the pods of this node and the peers of other nodes', async () => {
    const pods = [podObj('db-1', 'n1', '10.244.1.5', { app: 'db' }), podObj('api-1', 'n2', '10.244.2.7', { app: 'api' })];
    await sink.apply(view(pods));
    await addLocalDb(view(pods));
    expect(holding(nft, '10.244.1.5')).toContain('in4');
    // The local db relabelled: no policy selects it any more.
    const relabelled = [podObj('db-1', 'n1', '10.244.1.5', { app: 'cache' }), podObj('api-1', 'n2', '10.244.2.7', { app: 'batch' })];
    await sink.apply(view(relabelled));
    expect(sink.engine.state().pods[podKey('k8s', 'c1', 'eth0')]!.identity!.labels.app).toBe('cache');
    expect(holding(nft, '10.244.1.5')).toEqual([]);
    // The remote api relabelled: in no peer set any more.
    expect(holding(nft, '10.244.2.7')).toEqual([]);
  });

  it('the policy deleted in the API: the pod is no longer isolated; a policy that cannot be enforced isolates it', async () => {
    const pods = [podObj('db-1', 'n1', '10.244.1.5', { app: 'db' })];
    await sink.apply(view(pods));
    await addLocalDb(view(pods));
    await sink.apply(view(pods, []));
    expect(holding(nft, '10.244.1.5')).toEqual([]);
    // An L7 rule or anything we cannot enforce exactly: the stand-in isolates its pods both ways, never opens them.
    const odd = { metadata: { namespace: 'shop', name: 'odd' }, spec: { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'app', operator: 'Bogus', values: ['x'] }] } }] }] } };
    const v = view(pods, [odd]);
    expect(v.refused.map((r) => r.name)).toEqual(['odd']);
    await sink.apply(v);
    expect(holding(nft, '10.244.1.5')).toEqual(expect.arrayContaining(['eg4', 'in4']));
  });

  it('a pod of another node claiming an address of this node is refused as a peer (it would lend its labels to a local pod)', () => {
    const v = view([podObj('db-1', 'n1', '10.244.1.5', { app: 'db' }), podObj('liar', 'n2', '10.244.1.5', { app: 'api' }), podObj('api-1', 'n2', '10.244.2.7', { app: 'api' })]);
    const { peers, refused } = remotePeers(v);
    expect(peers.map((p) => p.id)).toEqual(['n2/shop/api-1']);
    expect(refused).toEqual([{ kind: 'pods', namespace: 'shop', name: 'liar', reason: expect.stringMatching(/10\.244\.1\.5 is in this node's pod CIDR/) }]);
  });
});
