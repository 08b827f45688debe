// Case generator of `npm run fuzz` (scripts/fuzz.mjs): a grammar of plausible
// CNI invocations - every verb, every plugin type, configs with IPAM ranges,
// policy sections (a manifest directory and inline manifests), prevResult,
// runtimeConfig, args, CNI_ARGS - then 0..n mutations of the config tree, the
// environment or the raw stdin bytes with hostile values.
//
// Cases carry placeholders, replaced when a case is run, so that a saved case
// replays anywhere: @SCRATCH@ (the case's scratch directory), @POD@ (the pod
// namespace the runner creates), @BIN@ (the CNI_PATH directory).
//
// Safety: every absolute path the generator produces starts with @SCRATCH@ (or
// names /proc/self/ns/net, the plugin's own node namespace, which the plugin
// must refuse). The hostile pools hold no absolute path: a mutation can make a
// path relative, longer, or wrong, never point it at the machine.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng = {
    next,
    int: (n) => Math.floor(next() * n),
    range: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    /** Picks from [[weight, value], ...]. */
    weighted: (pairs) => {
      const total = pairs.reduce((s, [w]) => s + w, 0);
      let x = next() * total;
      for (const [w, v] of pairs) if ((x -= w) < 0) return v;
      return pairs[pairs.length - 1][1];
    },
    hex: (n) => Array.from({ length: n }, () => '0123456789abcdef'[Math.floor(next() * 16)]).join(''),
  };
  return rng;
}

/** The seed of case `index` of a run: each case reproducible alone, and runs of different seeds unrelated. */
export function caseSeed(seed, index) {
  const mix = (x) => {
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    return (x ^ (x >>> 16)) >>> 0;
  };
  return mix((mix(seed >>> 0) + Math.imul(index + 1, 0x9e3779b1)) >>> 0);
}

export const VERBS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'];
const CNI_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

// ---- hostile values -------------------------------------------------------

const CONTROL = ['\n', '\r', '\t', '\u0007', '\u001b[31m', '\u007f', '\u0085', '\u2028'];
export const HOSTILE_STRINGS = [
  '', ' ', '.', '..', '../..', 'a/../b', 'x/y', './x', '-', '_', '-rf',
  'a'.repeat(15), 'a'.repeat(16), 'a'.repeat(64), 'a'.repeat(212), 'a'.repeat(255), 'a'.repeat(256), 'a'.repeat(4096),
  'x\u0000y', '\u0000', 'eth0\u0000', ...CONTROL.map((c) => `a${c}b`),
  'ü', 'ßtraße', '名前', '\u202eevil', '😀', '\ud800', 'e\u0301', 'İ',
  'a;b=c', 'IgnoreUnknown=1', '=', ';', '"', "'", '\\', '{', '}', '${x}', '$(true)', '`true`', '%s%n',
  'nft { flush ruleset }', 'comment "x"', '*', '?', '[', 'eth0', 'lo', 'nhi0', 'veth0123abcd',
  '1e309', '-1', 'NaN', 'true', 'null', '0x10', '010', '10.0.0.1', '10.0.0.0/33', '::ffff:10.0.0.1', 'fe80::1%eth0',
  '256.1.1.1', '10.1.0.0/8', 'ff02::1/128', '0.0.0.0/0', '::/0',
];
const HOSTILE_NUMBERS = [-1, 0, 1, 67, 68, 65535, 65536, 1.5, -0.5, 2 ** 31, 2 ** 32, 2 ** 53 + 2, 1e21, 1e308, -1e308, Number.MIN_VALUE];

// Deeply nested values are kept as a marker string until the document is
// serialized (JSON.stringify itself would overflow the stack on them).
const DEEP = '\u0001deep:';

function deep(depth, kind) {
  return `${DEEP}${depth}:${kind}`;
}

function serialize(config) {
  const text = JSON.stringify(config) ?? '';
  return text.replace(/"\\u0001deep:(\d+):(array|object)"/g, (_, d, kind) => {
    const n = Number(d);
    return kind === 'array' ? `${'['.repeat(n)}${']'.repeat(n)}` : `${'{"a":'.repeat(n)}{}${'}'.repeat(n)}`;
  });
}

