// The unit tests' nftables (src/sys/nft-fake.ts) against the real one: the
// same transactions go to `nft -j -f` in a throw-away namespace and to the
// fake, and both must succeed or fail alike and list the same tables (handles
// included). The transactions are the ones the plugin sends (port guard add
// and delete, masquerade, a compiled policy) and the failures its code relies
// on; a fake that drifted from the kernel fails here, not in production.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { masqCommands } from '../../src/chain/masq.js';
import { guardAdd, guardDel, type GuardedPort } from '../../src/chain/spoofcheck.js';
import { compile, POLICY_TABLE } from '../../src/policy/compile/index.js';
import { parseManifestText } from '../../src/policy/parse.js';
import { FakeNft } from '../../src/sys/nft-fake.js';
import { chain, counter, element, map, NftTransaction, rule, set, table, type Family, type NftCommand } from '../../src/sys/nft.js';
import { createNetns, deleteAllNetns, type Netns } from '../helpers/netns.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

let ns: Netns;
let dir: string;
beforeAll(() => {
  ns = createNetns('nhif');
  dir = mkdtempSync(join(tmpdir(), 'nhi-nft-'));
});
afterAll(() => {
  deleteAllNetns();
  rmSync(dir, { recursive: true, force: true });
});

function realRun(cmds: NftCommand[]): { ok: boolean; stderr: string } {
  const file = join(dir, 'tx.json');
  writeFileSync(file, new NftTransaction().push(...cmds).json());
  const r = spawnSync('ip', ['netns', 'exec', ns.name, 'nft', '-j', '-f', file], { encoding: 'utf8' });
  return { ok: r.status === 0, stderr: r.stderr };
}

function realList(family: Family, name: string): J[] | undefined {
  const r = spawnSync('ip', ['netns', 'exec', ns.name, 'nft', '-j', 'list', 'table', family, name], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  return (JSON.parse(r.stdout) as { nftables: J[] }).nftables.filter((o) => !o.metainfo);
}

/**
 * Set elements in a stable order (the kernel lists a hash set in its own), and
 * no table handle (the namespace's count of tables ever made).
 */
function sorted(objects: J[], exprs: boolean): J[] {
  return objects.map((o) => {
    if (o.table) return { table: { ...o.table, handle: 0 } };
    if (o.rule) return { rule: { ...o.rule, expr: exprs ? anonymousSorted(o.rule.expr) : '(not compared)' } };
    const s = o.set ?? o.map;
    if (!s?.elem) return o;
    const elem = [...s.elem].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    return { [o.set ? 'set' : 'map']: { ...s, elem } };
  });
}

/** The kernel lists an anonymous set's members sorted by value; the fake as given. */
function anonymousSorted(v: J): J {
  if (Array.isArray(v)) return v.map(anonymousSorted);
  if (!v || typeof v !== 'object') return v;
  const out = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, anonymousSorted(x)]));
  if (Array.isArray(out.set)) out.set = [...out.set].sort((a: J, b: J) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  return out;
}

function reset(fake: FakeNft): void {
  spawnSync('ip', ['netns', 'exec', ns.name, 'nft', 'flush', 'ruleset']);
  fake.tables.clear();
}

/**
 * Runs the steps on both; after each, the outcome and the listing of `tables`
 * must agree. `exprs`: rule expressions too; nft rewrites some as it lists
 * them (`meta l4proto tcp th dport 1` comes back as `tcp dport 1`), which the
 * fake does not model, so the compiled policy is compared without them.
 */
