// npm run bench: latency, peak RSS and processes spawned of five CNI setups,
// measured side by side in one run:
//   A. reference bridge + nhi-ipam             (ipMasq off)
//   B. reference bridge + reference host-local (ipMasq off)
//   C. nhi-cni alone: bridge, veth, built-in host-local IPAM, masquerade
//   D. reference bridge + host-local, ipMasq and isGateway on (C's Go twin)
//   E. D + reference firewall (iptables) + reference portmap (one mapping)
//   F. C with "spoofcheck": false (no source check; the RA guard stays)
// plus the VERSION startup floor of dist/nhi-cni vs /usr/lib/cni/host-local,
// and the source check's cost on traffic: TCP connects/s between two pods of
// C (checked) and of F (not checked), runs interleaved.
//
// Each setup is a conflist, driven the way libcni drives one: plugins run in
// order on ADD, each given the previous plugin's result as "prevResult"; DEL
// runs them in reverse, each with prevResult = the final ADD result; the list's
// "name" and "cniVersion" (and "runtimeConfig" for declared capabilities) are
// injected into every plugin's config. "ADD latency" of a setup is the wall
// time of its whole chain.
//
// Measured (1) sequentially: interleaved rounds (A..E, then E..A, ...), one pod
// per setup per round; then extra rounds under GNU time (peak RSS: the max of
// the chain's plugin processes, children folded in) and, if strace exists,
// under strace (processes spawned per ADD/DEL); and (2) in bursts: N pods,
// their N chain ADDs started at once, then their N chain DELs at once (wall
// time of the burst and per-call latency). For C the spawn count also comes
// from NHI_CNI_TRACE_EXEC=1 in every measured round.
//
// Everything that touches the network happens in namespaces this script
// creates: one "node" netns in which the plugins run (it holds all bridges,
// and the iptables/nftables state of D, E and C) and one throw-away pod netns
// per ADD. No traffic leaves them. All plugin state (IPAM dataDirs, nhi-cni
// stateDir and NHI_CNI_RUN_DIR) lives in a temp dir.
//
// Structure: the outer process (host namespaces) checks prerequisites, creates
// the temp dir and the node netns, and owns all cleanup. It then re-executes
// this script once as `ip netns exec <node> node scripts/bench.mjs --inner`,
// and that inner process runs the whole measuring loop from inside the node
// netns. We chose this over `ip netns exec` per invocation: that would add an
// extra fork+exec, a mount-namespace unshare and a sysfs remount to every
// timed call, which is the same for every setup but inflates and blurs the
// numbers; entered once, a timed call is just spawn(plugin) -> exit.
// Pod netns are created by the inner process (`ip netns add`, untimed, before
// each ADD). Its mounts live in the inner mount namespace (ip netns exec made
// it a slave), so the outer cleanup also removes any /run/netns/<prefix>*
// entry left behind if the inner process dies mid-round.
//
// Env: BENCH_ROUNDS (default 40 measured sequential rounds), BENCH_WARMUP (3),
//      BENCH_RSS_ROUNDS (5 extra rounds under GNU time), BENCH_STRACE_ROUNDS
//      (2 rounds under strace), BENCH_BURSTS (3 bursts per setup),
//      BENCH_BURST_SIZE (64 pods per burst, as issue 12 measures), BENCH_CONNECT_RUNS (7 runs per
//      case of the connect rate, 0 skips it), BENCH_CONNECT_SECS (2 s a run).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, release, cpus, availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pluginConfig, summary } from './cni-lib.mjs';
import { cleanStale, cleanupOnSignals, cmdOut, connectPair, dieWith, intEnvWith, removeNamespaces, run, shortenConntrack, tuneConnectClient } from './bench-lib.mjs';

const die = dieWith('bench');
const intEnv = intEnvWith(die);

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const DIST = join(root, 'dist');
const NHI = join(DIST, 'nhi-cni');
const CNI_DIR = '/usr/lib/cni';
const HOST_LOCAL = join(CNI_DIR, 'host-local');
const GNU_TIME = '/usr/bin/time';
const CNI_PATH = `${DIST}:${CNI_DIR}`;
// The plugins get a plain PATH like a runtime's, not the caller's (which may
// hold many user directories that every PATH lookup would walk).
const PLUGIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NS_PREFIX = 'nhib-';
const NETNS_DIR = '/run/netns';
// iptables chains that portmap/firewall keep once created (shared, not per pod).
const SHARED_CHAINS = /^(CNI-HOSTPORT-(DNAT|SETMARK|MASQ)|CNI-FORWARD|CNI-ADMIN)$/;

function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8', env: { PATH: `${PLUGIN_PATH}:${process.env.PATH ?? ''}` } });
  return r.status === 0 ? r.stdout.trim() : '';
}

if (process.argv[2] === '--inner') {
  try {
    await inner(JSON.parse(process.env.BENCH_INNER));
  } catch (e) {
    console.error(`bench: ${e.message}`);
    process.exit(1);
  }
} else {
  await outer();
}

// ---------------------------------------------------------------- outer ----

