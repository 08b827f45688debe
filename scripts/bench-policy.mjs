// npm run bench:policy: what enforcing NetworkPolicy costs as the node fills up.
//   1. ADD latency of nhi-cni (direct invocation, cniVersion 1.1.0, a `policy`
//      section with a policy directory) with
//        a. 0 existing pods, no policies
//        b. 0 existing pods, 200 policies
//        c. 500 existing pods, 200 policies        target: c within +20 % of b
//        d. as c, but every pod a workload the node has not seen (an app label
//           of its own), so every ADD compiles: the first pod of a deployment
//        e. as c, but every pod with a label of its own that no policy selects
//           on (a StatefulSet's pod-name): still no compile, like c
//   2. Rules in `table inet nhi_policy` with 0, 500 and 1,000 pods under the
//      same 200 policies (rules follow policies and distinct profiles, not pods).
//   3. Sequential TCP connect rate between two real pods (client -> server,
//      allowed by policy) with only their two pods' elements loaded vs with
//      1,000 synthetic pods' elements loaded                target: within 5 %
//
// Existing pods are synthetic: entries written into the node's policy state
// file (<stateDir>/policy-state.json, format in src/policy/engine/store.ts; with no
// compile named, so the next ADD compiles and applies everything) with
// addresses in the pod subnet but outside the IPAM range the real ADDs use,
// identities over 20 apps x 10 namespaces. One real ADD (+ DEL) then compiles
// and applies everything, which is what every ADD does anyway.
//
// Namespaces and cleanup follow scripts/bench.mjs: the outer process (host
// namespaces) creates a temp dir and one "node" netns and owns all cleanup;
// it re-executes this script once as `ip netns exec <node> node ... --inner`,
// which measures from inside the node netns (no `ip netns exec` in timed
// calls). The inner process runs in its own process group, so the outer one
// can end it and everything it started (servers, clients in pod netns) at
// once. All traffic stays between the namespaces created here.
//
// Part 1 runs the cases interleaved in blocks (a b c, then c b a, ...); the
// table belongs to the node netns, so switching case deletes it and runs one
// untimed ADD+DEL that re-applies that case's whole state.
//
// Env: BENCH_POLICY_ROUNDS (32 measured ADDs per case), BENCH_POLICY_BLOCK (8
//      rounds per block), BENCH_POLICY_CONNECT_SECS (3), BENCH_POLICY_CONNECT_RUNS (9),
//      BENCH_POLICY_TRACE=1 (trace every measured ADD of part 1 and print, per
//      phase, the median time since the process started in cases b to e,
//      and the median duration of each program run: where the difference
//      goes), BENCH_KEEP_TMP=1
//      (keep the temp dir with the state files, and print its path).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, release, cpus, availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { summary } from './cni-lib.mjs';
import { cleanStale, cleanupOnSignals, cmdOut, connectPair, dieWith, intEnvWith, removeNamespaces, run, shortenConntrack, tuneConnectClient } from './bench-lib.mjs';

const die = dieWith('bench-policy');
const intEnv = intEnvWith(die);

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const DIST = join(root, 'dist');
const NHI = join(DIST, 'nhi-cni');
const PLUGIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NS_PREFIX = 'nhibp-';
const NETNS_DIR = '/run/netns';
const NETWORK = 'nhibp';
const BRIDGE = 'nhibp0';
const SUBNET = '10.90.0.0/16';
const RANGE = { start: '10.90.0.10', end: '10.90.0.250' }; // real ADDs; synthetic pods use 10.90.1.0 and up
const NAMESPACES = 10;
const APPS = 20;
const POLICIES = 200;
const EXISTING = 500;
const CONNECT_PODS = 1000;
const SERVER_PORT = 8080;
const DENIED_PORT = 8081;

// ---------------------------------------------------------------- outer ----

