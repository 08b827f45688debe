// `nhi-cni policy …`: check manifests, show the ruleset a node would get,
// re-apply the manifests, explain a verdict, read the per-policy counters.
import { Command, CommanderError } from 'commander';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_STATE_DIR } from '../chain/config.js';
import { guardDrops } from '../chain/spoofcheck.js';
import { AttachmentStore } from '../chain/state.js';
import { CniError } from '../cni/errors.js';
import { absolutePathProblem } from '../cni/paths.js';
import { POLICY_TABLE, type Compiled } from '../policy/compile/index.js';
import { ExplainInputError, loadPolicyConfig, podKey, PolicyEngine, STATE_FILE, type PolicyConfig, type StoredState } from '../policy/engine/index.js';
import { policyId, type Policy, type Protocol } from '../policy/model.js';
import { loadPolicyDir, parseManifestText, PolicyError } from '../policy/parse.js';
import { NftTransaction } from '../sys/nft.js';
import { formatOf, outputOption, printDocument } from './output.js';
import { askAgent } from './agent-socket.js';
import type { L7StatsRow } from '../agent/agent.js';
import { decide } from '../l7/decide.js';
import type { HttpRequestInfo } from '../l7/match.js';

/** Bad input to `policy explain` (exit 2, not "denied"). */
class UsageError extends Error {}

const out = (s: string) => process.stdout.write(s);

function report(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  const details = e instanceof CniError && e.details ? `\n  ${e.details}` : '';
  process.stderr.write(`nhi-cni: ${msg}${details}\n`);
}

/** Runs an action; a thrown error is printed and becomes exit status `code`. */
function guarded<A extends unknown[]>(fn: (...a: A) => void | Promise<void>, code = 1) {
  return async (...a: A) => {
    try {
      await fn(...a);
    } catch (e) {
      report(e);
      process.exitCode = e instanceof UsageError || e instanceof ExplainInputError ? 2 : code;
    }
  };
}

// ---- the conflist ----

const PLUGIN_TYPES = ['nhi-cni', 'nhi-policy'];