async function outer() {
  const rounds = intEnv('BENCH_ROUNDS', 40, 1);
  const warmup = intEnv('BENCH_WARMUP', 3, 0);
  const rssRounds = intEnv('BENCH_RSS_ROUNDS', 5, 1);
  const straceRounds = intEnv('BENCH_STRACE_ROUNDS', 2, 0);
  const bursts = intEnv('BENCH_BURSTS', 3, 0);
  const burstSize = intEnv('BENCH_BURST_SIZE', 64, 1);
  const connectRuns = intEnv('BENCH_CONNECT_RUNS', 7, 0);
  const connectSecs = intEnv('BENCH_CONNECT_SECS', 2, 1);
  if (burstSize > 250) die('BENCH_BURST_SIZE must be <= 250');

  if (process.getuid?.() !== 0) die('must run as root (it creates network namespaces)');
  if (!existsSync(GNU_TIME)) {
    die(`${GNU_TIME} (GNU time) is missing; it measures peak RSS. Install it with: apt-get install -y time`);
  }
  for (const t of ['bridge', 'host-local', 'firewall', 'portmap']) {
    if (!existsSync(join(CNI_DIR, t))) die(`${join(CNI_DIR, t)} is missing (apt-get install -y containernetworking-plugins)`);
  }
  if (!existsSync(NHI) || !existsSync(join(DIST, 'nhi-ipam'))) die(`${NHI} or dist/nhi-ipam is missing; build it first: npm run build`);
  if (spawnSync('ip', ['-V']).status !== 0) die('iproute2 (`ip`) is missing');
  if (!which('nft')) die('nft is missing (nhi-cni masquerades with nftables): apt-get install -y nftables');
  if (!which('iptables')) {
    die('iptables is missing; the reference bridge (ipMasq), firewall and portmap need it (setups D and E).\n'
      + '  Install it with: apt-get install -y iptables   (or run scripts/deps.sh)');
  }
  const strace = which('strace');
  if (!strace) console.error('bench: strace not found: processes spawned by A, B, D, E are reported as n/a (apt-get install -y strace to measure them)');

  cleanStale(NS_PREFIX);

  const id = `${NS_PREFIX}${process.pid}`;
  const node = `${id}-node`;
  const tmp = mkdtempSync(join(tmpdir(), 'nhi-bench-'));
  let child;
  let childDone = Promise.resolve();
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    removeNamespaces((n) => n.startsWith(`${id}-`));
    rmSync(tmp, { recursive: true, force: true });
  };
  const signals = cleanupOnSignals('bench', {
    stop: () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    },
    done: () => childDone,
    cleanup,
  });

  try {
    run('ip', ['netns', 'add', node]);
    run('ip', ['-n', node, 'link', 'set', 'lo', 'up']);

    const setups = makeSetups(tmp);
    const emptySeas = buildEmptySeas(tmp);
    const params = {
      emptySeas,
      rounds, warmup, rssRounds, straceRounds: strace ? straceRounds : 0, strace, bursts, burstSize,
      connectRuns, connectSecs, setups, tmp, podPrefix: `${id}-pod-`, results: join(tmp, 'results.json'),
    };

    console.error(`bench: ${warmup} warm-up + ${rounds} measured rounds, ${rssRounds} RSS rounds, ${params.straceRounds} strace rounds `
      + `(setups interleaved), then ${bursts} bursts of ${burstSize} parallel ADDs/DELs per setup...`);
    child = spawn('ip', ['netns', 'exec', node, process.execPath, self, '--inner'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, BENCH_INNER: JSON.stringify(params) },
    });
    childDone = new Promise((res) => child.on('exit', (c, s) => res(c ?? (s ? 128 : 1))));
    const code = await childDone;
    if (signals.interrupted) return new Promise(() => {}); // the signal handler exits
    if (code !== 0) throw new Error(`measuring process failed (exit ${code})`);

    report(JSON.parse(readFileSync(params.results, 'utf8')), params);
  } catch (e) {
    console.error(`bench: FAILED: ${e.message}`);
    process.exitCode = 1;
  } finally {
    if (!signals.interrupted) cleanup();
  }
  // Then the policy bench (its own namespaces and cleanup); BENCH_POLICY=0 skips it.
  if (!signals.interrupted && process.env.BENCH_POLICY !== '0') {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'bench-policy.mjs')], { stdio: 'inherit' });
    if (r.status !== 0) process.exitCode = 1;
  }
}

/** The five setups as conflists (plus where to find their IPAM/plugin state). */
/**
 * The start-up yardstick (issue 12): two empty Node SEAs of the very Node the
 * plugin embeds, printing a VERSION answer and exiting: one with a code cache
 * (what `node --build-sea` gives by default), one with a start-up snapshot
 * (what nhi-cni uses, with nothing in it). The difference between the second
 * and dist/nhi-cni is what our own snapshot costs at start-up.
 */
function buildEmptySeas(tmp) {
  const dir = join(tmp, 'empty-sea');
  mkdirSync(dir, { recursive: true });
  const answer = 'process.stdout.write(JSON.stringify({ cniVersion: "1.1.0", supportedVersions: ["1.1.0"] }) + "\\n");';
  writeFileSync(join(dir, 'plain.js'), `${answer}\n`);
  writeFileSync(join(dir, 'snap.js'), `require('node:v8').startupSnapshot.setDeserializeMainFunction(() => { ${answer} });\n`);
  const out = {};
  for (const [key, main, extra] of [['codeCache', 'plain.js', { useCodeCache: true }], ['snapshot', 'snap.js', { useSnapshot: true }]]) {
    const cfg = join(dir, `${key}.json`);
    const output = join(dir, `empty-${key}`);
    writeFileSync(cfg, JSON.stringify({ main: join(dir, main), output, disableExperimentalSEAWarning: true, execArgvExtension: 'none', ...extra }));
    const r = spawnSync(process.execPath, ['--build-sea', cfg], { encoding: 'utf8', cwd: dir });
    if (r.status !== 0) throw new Error(`building the empty SEA (${key}) failed: ${r.stderr || r.stdout}`);
    out[key] = output;
  }
  return out;
}

