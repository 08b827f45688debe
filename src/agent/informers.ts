// The API side of the agent: one supervised @kubernetes/client-node informer
// (ListWatch) per kind, feeding one store. What the library does not do, and
// this file does (see ../shared/research/cluster-anchors.md §1):
// - its informer stops for good on any error other than 410 and its own 30 s
//   timeout (ECONNRESET, 401/403, 5xx, a failed list): the supervisor starts a
//   fresh one after a jittered exponential backoff;
// - it never asks for bookmarks: the watch asks for them (allowWatchBookmarks),
//   so the resourceVersion stays fresh and a reconnect rarely meets a 410;
// - a watch can hang half-open with no error (client-node #364, #596): every
//   sign of life (an event, a bookmark, a watch connected, a list) is stamped,
//   and a kind without one for `staleAfterMs` is stale: shown in /metrics and
//   restarted;
// - cilium.io/v2 may not be served (no Cilium CRD): a 404 is logged once and
//   the kind counts as synced and empty; it is asked again every minute (or
//   every staleAfterMs, if shorter).
// The store is replaced whole by every successful list (the relist) and then
// follows the watch events, so a restarted informer's first list also removes
// what was deleted while it was down. Events only mark the world dirty
// (onChange); the view is built from the store (level-triggered).
import { CoreV1Api, CustomObjectsApi, KubeConfig, ListWatch, Watch, type KubernetesObject } from '@kubernetes/client-node';
// The library's wire (de)serializer is not exported from its index; the package has no exports map.
import { ObjectSerializer } from '@kubernetes/client-node/dist/serializer.js';
import { KINDS, type Kind } from './view.js';

export interface KindStats {
  /** Listed at least once since the agent started (a missing CRD counts). */
  synced: boolean;
  /** cilium.io/v2 answered 404 on the last list. */
  absent: boolean;
  stale: boolean;
  /** Monotonic ms of the last sign of life; 0: none yet. */
  lastContact: number;
  events: Record<'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK', number>;
  restarts: Record<'error' | 'stale', number>;
  relists: number;
  errors: number;
  lastError?: string;
  objects: number;
}

export interface InformerSetOptions {
  staleAfterMs: number;
  onChange: (kind: Kind) => void;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void };
  /** Backoff after an error: base and cap, ms. */
  backoffMs?: { base: number; max: number };
  /** How often a missing CRD is asked for again, ms. */
  crdRetryMs?: number;
  now?: () => number;
}

const PATHS: Record<Kind, string> = {
  pods: '/api/v1/pods',
  namespaces: '/api/v1/namespaces',
  nodes: '/api/v1/nodes',
  networkpolicies: '/apis/networking.k8s.io/v1/networkpolicies',
  ciliumnetworkpolicies: '/apis/cilium.io/v2/ciliumnetworkpolicies',
};

interface ListResult {
  metadata?: { resourceVersion?: string; _continue?: string; continue?: string };
  items: KubernetesObject[];
}

