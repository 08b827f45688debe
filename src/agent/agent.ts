// The agent's loop: informers mark the world dirty; after a quiet `debounceMs`
// (at most 10 × that after the first event of a burst) one view is built and
// handed to the sink — one call per burst, never two at once, never a view
// equal to the last applied one. Nothing is applied before every kind has
// been listed once (a half-known world would look like deletions), and an API
// outage applies nothing: the last applied state stays. After the first
// successful apply the conflist is written, and /readyz answers 200.
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { DiskStore } from '../chain/ipam/store.js';
import { bits, contains, parseCidr } from '../net/ip.js';
import { buildConflist, CONFLIST_NAME, writeConflist } from './conflist.js';
import { PLUGIN_KUBECONFIG, writePluginKubeconfig } from './plugin-kubeconfig.js';
import type { InformerSet, KindStats } from './informers.js';
import { Exposition, Histogram } from './metrics.js';
import type { AgentOptions } from './options.js';
import { validateNamespace, validatePodName } from '../policy/names.js';
import { buildView, KINDS, plain, ViewCache, type ClusterSink, type ClusterView, type Kind, type Refused } from './view.js';

export interface AgentLog {
  info(o: object, m: string): void;
  warn(o: object, m: string): void;
  error(o: object, m: string): void;
}

/** One row of `policy stats`' L7 section (GET /l7-stats on the agent socket). */
export interface L7StatsRow {
  policy: string;
  /** Where the rule is in the policy, or "-" for requests no rule allowed. */
  rule: string;
  allowed: number;
  denied: number;
}

/** The proxy's ({policy, rule, verdict}, count) samples as one row per (policy, rule). */
export function l7Rows(samples: [Record<string, string>, number][]): L7StatsRow[] {
  const rows = new Map<string, L7StatsRow>();
  for (const [l, n] of samples) {
    const policy = l.policy ?? '';
    const rule = l.rule ?? '-';
    const k = `${policy}\0${rule}`;
    const row = rows.get(k) ?? { policy, rule, allowed: 0, denied: 0 };
    if (l.verdict === 'allowed') row.allowed += n;
    else row.denied += n;
    rows.set(k, row);
  }
  return [...rows.values()].sort((a, b) => a.policy.localeCompare(b.policy) || a.rule.localeCompare(b.rule));
}

/** What `nhi-cni status` shows (GET /status on the agent socket). */
export interface AgentStatus {
  agent: { pid: number; version: string; uptimeSeconds: number; ready: boolean; nodeName: string };
  api: {
    server: string;
    /** Every kind listed at least once. */
    synced: boolean;
    /** Kinds with no sign of life for longer than --stale-after. */
    stale: Kind[];
    kinds: Record<Kind, { synced: boolean; absent: boolean; stale: boolean; lastContactAgeSeconds: number | null; objects: number; restarts: number; lastError?: string }>;
  };
  sync: { applies: number; lastApplyAgeSeconds: number | null; lastError?: string; pending: boolean };
  node: { podCIDRs: string[]; conflist: string | null };
  pods: { local: number; remote: number };
  policies: { NetworkPolicy: number; CiliumNetworkPolicy: number; ciliumPoliciesServed: boolean };
  refused: Refused[];
}

export class Agent {
  ready = false;
  private dirty = false;
  private applying = false;
  private firstDirtyAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastApplied: ClusterView | undefined;
  private lastApplyAt = 0;
  private lastApplyError: string | undefined;
  private sinkRefused: Refused[] = [];
  private podMtu: number | undefined;
  private reclaimTimer: NodeJS.Timeout | undefined;
  private reclaimed = 0;
  /** /pod-identity requests waiting for a pod the informers do not hold yet: re-checked on each pod or namespace event. */
  private readonly podWaiters = new Set<() => void>();
  private applies = { ok: 0, error: 0 };
  private readonly applyHist = new Histogram();
  private conflistWritten: string | null = null;
  private failures = 0;
  private readonly started = performance.now();
  private servers: Server[] = [];
  private stopped = false;
  private readonly viewCache = new ViewCache();

  constructor(
    private readonly o: AgentOptions,
    private readonly informers: InformerSet,
    private readonly sink: ClusterSink,
    private readonly log: AgentLog,
    private readonly meta: { version: string; server: string; pluginKubeconfig?: () => string | undefined },
  ) {}

  /** Called by the informers on every change of a kind. */
  changed(kind: Kind): void {
    if (this.stopped) return;
    if ((kind === 'pods' || kind === 'namespaces') && this.podWaiters.size > 0) for (const w of [...this.podWaiters]) w();
    if (!this.dirty) this.firstDirtyAt = performance.now();
    this.dirty = true;
    this.schedule(this.o.debounceMs);
  }