/** The policy configuration of a conflist's first nhi-cni or nhi-policy plugin. */
export function policyConfigFromConflist(file: string, stateDirOpt?: string): PolicyConfig {
  let conf: unknown;
  try {
    conf = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read conflist ${file}: ${(e as Error).message}`);
  }
  const plugins = (conf as { plugins?: unknown })?.plugins;
  if (!Array.isArray(plugins)) throw new Error(`${file}: not a conflist (no "plugins" list)`);
  const i = plugins.findIndex((p) => PLUGIN_TYPES.includes((p as { type?: unknown })?.type as string));
  if (i < 0) throw new Error(`${file}: no plugin of type ${PLUGIN_TYPES.join(' or ')}`);
  const plugin = plugins[i] as Record<string, unknown>;
  let stateDir: string;
  if (stateDirOpt !== undefined) stateDir = resolve(stateDirOpt);
  else if (plugin.stateDir === undefined) stateDir = DEFAULT_STATE_DIR;
  else if (typeof plugin.stateDir !== 'string') throw new Error(`${file}: plugins[${i}].stateDir must be a string`);
  else {
    // The rule the plugin applies to the same key (src/chain/config.ts).
    const why = absolutePathProblem(plugin.stateDir);
    if (why) throw new Error(`${file}: plugins[${i}].stateDir ${JSON.stringify(plugin.stateDir)} ${why}`);
    stateDir = plugin.stateDir;
  }
  // nhi-cni without a policy section enforces nothing; nhi-policy's default is no manifests.
  const raw = plugin.policy ?? (plugin.type === 'nhi-policy' ? {} : undefined);
  if (raw === undefined) throw new Error(`${file}: the nhi-cni plugin (plugins[${i}]) has no "policy" section: no policy is enforced`);
  return loadPolicyConfig(raw, stateDir)!;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function isolatesText(p: Policy): string {
  const d = [p.isolates.ingress && 'ingress', p.isolates.egress && 'egress'].filter(Boolean);
  return d.length ? `isolates ${d.join('+')}` : 'isolates nothing';
}

function rulesText(p: Policy): string {
  const deny = p.ingressDeny.length + p.egressDeny.length;
  const n = p.ingress.length + p.egress.length + deny;
  const parts = [`${p.ingress.length} ingress`, `${p.egress.length} egress`];
  if (deny) parts.push(`${deny} deny`);
  return `${plural(n, 'rule')} (${parts.join(', ')})`;
}

// ---- policy check ----

function checkCommand(): Command {
  return new Command('check')
    .description('parse policy manifests as the plugin does and list the policies; exit 1 on the first bad manifest')
    .argument('<paths...>', 'policy directories (their *.yaml, *.yml, *.json, as policy.dir) or manifest files')
    .addHelpText('after', `
Prints one line per policy: kind, namespace/name, the directions it isolates and
its rules. A manifest nhi-cni cannot enforce exactly (L7 rules, FQDNs, entities,
unknown fields, …) is an error naming the file, document, policy and field.`)
    .action(guarded((paths: string[]) => {
      const policies: Policy[] = [];
      const seen = new Map<string, Policy>();
      for (const path of paths) {
        let isDir: boolean;
        try {
          isDir = statSync(path).isDirectory();
        } catch (e) {
          throw new PolicyError(`cannot read ${path}: ${(e as Error).message}`);
        }
        let text = '';
        if (!isDir) {
          try {
            text = readFileSync(path, 'utf8');
          } catch (e) {
            throw new PolicyError(`cannot read ${path}: ${(e as Error).message}`);
          }
        }
        for (const p of isDir ? loadPolicyDir(path) : parseManifestText(text, path)) {
          const k = `${p.kind}\0${policyId(p)}`;
          const first = seen.get(k);
          if (first) {
            throw new PolicyError(`${p.source.file} document ${p.source.index} (${p.kind} ${policyId(p)}): duplicate policy; also defined in ${first.source.file} document ${first.source.index}`);
          }
          seen.set(k, p);
          policies.push(p);
        }
      }
      if (policies.length === 0) process.stderr.write(`nhi-cni: no policies in ${paths.join(' ')}\n`);
      const wk = Math.max(0, ...policies.map((p) => p.kind.length));
      const wi = Math.max(0, ...policies.map((p) => policyId(p).length));
      const wd = Math.max(0, ...policies.map((p) => isolatesText(p).length));
      for (const p of policies) {
        out(`${p.kind.padEnd(wk)}  ${policyId(p).padEnd(wi)}  ${isolatesText(p).padEnd(wd)}  ${rulesText(p)}\n`);
      }
    }));
}

// ---- policy compile ----

function compileSummary({ commands, profiles, pods: podProfiles }: Compiled, state: StoredState): string {
  const lines: string[] = [];
  const ruleCount = new Map<string, number>();
  const elemCount = new Map<string, number>();
  const sets: { name: string; kind: string }[] = [];
  for (const c of commands) {
    const add = c.add as Record<string, Record<string, unknown>> | undefined;
    if (!add) continue;
    if (add.rule) ruleCount.set(add.rule.chain as string, (ruleCount.get(add.rule.chain as string) ?? 0) + 1);
    if (add.element) elemCount.set(add.element.name as string, (elemCount.get(add.element.name as string) ?? 0) + (add.element.elem as unknown[]).length);
    if (add.set) sets.push({ name: add.set.name as string, kind: 'set' });
    if (add.map) sets.push({ name: add.map.name as string, kind: 'map' });
  }
  const deleted = new Set(commands.flatMap((c) => {
    const del = c.delete as Record<string, { name: string }> | undefined;
    return del ? Object.values(del).map((o) => o.name) : [];
  }));
  const podsOf = (chain: string) => Object.entries(podProfiles)
    .filter(([, pp]) => pp.ingress === chain || pp.egress === chain)
    .map(([id]) => {
      const i = state.pods[id]?.identity;
      return i ? `${i.namespace}/${i.name}` : id;
    });
  const chains = Object.keys(profiles).sort();
  lines.push(`table inet ${POLICY_TABLE}: ${plural(chains.length, 'profile')} for ${plural(Object.keys(state.pods).length, 'pod')}`);
  for (const chain of chains) {
    const p = profiles[chain]!;
    lines.push(`profile ${chain}  ${p.direction}  ${plural(ruleCount.get(chain) ?? 0, 'rule')}`);
    lines.push(`  policies: ${p.policies.join(', ')}`);
    lines.push(`  pods: ${podsOf(chain).join(', ') || '-'}`);
  }
  for (const s of sets.filter((x) => !deleted.has(x.name))) {
    lines.push(`${s.kind} ${s.name}  ${plural(elemCount.get(s.name) ?? 0, 'element')}`);
  }
  for (const name of [...deleted].sort()) lines.push(`removed ${name} (made by the previous compile, no longer used)`);
  return `${lines.join('\n')}\n`;
}

function compileCommand(): Command {
  return new Command('compile')
    .description("print the nftables ruleset nhi-cni would install for the node's pods with the conflist's manifests (changes nothing)")
    .requiredOption('--config <conflist>', 'the conflist: its first nhi-cni or nhi-policy plugin gives the policy section and stateDir')
    .option('--state-dir <dir>', 'state directory holding policy-state.json (default: the plugin\'s stateDir, else /var/lib/nhi-cni)')
    .option('--text', 'a readable summary (profiles with their policies and rule count, sets with element counts) instead of the nft JSON')
    .addHelpText('after', `
The pods are those of the node's policy state (policy-state.json), the policies
those of the manifests now: the same transaction \`policy sync\` would apply.`)
    .action(guarded((opts: { config: string; stateDir?: string; text?: boolean }) => {
      const { compiled, state } = new PolicyEngine({ config: policyConfigFromConflist(opts.config, opts.stateDir) }).preview();
      if (opts.text) {
        out(compileSummary(compiled, state));
        return;
      }
      out(`${JSON.stringify(JSON.parse(new NftTransaction().push(...compiled.commands).json()), null, 2)}\n`);
    }));
}

