// npm run fuzz: runs the real dist/nhi-cni on generated and mutated
// invocations (scripts/fuzz-gen.mjs: every verb, every plugin type, configs
// with IPAM, policy sections, prevResult, runtimeConfig, CNI_ARGS, hostile
// strings and types) and fails on what a runtime must never see.
//
// Usage: npm run fuzz -- [--count N] [--seconds S] [--seed N] [--out DIR]
//                        [--slow-ms MS] [--replay CASE.json ...]
//   env equivalents: FUZZ_COUNT (default 2000), FUZZ_SECONDS (default 120),
//   FUZZ_SEED (default: from the clock, printed), FUZZ_OUT (default ./fuzz-out),
//   FUZZ_SLOW_MS (default 1000). Stops at whichever of count and time comes first.
//
// A case FAILS (it is saved as <out>/<seed>-<index>-<kind>.json, replayable
// with --replay, and the exit status is 1) on:
//   crash        an exit status other than 0 and 1, a signal, or no exit within 20 s
//                (without CNI_COMMAND the binary is the CLI: only these and
//                stack traces count)
//   stack-trace  a V8 stack trace on stderr (a line "    at ...", "Node.js vNN")
//                outside the plugin's JSON log lines
//   bad-stdout   stdout that is not exactly one JSON document of the right shape:
//                exit 1: {cniVersion, code (integer), msg, details?} and nothing
//                else; ADD exit 0: a result object with cniVersion; VERSION exit 0:
//                {cniVersion, supportedVersions}; DEL, CHECK, GC, STATUS exit 0:
//                empty stdout
//   internal     error code 100
//   left-on-reject  a rejected case (exit 1) that leaves something behind (below)
//   slow         a case over --slow-ms, twice (it is re-run once in a fresh
//                sandbox, so a scheduling hiccup of a busy machine is not a finding)
//   del-failed / del-leak / check-after-add   an ADD that succeeded is followed
//                by CHECK (cniVersion >= 0.4.0, its result as prevResult), which
//                must succeed, and by DEL, which must succeed and leave no
//                reservation, no attachment record, no veth on the node and no
//                interface but lo in the pod
//
// What "left behind" means, precisely. Before a case its scratch directory
// holds only its input files (policy manifests, a resolv.conf) and empty
// directories; the defaults /var/lib and /run/nhi-cni are empty tmpfs (below).
// After a rejected case, every regular file, symlink or other non-directory
// in those trees that is not an input counts, whatever its size, except:
//   - lock files: named "lock" or ending in ".lock" (flock targets, kept by
//     design, as the reference host-local keeps <dataDir>/<network>/lock);
//   - IPAM's round-robin cursor "last_reserved_ip.<n>" (a hint of where to
//     look next, which the reference host-local also leaves after a failure);
//   - the plugin's log, the file log.file or NHI_CNI_LOG_FILE names (relative
//     names resolved from the plugin's working directory): a rejection is
//     logged by design;
//   - the run directory's bridge cache "<runDir>/<netns id>/bridge-<name>.json"
//     (it describes the bridge, which by design outlives every pod);
// and, with a rejected ADD, a veth left on the node or an interface other than
// lo left in the pod counts too. Empty directories are allowed. Temporary files
// (".nhi-tmp-*") always count.
//
// Sandbox: the script creates a "node" network namespace and re-runs itself
// inside it (`ip netns exec`), in a private mount namespace where /var/lib,
// /run/nhi-cni and /run/netns are fresh tmpfs - so a config without stateDir
// or dataDir writes there, never to the machine. Each case gets a scratch
// directory (its stateDir, dataDir, NHI_CNI_RUN_DIR, log file, and the
// plugin's working directory, 16 levels deep so that relative paths with ".."
// stay inside), and a pod namespace when its CNI_NETNS names one. After each
// case the node namespace's links and nftables ruleset are reset and the
// scratch is removed. Nothing is sent anywhere; the machine's own links,
// firewall and files are never touched. Needs root.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanStale, cleanupOnSignals, dieWith, removeNamespaces, run } from './bench-lib.mjs';
import { generateCase } from './fuzz-gen.mjs';