  private schedule(ms: number): void {
    if (this.applying) return; // the apply in flight reschedules when it ends
    const cap = this.firstDirtyAt + Math.max(10 * this.o.debounceMs, 50) - performance.now();
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.flush(), Math.max(0, Math.min(ms, cap)));
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    if (!this.dirty || this.applying || this.stopped) return;
    if (!this.informers.synced()) return; // the last kind's list will mark it dirty again
    this.dirty = false;
    const view = buildView({
      nodeName: this.o.nodeName,
      trustDomain: this.o.trustDomain,
      objects: Object.fromEntries(KINDS.map((k) => [k, this.informers.objects(k)])) as Record<Kind, Iterable<unknown>>,
      ciliumPoliciesServed: !this.informers.kinds.ciliumnetworkpolicies.stats.absent,
    }, this.viewCache);
    if (this.lastApplied?.fingerprint === view.fingerprint) {
      this.afterApply(view);
      return;
    }
    this.applying = true;
    const t0 = performance.now();
    let ok = false;
    try {
      const out = await this.sink.apply(view);
      ok = out.ok;
      if (out.ok) {
        this.lastApplied = view;
        this.lastApplyAt = performance.now();
        this.lastApplyError = undefined;
        this.sinkRefused = out.refused ?? [];
        if (out.podMtu !== undefined) this.podMtu = out.podMtu;
        this.failures = 0;
        this.applies.ok++;
      } else {
        this.lastApplyError = out.message ?? 'the sink refused the view';
      }
    } catch (e) {
      this.lastApplyError = e instanceof Error ? e.message : String(e);
    } finally {
      this.applyHist.observe((performance.now() - t0) / 1000);
      this.applying = false;
    }
    if (!ok) {
      this.applies.error++;
      this.log.error({ error: this.lastApplyError }, 'applying the cluster view failed; trying again');
      this.dirty = true;
      this.firstDirtyAt = performance.now();
      const delay = Math.min(30_000, 250 * 2 ** Math.min(this.failures++, 8));
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.flush(), delay);
      return;
    }
    this.log.info({ pods: view.pods.length, policies: view.policies.length, refused: view.refused.length, ms: Math.round(performance.now() - t0) }, 'cluster view applied');
    this.afterApply(view);
    if (this.dirty) this.schedule(this.o.debounceMs);
  }

  /** Periodic leak reclaim (docs/operations.md): the conflist's network, proven-dead reservations only. */
  private startReclaim(): void {
    if (this.reclaimTimer || !this.sink.reclaim || this.o.reclaimIntervalMs <= 0) return;
    const once = async () => {
      try {
        const released = await this.sink.reclaim!({ dataDir: this.o.ipamDataDir, network: 'nhi-cni' });
        this.reclaimed += released.length;
      } catch (e) {
        this.log.warn({ error: e instanceof Error ? e.message : String(e) }, 'leak reclaim failed; trying again later');
      }
    };
    void once();
    this.reclaimTimer = setInterval(() => void once(), this.o.reclaimIntervalMs);
    this.reclaimTimer.unref();
  }

  /** Ready once a view is applied and the conflist written (it needs this node's podCIDRs). */
  private afterApply(view: ClusterView): void {
    const cidrs = view.node?.podCIDRs ?? [];
    if (cidrs.length === 0) {
      if (!this.ready) this.log.warn({ node: this.o.nodeName }, view.node ? 'this node has no spec.podCIDRs yet: no conflist, not ready' : 'this node is not in the API (check --node-name): no conflist, not ready');
      return;
    }
    try {
      // The plugin's fallback credentials first: the conflist that names them must never come before them.
      let kubeconfig: string | undefined;
      const text = this.meta.pluginKubeconfig?.();
      if (text !== undefined) {
        kubeconfig = join(this.o.stateDir, PLUGIN_KUBECONFIG);
        if (writePluginKubeconfig(kubeconfig, text)) this.log.info({ path: kubeconfig }, 'plugin kubeconfig written');
      }
      const wrote = writeConflist(this.o.confDir, buildConflist(cidrs, this.o, this.podMtu, kubeconfig));
      this.conflistWritten = `${this.o.confDir}/${CONFLIST_NAME}`;
      if (wrote) this.log.info({ path: this.conflistWritten, podCIDRs: cidrs }, 'conflist written');
      if (!this.ready) this.log.info({}, 'ready');
      this.ready = true;
      this.startReclaim();
    } catch (e) {
      this.log.error({ error: e instanceof Error ? e.message : String(e) }, 'cannot write the conflist');
    }
  }

  private kindStats(): Record<Kind, KindStats> {
    return Object.fromEntries(KINDS.map((k) => [k, this.informers.kinds[k].stats])) as Record<Kind, KindStats>;
  }

  status(): AgentStatus {
    const now = performance.now();
    const age = (t: number) => (t > 0 ? Math.round((now - t) / 100) / 10 : null);
    const stats = this.kindStats();
    const v = this.lastApplied;
    return {
      agent: { pid: process.pid, version: this.meta.version, uptimeSeconds: Math.round((now - this.started) / 1000), ready: this.ready, nodeName: this.o.nodeName },
      api: {
        server: this.meta.server,
        synced: this.informers.synced(),
        stale: KINDS.filter((k) => stats[k].stale),
        kinds: Object.fromEntries(
          KINDS.map((k) => {
            const s = stats[k];
            const out: AgentStatus['api']['kinds'][Kind] = { synced: s.synced, absent: s.absent, stale: s.stale, lastContactAgeSeconds: age(s.lastContact), objects: s.objects, restarts: s.restarts.error + s.restarts.stale };
            if (s.lastError !== undefined) out.lastError = s.lastError;
            return [k, out];
          }),
        ) as AgentStatus['api']['kinds'],
      },
      sync: { applies: this.applies.ok, lastApplyAgeSeconds: age(this.lastApplyAt), pending: this.dirty || this.applying, ...(this.lastApplyError ? { lastError: this.lastApplyError } : {}) },
      node: { podCIDRs: v?.node?.podCIDRs ?? [], conflist: this.conflistWritten },
      pods: { local: v?.pods.filter((p) => p.local).length ?? 0, remote: v?.pods.filter((p) => !p.local).length ?? 0 },
      policies: {
        NetworkPolicy: v?.policies.filter((p) => p.kind === 'NetworkPolicy').length ?? 0,
        CiliumNetworkPolicy: v?.policies.filter((p) => p.kind === 'CiliumNetworkPolicy').length ?? 0,
        ciliumPoliciesServed: v?.ciliumPoliciesServed ?? true,
      },
      refused: [...(v?.refused ?? []), ...this.sinkRefused],
    };
  }

  metrics(policyRows: { policy: string; kind: string; allowed: number; denied: number }[] = []): string {
    const now = performance.now();
    const stats = this.kindStats();
    const perKind = (f: (s: KindStats) => number): [Record<string, string>, number][] => KINDS.map((k) => [{ kind: k }, f(stats[k])]);
    const v = this.lastApplied;
    const refused = [...(v?.refused ?? []), ...this.sinkRefused];
    const e = new Exposition()
      .family('nhi_agent_ready', 'gauge', '1 once the first full sync is applied and the conflist written', [[undefined, this.ready ? 1 : 0]])
      .family('nhi_agent_watch_events_total', 'counter', 'watch events received, per kind and type', KINDS.flatMap((k) => (['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK'] as const).map((t): [Record<string, string>, number] => [{ kind: k, type: t }, stats[k].events[t]])))
      .family('nhi_agent_watch_restarts_total', 'counter', 'informer restarts, after an error or for staleness', KINDS.flatMap((k) => (['error', 'stale'] as const).map((r): [Record<string, string>, number] => [{ kind: k, reason: r }, stats[k].restarts[r]])))
      .family('nhi_agent_relists_total', 'counter', 'successful full lists, per kind', perKind((s) => s.relists))
      .family('nhi_agent_watch_stale', 'gauge', '1 while a kind has had no event, bookmark or successful list for longer than --stale-after', perKind((s) => (s.stale ? 1 : 0)))
      .family('nhi_agent_watch_last_contact_age_seconds', 'gauge', 'seconds since the last sign of life of the API, per kind (+Inf: never)', perKind((s) => (s.lastContact > 0 ? (now - s.lastContact) / 1000 : Infinity)))
      .family('nhi_agent_crd_served', 'gauge', '1 when cilium.io/v2 CiliumNetworkPolicy is served by the API', [[{ crd: 'ciliumnetworkpolicies.cilium.io' }, stats.ciliumnetworkpolicies.absent ? 0 : 1]])
      .family('nhi_agent_last_sync_age_seconds', 'gauge', 'seconds since the last successful apply of a cluster view (+Inf: never)', [[undefined, this.lastApplyAt > 0 ? (now - this.lastApplyAt) / 1000 : Infinity]])
      .family('nhi_agent_applies_total', 'counter', 'cluster views handed to the engine, by result', [[{ result: 'ok' }, this.applies.ok], [{ result: 'error' }, this.applies.error]])
      .histogram('nhi_agent_apply_duration_seconds', 'time the engine took to apply one cluster view', this.applyHist)
      .family('nhi_agent_pods', 'gauge', 'pods known, on this node (local) or others (remote)', [[{ scope: 'local' }, v?.pods.filter((p) => p.local).length ?? 0], [{ scope: 'remote' }, v?.pods.filter((p) => !p.local).length ?? 0]])
      .family('nhi_agent_policies', 'gauge', 'policies known, per kind', [[{ kind: 'NetworkPolicy' }, v?.policies.filter((p) => p.kind === 'NetworkPolicy').length ?? 0], [{ kind: 'CiliumNetworkPolicy' }, v?.policies.filter((p) => p.kind === 'CiliumNetworkPolicy').length ?? 0]])
      .family('nhi_agent_refused_objects', 'gauge', 'objects refused (invalid or not enforceable), per kind', KINDS.map((k) => [{ kind: k }, refused.filter((r) => r.kind === k).length]))
      .family('nhi_policy_connections_total', 'counter', 'new connections on this node per policy: allowed by it, or denied where it isolates', policyRows.flatMap((r): [Record<string, string>, number][] => [[{ policy: r.policy, kind: r.kind, verdict: 'allowed' }, r.allowed], [{ policy: r.policy, kind: r.kind, verdict: 'denied' }, r.denied]]))
      .family('nhi_ipam_reclaimed_total', 'counter', 'reservations of this node released by the periodic leak reclaim (proven dead)', [[undefined, this.reclaimed]])
      .family('nhi_ipam_addresses', 'gauge', 'pod addresses of this node per range: used (reserved) and free', this.ipamSamples())
      .family('nhi_l7_requests_total', 'counter', 'HTTP requests judged by the L7 proxy, per policy, rule (its place in the policy) and verdict', this.sink.l7Samples?.() ?? []);
    return e.text();
  }

  /** Used and free addresses per range of the conflist this agent wrote (host-local's files in its data dir). */
  private ipamSamples(): [Record<string, string>, number][] {
    const cidrs = this.lastApplied?.node?.podCIDRs ?? [];
    if (!this.conflistWritten || cidrs.length === 0) return [];
    const reserved = new DiskStore(this.o.ipamDataDir, 'nhi-cni').list().map((r) => r.ip);
    const out: [Record<string, string>, number][] = [];
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (!c) continue;
      // host-local hands out network+1 (the gateway, not reserved) .. broadcast-1 (IPv4) / the last address (IPv6): the gateway excluded.
      const size = 2n ** BigInt(bits(c.ip.family) - c.prefix);
      const usable = Number(c.ip.family === 4 ? size - 3n : size - 2n);
      const used = reserved.filter((ip) => contains(c, ip)).length;
      out.push([{ range: text, state: 'used' }, used], [{ range: text, state: 'free' }, Math.max(0, usable - used)]);
    }
    return out;
  }

  // ------------------------------------------------------------------ HTTP

  private handle(req: IncomingMessage, res: ServerResponse, socket: boolean): void {
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'GET only\n');
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/healthz':
        return send(200, 'ok\n');
      case '/readyz':
        return this.ready ? send(200, 'ok\n') : send(503, this.informers.synced() ? 'first sync not applied yet\n' : 'waiting for the first list of every kind\n');
      case '/metrics':
        // The per-policy counters are read from the kernel (one nft listing) at each scrape.
        void (this.sink.policyCounters?.() ?? Promise.resolve([]))
          .catch(() => [])
          .then((rows) => send(200, this.metrics(rows), 'text/plain; version=0.0.4; charset=utf-8'));
        return;
      case '/status':
        return send(200, `${JSON.stringify(this.status(), null, 2)}\n`, 'application/json');
      case '/pod-identity':
        // The plugin's ADD asks who a pod is (src/policy/agent-identity.ts): socket only.
        if (!socket) return send(404, 'not found\n');
        return this.podIdentity(req.url ?? '', send);
      case '/l7-stats':
        // `nhi-cni policy stats`: the L7 proxy's per-rule counts, pivoted to one row per (policy, rule).
        if (!socket) return send(404, 'not found\n');
        return send(200, `${JSON.stringify(l7Rows(this.sink.l7Samples?.() ?? []))}\n`, 'application/json');
      case '/view':
        // The whole last applied view: root only (the socket is 0600), for debugging and tests.
        if (!socket) return send(404, 'not found\n');
        return send(200, `${JSON.stringify(this.lastApplied ?? null)}\n`, 'application/json');
      default:
        return send(404, 'not found\n');
    }
  }

  /**
   * A pod's identity, from what the informers hold now (not the last applied
   * view: kubelet calls ADD right after the pod is scheduled, and the view may
   * be a debounce behind). The pod and its namespace's labels as the API sent
   * them, cut to what an identity needs; the plugin validates them as any API
   * identity (identityFromApiPod). 404 while the pod or its namespace is not
   * known (the plugin retries), 503 before every kind is listed.
   */
  private podIdentity(url: string, send: (code: number, body: string, type?: string) => void): void {
    const q = new URL(url, 'http://agent').searchParams;
    const namespace = q.get('namespace') ?? '';
    const name = q.get('name') ?? '';
    const why = validateNamespace(namespace) ?? validatePodName(name);
    if (why) return send(400, `${JSON.stringify({ error: why })}\n`, 'application/json');
    if (!this.informers.synced()) return send(503, `${JSON.stringify({ error: 'the agent has not listed every kind yet' })}\n`, 'application/json');
    const found = (kind: Kind, ns: string | undefined, n: string) => {
      for (const o of this.informers.objects(kind)) {
        const m = (o as { metadata?: { namespace?: string; name?: string } }).metadata;
        if (m?.name === n && (ns === undefined || m.namespace === ns)) return plain(o);
      }
      return undefined;
    };
    // kubelet may call ADD before this agent's watch delivered the pod: wait
    // for it (up to `wait` ms, at most 10 s), woken by each pod or namespace event.
    const wait = Math.min(10_000, Math.max(0, Number(q.get('wait') ?? 0) || 0));
    const deadline = Date.now() + wait;
    const attempt = (): void => {
      const pod = found('pods', namespace, name);
      const nsObj = found('namespaces', undefined, namespace);
      if (pod && nsObj) return this.answerPodIdentity(pod, nsObj, send);
      const left = deadline - Date.now();
      if (left <= 0 || this.stopped) return send(404, `${JSON.stringify({ error: `${pod ? 'namespace' : 'pod'} ${namespace}${pod ? '' : `/${name}`} is not known to the agent` })}\n`, 'application/json');
      const retry = () => {
        clearTimeout(timer);
        this.podWaiters.delete(retry);
        attempt();
      };
      const timer = setTimeout(retry, left);
      this.podWaiters.add(retry);
    };
    attempt();
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private answerPodIdentity(pod: Record<string, any>, nsObj: Record<string, any>, send: (code: number, body: string, type?: string) => void): void {
    const body = {
      pod: { metadata: { namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata?.uid, labels: pod.metadata?.labels ?? {} }, spec: { serviceAccountName: pod.spec?.serviceAccountName, containers: (pod.spec?.containers ?? []).map((c: { ports?: unknown }) => ({ ports: c.ports ?? [] })) } },
      namespaceLabels: nsObj.metadata?.labels ?? {},
    };
    return send(200, `${JSON.stringify(body)}\n`, 'application/json');
  }

  /** /healthz, /readyz, /metrics, /status on --listen; the same plus /view, /l7-stats and /pod-identity on <state-dir>/agent.sock (0600). */
  async listen(): Promise<void> {
    const tcp = createServer((req, res) => this.handle(req, res, false));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(this.o.listen.port, this.o.listen.host, () => resolve());
    });
    this.servers.push(tcp);
    mkdirSync(this.o.stateDir, { recursive: true, mode: 0o755 });
    try {
      const st = lstatSync(this.o.socketPath);
      // A socket left by a killed agent is replaced; anything else there is not ours to remove.
      if (!st.isSocket()) throw new Error(`${this.o.socketPath} exists and is not a socket`);
      unlinkSync(this.o.socketPath);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const unix = createServer((req, res) => this.handle(req, res, true));
    const old = process.umask(0o177); // created 0600: no window where others could connect
    try {
      await new Promise<void>((resolve, reject) => {
        unix.once('error', reject);
        unix.listen(this.o.socketPath, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    chmodSync(this.o.socketPath, 0o600);
    this.servers.push(unix);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.reclaimTimer) clearInterval(this.reclaimTimer);
    this.informers.stop();
    for (const w of [...this.podWaiters]) w();
    // Kept-alive clients (a scraper, `nhi-cni status`) must not hold the way out.
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    })));
    await this.sink.close?.().catch(() => undefined);
  }
}