/** A readable one-line reason from whatever the library threw (never its headers: ApiException prints them all). */
export function errorText(e: unknown): { text: string; code?: number } {
  const err = e as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown }; name?: unknown };
  const code = typeof err.code === 'number' ? err.code : typeof err.statusCode === 'number' ? err.statusCode : undefined;
  if (code !== undefined) {
    let msg = '';
    const body = typeof err.body === 'string' ? safeJson(err.body) : err.body;
    if (body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') msg = (body as { message: string }).message;
    else if (typeof err.message === 'string' && !err.message.startsWith('HTTP-Code')) msg = err.message;
    const hint = code === 401 ? ' (the API refused the credentials: check --kubeconfig or the service account token)' : code === 403 ? ' (the agent\'s ClusterRole lacks list/watch on it: see deploy/nhi-cni.yaml)' : '';
    return { text: `HTTP ${code}${msg ? ` ${msg}` : ''}${hint}`, code };
  }
  const cause = err.cause && typeof err.cause.code === 'string' ? `: ${err.cause.code}` : err.cause && typeof err.cause.message === 'string' ? `: ${err.cause.message}` : '';
  return { text: `${typeof err.message === 'string' ? err.message : String(e)}${cause}` };
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** A typed model of the library (V1Pod…) in the form the API sends: `from` for `_from`, timestamps as text. */
export function toWire(type: string, o: unknown): KubernetesObject {
  return ObjectSerializer.serialize(o, type) as KubernetesObject;
}

const stripManaged = (o: KubernetesObject): KubernetesObject => {
  if (o?.metadata && 'managedFields' in o.metadata) delete (o.metadata as { managedFields?: unknown }).managedFields;
  return o;
};

const keyOf = (o: KubernetesObject) => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

class Supervised {
  readonly store = new Map<string, KubernetesObject>();
  readonly stats: KindStats = {
    synced: false,
    absent: false,
    stale: false,
    lastContact: 0,
    events: { ADDED: 0, MODIFIED: 0, DELETED: 0, BOOKMARK: 0 },
    restarts: { error: 0, stale: 0 },
    relists: 0,
    errors: 0,
    objects: 0,
  };
  private gen = 0;
  private current: ListWatch<KubernetesObject> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private lastLogged = '';
  private loggedAbsent = false;
  private stopped = false;
  private lastStaleRestart = 0;

  constructor(
    readonly kind: Kind,
    private readonly watch: Watch,
    private readonly listFn: () => Promise<ListResult>,
    private readonly o: Required<Omit<InformerSetOptions, 'onChange' | 'log' | 'staleAfterMs'>> & InformerSetOptions,
  ) {}

  private alive(): void {
    this.stats.lastContact = this.o.now();
    if (this.stats.stale) {
      this.stats.stale = false;
      this.o.log.info({ kind: this.kind }, 'watch is live again');
    }
  }

  start(): void {
    if (this.stopped) return;
    const g = ++this.gen;
    const mine = () => g === this.gen && !this.stopped;
    const proxy = {
      // The library's Watch, asked for bookmarks, with every line and connection stamped as a sign of life.
      watch: async (path: string, query: Record<string, string | number>, cb: (phase: string, obj: unknown, watchObj?: unknown) => void, done: (err: unknown) => void) => {
        if (!mine()) {
          done(new Error('superseded'));
          return new AbortController();
        }
        let finished = false;
        const ctl = await this.watch.watch(
          path,
          { ...query, allowWatchBookmarks: 'true' },
          (phase, obj, watchObj) => {
            if (!mine()) return;
            this.alive();
            if (phase === 'BOOKMARK') this.stats.events.BOOKMARK++;
            if (phase === 'ERROR') this.o.log.warn({ kind: this.kind, status: obj }, 'watch ERROR event (410: relisting)');
            cb(phase, obj, watchObj);
          },
          (err) => {
            finished = true;
            done(err);
          },
        );
        if (!finished && mine()) this.alive(); // HTTP 200: the watch is open
        return ctl;
      },
    } as unknown as Watch;
    const lw = new ListWatch<KubernetesObject>(PATHS[this.kind], proxy, () => this.list(mine), false);
    this.current = lw;
    const upsert = (type: 'ADDED' | 'MODIFIED') => (obj: KubernetesObject) => {
      if (!mine()) return;
      this.failures = 0;
      this.stats.events[type]++;
      this.store.set(keyOf(obj), stripManaged(obj));
      this.stats.objects = this.store.size;
      this.o.onChange(this.kind);
    };
    lw.on('add', upsert('ADDED'));
    lw.on('update', upsert('MODIFIED'));
    lw.on('delete', (obj: KubernetesObject) => {
      if (!mine()) return;
      this.failures = 0;
      this.stats.events.DELETED++;
      this.store.delete(keyOf(obj));
      this.stats.objects = this.store.size;
      this.o.onChange(this.kind);
    });
    lw.on('error', (err: unknown) => {
      if (mine()) this.failed(err);
    });
    // start() resolves even when the list fails (the error callback says so).
    lw.start().catch((err: unknown) => {
      if (mine()) this.failed(err);
    });
  }

  /** The list, paged: the store is replaced by what it returns (deletions seen while down are applied here). */
  private async list(mine: () => boolean): Promise<ListResult> {
    if (!mine()) throw new Error('superseded');
    let res: ListResult;
    try {
      res = await this.listFn();
    } catch (e) {
      if (this.kind === 'ciliumnetworkpolicies' && errorText(e).code === 404) {
        if (mine()) this.crdMissing();
        throw Object.assign(new Error('CRD not installed'), { crdMissing: true });
      }
      throw e;
    }
    if (!mine()) throw new Error('superseded');
    this.store.clear();
    for (const o of res.items ?? []) this.store.set(keyOf(o), stripManaged(o));
    this.stats.objects = this.store.size;
    this.stats.relists++;
    this.stats.synced = true;
    if (this.stats.absent) this.o.log.info({ kind: this.kind }, 'cilium.io/v2 CiliumNetworkPolicy is served now');
    this.stats.absent = false;
    this.loggedAbsent = false;
    this.failures = 0;
    this.alive();
    this.o.onChange(this.kind);
    return res;
  }

  private crdMissing(): void {
    if (!this.loggedAbsent) {
      this.o.log.warn({ kind: this.kind }, 'cilium.io/v2 CiliumNetworkPolicy is not served (the CRD is not installed): going on without CiliumNetworkPolicies and asking again (every minute at most)');
      this.loggedAbsent = true;
    }
    const had = this.store.size > 0 || !this.stats.synced || !this.stats.absent;
    this.store.clear();
    this.stats.objects = 0;
    this.stats.absent = true;
    this.stats.synced = true;
    this.alive();
    if (had) this.o.onChange(this.kind);
  }

  private failed(err: unknown): void {
    this.current = undefined;
    const absent = (err as { crdMissing?: boolean }).crdMissing === true;
    if (!absent) {
      const { text } = errorText(err);
      this.stats.errors++;
      this.stats.lastError = text;
      this.stats.restarts.error++;
      // The same error again and again is logged once, until another one comes.
      if (text !== this.lastLogged) this.o.log.error({ kind: this.kind, error: text }, 'list/watch failed; restarting it with backoff');
      this.lastLogged = text;
    }
    const delay = absent ? this.o.crdRetryMs : this.backoff();
    this.schedule(delay);
  }

  private backoff(): number {
    const { base, max } = this.o.backoffMs;
    const d = Math.min(max, base * 2 ** Math.min(this.failures, 16));
    this.failures++;
    // Full jitter on the upper half: hundreds of agents do not reconnect in step.
    return d / 2 + Math.random() * (d / 2);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.gen++; // whatever the old informer still does is ignored
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, ms);
  }

  /** The watchdog's look: too long without a sign of life → stale, restart (once per period). */
  check(now: number): void {
    if (this.stopped || this.stats.absent) return;
    const since = now - (this.stats.lastContact || this.startedAt);
    if (since <= this.o.staleAfterMs) return;
    if (!this.stats.stale) this.o.log.warn({ kind: this.kind, seconds: Math.round(since / 1000) }, 'no event, bookmark or successful list for too long: the watch is stale; restarting it');
    this.stats.stale = true;
    if (now - this.lastStaleRestart < this.o.staleAfterMs) return;
    this.lastStaleRestart = now;
    this.stats.restarts.stale++;
    void this.current?.stop();
    this.current = undefined;
    this.schedule(0);
  }

  startedAt = 0;

  stop(): void {
    this.stopped = true;
    this.gen++;
    if (this.timer) clearTimeout(this.timer);
    void this.current?.stop();
    this.current = undefined;
  }
}

