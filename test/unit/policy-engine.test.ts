// The policy engine's paths (src/policy/engine/apply.ts) against the
// in-memory nft (src/sys/nft-fake.ts), without root: full apply, fast delta,
// compile + delta for a new group, dirty-marker recovery, a generation the
// kernel does not hold, a refused transaction, the lost state, the owner, the
// first layout's state, remote peers, CHECK, stats and explain. Each path is
// told apart by what reached the fake (its transaction history) and proven by
// what the fake holds afterwards against a fresh full apply of the same state.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniError, Code } from '../../src/cni/errors.js';
import { POLICY_TABLE } from '../../src/policy/compile/index.js';
import { ExplainInputError, NO_AUDIT, placePod, podKey, PolicyEngine, type PodRecord, type RemotePeer } from '../../src/policy/engine/index.js';
import type { Identity, Policy } from '../../src/policy/model.js';
import { parseManifestText } from '../../src/policy/parse.js';
import { FakeNft } from '../../src/sys/nft-fake.js';
import { NftTransaction } from '../../src/sys/nft.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

const POLICIES = parseManifestText(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: api-ingress, namespace: shop }
spec:
  podSelector: { matchLabels: { app: api } }
  policyTypes: [Ingress]
  ingress:
    - from: [ { podSelector: { matchLabels: { app: web } } } ]
      ports: [ { port: 8080, protocol: TCP } ]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-ingress, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  policyTypes: [Ingress]
  ingress:
    - from: [ { podSelector: { matchLabels: { app: api } } } ]
`, 'test.yaml');

/** The same policies with the db opened to web as well: a policy change. */
const CHANGED = parseManifestText(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db-ingress, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  policyTypes: [Ingress]
  ingress:
    - from: [ { podSelector: { matchLabels: { app: web } } } ]
`, 'changed.yaml');

const identity = (name: string, app: string): Identity => ({
  namespace: 'shop', name, labels: { app }, namespaceLabels: { 'kubernetes.io/metadata.name': 'shop' }, ports: [],
});
const pod = (id: string, ip: string, app: string): [string, PodRecord] =>
  [podKey('net', id, 'eth0'), { network: 'net', containerId: id, ifname: 'eth0', ips: [ip], identity: identity(id, app) }];

let dir: string;
let nft: FakeNft;
const engineOn = (stateDir: string, fake = nft) =>
  new PolicyEngine({ config: { stateDir, audit: NO_AUDIT }, nft: fake, prepareNode: () => {} });
let engine: PolicyEngine;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-engine-'));
  nft = new FakeNft();
  engine = engineOn(join(dir, 'state'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const add = (e: PolicyEngine, [key, p]: [string, PodRecord], policies?: Policy[]) =>
  e.reconcile({ change: (pods) => placePod(pods, key, p), policies });
const stateFile = () => JSON.parse(readFileSync(join(engine.stateDir, 'policy-state.json'), 'utf8'));
const files = () => readdirSync(engine.stateDir).sort();
const last = (f = nft) => f.history.at(-1)!;
/** Whether a transaction rewrote the table whole (the full path flushes the verdict maps). */
const whole = (cmds: J[]) => cmds.some((c) => c.flush?.map);

/** The policy table's content, independent of handles and order: chains with rules, sets and maps with elements, counters. */
function content(f: FakeNft): J {
  const t = f.table('inet', POLICY_TABLE);
  if (!t) return undefined;
  const sortBy = (l: string[]) => [...l].sort();
  return {
    chains: Object.fromEntries(sortBy([...t.chains.keys()]).map((n) => [n, t.chains.get(n)!.rules.map((r) => JSON.stringify(r.expr))])),
    // The generation and the owner differ between two state dirs by design.
    sets: Object.fromEntries(sortBy([...t.sets.keys()].filter((n) => n !== 'gen' && n !== 'owner')).map((n) => [n, sortBy([...t.sets.get(n)!.elems.values()].map((e) => JSON.stringify([e.key, e.value ?? null])))])),
    counters: sortBy([...t.counters.keys()]),
  };
}

/** What a full apply of the engine's current state gives in a fresh kernel: the reference for every other path. */
async function reference(policies: Policy[] = POLICIES): Promise<J> {
  const fresh = new FakeNft();
  const copy = join(dir, `ref-${Math.random().toString(16).slice(2)}`);
  const e = engineOn(copy, fresh);
  const pods = engine.state().pods;
  await e.reconcile({ change: (p) => Object.assign(p, pods), policies, remote: engine.state().remote, full: true });
  return content(fresh);
}

/** The verdict-map entries of one address: map -> chain. */
function vmapOf(f: FakeNft, ip: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, s] of f.table('inet', POLICY_TABLE)?.sets ?? []) {
    if (s.kind !== 'map') continue;
    for (const e of s.elems.values()) if (e.key === ip) out[name] = e.value.jump.target;
  }
  return out;
}
/** Names of the sets holding an address. */
function setsHolding(f: FakeNft, ip: string): string[] {
  const out: string[] = [];
  for (const [name, s] of f.table('inet', POLICY_TABLE)?.sets ?? []) {
    if (s.kind === 'set' && [...s.elems.values()].some((e) => JSON.stringify(e.key).includes(`"${ip}"`))) out.push(name);
  }
  return out.sort();
}