function makeSetups(tmp) {
  const mk = (key, label, subnet, plugins, extra = {}) => {
    const k = key.toLowerCase();
    const network = `nhib-${k}`;
    const dataDir = join(tmp, `ipam-${k}`);
    const list = { cniVersion: '1.0.0', name: network, plugins: plugins(`nhib-br-${k}`, { ranges: [[{ subnet }]], dataDir }) };
    const bins = list.plugins.map((p) => {
      for (const dir of CNI_PATH.split(':')) if (existsSync(join(dir, p.type))) return join(dir, p.type);
      return die(`plugin ${p.type} not found in ${CNI_PATH}`);
    });
    return { key, label, subnet, network, dataDir, bridge: `nhib-br-${k}`, list, bins, types: list.plugins.map((p) => p.type), ...extra };
  };
  const bridge = (br, ipamType, ipam, ipMasq) => ({ type: 'bridge', bridge: br, isGateway: true, ipMasq, ipam: { type: ipamType, ...ipam } });
  return [
    mk('A', 'bridge + nhi-ipam', '10.201.0.0/16', (br, ipam) => [bridge(br, 'nhi-ipam', ipam, false)]),
    mk('B', 'bridge + host-local', '10.202.0.0/16', (br, ipam) => [bridge(br, 'host-local', ipam, false)]),
    mk('C', 'nhi-cni (1 plugin, masq)', '10.203.0.0/16', (br, ipam) => [{
      type: 'nhi-cni', bridge: br, isGateway: true, ipMasq: true, stateDir: join(tmp, 'state-c'),
      ipam: { type: 'host-local', ...ipam },
    }], { stateDir: join(tmp, 'state-c'), nhi: true }),
    mk('D', 'bridge + host-local, masq', '10.204.0.0/16', (br, ipam) => [bridge(br, 'host-local', ipam, true)]),
    mk('E', 'D + firewall + portmap', '10.205.0.0/16', (br, ipam) => [
      bridge(br, 'host-local', ipam, true),
      { type: 'firewall', backend: 'iptables' },
      { type: 'portmap', capabilities: { portMappings: true } },
    ], { portmap: true }),
    mk('F', 'C, spoofcheck off', '10.206.0.0/16', (br, ipam) => [{
      type: 'nhi-cni', bridge: br, isGateway: true, ipMasq: true, spoofcheck: false, stateDir: join(tmp, 'state-f'),
      ipam: { type: 'host-local', ...ipam },
    }], { stateDir: join(tmp, 'state-f'), nhi: true }),
  ];
}