const die = dieWith('fuzz');
const self = fileURLToPath(import.meta.url);
const ROOT = join(dirname(self), '..');
const BINARY = join(ROOT, 'dist', 'nhi-cni');
const NS_PREFIX = 'nhifz-';
const PLUGIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const HANG_MS = 20_000;
const SANDBOX_TMPFS = ['/var/lib', '/run/nhi-cni'];

function parseArgs(argv) {
  const o = {
    count: num(process.env.FUZZ_COUNT, 2000),
    seconds: num(process.env.FUZZ_SECONDS, 120),
    seed: process.env.FUZZ_SEED ? num(process.env.FUZZ_SEED, 0) : Date.now() % 2 ** 31,
    out: process.env.FUZZ_OUT || join(process.cwd(), 'fuzz-out'),
    slowMs: num(process.env.FUZZ_SLOW_MS, 1000),
    replay: [],
    inner: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--count') o.count = num(val(), NaN);
    else if (a === '--seconds') o.seconds = num(val(), NaN);
    else if (a === '--seed') o.seed = num(val(), NaN);
    else if (a === '--out') o.out = val();
    else if (a === '--slow-ms') o.slowMs = num(val(), NaN);
    else if (a === '--replay') while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) o.replay.push(argv[++i]);
    else if (a === '--inner') o.inner = true;
    else die(`unknown argument ${a} (see the top of scripts/fuzz.mjs)`);
  }
  for (const k of ['count', 'seconds', 'seed', 'slowMs']) if (!Number.isInteger(o[k]) || o[k] < 0) die(`--${k} must be a non-negative integer`);
  return o;
}

function num(v, def) {
  if (v === undefined || v === '') return def;
  return /^\d+$/.test(String(v)) ? Number(v) : NaN;
}

// ---- outer: the host side -------------------------------------------------

function outer(o) {
  if (process.getuid?.() !== 0) die('needs root (it creates network namespaces)');
  if (!existsSync(BINARY)) die(`${BINARY} is missing: run npm run build first`);
  cleanStale(NS_PREFIX);
  const tmp = mkdtempSync(join(tmpdir(), 'nhi-fuzz-'));
  const bin = join(tmp, 'bin');
  mkdirSync(bin);
  for (const t of ['nhi-cni', 'nhi-ipam', 'nhi-policy']) symlinkSync(BINARY, join(bin, t));
  if (existsSync('/usr/lib/cni/host-local')) symlinkSync('/usr/lib/cni/host-local', join(bin, 'host-local'));
  const node = `${NS_PREFIX}${process.pid}-node`;
  const cleanup = () => {
    removeNamespaces((n) => n.startsWith(`${NS_PREFIX}${process.pid}-`));
    rmSync(tmp, { recursive: true, force: true });
  };
  let child;
  try {
    run('ip', ['netns', 'add', node]);
    run('ip', ['-n', node, 'link', 'set', 'lo', 'up']);
  } catch (e) {
    cleanup();
    die(e.message);
  }
  mkdirSync(o.out, { recursive: true });
  const args = ['netns', 'exec', node, process.execPath, self, '--inner', '--count', String(o.count), '--seconds', String(o.seconds),
    '--seed', String(o.seed), '--out', o.out, '--slow-ms', String(o.slowMs), ...(o.replay.length ? ['--replay', ...o.replay] : [])];
  child = spawn('ip', args, { stdio: 'inherit', env: { ...process.env, FUZZ_TMP: tmp, FUZZ_BIN: bin, FUZZ_PID: String(process.pid) } });
  const exited = new Promise((r) => child.on('exit', (code, sig) => r(code ?? (sig ? 128 : 1))));
  cleanupOnSignals('fuzz', { stop: () => child.kill('SIGTERM'), done: () => exited, cleanup });
  exited.then((code) => {
    cleanup();
    process.exit(code);
  });
}

// ---- inner: inside the node namespace -------------------------------------