async function outer() {
  const rounds = intEnv('BENCH_POLICY_ROUNDS', 32, 1);
  const block = intEnv('BENCH_POLICY_BLOCK', 8, 1);
  const connectSecs = intEnv('BENCH_POLICY_CONNECT_SECS', 3, 1);
  const connectRuns = intEnv('BENCH_POLICY_CONNECT_RUNS', 9, 1);
  const trace = process.env.BENCH_POLICY_TRACE === '1';

  if (process.getuid?.() !== 0) die('must run as root (it creates network namespaces)');
  if (!existsSync(NHI)) die(`${NHI} is missing; build it first: npm run build`);
  if (spawnSync('ip', ['-V']).status !== 0) die('iproute2 (`ip`) is missing');
  if (spawnSync('nft', ['-v'], { env: { PATH: PLUGIN_PATH } }).status !== 0) die('nft is missing: apt-get install -y nftables');

  cleanStale(NS_PREFIX);
  const id = `${NS_PREFIX}${process.pid}`;
  const node = `${id}-node`;
  const tmp = mkdtempSync(join(tmpdir(), 'nhi-bench-policy-'));
  let child;
  let childDone = Promise.resolve();
  let cleaned = false;
  const killGroup = () => {
    // The inner process leads its own process group: it, the servers and the
    // clients it started (all in namespaces of this run) go at once.
    if (child?.pid) try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
  };
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    killGroup();
    removeNamespaces((n) => n.startsWith(`${id}-`));
    if (process.env.BENCH_KEEP_TMP) console.error(`kept ${tmp}`); else rmSync(tmp, { recursive: true, force: true });
  };
  const signals = cleanupOnSignals('bench-policy', { stop: killGroup, done: () => childDone, cleanup });

  try {
    run('ip', ['netns', 'add', node]);
    run('ip', ['-n', node, 'link', 'set', 'lo', 'up']);
    const params = { rounds, block, connectSecs, connectRuns, trace, tmp, podPrefix: `${id}-pod-`, results: join(tmp, 'results.json') };
    console.error(`bench-policy: part 1: ${rounds} ADDs per case in blocks of ${block}; part 3: ${connectRuns} x ${connectSecs} s connect runs per case...`);
    child = spawn('ip', ['netns', 'exec', node, process.execPath, self, '--inner'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      detached: true,
      env: { ...process.env, BENCH_INNER: JSON.stringify(params) },
    });
    childDone = new Promise((res) => child.on('exit', (c, s) => res(c ?? (s ? 128 : 1))));
    const code = await childDone;
    if (signals.interrupted) return new Promise(() => {}); // the signal handler exits
    if (code !== 0) throw new Error(`measuring process failed (exit ${code})`);
    report(JSON.parse(readFileSync(params.results, 'utf8')), params);
  } catch (e) {
    console.error(`bench-policy: FAILED: ${e.message}`);
    process.exitCode = 1;
  } finally {
    if (!signals.interrupted) cleanup();
  }
}

/** Median and nearest-rank percentiles. */
function stats(xs) {
  return summary(xs);
}

