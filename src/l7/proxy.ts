// The agent's HTTP/1.1 proxy for CiliumNetworkPolicy HTTP rules.
//
// One listener per redirected (pod, port): the nftables redirect (see
// docs/l7.md) rewrites the destination of a connection to a port of the
// node, so the listener it lands on IS the original destination; the source
// address is left alone and names the source workload through `identify`
// (the agent's identity cache). One listener per destination keeps that
// mapping a property of the socket, with no SO_ORIGINAL_DST lookup (Node has
// no API for it) and no per-connection table to keep in step with conntrack.
// The cost is one listening socket per (pod, port) that an HTTP rule covers.
//
// Egress (a pod's outgoing connections that its own HTTP rules cover) has
// no single destination: one listener per family, `listen({ original: 4 })`,
// takes every redirected connection of those pods and reads each one's
// destination from conntrack (SO_ORIGINAL_DST, src/sys/origdst.ts) at accept.
// A connection with no DNAT behind it (sent straight to the listener) has no
// original destination and is reset.
//
// Per connection: judged at accept (L3/L4: a source no rule could allow is
// reset, as the kernel would have dropped it). Per request: judged again,
// HTTP rules included, against the policies of the moment (`policies()`), so
// a kept-alive connection cannot carry a request its first one did not
// authorise, and a policy edit applies to the next request. Denied: 403 with
// a short body naming the policies. Allowed: forwarded to the destination on
// a kept-alive upstream connection, bodies streamed both ways with
// backpressure (pipe), never buffered whole.
//
// Refused outright (400), rather than judged on a spelling the upstream may
// read differently: a request target not in origin form, or whose path has
// dot segments or encoded '.', '/', '\' (a rule allowing /public/.* must not
// let /public/../admin through); a request with several Host headers.
// Upgrades (WebSocket) and CONNECT are refused (403): the proxy cannot judge
// what follows them. Client connections per listener are bounded
// (maxConnections): the proxy lives in the agent, which must stay up.
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Socket as NetSocket, type Socket } from 'node:net';
import { originalDestination } from '../sys/origdst.js';
import { transparentListenFd, transparentSocket } from '../sys/transparent.js';
import type { Endpoint } from '../policy/evaluate.js';
import type { Identity, Policy } from '../policy/model.js';
import { decide, type L7Verdict } from './decide.js';
import type { HttpRequestInfo } from './match.js';

/** Where a listener forwards to: the pod address and port the redirect took it from. */
export interface Destination {
  ip: string;
  port: number;
}

/** A listener for redirected connections of any destination, of one address family: each connection's own is read at accept. */
export interface OriginalDestination {
  original: 4 | 6;
}

/** One line of the deny log (JSON): who asked what of whom, and which policies said no. No query string, no header value. */
export interface DenyRecord {
  msg: 'l7 request denied' | 'l7 connection refused';
  time: string;
  src: { ip: string; workload?: string };
  dst: { ip: string; port: number; workload?: string };
  method?: string;
  /** The path without its query (queries carry tokens). */
  path?: string;
  policies: string[];
  /** Deny lines dropped by the rate limit since the previous line. */
  suppressed?: number;
}

export interface RuleCount {
  policy: string;
  /** HttpRule.at, or "L4" for a request allowed by an L4 rule of the same port, or "-" for a denial. */
  rule: string;
  verdict: 'allowed' | 'denied';
  count: number;
}

