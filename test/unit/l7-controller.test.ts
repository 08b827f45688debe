// L7Controller.sync(): listeners and the redirect kept in step, in the order
// that never opens a pod (listeners, then the redirect, then closing), on the
// in-memory nftables and real listeners on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import { L7Controller } from '../../src/l7/controller.js';
import { L7Proxy } from '../../src/l7/proxy.js';
import { L7_TABLE } from '../../src/l7/redirect.js';
import type { IngressTarget } from '../../src/l7/targets.js';
import type { NftRunner, NftTransaction } from '../../src/sys/nft.js';
import { FakeNft } from '../../src/sys/nft-fake.js';

const target = (ip: string, port: number): IngressTarget => ({ pod: `net/${ip}/eth0`, ip, port, policies: ['ml/p'] });
let proxy: L7Proxy;
/** The host's routing is never touched by a unit test. */
const noRouting = async () => undefined;
afterEach(async () => { await proxy?.close(); });

/** The redirect rules in the fake kernel, as "pod:port -> listener". */
function rules(nft: FakeNft): string[] {
  const t = nft.table('inet', L7_TABLE);
  return (t?.chains.get('prerouting')?.rules ?? []).map((r) => {
    const e = r.expr as { match?: { right: unknown }; dnat?: { addr: string; port: number } }[];
    return `${String(e[0]!.match!.right)}:${String(e[1]!.match!.right)} -> ${e[3]!.dnat!.addr}:${e[3]!.dnat!.port}`;
  });
}

describe('L7Controller', () => {
  it('opens a listener per target, redirects exactly the targets, closes listeners only after the redirect dropped them', async () => {
    proxy = new L7Proxy({ identify: () => undefined, policies: () => [] });
    const nft = new FakeNft();
    const c = new L7Controller({ proxy, nft, nodeIps: { 4: '127.0.0.1' }, divertRouting: noRouting });
    const one = await c.sync([target('10.0.3.1', 8080)]);
    expect(proxy.destinations()).toEqual([{ ip: '10.0.3.1', port: 8080 }]);
    expect(rules(nft)).toEqual([`10.0.3.1:8080 -> 127.0.0.1:${one[0]!.listenPort}`]);
    const two = await c.sync([target('10.0.3.2', 80), target('10.0.3.1', 8080)]);
    expect(two[0]!.listenPort).toBe(one[0]!.listenPort); // kept, not reopened
    expect(rules(nft)).toHaveLength(2);
    await c.sync([target('10.0.3.2', 80)]);
    expect(proxy.destinations()).toEqual([{ ip: '10.0.3.2', port: 80 }]);
    expect(rules(nft)).toEqual([`10.0.3.2:80 -> 127.0.0.1:${two[1]!.listenPort}`]);
    await c.sync([]);
    expect(rules(nft)).toEqual([]);
    expect(proxy.destinations()).toEqual([]);
  });

  it('nft failing: throws, the previous redirect and its listeners stay (the caller keeps HTTP clauses closed)', async () => {
    proxy = new L7Proxy({ identify: () => undefined, policies: () => [] });
    const fake = new FakeNft();
    let broken = false;
    const nft: NftRunner = {
      run: (tx: NftTransaction) => (broken ? Promise.resolve({ exitCode: 1, stdout: '', stderr: 'Error: no space' } as never) : fake.run(tx)),
      list: (f, t) => fake.list(f, t),
    };
    const c = new L7Controller({ proxy, nft, nodeIps: { 4: '127.0.0.1' }, divertRouting: noRouting });
    await c.sync([target('10.0.3.1', 8080)]);
    const before = rules(fake);
    broken = true;
    await expect(c.sync([target('10.0.3.9', 81)])).rejects.toThrow(/L7 redirect not applied: Error: no space/);
    expect(rules(fake)).toEqual(before);
    expect(proxy.destinations()).toContainEqual({ ip: '10.0.3.1', port: 8080 });
    expect(c.redirects().map((r) => r.podIp)).toEqual(['10.0.3.1']);
  });

  it('a pod of a family the node has no address of: refused before anything changes', async () => {
    proxy = new L7Proxy({ identify: () => undefined, policies: () => [] });
    const nft = new FakeNft();
    const c = new L7Controller({ proxy, nft, nodeIps: { 4: '127.0.0.1' }, divertRouting: noRouting });
    await expect(c.sync([target('fd00::31', 8080)])).rejects.toThrow(/no node address of IPv6/);
    expect(rules(nft)).toEqual([]);
  });
});

describe('L7Controller listener ports from a reserved range', () => {
  const range = { from: 17000, to: 17031 }; // outside the ephemeral range: no other socket lands there by chance
  it('the same target gets the same port after a restart; a busy port moves to the next free one', async () => {
    proxy = new L7Proxy({ identify: () => undefined, policies: () => [] });
    const first = await new L7Controller({ proxy, nft: new FakeNft(), nodeIps: { 4: '127.0.0.1' }, divertRouting: noRouting, listenPorts: range }).sync([target('10.0.3.1', 8080), target('10.0.3.2', 8080)]);
    for (const r of first) {
      expect(r.listenPort).toBeGreaterThanOrEqual(range.from);
      expect(r.listenPort).toBeLessThanOrEqual(range.to);
    }
    expect(first[0]!.listenPort).not.toBe(first[1]!.listenPort);
    await proxy.close(); // the agent dies
    proxy = new L7Proxy({ identify: () => undefined, policies: () => [] });
    const again = await new L7Controller({ proxy, nft: new FakeNft(), nodeIps: { 4: '127.0.0.1' }, divertRouting: noRouting, listenPorts: range }).sync([target('10.0.3.2', 8080), target('10.0.3.1', 8080)]);
    expect(again.map((r) => r.listenPort)).toEqual(first.map((r) => r.listenPort));
    await proxy.close();
    // Someone else holds 10.0.3.1's port: it takes another one of the range.
    const squatter = new L7Proxy({ identify: () => undefined, policies: () => [] });
    await squatter.listen({ ip: '192.0.2.1', port: 1 }, { host: '127.0.0.1', port: first[0]!.listenPort });
    try {
      proxy = new L7Proxy({ identify: () => undefined, policies: () => [] });
      const moved = await new L7Controller({ proxy, nft: new FakeNft(), nodeIps: { 4: '127.0.0.1' }, divertRouting: noRouting, listenPorts: range }).sync([target('10.0.3.1', 8080)]);
      expect(moved[0]!.listenPort).not.toBe(first[0]!.listenPort);
      expect(moved[0]!.listenPort).toBeGreaterThanOrEqual(range.from);
    } finally {
      await squatter.close();
    }
  });

  it('a range with no free port: an error, nothing redirected', async () => {
    proxy = new L7Proxy({ identify: () => undefined, policies: () => [] });
    const nft = new FakeNft();
    const c = new L7Controller({ proxy, nft, nodeIps: { 4: '127.0.0.1' }, divertRouting: noRouting, listenPorts: { from: 17100, to: 17100 } });
    await expect(c.sync([target('10.0.3.1', 8080), target('10.0.3.2', 8080)])).rejects.toThrow(/no free listener port in 17100-17100/);
    expect(rules(nft)).toEqual([]);
  });
});