function report(res, params) {
  const machine = {
    nproc: availableParallelism(), cpu: cpus()[0]?.model ?? '?', kernel: release(), node: process.version,
    nhiCni: cmdOut(NHI, ['--version']).split('\n')[0], nft: cmdOut('nft', ['-v']),
  };
  const f1 = (x) => x.toFixed(1).padStart(9);
  console.log('');
  console.log(`machine: nproc=${machine.nproc}  cpu=${machine.cpu}  kernel=${machine.kernel}  ${machine.nft}`);
  console.log(`nhi-cni direct in a node netns, cniVersion 1.1.0, built-in host-local IPAM, ipMasq off; ${POLICIES} NetworkPolicies `
    + `over ${NAMESPACES} namespaces x ${APPS} apps; synthetic pods in the policy state file`);
  console.log('');
  const W = 34;
  const head = `${'1. ADD latency'.padEnd(W)} ${'p50'.padStart(9)} ${'p90'.padStart(9)} ${'min'.padStart(9)} ${'max'.padStart(9)}   n`;
  console.log(`${head}\n${' '.repeat(W + 1)}${'ms'.padStart(9)} ${'ms'.padStart(9)} ${'ms'.padStart(9)} ${'ms'.padStart(9)}`);
  console.log('-'.repeat(head.length));
  const json = { machine, params: { rounds: params.rounds, block: params.block, connectSecs: params.connectSecs, connectRuns: params.connectRuns }, add: {}, rules: res.rules, connect: {} };
  for (const c of res.cases) {
    const s = stats(c.add);
    json.add[c.key] = { label: c.label, existingPods: c.existing, policies: c.policies, addMs: s };
    console.log(`${`${c.key}. ${c.label}`.padEnd(W)} ${f1(s.median)} ${f1(s.p90)} ${f1(s.min)} ${f1(s.max)}   ${s.n}`);
  }
  const addRatio = json.add.c.addMs.median / json.add.b.addMs.median;
  const addPass = addRatio <= 1.2;
  json.add.ratioCB = Math.round(addRatio * 1000) / 1000;
  json.add.target = 'c p50 <= 1.20 x b p50';
  json.add.pass = addPass;
  console.log(`c/b ADD p50 x${addRatio.toFixed(2)} (p90 x${(json.add.c.addMs.p90 / json.add.b.addMs.p90).toFixed(2)}); target <= x1.20: ${addPass ? 'PASS' : 'FAIL'}`);

  console.log('');
  const head2 = `${`2. table inet nhi_policy (${POLICIES} pol.)`.padEnd(W)} ${'rules'.padStart(9)} ${'profiles'.padStart(9)} ${'sets'.padStart(9)} ${'vmap el.'.padStart(9)}`;
  console.log(`${head2}\n${'-'.repeat(head2.length)}`);
  for (const r of res.rules) {
    console.log(`${r.label.padEnd(W)} ${String(r.rules).padStart(9)} ${String(r.profiles).padStart(9)} ${String(r.sets).padStart(9)} ${String(r.vmapElems).padStart(9)}`);
  }
  const r500 = res.rules.find((r) => r.pods === EXISTING);
  const r1000 = res.rules.find((r) => r.pods === CONNECT_PODS + 2);
  console.log('(profiles: pr_ chains; vmap el.: elements of the eg4/in4 verdict maps, one per pod and isolated direction)');
  if (r500 && r1000) console.log(`rules ${EXISTING} vs ${CONNECT_PODS + 2} pods: ${r500.rules} vs ${r1000.rules} (${r500.rules === r1000.rules ? 'equal' : `${(((r1000.rules - r500.rules) / r500.rules) * 100).toFixed(1)} %`})`);

  console.log('');
  const head3 = `${'3. TCP connects, client -> server'.padEnd(W)} ${'conn/s'.padStart(9)} ${'runs'.padStart(36)}  ${'vmap el.'.padStart(9)}`;
  console.log(`${head3}\n${'-'.repeat(head3.length)}`);
  for (const c of res.connect) {
    const med = stats(c.rates).median;
    json.connect[c.key] = { label: c.label, pods: c.pods, ratesPerSec: c.rates, median: med, vmapElems: c.vmapElems, allowCounterPackets: c.allowPackets };
    console.log(`${`${c.key}. ${c.label}`.padEnd(W)} ${med.toFixed(0).padStart(9)} ${c.rates.map((x) => x.toFixed(0)).join(' / ').padStart(36)}  ${String(c.vmapElems).padStart(9)}`);
  }
  const cr = json.connect.b.median / json.connect.a.median;
  const crPass = Math.abs(1 - cr) <= 0.05;
  json.connect.ratioBA = Math.round(cr * 1000) / 1000;
  json.connect.target = 'b median within 5 % of a median';
  json.connect.pass = crPass;
  console.log(`b/a conn/s x${cr.toFixed(3)}; target within 5 %: ${crPass ? 'PASS' : 'FAIL'}`);
  console.log(`(sequential Node client, connect + destroy per connection, ${params.connectSecs} s per run after 0.3 s warm-up; median of ${params.connectRuns} runs, cases interleaved a b b a ...; server and client pinned to CPUs 0 and 1 where possible; `
    + `denied port ${DENIED_PORT} checked to time out in each case)`);
  console.log(`BENCH_JSON ${JSON.stringify(json)}`);
}

/**
 * From NHI_CNI_TRACE_EXEC=1 output: per phase ("nhi-cni: <phase> at <ms> ms",
 * numbers in parentheses dropped) the median time since the process started,
 * and per program ("nhi-cni exec: <program> ... (<ms> ms, ...)") the median
 * duration, side by side for the cases given.
 */