function report(res, params) {
  const ms = (x) => (x === undefined ? 'n/a' : x.toFixed(1)).padStart(8);
  const mb = (kb) => (kb / 1024).toFixed(1).padStart(8);
  const machine = {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? '?',
    kernel: release(),
    node: process.version,
    nhiCni: cmdOut(NHI, ['--version']).split('\n')[0],
    cniPlugins: cmdOut('dpkg-query', ['-W', '-f=${Version}', 'containernetworking-plugins']),
    iptables: cmdOut('iptables', ['-V']),
  };
  const W = 30;
  console.log('');
  console.log(`machine: nproc=${machine.nproc}  cpu=${machine.cpu}  kernel=${machine.kernel}`);
  console.log(`         node ${machine.node} (bench runner; dist/nhi-cni embeds the pinned Node)  containernetworking-plugins ${machine.cniPlugins}  ${machine.iptables}`);
  console.log(`sequential: ${params.rounds} measured rounds (+${params.warmup} warm-up), setups interleaved, order alternating; `
    + `RSS from ${params.rssRounds} rounds under GNU time; spawns from ${params.straceRounds ? `${params.straceRounds} rounds under strace` : 'NHI_CNI_TRACE_EXEC only'}`);
  console.log(`parallel:   ${params.bursts} bursts per setup of ${params.burstSize} ADDs at once, then ${params.burstSize} DELs at once`);
  console.log('all times: wall ms of the whole chain as a runtime runs it; cniVersion 1.0.0');
  console.log('');

  const json = {
    machine, rounds: params.rounds, warmup: params.warmup, rssRounds: params.rssRounds, straceRounds: params.straceRounds,
    bursts: params.bursts, burstSize: params.burstSize, setups: {}, version: {}, leaks: res.leaks,
  };
  const head1 = `${'sequential'.padEnd(W)} ${'ADD p50'.padStart(8)} ${'ADD p99'.padStart(8)} ${'DEL p50'.padStart(8)} ${'DEL p99'.padStart(8)} ${'peak RSS'.padStart(8)} ${'spawn/ADD'.padStart(9)} ${'spawn/DEL'.padStart(9)}`;
  console.log(`${head1}\n${' '.repeat(W + 1)}${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'MB'.padStart(8)}`);
  console.log('-'.repeat(head1.length));
  const notes = [];
  for (const s of params.setups) {
    const r = res.setups[s.key];
    const add = stats(r.add);
    const del = stats(r.del);
    const rssAdd = Math.max(...r.rssAdd);
    const rssDel = Math.max(...r.rssDel);
    const peak = Math.max(rssAdd, rssDel);
    // Spawn counts: processes started by the chain's plugins (not the plugin
    // processes the runtime starts itself: one per plugin in the list).
    const st = r.straceAdd.length ? { add: spread(r.straceAdd), del: spread(r.straceDel) } : null;
    const tr = s.nhi ? { add: spread(r.traceAdd), del: spread(r.traceDel) } : null;
    const src = tr ?? st;
    const fmtSpawn = (x) => (x ? (x.min === x.max ? String(x.min) : `${x.min}-${x.max}`) : 'n/a').padStart(9);
    if (tr && st && (tr.add.min !== st.add.min || tr.add.max !== st.add.max || tr.del.min !== st.del.min || tr.del.max !== st.del.max)) {
      notes.push(`${s.key}: NHI_CNI_TRACE_EXEC count (ADD ${fmtSpawn(tr.add).trim()}, DEL ${fmtSpawn(tr.del).trim()}) differs from strace (ADD ${fmtSpawn(st.add).trim()}, DEL ${fmtSpawn(st.del).trim()})`);
    }
    console.log(`${`${s.key}. ${s.label}`.padEnd(W)} ${ms(add.median)} ${ms(add.p99)} ${ms(del.median)} ${ms(del.p99)} ${mb(peak)} ${fmtSpawn(src?.add)} ${fmtSpawn(src?.del)}`);
    const perPlugin = {};
    s.types.forEach((t, i) => { perPlugin[t] = { addMs: stats(r.perAdd[i]), delMs: stats(r.perDel[i]), peakRssKb: Math.max(...r.rssPer[i]) }; });
    const b = r.burst;
    json.setups[s.key] = {
      label: s.label,
      plugins: s.types,
      bridge: s.bridge,
      subnet: s.subnet,
      conflist: s.list,
      sequential: { addMs: add, delMs: del, peakRssKb: peak, peakRssAddKb: rssAdd, peakRssDelKb: rssDel, perPlugin },
      spawned: {
        perAdd: src?.add ?? null,
        perDel: src?.del ?? null,
        source: tr ? 'NHI_CNI_TRACE_EXEC' : st ? 'strace' : null,
        strace: st,
        pluginProcessesPerCall: s.types.length,
      },
      parallel: params.bursts ? {
        addWallMs: stats(b.addWall), delWallMs: stats(b.delWall), addMs: stats(b.add), delMs: stats(b.del),
      } : null,
    };
  }
  if (params.bursts) {
    console.log('');
    const head2 = `${`parallel x${params.burstSize}`.padEnd(W)} ${'ADD wall'.padStart(8)} ${'ADD p50'.padStart(8)} ${'ADD p99'.padStart(8)} ${'DEL wall'.padStart(8)} ${'DEL p50'.padStart(8)} ${'DEL p99'.padStart(8)}`;
    console.log(`${head2}\n${' '.repeat(W + 1)}${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)} ${'ms'.padStart(8)}`);
    console.log('-'.repeat(head2.length));
    for (const s of params.setups) {
      const p = json.setups[s.key].parallel;
      console.log(`${`${s.key}. ${s.label}`.padEnd(W)} ${ms(p.addWallMs.median)} ${ms(p.addMs.median)} ${ms(p.addMs.p99)} ${ms(p.delWallMs.median)} ${ms(p.delMs.median)} ${ms(p.delMs.p99)}`);
    }
    console.log(`(wall: median over ${params.bursts} bursts of the time from starting the first chain to the last one finishing; p50/p99 over all ${params.bursts * params.burstSize} chains)`);
  }

  console.log('');
  console.log(`${'VERSION (startup floor)'.padEnd(W)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${''.padStart(8)} ${''.padStart(8)} ${'RSS MB'.padStart(8)}`);
  console.log('-'.repeat(head1.length));
  // Where an ADD of C spends its time: each phase's median, in ms since the process started (its own clock).
  const phases = res.setups.C?.phasesAdd ?? [];
  if (phases.length) {
    const names = [...new Set(phases.flatMap((p) => Object.keys(p)))].sort((a, b) => stats(phases.map((p) => p[a] ?? 0)).median - stats(phases.map((p) => p[b] ?? 0)).median);
    json.addPhases = Object.fromEntries(names.map((n) => [n, stats(phases.filter((p) => n in p).map((p) => p[n])).median]));
    console.log(`ADD of C, median ms since the process started: ${names.map((n) => `${n} ${json.addPhases[n].toFixed(1)}`).join(', ')}`);
  }
  const versionBins = { nhi: NHI, hostLocal: HOST_LOCAL, emptyCodeCache: params.emptySeas.codeCache, emptySnapshot: params.emptySeas.snapshot };
  for (const [k, label] of [['nhi', 'dist/nhi-cni'], ['emptySnapshot', 'empty Node SEA, snapshot'], ['emptyCodeCache', 'empty Node SEA, code cache'], ['hostLocal', '/usr/lib/cni/host-local']]) {
    const v = stats(res.version[k]);
    const rss = Math.max(...res.version[`${k}Rss`]);
    console.log(`${label.padEnd(W)} ${ms(v.median)} ${ms(v.p99)} ${''.padStart(8)} ${''.padStart(8)} ${mb(rss)}`);
    json.version[k] = { binary: versionBins[k], ms: v, peakRssKb: rss };
  }
  const V = json.version;
  console.log(`VERSION p50: nhi-cni / empty snapshot SEA x${(V.nhi.ms.median / V.emptySnapshot.ms.median).toFixed(2)}, / empty code-cache SEA x${(V.emptyCodeCache.ms.median ? V.nhi.ms.median / V.emptyCodeCache.ms.median : 0).toFixed(2)} (issue 12's target: <= 1.2)`);
  if (res.memory) {
    const m = res.memory;
    json.memory = m;
    console.log(`memory of dist/nhi-cni at start-up (blocked on stdin, /proc/<pid>/status): RSS ${mb(m.VmRSS)} MB = file-backed ${mb(m.RssFile)} MB (${mb(m.binaryKb)} MB of it the executable's own pages: Node and the snapshot, shared and clean) + anonymous ${mb(m.RssAnon)} MB`);
  }

  const S = json.setups;
  const ratio = (x, y) => `ADD p50 x${(S[x].sequential.addMs.median / S[y].sequential.addMs.median).toFixed(2)}, `
    + `DEL p50 x${(S[x].sequential.delMs.median / S[y].sequential.delMs.median).toFixed(2)}, `
    + `peak RSS x${(S[x].sequential.peakRssKb / S[y].sequential.peakRssKb).toFixed(2)}`
    + (params.bursts ? `, burst ADD wall x${(S[x].parallel.addWallMs.median / S[y].parallel.addWallMs.median).toFixed(2)}` : '');
  console.log('');
  console.log(`A/B: ${ratio('A', 'B')}`);
  console.log(`C/D: ${ratio('C', 'D')}`);
  console.log(`C/E: ${ratio('C', 'E')}`);
  console.log(`C/F (the source check's cost on the CNI path): ${ratio('C', 'F')}`);
  if (res.connect?.C?.length) {
    const [c, f] = [stats(res.connect.C).median, stats(res.connect.F).median];
    console.log('');
    console.log(`TCP connects/s between two pods (sequential Node client, connect + destroy, ${params.connectSecs} s per run after 0.3 s warm-up, `
      + `median of ${params.connectRuns} runs, cases interleaved; server and client pinned to CPUs 0 and 1 where possible):`);
    console.log(`  C (source check on) ${Math.round(c)}   F (off) ${Math.round(f)}   C/F x${(c / f).toFixed(3)}   `
      + `runs C: ${res.connect.C.map(Math.round).join(' ')}; F: ${res.connect.F.map(Math.round).join(' ')}`);
    json.connect = { C: stats(res.connect.C), F: stats(res.connect.F), ratioCF: Math.round((c / f) * 1000) / 1000, runs: res.connect };
  }
  const e = S.E.sequential.perPlugin;
  console.log(`E per plugin, ADD p50: ${S.E.plugins.map((t) => `${t} ${e[t].addMs.median.toFixed(1)} ms`).join(', ')}; `
    + `DEL p50: ${S.E.plugins.map((t) => `${t} ${e[t].delMs.median.toFixed(1)} ms`).join(', ')}`);
  console.log('spawn/ADD, spawn/DEL: processes the chain\'s plugins start (IPAM delegate, ip, nft, iptables, ...), '
    + 'not counting the plugin processes themselves; C from NHI_CNI_TRACE_EXEC, others from strace');
  for (const n of notes) console.log(`note: ${n}`);
  for (const l of res.leaks) console.log(`LEAK: ${l}`);
  console.log(`BENCH_JSON ${JSON.stringify(json)}`);
}