function sandbox() {
  // `ip netns exec` gave us a mount namespace whose mounts do not propagate
  // back; these tmpfs hide the machine's default state directories.
  for (const d of [...SANDBOX_TMPFS, '/run/netns']) {
    mkdirSync(d, { recursive: true });
    run('mount', ['-t', 'tmpfs', '-o', 'mode=0755,size=256m', 'fuzz', d]);
  }
}

function clearDir(d) {
  for (const n of readdirSync(d)) rmSync(join(d, n), { recursive: true, force: true });
}

/** Replaces @SCRATCH@, @POD@, @BIN@ in a string. */
function fill(s, ctx) {
  return s.replaceAll('@SCRATCH@', ctx.scratch).replaceAll('@POD@', ctx.pod).replaceAll('@BIN@', ctx.bin);
}

function stdinOf(c, ctx) {
  if (c.stdin !== undefined) return Buffer.from(fill(c.stdin, ctx), 'utf8');
  // Raw bytes: latin1 maps bytes 1:1 to characters, so the replacement keeps every other byte.
  return Buffer.from(fill(Buffer.from(c.stdinBase64, 'base64').toString('latin1'), ctx), 'latin1');
}

function usesPod(c) {
  return Object.values(c.env).some((v) => v.includes('@POD@')) || (c.stdin ?? '').includes('@POD@');
}

/** Regular files (and anything not a directory) under `dir`, as paths. */
function walk(dir, out = []) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (st?.isDirectory()) walk(p, out);
    else if (st) out.push(p);
  }
  return out;
}

function allowedLeftover(p, ctx) {
  const base = p.split('/').pop();
  if (base.startsWith('.nhi-tmp-')) return false;
  if (base === 'lock' || base.endsWith('.lock')) return true;
  if (/^last_reserved_ip\.\d+$/.test(base)) return true;
  if (ctx.logFiles.has(p)) return true;
  const runDir = ctx.runDir;
  if (runDir && p.startsWith(`${runDir}/`) && /^[^/]+\/bridge-[^/]+\.json$/.test(p.slice(runDir.length + 1))) return true;
  return false;
}

function leftovers(ctx) {
  const files = [...walk(ctx.scratch), ...SANDBOX_TMPFS.flatMap((d) => walk(d))];
  return files.filter((p) => !ctx.inputs.has(p) && !allowedLeftover(p, ctx));
}

function sh(cmd, args) {
  return spawnSync(cmd, args, { encoding: 'utf8' });
}

function nodeLinks() {
  return readdirSync('/sys/class/net').filter((n) => n !== 'lo');
}

function vethsOnNode() {
  return nodeLinks().filter((n) => existsSync(`/sys/class/net/${n}/brport`) || /^veth/.test(n));
}

function podLinks(ctx) {
  if (!ctx.podName) return [];
  const r = sh('ip', ['-n', ctx.podName, '-j', 'link', 'show']);
  if (r.status !== 0) return [];
  try {
    return JSON.parse(r.stdout).map((l) => l.ifname).filter((n) => n !== 'lo');
  } catch {
    return [];
  }
}

function resetNode() {
  for (const n of nodeLinks()) sh('ip', ['link', 'del', n]);
  sh('nft', ['flush', 'ruleset']);
  for (const d of SANDBOX_TMPFS) clearDir(d);
}

/** Sets up a case's scratch, pod and input files; returns the context. */
function prepare(c, index, base) {
  const scratch = join(base, `c${index}`);
  rmSync(scratch, { recursive: true, force: true });
  const cwd = join(scratch, ...Array.from({ length: 16 }, (_, i) => `w${i}`));
  mkdirSync(cwd, { recursive: true });
  const ctx = { scratch, cwd, bin: process.env.FUZZ_BIN, pod: join(scratch, 'no-pod'), podName: undefined, inputs: new Set() };
  if (usesPod(c)) {
    ctx.podName = `${NS_PREFIX}${process.env.FUZZ_PID}-p${index}`;
    sh('ip', ['netns', 'del', ctx.podName]);
    run('ip', ['netns', 'add', ctx.podName]);
    ctx.pod = `/run/netns/${ctx.podName}`;
  }
  for (const [rel, content] of Object.entries(c.files ?? {})) {
    const p = join(scratch, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, fill(content, ctx));
    ctx.inputs.add(p);
  }
  ctx.runDir = c.env.NHI_CNI_RUN_DIR !== undefined ? fill(c.env.NHI_CNI_RUN_DIR, ctx) : '/run/nhi-cni';
  ctx.logFiles = new Set();
  let logFile;
  try {
    logFile = JSON.parse(stdinOf(c, ctx).toString('utf8'))?.log?.file;
  } catch { /* not JSON: no log file */ }
  for (const f of [logFile, c.env.NHI_CNI_LOG_FILE && fill(c.env.NHI_CNI_LOG_FILE, ctx)]) {
    if (typeof f === 'string' && f) ctx.logFiles.add(resolve(ctx.cwd, f));
  }
  return ctx;
}