function printPhases(cases) {
  const median = (xs) => {
    const s = [...xs].sort((x, y) => x - y);
    return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
  };
  const rows = new Map();
  for (const [ci, c] of cases.entries()) {
    for (const text of c.traces ?? []) {
      for (const line of text.split('\n')) {
        let m = /^nhi-cni: (.+?)(?: \(.*\))? at ([\d.]+) ms$/.exec(line);
        let key;
        let v;
        if (m) [key, v] = [`at ${m[1]}`, Number(m[2])];
        else if ((m = /^nhi-cni exec: (\S+).* \(([\d.]+) ms, ended/.exec(line))) [key, v] = [`run ${m[1].split('/').pop()}`, Number(m[2])];
        else continue;
        if (!rows.has(key)) rows.set(key, cases.map(() => []));
        rows.get(key)[ci].push(v);
      }
    }
  }
  const W = 40;
  process.stderr.write(`bench-policy: phases of the measured ADDs (median ms; "at": since the process started, "run": duration)\n`);
  const diff = `${cases[1].key}-${cases[0].key}`;
  process.stderr.write(`  ${'phase'.padEnd(W)} ${cases.map((c) => `case ${c.key}`.padStart(9)).join(' ')} ${diff.padStart(9)}\n`);
  for (const [key, per] of rows) {
    const ms = per.map(median);
    const cell = (x) => (Number.isNaN(x) ? '-' : x.toFixed(1)).padStart(9);
    process.stderr.write(`  ${key.padEnd(W)} ${ms.map(cell).join(' ')} ${cell(ms[1] - ms[0])}\n`);
  }
}

// ------------------------------------------------------------- workload ----

const nsName = (i) => `ns-${String(i).padStart(2, '0')}`;
const appName = (i) => `app-${String(i).padStart(2, '0')}`;
const TIERS = ['frontend', 'backend', 'data', 'batch'];

function nsLabels(n) {
  return { team: `team-${n % 3}`, env: n % 2 ? 'prod' : 'staging', 'kubernetes.io/metadata.name': nsName(n) };
}

/** Identity of synthetic pod i: namespace i % 10, app (i / 10) % 20, so any 200 consecutive pods cover every (namespace, app). */
function syntheticIdentity(i) {
  const n = i % NAMESPACES;
  const a = Math.floor(i / NAMESPACES) % APPS;
  return {
    namespace: nsName(n),
    name: `syn-${i}`,
    labels: { app: appName(a), tier: TIERS[a % TIERS.length], role: a % 3 === 0 ? 'client' : 'worker' },
    namespaceLabels: nsLabels(n),
    ports: [
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090 + (a % 2), protocol: 'TCP' },
    ],
  };
}

