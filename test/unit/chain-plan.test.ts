// The chain as data (issue 8): the modules' parts of one ADD plan and of one
// teardown plan (DEL, GC, a rollback), read without root: what each verb
// would run, in which order, before anything runs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCniConfig } from '../../src/chain/config.js';
import type { IpamStep } from '../../src/chain/ipam/module.js';
import type { AddContext, Chain, TeardownContext } from '../../src/chain/module.js';
import { CHAIN, planAdd, teardownPlan } from '../../src/chain/runner.js';
import { RunCache } from '../../src/chain/state.js';
import type { Result } from '../../src/cni/result.js';
import type { Pods } from '../../src/policy/engine/pods.js';
import type { PolicyEngine } from '../../src/policy/engine/index.js';

const dir = mkdtempSync(join(tmpdir(), 'nhi-plan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const released: string[] = [];
const ipamStep: IpamStep = {
  add: async () => ({ ips: [{ address: '10.22.0.5/24', gateway: '10.22.0.1' }] }),
  del: async () => void released.push('del'),
  check: async () => undefined,
  gc: async () => void released.push('gc'),
  status: async () => undefined,
};

function chain(o: { policy?: boolean; masq?: boolean } = {}): Chain {
  const cfg = loadCniConfig({ bridge: 'nhiplan0', isGateway: true, isDefaultGateway: true, ipMasq: o.masq ?? true, stateDir: dir, ipam: { type: 'host-local' } });
  return {
    cfg, ipam: ipamStep,
    req: { env: { verb: 'ADD', containerId: 'c1', netns: '/var/run/netns/pod-1', ifname: 'eth0', args: '', path: [] }, config: { name: 'plannet', cniVersion: '1.1.0' }, version: '1.1.0', stdin: Buffer.from('{}') },
    ...(o.policy ? { policy: {} as PolicyEngine, identity: { namespace: 'ns', name: 'p', labels: { app: 'a' }, namespaceLabels: {}, ports: [] } } : {}),
  };
}

async function addContext(c: Chain, reclaimed?: { containerId: string; ifname: string }[]): Promise<AddContext> {
  const x: AddContext = { c, cache: new RunCache(join(dir, 'run'), 'ns0'), hostVeth: 'veth0123abcd', mac: '0a:58:0a:16:00:05', bridgeSeen: false };
  for (const m of CHAIN) await m.prepare?.(x);
  if (reclaimed) x.ipam!.reclaimed = { released: [], kept: [], unguard: [{ delete: { element: { family: 'bridge', table: 'nhi_cni', name: 'reclaimed-marker', elem: [] } } }], removed: reclaimed };
  return x;
}

const kinds = (cmds: unknown[]) => cmds.map((c) => { const [verb, body] = Object.entries(c as object)[0]!; return `${verb} ${Object.keys(body as object)[0]}`; });
const tableOf = (c: unknown) => { const body = Object.values(Object.values(c as object)[0] as object)[0] as { family?: string; table?: string; name?: string }; return `${body.family} ${body.table ?? body.name}`; };

describe('the chain as data', () => {
  it('is one ordered list: IPAM first (the others need its addresses), policy last', () => {
    expect(CHAIN.map((m) => m.name)).toEqual(['ipam', 'bridge', 'veth', 'masq', 'macspoof', 'policy']);
  });

  it("an ADD's plan: bridge then veth in the node's batch, addresses and routes in the pod's, masquerade then the port guard in one transaction", async () => {
    const x = await addContext(chain());
    const plan = await planAdd(x);
    const host = plan.host.lines.map((l) => l.slice(0, 3).join(' '));
    expect(host.slice(0, 2)).toEqual(['link add nhiplan0', 'link set nhiplan0']);
    expect(host).toContain('link add veth0123abcd');
    expect(x.bridgeCreateLine).toBe(0);
    expect(x.veth!.createLine).toBe(host.indexOf('link add veth0123abcd'));
    expect(plan.pod.lines.map((l) => l.join(' '))).toEqual(['addr add 10.22.0.5/24 dev eth0', 'link set eth0 up', 'route add 0.0.0.0/0 via 10.22.0.1 dev eth0']);
    const tables = plan.nft.commands.map(tableOf);
    const lastMasq = tables.lastIndexOf('inet nhi_cni');
    const firstGuard = tables.indexOf('bridge nhi_cni');
    expect(lastMasq).toBeGreaterThanOrEqual(0);
    expect(firstGuard).toBeGreaterThan(lastMasq);
    // No policy section: no policy change.
    expect(plan.policy.changes).toHaveLength(0);
  });

  it('without ipMasq the plan has no masquerade; the guard stays', async () => {
    const plan = await planAdd(await addContext(chain({ masq: false })));
    expect(plan.nft.commands.map(tableOf)).not.toContain('inet nhi_cni');
    expect(plan.nft.commands.map(tableOf)).toContain('bridge nhi_cni');
  });

  it('with a policy section the pod joins the policy state in the same plan; reclaimed attachments leave it first', async () => {
    const x = await addContext(chain({ policy: true }), [{ containerId: 'dead', ifname: 'eth0' }]);
    const plan = await planAdd(x);
    // The reclaimed guards' removal comes before this pod's guard.
    expect(JSON.stringify(plan.nft.commands[0])).toContain('reclaimed-marker');
    const pods: Pods = {
      'plannet/dead/eth0': { network: 'plannet', containerId: 'dead', ifname: 'eth0', ips: ['10.22.0.9'] },
      'plannet/old/eth0': { network: 'plannet', containerId: 'old', ifname: 'eth0', ips: ['10.22.0.5'] },
      'plannet/other/eth0': { network: 'plannet', containerId: 'other', ifname: 'eth0', ips: ['10.22.0.7'] },
    };
    for (const f of plan.policy.changes) f(pods);
    // The reclaimed pod is gone, a stale holder of the pod's address too, the pod is in with its identity.
    expect(Object.keys(pods).sort()).toEqual(['plannet/c1/eth0', 'plannet/other/eth0']);
    expect(pods['plannet/c1/eth0']).toMatchObject({ ips: ['10.22.0.5'], identity: { labels: { app: 'a' } } });
  });
});

describe('one teardown plan for DEL, GC and a rollback', () => {
  const t = (o: Partial<TeardownContext>): TeardownContext => ({
    c: chain({ policy: true }), containerId: 'c1', ifname: 'eth0', netns: '', ips: ['10.22.0.5/24'],
    ports: [{ hostVeth: 'lo', mac: '0a:58:0a:16:00:05', ips: ['10.22.0.5'], level: 'addresses' }], nft: true, release: true, ...o,
  });

  it('DEL: the host veth from the node, the guard and the policy membership in one transaction, then IPAM', async () => {
    // "lo" stands for a host veth that exists: the plan is only read, never run.
    const plan = teardownPlan(t({ hostVeth: 'lo' }));
    expect(plan.host.lines).toEqual([['link', 'del', 'lo']]);
    // Taken down first, so the links and the guard can go side by side.
    expect(plan.down).toEqual(['lo']);
    expect(plan.pod.empty).toBe(true);
    expect(kinds(plan.nft.commands)).toContain('delete counter');
    const pods: Pods = { 'plannet/c1/eth0': { network: 'plannet', containerId: 'c1', ifname: 'eth0', ips: ['10.22.0.5'] } };
    for (const f of plan.policy.changes) f(pods);
    expect(pods).toEqual({});
    expect(plan.policy.forget).toEqual(['10.22.0.5']);
    released.length = 0;
    for (const r of plan.release) await r();
    expect(released).toEqual(['del']);
  });

  it('DEL with the host side unknown: the pod side goes from inside the namespace', () => {
    const plan = teardownPlan(t({ hostVeth: undefined, netns: dir }));
    expect(plan.host.empty).toBe(true);
    expect(plan.down).toEqual([]);
    expect(plan.pod.lines).toEqual([['link', 'del', 'eth0']]);
  });

  it('a rollback before the nft transaction touches neither the guard nor the policy', () => {
    const plan = teardownPlan(t({ hostVeth: undefined, ports: [], nft: false }));
    expect(plan.nft.commands).toHaveLength(0);
    expect(plan.policy.changes).toHaveLength(0);
    expect(plan.policy.forget).toBeUndefined();
    expect(plan.release).toHaveLength(1);
  });

  it("GC's part per stale attachment releases nothing itself (IPAM's gc does), and the policy's GC part keeps only the valid pods", async () => {
    expect(teardownPlan(t({ hostVeth: 'lo', release: false, nft: false })).release).toHaveLength(0);
    const c = chain({ policy: true });
    const { Plan } = await import('../../src/chain/plan.js');
    const plan = new Plan();
    for (const m of CHAIN) m.gc?.({ c, valid: [{ containerId: 'keep', ifname: 'eth0' }] }, plan);
    const pods: Pods = {
      'plannet/keep/eth0': { network: 'plannet', containerId: 'keep', ifname: 'eth0', ips: ['10.22.0.2'] },
      'plannet/stale/eth0': { network: 'plannet', containerId: 'stale', ifname: 'eth0', ips: ['10.22.0.3'] },
      'othernet/x/eth0': { network: 'othernet', containerId: 'x', ifname: 'eth0', ips: ['10.23.0.3'] },
    };
    for (const f of plan.policy.changes) f(pods);
    expect(Object.keys(pods).sort()).toEqual(['othernet/x/eth0', 'plannet/keep/eth0']);
    released.length = 0;
    for (const r of plan.release) await r();
    expect(released).toEqual(['gc']);
  });
});

describe('link flags through sysfs', () => {
  it('refuses a name that is not an interface name before touching a path', async () => {
    const { setLinkDown, setLinkUp } = await import('../../src/sys/sysfs.js');
    for (const bad of ['../../kernel', '.', '..', 'a/b', '', 'x'.repeat(16), 'eth0 up']) {
      expect(() => setLinkUp(bad), bad).toThrow(/is not an interface name/);
      expect(() => setLinkDown(bad), bad).toThrow(/is not an interface name/);
    }
  });
});