export function hostileValue(rng) {
  return rng.weighted([
    [6, () => rng.pick(HOSTILE_STRINGS)],
    [2, () => rng.pick(HOSTILE_NUMBERS)],
    [1, () => rng.pick([true, false, null])],
    [1, () => rng.pick([[], {}, [null], [''], { '': '' }, { __proto__x: 1 }, { constructor: 'x' }])],
    [1, () => deep(rng.pick([50, 1000, 5000]), rng.pick(['array', 'object']))],
    [1, () => Array.from({ length: rng.pick([100, 10000]) }, (_, i) => `10.${i >> 8 & 255}.${i & 255}.0/24`)],
  ])();
}

function mutateString(rng, s) {
  return rng.weighted([
    [3, () => s + rng.pick(HOSTILE_STRINGS)],
    [2, () => `${s}/${rng.pick(['..', '../..', 'x\u0000', 'a'.repeat(255), 'a'.repeat(256), ' ', '\n'])}`],
    [2, () => s.slice(0, rng.int(s.length + 1)) + rng.pick(['\u0000', ...CONTROL, 'ü', '..']) + s.slice(rng.int(s.length + 1))],
    [1, () => s.repeat(rng.pick([2, 20, 200])).slice(0, rng.pick([255, 256, 1000, 5000]))],
    [1, () => s.toUpperCase()],
    [1, () => ''],
  ])();
}

// ---- grammar --------------------------------------------------------------

let examples;
/** The example manifests as objects (inline policies) and texts (a policy dir). */
function loadExamples(root) {
  if (examples) return examples;
  const dir = join(root, 'examples', 'policies');
  const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && !f.includes('l7')).sort();
  examples = { texts: {}, objects: [] };
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8');
    examples.texts[f] = text;
    for (const d of parseAllDocuments(text)) {
      const o = d.toJSON();
      if (o) examples.objects.push(o);
    }
  }
  return examples;
}

const WORKLOADS = [
  { namespace: 'payments', labels: { app: 'payment-service' }, ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] },
  { namespace: 'payments', labels: { app: 'payments-db' }, ports: [{ name: 'pg', containerPort: 5432 }] },
  { namespace: 'payments', labels: { app: 'reporting' } },
  { namespace: 'ml', labels: { app: 'training-data' } },
  { namespace: 'ci', labels: { stage: 'build' } },
  { namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' }, serviceAccount: 'coredns' },
];

function subnet4(rng) {
  return { net: `10.${rng.range(1, 254)}.${rng.range(0, 255)}`, prefix: rng.pick([24, 24, 24, 28, 30, 16]) };
}

function rangeSet(rng, fam) {
  if (fam === 6) {
    const p = `fd${rng.hex(2)}:${rng.hex(4)}::`;
    return [{ subnet: `${p}/64`, ...(rng.chance(0.2) ? { gateway: `${p}1` } : {}) }];
  }
  const { net, prefix } = subnet4(rng);
  const base = prefix === 16 ? `${net.split('.').slice(0, 2).join('.')}.0.0` : `${net}.0`;
  const r = { subnet: `${base}/${prefix}` };
  if (prefix === 24 && rng.chance(0.3)) {
    r.rangeStart = `${net}.${rng.range(2, 100)}`;
    r.rangeEnd = `${net}.${rng.range(100, 254)}`;
  }
  if (prefix === 24 && rng.chance(0.15)) r.gateway = `${net}.1`;
  return [r];
}

