// The policy engine: this node's policy state and the one table it keeps in
// the kernel (inet nhi_policy). One API for the CNI verbs (src/chain/runner.ts,
// src/plugin/policy.ts), the CLI (src/cli/policy.ts) and the cluster agent;
// an engine holds no process-global state, so a process may keep one for days.
//
// Glossary - one word for one thing, here and in the files below:
//   pod          an attachment of this node, recorded under its podKey
//                "<network>/<containerId>/<ifname>": a PodRecord (addresses,
//                workload identity); all of them are the node's Pods
//   remote peer  a pod of another node (RemotePeer, from the agent): its
//                addresses join the peer sets that select it; it is never
//                classified here (no verdict-map entry, no profile)
//   identity     a pod's namespace, name and labels (Identity, src/policy/model.ts)
//   group        pods alike for the policies: same namespace and the same
//                values of the label keys the policies select on (classKey;
//                the compiler's "class" and a workload set w_* are groups)
//   group entry  what one group is part of: set memberships and profile
//                chains (the compiler's ClassEntry); the compile index maps
//                classKey -> group entry
//   profile      a chain pr_<hash>: the rules of the policies selecting a
//                group, for one direction; groups under the same policies share it
//   compile      compile()'s output (Compiled): the full transaction, the
//                desired kernel state (Desired: sets, chains, counters, verdict
//                maps), the profiles, and its index
//   compile index  what a later change needs of a compile to apply only a
//                difference without compiling (CompiledIndex: group entries,
//                label keys, per-pod elements, names)
//   names        the chains and sets a compile created (CompiledNames): what
//                the next full apply deletes if no longer used
//   state        on disk (store.ts): the StateFile (pods, remote peers,
//                generation, fingerprint, compile id), a CompileRecord (the
//                index + audit options + layout) and its CompilePolicies
//                (policies + profiles); as read, one StoredState
//   generation   the element of set `gen`, moved on by every transaction; a
//                partial one deletes the one it expects, so a table changed
//                behind our back is detected and re-applied whole
//   dirty marker policy.dirty, present while the kernel may be ahead of the files
//   owner        the state dir that owns the table (owner.ts): one per node
//   kernel       the engine's one dependency on the OS (PolicyKernel): one nft
//                transaction, one table listing, the sysctls; a fake in tests
// Paths of a change (apply.ts): fast delta, compile + delta, full apply.
//
// Files: config.ts (the policy section, manifests, fingerprint), pods.ts,
// store.ts (state files, migration, dirty marker), apply.ts (reconcile),
// sync.ts, check.ts, stats.ts, explain.ts, owner.ts, lost-state.ts, kernel.ts.
import { compile, type Compiled } from '../compile/index.js';
import type { Policy } from '../model.js';
import { reconcile, type EngineContext, type ReconcileOptions, type ReconcileResult } from './apply.js';
import { checkPod } from './check.js';
import { loadPolicies, manifestFingerprint, NO_AUDIT, type PolicyConfig } from './config.js';
import { explainConnection, type ExplainQuery, type Explanation } from './explain.js';
import type { NftRunner } from '../../sys/nft.js';
import { policyKernel } from './kernel.js';
import { compilerPods } from './pods.js';
import { policyStats, type PolicyStats } from './stats.js';
import { PolicyStore, type StoredState } from './store.js';
import { syncAll, type SyncReport } from './sync.js';

export { loadPolicies, loadPolicyConfig, manifestFingerprint, NO_AUDIT, PolicyConfigInput, type PolicyConfig } from './config.js';
export { keepValid, placePod, podKey, type PodRecord, type Pods, type RemotePeer } from './pods.js';
export { enableBridgeNetfilter } from './kernel.js';
export { STATE_FILE, type CompilePolicies, type CompileRecord, type StateFile, type StoredState } from './store.js';
export type { ReconcileOptions, ReconcilePath, ReconcileResult } from './apply.js';
export { ExplainInputError, type ExplainQuery, type Explanation } from './explain.js';
export type { PolicyStats, PolicyStatsRow } from './stats.js';
export type { SyncReport } from './sync.js';

