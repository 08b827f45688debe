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
    const c = new L7Controller({ proxy, nft, nodeIps: { 4: '127.0.0.1' } });
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
    const c = new L7Controller({ proxy, nft, nodeIps: { 4: '127.0.0.1' } });
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
    const c = new L7Controller({ proxy, nft, nodeIps: { 4: '127.0.0.1' } });
    await expect(c.sync([target('fd00::31', 8080)])).rejects.toThrow(/no node address of IPv6/);
    expect(rules(nft)).toEqual([]);
  });
});