function ipamSection(rng, type) {
  const ipam = { type };
  const sets = [rangeSet(rng, 4)];
  if (rng.chance(0.3)) sets.push(rangeSet(rng, 6));
  if (rng.chance(0.15)) {
    Object.assign(ipam, sets[0][0]); // the legacy single range
    if (sets.length > 1) ipam.ranges = sets.slice(1);
  } else ipam.ranges = sets;
  if (rng.chance(0.4)) ipam.routes = [{ dst: '0.0.0.0/0' }, ...(sets.length > 1 ? [{ dst: '::/0' }] : [])];
  if (rng.chance(0.9)) ipam.dataDir = '@SCRATCH@/data';
  if (rng.chance(0.15)) ipam.resolvConf = '@SCRATCH@/resolv.conf';
  return { ipam, sets };
}

function workload(rng) {
  const w = structuredClone(rng.pick(WORKLOADS));
  return { name: `pod-${rng.hex(4)}`, ...w };
}

function policySection(rng, files) {
  const ex = loadExamples(files.root);
  const p = {};
  if (rng.chance(0.5)) {
    p.dir = '@SCRATCH@/policies';
    const names = Object.keys(ex.texts);
    for (const n of names.filter(() => rng.chance(0.6))) {
      let text = ex.texts[n];
      if (rng.chance(0.15)) text = mutateString(rng, text.slice(0, rng.int(text.length)));
      files.files[`policies/${n}`] = text;
    }
  }
  if (rng.chance(0.6) || !p.dir) p.manifests = ex.objects.filter(() => rng.chance(0.4)).map((o) => structuredClone(o));
  if (rng.chance(0.2)) p.audit = rng.chance(0.5);
  if (rng.chance(0.1)) p.auditNamespaces = ['payments'];
  if (rng.chance(0.1)) p.auditPolicies = ['payments/default-deny'];
  return p;
}

function prevResult(rng, version, sets) {
  const ips = sets.map((s) => {
    const sub = s[0].subnet;
    const [a] = sub.split('/');
    const addr = a.includes(':') ? `${a}5/64` : `${a.split('.').slice(0, 3).join('.')}.5/${sub.split('/')[1]}`;
    return { address: addr, interface: 2 };
  });
  if (version === '0.1.0' || version === '0.2.0') {
    return { cniVersion: version, ip4: { ip: ips[0].address } };
  }
  return {
    cniVersion: version,
    interfaces: [{ name: 'nhi0' }, { name: `veth${rng.hex(8)}` }, { name: 'eth0', sandbox: '@POD@' }],
    ips,
    ...(rng.chance(0.3) ? { routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['10.0.0.10'] } } : {}),
  };
}

function containerId(rng) {
  return rng.weighted([
    [10, () => rng.hex(rng.pick([8, 12, 64]))],
    [1, () => `c${rng.hex(254)}`],
    [1, () => `c-${'x'.repeat(200)}.${rng.hex(8)}`],
  ])();
}

function networkName(rng) {
  return rng.weighted([
    [12, () => `fz${rng.hex(4)}`],
    [1, () => `net-${rng.hex(4)}.${rng.pick(['a', 'b_c', 'd-e'])}`],
    [1, () => `n${'a'.repeat(rng.range(200, 254))}`],
  ])();
}

function cniArgs(rng, type, sets) {
  const parts = [];
  if (rng.chance(0.8)) parts.push('IgnoreUnknown=1');
  if (rng.chance(0.5)) parts.push('K8S_POD_NAMESPACE=payments', `K8S_POD_NAME=pod-${rng.hex(4)}`);
  if (rng.chance(0.2)) parts.push(`K8S_POD_INFRA_CONTAINER_ID=${rng.hex(64)}`);
  if (type !== 'nhi-policy' && rng.chance(0.1)) parts.push(`IP=${sets[0][0].subnet.split('/')[0].replace(/\.0$/, '.77').replace(/::$/, '::77')}`);
  if (type === 'nhi-cni' && rng.chance(0.1)) parts.push(`MAC=0a:58:${rng.hex(2)}:${rng.hex(2)}:${rng.hex(2)}:${rng.hex(2)}`);
  if (rng.chance(0.05)) parts.push('Unknown=1');
  return parts.join(';');
}

/**
 * One plausible invocation, before mutation: { binary, env, config, files }.
 * `root` is the repository (for the example manifests).
 */