function spread(xs) {
  if (!xs.length) return null;
  return { min: Math.min(...xs), max: Math.max(...xs), median: stats(xs).median, n: xs.length };
}

/** Median and nearest-rank percentiles (with fewer than 100 samples, p99 is the maximum). */
function stats(xs) {
  return summary(xs);
}

// ---------------------------------------------------------------- inner ----
// Runs inside the node netns. Throws (exit 1) on any failed check; the outer
// process cleans up.

async function inner(p) {
  const runDir = join(p.tmp, 'run');
  mkdirSync(runDir, { recursive: true });
  const env = { PATH: PLUGIN_PATH, NHI_CNI_RUN_DIR: runDir, NHI_CNI_TRACE_EXEC: '1' };
  const rssFile = join(p.tmp, 'rss');
  const straceFile = join(p.tmp, 'strace');
  let seq = 0;

  /** One plugin invocation, synchronous (sequential rounds): wall ms around spawn -> exit. */
  function invokeSync(bin, cniEnv, stdin, wrap) {
    const opts = { input: stdin, env: { ...env, ...cniEnv }, encoding: 'utf8', maxBuffer: 16 << 20 };
    let file = bin;
    let argv = [];
    if (wrap === 'time') {
      file = GNU_TIME;
      argv = ['-f', '%M', '-o', rssFile, bin];
    } else if (wrap === 'strace') {
      file = p.strace;
      argv = ['-f', '-qq', '-e', 'trace=execve', '-o', straceFile, '--', bin];
    }
    const t0 = process.hrtime.bigint();
    const r = spawnSync(file, argv, opts);
    const t1 = process.hrtime.bigint();
    if (r.error) throw new Error(`${bin}: ${r.error.message}`);
    const out = { ms: Number(t1 - t0) / 1e6, status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
    if (wrap === 'time') {
      // GNU time's %M is ru_maxrss from wait4(), in KiB; it includes the
      // plugin's reaped children (the kernel folds their maxrss in).
      const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
      out.rssKb = Number(lines[lines.length - 1]);
      if (!Number.isFinite(out.rssKb) || out.rssKb <= 0) throw new Error(`cannot parse GNU time output: ${lines.join(' | ')}`);
    } else if (wrap === 'strace') {
      out.spawned = countSpawned(readFileSync(straceFile, 'utf8'));
    }
    return out;
  }

  /** One plugin invocation, asynchronous (bursts): wall ms from spawn to close. */
  function invokeAsync(bin, cniEnv, stdin) {
    return new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const c = spawn(bin, [], { env: { ...env, ...cniEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
      c.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
      c.on('error', (e) => reject(new Error(`${bin}: ${e.message}`)));
      c.on('close', (status, signal) => {
        resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, status, signal, stdout, stderr });
      });
      c.stdin.on('error', () => { /* plugin exited without reading: its status tells */ });
      c.stdin.end(stdin);
    });
  }

  /**
   * Processes started under strace other than the traced plugin itself: pids
   * with a successful execve (nsenter -> ip is one process, exec'd twice).
   */
  function countSpawned(text) {
    const pids = new Set();
    let first;
    for (const line of text.split('\n')) {
      const m = /^(\d+)\s+(?:execve\(|<\.\.\. execve resumed>).* = 0$/.exec(line);
      if (!m) continue;
      first ??= m[1];
      pids.add(m[1]);
    }
    if (first === undefined) throw new Error(`strace saw no successful execve:\n${text.slice(0, 2000)}`);
    return pids.size - 1;
  }

  function fail(s, what, r) {
    throw new Error(`${s.key} (${s.label}) ${what} failed: exit ${r.status ?? r.signal}\n  stdout: ${r.stdout.trim()}\n  stderr: ${r.stderr.trim()}`);
  }

  const traceLines = (stderr) => (stderr.match(/^nhi-cni exec: /gm) ?? []).length;
  /** NHI_CNI_TRACE_EXEC's phase lines ("nhi-cni: <phase> at <ms> ms"), and when the last process ended, as {phase: ms since the plugin started}. */
  const tracePhases = (stderr) => {
    const out = {};
    for (const m of stderr.matchAll(/^nhi-cni: (.+) at ([\d.]+) ms$/gm)) out[m[1]] = Number(m[2]);
    const ends = [...stderr.matchAll(/^nhi-cni exec: .* ended at ([\d.]+) ms\)$/gm)].map((m) => Number(m[1]));
    if (ends.length) out['last process ended'] = Math.max(...ends);
    return out;
  };

  /** Config of one plugin as libcni builds it (buildOneConfig + injectRuntimeConfig). */
  const pluginConf = (list, plugin, prevResult, runtime) => JSON.stringify(pluginConfig(list, plugin, prevResult, runtime));

  /**
   * Runs a conflist verb as libcni does: ADD in order, chaining prevResult;
   * DEL in reverse, each with prevResult = the final ADD result. `call` runs
   * one plugin (sync or async). Returns the chain's wall ms and per-plugin data.
   */
  async function chain(s, verb, pod, addResult, call) {
    const cni = { CNI_COMMAND: verb, CNI_CONTAINERID: pod.containerId, CNI_NETNS: join(NETNS_DIR, pod.name), CNI_IFNAME: 'eth0', CNI_PATH };
    const idx = s.list.plugins.map((_, i) => i);
    if (verb === 'DEL') idx.reverse();
    const calls = new Array(idx.length);
    let prev = verb === 'ADD' ? undefined : addResult;
    const t0 = process.hrtime.bigint();
    for (const i of idx) {
      const r = await call(s.bins[i], cni, pluginConf(s.list, s.list.plugins[i], prev, pod.runtime));
      if (r.status !== 0) fail(s, `${verb} of ${s.types[i]} (plugin ${i + 1}/${idx.length})`, r);
      if (verb === 'ADD') {
        try {
          prev = JSON.parse(r.stdout);
        } catch {
          fail(s, `${verb} of ${s.types[i]} (result is not JSON)`, r);
        }
      }
      calls[i] = r;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    return {
      ms, result: verb === 'ADD' ? prev : undefined, calls,
      trace: calls.reduce((n, r) => n + traceLines(r.stderr), 0),
      phases: calls.length === 1 ? tracePhases(calls[0].stderr) : undefined,
      spawned: calls.reduce((n, r) => n + (r.spawned ?? 0), 0),
      rssKb: Math.max(...calls.map((r) => r.rssKb ?? 0)),
    };
  }

  function reservations(s) {
    try {
      return readdirSync(join(s.dataDir, s.network)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    } catch (e) {
      if (e.code === 'ENOENT') return [];
      throw e;
    }
  }

  function attachments(s) {
    if (!s.stateDir) return [];
    try {
      return readdirSync(join(s.stateDir, s.network, 'attachments')).filter((f) => f.endsWith('.json'));
    } catch (e) {
      if (e.code === 'ENOENT') return [];
      throw e;
    }
  }

  function newPod(s) {
    const n = ++seq;
    const k = s.key.toLowerCase();
    const pod = {
      name: `${p.podPrefix}${k}-${n}`,
      containerId: `nhibench${process.pid}${k}${n}`,
      runtime: s.portmap ? { portMappings: [{ hostPort: 20000 + (n % 40000), containerPort: 80, protocol: 'tcp' }] } : {},
    };
    run('ip', ['netns', 'add', pod.name]);
    return pod;
  }

  const delPod = (pod) => spawnSync('ip', ['netns', 'del', pod.name], { stdio: 'ignore' });

  /** Untimed checks after ADD: the result has an IP of the subnet, the pod has it, IPAM recorded it. */
  function verifyAdd(s, pod, result) {
    const cidr = result?.ips?.[0]?.address;
    const [a, b] = s.subnet.split('.');
    if (typeof cidr !== 'string' || !cidr.startsWith(`${a}.${b}.`)) {
      throw new Error(`${s.key}: ADD result has no IP in ${s.subnet}: ${JSON.stringify(result)}`);
    }
    const addrs = run('ip', ['-n', pod.name, '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
    if (!addrs.includes(` ${cidr} `)) throw new Error(`${s.key}: ${cidr} from the ADD result is not on eth0 in ${pod.name}: ${addrs.trim()}`);
    const ip = cidr.split('/')[0];
    if (!reservations(s).includes(ip)) throw new Error(`${s.key}: no reservation file for ${ip} in ${s.dataDir}`);
  }

  function verifyEmpty(s) {
    const left = reservations(s);
    if (left.length) throw new Error(`${s.key}: DEL left reservations behind: ${left.join(', ')}`);
    const att = attachments(s);
    if (att.length) throw new Error(`${s.key}: DEL left nhi-cni attachment records behind: ${att.join(', ')}`);
  }

  /** ADD a pod then DEL it, sequentially (mode: plain | time | strace). */
  async function podRound(s, mode) {
    const pod = newPod(s);
    try {
      const call = (bin, cni, stdin) => invokeSync(bin, cni, stdin, mode === 'plain' ? undefined : mode);
      const add = await chain(s, 'ADD', pod, undefined, call);
      verifyAdd(s, pod, add.result);
      const del = await chain(s, 'DEL', pod, add.result, call);
      verifyEmpty(s);
      return { add, del };
    } finally {
      delPod(pod);
    }
  }

  /** N pods: N chain ADDs at once, verify, then N chain DELs at once. */
  async function burst(s) {
    const pods = [];
    try {
      for (let i = 0; i < p.burstSize; i++) pods.push(newPod(s));
      let t0 = process.hrtime.bigint();
      const adds = await Promise.all(pods.map((pod) => chain(s, 'ADD', pod, undefined, invokeAsync)));
      const addWall = Number(process.hrtime.bigint() - t0) / 1e6;
      const ips = new Set();
      pods.forEach((pod, i) => {
        verifyAdd(s, pod, adds[i].result);
        ips.add(adds[i].result.ips[0].address);
      });
      if (ips.size !== pods.length) throw new Error(`${s.key}: ${pods.length} parallel ADDs got only ${ips.size} distinct addresses`);
      t0 = process.hrtime.bigint();
      const dels = await Promise.all(pods.map((pod, i) => chain(s, 'DEL', pod, adds[i].result, invokeAsync)));
      const delWall = Number(process.hrtime.bigint() - t0) / 1e6;
      verifyEmpty(s);
      return { addWall, delWall, add: adds.map((r) => r.ms), del: dels.map((r) => r.ms) };
    } finally {
      for (const pod of pods) delPod(pod);
    }
  }

  /**
   * What dist/nhi-cni holds once started: an ADD left blocked on its stdin
   * (an open pipe) after the snapshot is in, read from /proc, then killed.
   */
  async function startupMemory() {
    const child = spawn(NHI, [], { env: { ...env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'bench-memory', CNI_NETNS: '/nonexistent', CNI_IFNAME: 'eth0' }, stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
      let binaryKb = 0;
      let inBinary = false;
      for (const line of readFileSync(`/proc/${child.pid}/smaps`, 'utf8').split('\n')) {
        if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inBinary = line.trimEnd().endsWith(NHI);
        else if (inBinary && line.startsWith('Rss:')) binaryKb += Number(line.split(/\s+/)[1]);
      }
      return { VmRSS: kb('VmRSS'), RssAnon: kb('RssAnon'), RssFile: kb('RssFile'), binaryKb };
    } finally {
      child.kill('SIGKILL');
    }
  }

  function versionRound(first, withTime) {
    const out = {};
    const bins = [['nhi', NHI], ['hostLocal', HOST_LOCAL], ['emptyCodeCache', p.emptySeas.codeCache], ['emptySnapshot', p.emptySeas.snapshot]];
    if (!first) bins.reverse();
    for (const [k, bin] of bins) {
      const r = invokeSync(bin, { CNI_COMMAND: 'VERSION' }, '', withTime ? 'time' : undefined);
      if (r.status !== 0 || !r.stdout.includes('supportedVersions')) throw new Error(`VERSION of ${bin} failed: exit ${r.status}: ${r.stderr.trim()}`);
      out[k] = r;
    }
    return out;
  }

  const res = { setups: {}, version: { nhi: [], hostLocal: [], nhiRss: [], hostLocalRss: [], emptyCodeCache: [], emptyCodeCacheRss: [], emptySnapshot: [], emptySnapshotRss: [] }, leaks: [] };
  for (const s of p.setups) {
    res.setups[s.key] = {
      add: [], del: [], rssAdd: [], rssDel: [], traceAdd: [], traceDel: [], phasesAdd: [], straceAdd: [], straceDel: [],
      perAdd: s.types.map(() => []), perDel: s.types.map(() => []), rssPer: s.types.map(() => []),
      burst: { addWall: [], delWall: [], add: [], del: [] },
    };
  }

  // Sequential: warm-up, measured, RSS (GNU time), spawn count (strace) rounds.
  const measuredEnd = p.warmup + p.rounds;
  const rssEnd = measuredEnd + p.rssRounds;
  const total = rssEnd + p.straceRounds;
  for (let i = 0; i < total; i++) {
    const phase = i < p.warmup ? 'warm-up' : i < measuredEnd ? 'measured' : i < rssEnd ? 'rss' : 'strace';
    const mode = phase === 'rss' ? 'time' : phase === 'strace' ? 'strace' : 'plain';
    const order = i % 2 === 0 ? p.setups : [...p.setups].reverse();
    for (const s of order) {
      const r = await podRound(s, mode);
      const acc = res.setups[s.key];
      if (phase === 'measured') {
        acc.add.push(r.add.ms);
        acc.del.push(r.del.ms);
        r.add.calls.forEach((c, j) => acc.perAdd[j].push(c.ms));
        r.del.calls.forEach((c, j) => acc.perDel[j].push(c.ms));
        if (s.nhi) {
          acc.traceAdd.push(r.add.trace);
          acc.traceDel.push(r.del.trace);
          if (r.add.phases) acc.phasesAdd.push(r.add.phases);
        }
      } else if (phase === 'rss') {
        acc.rssAdd.push(r.add.rssKb);
        acc.rssDel.push(r.del.rssKb);
        r.add.calls.forEach((c, j) => acc.rssPer[j].push(Math.max(c.rssKb, r.del.calls[j].rssKb)));
      } else if (phase === 'strace') {
        acc.straceAdd.push(r.add.spawned);
        acc.straceDel.push(r.del.spawned);
      }
    }
    if (phase !== 'strace') {
      const v = versionRound(i % 2 === 0, phase === 'rss');
      for (const k of Object.keys(v)) {
        if (phase === 'measured') res.version[k].push(v[k].ms);
        else if (phase === 'rss') res.version[`${k}Rss`].push(v[k].rssKb);
      }
    }
    if ((i + 1) % 10 === 0 || i + 1 === total) process.stderr.write(`bench: round ${i + 1}/${total} (${phase})\n`);
  }

  res.memory = await startupMemory();

  // Parallel bursts, setups interleaved.
  for (let i = 0; i < p.bursts; i++) {
    const order = i % 2 === 0 ? p.setups : [...p.setups].reverse();
    for (const s of order) {
      const b = await burst(s);
      const acc = res.setups[s.key].burst;
      acc.addWall.push(b.addWall);
      acc.delWall.push(b.delWall);
      acc.add.push(...b.add);
      acc.del.push(...b.del);
    }
    process.stderr.write(`bench: burst ${i + 1}/${p.bursts} done\n`);
  }

  // The source check's cost on traffic: TCP connects/s between two pods of C
  // (checked) and two of F (not checked), runs interleaved C F F C ...
  if (p.connectRuns > 0) {
    const PORT = 8080;
    const children = new Set();
    const pairs = [];
    try {
      for (const s of p.setups.filter((x) => x.key === 'C' || x.key === 'F')) {
        const c = { s, pods: [newPod(s), newPod(s)], results: [], rates: [] };
        pairs.push(c);
        const call = (bin, cni, stdin) => invokeSync(bin, cni, stdin);
        for (const pod of c.pods) c.results.push((await chain(s, 'ADD', pod, undefined, call)).result);
        c.ip = c.results[0].ips[0].address.split('/')[0];
        tuneConnectClient(c.pods[1].name);
        c.pair = await connectPair(c.pods[0].name, c.pods[1].name, [PORT], children);
        if (!(await c.pair.client('probe', c.ip, PORT)).ok) throw new Error(`${s.key}: the client pod cannot reach the server pod`);
      }
      shortenConntrack('bench');
      for (let r = 0; r < p.connectRuns; r++) {
        for (const c of r % 2 === 0 ? pairs : [...pairs].reverse()) {
          const m = await c.pair.client('rate', c.ip, PORT, p.connectSecs);
          c.rates.push(m.n / (m.ms / 1000));
        }
        process.stderr.write(`bench: connect run ${r + 1}/${p.connectRuns} done\n`);
      }
      res.connect = Object.fromEntries(pairs.map((c) => [c.s.key, c.rates]));
    } finally {
      for (const c of pairs) {
        c.pair?.stop();
        for (const [i, pod] of c.pods.entries()) {
          if (c.results[i]) await chain(c.s, 'DEL', pod, c.results[i], (bin, cni, stdin) => invokeSync(bin, cni, stdin));
          delPod(pod);
        }
      }
      for (const ch of children) try { ch.kill('SIGKILL'); } catch { /* gone */ }
    }
    for (const c of pairs) verifyEmpty(c.s);
  }

  // Leak check: after all DELs no veth may be left in the node, and no
  // per-pod iptables chain (bridge ipMasq: CNI-<hash>, portmap: CNI-DN-<hash>).
  const veths = run('ip', ['-o', 'link', 'show', 'type', 'veth']).trim();
  if (veths) res.leaks.push(`veths left in the node netns: ${veths.split('\n').map((l) => l.split(':')[1]?.trim()).join(', ')}`);
  for (const table of ['nat', 'filter']) {
    const chains = run('iptables', ['-w', '-t', table, '-S']).split('\n')
      .map((l) => /^-N (\S+)/.exec(l)?.[1]).filter((c) => c && !SHARED_CHAINS.test(c));
    if (chains.length) res.leaks.push(`iptables ${table} chains left: ${chains.join(', ')}`);
  }
  writeFileSync(p.results, JSON.stringify(res));
}
