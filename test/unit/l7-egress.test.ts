// The L7 proxy's egress listener (L7Proxy.listen({ original })): one listener
// for the redirected connections of the pods whose own egress HTTP rules
// cover a port, each connection's destination read at accept. Conntrack is
// stood in for by `originalDestination` (the namespace test,
// test/ns/l7-redirect.test.ts, reads the real one through SO_ORIGINAL_DST);
// sockets are real, on the loopback: clients bind 127.0.0.x (the pods).
import { createServer, request, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { egressPorts } from '../../src/agent/enforce.js';
import { L7Controller } from '../../src/l7/controller.js';
import { L7Proxy, type DenyRecord, type Destination } from '../../src/l7/proxy.js';
import { L7_TABLE, redirectTransaction } from '../../src/l7/redirect.js';
import { serviceEgressTargets } from '../../src/l7/targets.js';
import type { Identity, Policy } from '../../src/policy/model.js';
import { parseManifestText } from '../../src/policy/parse.js';
import { FakeNft } from '../../src/sys/nft-fake.js';

const id = (namespace: string, name: string, app: string, ports: Identity['ports'] = []): Identity => ({ namespace, name, labels: { app }, namespaceLabels: {}, ports });
const DATA = '127.0.0.1';
const READER = '127.0.0.2';
const OUTSIDE = '127.0.0.4';
const IDENTITIES: Record<string, Identity> = {
  [DATA]: id('ml', 'training-data', 'training-data'),
  [READER]: id('analytics', 'report-builder', 'report-builder'),
};

let data: Server;
let outside: Server;
let dataPort: number;
let outsidePort: number;
let proxy: L7Proxy;
let proxyPort: number;
let policies: Policy[];
const denies: DenyRecord[] = [];

const serve = (name: string) => createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end(`${req.method} ${req.url} at ${name}`));
});

function send(o: { method: string; path: string; to: Destination | undefined | 'self'; from?: string }): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: '127.0.0.1', port: proxyPort, localAddress: o.from ?? READER });
    const req = request({ host: '127.0.0.1', port: proxyPort, method: o.method, path: o.path, createConnection: () => socket });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
    pending.push(o.to);
  });
}
/** The destinations of connections in the order they are made (the proxy accepts them in that order). */
const pending: (Destination | undefined | 'self')[] = [];

beforeAll(async () => {
  data = serve('data');
  outside = serve('outside');
  await new Promise<void>((r) => data.listen(0, DATA, r));
  await new Promise<void>((r) => outside.listen(0, OUTSIDE, r));
  dataPort = (data.address() as AddressInfo).port;
  outsidePort = (outside.address() as AddressInfo).port;
  policies = parseManifestText(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reader-egress, namespace: analytics}
spec:
  endpointSelector: {matchLabels: {app: report-builder}}
  egress:
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ml, app: training-data}}]
      toPorts: [{ports: [{port: "${dataPort}", protocol: TCP}], rules: {http: [{method: GET, path: /data}]}}]