describe('reconcile: the paths', () => {
  it('a first pod is a full apply; the state names the compile and generation 1; no marker is left', async () => {
    const r = await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    expect(r.path).toBe('full');
    expect(whole(last().commands)).toBe(true);
    expect(Object.keys(vmapOf(nft, '10.1.0.2'))).toEqual(['in4']);
    const s = stateFile();
    expect(s).toMatchObject({ version: 2, gen: 1, pods: { 'net/api1/eth0': { ips: ['10.1.0.2'] } } });
    expect(files().filter((f) => f.startsWith('policy-compiled-'))).toEqual([`policy-compiled-${s.compiled}.json`, `policy-compiled-${s.compiled}.policies.json`]);
    expect(files()).not.toContain('policy.dirty');
    expect(content(nft)).toEqual(await reference());
  });

  it('a pod of a known group is a fast delta: its own elements only, no compile written', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    await add(engine, pod('web1', '10.1.0.3', 'web'), POLICIES);
    const compiled = stateFile().compiled;
    const r = await add(engine, pod('web2', '10.1.0.4', 'web'));
    expect(r.path).toBe('fast');
    const cmds = last().commands;
    expect(whole(cmds)).toBe(false);
    // Every element command names the new pod's address, or the generation/owner bookkeeping.
    const elems = cmds.filter((c: J) => (c.add ?? c.delete)?.element).map((c: J) => (c.add ?? c.delete).element);
    for (const e of elems.filter((x: J) => !['gen', 'owner'].includes(x.name))) expect(JSON.stringify(e.elem)).toContain('10.1.0.4');
    expect(stateFile()).toMatchObject({ compiled, gen: 3 });
    expect(setsHolding(nft, '10.1.0.4')).toEqual(setsHolding(nft, '10.1.0.3'));
    expect(content(nft)).toEqual(await reference());
    // And back out: a DEL of a known group is fast too.
    const d = await engine.remove({ key: podKey('net', 'web2', 'eth0'), ips: ['10.1.0.4'] });
    expect(d.path).toBe('fast');
    expect(setsHolding(nft, '10.1.0.4')).toEqual([]);
    expect(content(nft)).toEqual(await reference());
  });

  it('a pod of a new group is compiled and applied as a delta, not a rewrite', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const r = await add(engine, pod('db1', '10.1.0.9', 'db'));
    expect(r.path).toBe('delta');
    expect(r.compiled).toBeDefined();
    expect(whole(last().commands)).toBe(false);
    expect(Object.keys(vmapOf(nft, '10.1.0.9'))).toEqual(['in4']);
    expect(content(nft)).toEqual(await reference());
  });

  it('a policy change rewrites the table whole, and removes the profile chains no longer used', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    await add(engine, pod('db1', '10.1.0.9', 'db'));
    const apiChain = vmapOf(nft, '10.1.0.2').in4!;
    const r = await engine.reconcile({ policies: CHANGED });
    expect(r.path).toBe('full');
    // api-ingress is gone: the api pod is no longer isolated, and its profile chain is deleted.
    expect(vmapOf(nft, '10.1.0.2')).toEqual({});
    expect(content(nft).chains).not.toHaveProperty(apiChain);
    // Counters stay when their policy goes (so `policy stats` survives a remove and re-add): compared as a superset.
    const [now, ref] = [content(nft), await reference(CHANGED)];
    expect({ ...now, counters: [] }).toEqual({ ...ref, counters: [] });
    expect(now.counters).toEqual(expect.arrayContaining(ref.counters));
  });

  it('a dirty marker (a change that crashed) makes the next change a full apply that also deletes what no file names', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    // As a crash between the kernel and the files would leave it: a chain and a set only the kernel knows, and the marker.
    await nft.run(new NftTransaction().push(
      { add: { chain: { family: 'inet', table: POLICY_TABLE, name: 'pr_0123456789ab' } } },
      { add: { set: { family: 'inet', table: POLICY_TABLE, name: 'p_0123456789ab_4', type: 'ipv4_addr' } } },
    ));
    writeFileSync(join(engine.stateDir, 'policy.dirty'), '');
    const r = await add(engine, pod('api2', '10.1.0.3', 'api'));
    expect(r.path).toBe('full');
    expect(content(nft).chains).not.toHaveProperty('pr_0123456789ab');
    expect(content(nft).sets).not.toHaveProperty('p_0123456789ab_4');
    expect(existsSync(join(engine.stateDir, 'policy.dirty'))).toBe(false);
    expect(content(nft)).toEqual(await reference());
  });

  it('a table emptied behind the engine (its generation not held) is re-applied whole after the partial change is refused', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    await add(engine, pod('web1', '10.1.0.3', 'web'));
    // Behind the engine's back, every set and map emptied (as a restore of an older ruleset could leave
    // it): the table and its sets are there, so only the generation tells that the kernel is not what the files say.
    const T = { family: 'inet', table: POLICY_TABLE };
    await nft.run(new NftTransaction().push(...[...nft.table('inet', POLICY_TABLE)!.sets.values()].filter((st) => st.name !== 'owner').map((st) => ({ flush: { [st.kind]: { ...T, name: st.name } } }))));
    expect(vmapOf(nft, '10.1.0.2')).toEqual({});
    const r = await add(engine, pod('web2', '10.1.0.4', 'web'));
    expect(r.path).toBe('full');
    const [fast, full] = nft.history.slice(-2);
    expect(fast).toMatchObject({ ok: false });
    expect(whole(fast!.commands)).toBe(false);
    expect(full).toMatchObject({ ok: true });
    expect(whole(full!.commands)).toBe(true);
    expect(content(nft)).toEqual(await reference());
    // Every pod enforced again, not only the new one.
    expect(Object.keys(vmapOf(nft, '10.1.0.2'))).toEqual(['in4']);
  });

  it('a refused transaction writes nothing: no state, no compile, no marker, and the kernel unchanged', async () => {
    nft.failNext.push('Error: injected refusal');
    await expect(add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES)).rejects.toMatchObject({ code: Code.SystemFailure });
    expect(files()).toEqual(['policy.lock']);
    expect(nft.table('inet', POLICY_TABLE)).toBeUndefined();

    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const stateBefore = readFileSync(join(engine.stateDir, 'policy-state.json'), 'utf8');
    const filesBefore = files();
    const kernelBefore = content(nft);
    // A new group: the delta is refused, then the full apply too.
    nft.failNext.push('Error: injected refusal', 'Error: injected refusal');
    await expect(add(engine, pod('db1', '10.1.0.9', 'db'))).rejects.toThrow(/applying the policy to nftables failed/);
    expect(readFileSync(join(engine.stateDir, 'policy-state.json'), 'utf8')).toBe(stateBefore);
    expect(files()).toEqual(filesBefore);
    expect(content(nft)).toEqual(kernelBefore);
    // The next change goes on from the old state: a fast path refused, a full one taken.
    nft.failNext.push('Error: injected refusal');
    expect((await add(engine, pod('api2', '10.1.0.3', 'api'))).path).toBe('full');
    expect(content(nft)).toEqual(await reference());
  });

  it('extra commands ride in the same transaction, and alone when there is nothing to apply', async () => {
    const guard = { add: { table: { family: 'bridge', name: 'nhi_cni' } } };
    expect((await engine.reconcile({ extra: [guard] })).path).toBe('nothing');
    expect(last().commands).toEqual([guard]);
    await engine.reconcile({ change: (p) => placePod(p, ...pod('api1', '10.1.0.2', 'api')), policies: POLICIES, extra: [guard] });
    expect(last().commands[0]).toEqual(guard);
  });
});