export interface ProxyOptions {
  /** The workload behind an address, or undefined (not a pod, or unknown): the agent's identity cache. */
  identify: (ip: string) => Identity | undefined;
  /** The policies in force now (parsed with l7 'proxy'). Called per request: keep it cheap. */
  policies: () => Policy[];
  /** Gets each deny line not dropped by the rate limit. */
  onDeny?: (record: DenyRecord) => void;
  /** Deny log rate: lines per second, and burst. Default 10/s, burst 20. */
  denyLogRate?: { perSecond: number; burst: number };
  /** Upstream connection timeout in ms (default 5000): 504 after it. */
  connectTimeoutMs?: number;
  /** Idle kept-alive client connections are closed after this (ms, default 30000). */
  keepAliveTimeoutMs?: number;
  /**
   * Client connections per listener (default 1024); beyond it new ones are
   * closed at once. The proxy runs in the agent, which also keeps the
   * kernel's policy current: one pod must not exhaust its descriptors.
   */
  maxConnections?: number;
  /**
   * The destination a redirected connection had before its DNAT, for
   * `listen({ original })` listeners; undefined when it has none. Default:
   * SO_ORIGINAL_DST through node:ffi. Tests may stand in for conntrack.
   */
  originalDestination?: (socket: Socket, family: 4 | 6) => Destination | undefined;
  /**
   * Which address an allowed request is forwarded from: 'node' (the node's
   * own, the default), or 'source', the requesting pod's, through a
   * transparent socket (src/sys/transparent.ts). The agent asks for 'source'
   * toward pods of other nodes, whose kernel judges their ingress policy by
   * the source address; a pod of this node is reached from the node (its
   * reply would go straight back to the pod over the bridge).
   */
  upstreamFrom?: (src: Endpoint, dst: Endpoint) => 'node' | 'source';
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);

/** A raw header list (name, value, …) without hop-by-hop fields, as the object http.request takes (repeats kept as arrays). */
function forwardHeaders(raw: string[]): Record<string, string | string[]> {
  const drop = new Set(HOP_BY_HOP);
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const t of raw[i + 1]!.split(',')) drop.add(t.trim().toLowerCase());
  }
  const out: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (drop.has(lower)) continue;
    const prev = out[lower];
    out[lower] = prev === undefined ? raw[i + 1]! : Array.isArray(prev) ? [...prev, raw[i + 1]!] : [prev, raw[i + 1]!];
  }
  return out;
}

/** Why a request target is refused before any rule sees it, or undefined. */
export function unsafeTarget(target: string): string | undefined {
  if (!target.startsWith('/')) return 'the request target must be a path (origin form)';
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (/%2e|%2f|%5c|\\|#/i.test(path)) return 'the path has an encoded ".", "/" or "\\"';
  // Also "..;x" and ".;x": servers that strip path parameters (Tomcat) read them as ".." and ".".
  if (/(^|\/)\.\.?(;[^/]*)?(\/|$)/.test(path)) return 'the path has "." or ".." segments';
  return undefined;
}

const listenerKey = (d: Destination | OriginalDestination) => ('original' in d ? `original|${d.original}` : `${d.ip}|${d.port}`);
const fdOf = (s: Socket) => (s as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;
const defaultOriginal = (s: Socket, family: 4 | 6) => originalDestination(fdOf(s), family);

/** Resolves once `start(done)` has the server listening; a listener error later never takes down the agent. */
function listening(server: Server, start: (done: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      // A listener error later (rare: accept failing for lack of descriptors) must not take down the agent.
      server.on('error', () => undefined);
      resolve();
    });
  });
}

const bare = (ip: string | undefined) => (ip ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
const workload = (i: Identity | undefined) => (i ? `${i.namespace}/${i.name}` : undefined);

class TokenBucket {
  private tokens: number;
  private last = performance.now();
  suppressed = 0;

  constructor(private readonly rate: number, private readonly burst: number) {
    this.tokens = burst;
  }

  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.suppressed++;
    return false;
  }
}

interface Listener {
  /** The one destination of an ingress listener; undefined on an egress one (per connection: `dests`). */
  dest?: Destination;
  family: 4 | 6;
  /** The node-address listener the DNAT redirect names, and with `transparent` the pod-address one of the Service path. */
  servers: Server[];
  upstream: Agent;
  /** Kept-alive upstream connections made from a pod's own address, per pod address. */
  sourced: Map<string, Agent>;
  sockets: Set<Socket>;
}

export class L7Proxy {
  private readonly listeners = new Map<string, Listener>();
  /** Each accepted connection's destination (egress listeners). */
  private readonly dests = new WeakMap<Socket, Destination>();
  private readonly counts = new Map<string, RuleCount>();
  private readonly denyLog: TokenBucket;

  constructor(private readonly opts: ProxyOptions) {
    const r = opts.denyLogRate ?? { perSecond: 10, burst: 20 };
    this.denyLog = new TokenBucket(r.perSecond, r.burst);
  }

