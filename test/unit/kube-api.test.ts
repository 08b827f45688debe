// The Kubernetes API stand-in (test/helpers/kube-api.ts) as @kubernetes/client-node
// sees it: the requests the library makes get the answers a real API server
// gives (a test of the stand-in, so the agent tests built on it mean something).
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApi } from '../helpers/kube-api.js';

let api: KubeApi;
let kc: KubeConfig;

beforeAll(async () => {
  api = await KubeApi.start();
  kc = new KubeConfig();
  kc.loadFromFile(api.kubeconfig());
  api.create('namespaces', { metadata: { name: 'shop' } });
  api.create('nodes', { metadata: { name: 'n1', annotations: { keep: 'me' } }, spec: { podCIDRs: ['10.244.1.0/24'] } });
  api.create('pods', { metadata: { namespace: 'shop', name: 'web', labels: { app: 'web' } }, spec: { containers: [{ name: 'c' }] } });
});
afterAll(async () => api?.stop());

interface Seen {
  type: string;
  name?: string;
  rv?: string;
  code?: number;
}

/** Watches until `n` events arrived or the stream ends; the library's Watch, as its informers use it. */
function watchEvents(path: string, query: Record<string, string>, n: number, during: () => void = () => {}): Promise<{ events: Seen[]; err: unknown }> {
  return new Promise((resolve, reject) => {
    const events: Seen[] = [];
    let ctl: AbortController | undefined;
    new Watch(kc)
      .watch(
        path,
        query,
        (type, obj: { metadata?: { name?: string; resourceVersion?: string }; code?: number }) => {
          events.push({ type, name: obj.metadata?.name, rv: obj.metadata?.resourceVersion, code: obj.code });
          if (events.length === n) ctl?.abort();
        },
        (err) => resolve({ events, err }),
      )
      .then((c) => {
        ctl = c;
        during();
      }, reject);
  });
}

describe('the Kubernetes API stand-in through @kubernetes/client-node', () => {
  it('lists with a resourceVersion, items without kind, over a verified TLS chain', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const list = await core.listPodForAllNamespaces();
    expect(list.metadata?.resourceVersion).toBe(api.resourceVersion);
    expect(list.items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`)).toEqual(['shop/web']);
    const one = await core.readNamespacedPod({ namespace: 'shop', name: 'web' });
    expect(one.metadata?.labels).toEqual({ app: 'web' });
    const ns = await core.readNamespace({ name: 'shop' });
    expect(ns.metadata?.labels).toEqual({ 'kubernetes.io/metadata.name': 'shop' });
  });

  it('pages with limit and continue at one resourceVersion', async () => {
    api.create('pods', { metadata: { namespace: 'shop', name: 'web-2' }, spec: { containers: [] } });
    const core = kc.makeApiClient(CoreV1Api);
    const p1 = await core.listPodForAllNamespaces({ limit: 1 });
    expect(p1.items).toHaveLength(1);
    const p2 = await core.listPodForAllNamespaces({ limit: 1, _continue: p1.metadata!._continue! });
    expect(p2.items[0]!.metadata!.name).toBe('web-2');
    expect(p2.metadata?.resourceVersion).toBe(p1.metadata?.resourceVersion);
    expect(p2.metadata?._continue).toBeUndefined();
    api.delete('pods', 'web-2', 'shop');
  });

  it('401 for a wrong token, 404 for cilium.io/v2 when its CRD is not installed', async () => {
    const bad = new KubeConfig();
    bad.loadFromFile(api.kubeconfig('nope'));
    await expect(bad.makeApiClient(CoreV1Api).listNode()).rejects.toMatchObject({ code: 401 });
    const custom = kc.makeApiClient(CustomObjectsApi);
    const req = { group: 'cilium.io', version: 'v2', plural: 'ciliumnetworkpolicies' };
    await expect(custom.listClusterCustomObject(req)).resolves.toMatchObject({ kind: 'CiliumNetworkPolicyList', items: [] });
    api.crdInstalled = false;
    await expect(custom.listClusterCustomObject(req)).rejects.toMatchObject({ code: 404 });
    api.crdInstalled = true;
  });

  it('merge-patches a Node\'s annotations (the WireGuard key), as a watch event', async () => {
    const rv = api.resourceVersion;
    const core = kc.makeApiClient(CoreV1Api);
    const out = await core.patchNode({ name: 'n1', body: { metadata: { annotations: { 'nhi-cni.io/wireguard-public-key': 'abc=' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    expect(out.metadata?.annotations).toEqual({ keep: 'me', 'nhi-cni.io/wireguard-public-key': 'abc=' });
    const { events } = await watchEvents('/api/v1/nodes', { resourceVersion: rv }, 1);
    expect(events).toEqual([{ type: 'MODIFIED', name: 'n1', rv: api.resourceVersion, code: undefined }]);
  });

  it('watches: replays after a resourceVersion, streams live events and bookmarks on request', async () => {
    const rv = api.resourceVersion;
    const { events } = await watchEvents('/api/v1/pods', { resourceVersion: rv, allowWatchBookmarks: 'true' }, 3, () => {
      api.patch('pods', 'web', 'shop', { metadata: { labels: { app: 'web', v: '2' } } });
      api.bookmark();
      api.delete('pods', 'web', 'shop');
    });
    expect(events.map((e) => e.type)).toEqual(['MODIFIED', 'BOOKMARK', 'DELETED']);
    expect(events[1]!.rv).toBe(String(Number(rv) + 1));
  });

  it('410 Gone for a compacted resourceVersion: an ERROR event in a 200 stream, or HTTP 410', async () => {
    const old = api.resourceVersion;
    api.create('pods', { metadata: { namespace: 'shop', name: 'later' }, spec: { containers: [] } });
    api.compact();
    const { events } = await watchEvents('/api/v1/pods', { resourceVersion: old }, 1);
    expect(events).toEqual([{ type: 'ERROR', name: undefined, rv: undefined, code: 410 }]);
    api.goneAsHttp = true;
    const { err } = await watchEvents('/api/v1/pods', { resourceVersion: old }, 1);
    expect(err).toMatchObject({ statusCode: 410 });
    api.goneAsHttp = false;
  });

  it('a cut watch ends with an error, not a clean close; an unavailable API refuses connections', async () => {
    const done = watchEvents('/api/v1/namespaces', { resourceVersion: api.resourceVersion }, 99, () => setTimeout(() => api.cutWatches(), 50));
    const { err } = await done;
    expect(err).toBeTruthy();
    api.setAvailable(false);
    await expect(kc.makeApiClient(CoreV1Api).listNode()).rejects.toThrow();
    api.setAvailable(true);
    await expect(kc.makeApiClient(CoreV1Api).listNode()).resolves.toMatchObject({ items: [{ metadata: { name: 'n1' } }] });
  });
});