/** The five supervised informers and their store. */
export class InformerSet {
  readonly kinds: Record<Kind, Supervised>;
  private watchdog: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(kc: KubeConfig, private readonly o: InformerSetOptions) {
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const watch = new Watch(kc);
    // The library aborts a watch that has been silent this long and re-watches
    // at once (its default is 30 s). Half the stale time: a quiet but healthy
    // kind reconnects (a sign of life) before it could be called stale.
    // (A private field in its types, a plain property at run time; checked by test/unit/agent-informers.test.ts.)
    (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = Math.min(30_000, Math.floor(o.staleAfterMs / 2));
    this.now = o.now ?? (() => performance.now());
    const full = { backoffMs: { base: 500, max: 30_000 }, crdRetryMs: Math.min(60_000, o.staleAfterMs), ...o, now: this.now };
    // The typed lists give the library's models (V1Pod…: Date objects, `_from`
    // for `from`): their items are turned back into the wire form, which is
    // also what watch events carry, so the store holds one form. Policies are
    // listed raw (CustomObjectsApi serves any group): a field the library's
    // models do not know would be dropped by them, and the policy parser must
    // see it to refuse it rather than enforce a narrower policy.
    const wire = (type: string) => (l: { metadata?: ListResult['metadata']; items: unknown[] }): ListResult => ({ ...l, items: l.items.map((o) => toWire(type, o)) });
    const raw = (group: string, version: string, plural: string) => () => custom.listClusterCustomObject({ group, version, plural }) as Promise<ListResult>;
    const lists: Record<Kind, () => Promise<ListResult>> = {
      pods: async () => wire('V1Pod')(await core.listPodForAllNamespaces()),
      namespaces: async () => wire('V1Namespace')(await core.listNamespace()),
      nodes: async () => wire('V1Node')(await core.listNode()),
      networkpolicies: raw('networking.k8s.io', 'v1', 'networkpolicies'),
      ciliumnetworkpolicies: raw('cilium.io', 'v2', 'ciliumnetworkpolicies'),
    };
    this.kinds = Object.fromEntries(KINDS.map((k) => [k, new Supervised(k, watch, lists[k], full)])) as Record<Kind, Supervised>;
  }

  start(): void {
    const t = this.now();
    for (const s of Object.values(this.kinds)) {
      s.startedAt = t;
      s.start();
    }
    const every = Math.max(250, Math.min(5000, Math.floor(this.o.staleAfterMs / 4)));
    this.watchdog = setInterval(() => {
      const now = this.now();
      for (const s of Object.values(this.kinds)) s.check(now);
    }, every);
    this.watchdog.unref();
  }

  stop(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    for (const s of Object.values(this.kinds)) s.stop();
  }

  /** Every kind listed at least once. */
  synced(): boolean {
    return Object.values(this.kinds).every((s) => s.stats.synced);
  }

  objects(kind: Kind): Iterable<unknown> {
    return this.kinds[kind].store.values();
  }
}

/** The kubeconfig: a file, or the in-cluster service account (token re-read by the library every minute). */
export function loadKubeConfig(file: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (file !== undefined) kc.loadFromFile(file);
  else kc.loadFromCluster();
  if (!kc.getCurrentCluster()) throw new Error(file ? `kubeconfig ${file}: no current cluster` : 'no in-cluster configuration (KUBERNETES_SERVICE_HOST is not set): pass --kubeconfig');
  return kc;
}