export interface EngineOptions {
  config: PolicyConfig;
  /** nft: the host's (hostNft) by default; FakeNft in unit tests. */
  nft?: NftRunner;
  /** Makes the node ready before every change: enableBridgeNetfilter (writes /proc/sys) by default. */
  prepareNode?: () => void;
}

export class PolicyEngine {
  readonly config: PolicyConfig;
  private readonly ctx: EngineContext;

  constructor({ config, nft, prepareNode }: EngineOptions) {
    this.config = config;
    this.ctx = { config, store: new PolicyStore(config.stateDir), kernel: policyKernel(nft, prepareNode) };
  }

  /** An engine on a state directory without a policy section (reading: stats, CHECK; no manifests, no audit). */
  static forStateDir(stateDir: string, nft?: NftRunner): PolicyEngine {
    return new PolicyEngine({ config: { stateDir, audit: NO_AUDIT }, ...(nft ? { nft } : {}) });
  }

  get stateDir(): string {
    return this.config.stateDir;
  }

  /** The node's policy state as it is on disk now. Shared: never edit it in place. */
  state(): StoredState {
    return this.ctx.store.read();
  }

  /** The configured manifests' policies, parsed now; in cluster mode the ones the agent last applied. */
  loadPolicies(): Policy[] {
    // Cluster mode: the agent's (`policy sync` heals the kernel with them, never empties it).
    if (this.config.agentSocket !== undefined) return this.state().policies;
    return loadPolicies(this.config);
  }

  /**
   * The policies for an ADD: parsed again only when the manifests changed
   * since the policies last applied (parsing YAML and validating costs ~25 ms
   * in a fresh process; a fingerprint costs a stat per file). Undefined when
   * they did not change: "the ones last applied", for reconcile.
   */
  changedPolicies(): Policy[] | undefined {
    // Cluster mode: the agent's, as it last applied them; an ADD never replaces them.
    if (this.config.agentSocket !== undefined) return undefined;
    const s = this.state();
    if (s.compile && s.fingerprint && s.fingerprint === manifestFingerprint(this.config)) return undefined;
    return this.loadPolicies();
  }

  /** One change of the node's pods, policies or peers, in one nft transaction (see apply.ts). */
  reconcile(opts: ReconcileOptions = {}): Promise<ReconcileResult> {
    return reconcile(this.ctx, opts);
  }

  /** DEL: takes a pod out, by its addresses when the state is gone; `extra` (its port guard's removal) goes in the same transaction. */
  remove({ key, ips, extra = [] }: { key: string; ips: string[]; extra?: ReconcileOptions['extra'] }): Promise<ReconcileResult> {
    return reconcile(this.ctx, { change: (pods) => delete pods[key], extra, forget: ips });
  }

  /** `policy sync`: the policies (the manifests now, by default) applied whole to every pod. */
  sync({ policies }: { policies?: Policy[] } = {}): Promise<SyncReport> {
    return syncAll(this.ctx, policies ?? this.loadPolicies());
  }

  /** CHECK of one pod: CniError code 3 naming what the kernel lacks. */
  check(key: string): Promise<void> {
    return checkPod(this.ctx, key);
  }

  /** Per-policy allowed and denied counts. */
  stats(): Promise<PolicyStats> {
    return policyStats(this.ctx);
  }

  /** Would this connection be allowed, and by which policies (the manifests now, by default)? */
  explain(q: Omit<ExplainQuery, 'policies'> & { policies?: Policy[] }): Explanation {
    const policies = q.policies ?? this.loadPolicies();
    return explainConnection(this.state(), this.stateDir, { ...q, policies });
  }

  /** The compile a sync would apply now, applying nothing (`policy compile`). */
  preview({ policies }: { policies?: Policy[] } = {}): { compiled: Compiled; state: StoredState } {
    const state = this.state();
    const compiled = compile(policies ?? this.loadPolicies(), compilerPods(state.pods), this.config.audit, state.names, state.remote);
    return { compiled, state };
  }
}