  /**
   * Starts forwarding connections accepted on bind (host, port 0: any free
   * port) to dest, or with `{ original }` each to the destination it had
   * before the redirect; resolves to the address bound.
   */
  async listen(dest: Destination | OriginalDestination, bind: { host: string; port: number } | null, o: { transparent?: boolean } = {}): Promise<{ host: string; port: number }> {
    const key = listenerKey(dest);
    if (this.listeners.has(key)) throw new Error(`already proxying ${'original' in dest ? `redirected IPv${dest.original} connections` : `${dest.ip}:${dest.port}`}`);
    const l: Listener = {
      ...('original' in dest ? { family: dest.original } : { dest: { ip: dest.ip, port: dest.port }, family: dest.ip.includes(':') ? 6 as const : 4 as const }),
      servers: [], upstream: new Agent({ keepAlive: true, maxSockets: 256 }), sourced: new Map(), sockets: new Set(),
    };
    if (!bind && !(o.transparent && l.dest)) throw new Error('a listener needs a node address to bind, or a pod address (transparent)');
    const started: Server[] = [];
    try {
      if (bind) {
        const server = this.server(l);
        await listening(server, (done) => server.listen(bind.port, bind.host, done));
        started.push(server);
      }
      // The Service path: connections a Service DNATed to the pod, which the
      // node delivers locally (L7_DIVERT's mark) to the pod's own address.
      if (o.transparent && l.dest) {
        const fd = transparentListenFd(l.dest.ip, l.dest.port);
        const server = this.server(l);
        await listening(server, (done) => server.listen({ fd }, done));
        started.push(server);
      }
    } catch (e) {
      for (const srv of started) srv.close();
      throw e;
    }
    this.listeners.set(key, l);
    const a = started[0]!.address();
    if (a === null || typeof a === 'string') throw new Error('listener has no address');
    return { host: a.address, port: a.port };
  }

