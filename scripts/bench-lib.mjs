// Helpers shared by the benchmark scripts (bench.mjs, bench-policy.mjs).
import { spawn, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const NETNS_DIR = '/run/netns';

/** A fatal-error printer for one script: "<prefix>: <message>", exit 1. */
export function dieWith(prefix) {
  return (msg) => {
    console.error(`${prefix}: ${msg}`);
    process.exit(1);
  };
}

/** An integer from the environment (≥ min), or the default; anything else is fatal. */
export function intEnvWith(die) {
  return (name, def, min) => {
    const v = process.env[name];
    if (v === undefined || v === '') return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) die(`${name}=${v} must be an integer >= ${min}`);
    return n;
  };
}

/** Runs a command that must succeed (an untimed helper); returns its stdout. */
export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout || '').trim()}`);
  return r.stdout;
}

/** Network namespaces by name (empty when /run/netns does not exist). */
export function listNamespaces(dir = NETNS_DIR) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A command's trimmed output, or "?" when it fails (machine info lines). */
export function cmdOut(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '?';
}

/** Deletes the network namespaces whose name `pred` accepts. */
export function removeNamespaces(pred) {
  for (const n of listNamespaces().filter(pred)) {
    // `ip netns del` unmounts and unlinks; a pod entry created by a dead
    // inner process is just a plain file here, which it unlinks too.
    if (spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' }).status !== 0) rmSync(join(NETNS_DIR, n), { force: true });
  }
}

/** Namespaces "<prefix><pid>-..." of earlier runs that were SIGKILLed (their pid is gone). */
export function cleanStale(prefix) {
  removeNamespaces((n) => {
    if (!n.startsWith(prefix)) return false;
    const m = /^(\d+)-/.exec(n.slice(prefix.length));
    return !!m && Number(m[1]) !== process.pid && !existsSync(`/proc/${m[1]}`);
  });
}

/**
 * On SIGINT, SIGTERM or SIGHUP: `stop()` the measuring process, give it up
 * to 2 s to be reaped (`done()`: its exit) so nothing writes into the temp
 * dir after it is removed, `cleanup()`, exit 130. The returned object says
 * whether that happened.
 */
export function cleanupOnSignals(name, { stop, done, cleanup }) {
  const state = { interrupted: false };
  const onSignal = async (sig) => {
    if (state.interrupted) return;
    state.interrupted = true;
    console.error(`\n${name}: ${sig}, cleaning up`);
    stop();
    await Promise.race([done(), new Promise((r) => setTimeout(r, 2000))]);
    cleanup();
    process.exit(130);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, onSignal);
  return state;
}

// ---- TCP connect rate between two pods (bench-policy part 3, bench's source-check cost) ----

const CONNECT_SERVER = `
const net = require('net');
let pending = process.argv.length - 1;
for (const port of process.argv.slice(1).map(Number)) {
  net.createServer((s) => { s.on('error', () => {}); s.resume(); }).listen(port, '0.0.0.0', () => { if (--pending === 0) console.log('ready'); });
}
`;

// probe: {ok} within 700 ms. rate: 0.3 s warm-up, then sequential
// connect -> destroy for <secs> s: {n, ms}. Exits 3 when a connection stalls.
const CONNECT_CLIENT = `
const net = require('net');
const [mode, host, port, secs] = [process.argv[1], process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
if (mode === 'probe') {
  const s = net.connect({ host, port });
  const t = setTimeout(() => { console.log(JSON.stringify({ ok: false })); process.exit(0); }, 700);
  s.on('connect', () => { clearTimeout(t); s.destroy(); console.log(JSON.stringify({ ok: true })); process.exit(0); });
  s.on('error', () => { clearTimeout(t); console.log(JSON.stringify({ ok: false })); process.exit(0); });
} else {
  const warm = performance.now() + 300;
  let t0 = 0, n = 0, last = performance.now();
  setInterval(() => { if (performance.now() - last > 2000) { console.error('a connection stalled for 2 s'); process.exit(3); } }, 500).unref();
  const one = () => {
    const now = performance.now();
    last = now;
    if (t0 === 0 && now >= warm) t0 = now;
    if (t0 !== 0 && now - t0 >= secs * 1000) { console.log(JSON.stringify({ n, ms: now - t0 })); process.exit(0); }
    const s = net.connect({ host, port });
    s.on('connect', () => { if (t0 !== 0) n++; s.destroy(); one(); });
    s.on('error', (e) => { console.error(e.message); process.exit(1); });
  };
  one();
}
`;

/**
 * Server and client pinned to CPUs of their own (where taskset and two CPUs
 * exist): the scheduler moving them about was most of the spread between
 * runs of the same case.
 */
function pinned(cpu, args) {
  const pin = availableParallelism() >= 2 && spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;
  return pin ? ['taskset', ['-c', String(cpu), 'ip', ...args]] : ['ip', args];
}

/**
 * The connect-rate pair: a server in netns `server` listening on `ports`
 * (CPU 0), and `client(mode, host, port, secs)` running the client in netns
 * `clientNs` (CPU 1). Every child is kept in `children` until it ends, for the
 * caller's cleanup.
 */
export async function connectPair(server, clientNs, ports, children) {
  const srv = spawn(...pinned(0, ['netns', 'exec', server, process.execPath, '-e', CONNECT_SERVER, ...ports.map(String)]), { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(srv);
  await new Promise((resolve, reject) => {
    srv.stdout.once('data', () => resolve());
    srv.once('exit', (c) => reject(new Error(`server in ${server} exited with ${c}`)));
  });
  const client = (mode, host, port, secs = 0) => new Promise((resolve, reject) => {
    const c = spawn(...pinned(1, ['netns', 'exec', clientNs, process.execPath, '-e', CONNECT_CLIENT, mode, host, String(port), String(secs)]), { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(c);
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    c.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
    c.on('close', (code) => {
      children.delete(c);
      if (code !== 0) return reject(new Error(`client (${mode} ${host}:${port}) exited ${code}: ${err.trim()}`));
      resolve(JSON.parse(out));
    });
  });
  const stop = () => {
    srv.kill('SIGKILL');
    children.delete(srv);
  };
  return { client, stop };
}

/** The client netns can open tens of thousands of sequential connections (ports, TIME_WAIT reuse). */
export function tuneConnectClient(ns) {
  run('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1']);
}

/** In the node netns (where conntrack runs): short TIME_WAIT/CLOSE timeouts, so connect runs do not fill the table for the next ones. */
export function shortenConntrack(name) {
  const notes = [];
  for (const k of ['time_wait', 'close', 'fin_wait', 'last_ack']) {
    try {
      writeFileSync(`/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_${k}`, '1');
    } catch (e) {
      notes.push(`${k}: ${e.message}`);
    }
  }
  if (notes.length) process.stderr.write(`${name}: note: could not shorten conntrack timeouts in the node netns: ${notes.join('; ')}\n`);
}