`, 'egress.yaml', { l7: 'proxy' });
  proxy = new L7Proxy({
    identify: (ip) => (Object.hasOwn(IDENTITIES, ip) ? IDENTITIES[ip] : undefined),
    policies: () => policies,
    onDeny: (r) => denies.push(r),
    originalDestination: (s) => {
      const to = pending.shift();
      return to === 'self' ? { ip: s.localAddress!, port: s.localPort! } : to;
    },
  });
  proxyPort = (await proxy.listen({ original: 4 }, { host: '127.0.0.1', port: 0 })).port;
});

afterAll(async () => {
  await proxy?.close();
  await Promise.all([data, outside].map((s) => new Promise<void>((r) => (s ? s.close(() => r()) : r()))));
});

describe('egress listener: each connection to where it was going', () => {
  it("the source's egress HTTP rule: GET /data 200 at the destination conntrack names; POST /data 403 naming the policy", async () => {
    expect(await send({ method: 'GET', path: '/data', to: { ip: DATA, port: dataPort } })).toEqual({ status: 200, body: 'GET /data at data' });
    const denied = await send({ method: 'POST', path: '/data', to: { ip: DATA, port: dataPort } });
    expect(denied).toEqual({ status: 403, body: 'Access denied by network policy analytics/reader-egress\n' });
    expect(denies.at(-1)).toMatchObject({ msg: 'l7 request denied', src: { ip: READER, workload: 'analytics/report-builder' }, dst: { ip: DATA, port: dataPort, workload: 'ml/training-data' }, method: 'POST', path: '/data' });
    expect(proxy.stats()).toContainEqual({ policy: 'analytics/reader-egress', rule: 'spec.egress[0].toPorts[0].rules.http[0]', verdict: 'allowed', count: 1 });
  });

  it('a destination no egress rule allows is reset at accept: nothing reaches it', async () => {
    expect(await send({ method: 'GET', path: '/data', to: { ip: OUTSIDE, port: outsidePort } })).toEqual({ error: 'ECONNRESET' });
    expect(denies.at(-1)).toMatchObject({ msg: 'l7 connection refused', dst: { ip: OUTSIDE, port: outsidePort }, policies: ['analytics/reader-egress'] });
  });

  it('no original destination (no conntrack entry), or the listener itself (sent straight to it, no DNAT): reset', async () => {
    expect(await send({ method: 'GET', path: '/data', to: undefined })).toEqual({ error: 'ECONNRESET' });
    expect(await send({ method: 'GET', path: '/data', to: 'self' })).toEqual({ error: 'ECONNRESET' });
  });

  it('a pod no egress policy isolates reaches any destination through it (L3/L4 as the kernel would judge them)', async () => {
    expect(await send({ method: 'DELETE', path: '/x', to: { ip: OUTSIDE, port: outsidePort }, from: '127.0.0.3' })).toEqual({ status: 200, body: 'DELETE /x at outside' });
  });

  it('one listener per family: a second is refused', async () => {
    await expect(proxy.listen({ original: 4 }, { host: '127.0.0.1', port: 0 })).rejects.toThrow(/already proxying redirected IPv4 connections/);
  });
});

describe('L7Controller with egress targets', () => {
  it('one egress listener per family for all pods; their rules match the SOURCE, after the destinations\' rules; closed when none is left', async () => {
    const p = new L7Proxy({ identify: () => undefined, policies: () => [] });
    try {
      const nft = new FakeNft();
      const routed: number[] = [];
      const c = new L7Controller({ proxy: p, nft, nodeIps: { 4: '127.0.0.1' }, divertRouting: async (f) => { routed.push(f); } });
      const r = await c.sync(
        [{ pod: 'net/a/eth0', ip: '10.0.3.1', port: 8080, policies: ['ml/p'] }],
        [{ ip: '10.0.3.6', port: 80 }, { ip: '10.0.3.5', port: 443 }, { ip: '10.0.3.5', port: 80 }],
      );
      expect(r.map((x) => [x.from ?? false, x.podIp, x.port])).toEqual([[false, '10.0.3.1', 8080], [true, '10.0.3.5', 80], [true, '10.0.3.5', 443], [true, '10.0.3.6', 80]]);
      const egressPort = r[1]!.listenPort;
      expect(new Set(r.slice(1).map((x) => x.listenPort))).toEqual(new Set([egressPort]));
      expect(egressPort).not.toBe(r[0]!.listenPort);
      const kernel = nft.table('inet', L7_TABLE)!.chains.get('prerouting')!.rules.map((x) => {
        const e = x.expr as { match?: { left: { payload: { field: string } }; right: unknown } }[];
        return `${e[0]!.match!.left.payload.field} ${String(e[0]!.match!.right)}:${String(e[1]!.match!.right)}`;
      });
      expect(kernel).toEqual(['daddr 10.0.3.1:8080', 'saddr 10.0.3.5:80', 'saddr 10.0.3.5:443', 'saddr 10.0.3.6:80']);
      // The replies of the proxy's transparent upstream connections: routed once per family, marked in the divert chain.
      expect(routed).toEqual([4]);
      // The divert chain: the replies to transparent sockets, and the Service path of each ingress target (none for egress).
      const divert = () => nft.table('inet', L7_TABLE)!.chains.get('divert')!.rules.map((x) => JSON.stringify(x.expr));
      expect(divert()).toHaveLength(2);
      expect(divert()[0]).toContain('"transparent"');
      expect(divert()[1]).toContain('"dnat"');
      expect(divert()[1]).toContain('"10.0.3.1"');
      const listening = () => new Promise<boolean>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: egressPort });
        s.once('connect', () => { s.destroy(); resolve(true); });
        // A straight connection has no original destination: the listener resets it, which a loopback client may see before its connect.
        s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code !== 'ECONNREFUSED'));
      });
      expect(await listening()).toBe(true);
      // An IPv6 pod without a node IPv6 address to listen on: throws, the previous redirect stays.
      await expect(c.sync([], [{ ip: 'fd00::5', port: 80 }])).rejects.toThrow(/no node address of IPv6/);
      expect(c.redirects()).toHaveLength(4);
      // Ingress targets alone keep the divert (a pod of another node is forwarded from its own address), routed once.
      await c.sync([{ pod: 'net/a/eth0', ip: '10.0.3.1', port: 8080, policies: ['ml/p'] }], []);
      expect(divert()).toHaveLength(2);
      expect(await listening()).toBe(false);
      await c.sync([], []);
      expect(nft.table('inet', L7_TABLE)!.chains.get('prerouting')!.rules).toEqual([]);
      expect(nft.table('inet', L7_TABLE)!.chains.get('divert')!.rules).toEqual([]);
      expect(routed).toEqual([4]);
    } finally {
      await p.close();
    }
  });
});

describe('egressPorts: the numbers a port of an egress HTTP rule stands for', () => {
  it('numbers as written; a name as every TCP number it has on the pods of the cluster; a name no pod has: nothing', () => {
    const pod = (ports: Identity['ports']) => ({ identity: id('ns', 'p', 'p', ports) }) as never;
    const pods = [pod([{ name: 'http', containerPort: 8080, protocol: 'TCP' }]), pod([{ name: 'http', containerPort: 80, protocol: 'TCP' }, { name: 'dns', containerPort: 53, protocol: 'UDP' }])];
    expect(egressPorts([
      { pod: 'a', ip: '10.0.0.5', port: 'http', policies: [] },
      { pod: 'a', ip: '10.0.0.5', port: 443, policies: [] },
      { pod: 'a', ip: '10.0.0.5', port: 'dns', policies: [] },
      { pod: 'a', ip: '10.0.0.5', port: 'nowhere', policies: [] },
    ], pods)).toEqual([{ ip: '10.0.0.5', port: 80 }, { ip: '10.0.0.5', port: 443 }, { ip: '10.0.0.5', port: 8080 }]);
  });
});

describe('serviceEgressTargets: the pods the proxy listens on for the Service path of egress rules', () => {
  it('a pod an HTTP clause could allow, not one L3/L4 rules already allow (kernel path), not one nothing allows', () => {
    const policies = parseManifestText(`
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reader-out, namespace: analytics}
spec:
  endpointSelector: {matchLabels: {app: report-builder}}
  egress:
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ml, app: api}}]
      toPorts: [{ports: [{port: "9090", protocol: TCP}], rules: {http: [{method: GET, path: /data}]}}]
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ml, app: db}}]
      toPorts: [{ports: [{port: "9090", protocol: TCP}]}]
