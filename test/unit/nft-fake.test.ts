// The typed nft layer (src/sys/nft.ts) renders nft's JSON schema, and its
// fake (src/sys/nft-fake.ts) applies transactions as nft does: whole or not
// at all. (test/ns/nft-fake.test.ts holds the fake against the real nft.)
import { describe, expect, it } from 'vitest';
import { FakeNft } from '../../src/sys/nft-fake.js';
import { chain, counter, element, map, NftTransaction, rule, set, table } from '../../src/sys/nft.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = any;

const accept = { accept: null };
const tx = () => new NftTransaction('inet', 't');
const base = chain('in', { type: 'filter', hook: 'input', prio: 0, policy: 'accept' });

describe('NftTransaction: typed objects', () => {
  it('renders each object in its bound family and table', () => {
    const t = tx().add(table(), base, chain('reg'), set('s', ['ifname', 'ether_addr']), map('m', 'ifname', 'verdict'), counter('c'))
      .add(element('s', { concat: ['veth1', '02:00:00:00:00:01'] }), { ...rule('reg', accept), comment: 'x' })
      .insert(rule('in', accept)).replace({ ...rule('in', accept), handle: 4 })
      .flush(chain('reg')).delete({ ...rule('in'), handle: 4 }, counter('c'));
    const T = { family: 'inet', table: 't' };
    expect(t.commands).toStrictEqual([
      { add: { table: { family: 'inet', name: 't' } } },
      { add: { chain: { ...T, name: 'in', type: 'filter', hook: 'input', prio: 0, policy: 'accept' } } },
      { add: { chain: { ...T, name: 'reg' } } },
      { add: { set: { ...T, name: 's', type: ['ifname', 'ether_addr'] } } },
      { add: { map: { ...T, name: 'm', type: 'ifname', map: 'verdict' } } },
      { add: { counter: { ...T, name: 'c' } } },
      { add: { element: { ...T, name: 's', elem: [{ concat: ['veth1', '02:00:00:00:00:01'] }] } } },
      { add: { rule: { ...T, chain: 'reg', expr: [accept], comment: 'x' } } },
      { insert: { rule: { ...T, chain: 'in', expr: [accept] } } },
      { replace: { rule: { ...T, chain: 'in', handle: 4, expr: [accept] } } },
      { flush: { chain: { ...T, name: 'reg' } } },
      { delete: { rule: { ...T, chain: 'in', handle: 4 } } },
      { delete: { counter: { ...T, name: 'c' } } },
    ]);
  });

  it('on() adds to the same transaction in another table; push() takes raw commands', () => {
    const t = tx().add(table());
    const raw = { add: { table: { family: 'ip', name: 'raw' } } };
    expect(t.on('bridge', 'g').add(table())).not.toBe(t);
    t.push(raw);
    expect(t.commands).toStrictEqual([{ add: { table: { family: 'inet', name: 't' } } }, { add: { table: { family: 'bridge', name: 'g' } } }, raw]);
  });

  it('typed objects need a table', () => {
    expect(() => new NftTransaction().add(table())).toThrow(/without a table/);
  });
});