// ---- policy sync ----

function syncCommand(): Command {
  return new Command('sync')
    .description("re-read the manifests and apply them to every pod of the node's policy state, in one nft transaction")
    .requiredOption('--config <conflist>', 'the conflist: its first nhi-cni or nhi-policy plugin gives the policy section and stateDir')
    .option('--state-dir <dir>', 'state directory holding policy-state.json (default: the plugin\'s stateDir, else /var/lib/nhi-cni)')
    .addHelpText('after', `
Run it in the node's network namespace (where the plugin runs): it writes the
table inet ${POLICY_TABLE} of the namespace it runs in. A bad manifest changes
nothing. Without sync, a manifest edit takes effect with the next pod added.`)
    .action(guarded(async (opts: { config: string; stateDir?: string }) => {
      const r = await new PolicyEngine({ config: policyConfigFromConflist(opts.config, opts.stateDir) }).sync();
      const listed = (word: string, l: string[]) => (l.length ? `; ${word}: ${l.join(', ')}` : '');
      const { policies: p, pods, profiles } = r;
      out(`policies: ${p.now} (was ${p.was}${listed('added', p.added)}${listed('removed', p.removed)}${listed('changed', p.changed)})\n`);
      out(`pods: ${pods.total} (${pods.withIdentity} with a workload identity, ${pods.underProfile} under a profile)\n`);
      out(`profiles: ${profiles.now} (was ${profiles.was}; ${profiles.added} new, ${profiles.removed} removed)\n`);
    }));
}

// ---- policy explain ----