describe('reconcile: state kept across processes', () => {
  it('a second engine on the same state dir (the next CNI process) continues from the files', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const next = engineOn(engine.stateDir);
    // The manifests (none configured here) did not change since: the policies last applied.
    expect(next.changedPolicies()).toBeUndefined();
    expect((await add(next, pod('api2', '10.1.0.3', 'api'))).path).toBe('fast');
    expect(Object.keys(engine.state().pods).sort()).toEqual(['net/api1/eth0', 'net/api2/eth0']);
  });

  it('a state of the first layout (one file, no version) is read and re-applied whole, then written as version 2', async () => {
    const [key, p] = pod('api1', '10.1.0.2', 'api');
    await engine.reconcile({ change: (x) => placePod(x, key, p), policies: POLICIES });
    // The old layout: pods, policies and names in policy-state.json, no compile files; the kernel holds what it named.
    for (const f of files().filter((x) => x.startsWith('policy-compiled-'))) rmSync(join(engine.stateDir, f));
    const names = { chains: Object.keys(content(nft).chains).filter((c) => c.startsWith('pr_')), sets: Object.keys(content(nft).sets).filter((x) => /^[pnw]_/.test(x)) };
    writeFileSync(join(engine.stateDir, 'policy-state.json'), JSON.stringify({ pods: { [key]: p }, policies: POLICIES, names }));
    expect(engine.state().pods).toHaveProperty([key]);
    expect(engine.state().policies.map((x) => x.name)).toEqual(POLICIES.map((x) => x.name));
    const r = await add(engine, pod('web1', '10.1.0.3', 'web'));
    expect(r.path).toBe('full');
    expect(stateFile()).toMatchObject({ version: 2 });
    expect(content(nft)).toEqual(await reference());
  });

  it('remote peers are stored, kept by a change that does not name them, and a change of them is compiled', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const remote: RemotePeer[] = [
      { id: 'node2/shop/web9', ips: ['10.2.0.9', 'not-an-address'], identity: identity('web9', 'web') },
    ];
    const r = await engine.reconcile({ remote });
    expect(r.path).not.toBe('fast');
    expect(r.compiled).toBeDefined();
    expect(stateFile().remote).toEqual([{ id: 'node2/shop/web9', ips: ['10.2.0.9'], identity: identity('web9', 'web') }]);
    // A pod's ADD without the agent keeps them, and is still fast.
    expect((await add(engine, pod('api2', '10.1.0.3', 'api'))).path).toBe('fast');
    expect(stateFile().remote).toHaveLength(1);
    // Never classified here: no verdict-map entry for a remote peer.
    expect(vmapOf(nft, '10.2.0.9')).toEqual({});
    // An empty list clears them.
    await engine.reconcile({ remote: [] });
    expect(stateFile().remote).toBeUndefined();
  });

  it('remote peers are compiled into the peer sets that select them: a new group by compile + delta, a known one fast, each equal to a full apply', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const web9: RemotePeer = { id: 'node2/shop/web9', ips: ['10.2.0.9'], identity: identity('web9', 'web') };
    const r1 = await engine.reconcile({ remote: [web9] });
    expect(r1.path).toBe('delta');
    // api-ingress lets app=web in: the remote web pod's address is in a peer set now.
    expect(setsHolding(nft, '10.2.0.9')).not.toEqual([]);
    expect(content(nft)).toEqual(await reference());
    // A second pod of the same group on another node: no compile.
    const web8: RemotePeer = { id: 'node3/shop/web8', ips: ['10.3.0.8'], identity: identity('web8', 'web') };
    const r2 = await engine.reconcile({ remote: [web9, web8] });
    expect(r2.path).toBe('fast');
    expect(setsHolding(nft, '10.3.0.8')).toEqual(setsHolding(nft, '10.2.0.9'));
    expect(content(nft)).toEqual(await reference());
    // A label edit on the remote pod (web -> batch): it leaves the peer set, fast or not, and matches a full apply.
    await engine.reconcile({ remote: [{ ...web9, identity: identity('web9', 'batch') }, web8] });
    expect(setsHolding(nft, '10.2.0.9').filter((n) => setsHolding(nft, '10.3.0.8').includes(n))).toEqual([]);
    expect(content(nft)).toEqual(await reference());
    // The remote pod deleted: its address is gone from every set.
    const r4 = await engine.reconcile({ remote: [web8] });
    expect(['fast', 'delta']).toContain(r4.path);
    expect(setsHolding(nft, '10.2.0.9')).toEqual([]);
    expect(content(nft)).toEqual(await reference());
    // And a local pod's ADD after all that is still fast, with the peers kept.
    expect((await add(engine, pod('api2', '10.1.0.3', 'api'))).path).toBe('fast');
    expect(content(nft)).toEqual(await reference());
  });
});