async function same(tables: [Family, string][], ...steps: NftCommand[][]): Promise<boolean[]> {
  return sameAs(true, tables, ...steps);
}
async function sameAs(exprs: boolean, tables: [Family, string][], ...steps: NftCommand[][]): Promise<boolean[]> {
  const fake = new FakeNft();
  reset(fake);
  const outcomes: boolean[] = [];
  for (const [i, cmds] of steps.entries()) {
    const real = realRun(cmds);
    const f = await fake.run(new NftTransaction().push(...cmds));
    expect(f.exitCode === 0, `step ${i}: real nft ${real.ok ? 'applied it' : `refused it: ${real.stderr}`}, the fake ${f.exitCode === 0 ? 'applied it' : `refused it: ${f.stderr}`}`).toBe(real.ok);
    outcomes.push(real.ok);
    for (const [family, name] of tables) {
      const want = realList(family, name);
      const got = await fake.list(family, name);
      if (want === undefined) expect(typeof got, `step ${i}: ${family} ${name} is missing in the kernel`).toBe('string');
      else expect(sorted(got as J[], exprs), `step ${i}: ${family} ${name}`).toStrictEqual(sorted(want, exprs));
    }
  }
  return outcomes;
}

const port = (n: number): GuardedPort => ({
  hostVeth: `veth0000000${n}`, mac: `02:00:00:00:00:0${n}`, ips: [`10.1.0.${n}`, `fd00::${n}`], level: 'addresses',
});