function explainCommand(): Command {
  const cmd = new Command('explain')
    .description('tell whether a connection would be allowed, and which policies decide it')
    .requiredOption('--from <endpoint>', 'source: <namespace>/<pod>, or an IP address (the pod holding it, else a non-pod)')
    .requiredOption('--to <endpoint>', 'destination: <namespace>/<pod>, or an IP address (the pod holding it, else a non-pod)')
    .requiredOption('--port <port>', 'destination port and protocol: <n>/<tcp|udp|sctp> (tcp when omitted)')
    .requiredOption('--config <conflist>', 'the conflist: its first nhi-cni or nhi-policy plugin gives the policy section and stateDir')
    .option('--state-dir <dir>', 'state directory holding policy-state.json (default: the plugin\'s stateDir, else /var/lib/nhi-cni)')
    .option('--http <request>', 'an HTTP request on the connection, "<METHOD> <path>": judged by the HTTP rules as the agent\'s L7 proxy would (TCP only)')
    .option('--header <name: value>', 'a request header for --http (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .addOption(outputOption(['table', 'json', 'yaml']))
    .addHelpText('after', `
Pods and their identities come from the node's policy state, policies from the
manifests now (as \`policy sync\` would apply them); in cluster mode (a conflist
written by \`nhi-cni agent\`) the policies the agent last applied.
--http "GET /data": the request's verdict under the HTTP rules (CiliumNetworkPolicy
toPorts[].rules.http), enforced in cluster mode by the agent's L7 proxy.
-o json|yaml: {from, to, port, protocol, allowed, decision, text, deciding: [{kind, policy, file, document}], http?}.
Exit status: 0 allowed, 1 denied, 2 bad input (unknown pod, bad manifest, …).`)
    .action(guarded(async (opts: { from: string; to: string; port: string; config: string; stateDir?: string; output: string; http?: string; header?: string[] }) => {
      const format = formatOf(opts);
      const pm = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(opts.port);
      const port = pm ? Number(pm[1]) : 0;
      if (!pm || port < 1 || port > 65535) throw new UsageError(`--port ${JSON.stringify(opts.port)}: expected <1-65535>/<tcp|udp|sctp>`);
      const protocol = (pm[2] ?? 'tcp').toUpperCase() as Protocol;
      let engine: PolicyEngine;
      let policies: Policy[];
      try {
        engine = new PolicyEngine({ config: policyConfigFromConflist(opts.config, opts.stateDir) });
        policies = engine.loadPolicies();
        engine.state();
      } catch (e) {
        throw new UsageError(e instanceof CniError && e.details ? `${e.message}: ${e.details}` : (e as Error).message);
      }
      const request = opts.http === undefined ? undefined : httpRequest(opts.http, opts.header ?? [], protocol);
      const x = engine.explain({ from: opts.from, to: opts.to, port, protocol, policies });
      const http = request ? decide(policies, x.from.endpoint, x.to.endpoint, port, request) : undefined;
      const allowed = http ? http.allowed : x.decision.allowed;
      process.exitCode = allowed ? 0 : 1;
      if (format === 'json' || format === 'yaml') {
        const deciding = x.deciding.map((p) => ({ kind: p.kind, policy: policyId(p), file: p.source.file, document: p.source.index }));
        const doc: Record<string, unknown> = { from: x.from, to: x.to, port, protocol: protocol.toLowerCase(), allowed, decision: x.decision, text: x.text, deciding };
        if (http && request) doc.http = { method: request.method, path: request.path, ...http };
        return printDocument(doc, format);
      }
      out(`${x.from.shown} -> ${x.to.shown} port ${port}/${protocol.toLowerCase()}\n`);
      if (http && request) {
        const by = http.allowed
          ? [...http.matched.map((m) => `${m.policy} ${m.direction} rule ${m.at}`), ...http.byL4.map((p) => `${p} (an L4 rule of the port: every request)`)].join('; ') || 'no policy acts on it'
          : `${http.deniedBy.join(', ') || '(none)'}${http.deniedIn ? ` (${http.deniedIn})` : ''}`;
        out(`HTTP ${request.method} ${request.path}: ${http.allowed ? 'allowed' : 'DENIED (403)'} by ${by}\n`);
      } else out(`${x.text}\n`);
      for (const p of x.deciding) out(`  ${p.kind} ${policyId(p)}: ${p.source.file} document ${p.source.index}\n`);
    }, 2));
  // Usage errors (a missing option, …) are bad input too: exit 2.
  cmd.exitOverride((err) => {
    if (err.exitCode === 0) throw err;
    throw new CommanderError(2, err.code, err.message);
  });
  return cmd;
}

/** `--http "GET /data"` and `--header "Name: value"` as the L7 matcher sees a request. */
function httpRequest(text: string, headers: string[], protocol: Protocol): HttpRequestInfo {
  if (protocol !== 'TCP') throw new UsageError('--http: HTTP is over TCP (--port <n>/tcp)');
  const m = /^([A-Za-z]{1,20}) (\/[^\s]*)$/.exec(text.trim());
  if (!m) throw new UsageError(`--http ${JSON.stringify(text)}: expected "<METHOD> <path>", e.g. "GET /data"`);
  const out: HttpRequestInfo = { method: m[1]!, path: m[2]!, headers: {} };
  for (const h of headers) {
    const hm = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}):\s*(.*)$/.exec(h);
    if (!hm) throw new UsageError(`--header ${JSON.stringify(h)}: expected "Name: value"`);
    (out.headers[hm[1]!.toLowerCase()] ??= []).push(hm[2]!);
  }
  return out;
}