describe('reconcile: the table is not ours to rewrite', () => {
  it('without a state file, a table that still enforces pods refuses an ADD; a DEL takes out its addresses only', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    await add(engine, pod('api2', '10.1.0.3', 'api'));
    rmSync(engine.stateDir, { recursive: true });
    const lost = engineOn(engine.stateDir);
    await expect(add(lost, pod('api3', '10.1.0.4', 'api'), POLICIES)).rejects.toThrow(/still enforces pods/);
    expect(Object.keys(vmapOf(nft, '10.1.0.2'))).toEqual(['in4']);
    const r = await lost.remove({ key: podKey('net', 'api1', 'eth0'), ips: ['10.1.0.2'] });
    expect(r.path).toBe('without-state');
    expect(vmapOf(nft, '10.1.0.2')).toEqual({});
    expect(Object.keys(vmapOf(nft, '10.1.0.3'))).toEqual(['in4']);
  });

  it('a second state dir on the same table is refused with code 7, naming the owner', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const other = engineOn(join(dir, 'other'));
    const err = await add(other, pod('web1', '10.1.0.3', 'web'), POLICIES).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CniError);
    expect(err).toMatchObject({ code: Code.InvalidConfig });
    expect((err as Error).message, (err as Error).message).toContain(engine.stateDir);
    expect(Object.keys(vmapOf(nft, '10.1.0.2'))).toEqual(['in4']);
  });
});

