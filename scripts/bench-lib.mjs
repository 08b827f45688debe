// Helpers shared by the benchmark scripts (bench.mjs, bench-policy.mjs).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

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
export function listNamespaces(dir = '/run/netns') {
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