/** Synthetic pods [from, from + count) as policy-state entries; addresses 10.90.1.0 and up. */
function syntheticPods(from, count) {
  const pods = {};
  for (let i = from; i < from + count; i++) {
    const ip = `10.90.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
    const containerId = `syn${i}`;
    pods[`${NETWORK}/${containerId}/eth0`] = { network: NETWORK, containerId, ifname: 'eth0', ips: [ip], identity: syntheticIdentity(i) };
  }
  return pods;
}

/**
 * 200 NetworkPolicies: a default-deny per namespace (10), the two that let
 * the connect-rate client reach the server (2), and 188 over (namespace, app)
 * pairs mixing podSelector, namespaceSelector (+ podSelector, matchExpressions),
 * ipBlock with except, numbered, ranged and named ports, ingress and egress.
 */
function policies() {
  const out = [];
  const np = (namespace, name, spec) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace }, spec });
  for (let n = 0; n < NAMESPACES; n++) out.push(np(nsName(n), 'default-deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }));
  out.push(np(nsName(0), 'bench-server-ingress', {
    podSelector: { matchLabels: { app: 'bench-server' } },
    policyTypes: ['Ingress'],
    ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { role: 'client' } } }], ports: [{ protocol: 'TCP', port: SERVER_PORT }] }],
  }));
  out.push(np(nsName(0), 'bench-client-egress', {
    podSelector: { matchLabels: { app: 'bench-client' } },
    policyTypes: ['Egress'],
    egress: [{ to: [{ podSelector: { matchLabels: { app: 'bench-server' } } }], ports: [{ protocol: 'TCP', port: SERVER_PORT }] }],
  }));
  for (let k = 0; out.length < POLICIES; k++) {
    const n = k % NAMESPACES;
    const a = Math.floor(k / NAMESPACES) % APPS;
    const subject = { matchLabels: { app: appName(a) } };
    const name = `p${k}-${appName(a)}`;
    const b = (k * 7) % 200;
    switch (k % 4) {
      case 0:
        out.push(np(nsName(n), name, {
          podSelector: subject,
          ingress: [
            { from: [{ podSelector: { matchLabels: { app: appName((a + 1) % APPS) } } }], ports: [{ protocol: 'TCP', port: 8080 }, { port: 'metrics' }] },
            { from: [{ podSelector: { matchLabels: { tier: 'frontend' } } }], ports: [{ port: 'http' }] },
          ],
        }));
        break;
      case 1:
        out.push(np(nsName(n), name, {
          podSelector: subject,
          policyTypes: ['Ingress'],
          ingress: [{
            from: [
              { namespaceSelector: { matchLabels: { team: `team-${k % 3}` } }, podSelector: { matchLabels: { tier: 'frontend' } } },
              { namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'In', values: ['prod'] }] } },
            ],
            ports: [{ protocol: 'TCP', port: 8000, endPort: 8100 }],
          }],
        }));
        break;
      case 2:
        out.push(np(nsName(n), name, {
          podSelector: subject,
          policyTypes: ['Egress'],
          egress: [
            { to: [{ ipBlock: { cidr: `172.${16 + (k % 16)}.0.0/16`, except: [`172.${16 + (k % 16)}.${b}.0/24`] } }], ports: [{ protocol: 'TCP', port: 443 }, { protocol: 'UDP', port: 53 }] },
            { to: [{ podSelector: { matchLabels: { app: appName((a + 3) % APPS) } } }], ports: [{ port: 'http' }] },
            { to: [{ namespaceSelector: { matchLabels: { env: 'prod' } }, podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['data', 'backend'] }] } }], ports: [{ protocol: 'TCP', port: 5432 }] },
          ],
        }));
        break;
      default:
        out.push(np(nsName(n), name, {
          podSelector: subject,
          policyTypes: ['Ingress', 'Egress'],
          ingress: [{
            from: [{ ipBlock: { cidr: `192.168.${b}.0/24` } }, { podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: [appName((a + 5) % APPS), appName((a + 6) % APPS)] }] } }],
            ports: [{ protocol: 'TCP', port: 5432 }],
          }],
          egress: [{ to: [{ namespaceSelector: {}, podSelector: { matchLabels: { role: 'client' } } }], ports: [{ protocol: 'TCP', port: 9090 }, { protocol: 'UDP', port: 514 }] }],
        }));
    }
  }
  return out;
}

// ---------------------------------------------------------------- inner ----

async function inner(p) {
  const runDir = join(p.tmp, 'run');
  const ipamDir = join(p.tmp, 'ipam');
  const emptyDir = join(p.tmp, 'policies-none');
  const polDir = join(p.tmp, 'policies');
  for (const d of [runDir, ipamDir, emptyDir, polDir]) mkdirSync(d, { recursive: true });
  const all = policies();
  for (let n = 0; n < NAMESPACES; n++) {
    const docs = all.filter((x) => x.metadata.namespace === nsName(n));
    writeFileSync(join(polDir, `${nsName(n)}.yaml`), docs.map((d) => stringify(d)).join('---\n'));
  }
  if (all.length !== POLICIES) throw new Error(`generated ${all.length} policies, not ${POLICIES}`);

  const env = { PATH: PLUGIN_PATH, NHI_CNI_RUN_DIR: runDir };
  let seq = 0;
  const children = new Set();

  function conf(stateDir, dir, identity) {
    return {
      cniVersion: '1.1.0', name: NETWORK, type: 'nhi-cni', bridge: BRIDGE, isGateway: true, ipMasq: false, stateDir,
      ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: SUBNET, rangeStart: RANGE.start, rangeEnd: RANGE.end }]] },
      policy: { dir },
      capabilities: { 'io.nhi-cni/workload': true },
      runtimeConfig: { 'io.nhi-cni/workload': identity },
    };
  }

  /** One nhi-cni call: wall ms around spawn -> exit. */
  function invoke(verb, pod, config, extraEnv = {}) {
    const cniEnv = { CNI_COMMAND: verb, CNI_CONTAINERID: pod.containerId, CNI_NETNS: join(NETNS_DIR, pod.name), CNI_IFNAME: 'eth0', CNI_PATH: DIST };
    const t0 = process.hrtime.bigint();
    const r = spawnSync(NHI, [], { input: JSON.stringify(config), env: { ...env, ...cniEnv, ...extraEnv }, encoding: 'utf8', maxBuffer: 16 << 20 });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.error) throw new Error(`${NHI}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`${verb} of ${pod.name} failed: exit ${r.status ?? r.signal}\n  stdout: ${r.stdout.trim()}\n  stderr: ${r.stderr.trim()}`);
    let result;
    if (verb === 'ADD') {
      try {
        result = JSON.parse(r.stdout);
      } catch {
        throw new Error(`ADD of ${pod.name}: result is not JSON: ${r.stdout.trim()}`);
      }
      if (!result.ips?.[0]?.address?.startsWith('10.90.0.')) throw new Error(`ADD of ${pod.name}: no address in ${RANGE.start}-${RANGE.end}: ${r.stdout.trim()}`);
    }
    return { ms, result, stderr: r.stderr };
  }

  function newPod(tag) {
    const n = ++seq;
    const pod = { name: `${p.podPrefix}${tag}-${n}`, containerId: `nhibp${process.pid}${tag}${n}` };
    run('ip', ['netns', 'add', pod.name]);
    return pod;
  }
  const delNetns = (pod) => spawnSync('ip', ['netns', 'del', pod.name], { stdio: 'ignore' });

  // fresh 'workload': an app label no pod had before, so the pod starts a new
  // workload (the node compiles); fresh 'label': a label of its own that no
  // policy selects on (as a StatefulSet's pod-name), which changes nothing.
  const podIdentity = (n, fresh) => ({
    namespace: nsName(3), name: `bench-${n}`,
    labels: { app: fresh === 'workload' ? `new-${n}` : appName(7), tier: TIERS[7 % TIERS.length], role: 'worker', ...(fresh === 'label' ? { 'statefulset.kubernetes.io/pod-name': `bench-${n}` } : {}) },
    namespaceLabels: { team: 'team-0', env: 'prod' },
  });

  /** ADD (timed) + DEL (untimed) of a throw-away pod; `probe` runs between them. */
  function round(c, probe, addEnv) {
    const pod = newPod(c.key);
    try {
      const config = conf(c.stateDir, c.dir, podIdentity(seq, c.fresh));
      const add = invoke('ADD', pod, config, addEnv);
      const probed = probe?.();
      invoke('DEL', pod, { ...config, prevResult: add.result });
      return { ms: add.ms, probed, stderr: add.stderr };
    } finally {
      delNetns(pod);
    }
  }

  function deleteTable() {
    spawnSync('nft', ['delete', 'table', 'inet', 'nhi_policy'], { stdio: 'ignore', env });
  }

  /** Rules, profile chains, sets and verdict-map elements of table inet nhi_policy. */
  function tableStats() {
    const items = JSON.parse(run('nft', ['-j', 'list', 'table', 'inet', 'nhi_policy'], { env })).nftables;
    let rules = 0;
    let profiles = 0;
    let sets = 0;
    let vmapElems = 0;
    for (const it of items) {
      if (it.rule) rules++;
      if (it.chain?.name?.startsWith('pr_')) profiles++;
      if (it.set) sets++;
      if (it.map && /^(eg|in)[46]$/.test(it.map.name)) vmapElems += it.map.elem?.length ?? 0;
    }
    return { rules, profiles, sets, vmapElems };
  }

  /**
   * Pods with no compile yet (policy-state.json without a "compiled" id): the
   * next ADD compiles and applies everything. Any earlier compile is removed.
   */
  function writeState(stateDir, pods) {
    mkdirSync(stateDir, { recursive: true });
    for (const f of readdirSync(stateDir)) if (f.startsWith('policy-compiled-')) rmSync(join(stateDir, f));
    writeFileSync(join(stateDir, 'policy-state.json'), JSON.stringify({ version: 2, pods }));
  }
  const readState = (stateDir) => JSON.parse(readFileSync(join(stateDir, 'policy-state.json'), 'utf8'));

  // ---- part 1 + 2: ADD latency, rules ----
  const cases = [
    { key: 'a', label: '0 pods, no policies', existing: 0, policies: 0, dir: emptyDir, stateDir: join(p.tmp, 'state-a'), add: [] },
    { key: 'b', label: `0 pods, ${POLICIES} policies`, existing: 0, policies: POLICIES, dir: polDir, stateDir: join(p.tmp, 'state-b'), add: [] },
    { key: 'c', label: `${EXISTING} pods, ${POLICIES} policies`, existing: EXISTING, policies: POLICIES, dir: polDir, stateDir: join(p.tmp, 'state-c'), add: [] },
    { key: 'd', label: `c, each pod a new workload`, existing: EXISTING, policies: POLICIES, dir: polDir, stateDir: join(p.tmp, 'state-d'), add: [], fresh: 'workload' },
    { key: 'e', label: `c, each pod a pod-name label`, existing: EXISTING, policies: POLICIES, dir: polDir, stateDir: join(p.tmp, 'state-e'), add: [], fresh: 'label' },
  ];
  // c's existing pods: only in the state file; its first ADD parses the
  // manifests (no fingerprint yet), compiles and applies all of them.
  writeState(cases[2].stateDir, syntheticPods(0, EXISTING));
  writeState(cases[3].stateDir, syntheticPods(0, EXISTING));
  writeState(cases[4].stateDir, syntheticPods(0, EXISTING));

  const rules = [];
  const blocks = Math.ceil(p.rounds / p.block);
  for (let bi = 0; bi < blocks; bi++) {
    const n = Math.min(p.block, p.rounds - bi * p.block);
    const order = bi % 2 === 0 ? cases : [...cases].reverse();
    for (const c of order) {
      deleteTable();
      // Untimed: re-applies the case's whole state (and warms the page cache).
      const stats = bi === 0 && (c.key === 'b' || c.key === 'c');
      const first = round(c, stats ? tableStats : undefined);
      if (stats) {
        const after = tableStats();
        rules.push({ label: `${c.existing} pods (after DEL)`, pods: c.existing, ...after });
        rules.push({ label: `${c.existing} + 1 pod (during ADD)`, pods: c.existing + 1, ...first.probed });
        const want = Object.keys(readState(c.stateDir).pods).length;
        if (want !== c.existing) throw new Error(`case ${c.key}: policy state holds ${want} pods, expected ${c.existing}`);
      }
      for (let i = 0; i < n; i++) {
        const r = round(c, undefined, p.trace ? { NHI_CNI_TRACE_EXEC: '1' } : undefined);
        c.add.push(r.ms);
        if (p.trace) (c.traces ??= []).push(r.stderr);
      }
    }
    process.stderr.write(`bench-policy: ADD block ${bi + 1}/${blocks} done\n`);
  }
  if (p.trace) printPhases(cases.slice(1));

  // ---- part 3: TCP connect rate ----
  deleteTable();
  const tState = join(p.tmp, 'state-t');
  const tPod = (tag, identity) => {
    const pod = newPod(tag);
    const config = conf(tState, polDir, identity);
    pod.config = config;
    pod.result = invoke('ADD', pod, config).result;
    pod.ip = pod.result.ips[0].address.split('/')[0];
    return pod;
  };
  const real = [];
  try {
    real.push(tPod('srv', { namespace: nsName(0), name: 'bench-server', labels: { app: 'bench-server', role: 'server' }, ports: [{ name: 'http', containerPort: SERVER_PORT, protocol: 'TCP' }] }));
    real.push(tPod('cli', { namespace: nsName(0), name: 'bench-client', labels: { app: 'bench-client', role: 'client' } }));
    const [srv, cli] = real;
    const realPods = Object.fromEntries(Object.entries(readState(tState).pods));
    if (Object.keys(realPods).length !== 2) throw new Error(`policy state holds ${Object.keys(realPods).length} pods after the two real ADDs`);

    // Client netns: enough local ports and TIME_WAIT reuse for tens of
    // thousands of sequential connections. Node netns (where conntrack runs,
    // for the policy's "ct state established"): short TIME_WAIT/CLOSE
    // timeouts, so runs do not fill the conntrack table for the next ones.
    tuneConnectClient(cli.name);
    shortenConntrack('bench-policy');

    const pair = await connectPair(srv.name, cli.name, [SERVER_PORT, DENIED_PORT], children);
    const client = (mode, port, secs = 0) => pair.client(mode, srv.ip, port, secs);

    const connectCases = [
      { key: 'a', label: 'server + client only', pods: 2, extra: {}, rates: [] },
      { key: 'b', label: `+ ${CONNECT_PODS} synthetic pods`, pods: CONNECT_PODS + 2, extra: syntheticPods(EXISTING, CONNECT_PODS), rates: [] },
    ];
    const ruleStats = {};
    // a b b a a b ...: interleaved, and a case is loaded only when it changes.
    let loaded;
    for (let r = 0; r < p.connectRuns; r++) {
      for (const c of r % 2 === 0 ? connectCases : [...connectCases].reverse()) {
        if (loaded === c) {
          c.vmapElems = tableStats().vmapElems;
        } else {
          // Load the case: its pods into the state, then one ADD+DEL applies
          // it all to a new table (counters restart; only their sum is used).
          writeState(tState, { ...realPods, ...c.extra });
          deleteTable();
          round({ key: 't', stateDir: tState, dir: polDir });
          loaded = c;
          c.vmapElems = tableStats().vmapElems;
        }
        if (!ruleStats[c.key]) {
          const ts = tableStats();
          ruleStats[c.key] = ts;
          const ok = await client('probe', SERVER_PORT);
          if (!ok.ok) throw new Error(`case ${c.key}: the client cannot reach the server on ${SERVER_PORT} (allowed by policy)`);
          const denied = await client('probe', DENIED_PORT);
          if (denied.ok) throw new Error(`case ${c.key}: the client reached the server on ${DENIED_PORT}, which no policy allows: enforcement is off`);
        }
        const m = await client('rate', SERVER_PORT, p.connectSecs);
        c.rates.push(m.n / (m.ms / 1000));
        process.stderr.write(`bench-policy: connect ${c.key} run ${r + 1}/${p.connectRuns}: ${Math.round(m.n / (m.ms / 1000))} conn/s\n`);
      }
    }
    const counters = JSON.parse(run('nft', ['-j', 'list', 'counters', 'table', 'inet', 'nhi_policy'], { env })).nftables;
    const allow = counters.filter((x) => x.counter?.name?.startsWith('a_')).reduce((s, x) => s + x.counter.packets, 0);
    if (allow === 0) throw new Error('no packet passed a policy allow rule: the connections bypassed the profiles');
    for (const c of connectCases) c.allowPackets = allow;
    rules.push({ label: `${CONNECT_PODS} + 2 pods (part 3)`, pods: CONNECT_PODS + 2, ...ruleStats.b });

    pair.stop();
    for (const pod of real.reverse()) invoke('DEL', pod, { ...pod.config, prevResult: pod.result });
    writeFileSync(p.results, JSON.stringify({
      cases: cases.map(({ key, label, existing, policies: pol, add }) => ({ key, label, existing, policies: pol, add })),
      rules,
      connect: connectCases.map(({ key, label, pods, rates, vmapElems, allowPackets }) => ({ key, label, pods, rates, vmapElems, allowPackets })),
    }));
  } finally {
    for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
    for (const pod of real) delNetns(pod);
  }
}


// Last, once every constant above is initialized.
if (process.argv[2] === '--inner') {
  try {
    await inner(JSON.parse(process.env.BENCH_INNER));
  } catch (e) {
    console.error(`bench-policy: ${e.message}`);
    process.exit(1);
  }
} else {
  await outer();
}
