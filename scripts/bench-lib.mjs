// Helpers shared by the benchmark scripts (bench.mjs, bench-policy.mjs).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
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