// ---- policy stats ----

function statsCommand(): Command {
  return new Command('stats')
    .description('per-policy counts of connections allowed and denied on this node (the named counters of inet nhi_policy), and frames dropped by the source check per pod')
    .option('--state-dir <dir>', 'state directory holding policy-state.json', DEFAULT_STATE_DIR)
    .addOption(outputOption())
    .option('--json', 'same as -o json (JSON lines)')
    .addHelpText('after', `
Run it in the node's network namespace: it reads the table inet ${POLICY_TABLE} of
the namespace it runs in. Counters count packets opening new connections only
(established traffic is accepted before any policy rule), since the table was
created; counters of a policy stay while the policy is removed and re-added.
ALLOWED: connections a rule of the policy allowed.
DENIED: connections denied for want of an allowing rule by a profile (the rule
set of pods selected by the same policies), counted for each of the profile's
policies that isolate the direction, plus those a deny rule of the policy
(CiliumNetworkPolicy ingressDeny/egressDeny) denied.
Below, per pod, the frames its port's source check dropped (table bridge
nhi_cni): a forged MAC or address, an ARP or neighbour advertisement claiming
another's address, a router advertisement. Shown when any was dropped; --json
prints one {"guard":true,"pod","port","dropped"} line per pod.
With the agent running (its socket <state-dir>/agent.sock), last the HTTP
requests its L7 proxy judged, per policy and rule (RULE "-": requests no rule
allowed, answered 403); --json prints one {"l7":true,"policy","rule","allowed",
"denied"} line per row.`)
    .action(guarded(async (opts: { stateDir: string; output: string; json?: boolean }) => {
      const format = formatOf(opts);
      const stateDir = resolve(opts.stateDir);
      const engine = PolicyEngine.forStateDir(stateDir);
      const [stats, drops] = await Promise.all([engine.stats(), guardDrops()]);
      if (stats.unavailable !== undefined && drops.length === 0) {
        throw new Error(`cannot list table inet ${POLICY_TABLE} (no policy applied in this network namespace?): ${stats.unavailable}`);
      }
      const { rows } = stats;
      const guards = guardRows(stateDir, engine.state(), drops);
      const l7 = await l7StatsRows(stateDir);
      if (format === 'json') {
        for (const row of rows) out(`${JSON.stringify(row)}\n`);
        for (const row of guards) out(`${JSON.stringify(row)}\n`);
        for (const row of l7) out(`${JSON.stringify({ l7: true, ...row })}\n`);
        return;
      }
      if (format === 'yaml') return printDocument({ policies: rows, guards, l7 }, 'yaml');
      if (rows.length === 0) out(`no policies in ${stateDir}/${STATE_FILE}\n`);
      else {
        const w = Math.max('POLICY'.length, ...rows.map((x) => x.policy.length));
        const wa = Math.max('ALLOWED'.length, ...rows.map((x) => String(x.allowed).length));
        out(`${'POLICY'.padEnd(w)}  ${'ALLOWED'.padStart(wa)}  DENIED\n`);
        for (const row of rows) out(`${row.policy.padEnd(w)}  ${String(row.allowed).padStart(wa)}  ${row.denied}\n`);
      }
      if (guards.some((g) => g.dropped > 0)) {
        const shown = guards.filter((g) => g.dropped > 0);
        const w = Math.max('POD'.length, ...shown.map((x) => x.pod.length));
        out(`\nframes dropped by the source check (forged MAC or address, router advertisements):\n${'POD'.padEnd(w)}  ${'PORT'.padEnd(15)}  DROPPED\n`);
        for (const g of shown) out(`${g.pod.padEnd(w)}  ${g.port.padEnd(15)}  ${g.dropped}\n`);
      }
      if (l7.length) {
        const w = Math.max('POLICY'.length, ...l7.map((x) => x.policy.length));
        const wr = Math.max('RULE'.length, ...l7.map((x) => x.rule.length));
        const wa = Math.max('ALLOWED'.length, ...l7.map((x) => String(x.allowed).length));
        out(`\nHTTP requests judged by the agent's L7 proxy:\n${'POLICY'.padEnd(w)}  ${'RULE'.padEnd(wr)}  ${'ALLOWED'.padStart(wa)}  DENIED\n`);
        for (const r of l7) out(`${r.policy.padEnd(w)}  ${r.rule.padEnd(wr)}  ${String(r.allowed).padStart(wa)}  ${r.denied}\n`);
      }
    }));
}