function grammar(rng, root) {
  const verb = rng.weighted([[35, 'ADD'], [20, 'DEL'], [15, 'CHECK'], [12, 'GC'], [10, 'STATUS'], [5, 'VERSION'], [3, rng.pick(['add', 'FROB', ''])]]);
  const type = rng.weighted([[60, 'nhi-cni'], [25, 'nhi-ipam'], [15, 'nhi-policy']]);
  const version = verb === 'GC' || verb === 'STATUS'
    ? rng.weighted([[9, '1.1.0'], [1, rng.pick(CNI_VERSIONS)]])
    : verb === 'CHECK'
      ? rng.weighted([[8, rng.pick(['0.4.0', '1.0.0', '1.1.0'])], [1, rng.pick(CNI_VERSIONS)]])
      : rng.weighted([[8, rng.pick(['1.0.0', '1.1.0'])], [3, rng.pick(CNI_VERSIONS)], [1, undefined]]);
  const files = { root, files: {} };
  const config = { ...(version === undefined ? {} : { cniVersion: version }), name: networkName(rng) };
  let sets;
  if (type === 'nhi-cni') {
    config.type = 'nhi-cni';
    if (rng.chance(0.5)) config.bridge = `fzb${rng.hex(4)}`;
    if (rng.chance(0.5)) config.isGateway = true;
    if (rng.chance(0.2)) config.isDefaultGateway = true;
    if (rng.chance(0.5)) config.ipMasq = true;
    if (rng.chance(0.15)) config.mtu = rng.pick([1280, 1400, 1500, 9000]);
    if (rng.chance(0.1)) config.hairpinMode = true;
    if (rng.chance(0.05)) config.promiscMode = true;
    if (rng.chance(0.2)) config.macspoofchk = true;
    if (rng.chance(0.1)) config.dns = { nameservers: ['10.96.0.10'], search: ['svc.cluster.local'] };
    config.stateDir = '@SCRATCH@/state';
    const ipam = ipamSection(rng, rng.pick(['host-local', 'nhi-ipam']));
    config.ipam = ipam.ipam;
    sets = ipam.sets;
    if (rng.chance(0.3)) config.policy = policySection(rng, files);
  } else if (type === 'nhi-ipam') {
    config.type = rng.pick(['nhi-ipam', 'bridge']);
    const ipam = ipamSection(rng, 'nhi-ipam');
    config.ipam = ipam.ipam;
    sets = ipam.sets;
  } else {
    config.type = 'nhi-policy';
    config.stateDir = '@SCRATCH@/state';
    config.policy = policySection(rng, files);
    sets = [rangeSet(rng, 4)];
  }
  if (rng.chance(type === 'nhi-policy' ? 0.8 : 0.3)) {
    config.capabilities = { 'io.nhi-cni/workload': true };
    config.runtimeConfig = { 'io.nhi-cni/workload': workload(rng) };
  }
  if (type !== 'nhi-policy' && rng.chance(0.1)) (config.runtimeConfig ??= {}).ips = [sets[0][0].subnet.replace(/\.0\//, '.66/').replace(/::\//, '::66/')];
  if (type === 'nhi-cni' && rng.chance(0.05)) (config.runtimeConfig ??= {}).mac = `0a:58:${rng.hex(2)}:00:00:${rng.hex(2)}`;
  if (rng.chance(0.1)) config.args = { cni: { labels: [{ key: 'tier', value: 'db' }] } };
  if (rng.chance(0.1)) config.log = { level: rng.pick(['debug', 'info', 'warn']), file: '@SCRATCH@/log/nhi.log' };
  const wantsPrev = type === 'nhi-policy' ? verb !== 'GC' : verb === 'CHECK' || (verb === 'DEL' && rng.chance(0.5));
  if (wantsPrev && version !== undefined) config.prevResult = prevResult(rng, version ?? '0.1.0', sets);
  if (verb === 'GC') {
    const valid = rng.chance(0.7) ? [{ containerID: rng.hex(12), ifname: 'eth0' }] : [];
    if (rng.chance(0.9)) config['cni.dev/valid-attachments'] = valid;
    if (rng.chance(0.5)) config['cni.dev/attachments'] = valid;
  }
  if (files.files['policies/payments.yaml'] === undefined && config.policy?.dir) files.files['policies/.keep'] = '';
  if (config.ipam?.resolvConf) files.files['resolv.conf'] = 'nameserver 10.96.0.10\nsearch svc.cluster.local\noptions ndots:5\n';

  const env = { CNI_COMMAND: verb, CNI_PATH: '@BIN@', NHI_CNI_RUN_DIR: '@SCRATCH@/run' };
  if (!['GC', 'STATUS', 'VERSION'].includes(verb) || rng.chance(0.1)) {
    env.CNI_CONTAINERID = containerId(rng);
    env.CNI_IFNAME = rng.weighted([[10, 'eth0'], [2, 'net1'], [1, `e${rng.hex(14)}`]]);
    env.CNI_NETNS = verb === 'DEL' && rng.chance(0.3) ? '' : '@POD@';
  } else if (rng.chance(0.5)) {
    Object.assign(env, { CNI_CONTAINERID: '', CNI_NETNS: '', CNI_IFNAME: '', CNI_ARGS: '' });
  }
  if (rng.chance(0.7)) env.CNI_ARGS = cniArgs(rng, type, sets);
  if (rng.chance(0.05)) env.NHI_CNI_LOG_LEVEL = rng.pick(['debug', 'info', 'error']);
  if (rng.chance(0.05)) env.NHI_CNI_LOG_FILE = '@SCRATCH@/log/env.log';
  return { binary: type, env, config, files: files.files };
}

// ---- mutation -------------------------------------------------------------

/** Every (parent, key) of a JSON tree, depth-limited. */
function slots(v, out = [], depth = 0) {
  if (depth > 12 || v === null || typeof v !== 'object') return out;
  for (const k of Array.isArray(v) ? v.keys() : Object.keys(v)) {
    out.push([v, k]);
    slots(v[k], out, depth + 1);
  }
  return out;
}

// Keys worth inserting: typos of real keys, prototype names, the CNI reserved ones.
const EXTRA_KEYS = ['dirs', 'Dir', 'ipmasq', 'statedir', 'dataDir', '__proto__', 'constructor', 'prototype', 'cni.dev/x', 'runtimeConfig', 'prevResult', 'policy', 'log', 'level', 'file', 'manifests', 'name', 'type', ''];

function mutateTree(rng, config) {
  const all = slots(config);
  if (all.length === 0 || rng.chance(0.05)) return hostileValue(rng); // the whole document
  const [parent, key] = rng.pick(all);
  const cur = parent[key];
  rng.weighted([
    [5, () => { parent[key] = typeof cur === 'string' && rng.chance(0.7) ? mutateString(rng, cur) : hostileValue(rng); }],
    [2, () => { if (Array.isArray(parent)) parent.splice(key, 1); else delete parent[key]; }],
    [2, () => {
      const obj = cur !== null && typeof cur === 'object' && !Array.isArray(cur) ? cur : parent;
      if (Array.isArray(obj)) obj.push(hostileValue(rng));
      else Object.defineProperty(obj, rng.pick(EXTRA_KEYS), { value: hostileValue(rng), enumerable: true, configurable: true, writable: true });
    }],
    [1, () => { parent[key] = typeof cur === 'number' ? rng.pick(HOSTILE_NUMBERS) : typeof cur === 'boolean' ? rng.pick(['true', 1, null]) : [cur]; }],
  ])();
  return config;
}

const ENV_KEYS = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH', 'NHI_CNI_RUN_DIR', 'NHI_CNI_LOG_LEVEL', 'NHI_CNI_LOG_FILE', 'CNI_NETNS_OVERRIDE'];
// CNI_NETNS values a mutation may choose: never another real namespace.
const NETNS_VALUES = ['', '@POD@', '@POD@/', '@POD@/..', '@SCRATCH@/no-such-netns', '@SCRATCH@', '@SCRATCH@/state', '/proc/self/ns/net', 'pod', './pod', '@POD@\n'];

function mutateEnv(rng, env) {
  const key = rng.weighted([[8, () => rng.pick(ENV_KEYS)], [1, () => rng.pick(['CNI_ARGS', 'CNI_COMMAND'])]])();
  const cur = env[key];
  rng.weighted([
    [2, () => { delete env[key]; }],
    [4, () => {
      if (key === 'CNI_NETNS') env[key] = rng.pick(NETNS_VALUES);
      else if (key === 'CNI_COMMAND') env[key] = rng.pick([...VERBS, 'add', 'del ', 'ADD\n', 'VERSIO', '']);
      else if (key === 'CNI_NETNS_OVERRIDE') env[key] = rng.pick(['1', 'true', '0']);
      else if (key === 'NHI_CNI_RUN_DIR' || key === 'NHI_CNI_LOG_FILE') env[key] = cur && rng.chance(0.7) ? mutateString(rng, cur) : rng.pick(HOSTILE_STRINGS);
      else env[key] = cur !== undefined && rng.chance(0.5) ? mutateString(rng, cur) : rng.pick(HOSTILE_STRINGS);
    }],
    [1, () => { env.CNI_ARGS = rng.pick(['K', 'K=', '=V', 'a=b=c', ';;', 'IgnoreUnknown=0;X=1', 'IgnoreUnknown=true;IP=10.0.0.300', 'IP=::1;IP=::2', `K8S_POD_NAMESPACE=${'a'.repeat(300)}`, 'MAC=ff:ff:ff:ff:ff:ff']); }],
  ])();
  // An environment string cannot hold NUL (execve): the byte is dropped.
  for (const k of Object.keys(env)) if (typeof env[k] === 'string') env[k] = env[k].replaceAll('\0', '');
  return env;
}

function mutateBytes(rng, bytes) {
  return rng.weighted([
    [2, () => bytes.subarray(0, rng.int(bytes.length))],
    [2, () => { const b = Buffer.from(bytes); if (b.length) b[rng.int(b.length)] = rng.int(256); return b; }],
    [1, () => Buffer.concat([bytes, Buffer.from(rng.pick(['\u0000', '{}', ' x', '\xff\xfe', '\n{"name":"x"}']), 'latin1')])],
    [1, () => Buffer.from([0xef, 0xbb, 0xbf, ...bytes])],
    [1, () => Buffer.alloc(0)],
    [1, () => Buffer.concat([bytes.subarray(0, -1), Buffer.from(`,"pad":"${'p'.repeat((1 << 20) + rng.int(2))}"}`)])],
  ])();
}

/**
 * Case `index` of the run seeded `seed`: the grammar's invocation, then
 * mutations. Returns { binary, env, stdin (string) | stdinBase64, files, mutations }.
 */
export function generateCase(seed, index, root) {
  const rng = makeRng(caseSeed(seed, index));
  const g = grammar(rng, root);
  let config = g.config;
  const n = rng.weighted([[40, 0], [30, 1], [20, 2], [7, 3], [3, 6]]);
  const mutations = [];
  let rawBytes = false;
  for (let i = 0; i < n; i++) {
    const what = rng.weighted([[70, 'config'], [25, 'env'], [5, 'bytes']]);
    mutations.push(what);
    if (what === 'config') config = mutateTree(rng, config);
    else if (what === 'env') mutateEnv(rng, g.env);
    else rawBytes = true;
  }
  let stdin = Buffer.from(serialize(config), 'utf8');
  if (rawBytes) stdin = mutateBytes(rng, stdin);
  const text = stdin.toString('utf8');
  const c = { seed, index, binary: g.binary, env: g.env, files: g.files, mutations };
  if (Buffer.from(text, 'utf8').equals(stdin)) c.stdin = text;
  else c.stdinBase64 = stdin.toString('base64');
  return c;
}