`, 'svc.yaml', { l7: 'proxy' });
    const pods = [
      { ip: '10.0.0.2', identity: IDENTITIES[READER]! },
      { ip: '10.0.1.5', identity: id('ml', 'api-1', 'api') },
      { ip: '10.0.2.5', identity: id('ml', 'api-2', 'api') },
      { ip: '10.0.1.6', identity: id('ml', 'db', 'db') },
      { ip: '10.0.1.7', identity: id('ml', 'other', 'other') },
      { ip: '10.0.1.8' },
    ];
    expect(serviceEgressTargets(policies, [{ ip: '10.0.0.2', port: 9090 }], pods)).toEqual([
      { src: '10.0.0.2', ip: '10.0.1.5', port: 9090 },
      { src: '10.0.0.2', ip: '10.0.2.5', port: 9090 },
    ]);
    // A source the view does not know: nothing.
    expect(serviceEgressTargets(policies, [{ ip: '10.0.0.99', port: 9090 }], pods)).toEqual([]);
  });

  it('the redirect marks exactly those connections after their Service DNAT', () => {
    const tx = redirectTransaction([{ podIp: '10.0.0.2', port: 9090, listenIp: '10.0.0.1', listenPort: 16001, from: true }], { divert: true, viaService: [{ src: '10.0.0.2', ip: '10.0.1.5', port: 9090 }] });
    const divert = (JSON.parse(tx.json()) as { nftables: { add?: { rule?: { chain: string; expr: unknown[] } } }[] }).nftables
      .flatMap((c) => (c.add?.rule?.chain === 'divert' ? [JSON.stringify(c.add.rule.expr)] : []));
    expect(divert).toHaveLength(2);
    expect(divert[1]).toMatch(/"dnat".*"saddr"}},"right":"10\.0\.0\.2".*"daddr"}},"right":"10\.0\.1\.5".*"dport"}},"right":9090.*"mark"/);
  });
});
