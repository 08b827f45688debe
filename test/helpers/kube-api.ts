// A Kubernetes API stand-in for tests (no kube-apiserver installs on these
// machines). It speaks what @kubernetes/client-node uses, the way the real API
// server does:
// - HTTPS with a real chain (a CA made here with the openssl CLI signs the
//   server certificate); bearer tokens, 401 Status otherwise;
// - list (`GET /api/v1/pods`, …) with a list resourceVersion, items without
//   kind/apiVersion (as the real server sends them), `limit` + `continue`;
// - watch (`?watch=true&resourceVersion=N`) as one chunked stream of JSON lines,
//   replaying the history after N; too old an N (compacted) is answered like
//   the real server: HTTP 200 then an ERROR event with a 410 Status (or, with
//   `goneAsHttp`, an HTTP 410); BOOKMARK events when `allowWatchBookmarks=true`;
//   `timeoutSeconds` closes the stream;
// - GET of one object, merge-patch of a Node (metadata.annotations, labels);
// - cilium.io/v2 ciliumnetworkpolicies that can be "not installed" (404);
// - for tests: create/update/delete objects (each a watch event), cut every
//   watch mid-stream, compact the history, make the API unavailable (every
//   connection reset), and a log of the requests.
// It listens on 127.0.0.1 (TCP) and, optionally, on a unix socket, so that a
// relay inside a test network namespace can reach it (test/helpers/tcp-relay.mjs).
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Kind = 'pods' | 'namespaces' | 'nodes' | 'networkpolicies' | 'ciliumnetworkpolicies';

interface KindInfo {
  prefix: string;
  apiVersion: string;
  kind: string;
  namespaced: boolean;
}