/**
 * The agent's L7 counts (GET /l7-stats on its socket), when an agent runs on
 * this state dir; none without one. An agent that does not answer is said on
 * stderr: the rows are missing, not zero.
 */
async function l7StatsRows(stateDir: string): Promise<L7StatsRow[]> {
  const sock = `${stateDir.replace(/\/+$/, '')}/agent.sock`;
  try {
    if (!statSync(sock).isSocket()) return [];
  } catch {
    return [];
  }
  try {
    const rows = await askAgent(sock, '/l7-stats', 3000);
    return Array.isArray(rows) ? (rows as L7StatsRow[]) : [];
  } catch (e) {
    process.stderr.write(`nhi-cni: the agent at ${sock} did not answer (${(e as Error).message}): no L7 rows\n`);
    return [];
  }
}

/**
 * Each guarded port's drops, named by its pod: the attachment record that
 * holds the port, and the identity the policy state has for it.
 */
function guardRows(stateDir: string, state: StoredState, drops: { port: string; dropped: number }[]): { guard: true; pod: string; port: string; dropped: number }[] {
  const byPort = new Map<string, string>();
  let networks: string[] = [];
  try {
    networks = readdirSync(stateDir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch {
    // no state dir: ports are shown by name only
  }
  for (const net of networks) {
    for (const rec of new AttachmentStore(stateDir, net).list()) {
      const id = state.pods[podKey(net, rec.containerId, rec.ifname)]?.identity;
      byPort.set(rec.hostVeth, id ? `${id.namespace}/${id.name}` : `${net}/${rec.containerId.slice(0, 12)}/${rec.ifname}`);
    }
  }
  return drops.map((d) => ({ guard: true as const, pod: byPort.get(d.port) ?? '(unknown)', port: d.port, dropped: d.dropped }));
}

export function policyCommand(): Command {
  const policy = new Command('policy')
    .description('check, compile, apply and explain network policies; per-policy counters')
    .showHelpAfterError()
    .exitOverride();
  policy.addCommand(checkCommand().showHelpAfterError().exitOverride());
  policy.addCommand(compileCommand().showHelpAfterError().exitOverride());
  policy.addCommand(syncCommand().showHelpAfterError().exitOverride());
  policy.addCommand(explainCommand().showHelpAfterError());
  policy.addCommand(statsCommand().showHelpAfterError().exitOverride());
  return policy;
}