function finish(ctx) {
  if (ctx.podName) sh('ip', ['netns', 'del', ctx.podName]);
  resetNode();
  rmSync(ctx.scratch, { recursive: true, force: true });
}

function invoke(binary, env, stdin, ctx) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(join(ctx.bin, binary), [], {
    cwd: ctx.cwd, input: stdin, env: { PATH: PLUGIN_PATH, ...env },
    timeout: HANG_MS, killSignal: 'SIGKILL', maxBuffer: 64 << 20, encoding: 'utf8',
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  // EPIPE: the plugin answered without reading all of stdin (VERSION, an
  // early error); runtimes ignore that (Go's os/exec does), so do we.
  const error = r.error && !(r.error.code === 'EPIPE' && r.status !== null) ? r.error.message : undefined;
  return { status: r.status, signal: r.signal, error, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms };
}

const ERROR_KEYS = new Set(['cniVersion', 'code', 'msg', 'details']);

/** The oracle for one invocation: a list of { kind, detail }. */
function judge(verb, r) {
  const out = [];
  const bad = (kind, detail) => out.push({ kind, detail });
  // The CLI (no CNI_COMMAND) exits 2 on a usage error (docs/cli.md); the CNI verbs only 0 or 1.
  if (r.error || r.signal || (r.status !== 0 && r.status !== 1 && !(verb === undefined && r.status === 2))) {
    bad('crash', r.error ?? `exit ${r.status} signal ${r.signal}`);
    return out;
  }
  const foreign = r.stderr.split('\n').filter((l) => l && !l.startsWith('{'));
  const trace = foreign.find((l) => /^\s+at\s\S/.test(l) || /^Node\.js v\d/.test(l));
  if (trace || /^\s+at\s\S/m.test(r.stdout)) bad('stack-trace', trace ?? 'in stdout');
  // Without CNI_COMMAND the binary is the CLI for people (README): only
  // crashes count there.
  if (verb === undefined) return out;
  const text = r.stdout.trim();
  let doc;
  try {
    doc = text === '' ? undefined : JSON.parse(text);
  } catch (e) {
    bad('bad-stdout', `not one JSON document: ${e.message}`);
    return out;
  }
  const isObj = doc !== null && typeof doc === 'object' && !Array.isArray(doc);
  if (r.status === 1) {
    if (!isObj || typeof doc.cniVersion !== 'string' || !Number.isInteger(doc.code) || typeof doc.msg !== 'string' ||
      (doc.details !== undefined && typeof doc.details !== 'string') || Object.keys(doc).some((k) => !ERROR_KEYS.has(k))) {
      bad('bad-stdout', `exit 1 without a spec error document: ${text.slice(0, 200)}`);
    } else if (doc.code === 100) bad('internal', `${doc.msg}: ${doc.details ?? ''}`);
  } else if (verb === 'ADD') {
    if (!isObj || typeof doc.cniVersion !== 'string') bad('bad-stdout', `ADD exit 0 without a result: ${text.slice(0, 200)}`);
  } else if (verb === 'VERSION') {
    if (!isObj || typeof doc.cniVersion !== 'string' || !Array.isArray(doc.supportedVersions)) bad('bad-stdout', `VERSION: ${text.slice(0, 200)}`);
  } else if (text !== '') bad('bad-stdout', `${verb} exit 0 printed ${text.slice(0, 200)}`);
  return out;
}

function reservationsAndRecords(ctx) {
  return [...walk(ctx.scratch), ...SANDBOX_TMPFS.flatMap((d) => walk(d))]
    .filter((p) => /\/attachments\/[^/]+\.json$/.test(p) || /^[0-9a-f.:]+$/.test(p.split('/').pop()));
}

/** Runs one case; returns { failures, outcome, added }. */
function runOnce(c, base) {
  const ctx = prepare(c, c.index, base);
  try {
    const env = Object.fromEntries(Object.entries(c.env).map(([k, v]) => [k, fill(v, ctx)]));
    const stdin = stdinOf(c, ctx);
    const verb = env.CNI_COMMAND;
    const r = invoke(c.binary, env, stdin, ctx);
    const failures = judge(verb, r);
    if (r.status === 1 && !failures.some((f) => f.kind === 'crash')) {
      const left = leftovers(ctx);
      if (verb === 'ADD') left.push(...vethsOnNode().map((n) => `node link ${n}`), ...podLinks(ctx).map((n) => `pod link ${n}`));
      if (left.length) failures.push({ kind: 'left-on-reject', detail: left.map((p) => p.replace(ctx.scratch, '@SCRATCH@')).join(', ') });
    }
    let added = false;
    if (verb === 'ADD' && r.status === 0 && failures.length === 0) {
      added = true;
      failures.push(...followUp(c, env, stdin, JSON.parse(r.stdout), ctx));
    }
    return { failures, outcome: r, added };
  } finally {
    finish(ctx);
  }
}

/** CHECK and DEL after a successful ADD, with the ADD's result as prevResult. */
function followUp(c, env, stdin, result, ctx) {
  const out = [];
  let config;
  try {
    config = JSON.parse(stdin.toString('utf8'));
  } catch {
    return [{ kind: 'bad-stdout', detail: 'ADD succeeded on stdin that is not JSON' }];
  }
  // Appended as text (a later key wins in JSON decoders): the config may
  // nest deeper than JSON.stringify can recurse.
  const withPrev = Buffer.from(stdin.toString('utf8').replace(/\}\s*$/, `,"prevResult":${JSON.stringify(result)}}`));
  const version = typeof config.cniVersion === 'string' ? config.cniVersion : '0.1.0';
  if (['0.4.0', '1.0.0', '1.1.0'].includes(version)) {
    const chk = invoke(c.binary, { ...env, CNI_COMMAND: 'CHECK' }, withPrev, ctx);
    const f = judge('CHECK', chk);
    if (f.length) out.push(...f.map((x) => ({ ...x, detail: `CHECK after ADD: ${x.detail}` })));
    else if (chk.status !== 0) out.push({ kind: 'check-after-add', detail: chk.stdout.trim().slice(0, 300) });
  }
  const del = invoke(c.binary, { ...env, CNI_COMMAND: 'DEL' }, withPrev, ctx);
  const f = judge('DEL', del);
  if (f.length) out.push(...f.map((x) => ({ ...x, detail: `DEL after ADD: ${x.detail}` })));
  else if (del.status !== 0) out.push({ kind: 'del-failed', detail: del.stdout.trim().slice(0, 300) });
  else {
    const left = [...reservationsAndRecords(ctx), ...vethsOnNode().filter((n) => n.startsWith('veth')), ...podLinks(ctx).map((n) => `pod link ${n}`)];
    if (left.length) out.push({ kind: 'del-leak', detail: left.map((p) => p.replace(ctx.scratch, '@SCRATCH@')).join(', ') });
  }
  return out;
}