export const KINDS: Record<Kind, KindInfo> = {
  pods: { prefix: '/api/v1', apiVersion: 'v1', kind: 'Pod', namespaced: true },
  namespaces: { prefix: '/api/v1', apiVersion: 'v1', kind: 'Namespace', namespaced: false },
  nodes: { prefix: '/api/v1', apiVersion: 'v1', kind: 'Node', namespaced: false },
  networkpolicies: { prefix: '/apis/networking.k8s.io/v1', apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', namespaced: true },
  ciliumnetworkpolicies: { prefix: '/apis/cilium.io/v2', apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', namespaced: true },
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

interface Event {
  rv: number;
  kind: Kind;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

interface Watcher {
  kind: Kind;
  res: ServerResponse;
  bookmarks: boolean;
  socket: Socket;
  namespace?: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  query: Record<string, string>;
  auth: boolean;
}

export interface KubeApiOptions {
  /** Accepted bearer tokens; default one random token (`api.token`). */
  tokens?: string[];
  /** Also listen on this unix socket path. */
  socketPath?: string;
  /** A too-old watch resourceVersion gets HTTP 410 instead of 200 + an ERROR event. */
  goneAsHttp?: boolean;
}

const key = (ns: string | undefined, name: string) => `${ns ?? ''}/${name}`;
const clone = <T>(o: T): T => structuredClone(o);

function mergePatch(target: unknown, patch: unknown): unknown {
  // RFC 7386.
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Obj = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Obj) } : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export class KubeApi {
  readonly dir: string;
  readonly token: string;
  readonly tokens: Set<string>;
  readonly requests: RequestRecord[] = [];
  /** Cilium's CRD installed (true) or not (404 on cilium.io/v2, as a real API without the CRD). */
  crdInstalled = true;
  goneAsHttp: boolean;
  private rv = 1000;
  /** Watches from below this resourceVersion are answered 410 Gone. */
  private compactedRv = 0;
  private readonly store = new Map<Kind, Map<string, Obj>>();
  private readonly history: Event[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private available = true;
  private servers: Server[] = [];
  port = 0;
  private socketPath: string | undefined;

  private constructor(opts: KubeApiOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'nhi-kube-api-'));
    this.token = opts.tokens?.[0] ?? `t-${randomUUID()}`;
    this.tokens = new Set(opts.tokens ?? [this.token]);
    this.goneAsHttp = opts.goneAsHttp ?? false;
    this.socketPath = opts.socketPath;
    for (const k of Object.keys(KINDS) as Kind[]) this.store.set(k, new Map());
    this.makeCerts();
  }

  static async start(opts: KubeApiOptions = {}): Promise<KubeApi> {
    const api = new KubeApi(opts);
    await api.listen();
    return api;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get caFile(): string {
    return join(this.dir, 'ca.crt');
  }

  /** The current (latest) resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }

  private makeCerts(): void {
    this.openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=kube-api-stand-in-ca');
    this.openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=kube-apiserver');
    writeFileSync(join(this.dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n');
    this.openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext');
  }

  private async listen(): Promise<void> {
    const tlsOpts = { key: readFileSync(join(this.dir, 'server.key')), cert: readFileSync(join(this.dir, 'server.crt')) };
    const make = () => {
      const s = createServer(tlsOpts, (req, res) => this.handle(req, res));
      s.on('connection', (sock: Socket) => {
        if (!this.available) {
          sock.destroy();
          return;
        }
        this.sockets.add(sock);
        sock.on('close', () => this.sockets.delete(sock));
      });
      s.on('tlsClientError', () => {});
      this.servers.push(s);
      return s;
    };
    const tcp = make();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    this.port = (tcp.address() as AddressInfo).port;
    if (this.socketPath) {
      const unix = make();
      await new Promise<void>((resolve) => unix.listen(this.socketPath, resolve));
    }
  }

  /** A kubeconfig file for this API with the given token (default: the good one). */
  kubeconfig(token: string = this.token, server: string = this.url): string {
    const path = join(this.dir, `kubeconfig-${randomUUID().slice(0, 8)}.yaml`);
    const ca = readFileSync(this.caFile).toString('base64');
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        'current-context': 'ctx',
        clusters: [{ name: 'stand-in', cluster: { server, 'certificate-authority-data': ca } }],
        contexts: [{ name: 'ctx', context: { cluster: 'stand-in', user: 'agent' } }],
        users: [{ name: 'agent', user: { token } }],
      }),
      { mode: 0o600 },
    );
    return path;
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.socket.destroy();
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    rmSync(this.dir, { recursive: true, force: true });
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }

  // ------------------------------------------------------------- test controls

  /** Resets every open connection (watches included) and refuses new ones while false. */
  setAvailable(on: boolean): void {
    this.available = on;
    if (!on) {
      for (const s of this.sockets) s.destroy();
      this.watchers.clear();
    }
  }

  /** Cuts the open watches (of one kind, or all) mid-stream: the TCP connection is reset, no clean end. */
  cutWatches(kind?: Kind): number {
    let n = 0;
    for (const w of [...this.watchers]) {
      if (kind && w.kind !== kind) continue;
      this.watchers.delete(w);
      w.socket.destroy();
      n++;
    }
    return n;
  }

  /** Forgets the history up to now: a watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv + 1;
    this.history.length = 0;
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const info = KINDS[w.kind];
      this.send(w, { type: 'BOOKMARK', object: { kind: info.kind, apiVersion: info.apiVersion, metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** How many watches of a kind are open now. */
  watchCount(kind?: Kind): number {
    return [...this.watchers].filter((w) => !kind || w.kind === kind).length;
  }

  list(kind: Kind): Obj[] {
    return [...this.store.get(kind)!.values()].map(clone);
  }

  get(kind: Kind, name: string, namespace?: string): Obj | undefined {
    const o = this.store.get(kind)!.get(key(KINDS[kind].namespaced ? namespace : undefined, name));
    return o && clone(o);
  }

  create(kind: Kind, obj: Obj): Obj {
    const info = KINDS[kind];
    const o = clone(obj);
    o.apiVersion = info.apiVersion;
    o.kind = info.kind;
    o.metadata = { ...(o.metadata ?? {}) };
    if (info.namespaced) o.metadata.namespace ??= 'default';
    else delete o.metadata.namespace;
    const k = key(o.metadata.namespace, o.metadata.name);
    if (this.store.get(kind)!.has(k)) throw new Error(`${kind} ${k} exists`);
    o.metadata.uid ??= randomUUID();
    o.metadata.creationTimestamp ??= new Date().toISOString();
    if (kind === 'namespaces') o.metadata.labels = { ...(o.metadata.labels ?? {}), 'kubernetes.io/metadata.name': o.metadata.name };
    o.metadata.resourceVersion = String(++this.rv);
    this.store.get(kind)!.set(k, o);
    this.emit(kind, 'ADDED', o);
    return clone(o);
  }

  /** Replaces an object (same kind, namespace and name); the uid is kept. */
  update(kind: Kind, obj: Obj): Obj {
    const info = KINDS[kind];
    const k = key(info.namespaced ? (obj.metadata.namespace ?? 'default') : undefined, obj.metadata.name);
    const old = this.store.get(kind)!.get(k);
    if (!old) throw new Error(`${kind} ${k} does not exist`);
    const o = clone(obj);
    o.apiVersion = info.apiVersion;
    o.kind = info.kind;
    o.metadata = { ...o.metadata, uid: old.metadata.uid, creationTimestamp: old.metadata.creationTimestamp, resourceVersion: String(++this.rv) };
    if (info.namespaced) o.metadata.namespace = old.metadata.namespace;
    this.store.get(kind)!.set(k, o);
    this.emit(kind, 'MODIFIED', o);
    return clone(o);
  }

  /** Applies a JSON merge patch (RFC 7386) to an object, as a client's PATCH would. */
  patch(kind: Kind, name: string, namespace: string | undefined, patch: Obj): Obj {
    const cur = this.get(kind, name, namespace);
    if (!cur) throw new Error(`${kind} ${namespace ?? ''}/${name} does not exist`);
    const next = mergePatch(cur, patch) as Obj;
    next.metadata = { ...next.metadata, name: cur.metadata.name, namespace: cur.metadata.namespace };
    return this.update(kind, next);
  }

  delete(kind: Kind, name: string, namespace?: string): Obj {
    const info = KINDS[kind];
    const k = key(info.namespaced ? (namespace ?? 'default') : undefined, name);
    const old = this.store.get(kind)!.get(k);
    if (!old) throw new Error(`${kind} ${k} does not exist`);
    this.store.get(kind)!.delete(k);
    const o = clone(old);
    o.metadata.resourceVersion = String(++this.rv);
    this.emit(kind, 'DELETED', o);
    return o;
  }

  // ---------------------------------------------------------------- serving

  private emit(kind: Kind, type: Event['type'], object: Obj): void {
    const ev: Event = { rv: this.rv, kind, type, object: clone(object) };
    this.history.push(ev);
    for (const w of this.watchers) if (w.kind === kind && (w.namespace === undefined || w.namespace === object.metadata.namespace)) this.send(w, { type, object: ev.object });
  }

  private send(w: Watcher, ev: unknown): void {
    // One JSON object per line, each written as its own chunk.
    w.res.write(`${JSON.stringify(ev)}\n`);
  }

  private status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  private json(res: ServerResponse, body: unknown): void {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  /** "/api/v1/namespaces/x/pods/y" → the kind, namespace and name it addresses. */
  private route(path: string): { kind: Kind; namespace?: string; name?: string } | 'crd-missing' | undefined {
    for (const kind of Object.keys(KINDS) as Kind[]) {
      const info = KINDS[kind];
      if (!path.startsWith(`${info.prefix}/`)) continue;
      const rest = path.slice(info.prefix.length + 1).split('/').map(decodeURIComponent);
      let found: { kind: Kind; namespace?: string; name?: string } | undefined;
      if (rest[0] === kind && rest.length <= 2) found = { kind, name: rest[1] };
      else if (info.namespaced && rest[0] === 'namespaces' && rest[2] === kind && rest.length <= 4) found = { kind, namespace: rest[1], name: rest[3] };
      if (found) return kind === 'ciliumnetworkpolicies' && !this.crdInstalled ? 'crd-missing' : found;
    }
    return undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://x');
    const query = Object.fromEntries(url.searchParams);
    const auth = req.headers.authorization !== undefined && this.tokens.has(req.headers.authorization.replace(/^Bearer /, ''));
    this.requests.push({ method: req.method ?? '', path: url.pathname, query, auth });
    if (!auth) return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    const r = this.route(url.pathname);
    if (r === 'crd-missing' || r === undefined) return this.status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const info = KINDS[r.kind];
    if (r.name !== undefined) {
      if (!info.namespaced && r.namespace !== undefined) return this.status(res, 404, 'NotFound', 'not found');
      const k = key(info.namespaced ? r.namespace : undefined, r.name);
      if (req.method === 'GET') {
        const o = this.store.get(r.kind)!.get(k);
        return o ? this.json(res, o) : this.status(res, 404, 'NotFound', `${r.kind} "${r.name}" not found`);
      }
      if (req.method === 'PATCH') return this.handlePatch(req, res, r.kind, r.name, r.namespace);
      return this.status(res, 405, 'MethodNotAllowed', 'the stand-in serves GET, PATCH, list and watch');
    }
    if (req.method !== 'GET') return this.status(res, 405, 'MethodNotAllowed', 'the stand-in serves GET, PATCH, list and watch');
    if (query.watch === 'true' || query.watch === '1') return this.handleWatch(req, res, r.kind, r.namespace, query);
    return this.handleList(res, r.kind, r.namespace, query);
  }

  private handlePatch(req: IncomingMessage, res: ServerResponse, kind: Kind, name: string, namespace: string | undefined): void {
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/(merge-patch|strategic-merge-patch)\+json/.test(type)) {
      return this.status(res, 415, 'UnsupportedMediaType', `the stand-in accepts merge patches, not ${type || 'no content type'}`);
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let patch: unknown;
      try {
        patch = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return this.status(res, 400, 'BadRequest', 'the patch is not JSON');
      }
      if (patch === null || typeof patch !== 'object') return this.status(res, 400, 'BadRequest', 'the patch is not an object');
      if (!this.get(kind, name, namespace)) return this.status(res, 404, 'NotFound', `${kind} "${name}" not found`);
      this.json(res, this.patch(kind, name, namespace, patch as Obj));
    });
  }

  private matches(o: Obj, namespace: string | undefined, query: Record<string, string>): boolean {
    if (namespace !== undefined && o.metadata.namespace !== namespace) return false;
    const fs = query.fieldSelector;
    if (fs) {
      for (const term of fs.split(',')) {
        const m = /^spec\.nodeName=(.*)$/.exec(term) ?? /^metadata\.name=(.*)$/.exec(term);
        if (!m) continue;
        const want = m[1];
        const got = term.startsWith('spec.') ? o.spec?.nodeName : o.metadata.name;
        if ((got ?? '') !== want) return false;
      }
    }
    return true;
  }

  private handleList(res: ServerResponse, kind: Kind, namespace: string | undefined, query: Record<string, string>): void {
    const info = KINDS[kind];
    let items = [...this.store.get(kind)!.values()].filter((o) => this.matches(o, namespace, query));
    items.sort((a, b) => key(a.metadata.namespace, a.metadata.name).localeCompare(key(b.metadata.namespace, b.metadata.name)));
    let listRv = String(this.rv);
    let start = 0;
    if (query.continue) {
      try {
        const c = JSON.parse(Buffer.from(query.continue, 'base64url').toString('utf8')) as { start: number; rv: string };
        start = c.start;
        listRv = c.rv;
      } catch {
        return this.status(res, 400, 'BadRequest', 'invalid continue token');
      }
    }
    const limit = Number(query.limit ?? 0);
    const metadata: Obj = { resourceVersion: listRv };
    if (limit > 0) {
      if (start + limit < items.length) metadata.continue = Buffer.from(JSON.stringify({ start: start + limit, rv: listRv })).toString('base64url');
      items = items.slice(start, start + limit);
    }
    // The real server leaves kind and apiVersion out of list items.
    const stripped = items.map((o) => {
      const { kind: _k, apiVersion: _a, ...rest } = clone(o);
      return rest;
    });
    this.json(res, { kind: `${info.kind}List`, apiVersion: info.apiVersion, metadata, items: stripped });
  }

  private handleWatch(req: IncomingMessage, res: ServerResponse, kind: Kind, namespace: string | undefined, query: Record<string, string>): void {
    const rvText = query.resourceVersion ?? '';
    const from = rvText === '' || rvText === '0' ? undefined : Number(rvText);
    if (from !== undefined && (!Number.isInteger(from) || from < 0)) return this.status(res, 400, 'BadRequest', `invalid resourceVersion ${JSON.stringify(rvText)}`);
    const gone = from !== undefined && from < this.compactedRv - 1;
    const goneStatus = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.compactedRv - 1})`, reason: 'Expired', code: 410 };
    if (gone && this.goneAsHttp) {
      res.writeHead(410, { 'content-type': 'application/json' });
      res.end(JSON.stringify(goneStatus));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { kind, res, bookmarks: query.allowWatchBookmarks === 'true', socket: req.socket, namespace };
    if (gone) {
      this.send(w, { type: 'ERROR', object: goneStatus });
      res.end();
      return;
    }
    const wanted = (o: Obj) => namespace === undefined || o.metadata.namespace === namespace;
    if (from === undefined) {
      // No resourceVersion: the current state as ADDED events, then what follows.
      for (const o of this.store.get(kind)!.values()) if (wanted(o)) this.send(w, { type: 'ADDED', object: o });
    } else {
      for (const ev of this.history) if (ev.kind === kind && ev.rv > from && wanted(ev.object)) this.send(w, { type: ev.type, object: ev.object });
    }
    this.watchers.add(w);
    const timeout = Number(query.timeoutSeconds ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on('close', () => {
      if (timer) clearTimeout(timer);
      this.watchers.delete(w);
    });
  }
}
