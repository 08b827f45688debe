// npm run bench: latency and peak RSS of the reference `bridge` plugin with our
// IPAM (`nhi-ipam`, setup A) against the same bridge with the reference
// `host-local` IPAM (setup B), measured side by side in one run, plus the
// VERSION startup floor of dist/nhi-cni vs /usr/lib/cni/host-local.
//
// Everything that touches the network happens in namespaces this script
// creates: one "node" netns in which the plugins run (it holds both bridges)
// and one throw-away pod netns per ADD. No traffic leaves them.
//
// Structure: the outer process (host namespaces) checks prerequisites, creates
// the temp dir and the node netns, and owns all cleanup. It then re-executes
// this script once as `ip netns exec <node> node scripts/bench.mjs --inner`,
// and that inner process runs the whole measuring loop from inside the node
// netns. We chose this over `ip netns exec` per invocation: that would add an
// extra fork+exec, a mount-namespace unshare and a sysfs remount to every
// timed call, which is the same for A and B but inflates and blurs the
// numbers; entered once, a timed call is just spawn(bridge) -> exit.
// Pod netns are created by the inner process (`ip netns add`, untimed, before
// each ADD). Its mounts live in the inner mount namespace (ip netns exec made
// it a slave), so the outer cleanup also removes any /run/netns/<prefix>*
// entry left behind if the inner process dies mid-round.
//
// Env: BENCH_ROUNDS (default 60 measured rounds), BENCH_WARMUP (default 3),
//      BENCH_RSS_ROUNDS (default 10 extra rounds run under /usr/bin/time).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, release, cpus, availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const DIST = join(root, 'dist');
const NHI = join(DIST, 'nhi-cni');
const CNI_DIR = '/usr/lib/cni';
const BRIDGE = join(CNI_DIR, 'bridge');
const HOST_LOCAL = join(CNI_DIR, 'host-local');
const GNU_TIME = '/usr/bin/time';
const CNI_PATH = `${DIST}:${CNI_DIR}`;
const NS_PREFIX = 'nhib-';
const NETNS_DIR = '/run/netns';

function die(msg) {
  console.error(`bench: ${msg}`);
  process.exit(1);
}

function intEnv(name, def, min) {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) die(`${name}=${v} must be an integer >= ${min}`);
  return n;
}