function save(o, c, res) {
  const kinds = [...new Set(res.failures.map((f) => f.kind))];
  const file = join(o.out, `${c.seed}-${c.index}-${kinds.join('+')}.json`);
  const cut = (s) => (s.length > 4000 ? `${s.slice(0, 1000)}…${s.slice(-3000)}` : s);
  const { status, signal, ms, stdout, stderr } = res.outcome;
  writeFileSync(file, `${JSON.stringify({ ...c, failures: res.failures, outcome: { status, signal, ms: Math.round(ms), stdout: cut(stdout), stderr: cut(stderr) } }, null, 2)}\n`);
  return file;
}

function inner(o) {
  sandbox();
  const base = join(process.env.FUZZ_TMP, 'cases');
  mkdirSync(base, { recursive: true });
  const deadline = Date.now() + o.seconds * 1000;
  const started = Date.now();
  const stats = { cases: 0, byVerb: {}, codes: {}, added: 0, failed: 0, kinds: {}, slowest: 0, slowOnce: 0, harness: 0 };
  const cases = o.replay.length
    ? o.replay.map((f) => JSON.parse(readFileSync(f, 'utf8')))
    : { *[Symbol.iterator]() { for (let i = 0; i < o.count; i++) yield generateCase(o.seed, i, ROOT); } };
  if (!o.replay.length) console.log(`fuzz: seed ${o.seed}, up to ${o.count} cases or ${o.seconds} s, failing cases into ${o.out}`);
  for (const c of cases) {
    if (!o.replay.length && Date.now() > deadline) break;
    let res;
    try {
      res = runOnce(c, base);
    } catch (e) {
      // The harness's own trouble (a namespace it could not create): not a
      // finding about the plugin, but not hidden either.
      stats.harness++;
      console.log(`case ${c.seed}/${c.index}: fuzz harness error: ${e.message}`);
      continue;
    }
    if (res.outcome.ms > o.slowMs && !res.failures.length) {
      const again = runOnce(c, base);
      if (again.outcome.ms > o.slowMs) again.failures.push({ kind: 'slow', detail: `${Math.round(res.outcome.ms)} ms, then ${Math.round(again.outcome.ms)} ms` });
      else stats.slowOnce++;
      res = again;
    }
    stats.cases++;
    const verb = c.env.CNI_COMMAND ?? '(none)';
    stats.byVerb[verb] = (stats.byVerb[verb] ?? 0) + 1;
    let code = res.outcome.status === 0 ? 'ok' : 'other';
    try {
      if (res.outcome.status === 1) code = `code ${JSON.parse(res.outcome.stdout).code}`;
    } catch { /* counted as other */ }
    stats.codes[code] = (stats.codes[code] ?? 0) + 1;
    if (res.added) stats.added++;
    stats.slowest = Math.max(stats.slowest, res.outcome.ms);
    if (res.failures.length || o.replay.length) {
      if (res.failures.length) {
        stats.failed++;
        for (const f of res.failures) stats.kinds[f.kind] = (stats.kinds[f.kind] ?? 0) + 1;
      }
      const file = res.failures.length && !o.replay.length ? save(o, c, res) : '';
      const what = res.failures.length ? res.failures.map((f) => `${f.kind}: ${f.detail.slice(0, 240)}`).join('\n    ') : `ok (exit ${res.outcome.status}) ${res.outcome.stdout.trim().slice(0, 240)}`;
      console.log(`case ${c.seed}/${c.index} ${c.binary} ${verb}: ${what}${file ? `\n    saved ${relative(process.cwd(), file)}` : ''}`);
      if (o.replay.length) console.log(`  stderr (end): ${res.outcome.stderr.slice(-1500)}`);
    }
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`fuzz: ${stats.cases} cases in ${secs} s (seed ${o.seed}); ADDs that succeeded (then CHECKed and DELeted): ${stats.added}`);
  console.log(`  verbs: ${JSON.stringify(stats.byVerb)}`);
  console.log(`  outcomes: ${JSON.stringify(stats.codes)}`);
  console.log(`  slowest ${Math.round(stats.slowest)} ms; slow once then fast on re-run: ${stats.slowOnce}`);
  console.log(`  failing cases: ${stats.failed} ${JSON.stringify(stats.kinds)}`);
  if (stats.harness) console.log(`  harness errors (cases not judged): ${stats.harness}`);
  process.exit(stats.failed || stats.harness ? 1 : 0);
}

const opts = parseArgs(process.argv.slice(2));
if (opts.inner) inner(opts);
else outer(opts);