describe('the nft fake lists what the kernel lists', () => {
  it('port guards: add two, delete one, delete a missing one, on the bridge and the inet table', async () => {
    for (const family of ['bridge', 'inet'] as const) {
      const p = (n: number) => ({ ...port(n), family });
      expect(await same([[family, 'nhi_cni']], guardAdd(p(1)), guardAdd(p(2)), guardDel(p(1)), guardDel(p(3)), guardAdd({ ...p(4), level: 'mac' }), guardDel(p(4))))
        .toStrictEqual([true, true, true, true, true, true]);
    }
  });

  it('masquerade: two subnets, re-asserted', async () => {
    const cmds = [...masqCommands('net1', '10.1.0.0/24'), ...masqCommands('net1', 'fd00::/64')];
    expect(await same([['inet', 'nhi_cni']], cmds, masqCommands('net1', '10.1.0.0/24'))).toStrictEqual([true, true]);
  });

  it('a compiled policy, then the same with other pods (a delta on a full table)', async () => {
    const policies = parseManifestText(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db, namespace: shop }
spec:
  podSelector: { matchLabels: { app: db } }
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{ podSelector: { matchLabels: { app: web } } }, { ipBlock: { cidr: 10.9.0.0/16, except: [10.9.1.0/24] } }]
      ports: [{ protocol: TCP, port: 5432 }, { protocol: UDP, port: 53 }]
`, 'inline.yaml');
    const pod = (name: string, app: string, ip: string) => ({
      id: `net/${name}/eth0`, ips: [ip], identity: { namespace: 'shop', name, labels: { app }, namespaceLabels: {}, ports: [] },
    });
    const a = compile(policies, [pod('db-0', 'db', '10.1.0.2'), pod('web-0', 'web', '10.1.0.3')], { all: false, namespaces: [], policies: [] });
    const b = compile(policies, [pod('db-0', 'db', '10.1.0.2'), pod('web-1', 'web', 'fd00::7')], { all: false, namespaces: [], policies: [] });
    expect(await sameAs(false, [['inet', POLICY_TABLE]], a.commands, b.commands)).toStrictEqual([true, true]);
  });

  it('typed objects: every verb', async () => {
    const tx = () => new NftTransaction('inet', 't');
    const outcomes = await same([['inet', 't']],
      tx().add(table(), chain('base', { type: 'filter', hook: 'input', prio: 0, policy: 'accept' }), chain('reg'),
        set('s4', 'ipv4_addr'), map('vm', 'ifname', 'verdict'), map('cm', 'ifname', 'counter'), counter('c1'),
        element('s4', '10.0.0.1', '10.0.0.2'), element('vm', ['veth1', { goto: { target: 'reg' } }]), element('cm', ['veth1', 'c1']),
        rule('base', { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '@s4' } }, { accept: null }),
        { ...rule('reg', { match: { op: '==', left: { payload: { protocol: 'udp', field: 'sport' } }, right: { set: [67, 547] } } }, { drop: null }), comment: 'dhcp' },
        rule('base', { counter: { map: { key: { meta: { key: 'iifname' } }, data: '@cm' } } }, { jump: { target: 'reg' } })).commands,
      tx().insert(rule('base', { drop: null })).commands,
      tx().add(chain('base', { type: 'filter', hook: 'input', prio: 0, policy: 'drop' })).commands,
      tx().flush(set('s4', 'ipv4_addr')).add(element('s4', '10.0.0.3')).commands,
      tx().create(element('s4', '10.0.0.3')).commands,
      tx().flush(table()).commands,
      tx().delete(map('vm', 'ifname', 'verdict'), chain('reg')).commands,
      tx().delete(table()).commands,
    );
    expect(outcomes).toStrictEqual([true, true, true, true, false, true, true, true]);
  });

  it('failures: each refused alike, and nothing of the failing transaction stays', async () => {
    const T = { family: 'inet', table: 't' };
    const setup: NftCommand[] = new NftTransaction('inet', 't').add(table(), chain('reg'), chain('base', { type: 'filter', hook: 'input', prio: 0, policy: 'accept' }),
      set('s4', 'ipv4_addr'), map('vm', 'ifname', 'verdict'), map('cm', 'ifname', 'counter'), counter('c1'),
      element('s4', '10.0.0.1'), element('vm', ['veth1', { goto: { target: 'reg' } }]), element('cm', ['veth1', 'c1']),
      rule('base', { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '@s4' } }, { counter: { map: { key: { meta: { key: 'iifname' } }, data: '@cm' } } })).commands;
    // Each one is preceded, in its transaction, by a change that must be undone with it.
    const first = { add: { element: { ...T, name: 's4', elem: ['10.0.0.99'] } } };
    const failing: Record<string, NftCommand> = {
      'delete a missing element': { delete: { element: { ...T, name: 's4', elem: ['10.9.9.9'] } } },
      'delete a chain a verdict map goes to': { delete: { chain: { ...T, name: 'reg' } } },
      'delete a set a rule looks up': { delete: { set: { ...T, name: 's4' } } },
      'delete a counter a map names': { delete: { counter: { ...T, name: 'c1' } } },
      'delete a missing counter': { delete: { counter: { ...T, name: 'nope' } } },
      'delete a missing chain': { delete: { chain: { ...T, name: 'nope' } } },
      'delete a missing table': { delete: { table: { family: 'inet', name: 'nope' } } },
      'create an existing element': { create: { element: { ...T, name: 's4', elem: ['10.0.0.1'] } } },
      'create an existing chain': { create: { chain: { ...T, name: 'reg' } } },
      're-add a map element with other data': { add: { element: { ...T, name: 'vm', elem: [['veth1', { accept: null }]] } } },
      're-add a set with another type': { add: { set: { ...T, name: 's4', type: 'ipv6_addr' } } },
      're-add a regular chain as a base chain': { add: { chain: { ...T, name: 'reg', type: 'filter', hook: 'input', prio: 0, policy: 'drop' } } },
      'a rule in a missing chain': { add: { rule: { ...T, chain: 'nope', expr: [{ accept: null }] } } },
      'a rule that jumps to a missing chain': { add: { rule: { ...T, chain: 'reg', expr: [{ jump: { target: 'nope' } }] } } },
      'a rule that looks up a missing set': { add: { rule: { ...T, chain: 'reg', expr: [{ match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '@nope' } }, { accept: null }] } } },
      'a map element that goes to a missing chain': { add: { element: { ...T, name: 'vm', elem: [['veth2', { goto: { target: 'nope' } }]] } } },
      'an element of a missing set': { add: { element: { ...T, name: 'nope', elem: ['10.0.0.1'] } } },
      'an IPv6 element in an IPv4 set': { add: { element: { ...T, name: 's4', elem: ['fd00::1'] } } },
      'flush a missing chain': { flush: { chain: { ...T, name: 'nope' } } },
    };
    for (const [what, cmd] of Object.entries(failing)) {
      expect(await same([['inet', 't']], setup, [first, cmd]), what).toStrictEqual([true, false]);
    }
  });
});