describe('FakeNft', () => {
  const setup = () => tx().add(table(), base, chain('reg'), set('s4', 'ipv4_addr'), map('vm', 'ifname', 'verdict'), counter('c1'),
    element('s4', '10.0.0.1'), element('vm', ['veth1', { goto: { target: 'reg' } }]),
    rule('in', { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '@s4' } }, { counter: 'c1' }, accept));

  it('applies a transaction and lists it as nft does (handles in command order)', async () => {
    const nft = new FakeNft();
    expect((await nft.run(setup())).exitCode).toBe(0);
    const listed = await nft.list('inet', 't') as J[];
    expect(listed.map((o) => Object.keys(o)[0])).toStrictEqual(['table', 'counter', 'set', 'map', 'chain', 'chain', 'rule']);
    expect(listed.find((o) => o.set).set).toMatchObject({ name: 's4', handle: 3, elem: ['10.0.0.1'] });
    expect(listed.find((o) => o.rule).rule).toMatchObject({ chain: 'in', handle: 6 });
    expect(nft.dump()).toStrictEqual(listed);
  });

  it('a failing command leaves everything as it was, with nft\'s error', async () => {
    const nft = new FakeNft();
    await nft.run(setup());
    const before = nft.dump();
    const r = await nft.run(tx().add(element('s4', '10.0.0.2'), chain('new')).delete(element('s4', '10.9.9.9')));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^internal:0:0-0: Error: Could not process rule: No such file or directory/);
    expect(nft.dump()).toStrictEqual(before);
    expect(nft.history.map((h) => h.ok)).toStrictEqual([true, false]);
  });

  it('refuses what the kernel refuses', async () => {
    const nft = new FakeNft();
    await nft.run(setup());
    const refused = async (t: NftTransaction) => (await nft.run(t)).stderr;
    expect(await refused(tx().delete(chain('reg')))).toMatch(/Device or resource busy/);
    expect(await refused(tx().delete(set('s4', 'ipv4_addr')))).toMatch(/Device or resource busy/);
    expect(await refused(tx().delete(counter('c1')))).toMatch(/Device or resource busy/);
    expect(await refused(tx().create(element('s4', '10.0.0.1')))).toMatch(/File exists/);
    expect(await refused(tx().add(element('vm', ['veth1', accept])))).toMatch(/File exists/);
    expect(await refused(tx().add(set('s4', 'ipv6_addr')))).toMatch(/File exists/);
    expect(await refused(tx().add(chain('reg', { type: 'filter', hook: 'input', prio: 0, policy: 'accept' })))).toMatch(/Operation not supported/);
    expect(await refused(tx().add(rule('reg', { jump: { target: 'nope' } })))).toMatch(/No such file/);
    expect(await refused(tx().add(element('s4', 'fd00::1')))).toMatch(/not of type ipv4_addr/);
    expect(await refused(tx().delete(table()).delete(table()))).toMatch(/No such file/);
    expect(nft.history.slice(1).every((h) => !h.ok)).toBe(true);
  });

  it('deleting a chain takes its rules; flushing a table keeps elements; IPv6 keys compare by value', async () => {
    const nft = new FakeNft();
    await nft.run(setup().add(set('s6', 'ipv6_addr'), element('s6', 'fd00:0:0::1')));
    expect((await nft.run(tx().add(element('s6', 'fd00::1')))).exitCode).toBe(0);
    expect((await nft.run(tx().create(element('s6', 'fd00::0:1')))).exitCode).toBe(1);
    expect([...nft.table('inet', 't')!.sets.get('s6')!.elems.values()].map((e) => e.key)).toStrictEqual(['fd00::1']);
    expect((await nft.run(tx().delete(base))).exitCode).toBe(0);
    expect((await nft.run(tx().flush(table()))).exitCode).toBe(0);
    expect(nft.table('inet', 't')!.sets.get('s4')!.elems.size).toBe(1);
    expect((await nft.run(tx().delete(set('s4', 'ipv4_addr'), counter('c1')))).exitCode).toBe(0);
  });

  it('insert, replace and delete by handle', async () => {
    const nft = new FakeNft();
    await nft.run(tx().add(table(), chain('c'), rule('c', { drop: null })));
    await nft.run(tx().insert(rule('c', accept)));
    const rules = () => nft.table('inet', 't')!.chains.get('c')!.rules;
    expect(rules().map((r) => [r.handle, Object.keys(r.expr[0])[0]])).toStrictEqual([[3, 'accept'], [2, 'drop']]);
    await nft.run(tx().replace({ ...rule('c', { return: null }), handle: 2 }));
    expect(rules().map((r) => [r.handle, Object.keys(r.expr[0])[0]])).toStrictEqual([[3, 'accept'], [2, 'return']]);
    await nft.run(tx().delete({ ...rule('c'), handle: 3 }));
    expect(rules().map((r) => r.handle)).toStrictEqual([2]);
    expect((await nft.run(tx().delete({ ...rule('c'), handle: 3 }))).exitCode).toBe(1);
  });

  it('failNext injects a failure before anything is applied', async () => {
    const nft = new FakeNft();
    nft.failNext.push('Error: Could not process rule: Cannot allocate memory');
    const r = await nft.run(tx().add(table()));
    expect(r).toStrictEqual({ stdout: '', stderr: 'Error: Could not process rule: Cannot allocate memory\n', exitCode: 1 });
    expect(nft.dump()).toStrictEqual([]);
    expect((await nft.run(tx().add(table()))).exitCode).toBe(0);
  });
});