/** Runs a command that must succeed (untimed helper). */
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout || '').trim()}`);
  return r.stdout;
}

if (process.argv[2] === '--inner') {
  try {
    inner(JSON.parse(process.env.BENCH_INNER));
  } catch (e) {
    console.error(`bench: ${e.message}`);
    process.exit(1);
  }
} else {
  await outer();
}

// ---------------------------------------------------------------- outer ----

async function outer() {
  const rounds = intEnv('BENCH_ROUNDS', 60, 1);
  const warmup = intEnv('BENCH_WARMUP', 3, 0);
  const rssRounds = intEnv('BENCH_RSS_ROUNDS', 10, 1);

  if (process.getuid?.() !== 0) die('must run as root (it creates network namespaces)');
  if (!existsSync(GNU_TIME)) {
    die(`${GNU_TIME} (GNU time) is missing; it measures peak RSS. Install it with: apt-get install -y time`);
  }
  for (const f of [BRIDGE, HOST_LOCAL]) if (!existsSync(f)) die(`${f} is missing (apt-get install -y containernetworking-plugins)`);
  if (!existsSync(NHI) || !existsSync(join(DIST, 'nhi-ipam'))) die(`${NHI} or dist/nhi-ipam is missing; build it first: npm run build`);
  if (spawnSync('ip', ['-V']).status !== 0) die('iproute2 (`ip`) is missing');

  cleanStale();

  const id = `${NS_PREFIX}${process.pid}`;
  const node = `${id}-node`;
  const tmp = mkdtempSync(join(tmpdir(), 'nhi-bench-'));
  let child;
  let interrupted = false;
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    if (child && child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    removeNamespaces((n) => n.startsWith(`${id}-`));
    rmSync(tmp, { recursive: true, force: true });
  };
  const onSignal = (sig) => {
    interrupted = true;
    console.error(`\nbench: ${sig}, cleaning up`);
    cleanup();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    run('ip', ['netns', 'add', node]);
    run('ip', ['-n', node, 'link', 'set', 'lo', 'up']);

    const setups = [
      setup('A', 'bridge + nhi-ipam', 'nhi-ipam', 'nhib-br-a', '10.201.0.0/16', tmp),
      setup('B', 'bridge + host-local', 'host-local', 'nhib-br-b', '10.202.0.0/16', tmp),
    ];
    const params = { rounds, warmup, rssRounds, setups, tmp, podPrefix: `${id}-pod-`, results: join(tmp, 'results.json') };

    console.error(`bench: ${warmup} warm-up + ${rounds} measured rounds, then ${rssRounds} RSS rounds (A/B interleaved)...`);
    child = spawn('ip', ['netns', 'exec', node, process.execPath, self, '--inner'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, BENCH_INNER: JSON.stringify(params) },
    });
    const code = await new Promise((res) => child.on('exit', (c, s) => res(c ?? (s ? 128 : 1))));
    if (interrupted) return;
    if (code !== 0) throw new Error(`measuring process failed (exit ${code})`);

    report(JSON.parse(readFileSync(params.results, 'utf8')), params);
  } catch (e) {
    console.error(`bench: FAILED: ${e.message}`);
    process.exitCode = 1;
  } finally {
    cleanup();
  }
}

function setup(key, label, ipamType, bridge, subnet, tmp) {
  const network = `nhib-${key.toLowerCase()}`;
  const dataDir = join(tmp, `ipam-${key.toLowerCase()}`);
  const config = {
    cniVersion: '1.0.0',
    name: network,
    type: 'bridge',
    bridge,
    isGateway: true,
    ipMasq: false,
    ipam: { type: ipamType, ranges: [[{ subnet }]], dataDir },
  };
  return { key, label, ipamType, subnet, network, dataDir, config: JSON.stringify(config) };
}

function listNamespaces() {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

function removeNamespaces(pred) {
  for (const n of listNamespaces().filter(pred)) {
    // `ip netns del` unmounts and unlinks; a pod entry created by a dead
    // inner process is just a plain file here, which it unlinks too.
    if (spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' }).status !== 0) {
      rmSync(join(NETNS_DIR, n), { force: true });
    }
  }
}

/** Namespaces of earlier runs that were SIGKILLed (their pid is gone). */
function cleanStale() {
  removeNamespaces((n) => {
    const m = /^nhib-(\d+)-/.exec(n);
    return !!m && Number(m[1]) !== process.pid && !existsSync(`/proc/${m[1]}`);
  });
}

function cmdOut(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : '?';
}

function report(res, params) {
  const ms = (x) => x.toFixed(2).padStart(8);
  const mb = (kb) => (kb / 1024).toFixed(1).padStart(8);
  const nhiNode = cmdOut(NHI, ['--version']).split('\n')[0];
  const machine = {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? '?',
    kernel: release(),
    node: process.version,
    nhiCni: nhiNode,
    cniPlugins: cmdOut('dpkg-query', ['-W', '-f=${Version}', 'containernetworking-plugins']),
  };
  console.log('');
  console.log(`machine: nproc=${machine.nproc}  cpu=${machine.cpu}  kernel=${machine.kernel}`);
  console.log(`         node ${machine.node} (bench runner; dist/nhi-cni embeds the pinned Node)  containernetworking-plugins ${machine.cniPlugins}`);
  console.log(`rounds: ${params.rounds} measured (+${params.warmup} warm-up), A/B interleaved, order alternating; RSS from ${params.rssRounds} extra rounds under GNU time`);
  console.log('');
  const head = `${'setup'.padEnd(24)} ${'ADD p50'.padStart(8)} ${'ADD p99'.padStart(8)} ${'DEL p50'.padStart(8)} ${'DEL p99'.padStart(8)} ${'peak RSS'.padStart(8)}`;
  console.log(`${head}\n${' '.repeat(25)}${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'MB'.padStart(8)}`);
  console.log('-'.repeat(head.length));
  const json = { machine, rounds: params.rounds, warmup: params.warmup, rssRounds: params.rssRounds, setups: {}, version: {} };
  for (const s of params.setups) {
    const r = res.setups[s.key];
    const add = stats(r.add);
    const del = stats(r.del);
    const rssAdd = Math.max(...r.rssAdd);
    const rssDel = Math.max(...r.rssDel);
    const peak = Math.max(rssAdd, rssDel);
    console.log(`${`${s.key}. ${s.label}`.padEnd(24)} ${ms(add.median)} ${ms(add.p99)} ${ms(del.median)} ${ms(del.p99)} ${mb(peak)}`);
    json.setups[s.key] = {
      label: s.label,
      ipam: s.ipamType,
      subnet: s.subnet,
      addMs: add,
      delMs: del,
      peakRssKb: peak,
      peakRssAddKb: rssAdd,
      peakRssDelKb: rssDel,
    };
  }
  console.log('');
  console.log(`${'VERSION (startup floor)'.padEnd(24)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${''.padStart(8)} ${''.padStart(8)} ${'RSS MB'.padStart(8)}`);
  console.log('-'.repeat(head.length));
  for (const [k, label] of [['nhi', 'dist/nhi-cni'], ['hostLocal', '/usr/lib/cni/host-local']]) {
    const v = stats(res.version[k]);
    const rss = Math.max(...res.version[`${k}Rss`]);
    console.log(`${label.padEnd(24)} ${ms(v.median)} ${ms(v.p99)} ${''.padStart(8)} ${''.padStart(8)} ${mb(rss)}`);
    json.version[k] = { binary: k === 'nhi' ? NHI : HOST_LOCAL, ms: v, peakRssKb: rss };
  }
  const a = json.setups.A;
  const b = json.setups.B;
  console.log('');
  console.log(`A/B: ADD median x${(a.addMs.median / b.addMs.median).toFixed(2)}, DEL median x${(a.delMs.median / b.delMs.median).toFixed(2)}, peak RSS x${(a.peakRssKb / b.peakRssKb).toFixed(2)}`);
  console.log(`BENCH_JSON ${JSON.stringify(json)}`);
}

/** Median and nearest-rank p99 (with fewer than 100 samples, p99 is the maximum). */
function stats(xs) {
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  const p99 = s[Math.min(n - 1, Math.ceil(0.99 * n) - 1)];
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return { median: r3(median), p99: r3(p99), min: r3(s[0]), max: r3(s[n - 1]), n };
}

// ---------------------------------------------------------------- inner ----
// Runs inside the node netns. Throws (exit 1) on any failed check; the outer
// process cleans up.

function inner(p) {
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const rssFile = join(p.tmp, 'rss');
  let seq = 0;

  /** One plugin invocation: wall ms measured around spawn -> exit. */
  function invoke(cmd, args, cniEnv, stdin, withTime) {
    const opts = { input: stdin, env: { ...env, ...cniEnv }, encoding: 'utf8', maxBuffer: 16 << 20 };
    let file = cmd;
    let argv = args;
    if (withTime) {
      argv = ['-f', '%M', '-o', rssFile, cmd, ...args];
      file = GNU_TIME;
    }
    const t0 = process.hrtime.bigint();
    const r = spawnSync(file, argv, opts);
    const t1 = process.hrtime.bigint();
    if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
    let rssKb;
    if (withTime) {
      // GNU time's %M is ru_maxrss from wait4(), in KiB. For the bridge that
      // includes its reaped IPAM child (the kernel folds children's maxrss in).
      const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
      rssKb = Number(lines[lines.length - 1]);
      if (!Number.isFinite(rssKb) || rssKb <= 0) throw new Error(`cannot parse GNU time output: ${lines.join(' | ')}`);
    }
    return { ms: Number(t1 - t0) / 1e6, status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, rssKb };
  }

  function fail(what, s, r) {
    throw new Error(`${s.key} (${s.label}) ${what} failed: exit ${r.status ?? r.signal}\n  stdout: ${r.stdout.trim()}\n  stderr: ${r.stderr.trim()}`);
  }

  function reservations(s) {
    try {
      return readdirSync(join(s.dataDir, s.network)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    } catch (e) {
      if (e.code === 'ENOENT') return [];
      throw e;
    }
  }

  /** ADD a pod then DEL it; returns timings and, when withTime, max RSS. */
  function podRound(s, withTime) {
    const pod = `${p.podPrefix}${s.key.toLowerCase()}-${++seq}`;
    const containerId = `nhibench${process.pid}${s.key.toLowerCase()}${seq}`;
    run('ip', ['netns', 'add', pod]);
    try {
      const cni = { CNI_CONTAINERID: containerId, CNI_NETNS: join(NETNS_DIR, pod), CNI_IFNAME: 'eth0', CNI_PATH };

      const add = invoke(BRIDGE, [], { ...cni, CNI_COMMAND: 'ADD' }, s.config, withTime);
      if (add.status !== 0) fail('ADD', s, add);
      let result;
      try {
        result = JSON.parse(add.stdout);
      } catch {
        fail('ADD (result is not JSON)', s, add);
      }
      const cidr = result.ips?.[0]?.address;
      const [prefixA, prefixB] = s.subnet.split('.');
      if (typeof cidr !== 'string' || !cidr.startsWith(`${prefixA}.${prefixB}.`)) {
        fail(`ADD (no IP in ${s.subnet} in the result)`, s, add);
      }
      const ip = cidr.split('/')[0];
      // Untimed checks: the pod got the address, IPAM recorded it on disk.
      const addrs = run('ip', ['-n', pod, '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
      if (!addrs.includes(` ${cidr} `)) throw new Error(`${s.key}: ${cidr} from the ADD result is not on eth0 in ${pod}: ${addrs.trim()}`);
      if (!reservations(s).includes(ip)) throw new Error(`${s.key}: no reservation file for ${ip} in ${s.dataDir}`);

      const del = invoke(BRIDGE, [], { ...cni, CNI_COMMAND: 'DEL' }, s.config, withTime);
      if (del.status !== 0) fail('DEL', s, del);
      const left = reservations(s);
      if (left.length) throw new Error(`${s.key}: DEL left reservations behind: ${left.join(', ')}`);
      return { add: add.ms, del: del.ms, rssAdd: add.rssKb, rssDel: del.rssKb };
    } finally {
      spawnSync('ip', ['netns', 'del', pod], { stdio: 'ignore' });
    }
  }

  function versionRound(first, withTime) {
    const out = {};
    const bins = [['nhi', NHI], ['hostLocal', HOST_LOCAL]];
    if (!first) bins.reverse();
    for (const [k, bin] of bins) {
      const r = invoke(bin, [], { CNI_COMMAND: 'VERSION' }, '', withTime);
      if (r.status !== 0 || !r.stdout.includes('supportedVersions')) throw new Error(`VERSION of ${bin} failed: exit ${r.status}: ${r.stderr.trim()}`);
      out[k] = r;
    }
    return out;
  }

  const res = { setups: {}, version: { nhi: [], hostLocal: [], nhiRss: [], hostLocalRss: [] } };
  for (const s of p.setups) res.setups[s.key] = { add: [], del: [], rssAdd: [], rssDel: [] };

  const total = p.warmup + p.rounds;
  for (let i = 0; i < total + p.rssRounds; i++) {
    const measured = i >= p.warmup && i < total;
    const rss = i >= total;
    const order = i % 2 === 0 ? p.setups : [...p.setups].reverse();
    for (const s of order) {
      const r = podRound(s, rss);
      const acc = res.setups[s.key];
      if (measured) {
        acc.add.push(r.add);
        acc.del.push(r.del);
      } else if (rss) {
        acc.rssAdd.push(r.rssAdd);
        acc.rssDel.push(r.rssDel);
      }
    }
    const v = versionRound(i % 2 === 0, rss);
    if (measured) {
      res.version.nhi.push(v.nhi.ms);
      res.version.hostLocal.push(v.hostLocal.ms);
    } else if (rss) {
      res.version.nhiRss.push(v.nhi.rssKb);
      res.version.hostLocalRss.push(v.hostLocal.rssKb);
    }
    if ((i + 1) % 10 === 0 || i + 1 === total + p.rssRounds) {
      const phase = i < p.warmup ? 'warm-up' : measured ? 'measured' : 'rss';
      process.stderr.write(`bench: round ${i + 1}/${total + p.rssRounds} (${phase})\n`);
    }
  }
  writeFileSync(p.results, JSON.stringify(res));
}
