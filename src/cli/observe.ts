// `nhi-cni observe`: denied (and, in audit mode, would-be-denied) connections
// as they happen, with the workloads on both ends and the policies that
// decided, like `hubble observe`. Reads `nft monitor trace` in the network
// namespace it runs in (the node's): the policy table marks exactly those
// packets (see src/policy/flows.ts), so nothing else is traced, and nothing
// is traced at all while no one observes.
import { Command, InvalidArgumentError, Option } from 'commander';
import { resolve } from 'node:path';
import { execa } from 'execa';
import { DEFAULT_STATE_DIR } from '../chain/config.js';
import { POLICY_TABLE } from '../policy/compile/index.js';
import { PolicyEngine, type StoredState } from '../policy/engine/index.js';
import { FlowTracer, type FlowEvent } from '../policy/flows.js';
import { spiffeId } from '../policy/identity.js';
import type { Identity } from '../policy/model.js';

interface Named {
  workload?: string;
  spiffe?: string;
}

/** What the node's policy state says about addresses and profile chains; re-read when something is not in it. */
class Names {
  private byIp = new Map<string, Identity>();
  private profiles: StoredState['profiles'] = {};
  private readAt = 0;

  constructor(
    private readonly stateDir: string,
    private readonly trustDomain: string,
  ) {
    this.read();
  }

  private read(): void {
    this.readAt = Date.now();
    try {
      const state = PolicyEngine.forStateDir(this.stateDir).state();
      // This node's pods, and (with the cluster agent) the other nodes' pods it knows as peers.
      this.byIp = new Map([...Object.values(state.pods), ...state.remote].flatMap((p) => (p.identity ? p.ips.map((ip) => [ip, p.identity!] as const) : [])));
      this.profiles = state.profiles;
    } catch {
      // No state (yet): addresses are shown as they are.
    }
  }

  private fresh(known: boolean): void {
    if (!known && Date.now() - this.readAt > 1000) this.read();
  }

  endpoint(ip: string): Named {
    this.fresh(this.byIp.has(ip));
    const id = this.byIp.get(ip);
    if (!id) return {};
    const spiffe = spiffeId(id, this.trustDomain);
    return { workload: `${id.namespace}/${id.name}`, ...(spiffe ? { spiffe } : {}) };
  }

  profile(chain: string): { direction?: 'ingress' | 'egress'; policies: string[] } {
    this.fresh(chain in this.profiles);
    const p = this.profiles[chain];
    // policyKey is "Kind/ns/name": shown as ns/name.
    return p ? { direction: p.direction, policies: p.policies.map((k: string) => k.split('/').slice(1).join('/')) } : { policies: [] };
  }
}

export interface ObservedFlow {
  time: string;
  verdict: FlowEvent['verdict'];
  direction?: 'ingress' | 'egress';
  proto: string;
  src: { ip: string; port?: number } & Named;
  dst: { ip: string; port?: number } & Named;
  /** Which of its policies decided: the deny rule's own policy, else the profile's (all that isolate the direction act together). */
  policies: string[];
  chain: string;
}

function describeFlow(e: FlowEvent, names: Names): ObservedFlow {
  const prof = names.profile(e.chain);
  return {
    time: new Date().toISOString(),
    verdict: e.verdict,
    ...(prof.direction ? { direction: prof.direction } : {}),
    proto: e.proto,
    src: { ip: e.src, ...(e.sport !== undefined ? { port: e.sport } : {}), ...names.endpoint(e.src) },
    dst: { ip: e.dst, ...(e.dport !== undefined ? { port: e.dport } : {}), ...names.endpoint(e.dst) },
    policies: e.policies.length ? e.policies : prof.policies,
    chain: e.chain,
  };
}

const end = (x: ObservedFlow['src']) => `${x.workload ?? x.ip}${x.port !== undefined ? `:${x.port}` : ''}`;

function row(f: ObservedFlow): string {
  const dir = f.direction === 'ingress' ? 'in' : f.direction === 'egress' ? 'eg' : '?';
  return `${f.time}  ${f.verdict.toUpperCase().padEnd(6)}  ${dir}  ${f.proto.padEnd(4)}  ${end(f.src)} -> ${end(f.dst)}  ${f.policies.join(',') || '-'}\n`;
}

export function observeCommand(): Command {
  return new Command('observe')
    .description('show denied (and audited) connections as they happen, with the workloads and the policies that decided')
    .option('--state-dir <dir>', 'state directory holding policy-state.json (names the workloads)', DEFAULT_STATE_DIR)
    .option('--count <n>', 'stop after this many flows', (v) => positive(v, '--count'))
    .option('--timeout <seconds>', 'stop after this many seconds', (v) => positive(v, '--timeout'))
    .option('--trust-domain <domain>', 'trust domain of the SPIFFE ids shown', 'cluster.local')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addHelpText('after', `
Run it as root in the node's network namespace. It follows until interrupted
(or --count / --timeout). -o json prints one JSON object per flow:
{"time","verdict":"denied"|"audit","direction","proto","src":{"ip","port","workload","spiffe"},"dst":{…},"policies","chain"}.
Only packets that open a connection reach a policy decision, so a denied TCP
connection shows once per SYN the client sends.`)
    .action(async (opts: { stateDir: string; count?: number; timeout?: number; trustDomain: string; output: 'table' | 'json' }) => {
      const names = new Names(resolve(opts.stateDir), opts.trustDomain);
      const tracer = new FlowTracer(POLICY_TABLE);
      const monitor = execa('nft', ['monitor', 'trace'], { reject: false, buffer: false, stdin: 'ignore', stderr: 'pipe' });
      let seen = 0;
      const timer = opts.timeout ? setTimeout(() => monitor.kill(), opts.timeout * 1000) : undefined;
      const print = (events: FlowEvent[]) => {
        for (const e of events) {
          const f = describeFlow(e, names);
          process.stdout.write(opts.output === 'json' ? `${JSON.stringify(f)}\n` : row(f));
          if (opts.count !== undefined && ++seen >= opts.count) monitor.kill();
        }
      };
      // An audited packet's trace ends without a drop: flushed after a quiet moment.
      const flusher = setInterval(() => print(tracer.flush()), 250);
      try {
        for await (const line of monitor) print(tracer.feed(String(line)));
      } finally {
        clearInterval(flusher);
        if (timer) clearTimeout(timer);
      }
      const r = await monitor;
      if (!r.isTerminated && r.exitCode !== 0) {
        process.stderr.write(`nhi-cni: nft monitor trace failed: ${String(r.stderr ?? '').trim() || `exit ${r.exitCode}`}\n`);
        process.exitCode = 2;
      }
    });
}

function positive(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a positive whole number, not ${JSON.stringify(v)}`);
  return n;
}
