// The incremental apply: the whole state for pods A, then delta(A -> B), must
// leave the kernel exactly as the whole state for B does - checked on real
// nftables in two namespaces the test creates.
import { writeFileSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { compile, delta, fastDelta, type LocalPod } from '../../src/policy/compile/index.js';
import { parseManifestText } from '../../src/policy/parse.js';
import { createNetns, deleteAllNetns, inNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { ROOT } from '../helpers/paths.js';

const scratch = new Scratch();
afterAll(() => {
  deleteAllNetns();
  scratch.cleanup();
});

const NO_AUDIT = { all: false, namespaces: [], policies: [] };
const policies = ['payments.yaml', 'cicd.yaml', 'ml.yaml'].flatMap((f) => parseManifestText(readFileSync(`${ROOT}/examples/policies/${f}`, 'utf8'), f));

function pod(i: number, namespace: string, app: string): LocalPod {
  return {
    id: `n/p${i}/eth0`,
    ips: [`10.99.${i >> 8}.${i & 255}`, `fd99::${i.toString(16)}`],
    identity: { namespace, name: `p${i}`, labels: { app }, namespaceLabels: {}, ports: [{ name: 'http-artifacts', containerPort: 8000 + i, protocol: 'TCP' }] },
  };
}

function apply(ns: Netns, commands: object[]): void {
  const file = scratch.path(`t${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ nftables: [{ metainfo: { json_schema_version: 1 } }, ...commands] }));
  inNetns(ns, 'nft', ['-j', '-f', file]);
}

/** The table as comparable data: sets and maps with sorted elements, chains with their rules. */
function snapshot(ns: Netns): unknown {
  const items = JSON.parse(inNetns(ns, 'nft', ['-j', 'list', 'table', 'inet', 'nhi_policy'])).nftables as Record<string, any>[];
  const out: Record<string, unknown> = {};
  for (const it of items) {
    if (it.set) out[`set ${it.set.name}`] = (it.set.elem ?? []).map((e: unknown) => JSON.stringify(e)).sort();
    if (it.map) out[`map ${it.map.name}`] = (it.map.elem ?? []).map((e: unknown) => JSON.stringify(e)).sort();
    if (it.chain) out[`chain ${it.chain.name}`] ??= [];
    if (it.rule) (out[`chain ${it.rule.chain}`] as unknown[] ?? (out[`chain ${it.rule.chain}`] = [])).push(JSON.stringify(it.rule.expr));
    if (it.counter) out[`counter ${it.counter.name}`] = true;
  }
  return out;
}

describe('incremental policy apply', () => {
  it('fastDelta (no compile) for pods of known groups equals a full compile, and refuses a new group', () => {
    const A = [pod(1, 'payments', 'payment-service'), pod(2, 'payments', 'payments-db'), pod(3, 'ci', 'build')];
    const a = compile(policies, A, NO_AUDIT);
    // Two more replicas of known groups, one pod removed.
    const added = [{ ...pod(8, 'payments', 'payments-db'), identity: { ...A[1]!.identity!, name: 'p8' } }, { ...pod(9, 'ci', 'build'), identity: { ...A[2]!.identity!, name: 'p9' } }];
    const B = [A[0]!, A[2]!, ...added];
    const fast = fastDelta(a, [A[1]!], added);
    expect(fast).toBeDefined();
    const [x, y] = [createNetns('nhid'), createNetns('nhid')];
    apply(x, a.commands);
    apply(x, fast!);
    apply(y, compile(policies, B, NO_AUDIT).commands);
    const noCounters = (o: unknown) => Object.fromEntries(Object.entries(o as object).filter(([k]) => !k.startsWith('counter ')));
    expect(noCounters(snapshot(x))).toEqual(noCounters(snapshot(y)));
    expect(fastDelta(a, [], [pod(10, 'ml', 'training-data')])).toBeUndefined();
  });

  const A = [pod(1, 'payments', 'payment-service'), pod(2, 'payments', 'payments-db'), pod(3, 'ci', 'build')];
  const B = [...A.filter((p) => p.id !== 'n/p2/eth0'), pod(4, 'payments', 'payments-db'), pod(5, 'ci', 'artifact-store'), pod(6, 'ml', 'training-data'), pod(7, 'payments', 'reporting')];

  it('full(A) + delta(A -> B) equals full(B), and the delta is far smaller than a full apply', () => {
    const [x, y] = [createNetns('nhid'), createNetns('nhid')];
    const a = compile(policies, A, NO_AUDIT);
    const b = compile(policies, B, NO_AUDIT, a.names);
    apply(x, a.commands);
    const d = delta(a.desired, b);
    apply(x, d);
    apply(y, compile(policies, B, NO_AUDIT).commands);
    expect(snapshot(x)).toEqual(snapshot(y));
    expect(d.length).toBeLessThan(b.commands.length / 2);
    // And back: removing pods deletes their elements, and chains/sets no pod needs.
    const back = delta(b.desired, compile(policies, A, NO_AUDIT, b.names));
    apply(x, back);
    const z = createNetns('nhid');
    apply(z, a.commands);
    // Named counters are kept on purpose (a policy's counts survive its pods
    // coming and going), so x holds B's counters too; everything else matches.
    const noCounters = (o: unknown) => Object.fromEntries(Object.entries(o as object).filter(([k]) => !k.startsWith('counter ')));
    expect(noCounters(snapshot(x))).toEqual(noCounters(snapshot(z)));
    for (const k of Object.keys(snapshot(z) as object)) expect(snapshot(x)).toHaveProperty([k]);
  });
});