describe('check, stats, explain', () => {
  it('CHECK passes on an applied pod and names what the kernel lost', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const key = podKey('net', 'api1', 'eth0');
    await engine.check(key);
    await expect(engine.check(podKey('net', 'nope', 'eth0'))).rejects.toMatchObject({ code: Code.CheckFailed });
    const map = vmapOf(nft, '10.1.0.2');
    await nft.run(new NftTransaction().push({ delete: { element: { family: 'inet', table: POLICY_TABLE, name: 'in4', elem: ['10.1.0.2'] } } }));
    await expect(engine.check(key)).rejects.toThrow(/not in the kernel/);
    await expect(engine.check(key)).rejects.toMatchObject({ code: Code.CheckFailed, details: expect.stringContaining(`in4 10.1.0.2 -> ${map.in4}`) });
  });

  it('stats lists the applied policies with the kernel counters, and says when there is no table', async () => {
    expect((await engine.stats()).unavailable).toBeDefined();
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const s = await engine.stats();
    expect(s.unavailable).toBeUndefined();
    expect(s.rows.map((r) => [r.policy, r.allowed, r.denied])).toEqual([['shop/api-ingress', 0, 0], ['shop/db-ingress', 0, 0]]);
  });

  it('explain resolves pods of the state and addresses, and refuses an unknown pod as bad input', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    await add(engine, pod('web1', '10.1.0.3', 'web'));
    const ok = engine.explain({ from: 'shop/web1', to: 'shop/api1', port: 8080, protocol: 'TCP', policies: POLICIES });
    expect(ok.decision.allowed).toBe(true);
    expect(ok.deciding.map((p) => p.name)).toEqual(['api-ingress']);
    expect(ok.to.shown).toBe('shop/api1 (10.1.0.2)');
    const no = engine.explain({ from: '10.9.9.9', to: 'shop/api1', port: 8080, protocol: 'TCP', policies: POLICIES });
    expect(no.decision.allowed).toBe(false);
    expect(() => engine.explain({ from: 'shop/ghost', to: 'shop/api1', port: 80, protocol: 'TCP', policies: POLICIES })).toThrow(ExplainInputError);
  });

  it('sync re-applies whole and reports what changed', async () => {
    await add(engine, pod('api1', '10.1.0.2', 'api'), POLICIES);
    const r = await engine.sync({ policies: CHANGED });
    expect(r.policies).toMatchObject({ now: 1, was: 2, removed: ['NetworkPolicy shop/api-ingress'], changed: ['NetworkPolicy shop/db-ingress'] });
    expect(r.pods).toEqual({ total: 1, withIdentity: 1, underProfile: 0 });
    expect(whole(last().commands)).toBe(true);
  });
});