  /** An HTTP server whose connections and requests the listener's rules judge. */
  private server(l: Listener): Server {
    const server = createServer({
      keepAlive: true,
      keepAliveTimeout: this.opts.keepAliveTimeoutMs ?? 30_000,
      requireHostHeader: true,
      // Repeated headers kept apart: headersDistinct gives each value.
      joinDuplicateHeaders: false,
    });
    server.maxConnections = this.opts.maxConnections ?? 1024;
    server.on('connection', (s: Socket) => this.accept(l, s));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.handle(l, req, res, false));
    server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.handle(l, req, res, true));
    const refuseTunnel = (_req: IncomingMessage, socket: Socket) => {
      const body = 'nhi-cni L7 proxy: upgrades and CONNECT are not supported\n';
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    };
    server.on('upgrade', refuseTunnel);
    server.on('connect', refuseTunnel);
    server.on('clientError', (_e, socket: Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
    l.servers.push(server);
    return server;
  }

  /** Stops one listener (or every one), closing its connections. */
  async close(dest?: Destination | OriginalDestination): Promise<void> {
    const keys = dest ? [listenerKey(dest)] : [...this.listeners.keys()];
    await Promise.all(keys.map(async (k) => {
      const l = this.listeners.get(k);
      if (!l) return;
      this.listeners.delete(k);
      const closed = Promise.all(l.servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))));
      for (const s of l.sockets) s.destroy();
      l.upstream.destroy();
      for (const a of l.sourced.values()) a.destroy();
      await closed;
    }));
  }

  /** The destinations proxied now (ingress listeners). */
  destinations(): Destination[] {
    return [...this.listeners.values()].flatMap((l) => (l.dest ? [{ ...l.dest }] : []));
  }

  /** Per-rule allowed and denied counts since start, sorted (data for /metrics and `policy stats`). */
  stats(): RuleCount[] {
    return [...this.counts.values()].map((c) => ({ ...c })).sort((a, b) =>
      a.policy.localeCompare(b.policy) || a.rule.localeCompare(b.rule) || a.verdict.localeCompare(b.verdict));
  }

  /** The same as Prometheus samples: ({policy, rule, verdict}, count), for a counter such as nhi_l7_requests_total. */
  metricSamples(): [Record<string, string>, number][] {
    return this.stats().map((c) => [{ policy: c.policy, rule: c.rule, verdict: c.verdict }, c.count]);
  }

  // ---- inside ----

  private count(policy: string, rule: string, verdict: 'allowed' | 'denied'): void {
    const k = `${policy}\0${rule}\0${verdict}`;
    const c = this.counts.get(k);
    if (c) c.count++;
    else this.counts.set(k, { policy, rule, verdict, count: 1 });
  }

  private endpoints(dest: Destination, srcIp: string): { src: Endpoint; dst: Endpoint } {
    const srcId = this.opts.identify(srcIp);
    const dstId = this.opts.identify(dest.ip);
    return {
      src: srcId ? { ip: srcIp, identity: srcId } : { ip: srcIp },
      dst: dstId ? { ip: dest.ip, identity: dstId } : { ip: dest.ip },
    };
  }

  private judge(dest: Destination, srcIp: string, req?: HttpRequestInfo): { v: L7Verdict; src: Endpoint; dst: Endpoint } {
    try {
      const { src, dst } = this.endpoints(dest, srcIp);
      return { v: decide(this.opts.policies(), src, dst, dest.port, req), src, dst };
    } catch {
      // An address that does not parse, a callback that throws: no verdict, no access.
      return { v: { allowed: false, matched: [], byL4: [], deniedBy: [] }, src: { ip: srcIp }, dst: { ip: dest.ip } };
    }
  }

  /**
   * An egress listener's connection: where it was going before the redirect.
   * None (no conntrack entry), or the listener itself (no DNAT: sent
   * straight to it), or another family: not a redirected connection.
   */
  private originalOf(l: Listener, s: Socket): Destination | undefined {
    let d: Destination | undefined;
    try {
      d = (this.opts.originalDestination ?? defaultOriginal)(s, l.family);
    } catch {
      return undefined;
    }
    if (!d || d.ip.includes(':') !== (l.family === 6)) return undefined;
    if (d.ip === bare(s.localAddress) && d.port === s.localPort) return undefined;
    return d;
  }

  private logDeny(r: Omit<DenyRecord, 'time' | 'suppressed'>): void {
    if (!this.opts.onDeny || !this.denyLog.take()) return;
    const rec: DenyRecord = { ...r, time: new Date().toISOString() };
    if (this.denyLog.suppressed > 0) {
      rec.suppressed = this.denyLog.suppressed;
      this.denyLog.suppressed = 0;
    }
    try {
      this.opts.onDeny(rec);
    } catch {
      // a log sink that fails must not take the proxy down
    }
  }

  private accept(l: Listener, s: Socket): void {
    l.sockets.add(s);
    s.once('close', () => l.sockets.delete(s));
    const srcIp = bare(s.remoteAddress);
    const dest = l.dest ?? this.originalOf(l, s);
    if (!dest) {
      s.resetAndDestroy();
      return;
    }
    if (!l.dest) this.dests.set(s, dest);
    const { v, src, dst } = this.judge(dest, srcIp);
    if (v.allowed) return;
    for (const p of v.deniedBy.length ? v.deniedBy : ['-']) this.count(p, '-', 'denied');
    this.logDeny({
      msg: 'l7 connection refused',
      src: { ip: srcIp, ...(src.identity ? { workload: workload(src.identity) } : {}) },
      dst: { ip: dst.ip, port: dest.port, ...(dst.identity ? { workload: workload(dst.identity) } : {}) },
      policies: v.deniedBy,
    });
    // As the kernel would have: no connection. A reset, not a 403: no HTTP was spoken.
    s.resetAndDestroy();
  }

  private reject(res: ServerResponse, code: 400 | 403, body: string, hasBody: boolean): void {
    const headers: Record<string, string | number> = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) };
    // An unread request body would have to be read and thrown away to keep
    // the connection: close it instead (a denied 50 MB upload stops here).
    if (hasBody) headers.connection = 'close';
    res.writeHead(code, headers);
    res.end(body);
  }

  private handle(l: Listener, req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    const srcIp = bare(req.socket.remoteAddress);
    const method = req.method ?? '';
    const target = req.url ?? '';
    const hasBody = expectsContinue || req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    const bad = unsafeTarget(target) ?? ((req.headersDistinct.host?.length ?? 0) > 1 ? 'several Host headers' : undefined);
    if (bad) {
      this.reject(res, 400, `Bad request: ${bad} (nhi-cni L7 proxy)\n`, hasBody);
      return;
    }
    const dest = l.dest ?? this.dests.get(req.socket);
    if (!dest) {
      req.socket.destroy();
      return;
    }
    const info: HttpRequestInfo = { method, path: target, headers: req.headersDistinct as Record<string, string[]> };
    const { v, src, dst } = this.judge(dest, srcIp, info);
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    if (!v.allowed) {
      for (const p of v.deniedBy.length ? v.deniedBy : ['-']) this.count(p, '-', 'denied');
      this.logDeny({
        msg: 'l7 request denied',
        src: { ip: srcIp, ...(src.identity ? { workload: workload(src.identity) } : {}) },
        dst: { ip: dst.ip, port: dest.port, ...(dst.identity ? { workload: workload(dst.identity) } : {}) },
        method: method.slice(0, 32),
        path: path.slice(0, 256),
        policies: v.deniedBy,
      });
      const names = v.deniedBy.length ? v.deniedBy.join(', ') : 'no policy allows this source';
      this.reject(res, 403, `Access denied by network policy ${names}\n`, hasBody);
      return;
    }
    for (const m of v.matched) this.count(m.policy, m.at, 'allowed');
    for (const p of v.byL4) this.count(p, 'L4', 'allowed');
    if (expectsContinue) res.writeContinue();
    let from: 'node' | 'source' = 'node';
    try {
      from = this.opts.upstreamFrom?.(src, dst) ?? 'node';
    } catch {
      // a callback that throws: the node's address, which is never more than the pod's
    }
    this.forward(l, dest, from === 'source' ? srcIp : undefined, req, res);
  }

  /** The upstream connection pool of requests forwarded as `source`, made on first use. */
  private sourcedAgent(l: Listener, source: string): Agent {
    let a = l.sourced.get(source);
    if (a) return a;
    a = new Agent({ keepAlive: true, maxSockets: 256 });
    // Each connection of this pool bound to the pod's address before it connects.
    // The Agent may call this from an event handler (a queued request when a
    // socket frees up): it must not throw, so a refusal becomes the socket's error (502).
    (a as unknown as { createConnection: (o: { host: string; port: number }) => Socket }).createConnection = (o) => {
      try {
        return transparentSocket(source).connect({ host: o.host, port: o.port });
      } catch (e) {
        const failed = new NetSocket();
        process.nextTick(() => failed.destroy(e as Error));
        return failed;
      }
    };
    l.sourced.set(source, a);
    return a;
  }

  private forward(l: Listener, dest: Destination, source: string | undefined, req: IncomingMessage, res: ServerResponse): void {
    const up = httpRequest({
      host: dest.ip,
      port: dest.port,
      method: req.method,
      path: req.url,
      headers: forwardHeaders(req.rawHeaders),
      agent: source === undefined ? l.upstream : this.sourcedAgent(l, source),
      timeout: this.opts.connectTimeoutMs ?? 5000,
    });
    let connected = false;
    up.once('socket', (s: Socket) => {
      if (!s.connecting) connected = true;
      else s.once('connect', () => { connected = true; up.setTimeout(0); });
    });
    up.on('timeout', () => {
      // Only a connect that takes too long: once connected, a slow upstream is the client's business.
      if (!connected) up.destroy(new Error('upstream connect timeout'));
    });
    up.on('response', (ur: IncomingMessage) => {
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, forwardHeaders(ur.rawHeaders));
      ur.pipe(res);
      ur.on('error', () => res.destroy());
      ur.on('aborted', () => res.destroy());
    });
    up.on('error', (e) => {
      if (!res.headersSent) {
        const body = `Bad gateway: ${/timeout/.test(e.message) ? 'upstream did not answer in time' : 'upstream unavailable'} (nhi-cni L7 proxy)\n`;
        res.writeHead(/timeout/.test(e.message) ? 504 : 502, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
        res.end(body);
      } else {
        res.destroy();
      }
    });
    // The client went away before the response ended: stop the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.on('error', () => up.destroy());
    req.pipe(up);
  }
}
